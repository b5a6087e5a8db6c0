//! The command line, as `clap` parses it: DBOS's verbs and flags where they exist.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Operate dbos-rs workflows (and any DBOS system database): list, inspect, cancel, resume,
/// fork, rewind and delete workflows, look at queues, migrate the schema, collect old
/// history, and run the local Postgres the library starts.
#[derive(Debug, Parser)]
#[command(name = "dbos-rs", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes, before or after the command's name.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Your DBOS system database URL
    #[arg(
        short = 's',
        long = "sys-db-url",
        env = "DBOS_SYSTEM_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub(crate) sys_db_url: Option<String>,
    /// Schema name for DBOS system tables
    #[arg(
        long,
        default_value = "dbos",
        env = "DBOS_SYSTEM_SCHEMA",
        global = true,
        hide_env_values = true
    )]
    pub(crate) schema: String,
    /// Print JSON (DBOS's keys) instead of a table
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage workflows
    #[command(subcommand)]
    Workflow(Box<WorkflowCommand>),
    /// Queues: their limits and depth
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Scheduled workflows: list, get, pause, resume, delete, backfill, trigger
    #[command(subcommand)]
    Schedule(crate::schedule::ScheduleCommand),
    /// Application versions
    #[command(subcommand, name = "app-version")]
    AppVersion(AppVersionCommand),
    /// Create or upgrade the DBOS system tables (creates the database if it is missing)
    Migrate,
    /// Delete old finished workflows in short batches; optionally cancel old active ones
    Gc(GcArgs),
    /// Re-own a system database's rows after an application is renamed
    #[command(name = "rename-application")]
    RenameApplication(RenameArgs),
    /// Show the version and exit
    Version,
    /// The local Postgres the library starts when no URL is configured (one per application)
    #[command(subcommand)]
    Postgres(PostgresCommand),
    /// Serve the web dashboard and DBOS's admin HTTP API over the system database, until
    /// interrupted
    Dashboard(DashboardArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DashboardArgs {
    /// The port to listen on (0: any free port)
    #[arg(long, short = 'p', default_value_t = 3001)]
    pub(crate) port: u16,
    /// The address to listen on; any address other than a loopback one needs --token
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) bind: std::net::IpAddr,
    /// Require `Authorization: Bearer <token>` on the API (the page asks for it)
    #[arg(long, env = "DBOS_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowCommand {
    /// List workflows
    List(Box<ListArgs>),
    /// Retrieve the status of a workflow
    Get(IdArg),
    /// List the steps of a workflow
    Steps(IdArg),
    /// Cancel a workflow so it is no longer automatically retried or restarted
    Cancel(CancelArgs),
    /// Resume a workflow from its last completed step (cancelled, dead-lettered, stuck)
    Resume(ResumeArgs),
    /// Run a workflow again from the start under a new id
    Restart(RestartArgs),
    /// Fork a workflow from a step under a new id
    Fork(ForkArgs),
    /// Re-run a finished workflow from a step under its own id
    Rewind(RewindArgs),
    /// Delete a workflow and everything recorded about it
    Delete(DeleteArgs),
    /// Manage enqueued workflows
    #[command(subcommand)]
    Queue(WorkflowQueueCommand),
    /// Send a message to a workflow (what its `recv` on the topic receives)
    Send(SendArgs),
    /// Print one event a workflow set (its latest value)
    #[command(name = "get-event")]
    GetEvent(GetEventArgs),
    /// List every event a workflow set, with its latest value
    Events(IdArg),
    /// Print the values a workflow writes to a stream, one JSON value a line, until the
    /// stream is closed or the workflow ends
    #[command(name = "read-stream")]
    ReadStream(ReadStreamArgs),
    /// Count workflows grouped by status, name, queue, executor, version and/or a time
    /// bucket, with the listing's filters
    Aggregate(Box<crate::aggregate::AggregateArgs>),
    /// Count steps per function (and outcome or time bucket): errors and min/avg/max duration
    #[command(name = "step-aggregate")]
    StepAggregate(crate::aggregate::StepAggregateArgs),
    /// Export workflows with their steps, events, streams and messages to a portable JSON
    /// file (by id, or those the filters select)
    Export(Box<crate::export::ExportArgs>),
    /// Import an export file into this database, in one transaction (same ids, statuses and
    /// histories; a workflow the database has already fails the import unless
    /// --skip-existing)
    Import(crate::export::ImportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The workflow the message is for
    pub(crate) destination_id: String,
    /// The message, as JSON: '"approved"', '42', '{"ok": true}'
    pub(crate) message: String,
    /// The topic its `recv` waits on (default: none)
    #[arg(short = 't', long)]
    pub(crate) topic: Option<String>,
    /// A key that makes the send happen once: sending again with it does nothing
    #[arg(short = 'k', long)]
    pub(crate) idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct GetEventArgs {
    /// The workflow that sets the event
    pub(crate) workflow_id: String,
    /// The event's key
    pub(crate) key: String,
    /// Wait up to this many seconds for the event to be set (default: do not wait)
    #[arg(long, default_value_t = 0.0)]
    pub(crate) timeout: f64,
}

#[derive(Debug, Args)]
pub(crate) struct ReadStreamArgs {
    /// The workflow that writes the stream
    pub(crate) workflow_id: String,
    /// The stream's key
    pub(crate) key: String,
    /// Start at this value (0: the first written)
    #[arg(short = 'o', long, default_value_t = 0)]
    pub(crate) offset: u32,
    /// Stop waiting for more values after this many seconds (default: until the stream is
    /// closed or the workflow ends)
    #[arg(long)]
    pub(crate) timeout: Option<f64>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowQueueCommand {
    /// List enqueued workflows
    List(QueuedArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// List queues with their limits and how many workflows wait on and run from each
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AppVersionCommand {
    /// List the registered application versions, latest first
    List,
    /// Make a registered version the latest
    SetLatest {
        /// The version
        #[arg(value_name = "VERSION")]
        name: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct IdArg {
    /// The workflow id
    pub(crate) workflow_id: String,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Limit the results returned (0: no limit)
    #[arg(short = 'l', long, default_value_t = 10)]
    pub(crate) limit: u32,
    /// Sort the results in descending order (newest first)
    #[arg(short = 'd', long)]
    pub(crate) sort_desc: bool,
    /// Offset for pagination
    #[arg(short = 'o', long)]
    pub(crate) offset: Option<u32>,
    /// Leave the inputs out
    #[arg(long)]
    pub(crate) no_input: bool,
    /// Leave the outputs and errors out
    #[arg(long)]
    pub(crate) no_output: bool,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
}

/// The listing's filters, shared by `workflow list` and `workflow aggregate`.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Retrieve workflows run by this user
    #[arg(short = 'u', long)]
    pub(crate) user: Option<String>,
    /// Retrieve workflows starting after this timestamp (ISO 8601 format)
    #[arg(short = 't', long)]
    pub(crate) start_time: Option<String>,
    /// Retrieve workflows starting before this timestamp (ISO 8601 format)
    #[arg(short = 'e', long)]
    pub(crate) end_time: Option<String>,
    /// Retrieve workflows with this status (PENDING, SUCCESS, ERROR, ENQUEUED, DELAYED,
    /// CANCELLED, or MAX_RECOVERY_ATTEMPTS_EXCEEDED); several separated by commas or repeated
    #[arg(short = 'S', long, value_delimiter = ',')]
    pub(crate) status: Vec<String>,
    /// Retrieve workflows with this application version
    #[arg(short = 'v', long)]
    pub(crate) application_version: Option<String>,
    /// Retrieve workflows with this name
    #[arg(short = 'n', long)]
    pub(crate) name: Option<String>,
    /// Retrieve workflows owned by this application
    #[arg(short = 'a', long)]
    pub(crate) application_name: Option<String>,
    /// Retrieve workflows on this queue
    #[arg(short = 'q', long)]
    pub(crate) queue_name: Option<String>,
    /// Only workflows waiting on or running from a queue
    #[arg(long)]
    pub(crate) queued_only: bool,
    /// Retrieve workflows last run by this executor
    #[arg(long)]
    pub(crate) executor_id: Option<String>,
    /// Retrieve the children of this workflow
    #[arg(long)]
    pub(crate) parent: Option<String>,
    /// Retrieve the forks of this workflow
    #[arg(long)]
    pub(crate) forked_from: Option<String>,
    /// Retrieve the runs of this schedule
    #[arg(long)]
    pub(crate) schedule_name: Option<String>,
    /// Retrieve these workflow ids (repeat)
    #[arg(long = "id")]
    pub(crate) ids: Vec<String>,
    /// Retrieve workflows whose id starts with this
    #[arg(long)]
    pub(crate) prefix: Option<String>,
    /// Retrieve workflows completed after this timestamp
    #[arg(long)]
    pub(crate) completed_after: Option<String>,
    /// Retrieve workflows completed before this timestamp
    #[arg(long)]
    pub(crate) completed_before: Option<String>,
    /// Retrieve workflows dequeued after this timestamp
    #[arg(long)]
    pub(crate) dequeued_after: Option<String>,
    /// Retrieve workflows dequeued before this timestamp
    #[arg(long)]
    pub(crate) dequeued_before: Option<String>,
    /// Retrieve workflows whose attributes contain this JSON object
    #[arg(long)]
    pub(crate) attributes: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct QueuedArgs {
    /// Limit the results returned (default and 0: no limit)
    #[arg(short = 'l', long)]
    pub(crate) limit: Option<u32>,
    /// Retrieve functions starting after this timestamp (ISO 8601 format)
    #[arg(short = 't', long)]
    pub(crate) start_time: Option<String>,
    /// Retrieve functions starting before this timestamp (ISO 8601 format)
    #[arg(short = 'e', long)]
    pub(crate) end_time: Option<String>,
    /// Retrieve functions with this status; several separated by commas or repeated
    #[arg(short = 'S', long, value_delimiter = ',')]
    pub(crate) status: Vec<String>,
    /// Retrieve functions on this queue
    #[arg(short = 'q', long)]
    pub(crate) queue_name: Option<String>,
    /// Retrieve functions with this name
    #[arg(short = 'n', long)]
    pub(crate) name: Option<String>,
    /// Retrieve functions owned by this application
    #[arg(short = 'a', long)]
    pub(crate) application_name: Option<String>,
    /// Sort the results in descending order (newest first)
    #[arg(short = 'd', long)]
    pub(crate) sort_desc: bool,
    /// Offset for pagination
    #[arg(short = 'o', long)]
    pub(crate) offset: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    /// The workflow id
    pub(crate) workflow_id: String,
    /// Also cancel every workflow it started, recursively
    #[arg(long)]
    pub(crate) children: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// The workflow id
    pub(crate) workflow_id: String,
    /// Resume onto this queue instead of the internal one
    #[arg(short = 'q', long)]
    pub(crate) queue: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RestartArgs {
    /// The workflow id
    pub(crate) workflow_id: String,
    /// Custom ID for the new workflow
    #[arg(short = 'f', long)]
    pub(crate) forked_workflow_id: Option<String>,
    /// Custom application version for the new workflow
    #[arg(short = 'v', long)]
    pub(crate) application_version: Option<String>,
    /// The queue it waits on (default: the internal queue)
    #[arg(short = 'q', long)]
    pub(crate) queue: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ForkArgs {
    /// The workflow id
    pub(crate) workflow_id: String,
    /// The step the fork re-runs from (1: all of it). Required off a terminal; asked for
    /// on one
    #[arg(short = 'S', long)]
    pub(crate) step: Option<u32>,
    /// Custom ID for the forked workflow
    #[arg(short = 'f', long)]
    pub(crate) forked_workflow_id: Option<String>,
    /// Custom application version for the forked workflow
    #[arg(short = 'v', long)]
    pub(crate) application_version: Option<String>,
    /// The queue the fork waits on (default: the internal queue)
    #[arg(short = 'q', long)]
    pub(crate) queue: Option<String>,
    /// The fork's partition, on a partitioned queue
    #[arg(long)]
    pub(crate) partition_key: Option<String>,
    /// Cancel the fork if it has not finished this many seconds after it starts
    #[arg(long)]
    pub(crate) timeout: Option<f64>,
}

#[derive(Debug, Args)]
pub(crate) struct RewindArgs {
    /// The workflow id
    pub(crate) workflow_id: String,
    /// The step it re-runs from (1: all of it). Required off a terminal; asked for on one
    #[arg(short = 'S', long)]
    pub(crate) step: Option<u32>,
    /// Run it on this application version from now on
    #[arg(short = 'v', long)]
    pub(crate) application_version: Option<String>,
    /// The queue it waits on (default: the internal queue)
    #[arg(short = 'q', long)]
    pub(crate) queue: Option<String>,
    /// Its partition, on a partitioned queue
    #[arg(long)]
    pub(crate) partition_key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The workflow id
    pub(crate) workflow_id: String,
    /// Also delete every workflow it started, recursively
    #[arg(long)]
    pub(crate) children: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// Delete finished workflows created before this time (ISO 8601)
    #[arg(long, conflicts_with = "older_than")]
    pub(crate) before: Option<String>,
    /// Delete finished workflows older than this (30m, 24h, 7d, 2w)
    #[arg(long)]
    pub(crate) older_than: Option<String>,
    /// Keep the newest N workflows, deleting older finished ones
    #[arg(long)]
    pub(crate) keep: Option<u64>,
    /// Workflows deleted per transaction
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch_size: u32,
    /// Also cancel the active workflows created before this time (a global timeout)
    #[arg(long)]
    pub(crate) cancel_active_before: Option<String>,
    /// Skip the confirmation (needed when stdin is not a terminal)
    #[arg(short = 'y', long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RenameArgs {
    /// The application's previous name. Omit to only adopt unclaimed rows
    #[arg(short = 'f', long = "from")]
    pub(crate) old_name: Option<String>,
    /// The application that ends up owning the rows
    #[arg(short = 't', long = "to")]
    pub(crate) new_name: String,
    /// Also take rows no application owns (application_name NULL)
    #[arg(long)]
    pub(crate) adopt_unclaimed_rows: bool,
    /// Workflows and steps re-owned per transaction
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch_size: u32,
    /// Skip the confirmation (needed when stdin is not a terminal)
    #[arg(short = 'y', long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PostgresCommand {
    /// Start the local Postgres (or find it running)
    Start(PostgresArgs),
    /// Stop the local Postgres
    Stop(PostgresArgs),
    /// Whether the local Postgres runs, and where
    Status(PostgresArgs),
    /// Print the URL of an application's database on the local Postgres
    Url(PostgresArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PostgresArgs {
    /// The folder of the local Postgres (default: the application's, as the library picks
    /// it: `$XDG_DATA_HOME/dbos-rs/<app>` or `~/.local/share/dbos-rs/<app>`)
    #[arg(long, env = "DBOS_LOCAL_POSTGRES_DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// The application: its folder (unless --dir) and its database (`<app>_dbos_sys`, as
    /// the library names it)
    #[arg(long, conflicts_with = "database")]
    pub(crate) app: Option<String>,
    /// The database to name
    #[arg(long)]
    pub(crate) database: Option<String>,
}

#[cfg(test)]
mod tests {
    /// The chapter names every command (as its full path, `workflow get-event`) and every
    /// long flag of each, so a verb or flag added without its documentation fails here.
    #[test]
    fn the_chapter_covers_every_command_and_flag() {
        use clap::CommandFactory;
        let chapter = include_str!("../../docs/src/cli.md");
        let mut missing = Vec::new();
        fn walk(cmd: &clap::Command, path: &str, chapter: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if let Some(long) = arg.get_long() {
                    if !["help", "version"].contains(&long)
                        && !chapter.contains(&format!("--{long}"))
                    {
                        missing.push(format!("`{path}`: --{long}"));
                    }
                }
            }
            for sub in cmd.get_subcommands() {
                let name = sub.get_name();
                if name == "help" {
                    continue;
                }
                let full = if path.is_empty() {
                    name.to_owned()
                } else {
                    format!("{path} {name}")
                };
                // `postgres start|stop|status|url` names its verbs together.
                let listed = chapter.contains(&format!("`{full}"))
                    || chapter.contains(&format!("{path} "))
                        && chapter.contains(&format!("|{name}"))
                    || chapter.contains(&format!("{path} {name}|"));
                if !listed {
                    missing.push(format!("command `{full}`"));
                }
                walk(sub, &full, chapter, missing);
            }
        }
        walk(&super::Cli::command(), "", chapter, &mut missing);
        assert!(
            missing.is_empty(),
            "docs/src/cli.md does not cover: {missing:#?}"
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
