//! What each command does.

use std::time::{Duration, SystemTime};

use dbos_core::codec::PortableError;
use dbos_core::manage::{
    ForkOptions, GarbageCollect, ListWorkflows, Payload, RenameApplication, Resumed, RewindOptions,
    StepInfo, WorkflowInfo,
};
use dbos_core::sysdb::{ConnectOptions, MigrationOutcome, SystemDatabase, SCHEMA_VERSION};
use dbos_core::{Client, Error, ErrorKind, Result, Status};
use serde_json::{json, Value};

use crate::args::{
    AppVersionCommand, Cli, Command, FilterArgs, ForkArgs, GcArgs, Global, ListArgs, QueueCommand,
    QueuedArgs, RenameArgs, RewindArgs, WorkflowCommand, WorkflowQueueCommand,
};
use crate::output::{self, fields, opt, short, time, Table};
use crate::time::{parse_duration, parse_time};

/// Runs a parsed command line.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Workflow(cmd) => workflow(g, *cmd).await,
        Command::Queue(QueueCommand::List) => queues(g).await,
        Command::AppVersion(cmd) => app_versions(g, cmd).await,
        Command::Schedule(cmd) => crate::schedule::run(g, cmd).await,
        Command::Migrate => migrate(g).await,
        Command::Gc(args) => gc(g, args).await,
        Command::RenameApplication(args) => rename_application(g, args).await,
        Command::Version => {
            let version = env!("CARGO_PKG_VERSION");
            if g.json {
                output::json(&json!({"version": version, "schema_version": SCHEMA_VERSION}));
            } else {
                println!("dbos-rs version {version} (DBOS system schema {SCHEMA_VERSION})");
            }
            Ok(())
        }
        Command::Postgres(cmd) => crate::postgres::run(g, cmd).await,
        Command::Dashboard(args) => crate::dashboard::run(g, args).await,
    }
}

fn url(g: &Global) -> Result<&str> {
    g.sys_db_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "no system database given: pass -s/--sys-db-url <url> or set DBOS_SYSTEM_DATABASE_URL (for the local \
                 Postgres the library starts: export DBOS_SYSTEM_DATABASE_URL=\"$(dbos-rs postgres url --app <name>)\")",
            )
        })
}

pub(crate) async fn client(g: &Global) -> Result<Client> {
    Client::builder(url(g)?)
        .schema(g.schema.clone())
        .pool_size(2)
        .connect_timeout(Duration::from_secs(5))
        .connect_retry_for(Duration::from_secs(5))
        .connect()
        .await
}

fn status_filter(values: &[String]) -> Result<Vec<Status>> {
    values
        .iter()
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            Status::from_name(v).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "unknown status `{v}`: use PENDING, ENQUEUED, DELAYED, SUCCESS, ERROR, CANCELLED or \
                         MAX_RECOVERY_ATTEMPTS_EXCEEDED"
                    ),
                )
            })
        })
        .collect()
}

fn time_arg(flag: &str, value: &Option<String>) -> Result<Option<SystemTime>> {
    value.as_deref().map(|v| parse_time(flag, v)).transpose()
}

fn list_query(a: &ListArgs) -> Result<ListWorkflows> {
    let mut q = filter_query(&a.filter)?;
    if a.limit > 0 {
        q = q.limit(a.limit);
    }
    if let Some(offset) = a.offset {
        q = q.offset(offset);
    }
    if a.sort_desc {
        q = q.newest_first();
    }
    if a.no_input {
        q = q.without_input();
    }
    if a.no_output {
        q = q.without_output();
    }
    Ok(q)
}

