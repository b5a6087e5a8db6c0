//! Bad input gets a typed error saying what to do, and writes nothing: no row that no
//! executor could ever run. (The table in the Reliability chapter lists every case here.)

use std::time::Duration;

use dbos_core::{workflow, Dbos, Error, ErrorKind, Queue};
use dbos_testkit::TestDatabase;

#[workflow]
async fn noop(x: u32) -> Result<u32, Error> {
    Ok(x)
}

static PLAIN: Queue = Queue::new("plain");
static PARTS: Queue = Queue::new("parts").partition_concurrency(1);

async fn rows(db: &TestDatabase) -> i64 {
    db.connect()
        .await
        .query_one("SELECT count(*) FROM dbos.workflow_status", &[])
        .await
        .unwrap()
        .get(0)
}

fn invalid(e: Error, says: &str) {
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e:?}");
    assert!(e.to_string().contains(says), "`{e}` should say `{says}`");
}

#[dbos_testkit::test]
async fn bad_calls_are_refused_before_anything_is_written(db: TestDatabase) {
    let dbos = Dbos::launch(db.config("testapp").queue(&PLAIN).queue(&PARTS))
        .await
        .unwrap();
    invalid(noop(1).id("").on(&dbos).start().await.unwrap_err(), "blank");
    invalid(noop(1).id("   ").on(&dbos).await.unwrap_err(), "blank");
    invalid(
        noop(1).id("").on(&dbos).enqueue(&PLAIN).await.unwrap_err(),
        "blank",
    );
    invalid(
        dbos.enqueue_by_name("", "plain", vec![], None)
            .await
            .unwrap_err(),
        "workflow name is blank",
    );
    invalid(
        dbos.enqueue_by_name("noop", " ", vec![], None)
            .await
            .unwrap_err(),
        "queue name is blank",
    );
    invalid(
        dbos.enqueue_by_name("noop", "plain", vec![], Some(" ".into()))
            .await
            .unwrap_err(),
        "blank",
    );
    invalid(
        dbos.enqueue_by_name("noop", "parts", vec![], None)
            .await
            .unwrap_err(),
        "partitioned",
    );
    invalid(
        noop(1).on(&dbos).enqueue(&PARTS).await.unwrap_err(),
        "give the workflow a partition_key",
    );
    invalid(
        noop(1)
            .on(&dbos)
            .enqueue(&PARTS)
            .partition_key(" ")
            .await
            .unwrap_err(),
        "blank",
    );
    invalid(
        noop(1)
            .on(&dbos)
            .enqueue(&PLAIN)
            .partition_key("eu")
            .await
            .unwrap_err(),
        "not partitioned",
    );
    invalid(
        noop(1)
            .on(&dbos)
            .enqueue(&PARTS)
            .partition_key("eu")
            .deduplication_id("d")
            .await
            .unwrap_err(),
        "cannot be combined",
    );
    invalid(
        noop(1)
            .on(&dbos)
            .enqueue(&PLAIN)
            .priority(-1)
            .await
            .unwrap_err(),
        "outside DBOS's range",
    );
    invalid(
        noop(1)
            .on(&dbos)
            .enqueue(&PLAIN)
            .return_existing_on_duplicate()
            .await
            .unwrap_err(),
        "needs a deduplication_id",
    );
    invalid(
        noop(1)
            .on(&dbos)
            .enqueue(&PLAIN)
            .deduplication_id("")
            .await
            .unwrap_err(),
        "deduplication id is blank",
    );
    assert_eq!(rows(&db).await, 0, "nothing was written");
    // The edges of the valid range are accepted.
    noop(1)
        .on(&dbos)
        .enqueue(&PLAIN)
        .priority(i32::MAX)
        .await
        .unwrap();
    noop(1)
        .on(&dbos)
        .enqueue(&PARTS)
        .partition_key("eu")
        .await
        .unwrap();
    assert_eq!(rows(&db).await, 2);
    dbos.shutdown().await.unwrap();
}

#[dbos_testkit::test]
async fn bad_queue_definitions_fail_the_launch(db: TestDatabase) {
    let cases = [
        (
            Queue::new("q").rate_limit(0, Duration::from_secs(1)),
            "allows 0 starts",
        ),
        (Queue::new("q").rate_limit(5, Duration::ZERO), "period of 0"),
        (
            Queue::new("q").partition_rate_limit(0, Duration::from_secs(1)),
            "allows 0 starts",
        ),
        (
            Queue::new("q").concurrency(2).worker_concurrency(5),
            "is above concurrency(2)",
        ),
        (
            Queue::new("q")
                .partition_concurrency(1)
                .partition_worker_concurrency(3),
            "is above partition_concurrency(1)",
        ),
        (
            Queue::new("q").concurrency(0),
            "concurrency(0) would never run anything",
        ),
        (
            Queue::new("q").worker_concurrency(0),
            "would never run anything",
        ),
        (Queue::new("_dbos_internal_queue"), "internal queue"),
        (Queue::named(""), "blank"),
        (
            Queue::new("q").polling_interval(Duration::ZERO),
            "polling interval of 0",
        ),
    ];
    for (queue, says) in cases {
        let e = Dbos::launch(db.config("testapp").queue(&queue))
            .await
            .unwrap_err();
        invalid(e, says);
    }
    // Refused before connecting: the database was not even migrated.
    let schema: i64 = db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'dbos'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schema, 0);
}
