//! The verbs that reach a workflow without SQL: send it a message, read its events and its
//! streams, through the [`Client`] (the same operations DBOS's clients have).

use std::io::Write;
use std::time::Duration;

use dbos_core::{Client, Error, ErrorKind, Result};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::args::{GetEventArgs, Global, ReadStreamArgs, SendArgs};
use crate::output::{self, Table};

/// Seconds given on the command line as a wait: finite, not negative, at most a year.
pub(crate) fn seconds(flag: &str, secs: f64) -> Result<Duration> {
    const YEAR: f64 = 365.0 * 24.0 * 3600.0;
    if !(secs.is_finite() && (0.0..=YEAR).contains(&secs)) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("{flag} {secs} is not a number of seconds from 0 to {YEAR}"),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The message of `send`, which must be JSON (what the receiving workflow decodes).
pub(crate) fn message_json(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "the message `{text}` is not JSON ({e}): quote a string as JSON, e.g. '\"approved\"', or give a \
                 number, true/false, or an object such as '{{\"amount\": 42}}'"
            ),
        )
    })
}

/// `workflow send`: one message to a workflow, on a topic, once per idempotency key.
pub(crate) async fn send(g: &Global, client: &Client, a: SendArgs) -> Result<()> {
    let message = message_json(&a.message)?;
    let mut call = client.send(a.destination_id.clone(), &message, a.topic.as_deref());
    if let Some(key) = &a.idempotency_key {
        call = call.idempotency_key(key.clone());
    }
    call.await?;
    if g.json {
        output::json(&json!({
            "destination_id": a.destination_id,
            "topic": a.topic,
            "idempotency_key": a.idempotency_key,
            "message": message,
        }));
    } else {
        let topic = match &a.topic {
            Some(t) => format!("on topic `{t}`"),
            None => "without a topic".to_owned(),
        };
        let once = match &a.idempotency_key {
            Some(k) => format!(" (idempotency key `{k}`: sending it again does nothing)"),
            None => String::new(),
        };
        println!(
            "sent {message} to workflow {} {topic}{once}",
            a.destination_id
        );
    }
    Ok(())
}

/// `workflow get-event`: the latest value of one event, waiting up to `--timeout`.
pub(crate) async fn get_event(g: &Global, client: &Client, a: GetEventArgs) -> Result<()> {
    let timeout = seconds("--timeout", a.timeout)?;
    let id = a.workflow_id.as_str();
    // A workflow that does not exist can never set it: say so now, not after the wait.
    client.get_workflow(id).await?;
    match client.get_event::<Value>(id, &a.key, timeout).await? {
        Some(value) if g.json => output::json(&value),
        Some(value) => println!("{value}"),
        None => {
            let waited = if timeout.is_zero() {
                " (--timeout S waits for it)".to_owned()
            } else {
                format!(" within {} s", timeout.as_secs_f64())
            };
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "workflow `{id}` has not set event `{}`{waited}; `dbos-rs workflow events {id}` lists the events it set",
                    a.key
                ),
            ));
        }
    }
    Ok(())
}

/// `workflow events`: every event a workflow set, by key.
pub(crate) async fn events(g: &Global, client: &Client, id: &str) -> Result<()> {
    client.get_workflow(id).await?;
    let events = client.get_all_events(id).await?;
    if g.json {
        output::json(&Value::Object(events.into_iter().collect()));
        return Ok(());
    }
    if events.is_empty() {
        println!("workflow `{id}` has set no events");
        return Ok(());
    }
    let mut t = Table::new(vec!["KEY", "VALUE"]);
    for (key, value) in events {
        t.row(vec![key, value.to_string()]);
    }
    t.print();
    Ok(())
}

/// `workflow read-stream`: the values of a stream, one JSON value a line, as they come.
pub(crate) async fn read_stream(g: &Global, client: &Client, a: ReadStreamArgs) -> Result<()> {
    let until = match a.timeout {
        Some(t) => Some(tokio::time::Instant::now() + seconds("--timeout", t)?),
        None => None,
    };
    let mut values = client
        .read_stream::<Value>(&a.workflow_id, &a.key)
        .from_offset(a.offset);
    let mut read = 0u64;
    loop {
        let next = match until {
            Some(at) => match tokio::time::timeout_at(at, values.next()).await {
                Ok(next) => next,
                Err(_) => {
                    eprintln!(
                        "stopped after --timeout with {read} values read; stream `{}` of workflow `{}` is still \
                         open (read on with -o/--offset {})",
                        a.key,
                        a.workflow_id,
                        u64::from(a.offset) + read
                    );
                    return Ok(());
                }
            },
            None => values.next().await,
        };
        match next {
            Some(value) => {
                // One JSON value a line, with or without --json, flushed as it comes.
                let value = value?;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{value}");
                let _ = out.flush();
                read += 1;
            }
            None => break,
        }
    }
    if !g.json {
        eprintln!(
            "end of stream `{}` of workflow `{}` ({read} values read)",
            a.key, a.workflow_id
        );
    }
    Ok(())
}