/// The workflows the filter flags select (no paging): a listing's and an aggregate's.
pub(crate) fn filter_query(a: &FilterArgs) -> Result<ListWorkflows> {
    let mut q = ListWorkflows::new();
    for s in status_filter(&a.status)? {
        q = q.status(s);
    }
    if let Some(t) = time_arg("--start-time", &a.start_time)? {
        q = q.created_after(t);
    }
    if let Some(t) = time_arg("--end-time", &a.end_time)? {
        q = q.created_before(t);
    }
    if let Some(t) = time_arg("--completed-after", &a.completed_after)? {
        q = q.completed_after(t);
    }
    if let Some(t) = time_arg("--completed-before", &a.completed_before)? {
        q = q.completed_before(t);
    }
    if let Some(t) = time_arg("--dequeued-after", &a.dequeued_after)? {
        q = q.dequeued_after(t);
    }
    if let Some(t) = time_arg("--dequeued-before", &a.dequeued_before)? {
        q = q.dequeued_before(t);
    }
    for (value, set) in [
        (
            &a.user,
            ListWorkflows::user as fn(ListWorkflows, String) -> ListWorkflows,
        ),
        (&a.application_version, ListWorkflows::app_version),
        (&a.name, ListWorkflows::name),
        (&a.application_name, ListWorkflows::application_name),
        (&a.queue_name, ListWorkflows::queue),
        (&a.executor_id, ListWorkflows::executor_id),
        (&a.parent, ListWorkflows::parent),
        (&a.forked_from, ListWorkflows::forked_from),
        (&a.schedule_name, ListWorkflows::schedule_name),
        (&a.prefix, ListWorkflows::id_prefix),
    ] {
        if let Some(v) = value {
            q = set(q, v.clone());
        }
    }
    for id in &a.ids {
        q = q.id(id.clone());
    }
    if let Some(attributes) = &a.attributes {
        let value: Value = serde_json::from_str(attributes).map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("--attributes `{attributes}` is not JSON ({e}): give an object, e.g. '{{\"tenant\": \"acme\"}}'"),
            )
        })?;
        q = q.attributes(value);
    }
    if a.queued_only {
        q = q.queued_only();
    }
    Ok(q)
}

fn queued_query(a: &QueuedArgs) -> Result<ListWorkflows> {
    let mut q = ListWorkflows::queued();
    if let Some(limit) = a.limit.filter(|l| *l > 0) {
        q = q.limit(limit);
    }
    for s in status_filter(&a.status)? {
        q = q.status(s);
    }
    if let Some(t) = time_arg("--start-time", &a.start_time)? {
        q = q.created_after(t);
    }
    if let Some(t) = time_arg("--end-time", &a.end_time)? {
        q = q.created_before(t);
    }
    if let Some(v) = &a.queue_name {
        q = q.queue(v.clone());
    }
    if let Some(v) = &a.name {
        q = q.name(v.clone());
    }
    if let Some(v) = &a.application_name {
        q = q.application_name(v.clone());
    }
    if let Some(offset) = a.offset {
        q = q.offset(offset);
    }
    if a.sort_desc {
        q = q.newest_first();
    }
    Ok(q)
}

/// The page a listing asked for: its limit (0: none), offset and order.
#[derive(Debug, Clone, Copy)]
struct Page {
    limit: u32,
    offset: u32,
    newest_first: bool,
}

/// How far a listing's count goes: beyond it, "more than" (a bounded count stays cheap).
const COUNT_AT_MOST: u32 = 10_000;

/// When a listing filled its limit, says on standard error how many workflows match and
/// how to see the rest (standard output keeps only the table or the JSON).
async fn say_if_cut(client: &Client, q: &ListWorkflows, page: Page, shown: usize) -> Result<()> {
    if page.limit == 0 || shown < page.limit as usize {
        return Ok(());
    }
    let total = client.count_workflows(q, COUNT_AT_MOST).await?;
    let offset = u64::from(page.offset);
    if total <= offset + shown as u64 {
        return Ok(());
    }
    let total = if total >= u64::from(COUNT_AT_MOST) {
        format!("more than {COUNT_AT_MOST}")
    } else {
        total.to_string()
    };
    let order = if page.newest_first {
        "newest first"
    } else {
        "oldest first; -d/--sort-desc for the newest"
    };
    let from = if offset > 0 {
        format!(" from offset {offset}")
    } else {
        String::new()
    };
    eprintln!(
        "{shown} of {total} workflows shown{from} ({order}); -l/--limit N shows more (-l 0: all), -o/--offset N pages"
    );
    Ok(())
}

fn value_text(p: &Payload<Value>) -> String {
    match p {
        Payload::Decoded(v) => v.to_string(),
        Payload::Raw {
            text,
            serialization,
            ..
        } => format!(
            "{text} (stored as {})",
            serialization.as_deref().unwrap_or("?")
        ),
        _ => "?".to_owned(),
    }
}

fn error_text(p: &Payload<PortableError>) -> String {
    match p {
        Payload::Decoded(e) => format!("{}: {}", e.name, e.message),
        Payload::Raw {
            text,
            serialization,
            ..
        } => format!(
            "{text} (stored as {})",
            serialization.as_deref().unwrap_or("?")
        ),
        _ => "?".to_owned(),
    }
}

