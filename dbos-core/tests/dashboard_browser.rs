//! The dashboard in a real browser: headless Chromium (Debian's `chromium`, which `.ci/run`
//! installs) driven over the DevTools protocol from this test, against a runtime serving
//! the admin server on real rows: the list loads, filters by status, a workflow opens with
//! a timeline bar per step, a running workflow is cancelled from its page, a fork from
//! step 2 runs as a new workflow, the queues view lists limits, the phone layout holds.
//!
//! With `DBOS_DASHBOARD_SCREENSHOTS=<folder>` the test also saves the three views there as
//! PNG files (the book's Dashboard chapter regenerates its pictures that way).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbos_core::schedule::chrono::{self, Utc};
use dbos_core::schedule::Schedule;
use dbos_core::{step, workflow, Error, ErrorKind, Queue};
use dbos_testkit::admin::first;
use dbos_testkit::admin::{self, run_checkout, run_refused, schedule_status, status_of, waiting};
use dbos_testkit::runs::{bump, runs as count};
use dbos_testkit::TestDatabase;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium and one page of it, over the DevTools protocol.
struct Browser {
    child: Child,
    profile: PathBuf,
    socket: Socket,
    session: String,
    next_id: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = PathBuf::from(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "the dashboard's browser tests need Chromium and found none on PATH: install Debian's package \
         (`apt-get install -y chromium`; .ci/run installs it when missing)"
    );
}

