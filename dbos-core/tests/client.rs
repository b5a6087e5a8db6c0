//! The `Client`: connects by URL without creating or migrating anything, enqueues the same
//! rows an in-process enqueue writes (by name, or through the workflow function's own
//! signature), follows results through typed handles, and operates workflows that run in
//! another runtime.

use std::collections::HashMap;
use std::time::Duration;

use dbos_core::manage::{ForkOptions, ListWorkflows, Resumed, RewindOptions};
use dbos_core::{step, workflow, Client, Dbos, Error, ErrorKind, Queue, Status};
use dbos_testkit::crash::eventually;
use dbos_testkit::runs::{bump, runs as count};
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

#[workflow]
async fn job(n: i64) -> Result<i64, Error> {
    Ok(n * 10)
}

#[step]
async fn first(key: String) -> Result<(), Error> {
    bump(&format!("{key}/first"));
    Ok(())
}

#[step]
async fn slow(key: String, ms: u64) -> Result<(), Error> {
    bump(&format!("{key}/slow"));
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(())
}

#[step]
async fn last(key: String) -> Result<(), Error> {
    bump(&format!("{key}/last"));
    Ok(())
}

#[workflow]
async fn three_steps(key: String, ms: u64) -> Result<String, Error> {
    first(key.clone()).await?;
    slow(key.clone(), ms).await?;
    last(key.clone()).await?;
    Ok(key)
}

static BYTES: Queue = Queue::new("bytes");
static SERVED: Queue = Queue::new("served");
static SPLIT: Queue = Queue::new("split").partition_concurrency(1);

#[dbos_testkit::test]
async fn connecting_checks_the_database_and_schema_and_creates_nothing(db: TestDatabase) {
    // No such database: reported, not created.
    let missing = db.sibling_url("nodb");
    let e = Client::connect(missing.clone()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Database, "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    let n: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&format!("{}_nodb", db.name())],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a client never creates a database");

    // An empty database: no schema, and the client does not migrate.
    let e = Client::connect(db.url()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema, "{e}");
    assert!(e.to_string().contains("dbos-rs migrate"), "{e}");
    let schemas: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbos'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schemas, 0);

    // An older schema: says so, and how to migrate.
    db.launch().await.shutdown().await.unwrap();
    let sql = db.connect().await;
    sql.batch_execute("UPDATE dbos.dbos_migrations SET version = 110")
        .await
        .unwrap();
    let e = Client::connect(db.url()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Schema, "{e}");
    assert!(
        e.to_string().contains("version 110") && e.to_string().contains("migrate"),
        "{e}"
    );
    sql.batch_execute("UPDATE dbos.dbos_migrations SET version = 125")
        .await
        .unwrap();
    let client = Client::builder(db.url())
        .application_name("testapp")
        .pool_size(2)
        .connect()
        .await
        .unwrap();
    assert_eq!(client.schema_version(), 125);
    assert_eq!(client.application_name(), Some("testapp"));
    // What a client prints (its Debug, its builder's, its errors) names the database but
    // never its password. (Checked: printing the raw URL in either Debug fails this.)
    let url = db.url();
    let password = {
        let rest = url
            .strip_prefix("postgres://postgres:")
            .expect("the test URL carries a password");
        rest[..rest.find('@').expect("user:password@host")].to_owned()
    };
    assert!(
        password.len() >= 8,
        "a password that cannot occur by chance"
    );
    let builder = Client::builder(url.clone()).application_name("testapp");
    let printed = [
        format!("{client:?}"),
        format!("{builder:?}"),
        client.system_database().redacted_url().to_owned(),
        Client::connect(missing.clone())
            .await
            .unwrap_err()
            .to_string(),
    ];
    for text in &printed {
        assert!(!text.contains(&password), "the password is printed: {text}");
    }
    for text in &printed[..3] {
        assert!(
            text.contains(&format!(
                "postgres://postgres:***@127.0.0.1:{}/{}",
                db.cluster().postgres().port(),
                db.name()
            )),
            "the database is named, its password masked: {text}"
        );
    }

    for bad in [
        Client::builder("not a url").connect().await.unwrap_err(),
        Client::builder(db.url())
            .pool_size(0)
            .connect()
            .await
            .unwrap_err(),
        Client::builder(db.url())
            .application_name("bad name")
            .connect()
            .await
            .unwrap_err(),
    ] {
        assert_eq!(bad.kind(), ErrorKind::Config, "{bad}");
    }
}