fn print_workflows(g: &Global, rows: &[WorkflowInfo]) {
    if g.json {
        output::json(&Value::Array(
            rows.iter().map(WorkflowInfo::to_dbos_json).collect(),
        ));
        return;
    }
    if rows.is_empty() {
        println!("no workflows match");
        return;
    }
    let mut t = Table::new(vec![
        "WORKFLOW ID",
        "STATUS",
        "NAME",
        "CREATED",
        "QUEUE",
        "APP VERSION",
        "EXECUTOR",
    ]);
    for w in rows {
        t.row(vec![
            w.workflow_id.clone(),
            w.status.to_string(),
            w.name.clone(),
            time(Some(w.created_at)),
            opt(w.queue_name.as_deref()),
            short(w.app_version.as_deref().unwrap_or("-"), 16),
            opt(w.executor_id.as_deref()),
        ]);
    }
    t.print();
}

fn print_workflow(g: &Global, w: &WorkflowInfo) {
    if g.json {
        output::json(&w.to_dbos_json());
        return;
    }
    let input = w.input.as_ref().map(|p| match p {
        Payload::Decoded(i) if i.named_args.is_empty() => {
            Value::from(i.positional_args.clone()).to_string()
        }
        Payload::Decoded(i) => {
            json!({"args": i.positional_args, "kwargs": i.named_args}).to_string()
        }
        Payload::Raw {
            text,
            serialization,
            ..
        } => format!(
            "{text} (stored as {})",
            serialization.as_deref().unwrap_or("?")
        ),
        _ => "?".to_owned(),
    });
    let mut pairs = vec![
        ("workflow id", w.workflow_id.clone()),
        ("status", w.status.to_string()),
        ("name", w.name.clone()),
        ("input", input.unwrap_or_else(|| "-".into())),
    ];
    if let Some(o) = &w.output {
        pairs.push(("output", value_text(o)));
    }
    if let Some(e) = &w.error {
        pairs.push(("error", error_text(e)));
    }
    pairs.extend([
        ("created", time(Some(w.created_at))),
        ("updated", time(Some(w.updated_at))),
        ("completed", time(w.completed_at)),
        ("queue", opt(w.queue_name.as_deref())),
        ("dequeued", time(w.dequeued_at)),
        ("executor", opt(w.executor_id.as_deref())),
        ("app version", opt(w.app_version.as_deref())),
        ("application", opt(w.application_name.as_deref())),
        ("attempts", w.recovery_attempts.to_string()),
        ("parent", opt(w.parent_workflow_id.as_deref())),
        ("forked from", opt(w.forked_from.as_deref())),
    ]);
    if let Some(ms) = w.workflow_timeout_ms {
        pairs.push(("timeout", format!("{} s", ms as f64 / 1000.0)));
        pairs.push(("deadline", time(w.workflow_deadline_epoch_ms)));
    }
    if let Some(d) = &w.deduplication_id {
        pairs.push(("deduplication id", d.clone()));
    }
    if w.priority != 0 {
        pairs.push(("priority", w.priority.to_string()));
    }
    if let Some(k) = &w.queue_partition_key {
        pairs.push(("partition", k.clone()));
    }
    if let Some(a) = &w.attributes {
        pairs.push(("attributes", a.to_string()));
    }
    fields(&pairs);
}

