//! Export and import of workflows: a set of workflows with everything recorded about them
//! (status row, inputs and outcome, steps, events and their history, streams, messages)
//! as a portable JSON document, and that document written into another system database
//! under the same ids, statuses and histories.
//!
//! ```no_run
//! use dbos_core::export::{ExportWorkflows, ImportWorkflows, WorkflowExport};
//!
//! # async fn demo(source: dbos_core::Client, target: dbos_core::Client) -> Result<(), Box<dyn std::error::Error>> {
//! let export = source.export_workflows(&ExportWorkflows::ids(["order-42"]).with_children()).await?;
//! std::fs::write("order-42.json", export.to_json())?;
//!
//! let export = WorkflowExport::from_json(&std::fs::read_to_string("order-42.json")?)?;
//! let report = target.import_workflows(&export, &ImportWorkflows::new()).await?;
//! println!("imported {:?}", report.imported);
//! # Ok(()) }
//! # let _ = demo;
//! ```
//!
//! An export is read in one statement (one snapshot of the source); an import is one
//! transaction (a failure writes nothing). A workflow id the target has already is an error
//! ([`ErrorKind::ConflictingWorkflowId`], nothing written) unless
//! [`ImportWorkflows::skip_existing`] says to leave those workflows as they are. Neither is a
//! durable operation: called inside a workflow, they run again on a replay.

pub(crate) mod format;

pub use format::{WorkflowExport, FORMAT, FORMAT_VERSION};

use crate::error::{Error, ErrorKind, Result};
use crate::manage::{ListWorkflows, Manager};
use crate::workflow::call::non_existent;
use crate::workflow::placement::check_id;
use format::{ExportedWorkflow, TABLES};

/// Which workflows to export: by id (optionally with every workflow they started,
/// recursively), or those a listing selects.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "an export selection does nothing until it is passed to export_workflows"]
pub struct ExportWorkflows {
    ids: Vec<String>,
    query: Option<ListWorkflows>,
    children: bool,
}

impl ExportWorkflows {
    /// These workflows (each must exist).
    pub fn ids<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExportWorkflows {
            ids: ids.into_iter().map(Into::into).collect(),
            query: None,
            children: false,
        }
    }

    /// The workflows `query` lists (with its limit, if it has one).
    pub fn matching(query: ListWorkflows) -> Self {
        ExportWorkflows {
            ids: Vec::new(),
            query: Some(query),
            children: false,
        }
    }

    /// Also every workflow the selected ones started (their children, recursively), as
    /// DBOS's `export_workflow(export_children=True)`.
    pub fn with_children(mut self) -> Self {
        self.children = true;
        self
    }
}

/// How to import: by default a workflow id the target has already fails the import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "import options do nothing until they are passed to import_workflows"]
pub struct ImportWorkflows {
    skip_existing: bool,
}

impl ImportWorkflows {
    /// The default: every workflow is imported, or (one id the target has already) none.
    pub fn new() -> Self {
        ImportWorkflows::default()
    }

    /// Leaves a workflow the target has already as it is (none of its rows are written)
    /// and imports the others; the report lists the skipped ones.
    pub fn skip_existing(mut self) -> Self {
        self.skip_existing = true;
        self
    }
}

/// What an import wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// The workflows written, with all their rows.
    pub imported: Vec<String>,
    /// The workflows the target had already, left as they were
    /// ([`ImportWorkflows::skip_existing`]).
    pub skipped: Vec<String>,
}

