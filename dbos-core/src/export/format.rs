//! The export document: its tables and columns, how it is written, and how a file is read
//! and checked before anything is written.
//!
//! Each workflow is an object with one key per system table, and each row an object keyed by
//! the table's column names: DBOS Transact's own export shape (`workflow_status`,
//! `operation_outputs`, `workflow_events`, `workflow_events_history`, `streams`), plus the
//! 3.x payload tables (`workflow_input`, `workflow_output`) and the workflow's messages
//! (`notifications`). A file DBOS's shape produced (without the last three) imports as it is.

use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::sysdb::workflows::now_ms;
use crate::sysdb::SCHEMA_VERSION;
use crate::workflow::call::Status;

/// The value of the document's `format` key.
pub const FORMAT: &str = "dbos-workflow-export";

/// The version of the document's layout this library writes and reads (`format_version`).
pub const FORMAT_VERSION: i64 = 1;

/// The JSON type a column takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    /// `integer`: a JSON integer within 32 bits.
    Int4,
    /// `bigint`.
    Int8,
    Bool,
    /// `jsonb`: any JSON value.
    Json,
}

/// Whether a column may be left out or null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Present and not null.
    Required,
    /// Absent or null: stored as NULL.
    Nullable,
    /// Absent: this value; never null (the column is `NOT NULL`).
    Default(Fill),
    /// The workflow's id: filled in when absent, refused when it names another workflow.
    WorkflowId,
}

/// The value a column left out gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    Zero,
    False,
    EmptyText,
    /// The import's time, in epoch milliseconds (a `retention_timestamp`, a message's
    /// `created_at_epoch_ms`: the column's own default).
    NowMs,
}

/// One exported column.
#[derive(Debug)]
pub(crate) struct Column {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) need: Need,
}

/// One exported table: its rows belong to a workflow through `id_column`.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    /// At most one row per workflow (written as an object or `null`, not a list).
    pub(crate) single: bool,
    pub(crate) id_column: &'static str,
    /// The order rows are exported in (the primary key).
    pub(crate) order_by: &'static str,
    pub(crate) columns: &'static [Column],
}

const fn col(name: &'static str, kind: Kind, need: Need) -> Column {
    Column { name, kind, need }
}

use Kind::{Bool, Int4, Int8, Json, Text};
use Need::{Nullable, Required, WorkflowId};