async fn workflow(g: &Global, cmd: WorkflowCommand) -> Result<()> {
    // Bad filters (and an import file that does not check) are reported before connecting.
    let mut import_file = None;
    match &cmd {
        WorkflowCommand::Export(a) => drop(crate::export::selection(a)?),
        WorkflowCommand::Import(a) => import_file = Some(crate::export::read(a)?),
        WorkflowCommand::List(a) => drop(list_query(a)?),
        WorkflowCommand::Aggregate(a) => drop(crate::aggregate::workflow_query(a)?),
        WorkflowCommand::StepAggregate(a) => drop(crate::aggregate::step_query(a)?),
        WorkflowCommand::Queue(WorkflowQueueCommand::List(a)) => drop(queued_query(a)?),
        WorkflowCommand::Send(a) => drop(crate::messages::message_json(&a.message)?),
        WorkflowCommand::GetEvent(a) => {
            crate::messages::seconds("--timeout", a.timeout)?;
        }
        WorkflowCommand::ReadStream(a) => {
            if let Some(t) = a.timeout {
                crate::messages::seconds("--timeout", t)?;
            }
        }
        WorkflowCommand::Fork(a) if a.step.is_none() => can_ask_step("fork", &a.workflow_id)?,
        WorkflowCommand::Rewind(a) if a.step.is_none() => can_ask_step("rewind", &a.workflow_id)?,
        _ => {}
    }
    let client = client(g).await?;
    match cmd {
        WorkflowCommand::List(a) => {
            let q = list_query(&a)?;
            let rows = client.list_workflows(&q).await?;
            print_workflows(g, &rows);
            let page = Page {
                limit: a.limit,
                offset: a.offset.unwrap_or(0),
                newest_first: a.sort_desc,
            };
            say_if_cut(&client, &q, page, rows.len()).await?;
        }
        WorkflowCommand::Queue(WorkflowQueueCommand::List(a)) => {
            let q = queued_query(&a)?;
            let rows = client.list_workflows(&q).await?;
            print_workflows(g, &rows);
            let page = Page {
                limit: a.limit.unwrap_or(0),
                offset: a.offset.unwrap_or(0),
                newest_first: a.sort_desc,
            };
            say_if_cut(&client, &q, page, rows.len()).await?;
        }
        WorkflowCommand::Get(a) => {
            let w = client.get_workflow(&a.workflow_id).await?;
            print_workflow(g, &w);
        }
        WorkflowCommand::Steps(a) => print_steps(g, &client, &a.workflow_id).await?,
        WorkflowCommand::Cancel(a) => {
            let id = a.workflow_id.as_str();
            let cancelled = if a.children {
                client.cancel_workflow_and_descendants(id).await?
            } else {
                client.cancel_workflow(id).await?;
                Vec::new()
            };
            let w = client.get_workflow(id).await?;
            if g.json {
                let mut j = w.to_dbos_json();
                if a.children {
                    j["cancelled"] = json!(cancelled);
                }
                output::json(&j);
            } else if w.status == Status::Cancelled {
                let others = cancelled.iter().filter(|c| *c != id).count();
                if others > 0 {
                    println!("cancelled workflow {id} and {others} of its descendants");
                } else {
                    println!("cancelled workflow {id}");
                }
            } else {
                println!(
                    "workflow {id} had already finished ({}); it was left as it is",
                    w.status
                );
            }
        }
        WorkflowCommand::Resume(a) => {
            let id = a.workflow_id.as_str();
            let resumed = match &a.queue {
                Some(q) => client.resume_workflow_on_queue(id, q).await?,
                None => client.resume_workflow(id).await?,
            };
            if g.json {
                output::json(&client.get_workflow(id).await?.to_dbos_json());
                return Ok(());
            }
            match resumed {
                Resumed::Enqueued { queue } => println!(
                    "resumed workflow {id}: ENQUEUED on {queue}; an executor continues it from its last completed step"
                ),
                Resumed::AlreadyFinished(status) => println!(
                    "workflow {id} already finished ({status}): nothing to resume; fork it to run it again"
                ),
                _ => println!("resumed workflow {id}"),
            }
        }
        WorkflowCommand::Restart(a) => {
            let fork = ForkArgs {
                workflow_id: a.workflow_id,
                step: Some(1),
                forked_workflow_id: a.forked_workflow_id,
                application_version: a.application_version,
                queue: a.queue,
                partition_key: None,
                timeout: None,
            };
            fork_command(g, &client, fork).await?;
        }
        WorkflowCommand::Fork(a) => fork_command(g, &client, a).await?,
        WorkflowCommand::Send(a) => crate::messages::send(g, &client, a).await?,
        WorkflowCommand::GetEvent(a) => crate::messages::get_event(g, &client, a).await?,
        WorkflowCommand::Events(a) => crate::messages::events(g, &client, &a.workflow_id).await?,
        WorkflowCommand::ReadStream(a) => crate::messages::read_stream(g, &client, a).await?,
        WorkflowCommand::Aggregate(a) => crate::aggregate::workflows(g, &client, &a).await?,
        WorkflowCommand::StepAggregate(a) => crate::aggregate::steps(g, &client, &a).await?,
        WorkflowCommand::Rewind(a) => rewind_command(g, &client, a).await?,
        WorkflowCommand::Export(a) => crate::export::export(g, &client, &a).await?,
        WorkflowCommand::Import(a) => {
            let file = match import_file.take() {
                Some(file) => file,
                None => crate::export::read(&a)?,
            };
            crate::export::import(g, &client, &a, &file).await?;
        }
        WorkflowCommand::Delete(a) => {
            let id = a.workflow_id.as_str();
            let deleted = if a.children {
                client.delete_workflow_and_descendants(id).await?
            } else {
                client.delete_workflow(id).await?;
                vec![id.to_owned()]
            };
            if g.json {
                output::json(&json!({"deleted": deleted}));
            } else {
                let others = deleted.iter().filter(|d| *d != id).count();
                if others > 0 {
                    println!("deleted workflow {id} and {others} of its descendants");
                } else {
                    println!("deleted workflow {id}");
                }
            }
        }
    }
    Ok(())
}

