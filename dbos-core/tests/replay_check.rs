//! The replay check: histories recorded with one version of a workflow, checked against
//! another. Swapping two steps is named at its step; the same change guarded with `patch`
//! passes.

use std::sync::atomic::{AtomicU32, Ordering};

use dbos_core::manage::ListWorkflows;
use dbos_core::replay::{DivergenceKind, ReplayEnd};
use dbos_core::{step, workflow, Error, ErrorKind, Status};
use dbos_testkit::TestDatabase;

/// The code of `three_steps` this test runs: 0 (v1), 1 (b and c swapped), 2 (the swap
/// guarded by `patch`).
static VERSION: AtomicU32 = AtomicU32::new(0);

#[step]
async fn s_a(n: u32) -> Result<String, Error> {
    Ok(format!("a{n}"))
}

#[step]
async fn s_b(n: u32) -> Result<String, Error> {
    Ok(format!("b{n}"))
}

#[step]
async fn s_c(n: u32) -> Result<String, Error> {
    Ok(format!("c{n}"))
}

#[workflow]
async fn three_steps(n: u32) -> Result<Vec<String>, Error> {
    let mut out = vec![s_a(n).await?];
    let swap = match VERSION.load(Ordering::SeqCst) {
        0 => false,
        1 => true,
        _ => dbos_core::patch("swap-b-c").await?,
    };
    if swap {
        out.push(s_c(n).await?);
        out.push(s_b(n).await?);
    } else {
        out.push(s_b(n).await?);
        out.push(s_c(n).await?);
    }
    Ok(out)
}