/// The tables an export carries, `workflow_status` first (the others reference it). Every
/// column of schema 125 is carried except `workflow_status.owner_xid` and `creator_xid`:
/// they are tokens of the executions in the source database, meaningless in another (DBOS
/// leaves `owner_xid` out of its export for the same reason).
pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "workflow_status",
        single: true,
        id_column: "workflow_uuid",
        order_by: "workflow_uuid",
        columns: &[
            col("workflow_uuid", Text, Required),
            col("status", Text, Required),
            col("name", Text, Required),
            col("authenticated_user", Text, Nullable),
            col("assumed_role", Text, Nullable),
            col("authenticated_roles", Text, Nullable),
            col("request", Text, Nullable),
            col("output", Text, Nullable),
            col("error", Text, Nullable),
            col("executor_id", Text, Nullable),
            col("created_at", Int8, Required),
            col("updated_at", Int8, Required),
            col("application_version", Text, Nullable),
            col("application_id", Text, Nullable),
            col("class_name", Text, Nullable),
            col("config_name", Text, Nullable),
            col("recovery_attempts", Int8, Nullable),
            col("queue_name", Text, Nullable),
            col("workflow_timeout_ms", Int8, Nullable),
            col("workflow_deadline_epoch_ms", Int8, Nullable),
            col("inputs", Text, Nullable),
            col("started_at_epoch_ms", Int8, Nullable),
            col("deduplication_id", Text, Nullable),
            col("priority", Int4, Need::Default(Fill::Zero)),
            col("queue_partition_key", Text, Nullable),
            col("forked_from", Text, Nullable),
            col("parent_workflow_id", Text, Nullable),
            col("serialization", Text, Nullable),
            col("delay_until_epoch_ms", Int8, Nullable),
            col("was_forked_from", Bool, Need::Default(Fill::False)),
            col("rate_limited", Bool, Need::Default(Fill::False)),
            col("completed_at", Int8, Nullable),
            col("attributes", Json, Nullable),
            col("schedule_name", Text, Nullable),
            col("debounce_deadline_epoch_ms", Int8, Nullable),
            col("is_debounced", Bool, Need::Default(Fill::False)),
            col("application_name", Text, Nullable),
        ],
    },
    Table {
        name: "workflow_input",
        single: true,
        id_column: "workflow_uuid",
        order_by: "workflow_uuid",
        columns: &[
            col("workflow_uuid", Text, WorkflowId),
            col("inputs", Text, Nullable),
            col("retention_timestamp", Int8, Need::Default(Fill::NowMs)),
        ],
    },
    Table {
        name: "workflow_output",
        single: true,
        id_column: "workflow_uuid",
        order_by: "workflow_uuid",
        columns: &[
            col("workflow_uuid", Text, WorkflowId),
            col("output", Text, Nullable),
            col("error", Text, Nullable),
            col("retention_timestamp", Int8, Need::Default(Fill::NowMs)),
        ],
    },
    Table {
        name: "operation_outputs",
        single: false,
        id_column: "workflow_uuid",
        order_by: "workflow_uuid, function_id",
        columns: &[
            col("workflow_uuid", Text, WorkflowId),
            col("function_id", Int4, Required),
            col("function_name", Text, Need::Default(Fill::EmptyText)),
            col("output", Text, Nullable),
            col("error", Text, Nullable),
            col("child_workflow_id", Text, Nullable),
            col("started_at_epoch_ms", Int8, Nullable),
            col("completed_at_epoch_ms", Int8, Nullable),
            col("serialization", Text, Nullable),
            col("application_name", Text, Nullable),
            col("retention_timestamp", Int8, Need::Default(Fill::NowMs)),
        ],
    },
    Table {
        name: "workflow_events",
        single: false,
        id_column: "workflow_uuid",
        order_by: "workflow_uuid, key",
        columns: &[
            col("workflow_uuid", Text, WorkflowId),
            col("key", Text, Required),
            col("value", Text, Required),
            col("serialization", Text, Nullable),
        ],
    },
    Table {
        name: "workflow_events_history",
        single: false,
        id_column: "workflow_uuid",
        order_by: "workflow_uuid, function_id, key",
        columns: &[
            col("workflow_uuid", Text, WorkflowId),
            col("function_id", Int4, Required),
            col("key", Text, Required),
            col("value", Text, Required),
            col("serialization", Text, Nullable),
        ],
    },
    Table {
        name: "streams",
        single: false,
        id_column: "workflow_uuid",
        order_by: "workflow_uuid, key, \"offset\"",
        columns: &[
            col("workflow_uuid", Text, WorkflowId),
            col("key", Text, Required),
            col("value", Text, Required),
            col("offset", Int4, Required),
            col("function_id", Int4, Need::Default(Fill::Zero)),
            col("serialization", Text, Nullable),
        ],
    },
    Table {
        name: "notifications",
        single: false,
        id_column: "destination_uuid",
        order_by: "destination_uuid, created_at_epoch_ms, message_uuid",
        columns: &[
            col("message_uuid", Text, Required),
            col("destination_uuid", Text, WorkflowId),
            col("topic", Text, Nullable),
            col("message", Text, Required),
            col("created_at_epoch_ms", Int8, Need::Default(Fill::NowMs)),
            col("serialization", Text, Nullable),
            col("consumed", Bool, Need::Default(Fill::False)),
            col("consumed_by_function_id", Int4, Nullable),
        ],
    },
];