/// Refuses a fork or rewind without `--step` when there is no terminal to ask on: the
/// default of re-running everything (real work, again) must be chosen, not fallen into.
fn can_ask_step(verb: &str, workflow_id: &str) -> Result<()> {
    if on_terminal() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidArgument,
        format!(
            "`workflow {verb}` needs -S/--step N, the step it re-runs from (1 re-runs all of it; `dbos-rs workflow \
             steps {workflow_id}` lists the recorded ones); nothing was changed"
        ),
    ))
}

/// The step a fork or rewind re-runs from: `--step`, or asked for on the terminal after
/// showing how far the workflow got. `None`: the operator declined.
async fn step_or_ask(
    client: &Client,
    verb: &str,
    workflow_id: &str,
    step: Option<u32>,
) -> Result<Option<u32>> {
    if let Some(step) = step {
        return Ok(Some(step));
    }
    can_ask_step(verb, workflow_id)?;
    let steps = client.list_workflow_steps(workflow_id).await?;
    let last = steps
        .iter()
        .map(|s| s.function_id)
        .max()
        .unwrap_or(0)
        .max(0) as u32;
    let recorded = match steps.iter().max_by_key(|s| s.function_id) {
        Some(s) => format!("it recorded steps up to {last} (`{}`)", s.function_name),
        None => "it recorded no steps".to_owned(),
    };
    let question = format!(
        "{verb} workflow `{workflow_id}` from which step? {recorded}; 1 re-runs all of it, {} only what comes after \
         (`dbos-rs workflow steps {workflow_id}` lists them). Step, or empty to cancel:",
        last + 1
    );
    loop {
        let answer = ask(&question)?;
        let answer = answer.trim();
        if answer.is_empty() || answer.eq_ignore_ascii_case("n") {
            return Ok(None);
        }
        match answer.parse::<u32>() {
            Ok(step) if step >= 1 => return Ok(Some(step)),
            _ => println!("`{answer}` is not a step number (1 or more)"),
        }
    }
}

/// The operations that record their deadline as a `DBOS.sleep` at the next step id, as
/// DBOS does (so a replay waits only for what remains).
const TIMED_WAITS: [&str; 2] = ["DBOS.recv", "DBOS.getEvent"];

/// What a `DBOS.sleep` row is: the deadline of the timed wait at the step before it, when
/// that step is a `recv` or `get_event`, or is still waiting (not recorded yet: a wait
/// records its deadline when it starts and itself when it ends). `None`: a sleep.
fn deadline_of(steps: &[StepInfo], i: usize, still_running: bool) -> Option<String> {
    let s = &steps[i];
    if s.function_name != "DBOS.sleep" {
        return None;
    }
    let before = s.function_id - 1;
    match steps.iter().find(|p| p.function_id == before) {
        Some(p) if TIMED_WAITS.contains(&p.function_name.as_str()) => {
            Some(format!("deadline of step {before} ({})", p.function_name))
        }
        None if still_running && before >= 1 && i + 1 == steps.len() => {
            Some(format!("deadline of step {before} (still waiting)"))
        }
        _ => None,
    }
}

