//! Metrics: what the runtime records through the `metrics` facade, read back from a recorder
//! installed for this test binary (process-wide: workflows run on many threads). Each test
//! uses its own workflow, step and queue names, so their series do not mix; the unlabelled
//! process-wide ones (system-database retries, recoveries) are compared before and after.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dbos_core::metrics::{MetricKind, METRICS};
use dbos_core::prelude::*;
use dbos_testkit::crash::{eventually, run_then_kill, IsolatedRuntime};
use dbos_testkit::pgbouncer::{PgBouncer, PoolMode};
use dbos_testkit::proxy::Proxy;
use dbos_testkit::TestDatabase;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

/// A recorder keeping every value for reading without resetting it (metrics-util's
/// `DebuggingRecorder` drains on each snapshot, which parallel tests sharing it cannot
/// afford): metrics-util's own registry of atomic counters, gauges and histogram buckets.
struct Kept(Registry<Key, AtomicStorage>);

impl Recorder for Kept {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

fn recorder() -> &'static Arc<Kept> {
    static KEPT: OnceLock<Arc<Kept>> = OnceLock::new();
    KEPT.get_or_init(|| {
        let kept = Arc::new(Kept(Registry::atomic()));
        metrics::set_global_recorder(kept.clone()).expect("the only recorder of this binary");
        kept
    })
}

/// Whether `key` is `name` with exactly these labels.
fn is(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    let mut have: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
    let mut want = labels.to_vec();
    have.sort_unstable();
    want.sort_unstable();
    key.name() == name && have == want
}

fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    recorder()
        .0
        .get_counter_handles()
        .iter()
        .find(|(k, _)| is(k, name, labels))
        .map_or(0, |(_, v)| v.load(Ordering::SeqCst))
}

fn gauge(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    recorder()
        .0
        .get_gauge_handles()
        .iter()
        .find(|(k, _)| is(k, name, labels))
        .map(|(_, v)| f64::from_bits(v.load(Ordering::SeqCst)))
}

fn histogram(name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    recorder()
        .0
        .get_histogram_handles()
        .iter()
        .find(|(k, _)| is(k, name, labels))
        .map_or_else(Vec::new, |(_, v)| v.data())
}

// --- a workflow with a step that retries -------------------------------------------------

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

#[step(max_attempts = 3, interval = "10ms")]
async fn m_flaky(failures: u32) -> Result<u32, Error> {
    let n = FLAKY_CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    if n <= failures {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("attempt {n} fails"),
        ));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(n)
}

#[workflow]
async fn m_retrying(failures: u32) -> Result<u32, Error> {
    m_flaky(failures).await
}

#[step]
async fn m_refuses() -> Result<(), Error> {
    Err(Error::new(ErrorKind::InvalidArgument, "no"))
}

#[workflow]
async fn m_failing() -> Result<(), Error> {
    m_refuses().await
}

#[dbos_testkit::test]
async fn a_workflow_and_its_retried_step_are_counted_and_timed(db: TestDatabase) {
    recorder();
    let dbos = db.launch().await;
    let w = [("workflow", "m_retrying")];
    assert_eq!(m_retrying(2).id("m-r1").on(&dbos).await.unwrap(), 3);

    assert_eq!(counter("dbos_workflows_started_total", &w), 1);
    assert_eq!(
        counter(
            "dbos_workflows_finished_total",
            &[("workflow", "m_retrying"), ("status", "SUCCESS")]
        ),
        1
    );
    assert_eq!(
        counter("dbos_step_attempts_total", &[("step", "m_flaky")]),
        3
    );
    assert_eq!(
        counter(
            "dbos_step_retries_total",
            &[("kind", "step"), ("step", "m_flaky")]
        ),
        2
    );
    let step = histogram(
        "dbos_step_duration_seconds",
        &[("step", "m_flaky"), ("outcome", "ok")],
    );
    // Two waits of 10 ms between attempts and the last attempt's 20 ms.
    assert!(
        step.len() == 1 && step[0] >= 0.04,
        "one step, retries included: {step:?}"
    );
    let took = histogram(
        "dbos_workflow_duration_seconds",
        &[("workflow", "m_retrying"), ("status", "SUCCESS")],
    );
    assert!(
        took.len() == 1 && took[0] >= step[0],
        "the workflow took at least its step: {took:?} vs {step:?}"
    );

    // The same id again answers from the record: nothing starts, nothing runs.
    assert_eq!(m_retrying(2).id("m-r1").on(&dbos).await.unwrap(), 3);
    assert_eq!(counter("dbos_workflows_started_total", &w), 1);
    assert_eq!(
        counter("dbos_step_attempts_total", &[("step", "m_flaky")]),
        3
    );

    // A workflow's own error is an ERROR outcome; its step failed without retries.
    m_failing().id("m-f1").on(&dbos).await.unwrap_err();
    assert_eq!(
        counter(
            "dbos_workflows_finished_total",
            &[("workflow", "m_failing"), ("status", "ERROR")]
        ),
        1
    );
    assert_eq!(
        histogram(
            "dbos_step_duration_seconds",
            &[("step", "m_refuses"), ("outcome", "error")]
        )
        .len(),
        1
    );
    assert_eq!(
        counter(
            "dbos_step_retries_total",
            &[("kind", "step"), ("step", "m_refuses")]
        ),
        0
    );
    dbos.shutdown().await.unwrap();
}