/// Index of `workflow_status` in [`TABLES`].
const STATUS: usize = 0;

/// One workflow of an export: its rows, table by table (in [`TABLES`] order).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExportedWorkflow {
    pub(crate) id: String,
    pub(crate) tables: Vec<Vec<Map<String, Value>>>,
}

/// A portable export of workflows: their status rows, inputs and outcomes, recorded steps,
/// events and their history, streams and messages, as JSON. Made by `export_workflows` (on
/// [`Dbos`](crate::Dbos) or [`Client`](crate::Client)) or read from a file with
/// [`from_json`](Self::from_json); written with [`to_json`](Self::to_json); imported into
/// another system database with `import_workflows`.
///
/// The file format (`format_version` 1) is described in the book's chapter "Export and
/// import".
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowExport {
    pub(crate) schema_version: i64,
    pub(crate) workflows: Vec<ExportedWorkflow>,
}

impl WorkflowExport {
    /// The exported workflows' ids, in the document's order.
    pub fn workflow_ids(&self) -> Vec<&str> {
        self.workflows.iter().map(|w| w.id.as_str()).collect()
    }

    /// How many workflows the export holds.
    pub fn len(&self) -> usize {
        self.workflows.len()
    }

    /// Whether the export holds no workflow.
    pub fn is_empty(&self) -> bool {
        self.workflows.is_empty()
    }

    /// The system-schema version of the database the rows came from (`dbos_migrations`).
    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    /// The document as a JSON value.
    pub fn to_value(&self) -> Value {
        // A `Value` always serialises, and so does this document.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The document as JSON text, indented.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads an export from JSON text and checks all of it: the format and its version, the
    /// schema version, and every workflow's rows (required columns present, every value of
    /// its column's type, no unknown table or column, no workflow twice). Columns DBOS's
    /// older exports lack get their column's default.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidArgument`] naming what is wrong (the text is not JSON, a missing
    /// or unknown format version, a workflow without its required fields, with its index
    /// and id); [`ErrorKind::Schema`] when the rows come from a system schema other than
    /// this library's ([`SCHEMA_VERSION`]).
    pub fn from_json(text: &str) -> Result<WorkflowExport> {
        let doc: Value = serde_json::from_str(text).map_err(|e| {
            Error::invalid(format!("the export is not valid JSON ({e}): give a file written by `export_workflows` or `dbos-rs workflow export`"))
        })?;
        WorkflowExport::from_value(doc)
    }

    /// [`from_json`](Self::from_json) from a parsed JSON value.
    ///
    /// # Errors
    /// As `from_json`.
    pub fn from_value(doc: Value) -> Result<WorkflowExport> {
        let Value::Object(mut doc) = doc else {
            return Err(Error::invalid(format!(
                "the export is a JSON {}, not an object with `format`, `format_version`, `schema_version` and `workflows`",
                type_name(&doc)
            )));
        };
        if let Some(key) = doc.keys().find(|k| {
            !["format", "format_version", "schema_version", "workflows"].contains(&k.as_str())
        }) {
            return Err(Error::invalid(format!(
                "the export has an unknown key `{key}`: it is not a format-{FORMAT_VERSION} export"
            )));
        }
        match doc.get("format") {
            Some(Value::String(f)) if f == FORMAT => {}
            Some(other) => {
                return Err(Error::invalid(format!(
                    "the export's `format` is {other}, not \"{FORMAT}\""
                )))
            }
            None => {
                return Err(Error::invalid(format!(
                    "the export has no `format`: an export starts with \"format\": \"{FORMAT}\""
                )))
            }
        }
        match doc.get("format_version") {
            Some(v) if v.as_i64() == Some(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(Error::invalid(format!(
                    "the export's format_version is {v}; this library reads format_version {FORMAT_VERSION}"
                )))
            }
            None => {
                return Err(Error::invalid(
                    "the export has no `format_version`: it cannot be read safely",
                ))
            }
        }
        let schema_version = match doc.get("schema_version") {
            Some(v) => v.as_i64().ok_or_else(|| {
                Error::invalid(format!(
                    "the export's schema_version is {v}, not an integer"
                ))
            })?,
            None => {
                return Err(Error::invalid(
                    "the export has no `schema_version`: the system schema its rows come from is unknown",
                ))
            }
        };
        if schema_version != SCHEMA_VERSION {
            return Err(Error::new(
                ErrorKind::Schema,
                format!(
                    "the export's rows come from system schema {schema_version}; this library reads and writes schema {SCHEMA_VERSION}: \
                     export them again with a library of schema {SCHEMA_VERSION}"
                ),
            ));
        }
        let Some(Value::Array(list)) = doc.remove("workflows") else {
            return Err(Error::invalid("the export has no `workflows` list"));
        };
        let now = now_ms();
        let mut seen = std::collections::HashSet::new();
        let mut workflows = Vec::with_capacity(list.len());
        for (i, w) in list.into_iter().enumerate() {
            let w = read_workflow(i, w, now)?;
            if !seen.insert(w.id.clone()) {
                return Err(Error::invalid(format!(
                    "workflow {i} of the export: workflow `{}` appears twice",
                    w.id
                )));
            }
            workflows.push(w);
        }
        Ok(WorkflowExport {
            schema_version,
            workflows,
        })
    }
}

/// Written from the rows in place (no copy of the document): `format`, `format_version`,
/// `schema_version`, then `workflows`, each an object of its tables.
impl serde::Serialize for WorkflowExport {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;

