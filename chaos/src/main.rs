//! `dbos-chaos`: the reliability suite. A durable workload runs on several worker processes
//! while workers are SIGKILLed and Postgres crashes; then every workflow's outcome, every
//! checkpoint and every side effect is checked.
//!
//! ```sh
//! cargo run --release -p dbos-chaos                    # the small configuration
//! cargo run --release -p dbos-chaos -- --full          # 1000 workflows, 50 kills, 2 Postgres restarts
//! cargo run --release -p dbos-chaos -- --workflows 1000 --kills 50 --pg-restarts 2 --report run.json
//! ```
//!
//! See `docs/src/reliability.md` for what it checks and why.

mod check;
mod cli;
mod orchestrator;
mod report;
mod schedule;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use cli::{Command, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Worker) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .init();
            match worker::run().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dbos-chaos worker: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Ok(Command::Run(settings)) => run(settings).await,
        Err(e) => {
            eprintln!("dbos-chaos: {e}\n\n{}", cli::USAGE);
            ExitCode::from(2)
        }
    }
}

async fn run(settings: Settings) -> ExitCode {
    let (dir, made_here) = match &settings.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!(
                "dbos-chaos-{}-{}",
                std::process::id(),
                settings.seed
            )),
            true,
        ),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("dbos-chaos: could not create {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    println!(
        "dbos-chaos: {} workflows x {} steps, {} workers, {} kills, {} Postgres restarts, seed {}, timeout {} s",
        settings.workflows,
        settings.steps,
        settings.workers,
        settings.kills,
        settings.pg_restarts,
        settings.seed,
        settings.timeout_secs
    );
    println!("  run folder {}", dir.display());
    let pg = match orchestrator::start_postgres(&dir).await {
        Ok(pg) => pg,
        Err(e) => {
            eprintln!("dbos-chaos: {e}");
            return ExitCode::from(2);
        }
    };
    println!("  Postgres on 127.0.0.1:{}", pg.port());
    let report_path = settings.report.clone();
    let keep = settings.keep;
    let outcome = tokio::select! {
        r = orchestrator::execute(settings, dir.clone(), pg.clone()) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    if let Err(e) = pg.stop().await {
        eprintln!("dbos-chaos: could not stop the run's Postgres: {e}");
    }
    let report = match outcome {
        None => {
            eprintln!("dbos-chaos: interrupted; the run folder is kept");
            return ExitCode::from(130);
        }
        Some(Err(e)) => {
            eprintln!(
                "dbos-chaos: the suite could not run: {e}\n  run folder kept: {}",
                dir.display()
            );
            return ExitCode::from(2);
        }
        Some(Ok(report)) => report,
    };
    print!("{}", report.human());
    if let Some(path) = report_path {
        if let Err(e) = write_json(&path, &report) {
            eprintln!("dbos-chaos: {e}");
            return ExitCode::from(2);
        }
        println!("report written to {}", path.display());
    }
    if report.passed() {
        if made_here && !keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        ExitCode::SUCCESS
    } else {
        println!(
            "the run folder is kept for inspection: {} (worker logs in logs/, effect files in effects/)",
            dir.display()
        );
        ExitCode::from(1)
    }
}

fn write_json(path: &PathBuf, report: &report::Report) -> Result<(), String> {
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| format!("could not encode the report: {e}"))?;
    std::fs::write(path, json + "\n")
        .map_err(|e| format!("could not write {}: {e}", path.display()))
}
