//! The reliability suite in CI: the `dbos-chaos` binary, small configuration, must pass.
//!
//! Three runs, one after the other (each starts its own Postgres and several worker processes;
//! side by side they would fight over two cores): SIGKILLs only, then SIGKILLs and a Postgres
//! crash, then both through PgBouncer in transaction mode. Each asserts the exit code and
//! reads the JSON report, so a run that silently did less than asked (fewer faults, fewer
//! workflows) fails too.

use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

const CHAOS: &str = env!("CARGO_BIN_EXE_dbos-chaos");

/// One run at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs the suite with `args` and returns its JSON report, failing with the whole output when
/// the exit code is not 0.
fn run_suite(name: &str, args: &[&str]) -> Value {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let report = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.json"));
    let _ = std::fs::remove_file(&report);
    let out = Command::new(CHAOS)
        .args(args)
        .arg("--report")
        .arg(&report)
        .output()
        .expect("run dbos-chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dbos-chaos {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&report).expect("the JSON report was written");
    serde_json::from_str(&text).expect("the report is JSON")
}

fn assert_did_what_was_asked(r: &Value, kills: u64, pg_restarts: u64) {
    assert_eq!(r["outcome"], "pass", "{r:#}");
    assert_eq!(r["workflows_succeeded"], 80, "{r:#}");
    assert_eq!(r["steps_checkpointed"], 400, "{r:#}");
    assert_eq!(r["kills"].as_array().map(Vec::len), Some(kills as usize));
    assert_eq!(
        r["pg_restarts"].as_array().map(Vec::len),
        Some(pg_restarts as usize)
    );
    let checks = r["checks"].as_array().expect("checks");
    assert!(checks.len() >= 6, "{checks:#?}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{checks:#?}");
    let rerun = r["steps_rerun"].as_u64().expect("steps_rerun");
    assert!(rerun <= kills * 8, "{rerun} re-runs for {kills} kills");
}

/// The small configuration with four kills and `pg_restarts` Postgres crashes, then `extra`.
fn small(pg_restarts: &'static str, extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec![
        "--workflows",
        "80",
        "--steps",
        "5",
        "--workers",
        "3",
        "--kills",
        "4",
        "--pg-restarts",
        pg_restarts,
        "--seed",
        "7",
        // Steps long enough that every scheduled fault lands while work remains, on a fast
        // machine too (with 5 ms steps the work can end before a relaunched worker is back,
        // and a restart that waits for every worker to be up never fires).
        "--step-ms",
        "150",
    ];
    args.extend_from_slice(extra);
    args
}

/// Four SIGKILLs of three workers (each relaunched under its executor id) while 80
/// workflows of 5 steps run: every workflow succeeds, every step is recorded once, and only
/// steps in flight at a kill ran twice.
#[test]
fn small_configuration_with_kills_passes() {
    let r = run_suite("kills", &small("0", &["--timeout", "90"]));
    assert_did_what_was_asked(&r, 4, 0);
}

/// The same with a Postgres crash (`pg_ctl restart -m immediate`) after the last kill, with
/// every worker up: a database outage must only delay work. Fails while executions whose
/// write meets the restart end without an outcome and stay PENDING on their live process.
#[test]
fn small_configuration_with_kills_and_a_postgres_restart_passes() {
    let r = run_suite("kills-and-pg-restart", &small("1", &["--timeout", "90"]));
    assert_did_what_was_asked(&r, 4, 1);
}

/// The same through PgBouncer in transaction mode with 5 server connections and no session
/// URL: the workers (pools of 12) find the pooler at launch, send their statements unnamed,
/// poll instead of listening, and hold 3 s leases instead of the executor lock; a killed
/// worker's relaunch takes its work back once its old lease expires. The kills and the
/// Postgres crash (behind the pooler, which reconnects) must only delay work here too, and
/// the work of a killed worker moves within about its lease.
#[test]
fn small_configuration_through_a_transaction_mode_pooler_passes() {
    let r = run_suite(
        "pooler",
        &small("1", &["--pooler", "5", "--timeout", "120"]),
    );
    assert_did_what_was_asked(&r, 4, 1);
    assert_eq!(r["settings"]["pooler"], 5, "{r:#}");
    // Each killed worker's interrupted workflows moved past their step within about the
    // 3 s lease (3.4-3.5 s measured), with room for a loaded machine: not the 15 s more of
    // a PgBouncer that waits its server login retry after the Postgres crash.
    let recovery = r["recovery_secs"]["max"].as_f64().expect("recovery times");
    assert!(recovery < 10.0, "recovery took {recovery} s: {r:#}");
}
