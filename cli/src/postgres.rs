//! `dbos-rs postgres start|stop|status|url`: the local Postgres the library starts when no
//! URL is configured, in the same folder (the application's, see
//! `LocalPostgres::default_dir`, or `--dir`) and by the same rules. A server `start`ed here
//! keeps running until `stop` (a running one that would stop itself once unused is asked to
//! stay); one an application started stops itself once unused.

use dbos_core::local_postgres::{LocalPostgres, LocalPostgresState};
use std::path::PathBuf;

use dbos_core::{Error, ErrorKind, Result};
use serde_json::json;

use crate::args::{Global, PostgresArgs, PostgresCommand};
use crate::output;

fn database(a: &PostgresArgs) -> Option<String> {
    match (&a.app, &a.database) {
        (Some(app), _) => Some(LocalPostgres::database_for_app(app)),
        (None, Some(db)) => Some(db.clone()),
        (None, None) => None,
    }
}

/// The folder: `--dir`, else the application's default folder.
fn folder(a: &PostgresArgs) -> Result<PathBuf> {
    match (&a.dir, &a.app) {
        (Some(dir), _) => Ok(dir.clone()),
        (None, Some(app)) => LocalPostgres::default_dir(app),
        (None, None) => Err(Error::new(
            ErrorKind::InvalidArgument,
            "which local Postgres? Each application has its own: name it with --app NAME (the \
             name given to Config), or give its folder with --dir (or DBOS_LOCAL_POSTGRES_DIR)",
        )),
    }
}

fn not_running(dir: &std::path::Path) -> Error {
    Error::new(
        ErrorKind::LocalPostgres,
        format!(
            "no local Postgres runs in {}: start it with `dbos-rs postgres start --dir {}`",
            dir.display(),
            dir.display()
        ),
    )
}

pub(crate) async fn run(g: &Global, cmd: PostgresCommand) -> Result<()> {
    match cmd {
        PostgresCommand::Start(a) => {
            let dir = folder(&a)?;
            let pg = LocalPostgres::builder(&dir).start().await?;
            let db = database(&a).unwrap_or_else(|| "postgres".to_owned());
            if g.json {
                output::json(&json!({
                    "running": true,
                    "port": pg.port(),
                    "dir": pg.root().display().to_string(),
                    "started": !pg.reused(),
                    "url": pg.redacted_url(&db),
                }));
            } else {
                let verb = if pg.reused() {
                    "already running"
                } else {
                    "started"
                };
                println!(
                    "local Postgres {verb} on 127.0.0.1:{} (data in {})",
                    pg.port(),
                    pg.root().display()
                );
                println!("url: {}", pg.redacted_url(&db));
                println!(
                    "it keeps running until `dbos-rs postgres stop --dir {}`",
                    dir.display()
                );
                println!("     (the full URL, with its password: dbos-rs postgres url --dir {} --database {db})", dir.display());
            }
        }
        PostgresCommand::Stop(a) => match LocalPostgres::probe(folder(&a)?).await? {
            LocalPostgresState::Running(pg) => {
                pg.stop().await?;
                if g.json {
                    output::json(&json!({"running": false, "stopped": true}));
                } else {
                    println!("stopped the local Postgres in {}", pg.root().display());
                }
            }
            _ => {
                if g.json {
                    output::json(&json!({"running": false, "stopped": false}));
                } else {
                    println!(
                        "no local Postgres runs in {}; nothing to stop",
                        folder(&a)?.display()
                    );
                }
            }
        },
        PostgresCommand::Status(a) => {
            let dir = folder(&a)?;
            let state = LocalPostgres::probe(&dir).await?;
            let (running, port, dir) = match &state {
                LocalPostgresState::Running(pg) => (true, Some(pg.port()), pg.root().to_path_buf()),
                LocalPostgresState::Stopped { root } | LocalPostgresState::Absent { root } => {
                    (false, None, root.clone())
                }
                _ => (false, None, dir.clone()),
            };
            let initialised = !matches!(state, LocalPostgresState::Absent { .. });
            if g.json {
                output::json(&json!({
                    "running": running,
                    "initialized": initialised,
                    "port": port,
                    "dir": dir.display().to_string(),
                }));
            } else if let Some(port) = port {
                println!("running on 127.0.0.1:{port} (data in {})", dir.display());
            } else if initialised {
                println!(
                    "stopped (data in {}); start it with `dbos-rs postgres start`",
                    dir.display()
                );
            } else {
                println!(
                    "no local Postgres in {}; `dbos-rs postgres start` creates one",
                    dir.display()
                );
            }
        }
        PostgresCommand::Url(a) => match LocalPostgres::probe(folder(&a)?).await? {
            LocalPostgresState::Running(pg) => {
                let db = database(&a).unwrap_or_else(|| "postgres".to_owned());
                if g.json {
                    output::json(&json!({"url": pg.url(&db)}));
                } else {
                    println!("{}", pg.url(&db));
                }
            }
            _ => return Err(not_running(&folder(&a)?)),
        },
    }
    Ok(())
}
