//! `dbos-rs workflow export` and `dbos-rs workflow import`: workflows with everything
//! recorded about them, to a portable JSON file and into another system database.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;
use dbos_core::export::{ExportWorkflows, ImportWorkflows, WorkflowExport};
use dbos_core::manage::ListWorkflows;
use dbos_core::{Client, Error, ErrorKind, Result};
use serde_json::json;

use crate::args::{FilterArgs, Global};
use crate::commands::filter_query;
use crate::output;

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The workflows to export (none: those the filters select, every workflow without one)
    pub(crate) workflow_ids: Vec<String>,
    /// Write the export to this file (default: print it)
    #[arg(short = 'o', long)]
    pub(crate) output: Option<PathBuf>,
    /// Also export every workflow they started, recursively
    #[arg(long)]
    pub(crate) children: bool,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The export file (`-`: read it from standard input)
    pub(crate) file: PathBuf,
    /// Leave workflows the database has already as they are and import the others (default:
    /// one such workflow fails the import, and nothing is written)
    #[arg(long)]
    pub(crate) skip_existing: bool,
}

/// What to export, checked before connecting: ids, or a filter, not both.
pub(crate) fn selection(a: &ExportArgs) -> Result<ExportWorkflows> {
    let query = filter_query(&a.filter)?;
    let which = if a.workflow_ids.is_empty() {
        ExportWorkflows::matching(query)
    } else if query != ListWorkflows::new() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "give workflow ids or filters, not both: ids export exactly those workflows",
        ));
    } else {
        ExportWorkflows::ids(a.workflow_ids.iter().cloned())
    };
    Ok(if a.children {
        which.with_children()
    } else {
        which
    })
}

pub(crate) async fn export(g: &Global, client: &Client, a: &ExportArgs) -> Result<()> {
    let export = client.export_workflows(&selection(a)?).await?;
    let text = export.to_json();
    let Some(path) = &a.output else {
        println!("{text}");
        return Ok(());
    };
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(path)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    };
    write().map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("could not write the export to {}: {e}", path.display()),
        )
    })?;
    if g.json {
        output::json(&json!({"exported": export.workflow_ids(), "file": path}));
    } else {
        println!(
            "exported {} workflow{} to {}",
            export.len(),
            if export.len() == 1 { "" } else { "s" },
            path.display()
        );
    }
    Ok(())
}

/// Reads and checks the file, before connecting.
pub(crate) fn read(a: &ImportArgs) -> Result<WorkflowExport> {
    let mut text = String::new();
    let read = if a.file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::File::open(&a.file).and_then(|mut f| f.read_to_string(&mut text).map(drop))
    };
    read.map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("could not read {}: {e}", a.file.display()),
        )
    })?;
    WorkflowExport::from_json(&text)
}

pub(crate) async fn import(
    g: &Global,
    client: &Client,
    a: &ImportArgs,
    export: &WorkflowExport,
) -> Result<()> {
    let how = if a.skip_existing {
        ImportWorkflows::new().skip_existing()
    } else {
        ImportWorkflows::new()
    };
    let report = client.import_workflows(export, &how).await?;
    if g.json {
        output::json(&json!({"imported": report.imported, "skipped": report.skipped}));
    } else {
        println!(
            "imported {} workflow{}",
            report.imported.len(),
            if report.imported.len() == 1 { "" } else { "s" }
        );
        if !report.skipped.is_empty() {
            println!(
                "skipped {} the database has already: {}",
                report.skipped.len(),
                report.skipped.join(", ")
            );
        }
    }
    Ok(())
}
