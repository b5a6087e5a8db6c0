//! The benchmark program runs every workload end to end (at a small scale, against the
//! testkit's Postgres) and prints its table and one JSON line per workload. A check that it
//! works, not a measurement.

use std::time::Duration;

use dbos_testkit::TestDatabase;

// The program's own limit below is 600 s; the test's is the same, not the 120 s default.
#[dbos_testkit::test(timeout = "600s")]
async fn every_workload_runs_and_reports(db: TestDatabase) {
    let url = db.url();
    let out = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_bench"))
            .env("DBOS_BENCH_URL", &url)
            .env("DBOS_BENCH_SCALE", "0.02")
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
    let reports: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let workloads: Vec<&str> = reports
        .iter()
        .map(|r| r["workload"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        workloads,
        ["W1", "W2", "W3", "W4", "W5", "W6", "W7"],
        "{stdout}"
    );
    let positive = |r: &serde_json::Value, key: &str| {
        let v = r[key].as_f64().unwrap_or(-1.0);
        assert!(v > 0.0, "{key} of {} is {v}:\n{stdout}", r["workload"]);
    };
    positive(&reports[0], "p50_ratio");
    positive(&reports[1], "ratio");
    positive(&reports[2], "ratio");
    positive(&reports[3], "seconds");
    positive(&reports[5], "p50_ratio");
    assert!(reports[4]["recv_kib_per_workflow"].is_number(), "{stdout}");
    assert_eq!(
        reports[3]["pending"].as_i64(),
        Some(200),
        "W4 left 2% of 10,000 pending"
    );
    positive(&reports[6], "ratio");
    let commits = reports[6]["commits_per_transaction"]
        .as_f64()
        .unwrap_or(-1.0);
    assert!(
        (commits - 1.0).abs() < 0.05,
        "a #[transaction] in the system database commits once, not {commits}:\n{stdout}"
    );
    assert!(
        stdout.contains("| W1 latency"),
        "the table is printed:\n{stdout}"
    );

    // The benchmark's databases live on the shared test cluster; drop them.
    let admin = db.connect().await;
    for name in [
        "w1",
        "w1_floor",
        "w2",
        "w2_floor",
        "w3",
        "w3_floor",
        "w4",
        "w5",
        "w5_recv",
        "w5_control",
        "w5_recv_at_once",
        "w6",
        "w6_floor",
        "w7",
        "w7_floor",
    ] {
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS bench_{name} WITH (FORCE)"
            ))
            .await
            .expect("drop a benchmark database");
    }
}
