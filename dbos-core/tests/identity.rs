//! Identity (issue 21 item 4): the authenticated user, roles and assumed role of a start are
//! stored in DBOS's columns, readable inside the workflow and its steps, inherited by
//! children, read back from the row after a recovery, and filterable in listings;
//! `#[workflow(required_roles = [..])]` refuses a start without a matching role with a typed
//! error, writing nothing.

use std::time::Duration;

use dbos_core::manage::ListWorkflows;
use dbos_core::{step, workflow, Client, Dbos, Error, ErrorKind, Identity, Queue, Status};
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

/// For a key ending in `crash`, blocks (60 s) the first time it runs: a place to crash at.
#[step]
async fn gate(key: String) -> Result<(), Error> {
    if bump(&format!("{key}/gate")) == 1 && key.ends_with("crash") {
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
    bump(&format!(
        "{}/body",
        dbos_core::workflow_id().unwrap_or_default()
    ));
    Ok(seen(&dbos_core::identity().await?))
}

/// The queue the client enqueues onto (served by the tests' executors).
static SERVED: Queue = Queue::new("identity-served");

async fn client(db: &TestDatabase) -> Client {
    Client::builder(db.url())
        .application_name("testapp")
        .connect()
        .await
        .unwrap()
}

/// Relaunches after a crash and returns what the recovered workflow `id` (whose gate is
/// keyed `key`) saw, checking it was recovered (its gate ran again).
async fn relaunch_and_recover(config: dbos_core::Config, id: &str, key: &str) -> Seen {
    let dbos = Dbos::launch(config).await.unwrap();
    let recovered = tokio::time::timeout(
        Duration::from_secs(60),
        dbos.retrieve_workflow::<Seen, Error>(id).result(),
    )
    .await
    .expect("the recovered workflow finishes")
    .unwrap();
    assert_eq!(runs(&format!("{key}/gate")), 2, "it was recovered");
    dbos.shutdown().await.unwrap();
    recovered
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
    assert_eq!(
        relaunch_and_recover(db.config("testapp"), "i-crash", "crash").await,
        alice(),
        "the recovered run has its identity back"
    );
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

#[dbos_testkit::test]
async fn a_client_enqueue_carries_its_identity_to_the_workflow_its_child_and_listings(
    db: TestDatabase,
) {
    let dbos = Dbos::launch(db.config("testapp").queue(&SERVED))
        .await
        .unwrap();
    let client = client(&db).await;
    // A typed call: the options chain on the client's enqueue.
    let handle = client
        .enqueue_workflow(parent_sees().id("ic-parent"), &SERVED)
        .authenticated("alice", ["support", "admin"])
        .assumed_role("support")
        .await
        .unwrap();
    let (own, in_step, child) = tokio::time::timeout(Duration::from_secs(60), handle.result())
        .await
        .expect("the enqueued workflow finishes")
        .unwrap();
    assert_eq!(own, alice(), "read inside the dequeued workflow");
    assert_eq!(in_step, alice(), "and in its step");
    assert_eq!(child, alice(), "its child inherits it");
    let stored = (
        Some("alice".to_owned()),
        Some(r#"["support","admin"]"#.to_owned()),
        Some("support".to_owned()),
    );
    assert_eq!(columns(&db, "ic-parent").await.unwrap(), stored);
    assert_eq!(
        columns(&db, "ic-parent-2").await.unwrap(),
        stored,
        "the child's row"
    );
    // Set on the call itself, the identity is kept too; and by name.
    client
        .enqueue_workflow(
            child_sees().id("ic-on-call").authenticated("erin", ["ops"]),
            &SERVED,
        )
        .await
        .unwrap();
    let by_name = client
        .enqueue("child_sees", "identity-served")
        .id("ic-by-name")
        .authenticated("frank", ["viewer"])
        .returning::<Seen, Error>()
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(60), by_name.result())
            .await
            .expect("the workflow enqueued by name finishes")
            .unwrap(),
        (Some("frank".into()), vec!["viewer".into()], None)
    );
    assert_eq!(
        columns(&db, "ic-on-call").await.unwrap(),
        (Some("erin".into()), Some(r#"["ops"]"#.into()), None)
    );
    // Listing filters by the user a client gave.
    let mut listed: Vec<String> = dbos
        .list_workflows(&ListWorkflows::new().user("alice"))
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.workflow_id)
        .collect();
    listed.sort();
    assert_eq!(listed, vec!["ic-parent", "ic-parent-2"]);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_client_enqueued_workflow_keeps_its_identity_across_recovery(db: TestDatabase) {
    let config = db.config("testapp").queue(&SERVED);
    let url = db.url();
    run_then_kill(
        config.clone(),
        |_dbos| async move {
            let client = Client::builder(url)
                .application_name("testapp")
                .connect()
                .await
                .unwrap();
            client
                .enqueue_workflow(gated_sees("client-crash".into()).id("ic-crash"), &SERVED)
                .authenticated("alice", ["support", "admin"])
                .assumed_role("support")
                .await
                .unwrap();
        },
        "the dequeued workflow to block in its gate",
        || runs("client-crash/gate") == 1,
    )
    .await;
    assert_eq!(
        relaunch_and_recover(config, "ic-crash", "client-crash").await,
        alice(),
        "the recovered run has the client's identity"
    );
}

#[dbos_testkit::test]
async fn required_roles_refuse_a_client_enqueue_without_one_and_write_nothing(db: TestDatabase) {
    // The executor does not serve the queue: what is written stays as written.
    let dbos = Dbos::launch(db.config("testapp")).await.unwrap();
    let client = client(&db).await;
    let e = client
        .enqueue_workflow(admin_only().id("ic-anon"), &SERVED)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAuthorized, "{e:?}");
    assert!(
        e.message().contains("started without authentication"),
        "{e}"
    );
    let e = client
        .enqueue_workflow(admin_only().id("ic-viewer"), &SERVED)
        .authenticated("bob", ["viewer"])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotAuthorized, "{e:?}");
    assert!(
        e.message()
            .contains(r#"requires one of the roles ["admin", "ops"]"#),
        "{e}"
    );
    assert_eq!(columns(&db, "ic-anon").await, None, "nothing written");
    assert_eq!(columns(&db, "ic-viewer").await, None, "nothing written");
    // Bad input: the in-process checks, typed, nothing written.
    let e = client
        .enqueue("child_sees", "identity-served")
        .id("ic-blank")
        .authenticated(" ", ["ops"])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e:?}");
    assert_eq!(columns(&db, "ic-blank").await, None);
    // A matching role: written, assuming the first required role the user has.
    client
        .enqueue_workflow(admin_only().id("ic-ops"), &SERVED)
        .authenticated("carol", ["viewer", "ops"])
        .await
        .unwrap();
    assert_eq!(
        columns(&db, "ic-ops").await.unwrap(),
        (
            Some("carol".into()),
            Some(r#"["viewer","ops"]"#.into()),
            Some("ops".into())
        )
    );
    dbos.shutdown().await.unwrap();
}

/// A client that enqueues by name cannot know `required_roles`: the executor checks the
/// row's identity before the body runs (as DBOS does at every invocation) and records the
/// refusal as the workflow's error; a matching role runs, assuming that role.
#[dbos_testkit::test]
async fn a_workflow_enqueued_by_name_without_a_required_role_fails_before_its_body_runs(
    db: TestDatabase,
) {
    let dbos = Dbos::launch(db.config("testapp").queue(&SERVED))
        .await
        .unwrap();
    let client = client(&db).await;
    for (id, identity) in [("ibn-anon", None), ("ibn-viewer", Some(["viewer"]))] {
        let mut enqueue = client.enqueue("admin_only", "identity-served").id(id);
        if let Some(roles) = identity {
            enqueue = enqueue.authenticated("bob", roles);
        }
        let handle = enqueue.returning::<Seen, Error>().await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(60), handle.result())
            .await
            .expect("the refused workflow gets an outcome")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotAuthorized, "{id}: {e:?}");
        let status = dbos
            .retrieve_workflow::<Seen, Error>(id)
            .status()
            .await
            .unwrap();
        assert_eq!(status, Status::Error, "{id}");
        assert_eq!(runs(&format!("{id}/body")), 0, "{id}: the body never ran");
    }
    let allowed = client
        .enqueue("admin_only", "identity-served")
        .id("ibn-ops")
        .authenticated("carol", ["viewer", "ops"])
        .returning::<Seen, Error>()
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(60), allowed.result())
            .await
            .expect("the authorized workflow finishes")
            .unwrap(),
        (
            Some("carol".into()),
            vec!["viewer".into(), "ops".into()],
            Some("ops".into())
        ),
        "it runs as the required role the user has"
    );
    assert_eq!(runs("ibn-ops/body"), 1);
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