/// A workflow whose code does not change (the other test changes `three_steps`'s).
#[workflow]
async fn two_steps(n: u32) -> Result<String, Error> {
    Ok(format!("{}{}", s_a(n).await?, s_b(n).await?))
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[dbos_testkit::test]
async fn swapping_two_steps_is_named_and_a_patch_makes_the_check_pass(db: TestDatabase) {
    let url = db.url();
    let dbos = db.launch().await;
    VERSION.store(0, Ordering::SeqCst);
    for n in 1..=3 {
        three_steps(n)
            .id(format!("v1-{n}"))
            .on(&dbos)
            .await
            .unwrap();
    }
    let all = ListWorkflows::new().name("three_steps");

    // v1 replays its own histories.
    let report = dbos_testkit::replay_check(&url, &all).await.unwrap();
    assert_eq!(report.checked.len(), 3);
    assert!(report.passed(), "{report}");

    // v2 swaps b and c: every history diverges at step 2, named.
    VERSION.store(1, Ordering::SeqCst);
    let report = dbos_testkit::replay_check(&url, &all).await.unwrap();
    assert!(!report.passed());
    let found: Vec<_> = report
        .divergences()
        .map(|d| {
            (
                d.workflow_id.as_str(),
                d.kind,
                d.step_id,
                d.recorded.as_deref(),
                d.new.as_deref(),
            )
        })
        .collect();
    let expected: Vec<_> = ["v1-1", "v1-2", "v1-3"]
        .into_iter()
        .map(|id| {
            (
                id,
                DivergenceKind::DifferentOperation,
                Some(2),
                Some("s_b"),
                Some("s_c"),
            )
        })
        .collect();
    assert_eq!(found, expected);
    let printed = report.to_string();
    assert!(printed.contains("3 diverged"), "{printed}");
    assert!(
        printed
            .contains("workflow `v1-2` step 2: the history records `s_b`, the code now runs `s_c`"),
        "{printed}"
    );

    // The swap guarded with `patch`: the old histories take the old branch; new executions
    // record the marker and the new order; the check passes over both.
    VERSION.store(2, Ordering::SeqCst);
    let report = dbos_testkit::replay_check(&url, &all).await.unwrap();
    assert!(report.passed(), "{report}");
    let guarded = three_steps(4).id("v2-4").on(&dbos).await.unwrap();
    assert_eq!(guarded, ["a4", "c4", "b4"]);
    let report = dbos_testkit::replay_check(&url, &all).await.unwrap();
    assert_eq!(report.checked.len(), 4);
    assert!(report.passed(), "{report}");
    for c in &report.checked {
        assert!(
            matches!(c.end, ReplayEnd::Returned { .. }),
            "{}: {:?}",
            c.workflow_id,
            c.end
        );
    }
    // Once v2-4 exists, dropping the guard (the plain swap) breaks the v1 histories only.
    VERSION.store(1, Ordering::SeqCst);
    let report = dbos_testkit::replay_check(&url, &all).await.unwrap();
    let diverged: Vec<&str> = report
        .divergences()
        .map(|d| d.workflow_id.as_str())
        .collect();
    assert_eq!(diverged, ["v1-1", "v1-2", "v1-3", "v2-4"]);
    VERSION.store(2, Ordering::SeqCst);
    dbos.shutdown().await.unwrap();

    // An in-flight execution that has only run `s_a` (its later records removed, as if its
    // executor died there) is not broken by the swap: it replays to its frontier, and will
    // run the new order.
    let c = db.connect().await;
    c.batch_execute(
        "DELETE FROM dbos.operation_outputs WHERE workflow_uuid = 'v1-3' AND function_id > 1;
         DELETE FROM dbos.workflow_output WHERE workflow_uuid = 'v1-3';
         UPDATE dbos.workflow_status SET status = 'PENDING' WHERE workflow_uuid = 'v1-3';",
    )
    .await
    .unwrap();
    VERSION.store(1, Ordering::SeqCst);
    let in_flight = ListWorkflows::new()
        .name("three_steps")
        .status(Status::Pending);
    let report = dbos_testkit::replay_check(&url, &in_flight).await.unwrap();
    assert_eq!(report.checked.len(), 1);
    assert!(report.passed(), "{report}");
    assert_eq!(
        report.checked[0].end,
        ReplayEnd::Frontier {
            step_id: 2,
            next: "s_c".into()
        }
    );
    // With the guard, its frontier is the patch: a live execution records the marker there
    // and takes the new order.
    VERSION.store(2, Ordering::SeqCst);
    let report = dbos_testkit::replay_check(&url, &in_flight).await.unwrap();
    assert_eq!(
        report.checked[0].end,
        ReplayEnd::Frontier {
            step_id: 2,
            next: "DBOS.patch-swap-b-c".into()
        }
    );
}

#[dbos_testkit::test]
async fn the_command_line_entry_point_selects_and_reports(db: TestDatabase) {
    let url = db.url();
    let dbos = db.launch().await;
    for n in 1..=2 {
        two_steps(n).id(format!("cli-{n}")).on(&dbos).await.unwrap();
    }
    dbos.shutdown().await.unwrap();

    let report = dbos_core::cli::replay_check(args(&["-s", &url, "--workflow-id", "cli-2"]))
        .await
        .unwrap();
    assert_eq!(report.checked.len(), 1);
    assert_eq!(report.checked[0].workflow_id, "cli-2");
    assert_eq!(report.checked[0].replayed, 2);

    let report = dbos_core::cli::replay_check(args(&[
        "--sys-db-url",
        &url,
        "-n",
        "two_steps",
        "-S",
        "success",
        "--start-time=2000-01-01T00:00:00Z",
        "-l",
        "5",
    ]))
    .await
    .unwrap();
    assert_eq!(report.checked.len(), 2);
    assert!(report.passed(), "{report}");
    assert!(report
        .checked
        .iter()
        .all(|c| c.recorded_status == Status::Success));

    for (bad, says) in [
        (
            vec!["-s", &url, "--frobnicate"],
            "unknown option `--frobnicate`",
        ),
        (vec!["-s", &url, "-S", "DONE"], "unknown status `DONE`"),
        (vec!["-s", &url, "-t", "yesterday"], "not an RFC 3339 time"),
        (vec!["-s", &url, "-l", "many"], "not a whole number"),
        (vec!["-s"], "`-s` needs a value"),
    ] {
        let e = dbos_core::cli::replay_check(args(&bad)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains(says), "{bad:?}: {e}");
    }
}