impl Browser {
    async fn start() -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "dbos-dashboard-chromium-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new(chromium())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start chromium");
        let stderr = child.stderr.take().unwrap();
        // Chromium prints the browser's DevTools address on stderr once it listens.
        let url = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || {
                let mut seen = String::new();
                for line in BufReader::new(stderr).lines() {
                    let line = line.unwrap_or_default();
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        return Ok(url.trim().to_owned());
                    }
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(seen)
            }),
        )
        .await
        .expect("chromium did not print its DevTools address within 60 s")
        .unwrap()
        .unwrap_or_else(|out| panic!("chromium exited before listening:\n{out}"));
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("cannot connect to chromium's DevTools socket");
        let mut b = Browser {
            child,
            profile,
            socket,
            session: String::new(),
            next_id: 0,
        };
        let target = b
            .command("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = b
            .command(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b.command("Page.enable", json!({})).await;
        b.command("Runtime.enable", json!({})).await;
        b
    }

    /// Sends one command (to the page once attached) and returns its result.
    async fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(msg.to_string()))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within 60 s"));
            let Some(Ok(Message::Text(text))) = next else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression in the page (awaiting a promise) and returns its
    /// value; an exception is returned as `{"exception": text}`.
    async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .command(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            return json!({"exception": e["exception"]["description"].clone()});
        }
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy (the page refreshes by itself), returning it.
    async fn until(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let v = self.eval(expression).await;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.contains_key("exception"),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let notice = self
                    .eval("document.getElementById('notice').textContent")
                    .await;
                panic!("the page never showed {what}: last {v}; notice {notice}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn goto(&mut self, url: &str) {
        self.command("Page.navigate", json!({"url": url})).await;
        self.until("the page loaded", "document.readyState === 'complete'")
            .await;
    }

    async fn click(&mut self, selector: &str) {
        let done = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({s}); if (!e) return 'missing'; e.click(); return 'ok'; }})()",
                s = json!(selector)
            ))
            .await;
        assert_eq!(done, json!("ok"), "click {selector}");
    }

    /// Saves the page as a PNG under `DBOS_DASHBOARD_SCREENSHOTS`, when it is set.
    async fn screenshot(&mut self, name: &str) {
        let Some(dir) = std::env::var_os("DBOS_DASHBOARD_SCREENSHOTS") else {
            return;
        };
        let r = self
            .command(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let bytes = decode_base64(r["data"].as_str().unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), bytes).unwrap();
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            _ => 63,
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

/// Fails every time: three attempts, 200 ms apart.
#[step(max_attempts = 3, interval = "200ms", backoff = 1.0)]
async fn flaky(key: String) -> Result<i64, Error> {
    bump(&format!("{key}/flaky"));
    Err(Error::new(
        ErrorKind::InvalidArgument,
        format!("gateway {key} timed out"),
    ))
}

/// Step 1, then a step that fails after its retries.
#[workflow]
async fn retried(key: String) -> Result<i64, Error> {
    first(key.clone()).await?;
    flaky(key).await
}

static ORDERS: Queue = Queue::new("orders").concurrency(4).worker_concurrency(2);

const ROW_IDS: &str =
    "[...document.querySelectorAll('#workflows tbody tr')].map(r => r.dataset.id).join(',')";

#[dbos_testkit::test(timeout = "300s")]
async fn the_dashboard_works_in_a_real_browser(db: TestDatabase) {
    let (dbos, api) = admin::launch(
        db.config("testapp")
            .queue(&ORDERS)
            .cancel_poll_interval(Duration::from_millis(100)),
    )
    .await;
    run_checkout(&dbos, "ord-1").await;
    run_checkout(&dbos, "ord-2").await;
    run_refused(&dbos, "bad-1").await;
    waiting("run-1".into())
        .id("run-1")
        .on(&dbos)
        .enqueue(&ORDERS)
        .await
        .unwrap();
    dbos_testkit::crash::eventually(
        "run-1 to run its first step",
        Duration::from_secs(30),
        || async { (count("run-1/first") == 1).then_some(()) },
    )
    .await;

    let mut b = Browser::start().await;
    let base = api.url();

    // The list: every workflow, newest first, with its columns.
    b.goto(&base).await;
    let ids = b
        .until("the four workflows", &format!("(() => {{ const ids = {ROW_IDS}; return ids.split(',').length === 4 ? ids : ''; }})()"))
        .await;
    assert_eq!(ids, json!("run-1,bad-1,ord-2,ord-1"));
    let row = b
        .eval("[...document.querySelectorAll('#workflows tbody tr[data-id=\"ord-1\"] td')].map(td => td.textContent)")
        .await;
    let row: Vec<String> = serde_json::from_value(row).unwrap();
    assert_eq!(row[0], "SUCCESS");
    assert_eq!(row[1], "testkit.checkout");
    assert_eq!(row[2], "ord-1");
    assert_eq!(row[6], "1", "attempts");
    let queue = b
        .eval(
            "document.querySelector('#workflows tbody tr[data-id=\"run-1\"] td.queue').textContent",
        )
        .await;
    assert_eq!(queue, json!("orders"));
    b.screenshot("workflows").await;

    // Filter by status.
    b.eval("(() => { const s = document.getElementById('f-status'); s.value = 'ERROR'; s.dispatchEvent(new Event('change')); })()")
        .await;
    let ids = b
        .until(
            "only the failed workflow",
            &format!("(() => {{ const ids = {ROW_IDS}; return ids === 'bad-1' ? ids : ''; }})()"),
        )
        .await;
    assert_eq!(ids, json!("bad-1"));
    b.click("#clear-filters").await;
    b.until(
        "the list back whole",
        &format!("{ROW_IDS}.split(',').length === 4"),
    )
    .await;

    // Open a workflow: its header and a timeline bar per step.
    b.click("a[href='#/workflow/ord-1']").await;
    b.until("ord-1's page", "document.getElementById('wf-id').textContent === 'ord-1' && !document.getElementById('view-workflow').hidden")
        .await;
    let bars = b
        .until(
            "a bar per step",
            "(() => { const bars = [...document.querySelectorAll('#timeline .bar')]; return bars.length === 3 ? bars.map(b => ({ \
               step: b.dataset.step, label: b.getAttribute('aria-label'), cls: b.className, \
               width: b.getBoundingClientRect().width, left: b.getBoundingClientRect().left })) : null; })()",
        )
        .await;
    let bars = bars.as_array().unwrap();
    for (i, name) in ["first", "second", "third"].iter().enumerate() {
        assert_eq!(bars[i]["step"], json!((i + 1).to_string()));
        let label = bars[i]["label"].as_str().unwrap();
        assert!(
            label.starts_with(&format!("Step {} {name}: ok", i + 1)),
            "{label}"
        );
        assert_eq!(bars[i]["cls"], "bar ok");
        assert!(bars[i]["width"].as_f64().unwrap() >= 3.0, "{bars:?}");
    }
    // Bars follow the steps' order in time.
    assert!(bars[0]["left"].as_f64() <= bars[1]["left"].as_f64());
    assert!(bars[1]["left"].as_f64() <= bars[2]["left"].as_f64());
    let labels = b
        .eval("[...document.querySelectorAll('#timeline .label')].map(l => l.textContent)")
        .await;
    assert_eq!(labels, json!(["1 first", "2 second", "3 third"]));
    assert_eq!(
        b.eval("document.getElementById('wf-outcome').textContent")
            .await,
        json!("6")
    );
    // A step's output on click.
    b.click("#timeline .bar[data-step='2']").await;
    let detail = b
        .until("step 2's output", "document.getElementById('step-detail').hidden ? '' : document.getElementById('step-detail-body').textContent")
        .await;
    assert_eq!(detail, json!("2"));
    b.screenshot("workflow").await;

    // Cancel a running workflow from its page, after confirming.
    b.eval("location.hash = '#/workflow/run-1'").await;
    b.until("run-1 running", "document.getElementById('wf-id').textContent === 'run-1' && document.querySelector('#wf-status')?.textContent === 'PENDING'")
        .await;
    b.click("#action-cancel").await;
    b.until(
        "the confirmation",
        "document.getElementById('confirm').open",
    )
    .await;
    let question = b
        .eval("document.getElementById('confirm-text').textContent")
        .await;
    assert!(question.as_str().unwrap().contains("run-1"), "{question}");
    b.click("#confirm-yes").await;
    b.until(
        "the cancelled status",
        "document.querySelector('#wf-status')?.textContent === 'CANCELLED'",
    )
    .await;
    assert_eq!(status_of(&db, "run-1").await, "CANCELLED");
    assert_eq!(
        b.eval("document.getElementById('action-cancel').disabled")
            .await,
        json!(true)
    );

    // Fork from step 2: a new workflow, linked, that copies step 1 and runs 2 and 3.
    b.eval("location.hash = '#/workflow/ord-2'").await;
    b.until("ord-2's fork steps", "document.getElementById('wf-id').textContent === 'ord-2' && document.querySelectorAll('#fork-step option').length === 4")
        .await;
    b.eval("document.getElementById('fork-step').value = '2'")
        .await;
    b.click("#action-fork").await;
    b.until(
        "the confirmation",
        "document.getElementById('confirm').open",
    )
    .await;
    b.click("#confirm-yes").await;
    let fork_id = b
        .until(
            "the new workflow's link",
            "document.getElementById('action-new-workflow')?.textContent",
        )
        .await;
    let fork_id = fork_id.as_str().unwrap().to_owned();
    assert_ne!(fork_id, "ord-2");
    b.click("#action-new-workflow").await;
    b.until(
        "the fork's page",
        &format!(
            "document.getElementById('wf-id').textContent === {}",
            json!(fork_id)
        ),
    )
    .await;
    assert_eq!(
        b.until(
            "the fork's origin",
            "document.querySelector('#wf-forked-from')?.textContent"
        )
        .await,
        json!("ord-2")
    );
    b.until("the fork to succeed (live refresh)", "document.querySelector('#wf-status')?.textContent === 'SUCCESS' && document.querySelectorAll('#timeline .bar').length === 3")
        .await;
    assert_eq!(status_of(&db, &fork_id).await, "SUCCESS");
    assert_eq!(
        (
            count("ord-2/first"),
            count("ord-2/second"),
            count("ord-2/third")
        ),
        (1, 2, 2),
        "step 1 copied, 2 and 3 run again"
    );
    // The original lists its fork.
    b.eval("location.hash = '#/workflow/ord-2'").await;
    b.until(
        "the fork listed on the original",
        &format!(
            "[...document.querySelectorAll('#wf-forks a')].some(a => a.textContent === {})",
            json!(fork_id)
        ),
    )
    .await;

    // Retries: a step that failed after three attempts is one red bar over all of them,
    // with its last error; the workflow's recovery attempts are in the header.
    let out = retried("retry-1".into())
        .id("retry-1")
        .on(&dbos)
        .start()
        .await
        .unwrap()
        .result()
        .await;
    assert!(out.is_err());
    assert_eq!(count("retry-1/flaky"), 3);
    // As after two recoveries (the column the runtime increments at each recovery).
    db.connect()
        .await
        .execute(
            "UPDATE dbos.workflow_status SET recovery_attempts = 3 WHERE workflow_uuid = 'retry-1'",
            &[],
        )
        .await
        .unwrap();
    b.eval("location.hash = '#/workflow/retry-1'").await;
    let bar = b
        .until(
            "retry-1's failed step",
            "(() => { const b = document.querySelector('#timeline .bar[data-step=\"2\"]'); \
               return document.getElementById('wf-id').textContent === 'retry-1' && b ? \
               { cls: b.className, label: b.getAttribute('aria-label'), ms: Number(b.dataset.ms) } : null; })()",
        )
        .await;
    assert_eq!(bar["cls"], "bar error", "{bar}");
    assert!(
        bar["label"]
            .as_str()
            .unwrap()
            .starts_with("Step 2 flaky: error"),
        "{bar}"
    );
    assert!(
        bar["ms"].as_f64().unwrap() >= 400.0,
        "two 200 ms waits inside the bar: {bar}"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#timeline .bar').length")
            .await,
        json!(2),
        "one bar per step, not per attempt"
    );
    assert_eq!(
        b.eval("document.getElementById('wf-attempts').textContent")
            .await,
        json!("3")
    );
    assert_eq!(
        b.eval("document.getElementById('wf-status').textContent")
            .await,
        json!("ERROR")
    );
    b.click("#timeline .bar[data-step='2']").await;
    let detail = b
        .until(
            "the failed step's error",
            "document.getElementById('step-detail').hidden ? '' : \
             [document.getElementById('step-detail-body').textContent, document.getElementById('step-detail-note').textContent]",
        )
        .await;
    assert!(
        detail[0]
            .as_str()
            .unwrap()
            .contains("gateway retry-1 timed out"),
        "{detail}"
    );
    assert!(
        detail[1].as_str().unwrap().contains("last attempt"),
        "{detail}"
    );
    assert!(
        detail[1]
            .as_str()
            .unwrap()
            .contains("not recorded one by one"),
        "{detail}"
    );

    // Queues: limits, depth, throughput and the oldest waiting workflow. Three more
    // workflows completed on the queue a minute ago and one waiting for ten minutes (rows of
    // another version, which this runtime leaves alone).
    let sql = db.connect().await;
    sql.batch_execute(
        "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, queue_name, application_name,
                                           application_version, created_at, completed_at)
         SELECT 'thr-' || g, 'SUCCESS', 'testkit.checkout', 'orders', 'testapp', 'elsewhere',
                (extract(epoch FROM now()) * 1000)::bigint - 70000,
                (extract(epoch FROM now()) * 1000)::bigint - 60000 + g
           FROM generate_series(1, 3) AS g;
         INSERT INTO dbos.workflow_status (workflow_uuid, status, name, queue_name, application_name,
                                           application_version, created_at)
         VALUES ('wait-1', 'ENQUEUED', 'testkit.checkout', 'orders', 'testapp', 'elsewhere',
                 (extract(epoch FROM now()) * 1000)::bigint - 600000)",
    )
    .await
    .unwrap();
    let completed: i64 = sql
        .query_one(
            "SELECT count(*) FROM dbos.workflow_status WHERE queue_name = 'orders'
               AND completed_at >= ((extract(epoch FROM now()) * 1000)::bigint / 60000 - 14) * 60000",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(completed >= 3);
    b.eval("location.hash = '#/queues'").await;
    let cells = b
        .until("the orders queue", "(() => { const r = document.querySelector('#queues tr[data-queue=\"orders\"]'); \
            return r && r.querySelector('.oldest a') ? [...r.children].map(td => td.textContent) : null; })()")
        .await;
    assert_eq!(cells[1], "4");
    assert_eq!(cells[2], "2");
    assert_eq!(cells[5], "1", "enqueued");
    let chart = b
        .eval("(() => { const svg = document.querySelector('#queues tr[data-queue=\"orders\"] svg.chart'); \
            return { total: svg.dataset.total, label: svg.getAttribute('aria-label'), \
                     bars: [...svg.querySelectorAll('rect')].map(r => Number(r.dataset.completed)) }; })()")
        .await;
    assert_eq!(chart["total"], json!(completed.to_string()), "{chart}");
    let bars: Vec<i64> = serde_json::from_value(chart["bars"].clone()).unwrap();
    assert_eq!(bars.len(), 15, "{chart}");
    assert_eq!(bars.iter().sum::<i64>(), completed);
    assert!(
        bars.iter().any(|n| *n >= 3),
        "a minute with the three: {bars:?}"
    );
    assert!(
        chart["label"].as_str().unwrap().starts_with(&format!(
            "orders: {completed} completed in the last 15 minutes"
        )),
        "{chart}"
    );
    let oldest = b
        .eval("(() => { const a = document.querySelector('#queues tr[data-queue=\"orders\"] .oldest a'); return [a.textContent, a.getAttribute('href')]; })()")
        .await;
    assert_eq!(oldest, json!(["wait-1", "#/workflow/wait-1"]));
    b.screenshot("queues").await;

    // Schedules: the next tick, pause (the row says so), trigger and the run it started.
    dbos.create_schedule(
        &Schedule::new("nightly", "testkit.scheduled", "0 3 * * *").context(json!("report")),
    )
    .await
    .unwrap();
    let now = Utc::now();
    let today = now.date_naive().and_hms_opt(3, 0, 0).unwrap().and_utc();
    let next = if today > now {
        today
    } else {
        today + chrono::Duration::days(1)
    };
    b.eval("location.hash = '#/schedules'").await;
    let ticks = b
        .until("the nightly schedule's ticks", "(() => { const r = document.querySelector('#schedules tr[data-schedule=\"nightly\"]'); \
            return r ? [...r.querySelectorAll('.ticks li')].map(li => li.textContent) : null; })()")
        .await;
    let ticks: Vec<String> = serde_json::from_value(ticks).unwrap();
    assert_eq!(ticks.len(), 5, "{ticks:?}");
    assert_eq!(
        ticks[0],
        next.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
    );
    assert_eq!(
        ticks[1],
        (next + chrono::Duration::days(1))
            .format("%Y-%m-%d %H:%M:%S%.3f UTC")
            .to_string()
    );
    let row = "#schedules tr[data-schedule=\"nightly\"]";
    assert_eq!(
        b.eval(&format!(
            "document.querySelector({}).textContent",
            json!(format!("{row} .status"))
        ))
        .await,
        json!("ACTIVE")
    );
    b.screenshot("schedules").await;
    b.click("button[aria-label='Pause schedule nightly']").await;
    b.until(
        "the confirmation",
        "document.getElementById('confirm').open",
    )
    .await;
    b.click("#confirm-yes").await;
    b.until(
        "the schedule paused",
        &format!(
            "document.querySelector({})?.textContent === 'PAUSED'",
            json!(format!("{row} .status"))
        ),
    )
    .await;
    assert_eq!(schedule_status(&db, "nightly").await, "PAUSED");
    b.click("button[aria-label='Resume schedule nightly']")
        .await;
    b.until(
        "the confirmation",
        "document.getElementById('confirm').open",
    )
    .await;
    b.click("#confirm-no").await;
    assert_eq!(
        schedule_status(&db, "nightly").await,
        "PAUSED",
        "declined: nothing changes"
    );
    b.click("button[aria-label='Trigger schedule nightly']")
        .await;
    b.until(
        "the confirmation",
        "document.getElementById('confirm').open",
    )
    .await;
    b.click("#confirm-yes").await;
    let started = b
        .until(
            "the started workflow's link",
            "document.getElementById('schedule-new-workflow')?.textContent",
        )
        .await;
    let started = started.as_str().unwrap().to_owned();
    assert!(started.starts_with("sched-nightly-trigger-"), "{started}");
    b.click("#schedule-new-workflow").await;
    b.until(
        "the triggered run, done",
        &format!(
            "document.getElementById('wf-id').textContent === {} && document.querySelector('#wf-status')?.textContent === 'SUCCESS'",
            json!(started)
        ),
    )
    .await;
    assert_eq!(status_of(&db, &started).await, "SUCCESS");
    assert_eq!(
        b.eval("document.getElementById('wf-outcome').textContent")
            .await,
        json!("report")
    );

    // A phone: the list turns into cards, nothing wider than the screen.
    b.command(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    )
    .await;
    b.eval("location.hash = '#/'").await;
    b.until(
        "the list on a phone",
        &format!("{ROW_IDS}.split(',').length === 11"),
    )
    .await;
    let layout = b
        .eval(
            "({ head: getComputedStyle(document.querySelector('#workflows thead')).display, \
                 width: document.documentElement.scrollWidth })",
        )
        .await;
    assert_eq!(layout["head"], "none");
    assert!(layout["width"].as_f64().unwrap() <= 390.0, "{layout}");
    // The schedules too.
    b.eval("location.hash = '#/schedules'").await;
    b.until(
        "the schedules on a phone",
        "document.querySelectorAll('#schedules tbody tr').length === 1",
    )
    .await;
    let layout = b
        .eval(
            "({ head: getComputedStyle(document.querySelector('#schedules thead')).display, \
                 width: document.documentElement.scrollWidth })",
        )
        .await;
    assert_eq!(layout["head"], "none");
    assert!(layout["width"].as_f64().unwrap() <= 390.0, "{layout}");

    drop(b);
    dbos.shutdown().await.unwrap();
}