async fn print_steps(g: &Global, client: &Client, workflow_id: &str) -> Result<()> {
    let steps = client.list_workflow_steps(workflow_id).await?;
    if g.json {
        output::json(&Value::Array(
            steps.iter().map(|s| s.to_dbos_json()).collect(),
        ));
        return Ok(());
    }
    if steps.is_empty() {
        println!("workflow `{workflow_id}` has no recorded steps");
        return Ok(());
    }
    // Only a running workflow can have a wait in progress.
    let last_is_sleep = steps
        .last()
        .is_some_and(|s| s.function_name == "DBOS.sleep");
    let still_running =
        last_is_sleep && client.get_workflow(workflow_id).await?.status == Status::Pending;
    let mut t = Table::new(vec![
        "STEP",
        "NAME",
        "OUTPUT / ERROR",
        "CHILD",
        "STARTED",
        "TOOK",
    ]);
    for (i, s) in steps.iter().enumerate() {
        let deadline = deadline_of(&steps, i, still_running);
        let result = match (&s.error, &s.output) {
            // A sleep's (and a deadline's) output is its time in epoch seconds; say it as
            // a time.
            (None, output) if s.function_name == "DBOS.sleep" => {
                // The wake-up time is the output (a deadline's row completes when it is
                // recorded, as DBOS records it; a sleep's at its wake-up time).
                let wake = match output {
                    Some(Payload::Decoded(Value::Number(n))) => {
                        n.as_f64().map(|secs| (secs * 1000.0).round() as i64)
                    }
                    _ => s.completed_at_epoch_ms,
                };
                format!("until {}", time(wake))
            }
            (Some(e), _) => format!("error {}", error_text(e)),
            (None, Some(o)) => value_text(o),
            (None, None) => "-".to_owned(),
        };
        // A deadline is recorded as a sleep row: that is no duration.
        let took = match (s.started_at_epoch_ms, s.completed_at_epoch_ms) {
            _ if deadline.is_some() => "-".to_owned(),
            (Some(a), Some(b)) if b >= a => format!("{} ms", b - a),
            _ => "-".to_owned(),
        };
        let name = match deadline {
            Some(d) => format!("{}: {d}", s.function_name),
            None => s.function_name.clone(),
        };
        t.row(vec![
            s.function_id.to_string(),
            name,
            short(&result, 60),
            opt(s.child_workflow_id.as_deref()),
            time(s.started_at_epoch_ms),
            took,
        ]);
    }
    t.print();
    Ok(())
}

async fn fork_command(g: &Global, client: &Client, a: ForkArgs) -> Result<()> {
    let Some(step) = step_or_ask(client, "fork", &a.workflow_id, a.step).await? else {
        println!("Operation cancelled.");
        return Ok(());
    };
    let mut options = ForkOptions::new();
    if let Some(v) = a.forked_workflow_id {
        options = options.workflow_id(v);
    }
    if let Some(v) = a.application_version {
        options = options.app_version(v);
    }
    if let Some(v) = a.queue {
        options = options.queue(v);
    }
    if let Some(v) = a.partition_key {
        options = options.partition_key(v);
    }
    if let Some(secs) = a.timeout {
        if !(secs.is_finite() && secs > 0.0) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("--timeout {secs} is not a positive number of seconds"),
            ));
        }
        options = options.timeout(Duration::from_secs_f64(secs));
    }
    let fork = client.fork_workflow(&a.workflow_id, step, &options).await?;
    let w = client.get_workflow(fork.id()).await?;
    if g.json {
        output::json(&w.to_dbos_json());
    } else {
        println!(
            "forked workflow {} from step {} as {}: {} on {}",
            a.workflow_id,
            step,
            w.workflow_id,
            w.status,
            opt(w.queue_name.as_deref())
        );
    }
    Ok(())
}

async fn rewind_command(g: &Global, client: &Client, a: RewindArgs) -> Result<()> {
    let Some(step) = step_or_ask(client, "rewind", &a.workflow_id, a.step).await? else {
        println!("Operation cancelled.");
        return Ok(());
    };
    let mut options = RewindOptions::new();
    if let Some(v) = a.application_version {
        options = options.app_version(v);
    }
    if let Some(v) = a.queue {
        options = options.queue(v);
    }
    if let Some(v) = a.partition_key {
        options = options.partition_key(v);
    }
    client
        .rewind_workflow(&a.workflow_id, step, &options)
        .await?;
    let w = client.get_workflow(&a.workflow_id).await?;
    if g.json {
        output::json(&w.to_dbos_json());
    } else {
        println!(
            "rewound workflow {} to step {}: {} on {}",
            a.workflow_id,
            step,
            w.status,
            opt(w.queue_name.as_deref())
        );
    }
    Ok(())
}