        struct Workflows<'a>(&'a [ExportedWorkflow]);
        struct Tables<'a>(&'a ExportedWorkflow);

        impl serde::Serialize for Workflows<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter().map(Tables))
            }
        }

        impl serde::Serialize for Tables<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(TABLES.len()))?;
                for (table, rows) in TABLES.iter().zip(&self.0.tables) {
                    if table.single {
                        map.serialize_entry(table.name, &rows.first())?;
                    } else {
                        map.serialize_entry(table.name, rows)?;
                    }
                }
                map.end()
            }
        }

        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("format", FORMAT)?;
        map.serialize_entry("format_version", &FORMAT_VERSION)?;
        map.serialize_entry("schema_version", &self.schema_version)?;
        map.serialize_entry("workflows", &Workflows(&self.workflows))?;
        map.end()
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Reads and checks workflow `i` of a document.
fn read_workflow(i: usize, w: Value, now: i64) -> Result<ExportedWorkflow> {
    let Value::Object(mut w) = w else {
        return Err(Error::invalid(format!(
            "workflow {i} of the export is a JSON {}, not an object of tables",
            type_name(&w)
        )));
    };
    // The id first, so every later message can name the workflow.
    let id = match w
        .get("workflow_status")
        .and_then(|s| s.get("workflow_uuid"))
    {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => {
            return Err(Error::invalid(format!(
                "workflow {i} of the export has no `workflow_status` with a `workflow_uuid`: nothing was imported"
            )))
        }
    };
    let at = format!("workflow {i} (`{id}`) of the export");
    if let Some(key) = w
        .keys()
        .find(|k| !TABLES.iter().any(|t| t.name == k.as_str()))
    {
        return Err(Error::invalid(format!("{at} has an unknown table `{key}`")));
    }
    let mut tables = Vec::with_capacity(TABLES.len());
    for (t, table) in TABLES.iter().enumerate() {
        let rows = match (w.remove(table.name), table.single) {
            (None | Some(Value::Null), _) if t != STATUS => Vec::new(),
            (Some(Value::Object(row)), true) => vec![row],
            (Some(Value::Array(rows)), false) => rows
                .into_iter()
                .enumerate()
                .map(|(r, row)| match row {
                    Value::Object(row) => Ok(row),
                    other => Err(Error::invalid(format!(
                        "{at}: {}[{r}] is a JSON {}, not a row object",
                        table.name,
                        type_name(&other)
                    ))),
                })
                .collect::<Result<_>>()?,
            (other, single) => {
                return Err(Error::invalid(format!(
                    "{at}: `{}` is {}, not {}",
                    table.name,
                    other.as_ref().map_or("missing", type_name),
                    if single {
                        "one row object"
                    } else {
                        "a list of row objects"
                    }
                )))
            }
        };
        let rows = rows
            .into_iter()
            .enumerate()
            .map(|(r, row)| {
                let place = if table.single {
                    format!("{at}: {}", table.name)
                } else {
                    format!("{at}: {}[{r}]", table.name)
                };
                read_row(&place, table, &id, row, now)
            })
            .collect::<Result<Vec<_>>>()?;
        tables.push(rows);
    }
    Ok(ExportedWorkflow { id, tables })
}

