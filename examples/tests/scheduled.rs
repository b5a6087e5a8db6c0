//! The scheduled example, three copies started at once against one database, as three
//! terminals would: exactly one run per second, none skipped, each executed once; then each
//! copy stops at Ctrl-C (SIGINT).

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dbos_core::schedule::chrono::{DateTime, SecondsFormat, Utc};
use dbos_testkit::crash::eventually;
use dbos_testkit::TestDatabase;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn scheduled(db: &TestDatabase) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scheduled"));
    cmd.env("DBOS_SYSTEM_DATABASE_URL", db.url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    dbos_testkit::crash::interruptible(&mut cmd);
    cmd
}

/// The heartbeat runs in the database: (tick time, status), one per row (none until a copy
/// has created the schema).
async fn runs(db: &TestDatabase) -> Vec<(DateTime<Utc>, String)> {
    db.connect()
        .await
        .query(
            "SELECT workflow_uuid, status FROM dbos.workflow_status WHERE schedule_name = 'heartbeat'",
            &[],
        )
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let id: String = r.get(0);
            // `sched-heartbeat-2026-12-06T21:10:05+00:00`: the tick's time, 25 characters.
            let tick = id.strip_prefix("sched-heartbeat-").expect("a tick id");
            let tick = DateTime::parse_from_rfc3339(tick.get(..25).unwrap_or(tick))
                .unwrap_or_else(|e| panic!("{id} is not a tick id: {e}"));
            (tick.with_timezone(&Utc), r.get(1))
        })
        .collect()
}

#[dbos_testkit::test(timeout = "240s")]
async fn three_copies_make_one_run_per_second(db: TestDatabase) {
    // Every line each copy prints, tagged with the copy.
    let printed: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let mut copies: Vec<Child> = Vec::new();
    for n in 0..3 {
        let mut child = scheduled(&db).spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let printed = printed.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                printed.lock().unwrap().push((n, line));
            }
        });
        copies.push(child);
    }
    eventually("20 heartbeats to run", Duration::from_secs(180), || async {
        let done = runs(&db)
            .await
            .iter()
            .filter(|(_, s)| s == "SUCCESS")
            .count();
        (done >= 20).then_some(())
    })
    .await;
    for child in &copies {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
    }
    for mut child in copies {
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("a copy did not stop at Ctrl-C")
            .unwrap();
        assert!(status.success(), "a copy failed: {status}");
    }

    let runs = runs(&db).await;
    let ticks: BTreeSet<DateTime<Utc>> = runs.iter().map(|(t, _)| *t).collect();
    assert_eq!(ticks.len(), runs.len(), "a tick has two runs: {runs:?}");
    let ticks: Vec<DateTime<Utc>> = ticks.into_iter().collect();
    let (first, last) = (ticks[0], ticks[ticks.len() - 1]);
    assert_eq!(
        (last - first).num_seconds() + 1,
        ticks.len() as i64,
        "one run per second from the first to the last, none skipped: {ticks:?}"
    );
    let printed = printed.lock().unwrap().clone();
    let all_started = printed
        .iter()
        .filter(|(_, l)| l.contains("Ctrl-C to stop"))
        .count();
    assert_eq!(all_started, 3, "each copy started: {printed:?}");
    // Each finished run executed once, in one of the copies.
    let beats: Vec<String> = printed
        .iter()
        .filter_map(|(_, l)| l.strip_prefix("heartbeat ").map(str::to_owned))
        .collect();
    let distinct: BTreeSet<&String> = beats.iter().collect();
    assert_eq!(distinct.len(), beats.len(), "a tick ran twice: {beats:?}");
    for (tick, status) in &runs {
        let text = tick.to_rfc3339_opts(SecondsFormat::Secs, true);
        if status == "SUCCESS" {
            assert!(distinct.contains(&text), "run {text} finished unprinted");
        }
    }
    // The runs were shared: more than one copy executed some.
    let executing: BTreeSet<usize> = printed
        .iter()
        .filter(|(_, l)| l.starts_with("heartbeat "))
        .map(|(n, _)| *n)
        .collect();
    assert!(
        executing.len() >= 2,
        "one copy ran every heartbeat: {printed:?}"
    );
}