async fn queues(g: &Global) -> Result<()> {
    let queues = client(g).await?.list_queues().await?;
    if g.json {
        output::json(&Value::Array(
            queues.iter().map(|q| q.to_dbos_json()).collect(),
        ));
        return Ok(());
    }
    if queues.is_empty() {
        println!("no queues are registered, and no workflow waits on one");
        return Ok(());
    }
    let limit = |n: Option<u32>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    let mut t = Table::new(vec![
        "QUEUE",
        "ENQUEUED",
        "PENDING",
        "DELAYED",
        "CONCURRENCY",
        "PER WORKER",
        "RATE LIMIT",
        "PARTITIONED",
    ]);
    for q in &queues {
        let name = if q.registered {
            q.name.clone()
        } else {
            format!("{} (not registered)", q.name)
        };
        t.row(vec![
            name,
            q.enqueued.to_string(),
            q.pending.to_string(),
            q.delayed.to_string(),
            limit(q.concurrency),
            limit(q.worker_concurrency),
            q.rate_limit
                .map(|r| format!("{} per {} s", r.max, r.period.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            if q.partitioned { "yes" } else { "no" }.to_owned(),
        ]);
    }
    t.print();
    Ok(())
}

async fn app_versions(g: &Global, cmd: AppVersionCommand) -> Result<()> {
    let client = client(g).await?;
    match cmd {
        AppVersionCommand::List => {
            let versions = client.list_application_versions().await?;
            if g.json {
                output::json(&Value::Array(
                    versions.iter().map(|v| v.to_dbos_json()).collect(),
                ));
                return Ok(());
            }
            let mut t = Table::new(vec![
                "VERSION",
                "LATEST SINCE",
                "FIRST REGISTERED",
                "APPLICATION",
            ]);
            for v in &versions {
                t.row(vec![
                    v.version_name.clone(),
                    time(Some(v.version_timestamp)),
                    time(Some(v.created_at)),
                    opt(v.application_name.as_deref()),
                ]);
            }
            t.print();
        }
        AppVersionCommand::SetLatest { name: version } => {
            client.set_latest_application_version(&version).await?;
            if g.json {
                output::json(&client.latest_application_version().await?.to_dbos_json());
            } else {
                println!("application version {version} is now the latest");
            }
        }
    }
    Ok(())
}

async fn migrate(g: &Global) -> Result<()> {
    let options = ConnectOptions {
        pool_size: 1,
        connect_timeout: Duration::from_secs(5),
        retry_for: Duration::from_secs(5),
        ..Default::default()
    };
    let db = SystemDatabase::connect(url(g)?, &g.schema, &options).await?;
    let outcome = db.migrate().await?;
    let (from, to) = match &outcome {
        MigrationOutcome::Applied { from, to } => (*from, *to),
        other => (Some(other.version()), other.version()),
    };
    if g.json {
        output::json(&json!({
            "database": db.database_name(),
            "schema": db.schema(),
            "from_version": from,
            "version": to,
        }));
    } else {
        match outcome {
            MigrationOutcome::Applied { from: None, to } => println!(
                "created the DBOS system schema `{}` in database `{}` at version {to}",
                db.schema(),
                db.database_name()
            ),
            MigrationOutcome::Applied { from: Some(from), to } => println!(
                "migrated the DBOS system schema `{}` in database `{}` from version {from} to {to}",
                db.schema(),
                db.database_name()
            ),
            MigrationOutcome::Ahead { found } => println!(
                "the DBOS system schema `{}` in database `{}` is at version {found}, newer than this build's \
                 {SCHEMA_VERSION}; left as it is",
                db.schema(),
                db.database_name()
            ),
            _ => println!(
                "the DBOS system schema `{}` in database `{}` is up to date (version {to})",
                db.schema(),
                db.database_name()
            ),
        }
    }
    db.close();
    Ok(())
}

async fn gc(g: &Global, a: GcArgs) -> Result<()> {
    let before = match (&a.before, &a.older_than) {
        (Some(t), _) => Some(parse_time("--before", t)?),
        (None, Some(d)) => Some(SystemTime::now() - parse_duration("--older-than", d)?),
        (None, None) => None,
    };
    let timeout = time_arg("--cancel-active-before", &a.cancel_active_before)?;
    if before.is_none() && a.keep.is_none() && timeout.is_none() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "nothing to do: give --before <time>, --older-than <duration> and/or --keep <n> to delete old finished \
             workflows, or --cancel-active-before <time> for a global timeout",
        ));
    }
    if !a.yes {
        let mut what = Vec::new();
        if let Some(cutoff) = timeout {
            what.push(format!(
                "cancels every active workflow created before {}",
                dbos_core::codec::format_rfc3339(cutoff)
            ));
        }
        match (before, a.keep) {
            (Some(t), Some(n)) => what.push(format!(
                "deletes the finished workflows created before {} beyond the newest {n}, with everything recorded \
                 about them",
                dbos_core::codec::format_rfc3339(t)
            )),
            (Some(t), None) => what.push(format!(
                "deletes the finished workflows created before {}, with everything recorded about them",
                dbos_core::codec::format_rfc3339(t)
            )),
            (None, Some(n)) => what.push(format!(
                "deletes every finished workflow but the newest {n}, with everything recorded about them"
            )),
            (None, None) => {}
        }
        let question = format!("This {}. Proceed?", what.join(" and "));
        if !confirm(&question, "`gc` deletes (or cancels) workflows")? {
            println!("Operation cancelled.");
            return Ok(());
        }
    }
    let client = client(g).await?;
    let mut result = serde_json::Map::new();
    if let Some(cutoff) = timeout {
        let cancelled = client.cancel_workflows_created_before(cutoff).await?;
        if !g.json {
            println!(
                "cancelled {} active workflows created before {}",
                cancelled.len(),
                dbos_core::codec::format_rfc3339(cutoff)
            );
        }
        result.insert("cancelled".into(), json!(cancelled));
    }
    if before.is_some() || a.keep.is_some() {
        let mut collect = GarbageCollect::new().batch_size(a.batch_size);
        if let Some(t) = before {
            collect = collect.created_before(t);
        }
        if let Some(n) = a.keep {
            collect = collect.keep_newest(n);
        }
        let report = client.garbage_collect(&collect).await?;
        if !g.json {
            match report.cutoff_ms {
                Some(cutoff) => println!(
                    "deleted {} finished workflows created before {} in {} batches",
                    report.deleted,
                    time(Some(cutoff)),
                    report.batches
                ),
                None => println!("deleted nothing: there are no more workflows than --keep"),
            }
        }
        result.insert("deleted".into(), json!(report.deleted));
        result.insert("batches".into(), json!(report.batches));
        result.insert("cutoff_epoch_ms".into(), json!(report.cutoff_ms));
    }
    if g.json {
        output::json(&Value::Object(result));
    }
    Ok(())
}