impl Manager {
    pub(crate) async fn export_workflows(&self, which: &ExportWorkflows) -> Result<WorkflowExport> {
        let ids: Vec<String> = match &which.query {
            Some(q) => self
                .rows(&q.clone().without_input().without_output())
                .await?
                .into_iter()
                .map(|w| w.workflow_id)
                .collect(),
            None => {
                if which.ids.is_empty() {
                    return Err(Error::invalid(
                        "no workflow ids were given: name at least one workflow to export",
                    ));
                }
                which.ids.iter().try_for_each(|id| check_id(id))?;
                which.ids.clone()
            }
        };
        let schema_version = crate::sysdb::SCHEMA_VERSION;
        if ids.is_empty() {
            return Ok(WorkflowExport {
                schema_version,
                workflows: Vec::new(),
            });
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let rows = self
            .sysdb
            .export_rows(&refs, which.children, TABLES)
            .await?;
        match rows.missing.as_slice() {
            [] => {}
            [one] => return Err(non_existent(one)),
            many => {
                return Err(Error::new(
                    ErrorKind::NonExistentWorkflow,
                    format!(
                        "no workflow has the ids {}: nothing was exported",
                        many.iter()
                            .map(|id| format!("`{id}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        }
        Ok(WorkflowExport {
            schema_version,
            workflows: group(rows.tables)?,
        })
    }

    pub(crate) async fn import_workflows(
        &self,
        export: &WorkflowExport,
        how: &ImportWorkflows,
    ) -> Result<ImportReport> {
        // Every `WorkflowExport` was checked when it was made (read by `from_json` or
        // `from_value`, or exported from a database): there is no other way to build one.
        if export.is_empty() {
            return Ok(ImportReport::default());
        }
        let ids = export.workflow_ids();
        let rows: Vec<Vec<&serde_json::Map<String, serde_json::Value>>> = (0..TABLES.len())
            .map(|t| {
                export
                    .workflows
                    .iter()
                    .flat_map(|w| w.tables[t].iter())
                    .collect()
            })
            .collect();
        let done = self
            .sysdb
            .import_rows(&ids, TABLES, &rows, how.skip_existing)
            .await?;
        if !done.existing.is_empty() && !how.skip_existing {
            return Err(Error::new(
                ErrorKind::ConflictingWorkflowId,
                format!(
                    "the target already has {} {}: nothing was imported (import with skip_existing, `--skip-existing` on the command line, to leave those as they are and import the others)",
                    if done.existing.len() == 1 { "workflow" } else { "workflows" },
                    done.existing
                        .iter()
                        .map(|id| format!("`{id}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if let Some(rt) = &self.runtime {
            // Imported queued work is this runtime's to run as soon as it can.
            for w in &export.workflows {
                if let Some(q) = w.tables[0]
                    .first()
                    .and_then(|s| s.get("queue_name"))
                    .and_then(serde_json::Value::as_str)
                {
                    rt.wake_queue(q);
                }
            }
        }
        Ok(ImportReport {
            imported: done.inserted,
            skipped: done.existing,
        })
    }
}

/// Splits the per-table row arrays of an export statement into workflows, in the order of
/// their status rows.
fn group(tables: Vec<serde_json::Value>) -> Result<Vec<ExportedWorkflow>> {
    let mut workflows: Vec<ExportedWorkflow> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for (t, (table, rows)) in TABLES.iter().zip(tables).enumerate() {
        let serde_json::Value::Array(rows) = rows else {
            return Err(Error::invalid(format!(
                "the export of `{}` was not a list of rows",
                table.name
            )));
        };
        for row in rows {
            let serde_json::Value::Object(row) = row else {
                continue;
            };
            let Some(id) = row
                .get(table.id_column)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
            else {
                continue;
            };
            if t == 0 {
                index.insert(id.clone(), workflows.len());
                workflows.push(ExportedWorkflow {
                    id: id.clone(),
                    tables: vec![Vec::new(); TABLES.len()],
                });
            }
            if let Some(&i) = index.get(&id) {
                workflows[i].tables[t].push(row);
            }
        }
    }
    Ok(workflows)
}

/// Generates the export and import methods on a type with `fn manager(&self) -> Manager`.
macro_rules! export_methods {
    () => {
        /// Exports workflows with everything recorded about them (status row, inputs and
        /// outcome, steps, events and their history, streams, messages) as a portable
        /// document: by id, optionally with their children, or those a listing selects.
        /// Read in one statement, so the document is one consistent snapshot.
        ///
        /// # Errors
        /// [`ErrorKind::NonExistentWorkflow`](crate::ErrorKind::NonExistentWorkflow) naming
        /// the ids that match no workflow (nothing is exported);
        /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for no id, a
        /// blank id or a listing filter that cannot match; a database error.
        pub async fn export_workflows(
            &self,
            which: &crate::export::ExportWorkflows,
        ) -> crate::Result<crate::export::WorkflowExport> {
            self.manager().export_workflows(which).await
        }

        /// Imports an export into this system database in one transaction: the same ids,
        /// statuses, inputs, outcomes, steps, events, streams and messages. An imported
        /// `PENDING` workflow is resumed like any other (recovery, or `resume_workflow`);
        /// an `ENQUEUED` one waits on its queue.
        ///
        /// # Errors
        /// [`ErrorKind::ConflictingWorkflowId`](crate::ErrorKind::ConflictingWorkflowId)
        /// naming the workflows the database has already, unless
        /// [`skip_existing`](crate::export::ImportWorkflows::skip_existing);
        /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) or
        /// [`ErrorKind::Schema`](crate::ErrorKind::Schema) for a document that does not
        /// check (see [`WorkflowExport::from_json`](crate::export::WorkflowExport::from_json));
        /// a database error (a message id or deduplication id taken). Whatever the error,
        /// nothing is written.
        pub async fn import_workflows(
            &self,
            export: &crate::export::WorkflowExport,
            how: &crate::export::ImportWorkflows,
        ) -> crate::Result<crate::export::ImportReport> {
            self.manager().import_workflows(export, how).await
        }
    };
}

pub(crate) use export_methods;
