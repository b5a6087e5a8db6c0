//! Identity (issue 21 item 4): the authenticated user, roles and assumed role of a start are
//! stored in DBOS's columns, readable inside the workflow and its steps, inherited by
//! children, read back from the row after a recovery, and filterable in listings;
//! `#[workflow(required_roles = [..])]` refuses a start without a matching role with a typed
//! error, writing nothing.

use std::time::Duration;

use dbos_core::manage::ListWorkflows;
use dbos_core::{step, workflow, Dbos, Error, ErrorKind, Identity};
use dbos_testkit::crash::run_then_kill;
use dbos_testkit::runs::{bump, runs};
use dbos_testkit::TestDatabase;

/// What a workflow or step saw: user, roles, assumed role.
type Seen = (Option<String>, Vec<String>, Option<String>);

fn seen(i: &Identity) -> Seen {
    (
        i.user().map(str::to_owned),
        i.roles().to_vec(),
        i.assumed_role().map(str::to_owned),
    )
}

#[step]
async fn seen_in_step() -> Result<Seen, Error> {
    Ok(seen(&dbos_core::identity().await?))
}

#[workflow]
async fn child_sees() -> Result<Seen, Error> {
    Ok(seen(&dbos_core::identity().await?))
}

/// The parent's view, its step's, and its child's.
#[workflow]
async fn parent_sees() -> Result<(Seen, Seen, Seen), Error> {
    let own = seen(&dbos_core::identity().await?);
    let in_step = seen_in_step().await?;
    let child = child_sees().await?;
    Ok((own, in_step, child))
}

/// For the key `crash`, blocks (60 s) the first time it runs: a place to crash at.
#[step]
async fn gate(key: String) -> Result<(), Error> {
    if bump(&format!("{key}/gate")) == 1 && key == "crash" {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    Ok(())
}

#[workflow]
async fn gated_sees(key: String) -> Result<Seen, Error> {
    gate(key).await?;
    Ok(seen(&dbos_core::identity().await?))
}

#[workflow(required_roles = ["admin", "ops"])]
async fn admin_only() -> Result<Seen, Error> {
    Ok(seen(&dbos_core::identity().await?))
}

fn alice() -> Seen {
    (
        Some("alice".into()),
        vec!["support".into(), "admin".into()],
        Some("support".into()),
    )
}

async fn columns(
    db: &TestDatabase,
    id: &str,
) -> Option<(Option<String>, Option<String>, Option<String>)> {
    db.connect()
        .await
        .query_opt(
            "SELECT authenticated_user, authenticated_roles, assumed_role FROM dbos.workflow_status \
             WHERE workflow_uuid = $1",
            &[&id],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

#[dbos_testkit::test]
async fn the_identity_is_stored_readable_inherited_and_listed(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    let (own, in_step, child) = parent_sees()
        .id("i-parent")
        .authenticated("alice", ["support", "admin"])
        .assumed_role("support")
        .on(&dbos)
        .await
        .unwrap();
    assert_eq!(own, alice());
    assert_eq!(in_step, alice(), "a step reads its workflow's identity");
    assert_eq!(child, alice(), "a child inherits it");
    // DBOS's columns, roles as a JSON array.
    let stored = (
        Some("alice".to_owned()),
        Some(r#"["support","admin"]"#.to_owned()),
        Some("support".to_owned()),
    );
    assert_eq!(columns(&db, "i-parent").await.unwrap(), stored);
    assert_eq!(
        columns(&db, "i-parent-2").await.unwrap(),
        stored,
        "the child's row"
    );
    // Without an identity, nothing is stored and nothing is seen.
    let (own, _, _) = parent_sees().id("i-none").on(&dbos).await.unwrap();
    assert_eq!(own, (None, vec![], None));
    assert_eq!(columns(&db, "i-none").await.unwrap(), (None, None, None));
    // Listing filters by user.
    let mut listed: Vec<String> = dbos
        .list_workflows(&ListWorkflows::new().user("alice"))
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.workflow_id)
        .collect();
    listed.sort();
    assert_eq!(listed, vec!["i-parent", "i-parent-2"]);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_recovered_workflow_reads_its_identity_from_its_row(db: TestDatabase) {
    run_then_kill(
        db.config("testapp"),
        |dbos| async move {
            gated_sees("crash".into())
                .id("i-crash")
                .authenticated("alice", ["support", "admin"])
                .assumed_role("support")
                .on(&dbos)
                .start()
                .await
                .unwrap();
        },
        "the workflow to block in its gate",
        || runs("crash/gate") == 1,
    )
    .await;
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    let recovered = tokio::time::timeout(
        Duration::from_secs(30),
        dbos.retrieve_workflow::<Seen, Error>("i-crash").result(),
    )
    .await
    .expect("the recovered workflow finishes")
    .unwrap();
    assert_eq!(runs("crash/gate"), 2, "it was recovered");
    assert_eq!(
        recovered,
        alice(),
        "the recovered run has its identity back"
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn required_roles_refuse_a_start_without_one_and_write_nothing(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    let e = admin_only().id("i-anon").on(&dbos).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAuthorized, "{e:?}");
    assert!(
        e.message().contains("started without authentication"),
        "{e}"
    );
    let e = admin_only()
        .id("i-viewer")
        .authenticated("bob", ["viewer"])
        .on(&dbos)
        .start()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAuthorized, "{e:?}");
    assert!(
        e.message()
            .contains(r#"requires one of the roles ["admin", "ops"]"#),
        "{e}"
    );
    assert_eq!(columns(&db, "i-anon").await, None, "nothing written");
    assert_eq!(columns(&db, "i-viewer").await, None, "nothing written");

    // A matching role: it runs, assuming the first required role the user has.
    let ok = admin_only()
        .id("i-ops")
        .authenticated("carol", ["viewer", "ops"])
        .on(&dbos)
        .await
        .unwrap();
    assert_eq!(
        ok,
        (
            Some("carol".into()),
            vec!["viewer".into(), "ops".into()],
            Some("ops".into())
        )
    );

    // Bad input: typed errors, nothing written.
    let e = child_sees()
        .id("i-empty")
        .authenticated("dave", Vec::<String>::new())
        .on(&dbos)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e:?}");
    assert!(e.message().contains("empty list"), "{e}");
    let e = child_sees()
        .id("i-blank")
        .authenticated(" ", ["ops"])
        .on(&dbos)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e:?}");
    assert_eq!(columns(&db, "i-empty").await, None);
    assert_eq!(columns(&db, "i-blank").await, None);
    dbos.shutdown().await.unwrap();
}

const PY_IDENTITY: &str = r#"
import sys, json
from dbos import DBOSClient
c = DBOSClient(system_database_url=sys.argv[1])
found = c.list_workflows(user="alice")
print(json.dumps(sorted([[w.workflow_id, w.authenticated_user, w.authenticated_roles, w.assumed_role] for w in found])))
c.destroy()
"#;

/// DBOS Python's client lists our workflows by user and reads the roles as it writes them.
#[dbos_testkit::test]
async fn dbos_python_lists_our_workflows_by_user_with_their_roles(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    child_sees()
        .id("i-py")
        .authenticated("alice", ["support", "admin"])
        .assumed_role("support")
        .on(&dbos)
        .await
        .unwrap();
    child_sees().id("i-py-anon").on(&dbos).await.unwrap();
    let out = dbos_testkit::python::run_python(PY_IDENTITY, &[&db.url()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        found,
        serde_json::json!([["i-py", "alice", ["support", "admin"], "support"]])
    );
    dbos.shutdown().await.unwrap();
}