#[dbos_testkit::test]
async fn a_client_enqueue_writes_the_rows_an_in_process_enqueue_writes(db: TestDatabase) {
    // Nobody serves `bytes`: the rows stay as written.
    let dbos = db.launch().await;
    let client = Client::builder(db.url())
        .application_name("testapp")
        .connect()
        .await
        .unwrap();
    job(5)
        .id("in-process")
        .timeout(Duration::from_secs(90))
        .on(&dbos)
        .enqueue(&BYTES)
        .priority(3)
        .deduplication_id("dedup-a")
        .delay(Duration::from_secs(3600))
        .app_version("v7")
        .await
        .unwrap();
    client
        .enqueue_workflow(
            job(5).id("by-call").timeout(Duration::from_secs(90)),
            &BYTES,
        )
        .priority(3)
        .deduplication_id("dedup-b")
        .delay(Duration::from_secs(3600))
        .app_version("v7")
        .await
        .unwrap();
    client
        .enqueue("job", "bytes")
        .arg(&5)
        .id("by-name")
        .timeout(Duration::from_secs(90))
        .priority(3)
        .deduplication_id("dedup-c")
        .delay(Duration::from_secs(3600))
        .app_version("v7")
        .await
        .unwrap();
    job(6)
        .id("plain-in")
        .on(&dbos)
        .enqueue(&BYTES)
        .app_version("v7")
        .await
        .unwrap();
    client
        .enqueue("job", "bytes")
        .arg(&6)
        .id("plain-client")
        .app_version("v7")
        .await
        .unwrap();

    let sql = db.connect().await;
    let row = |id: &'static str| {
        let sql = &sql;
        async move {
            let r = sql
                .query_one(
                    "SELECT to_jsonb(ws) - ARRAY['workflow_uuid', 'created_at', 'updated_at', 'creator_xid',
                                                 'deduplication_id', 'delay_until_epoch_ms'],
                            ws.delay_until_epoch_ms, wi.inputs, wi.retention_timestamp IS NOT NULL
                       FROM dbos.workflow_status ws JOIN dbos.workflow_input wi USING (workflow_uuid)
                      WHERE workflow_uuid = $1",
                    &[&id],
                )
                .await
                .unwrap();
            (
                r.get::<_, Value>(0),
                r.get::<_, Option<i64>>(1),
                r.get::<_, String>(2),
                r.get::<_, bool>(3),
            )
        }
    };
    let reference = row("in-process").await;
    assert_eq!(reference.0["status"], "DELAYED");
    assert_eq!(reference.0["application_version"], "v7");
    assert_eq!(reference.0["workflow_timeout_ms"], 90_000);
    assert_eq!(reference.2, r#"{"positionalArgs":[5],"namedArgs":{}}"#);
    for id in ["by-call", "by-name"] {
        let other = row(id).await;
        assert_eq!(other.0, reference.0, "{id}: the same columns");
        assert_eq!(other.2, reference.2, "{id}: the same input text");
        assert_eq!(other.3, reference.3);
        let (a, b) = (reference.1.unwrap(), other.1.unwrap());
        assert!((a - b).abs() < 60_000, "{id}: the same delay");
    }
    let plain = row("plain-in").await;
    assert_eq!(row("plain-client").await.0, plain.0);
    assert_eq!(row("plain-client").await.2, plain.2);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn client_handles_follow_workflows_run_elsewhere(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").queue(&SERVED).queue(&SPLIT))
        .await
        .unwrap();
    let client = Client::connect(db.url()).await.unwrap();
    // Typed through the workflow's own signature.
    let h = client
        .enqueue_workflow(job(7).id("typed"), &SERVED)
        .await
        .unwrap();
    let out: i64 = h.result().await.unwrap();
    assert_eq!(out, 70);
    assert_eq!(h.status().await.unwrap(), Status::Success);
    // By name, typed on request.
    let h = client
        .enqueue("job", "served")
        .arg(&8)
        .returning::<i64, Error>()
        .await
        .unwrap();
    assert_eq!(h.await.unwrap(), 80);
    // Unclaimed when the client has no application: the executor claims it.
    let untyped = client
        .enqueue("job", "served")
        .args([json!(9)])
        .await
        .unwrap();
    assert_eq!(untyped.result().await.unwrap(), json!(90));
    let info = client.get_workflow(untyped.id()).await.unwrap();
    assert_eq!(info.application_name.as_deref(), Some("testapp"));
    // Retrieve by id from anywhere.
    assert_eq!(
        client
            .retrieve_workflow::<i64, Error>("typed")
            .result()
            .await
            .unwrap(),
        70
    );
    assert_eq!(
        client.get_workflow_status("typed").await.unwrap(),
        Status::Success
    );
    // Idempotent by id.
    let again = client
        .enqueue_workflow(job(1).id("typed"), &SERVED)
        .await
        .unwrap();
    assert_eq!(again.result().await.unwrap(), 70);
    // Deduplication: refused, or the holder's handle on request.
    let parked = |id: &'static str| {
        client
            .enqueue("job", "parked")
            .arg(&1)
            .id(id)
            .deduplication_id("once")
    };
    parked("dup-1").await.unwrap();
    assert_eq!(
        parked("dup-2").await.unwrap_err().kind(),
        ErrorKind::QueueDeduplicated
    );
    let holder = parked("dup-3")
        .return_existing_on_duplicate()
        .await
        .unwrap();
    assert_eq!(holder.id(), "dup-1");

    // Bad input is refused before anything is written.
    let refused = [
        client.enqueue("job", "split").arg(&1).await.unwrap_err(),
        client
            .enqueue("job", "served")
            .arg(&1)
            .partition_key("k")
            .await
            .unwrap_err(),
        client.enqueue("", "served").await.unwrap_err(),
        client.enqueue("job", " ").await.unwrap_err(),
        client
            .enqueue("job", "served")
            .priority(-1)
            .await
            .unwrap_err(),
        client
            .enqueue("job", "served")
            .return_existing_on_duplicate()
            .await
            .unwrap_err(),
        client
            .enqueue("job", "parked")
            .partition_key("k")
            .deduplication_id("d")
            .await
            .unwrap_err(),
        client.enqueue("job", "served").id(" ").await.unwrap_err(),
    ];
    for e in refused {
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
    let on_partition = client
        .enqueue("job", "split")
        .arg(&3)
        .partition_key("tenant-1")
        .returning::<i64, Error>()
        .await
        .unwrap();
    assert_eq!(on_partition.await.unwrap(), 30);
    let e = client
        .enqueue("three_steps", "parked")
        .id("typed")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConflictingWorkflow, "{e}");
    // An argument that does not encode.
    let mut bad = HashMap::new();
    bad.insert((1, 2), 3);
    assert_eq!(
        client
            .enqueue("job", "served")
            .arg(&bad)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Serialization
    );
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn a_client_operates_workflows_running_in_another_runtime(db: TestDatabase) {
    let dbos = Dbos::launch(
        db.config("testapp")
            .cancel_poll_interval(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let client = Client::connect(db.url()).await.unwrap();
    let h = three_steps("op".into(), 700)
        .id("op")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually(
        "the slow step to start",
        Duration::from_secs(10),
        || async { (count("op/slow") == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        client
            .list_workflows(&ListWorkflows::new().status(Status::Pending))
            .await
            .unwrap()
            .len(),
        1
    );
    client.cancel_workflow("op").await.unwrap();
    // The runtime notices and stops before the next step: the awaiting caller is answered.
    let e = tokio::time::timeout(Duration::from_secs(5), h.result())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AwaitedWorkflowCancelled, "{e}");
    let client_handle = client.retrieve_workflow::<String, Error>("op");
    assert_eq!(
        client_handle.result().await.unwrap_err().kind(),
        ErrorKind::AwaitedWorkflowCancelled
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(count("op/last"), 0);
    let steps = client.list_workflow_steps("op").await.unwrap();
    assert_eq!(steps.len(), 1, "{steps:?}");

    // Resumed by the client, the runtime continues from the last checkpoint.
    assert_eq!(
        client.resume_workflow("op").await.unwrap(),
        Resumed::Enqueued {
            queue: "_dbos_internal_queue".into()
        }
    );
    assert_eq!(client_handle.result().await.unwrap(), "op");
    assert_eq!(
        (count("op/first"), count("op/slow"), count("op/last")),
        (1, 2, 1)
    );
    // Forked by the client from step 3: only the last step runs again.
    let fork = client
        .fork_workflow("op", 3, &ForkOptions::new().workflow_id("op-fork"))
        .await
        .unwrap();
    assert_eq!(fork.typed::<String, Error>().result().await.unwrap(), "op");
    assert_eq!(
        (count("op/first"), count("op/slow"), count("op/last")),
        (1, 2, 2)
    );
    // Rewound by the client to step 2.
    client
        .rewind_workflow("op", 2, &RewindOptions::new())
        .await
        .unwrap();
    assert_eq!(client_handle.result().await.unwrap(), "op");
    assert_eq!(
        (count("op/first"), count("op/slow"), count("op/last")),
        (1, 3, 3)
    );
    client.delete_workflow("op-fork").await.unwrap();
    assert!(
        client.list_queues().await.unwrap().is_empty(),
        "no queue is registered, and none holds active work"
    );
    assert!(!client.list_application_versions().await.unwrap().is_empty());

    // Unknown ids are a typed error everywhere.
    let nobody = "nobody";
    let errors = [
        client.get_workflow(nobody).await.unwrap_err(),
        client.list_workflow_steps(nobody).await.unwrap_err(),
        client.cancel_workflow(nobody).await.unwrap_err(),
        client
            .cancel_workflow_and_descendants(nobody)
            .await
            .unwrap_err(),
        client.resume_workflow(nobody).await.unwrap_err(),
        client
            .fork_workflow(nobody, 1, &ForkOptions::new())
            .await
            .unwrap_err(),
        client
            .restart_workflow(nobody, &ForkOptions::new())
            .await
            .unwrap_err(),
        client
            .rewind_workflow(nobody, 1, &RewindOptions::new())
            .await
            .unwrap_err(),
        client.delete_workflow(nobody).await.unwrap_err(),
        client
            .delete_workflow_and_descendants(nobody)
            .await
            .unwrap_err(),
        client.get_workflow_status(nobody).await.unwrap_err(),
        client
            .retrieve_workflow::<Value, Error>(nobody)
            .result()
            .await
            .unwrap_err(),
    ];
    for e in errors {
        assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow, "{e}");
    }
    dbos.shutdown().await.unwrap();
}
