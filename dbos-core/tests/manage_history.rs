//! History and fleet: garbage collection in bounded batches, the global timeout,
//! application versions, and queues with their limits and depth.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dbos_core::manage::{GarbageCollect, ListWorkflows};
use dbos_core::{workflow, Dbos, Error, ErrorKind, Queue, Status};
use dbos_testkit::TestDatabase;

#[workflow]
async fn job(n: i64) -> Result<i64, Error> {
    Ok(n)
}

static PARKED: Queue = Queue::new("parked");
static LIMITED: Queue = Queue::new("limited")
    .concurrency(3)
    .worker_concurrency(2)
    .rate_limit(10, Duration::from_secs(60));
static SPLIT: Queue = Queue::new("split").partition_concurrency(1);

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

async fn ids(db: &TestDatabase) -> Vec<String> {
    db.connect()
        .await
        .query(
            "SELECT workflow_uuid FROM dbos.workflow_status ORDER BY created_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[dbos_testkit::test]
async fn garbage_collection_deletes_old_finished_workflows_in_batches(db: TestDatabase) {
    let dbos = db.launch().await;
    for i in 1..=6 {
        job(i).id(format!("done-{i}")).on(&dbos).await.unwrap();
    }
    for i in 1..=2 {
        job(i)
            .id(format!("active-{i}"))
            .on(&dbos)
            .enqueue(&PARKED)
            .await
            .unwrap();
    }
    // Creation times 1 s apart in 2001: done-1 .. done-6, the active ones oldest of all.
    let sql = db.connect().await;
    sql.batch_execute(
        "UPDATE dbos.workflow_status SET created_at = 978307200000 + 1000 * substr(workflow_uuid, 6)::int
          WHERE workflow_uuid LIKE 'done-%';
         UPDATE dbos.workflow_status SET created_at = 978307200000 - 1000 * substr(workflow_uuid, 8)::int
          WHERE workflow_uuid LIKE 'active-%';",
    )
    .await
    .unwrap();
    let base = 978_307_200_000i64;

    // Before done-4: done-1..3 go, one per transaction; active workflows never go.
    let report = dbos
        .garbage_collect(
            &GarbageCollect::new()
                .created_before(at(base + 3500))
                .batch_size(1),
        )
        .await
        .unwrap();
    assert_eq!((report.deleted, report.batches), (3, 4), "{report:?}");
    assert_eq!(report.cutoff_ms, Some(base + 3500));
    assert_eq!(
        ids(&db).await,
        vec!["active-2", "active-1", "done-4", "done-5", "done-6"]
    );
    for table in ["workflow_input", "workflow_output", "operation_outputs"] {
        let n: i64 = sql
            .query_one(
                &format!("SELECT count(*) FROM dbos.{table} WHERE workflow_uuid IN ('done-1', 'done-2', 'done-3')"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}");
    }

    // Keep the newest 2 (of every status): done-4 goes.
    let report = dbos
        .garbage_collect(&GarbageCollect::new().keep_newest(2))
        .await
        .unwrap();
    assert_eq!(report.deleted, 1, "{report:?}");
    assert_eq!(
        ids(&db).await,
        vec!["active-2", "active-1", "done-5", "done-6"]
    );
    // Fewer workflows than to keep: nothing.
    let report = dbos
        .garbage_collect(&GarbageCollect::new().keep_newest(100))
        .await
        .unwrap();
    assert_eq!(report.deleted, 0);

    for bad in [
        GarbageCollect::new(),
        GarbageCollect::new().keep_newest(0),
        GarbageCollect::new().keep_newest(1).batch_size(0),
    ] {
        assert_eq!(
            dbos.garbage_collect(&bad).await.unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    // The global timeout cancels the active workflows created before the cutoff.
    let mut cancelled = dbos
        .cancel_workflows_created_before(at(base - 1500))
        .await
        .unwrap();
    cancelled.sort();
    assert_eq!(cancelled, vec!["active-2"]);
    let mut cancelled = dbos
        .cancel_workflows_created_before(SystemTime::now())
        .await
        .unwrap();
    cancelled.sort();
    assert_eq!(cancelled, vec!["active-1"]);
    let statuses: Vec<Status> = dbos
        .list_workflows(&ListWorkflows::new().id_prefix("active-"))
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.status)
        .collect();
    assert_eq!(statuses, vec![Status::Cancelled, Status::Cancelled]);
    // Cancelled workflows are finished: the next collection takes them.
    let report = dbos
        .garbage_collect(&GarbageCollect::new().created_before(at(base)))
        .await
        .unwrap();
    assert_eq!(report.deleted, 2);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn application_versions_are_listed_and_the_latest_can_be_set(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").application_version("v2"))
        .await
        .unwrap();
    db.connect()
        .await
        .batch_execute(
            "INSERT INTO dbos.application_versions (version_id, version_name, version_timestamp, application_name)
             VALUES ('old', 'v1', 1000, 'testapp'), ('theirs', 'x1', 2000, 'otherapp')",
        )
        .await
        .unwrap();
    let names = |v: Vec<dbos_core::manage::VersionInfo>| {
        v.into_iter().map(|v| v.version_name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(dbos.list_application_versions().await.unwrap()),
        vec!["v2", "v1"],
        "this application's, latest first"
    );
    assert_eq!(
        dbos.latest_application_version()
            .await
            .unwrap()
            .version_name,
        "v2"
    );
    dbos.set_latest_application_version("v1").await.unwrap();
    assert_eq!(
        dbos.latest_application_version()
            .await
            .unwrap()
            .version_name,
        "v1"
    );
    let e = dbos.set_latest_application_version("v3").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("v1, v2"), "{e}");
    // Another application's version is not this one's to promote.
    assert!(dbos.set_latest_application_version("x1").await.is_err());
    let j = dbos
        .latest_application_version()
        .await
        .unwrap()
        .to_dbos_json();
    assert_eq!(j["version_name"], "v1");
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn queues_are_listed_with_their_limits_and_depth(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").queue(&LIMITED).queue(&SPLIT))
        .await
        .unwrap();
    for i in 0..3 {
        job(i)
            .id(format!("p-{i}"))
            .on(&dbos)
            .enqueue(&PARKED)
            .await
            .unwrap();
    }
    job(9)
        .id("p-delayed")
        .on(&dbos)
        .enqueue(&PARKED)
        .delay(Duration::from_secs(3600))
        .await
        .unwrap();
    let queues = dbos.list_queues().await.unwrap();
    let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, vec!["limited", "parked", "split"]);
    let limited = &queues[0];
    assert!(limited.registered);
    assert_eq!(
        (limited.concurrency, limited.worker_concurrency),
        (Some(3), Some(2))
    );
    let rate = limited.rate_limit.unwrap();
    assert_eq!((rate.max, rate.period), (10, Duration::from_secs(60)));
    assert_eq!(limited.polling_interval, Some(Duration::from_secs(1)));
    assert!(!limited.partitioned);
    let parked = &queues[1];
    assert!(
        !parked.registered,
        "nobody registered it; workflows wait on it"
    );
    assert_eq!((parked.enqueued, parked.pending, parked.delayed), (3, 0, 1));
    let split = &queues[2];
    assert!(split.partitioned);
    assert_eq!(split.partition_concurrency, Some(1));
    let j = limited.to_dbos_json();
    assert_eq!(j["rate_limit_max"], 10);
    assert_eq!(j["enqueued"], 0);
    dbos.shutdown().await.unwrap();
}