/// Checks one row against its table's columns and fills the defaults.
fn read_row(
    place: &str,
    table: &Table,
    id: &str,
    mut row: Map<String, Value>,
    now: i64,
) -> Result<Map<String, Value>> {
    if let Some(key) = row
        .keys()
        .find(|k| !table.columns.iter().any(|c| c.name == k.as_str()))
    {
        return Err(Error::invalid(format!(
            "{place} has an unknown column `{key}`"
        )));
    }
    for c in table.columns {
        let value = row.get(c.name).filter(|v| !v.is_null());
        match (value, c.need) {
            (None, Need::Nullable) => {
                row.insert(c.name.to_owned(), Value::Null);
            }
            (None, Need::Required) => {
                return Err(Error::invalid(format!(
                    "{place} lacks the required column `{}`: nothing was imported",
                    c.name
                )))
            }
            (None, Need::WorkflowId) => {
                row.insert(c.name.to_owned(), Value::String(id.to_owned()));
            }
            (None, Need::Default(fill)) => {
                if row.get(c.name).is_some() {
                    return Err(Error::invalid(format!(
                        "{place}: `{}` is null, but the column is NOT NULL",
                        c.name
                    )));
                }
                let v = match fill {
                    Fill::Zero => Value::from(0),
                    Fill::False => Value::Bool(false),
                    Fill::EmptyText => Value::String(String::new()),
                    Fill::NowMs => Value::from(now),
                };
                row.insert(c.name.to_owned(), v);
            }
            (Some(v), need) => {
                check_kind(place, c, v)?;
                if need == Need::WorkflowId && v.as_str() != Some(id) {
                    return Err(Error::invalid(format!(
                        "{place}: `{}` is {v}, another workflow's id: a workflow's rows must name it",
                        c.name
                    )));
                }
            }
        }
    }
    if table.name == "workflow_status" {
        if let Some(status) = row.get("status").and_then(Value::as_str) {
            if matches!(Status::parse(status), Status::Other(_)) {
                return Err(Error::invalid(format!(
                    "{place}: status `{status}` is not one of DBOS's (PENDING, ENQUEUED, DELAYED, SUCCESS, ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED)"
                )));
            }
        }
    }
    Ok(row)
}

