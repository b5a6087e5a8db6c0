//! Listing workflows and their steps: DBOS's filters, typed rows, inputs and outcomes decoded
//! where they decode and kept as text where they do not (never an error for one bad row),
//! and a typed `NonExistentWorkflow` for unknown ids.

use std::time::{Duration, SystemTime};

use dbos_core::manage::{ListWorkflows, Payload};
use dbos_core::{step, workflow, Error, ErrorKind, Queue, Status};
use dbos_testkit::TestDatabase;
use serde_json::{json, Value};

#[step]
async fn upper(s: String) -> Result<String, Error> {
    Ok(s.to_uppercase())
}

#[step]
async fn refuse(reason: String) -> Result<(), Error> {
    Err(Error::new(ErrorKind::WorkflowFailed, reason))
}

#[workflow]
async fn greet(name: String) -> Result<String, Error> {
    upper(name).await
}

#[workflow]
async fn fails(code: i32) -> Result<(), Error> {
    let _ = refuse(format!("step refused {code}")).await;
    Err(Error::new(
        ErrorKind::WorkflowFailed,
        format!("failure {code}"),
    ))
}

#[workflow]
async fn kid(n: i64) -> Result<i64, Error> {
    Ok(n * 2)
}

#[workflow]
async fn family(n: i64) -> Result<i64, Error> {
    let doubled = upper(format!("x{n}")).await?;
    let child = kid(n).start().await?;
    let r = child.result().await?;
    dbos_core::sleep(Duration::from_millis(5)).await?;
    Ok(r + doubled.len() as i64)
}

/// Nobody serves this queue: what is enqueued on it stays `ENQUEUED`.
static PARKED: Queue = Queue::new("parked");
/// Served by the runtime in `only_dequeued_workflows_have_a_dequeue_time`.
static SERVED: Queue = Queue::new("served");

fn ids(list: &[dbos_core::manage::WorkflowInfo]) -> Vec<&str> {
    list.iter().map(|w| w.workflow_id.as_str()).collect()
}

