//! The scheduler workload (S, only run when named) runs end to end at a small scale against
//! the testkit's Postgres and reports its figures. A check that it works, not a measurement.

use std::time::Duration;

use dbos_testkit::TestDatabase;

#[dbos_testkit::test(timeout = "300s")]
async fn the_scheduler_workload_runs_and_reports(db: TestDatabase) {
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_bench"))
            .arg("S")
            .env("DBOS_BENCH_URL", db.url())
            .env("DBOS_BENCH_SCALE", "0.05")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the benchmark finished in time")
    .expect("the benchmark ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the benchmark failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .next()
        .expect("a report");
    assert_eq!(report["workload"], "S", "{stdout}");
    // At least one schedule per second of the minute, whatever the scale.
    assert_eq!(report["schedules"], 60, "{stdout}");
    assert_eq!(report["executors"], 3, "{stdout}");
    // 60 schedules, one per second of the minute, over at least 10 s once the workers fire:
    // some ticks ran.
    assert!(report["ticks"].as_i64().unwrap_or(0) > 0, "{stdout}");
    assert!(
        report["transactions_per_tick"].as_f64().unwrap_or(0.0) > 0.0,
        "{stdout}"
    );
    assert!(
        report["executor_cpu_s"].as_f64().unwrap_or(-1.0) >= 0.0,
        "{stdout}"
    );
}