async fn rename_application(g: &Global, a: RenameArgs) -> Result<()> {
    let mut rename = RenameApplication::to(a.new_name.clone()).batch_size(a.batch_size);
    let mut sources = Vec::new();
    if let Some(old) = &a.old_name {
        rename = rename.from(old.clone());
        sources.push(format!("`{old}`'s rows"));
    }
    if a.adopt_unclaimed_rows {
        rename = rename.adopt_unclaimed_rows();
        sources.push("rows no application owns".to_owned());
    }
    if sources.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "nothing to re-own: pass --from <old name>, --adopt-unclaimed-rows, or both",
        ));
    }
    if !a.yes {
        let question = format!(
            "This re-owns {} in the system database as `{}`. Stop the application being renamed first. Proceed?",
            sources.join(" and "),
            a.new_name
        );
        if !confirm(
            &question,
            "`rename-application` changes rows other processes rely on",
        )? {
            println!("Operation cancelled.");
            return Ok(());
        }
    }
    let moved = client(g).await?.rename_application(&rename).await?;
    let counts = json!({
        "queues": moved.queues,
        "schedules": moved.schedules,
        "versions": moved.versions,
        "workflows": moved.workflows,
        "steps": moved.steps,
    });
    if g.json {
        output::json(&counts);
    } else {
        println!(
            "re-owned as `{}`: {} queues, {} schedules, {} versions, {} workflows, {} steps",
            a.new_name, moved.queues, moved.schedules, moved.versions, moved.workflows, moved.steps
        );
    }
    Ok(())
}

/// Whether standard input is a terminal an operator can answer on.
fn on_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

/// Prints `question` and reads one line of answer from the terminal.
fn ask(question: &str) -> Result<String> {
    use std::io::{BufRead, Write};
    print!("{question} ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::new(ErrorKind::Io, format!("could not read the answer: {e}")))?;
    Ok(answer)
}

/// Asks `question` on the terminal (yes or no); refuses to guess when stdin is not one,
/// saying that `what` and how to go ahead anyway.
fn confirm(question: &str, what: &str) -> Result<bool> {
    if !on_terminal() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "{what}, and standard input is not a terminal to confirm it: pass -y/--yes to go ahead; nothing \
                 was changed"
            ),
        ));
    }
    let answer = ask(&format!("{question} [y/N]"))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
