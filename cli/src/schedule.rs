//! `dbos-rs schedule ...`: the schedules of `dbos.workflow_schedules` (DBOS's rows, whoever
//! wrote them), listed, inspected, paused, resumed, deleted, backfilled and triggered.

use clap::{Args, Subcommand};
use dbos_core::schedule::{ListSchedules, ScheduleInfo, ScheduleStatus};
use dbos_core::{Error, ErrorKind, Result};
use serde_json::{json, Value};

use crate::args::Global;
use crate::output::{self, opt, short, Table};
use crate::time::parse_time;

/// The schedule verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// List schedules
    List(ListArgs),
    /// Show one schedule
    Get(NameArg),
    /// Pause a schedule: no executor fires it until it is resumed
    Pause(NameArg),
    /// Resume a paused schedule
    Resume(NameArg),
    /// Delete a schedule (runs already made stay)
    Delete(NameArg),
    /// Enqueue every tick of a schedule strictly between two times (ticks already run are not run again)
    Backfill(BackfillArgs),
    /// Run a schedule's workflow now
    Trigger(NameArg),
}

#[derive(Debug, Args)]
pub(crate) struct NameArg {
    /// The schedule's name
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only schedules with this status (ACTIVE or PAUSED); repeatable
    #[arg(short = 'S', long)]
    pub(crate) status: Vec<String>,
    /// Only schedules running this workflow; repeatable
    #[arg(short = 'n', long = "workflow-name")]
    pub(crate) workflow_name: Vec<String>,
    /// Only schedules whose name starts with this; repeatable
    #[arg(short = 'p', long)]
    pub(crate) prefix: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct BackfillArgs {
    /// The schedule's name
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    /// Start of the window, exclusive (RFC 3339 or epoch milliseconds)
    #[arg(long)]
    pub(crate) start: String,
    /// End of the window, exclusive (RFC 3339 or epoch milliseconds)
    #[arg(long)]
    pub(crate) end: String,
}

fn status(value: &str) -> Result<ScheduleStatus> {
    match value.to_ascii_uppercase().as_str() {
        "ACTIVE" => Ok(ScheduleStatus::Active),
        "PAUSED" => Ok(ScheduleStatus::Paused),
        _ => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("unknown schedule status `{value}`: use ACTIVE or PAUSED"),
        )),
    }
}

/// Runs a schedule verb.
pub(crate) async fn run(g: &Global, cmd: ScheduleCommand) -> Result<()> {
    // Arguments are checked before connecting.
    let query = match &cmd {
        ScheduleCommand::List(a) => {
            let mut q = ListSchedules::new();
            for s in &a.status {
                q = q.status(status(s)?);
            }
            for n in &a.workflow_name {
                q = q.workflow_name(n.clone());
            }
            for p in &a.prefix {
                q = q.name_prefix(p.clone());
            }
            Some(q)
        }
        _ => None,
    };
    let window = match &cmd {
        ScheduleCommand::Backfill(a) => Some((
            parse_time("--start", &a.start)?,
            parse_time("--end", &a.end)?,
        )),
        _ => None,
    };
    let client = crate::commands::client(g).await?;
    match cmd {
        ScheduleCommand::List(_) => {
            let rows = client.list_schedules(&query.unwrap_or_default()).await?;
            print_list(g, &rows);
        }
        ScheduleCommand::Get(a) => match client.get_schedule(&a.name).await? {
            Some(s) if g.json => output::json(&s.to_dbos_json()),
            Some(s) => print_one(&s),
            None => return Err(not_found(&a.name)),
        },
        ScheduleCommand::Pause(a) => {
            exists(&client, &a.name).await?;
            client.pause_schedule(&a.name).await?;
            done(g, &a.name, "paused");
        }
        ScheduleCommand::Resume(a) => {
            exists(&client, &a.name).await?;
            client.resume_schedule(&a.name).await?;
            done(g, &a.name, "resumed");
        }
        ScheduleCommand::Delete(a) => {
            exists(&client, &a.name).await?;
            client.delete_schedule(&a.name).await?;
            done(g, &a.name, "deleted");
        }
        ScheduleCommand::Backfill(a) => {
            let (start, end) = window.unwrap_or((std::time::UNIX_EPOCH, std::time::UNIX_EPOCH));
            let handles = client.backfill_schedule(&a.name, start, end).await?;
            let ids: Vec<&str> = handles.iter().map(|h| h.id()).collect();
            if g.json {
                output::json(&json!({"schedule_name": a.name, "workflow_ids": ids}));
            } else {
                println!("enqueued {} tick(s) of schedule `{}`", ids.len(), a.name);
                for id in ids {
                    println!("{id}");
                }
            }
        }
        ScheduleCommand::Trigger(a) => {
            let handle = client.trigger_schedule(&a.name).await?;
            if g.json {
                output::json(&json!({"schedule_name": a.name, "workflow_id": handle.id()}));
            } else {
                println!("{}", handle.id());
            }
        }
    }
    client.close();
    Ok(())
}

fn not_found(name: &str) -> Error {
    Error::new(
        ErrorKind::ScheduleNotFound,
        format!("no schedule named `{name}` exists (list them with `dbos-rs schedule list`)"),
    )
}

/// Pause, resume and delete are no-ops for an unknown name in the library (as in DBOS); an
/// operator typing a name wants to hear about a typo.
async fn exists(client: &dbos_core::Client, name: &str) -> Result<()> {
    match client.get_schedule(name).await? {
        Some(_) => Ok(()),
        None => Err(not_found(name)),
    }
}

fn done(g: &Global, name: &str, what: &str) {
    if g.json {
        output::json(&json!({"schedule_name": name, "result": what}));
    } else {
        println!("schedule `{name}` {what}");
    }
}

fn context_text(s: &ScheduleInfo) -> String {
    match s.context.decoded() {
        Some(v) => v.to_string(),
        None => s.context.raw_text().unwrap_or_default().to_owned(),
    }
}

fn print_list(g: &Global, rows: &[ScheduleInfo]) {
    if g.json {
        output::json(&Value::Array(
            rows.iter().map(ScheduleInfo::to_dbos_json).collect(),
        ));
        return;
    }
    if rows.is_empty() {
        println!("no schedules");
        return;
    }
    let mut t = Table::new(vec![
        "NAME",
        "STATUS",
        "SCHEDULE",
        "TIMEZONE",
        "WORKFLOW",
        "QUEUE",
        "LAST FIRED",
        "CONTEXT",
    ]);
    for s in rows {
        t.row(vec![
            s.schedule_name.clone(),
            s.status.as_str().to_owned(),
            s.schedule.clone(),
            opt(s.cron_timezone.as_deref()),
            s.workflow_name.clone(),
            opt(s.queue_name.as_deref()),
            opt(s.last_fired_at.as_deref()),
            short(&context_text(s), 40),
        ]);
    }
    t.print();
}

fn print_one(s: &ScheduleInfo) {
    output::fields(&[
        ("name", s.schedule_name.clone()),
        ("id", s.schedule_id.clone()),
        ("status", s.status.as_str().to_owned()),
        ("schedule", s.schedule.clone()),
        ("timezone", opt(s.cron_timezone.as_deref())),
        ("workflow", s.workflow_name.clone()),
        ("class", opt(s.workflow_class_name.as_deref())),
        ("queue", opt(s.queue_name.as_deref())),
        ("automatic backfill", s.automatic_backfill.to_string()),
        ("last fired", opt(s.last_fired_at.as_deref())),
        ("application", opt(s.application_name.as_deref())),
        ("context", context_text(s)),
    ]);
}
