//! A document pipeline: one workflow fans documents out to a rate-limited queue (an
//! LLM-style API that allows only so many calls per window) and gathers the summaries.
//!
//! ```sh
//! cargo run -p examples --bin pipeline
//! ```
//!
//! Each summary is its own workflow on the `llm` queue: at most 5 calls start per 2 seconds
//! (across every process serving the queue) and at most 3 run at once here. Kill it midway
//! and run it again: finished summaries are not redone, and the batch completes. Each summary
//! carries its batch as a workflow attribute, which the final listing filters on.
//!
//! With `DBOS_DASHBOARD_PORT=3001` it serves the dashboard while it runs (and until Ctrl-C
//! once done), printing its URL: watch the `llm` queue's depth and throughput.

use std::time::Duration;

use dbos_core::prelude::*;

/// The rate-limited "LLM" queue.
static LLM: Queue = Queue::new("llm")
    .rate_limit(5, Duration::from_secs(2))
    .worker_concurrency(3)
    .polling_interval(Duration::from_millis(200));

/// Stands in for a call to a hosted model: slow, metered, and worth not repeating.
#[step(max_attempts = 3, interval = "500ms")]
async fn call_llm(title: String, text: String) -> Result<String, Error> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let words = text.split_whitespace().count();
    let first = text.split_whitespace().next().unwrap_or("");
    Ok(format!("{title}: {words} words, opens with \"{first}\""))
}

#[workflow]
async fn summarize(title: String, text: String) -> Result<String, Error> {
    let summary = call_llm(title.clone(), text).await?;
    println!("  summarized {title}");
    Ok(summary)
}

#[workflow]
async fn digest(batch: String, documents: Vec<(String, String)>) -> Result<Vec<String>, Error> {
    // Fan out: every enqueue is recorded, so a recovered run never enqueues twice.
    let mut handles = Vec::new();
    for (title, text) in documents {
        // Attributes tag each summary with its batch: listings filter on them (children do
        // not inherit the parent's, so they are set here).
        let call = summarize(title, text).attributes(serde_json::json!({ "batch": batch }));
        handles.push(call.enqueue(&LLM).await?);
    }
    // Gather, in order.
    let mut summaries = Vec::new();
    for h in handles {
        summaries.push(h.await?);
    }
    println!("batch {batch}: {} summaries", summaries.len());
    Ok(summaries)
}

fn documents() -> Vec<(String, String)> {
    (1..=12)
        .map(|i| {
            (
                format!("doc-{i:02}"),
                format!(
                    "Report {i} covers quarter {} with {} findings and one caveat",
                    i % 4 + 1,
                    i * 3
                ),
            )
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let _telemetry = examples::init_logs();
    let batch = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "batch-1".to_owned());
    let dbos =
        Dbos::launch(examples::with_dashboard(Config::from_env("pipeline")?)?.queue(&LLM)).await?;
    examples::print_dashboard(&dbos);
    println!("digesting {batch}: 12 documents through the `llm` queue (5 calls per 2 s)");
    let started = std::time::Instant::now();
    let summaries = digest(batch.clone(), documents())
        .id(format!("digest-{batch}"))
        .await?;
    for s in &summaries {
        println!("  {s}");
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    // What an operator would ask: every summary of this batch, by its attributes.
    let tagged = dbos
        .list_workflows(
            &dbos_core::manage::ListWorkflows::new()
                .attributes(serde_json::json!({ "batch": batch }))
                .name("summarize"),
        )
        .await?;
    println!(
        "{} summary workflows carry the attribute batch={batch}",
        tagged.len()
    );
    examples::hold_dashboard(&dbos).await;
    dbos.shutdown().await
}
