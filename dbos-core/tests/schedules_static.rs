//! Static schedules: `#[workflow(schedule = "...")]` is written as a schedule row at launch
//! and fired like any other; a redeploy keeps its status.

use std::time::Duration;

use dbos_core::schedule::chrono::{DateTime, Utc};
use dbos_core::schedule::ScheduleStatus;
use dbos_core::{workflow, Dbos, Error};
use dbos_testkit::crash::eventually;
use dbos_testkit::TestDatabase;
use serde_json::Value;

#[workflow(
    schedule = "* * * * * *",
    timezone = "Europe/Paris",
    automatic_backfill
)]
async fn every_second_in_paris(_scheduled_at: DateTime<Utc>, _context: Value) -> Result<(), Error> {
    Ok(())
}

#[dbos_testkit::test(timeout = "120s")]
async fn a_static_schedule_is_registered_at_launch_and_fires(db: TestDatabase) {
    let config = || {
        db.config("testapp")
            .scheduler_polling_interval(Duration::from_millis(200))
    };
    let dbos = Dbos::launch(config()).await.unwrap();
    let s = dbos
        .get_schedule("every_second_in_paris")
        .await
        .unwrap()
        .expect("registered at launch");
    assert_eq!(s.workflow_name, "every_second_in_paris");
    assert_eq!(s.schedule, "* * * * * *");
    assert_eq!(s.cron_timezone.as_deref(), Some("Europe/Paris"));
    assert!(s.automatic_backfill);
    assert_eq!(s.status, ScheduleStatus::Active);
    let conn = db.connect().await;
    eventually("two finished runs", Duration::from_secs(30), || async {
        let n: i64 = conn
            .query_one(
                "SELECT count(*) FROM dbos.workflow_status
                  WHERE schedule_name = 'every_second_in_paris' AND status = 'SUCCESS'
                    AND workflow_uuid LIKE 'sched-every_second_in_paris-%+01:00'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (n >= 2).then_some(())
    })
    .await;
    // A redeploy re-applies the definition and keeps what operators changed.
    dbos.pause_schedule("every_second_in_paris").await.unwrap();
    dbos.shutdown().await.unwrap();
    let dbos = Dbos::launch(config()).await.unwrap();
    let s = dbos
        .get_schedule("every_second_in_paris")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.status, ScheduleStatus::Paused);
    assert!(s.last_fired_at.is_some());
    dbos.shutdown().await.unwrap();
}