#[dbos_testkit::test]
async fn listing_filters_and_decodes(db: TestDatabase) {
    let dbos = db.launch().await;
    greet("a".into()).id("list-a").on(&dbos).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    greet("b".into()).id("list-b").on(&dbos).await.unwrap();
    fails(3).id("list-f").on(&dbos).await.unwrap_err();
    greet("q".into())
        .id("list-q")
        .on(&dbos)
        .enqueue(&PARKED)
        .await
        .unwrap();
    let sql = db.connect().await;
    // A row written by DBOS Python's pickle serializer, and one whose JSON is broken.
    sql.batch_execute(
        "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, serialization, application_name, created_at)
         VALUES ('list-pickle', 'SUCCESS', 'py_wf', 'py_pickle', 'testapp', (EXTRACT(epoch FROM now()) * 1000)::bigint),
                ('list-broken', 'ERROR', 'broken_wf', 'portable_json', NULL, (EXTRACT(epoch FROM now()) * 1000)::bigint + 1);
         INSERT INTO dbos.workflow_input (workflow_uuid, inputs) VALUES ('list-pickle', 'gASVGwAAAAAAAAB9lCiMBGFyZ3OUSwGFlIwGa3dhcmdzlH2UdS4=');
         INSERT INTO dbos.workflow_output (workflow_uuid, output, error)
         VALUES ('list-pickle', 'gARLKS4=', NULL), ('list-broken', NULL, '{not json');
         UPDATE dbos.workflow_status SET attributes = '{\"tenant\": \"acme\", \"tier\": 1}' WHERE workflow_uuid = 'list-a';
         -- Another application's workflow: not in this runtime's default scope.
         INSERT INTO dbos.workflow_status (workflow_uuid, status, name, application_name) VALUES ('list-other', 'SUCCESS', 'x', 'otherapp');",
    )
    .await
    .unwrap();

    let all = dbos.list_workflows(&ListWorkflows::new()).await.unwrap();
    assert_eq!(
        ids(&all),
        vec![
            "list-a",
            "list-b",
            "list-f",
            "list-q",
            "list-pickle",
            "list-broken"
        ],
        "oldest first, this application's and unclaimed rows"
    );

    // Decoded input and output.
    let a = &all[0];
    assert_eq!(a.status, Status::Success);
    assert_eq!(a.name, "greet");
    assert_eq!(
        a.input
            .as_ref()
            .and_then(|i| i.decoded())
            .unwrap()
            .positional_args,
        vec![json!("a")]
    );
    assert_eq!(a.output, Some(Payload::Decoded(json!("A"))));
    assert_eq!(a.output_as::<String>().unwrap().as_deref(), Some("A"));
    assert_eq!(a.attributes, Some(json!({"tenant": "acme", "tier": 1})));
    assert_eq!(a.recovery_attempts, 1);
    assert!(a.completed_at.is_some());
    // The error of a failed workflow.
    let f = all.iter().find(|w| w.workflow_id == "list-f").unwrap();
    let error = f.error.as_ref().and_then(|e| e.decoded()).unwrap();
    assert!(error.message.contains("failure 3"), "{error:?}");
    // Rows this library cannot decode are listed with their text, not refused.
    let pickle = all.iter().find(|w| w.workflow_id == "list-pickle").unwrap();
    match &pickle.output {
        Some(Payload::Raw {
            text,
            serialization,
            reason,
        }) => {
            assert_eq!(text, "gARLKS4=");
            assert_eq!(serialization.as_deref(), Some("py_pickle"));
            assert!(reason.contains("py_pickle"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(pickle.input.as_ref().unwrap().raw_text().is_some());
    let broken = all.iter().find(|w| w.workflow_id == "list-broken").unwrap();
    assert_eq!(broken.error.as_ref().unwrap().raw_text(), Some("{not json"));
    assert!(pickle.output_as::<i64>().is_err());
    // DBOS's JSON: input as args/kwargs, the error as its message, raw text kept.
    let j = a.to_dbos_json();
    assert_eq!(j["input"], json!({"args": ["a"], "kwargs": {}}));
    assert_eq!(j["output"], json!("A"));
    assert_eq!(j["status"], "SUCCESS");
    for key in [
        "workflow_id",
        "app_version",
        "executor_id",
        "created_at",
        "dequeued_at",
        "forked_from",
        "parent_workflow_id",
        "recovery_attempts",
    ] {
        assert!(j.get(key).is_some(), "missing {key}: {j}");
    }
    assert_eq!(
        f.to_dbos_json()["error"],
        json!(error.message),
        "the error as its message"
    );
    assert_eq!(pickle.to_dbos_json()["output"], json!("gARLKS4="));

    let list = |q: ListWorkflows| {
        let dbos = dbos.clone();
        async move { dbos.list_workflows(&q).await.unwrap() }
    };
    assert_eq!(
        ids(&list(ListWorkflows::new().status(Status::Error)).await),
        vec!["list-f", "list-broken"]
    );
    assert_eq!(
        ids(&list(
            ListWorkflows::new()
                .status(Status::Success)
                .status(Status::Enqueued)
                .name("greet")
        )
        .await),
        vec!["list-a", "list-b", "list-q"]
    );
    assert_eq!(
        ids(&list(ListWorkflows::new().id_prefix("list-b")).await),
        vec!["list-b", "list-broken"]
    );
    assert_eq!(
        ids(&list(ListWorkflows::new().id_prefix("list_")).await),
        Vec::<&str>::new(),
        "`_` is not a wildcard"
    );
    assert_eq!(
        ids(&list(ListWorkflows::new().id("list-q").id("list-a")).await),
        vec!["list-a", "list-q"]
    );
    assert_eq!(ids(&list(ListWorkflows::queued()).await), vec!["list-q"]);
    assert_eq!(
        ids(&list(ListWorkflows::new().queue("parked")).await),
        vec!["list-q"]
    );
    assert_eq!(
        ids(&list(ListWorkflows::new().created_before(between)).await),
        vec!["list-a"]
    );
    assert_eq!(
        ids(&list(
            ListWorkflows::new()
                .created_after(between)
                .name("greet")
                .executor_id(dbos.executor_id())
        )
        .await),
        vec!["list-b"]
    );
    assert_eq!(
        ids(&list(ListWorkflows::new().completed_before(between)).await),
        vec!["list-a"]
    );
    assert_eq!(
        ids(&list(ListWorkflows::new().app_version(dbos.application_version())).await),
        vec!["list-a", "list-b", "list-f", "list-q"]
    );
    assert_eq!(
        ids(&list(ListWorkflows::new().attributes(json!({"tenant": "acme"}))).await),
        vec!["list-a"]
    );
    assert_eq!(
        ids(&list(ListWorkflows::new().attributes(json!({"tenant": "other"}))).await),
        Vec::<&str>::new()
    );
    assert_eq!(
        ids(&list(ListWorkflows::new().newest_first().limit(2)).await),
        vec!["list-broken", "list-pickle"]
    );
    assert_eq!(
        ids(&list(ListWorkflows::new().limit(2).offset(1)).await),
        vec!["list-b", "list-f"]
    );
    assert_eq!(
        ids(&list(ListWorkflows::new().application_name("otherapp")).await).len(),
        2,
        "its row and the unclaimed one"
    );
    assert_eq!(
        ids(&list(ListWorkflows::new().id("list-other")).await),
        vec!["list-other"],
        "ids are global"
    );
    let light = list(
        ListWorkflows::new()
            .id("list-a")
            .without_input()
            .without_output(),
    )
    .await;
    assert_eq!(
        (light[0].input.clone(), light[0].output.clone()),
        (None, None)
    );
    // Only a dequeue sets the dequeue time, as in DBOS: direct starts have none, and
    // `list-q` was never dequeued.
    assert_eq!(
        ids(&list(ListWorkflows::new().dequeued_after(between)).await),
        Vec::<&str>::new()
    );

    // Queries that cannot mean what they say are refused.
    for bad in [
        ListWorkflows::new().limit(0),
        ListWorkflows::new().attributes(json!(["tenant"])),
        ListWorkflows::new()
            .created_after(SystemTime::now())
            .created_before(between),
        ListWorkflows::new().name(" "),
    ] {
        let e = dbos.list_workflows(&bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }

    let got = dbos.get_workflow("list-b").await.unwrap();
    assert_eq!(got.output, Some(Payload::Decoded(json!("B"))));
    let e = dbos.get_workflow("nobody").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn steps_list_outputs_errors_children_and_times(db: TestDatabase) {
    let dbos = db.launch().await;
    let started = dbos_core::codec::format_rfc3339(SystemTime::now());
    family(4).id("fam").on(&dbos).await.unwrap();
    let steps = dbos.list_workflow_steps("fam").await.unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s.function_name.as_str()).collect();
    assert_eq!(names, vec!["upper", "kid", "DBOS.getResult", "DBOS.sleep"]);
    assert_eq!(
        steps.iter().map(|s| s.function_id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(steps[0].output, Some(Payload::Decoded(json!("X4"))));
    assert_eq!(steps[1].child_workflow_id.as_deref(), Some("fam-2"));
    assert_eq!(steps[1].output, None, "a child start records no value");
    assert_eq!(steps[2].child_workflow_id.as_deref(), Some("fam-2"));
    assert_eq!(steps[2].output, Some(Payload::Decoded(json!(8))));
    for s in &steps {
        assert!(
            s.started_at_epoch_ms.is_some() && s.completed_at_epoch_ms.is_some(),
            "{s:?}"
        );
    }
    let j = steps[1].to_dbos_json();
    assert_eq!(j["child_workflow_id"], "fam-2");
    assert_eq!(j["function_name"], "kid");
    // The child is listed under its parent.
    let children = dbos
        .list_workflows(&ListWorkflows::new().parent("fam"))
        .await
        .unwrap();
    assert_eq!(ids(&children), vec!["fam-2"]);

    fails(9).id("fails-9").on(&dbos).await.unwrap_err();
    let steps = dbos.list_workflow_steps("fails-9").await.unwrap();
    assert_eq!(steps.len(), 1);
    let e = steps[0].error.as_ref().and_then(|e| e.decoded()).unwrap();
    assert!(e.message.contains("step refused 9"), "{e:?}");
    assert_eq!(steps[0].to_dbos_json()["error"], json!(e.message));

    let e = dbos.list_workflow_steps("nobody").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NonExistentWorkflow, "{e}");
    assert!(e.to_string().contains("nobody"));
    // An unknown workflow with checkpoints left behind (no foreign key) is still unknown.
    db.connect()
        .await
        .batch_execute("INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name) VALUES ('ghost', 1, 's')")
        .await
        .unwrap();
    assert_eq!(
        dbos.list_workflow_steps("ghost").await.unwrap_err().kind(),
        ErrorKind::NonExistentWorkflow
    );
    let _: Value = json!(started);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn only_dequeued_workflows_have_a_dequeue_time(db: TestDatabase) {
    let dbos = dbos_core::Dbos::launch(db.config("testapp").queue(&SERVED))
        .await
        .unwrap();
    let before = SystemTime::now() - Duration::from_secs(1);
    greet("direct".into()).id("direct").on(&dbos).await.unwrap();
    family(2).id("parent").on(&dbos).await.unwrap();
    let queued = greet("queued".into())
        .id("queued")
        .on(&dbos)
        .enqueue(&SERVED)
        .await
        .unwrap();
    assert_eq!(queued.result().await.unwrap(), "QUEUED");
    let all = dbos.list_workflows(&ListWorkflows::new()).await.unwrap();
    let dequeued: Vec<(&str, bool)> = all
        .iter()
        .map(|w| (w.workflow_id.as_str(), w.dequeued_at.is_some()))
        .collect();
    // A direct start, and a child started directly, are never dequeued (DBOS writes no
    // `started_at_epoch_ms` for them).
    assert_eq!(
        dequeued,
        vec![
            ("direct", false),
            ("parent", false),
            ("parent-2", false),
            ("queued", true)
        ]
    );
    let after = dbos
        .list_workflows(&ListWorkflows::new().dequeued_after(before))
        .await
        .unwrap();
    assert_eq!(ids(&after), vec!["queued"]);
    let until_now = dbos
        .list_workflows(&ListWorkflows::new().dequeued_before(SystemTime::now()))
        .await
        .unwrap();
    assert_eq!(ids(&until_now), vec!["queued"]);
    dbos.shutdown().await.unwrap();
}