fn check_kind(place: &str, c: &Column, v: &Value) -> Result<()> {
    let ok = match c.kind {
        Kind::Text => v.is_string(),
        Kind::Int4 => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        Kind::Int8 => v.is_i64(),
        Kind::Bool => v.is_boolean(),
        Kind::Json => true,
    };
    if ok {
        return Ok(());
    }
    let want = match c.kind {
        Kind::Text => "a string",
        Kind::Int4 => "an integer within 32 bits",
        Kind::Int8 => "an integer",
        Kind::Bool => "true or false",
        Kind::Json => "JSON",
    };
    Err(Error::invalid(format!(
        "{place}: `{}` is {v}, not {want}",
        c.name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(workflows: Value) -> Value {
        json!({"format": FORMAT, "format_version": 1, "schema_version": SCHEMA_VERSION, "workflows": workflows})
    }

    fn status(id: &str) -> Value {
        json!({"workflow_uuid": id, "status": "SUCCESS", "name": "w", "created_at": 1, "updated_at": 2})
    }

    fn problem(v: Value) -> String {
        WorkflowExport::from_value(v)
            .unwrap_err()
            .message()
            .to_owned()
    }

    #[test]
    fn a_minimal_workflow_gets_its_defaults_and_round_trips() {
        let e = WorkflowExport::from_value(doc(json!([{
            "workflow_status": status("a"),
            "operation_outputs": [{"function_id": 1}],
        }])))
        .unwrap();
        let s = &e.workflows[0].tables[STATUS][0];
        assert_eq!(s["priority"], json!(0));
        assert_eq!(s["is_debounced"], json!(false));
        assert_eq!(s["queue_name"], Value::Null);
        let op = &e.workflows[0].tables[3][0];
        assert_eq!(op["workflow_uuid"], json!("a"));
        assert_eq!(op["function_name"], json!(""));
        let again = WorkflowExport::from_json(&e.to_json()).unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn bad_documents_are_refused_naming_the_problem() {
        assert!(WorkflowExport::from_json("{not json")
            .unwrap_err()
            .message()
            .contains("not valid JSON"));
        assert!(problem(json!([])).contains("JSON array"));
        let mut d = doc(json!([]));
        d.as_object_mut().unwrap().remove("format_version");
        assert!(problem(d).contains("no `format_version`"));
        let mut d = doc(json!([]));
        d["format_version"] = json!(2);
        assert!(problem(d).contains("format_version is 2"));
        let mut d = doc(json!([]));
        d.as_object_mut().unwrap().remove("schema_version");
        assert!(problem(d).contains("no `schema_version`"));
        let mut d = doc(json!([]));
        d["schema_version"] = json!(SCHEMA_VERSION - 1);
        let e = WorkflowExport::from_value(d).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Schema);
        let mut s = status("a");
        s.as_object_mut().unwrap().remove("name");
        assert!(problem(doc(json!([{"workflow_status": s}]))).contains(
            "workflow 0 (`a`) of the export: workflow_status lacks the required column `name`"
        ));
        let mut s = status("a");
        s["status"] = json!("DONE");
        assert!(problem(doc(json!([{"workflow_status": s}]))).contains("status `DONE`"));
        let mut s = status("a");
        s["created_at"] = json!("yesterday");
        assert!(
            problem(doc(json!([{"workflow_status": s}]))).contains("`created_at` is \"yesterday\"")
        );
        let mut s = status("a");
        s["owner_xid"] = json!("x");
        assert!(
            problem(doc(json!([{"workflow_status": s}]))).contains("unknown column `owner_xid`")
        );
        assert!(
            problem(doc(json!([{"workflow_status": status("a"), "queues": []}])))
                .contains("unknown table `queues`")
        );
        assert!(problem(doc(json!([{"workflow_status": status("a"), "operation_outputs": [{"workflow_uuid": "b", "function_id": 1}]}])))
            .contains("another workflow's id"));
        assert!(problem(doc(
            json!([{"workflow_status": status("a"), "operation_outputs": [{"function_id": 1e12}]}])
        ))
        .contains("within 32 bits"));
        let mut s = status("a");
        s["priority"] = Value::Null;
        assert!(problem(doc(json!([{"workflow_status": s}]))).contains("NOT NULL"));
        assert!(problem(doc(
            json!([{"workflow_status": status("a")}, {"workflow_status": status("a")}])
        ))
        .contains("appears twice"));
        assert!(problem(doc(json!([{"operation_outputs": []}])))
            .contains("workflow 0 of the export has no `workflow_status`"));
    }
}