// --- a queue: depth, wait time, batch sizes ----------------------------------------------

static ONE_AT_A_TIME: Queue = Queue::new("m_serial")
    .worker_concurrency(1)
    .polling_interval(Duration::from_millis(50));
static GATE_OPEN: AtomicBool = AtomicBool::new(false);
static HELD: AtomicU32 = AtomicU32::new(0);

#[step]
async fn m_gate() -> Result<(), Error> {
    HELD.fetch_add(1, Ordering::SeqCst);
    while !GATE_OPEN.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[workflow]
async fn m_queued(n: u32) -> Result<u32, Error> {
    m_gate().await?;
    Ok(n)
}

#[dbos_testkit::test]
async fn a_queues_depth_wait_and_batches_are_recorded(db: TestDatabase) {
    recorder();
    let dbos = Dbos::launch(db.config("testapp").queue(&ONE_AT_A_TIME))
        .await
        .unwrap();
    let q = [("queue", "m_serial")];
    let mut handles = Vec::new();
    for n in 0..3 {
        handles.push(
            m_queued(n)
                .id(format!("m-q{n}"))
                .on(&dbos)
                .enqueue(&ONE_AT_A_TIME)
                .await
                .unwrap(),
        );
    }
    eventually(
        "the first to hold the gate",
        Duration::from_secs(10),
        || async { (HELD.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
    // Counted by the worker's poll, at most every five seconds.
    eventually(
        "the depth gauge to show two waiting and one running",
        Duration::from_secs(20),
        || async {
            let depth = |s| gauge("dbos_queue_depth", &[("queue", "m_serial"), ("status", s)]);
            (depth("ENQUEUED") == Some(2.0) && depth("PENDING") == Some(1.0)).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    GATE_OPEN.store(true, Ordering::SeqCst);
    for (n, h) in handles.into_iter().enumerate() {
        assert_eq!(h.result().await.unwrap(), n as u32);
    }
    eventually(
        "the depth gauge to empty",
        Duration::from_secs(20),
        || async {
            let depth = |s| gauge("dbos_queue_depth", &[("queue", "m_serial"), ("status", s)]);
            (depth("ENQUEUED") == Some(0.0) && depth("PENDING") == Some(0.0)).then_some(())
        },
    )
    .await;

    let mut waits = histogram("dbos_queue_wait_seconds", &q);
    waits.sort_by(f64::total_cmp);
    assert_eq!(waits.len(), 3, "one wait per claimed workflow: {waits:?}");
    assert!(
        waits[2] >= 0.3,
        "the last one waited while the first held the only place: {waits:?}"
    );
    let batches = histogram("dbos_dequeue_batch_size", &q);
    assert_eq!(
        batches.iter().sum::<f64>(),
        3.0,
        "every claim is one batch: {batches:?}"
    );
    assert!(
        batches.iter().all(|&b| b <= 1.0),
        "worker concurrency 1 claims one at a time: {batches:?}"
    );
    assert_eq!(
        counter("dbos_workflows_started_total", &[("workflow", "m_queued")]),
        3
    );
    dbos.shutdown().await.unwrap();
}

// --- a recovered workflow ----------------------------------------------------------------

static RECOVERY_HANG: AtomicU32 = AtomicU32::new(0);

#[step]
async fn m_hang_once() -> Result<(), Error> {
    if RECOVERY_HANG.fetch_add(1, Ordering::SeqCst) == 0 {
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[workflow]
async fn m_recovered() -> Result<u32, Error> {
    m_hang_once().await?;
    Ok(7)
}

#[dbos_testkit::test]
async fn a_recovered_workflow_counts_one_start_one_recovery_and_one_outcome(db: TestDatabase) {
    recorder();
    let config = db.config("testapp").executor_id("m-recover");
    let own = [("source", "own")];
    let before = counter("dbos_recovered_workflows_total", &own);
    run_then_kill(
        config.clone(),
        |dbos| async move {
            m_recovered().id("m-rec").on(&dbos).start().await.unwrap();
        },
        "the workflow to hang in its step",
        || RECOVERY_HANG.load(Ordering::SeqCst) == 1,
    )
    .await;
    let dbos = Dbos::launch(config).await.unwrap();
    let got = dbos
        .retrieve_workflow::<u32, Error>("m-rec")
        .result()
        .await
        .unwrap();
    assert_eq!(got, 7);
    assert!(
        counter("dbos_recovered_workflows_total", &own) > before,
        "the relaunch recovered its own pending workflow"
    );
    let w = [("workflow", "m_recovered")];
    assert_eq!(
        counter("dbos_workflows_started_total", &w),
        1,
        "a recovery is not a new start"
    );
    // The recovered execution counts its outcome right after committing it, and `result()`
    // can read that commit first (recovery had not yet registered the execution when the
    // handle was taken, so the handle reads the database): wait for the count, then check it
    // is exactly one.
    let finished = || {
        counter(
            "dbos_workflows_finished_total",
            &[("workflow", "m_recovered"), ("status", "SUCCESS")],
        )
    };
    dbos_testkit::crash::eventually("the outcome counted", Duration::from_secs(5), || async {
        (finished() > 0).then_some(())
    })
    .await;
    assert_eq!(finished(), 1);
    assert_eq!(
        counter("dbos_step_attempts_total", &[("step", "m_hang_once")]),
        2,
        "the step ran in the killed process and again after recovery"
    );
    dbos.shutdown().await.unwrap();
}

// --- a dead peer's work recovered through a pooler (leases) ------------------------------

/// Polled once a minute: a recovered workflow put back here is claimed at once only if the
/// recovery wakes the queue.
static SLOW: Queue = Queue::new("m_slow").polling_interval(Duration::from_secs(60));
static PEER_ENTERED: AtomicU32 = AtomicU32::new(0);
static PEER_RELEASE: AtomicBool = AtomicBool::new(false);

#[step]
async fn m_held_by_peer() -> Result<(), Error> {
    PEER_ENTERED.fetch_add(1, Ordering::SeqCst);
    while !PEER_RELEASE.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[workflow]
async fn m_moved(i: u32) -> Result<u32, Error> {
    m_held_by_peer().await?;
    Ok(i)
}

/// Behind a transaction-mode pooler with no session URL an executor holds a lease; once a
/// killed one's lease expires a peer re-enqueues its work, counts it as recovered from a peer
/// and wakes its queues, so work put back on a queue polled once a minute runs at once.
#[dbos_testkit::test(timeout = "300s")]
async fn a_dead_peer_s_work_recovered_through_a_pooler_is_counted_and_run_at_once(
    db: TestDatabase,
) {
    recorder();
    let bouncer = PgBouncer::start(db.cluster(), PoolMode::Transaction).await;
    let config = || {
        db.config("m-leased")
            .system_database_url(bouncer.url(&db.url()))
            .vanished_executor_timeout(Duration::from_secs(3))
            .recovery_interval(Duration::from_millis(500))
            .recovery_grace(Duration::from_secs(2))
            .queue(&SLOW)
    };
    // The victim claims its two queued workflows at once (an enqueue wakes its own queue)
    // and holds them in their step.
    let victim = IsolatedRuntime::new();
    let victim_config = config();
    victim
        .run(async move {
            let dbos = Dbos::launch(victim_config).await.unwrap();
            for i in 0..2 {
                m_moved(i)
                    .id(format!("m-moved-{i}"))
                    .on(&dbos)
                    .enqueue(&SLOW)
                    .await
                    .unwrap();
            }
            std::mem::forget(dbos);
        })
        .await;
    eventually("both steps to run", Duration::from_secs(60), || async {
        (PEER_ENTERED.load(Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    // The peer polled its queue at launch, finding nothing: its next poll is a minute away.
    let peer = Dbos::launch(config()).await.unwrap();
    let peer_source = [("source", "peer")];
    let before = counter("dbos_recovered_workflows_total", &peer_source);
    victim.abort();
    PEER_RELEASE.store(true, Ordering::SeqCst);
    let killed = std::time::Instant::now();
    for i in 0..2 {
        let got = peer
            .retrieve_workflow::<u32, Error>(&format!("m-moved-{i}"))
            .result()
            .await
            .unwrap();
        assert_eq!(got, i);
    }
    let took = killed.elapsed();
    eprintln!("the killed executor's queued work finished on the peer {took:?} after the kill (lease 3 s)");
    // The lease time, a recovery interval or two and the grace, not the queue's minute.
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(
        counter("dbos_recovered_workflows_total", &peer_source),
        before + 2
    );
    peer.shutdown().await.unwrap();
}

// --- a system-database outage and a parked workflow -------------------------------------

static OUTAGE_GATE: AtomicBool = AtomicBool::new(false);
static OUTAGE_HELD: AtomicBool = AtomicBool::new(false);

#[step]
async fn m_before_outage() -> Result<(), Error> {
    OUTAGE_HELD.store(true, Ordering::SeqCst);
    while !OUTAGE_GATE.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[workflow]
async fn m_through_outage() -> Result<u32, Error> {
    m_before_outage().await?;
    Ok(1)
}

#[dbos_testkit::test]
async fn statements_retried_during_an_outage_are_counted(db: TestDatabase) {
    recorder();
    let proxy = Proxy::start(db.cluster().postgres().port()).await;
    let dbos = Dbos::launch(
        db.config("testapp")
            .system_database_url(proxy.url(&db.url())),
    )
    .await
    .unwrap();
    let handle = m_through_outage()
        .id("m-out")
        .on(&dbos)
        .start()
        .await
        .unwrap();
    eventually("the step to run", Duration::from_secs(10), || async {
        OUTAGE_HELD.load(Ordering::SeqCst).then_some(())
    })
    .await;
    let (retries, outages) = (
        counter("dbos_system_database_retries_total", &[]),
        counter("dbos_system_database_outages_total", &[]),
    );
    proxy.refuse(true);
    // The step's record is the statement that meets the outage.
    OUTAGE_GATE.store(true, Ordering::SeqCst);
    eventually(
        "statements to be retried",
        Duration::from_secs(20),
        || async {
            (counter("dbos_system_database_retries_total", &[]) >= retries + 3).then_some(())
        },
    )
    .await;
    proxy.refuse(false);
    assert_eq!(handle.result().await.unwrap(), 1);
    assert!(counter("dbos_system_database_outages_total", &[]) > outages);
    dbos.shutdown().await.unwrap();
}

#[workflow]
async fn m_sleeper() -> Result<u32, Error> {
    dbos_core::sleep(Duration::from_millis(1500)).await?;
    Ok(2)
}

#[dbos_testkit::test]
async fn a_parked_workflow_is_in_the_parked_gauge_until_it_wakes(db: TestDatabase) {
    recorder();
    let dbos = Dbos::launch(db.config("testapp").park_after(Duration::from_millis(200)))
        .await
        .unwrap();
    let handle = m_sleeper().id("m-park").on(&dbos).start().await.unwrap();
    // No other test of this binary parks a workflow.
    eventually("the workflow to park", Duration::from_secs(10), || async {
        (gauge("dbos_parked_workflows", &[]) == Some(1.0)).then_some(())
    })
    .await;
    assert_eq!(handle.result().await.unwrap(), 2);
    assert_eq!(gauge("dbos_parked_workflows", &[]), Some(0.0));
    assert_eq!(
        counter(
            "dbos_workflow_executions_interrupted_total",
            &[("workflow", "m_sleeper")]
        ),
        1,
        "the execution that parked ended without an outcome"
    );
    assert_eq!(
        counter("dbos_workflows_started_total", &[("workflow", "m_sleeper")]),
        1,
        "waking from the park is not a new start"
    );
    dbos.shutdown().await.unwrap();
}

// --- the list ----------------------------------------------------------------------------

/// The Observability chapter's metrics table lists exactly the metrics of [`METRICS`], with
/// their kind and labels; every name is `dbos_` prefixed and no label is a workflow id.
#[test]
fn the_chapter_lists_every_metric_with_its_kind_and_labels() {
    let chapter = include_str!("../../docs/src/observability.md");
    let rows: HashMap<&str, (&str, &str)> = chapter
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix("`dbos_")?.strip_suffix('`')?;
            Some((name, (*cells.get(2)?, *cells.get(3)?)))
        })
        .collect();
    for m in METRICS {
        assert!(m.name.starts_with("dbos_"), "{}", m.name);
        assert!(
            !m.labels.iter().any(|l| l.contains("id")),
            "{} has an unbounded label",
            m.name
        );
        let Some((kind, labels)) = rows.get(&m.name["dbos_".len()..]) else {
            panic!("docs/src/observability.md does not list `{}`", m.name)
        };
        assert_eq!(*kind, m.kind.as_str(), "the kind of {}", m.name);
        let want = if m.labels.is_empty() {
            "(none)".to_owned()
        } else {
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        assert_eq!(*labels, want, "the labels of {}", m.name);
    }
    assert_eq!(
        rows.len(),
        METRICS.len(),
        "the chapter lists metrics that are not recorded"
    );
    assert!(METRICS.iter().any(|m| m.kind == MetricKind::Histogram));
}
