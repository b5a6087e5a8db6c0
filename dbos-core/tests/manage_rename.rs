//! Renaming an application: its rows (queues, versions, workflows, steps) move to the new
//! name, unclaimed rows only when asked, in batches; the renamed application's executors
//! then run the work the old name left.

use std::time::Duration;

use dbos_core::manage::{RenameApplication, RenameReport};
use dbos_core::{step, workflow, Client, Config, Dbos, Error, ErrorKind, Queue};
use dbos_testkit::TestDatabase;

static ORDERS: Queue = Queue::new("orders").polling_interval(Duration::from_millis(50));

#[step]
async fn add(a: u32, b: u32) -> Result<u32, Error> {
    Ok(a + b)
}

#[workflow]
async fn total(n: u32) -> Result<u32, Error> {
    let x = add(n, 1).await?;
    add(x, 1).await
}

async fn owned_by(db: &TestDatabase, table: &str, owner: &str) -> i64 {
    db.connect()
        .await
        .query_one(
            &format!("SELECT count(*) FROM dbos.{table} WHERE application_name = $1"),
            &[&owner],
        )
        .await
        .unwrap()
        .get(0)
}

#[dbos_testkit::test]
async fn a_rename_moves_every_row_of_the_old_name_and_the_new_name_runs_the_work(db: TestDatabase) {
    let config = |app: &str| {
        Config::new(app)
            .system_database_url(db.url())
            .application_version("v-rename")
            .queue(&ORDERS)
    };
    let shop = Dbos::launch(config("shop")).await.unwrap();
    for n in 0..3 {
        total(n).id(format!("done-{n}")).on(&shop).await.unwrap();
    }
    total(10)
        .id("later")
        .on(&shop)
        .enqueue(&ORDERS)
        .delay(Duration::from_secs(3600))
        .await
        .unwrap();
    shop.shutdown().await.unwrap();
    // A row no application owns, as DBOS's SQL function writes it.
    db.connect()
        .await
        .execute(
            "SELECT dbos.enqueue_workflow('total', 'elsewhere', ARRAY['5'::json], workflow_id => 'unclaimed')",
            &[],
        )
        .await
        .unwrap();
    let steps_before = owned_by(&db, "operation_outputs", "shop").await;
    assert_eq!(steps_before, 6);

    let client = Client::connect(db.url()).await.unwrap();
    let moved = client
        .rename_application(
            &RenameApplication::to("storefront")
                .from("shop")
                .batch_size(2),
        )
        .await
        .unwrap();
    assert_eq!(
        moved.workflows, 4,
        "three finished and one delayed: {moved:?}"
    );
    assert_eq!(moved.steps, 6, "{moved:?}");
    assert!(moved.queues >= 1 && moved.versions >= 1, "{moved:?}");
    for table in [
        "workflow_status",
        "operation_outputs",
        "queues",
        "application_versions",
    ] {
        assert_eq!(owned_by(&db, table, "shop").await, 0, "{table}");
    }
    assert_eq!(owned_by(&db, "operation_outputs", "storefront").await, 6);
    let unclaimed: Option<String> = db
        .connect()
        .await
        .query_one(
            "SELECT application_name FROM dbos.workflow_status WHERE workflow_uuid = 'unclaimed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unclaimed, None, "unclaimed rows move only when asked");

    // Run again: nothing left to move.
    let again = client
        .rename_application(&RenameApplication::to("storefront").from("shop"))
        .await
        .unwrap();
    assert_eq!(again, RenameReport::default());
    let adopted = client
        .rename_application(&RenameApplication::to("storefront").adopt_unclaimed_rows())
        .await
        .unwrap();
    assert_eq!(adopted.workflows, 1, "{adopted:?}");

    // The renamed application's executor runs what the old name left queued.
    let storefront = Dbos::launch(config("storefront")).await.unwrap();
    storefront
        .set_workflow_delay("later", Duration::ZERO)
        .await
        .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        storefront.retrieve_workflow::<u32, Error>("later").result(),
    )
    .await
    .expect("the renamed application runs the delayed workflow")
    .unwrap();
    assert_eq!(out, 12);
    storefront.shutdown().await.unwrap();
    client.close();
}

#[dbos_testkit::test]
async fn a_rename_that_cannot_be_done_is_refused_before_anything_moves(db: TestDatabase) {
    let dbos = db.launch().await;
    total(1).id("kept").on(&dbos).await.unwrap();
    let client = Client::connect(db.url()).await.unwrap();
    for bad in [
        RenameApplication::to("no spaces allowed").from("testapp"),
        RenameApplication::to("testapp").from("testapp"),
        RenameApplication::to("other").from(" "),
        RenameApplication::to("other"),
        RenameApplication::to("other").from("testapp").batch_size(0),
    ] {
        let e = client.rename_application(&bad).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}: {e}");
    }
    assert_eq!(owned_by(&db, "workflow_status", "testapp").await, 1);
    client.close();
    dbos.shutdown().await.unwrap();
}
