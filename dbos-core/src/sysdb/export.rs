//! Export and import of workflows' rows (see [`crate::export`]): one statement reads every
//! table of a set of workflows from one snapshot; one transaction writes them into another
//! database, so a failure writes nothing.

use super::Sql;
use serde_json::{Map, Value};
use tokio_postgres::types::Json;

use super::manage::tree_cte;
use super::SystemDatabase;
use crate::error::{Error, Result};
use crate::export::format::Table;

/// The rows of the workflows an export selected.
#[derive(Debug)]
pub(crate) struct ExportedRows {
    /// Ids given that match no workflow (then nothing else was read).
    pub(crate) missing: Vec<String>,
    /// One JSON array of row objects per table, in the order the tables were given.
    pub(crate) tables: Vec<Value>,
}

/// What an import wrote.
#[derive(Debug)]
pub(crate) struct Imported {
    pub(crate) inserted: Vec<String>,
    /// Workflows the target had already (nothing of theirs was written).
    pub(crate) existing: Vec<String>,
}

fn column_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SystemDatabase {
    /// Every row of `tables` belonging to the workflows `ids` (and, with `children`, every
    /// workflow they started, recursively), read in one statement: one snapshot.
    pub(crate) async fn export_rows(
        &self,
        ids: &[&str],
        children: bool,
        tables: &[Table],
    ) -> Result<ExportedRows> {
        let s = self.quoted_schema();
        let tree = tree_cte(s, children);
        let selects: Vec<String> = tables
            .iter()
            .map(|t| {
                format!(
                    "(SELECT COALESCE(jsonb_agg(to_jsonb(r)), '[]'::jsonb) FROM
                       (SELECT {cols} FROM {s}.{name} WHERE {id} IN (SELECT id FROM tree) ORDER BY {order}) r)",
                    cols = column_list(t),
                    name = t.name,
                    id = t.id_column,
                    order = t.order_by,
                )
            })
            .collect();
        let sql = format!(
            "WITH RECURSIVE {tree} SELECT ARRAY(SELECT id FROM missing), {}",
            selects.join(", ")
        );
        let row = self
            .query_opt("export workflows", &sql, &[&ids])
            .await?
            .ok_or_else(|| Error::invalid("the export statement returned no row"))?;
        Ok(ExportedRows {
            missing: row.get(0),
            tables: (0..tables.len()).map(|i| row.get(i + 1)).collect(),
        })
    }

    /// Inserts workflows' rows in one transaction: the status rows first (a workflow the
    /// target has already is left as it is), then each other table's rows of the workflows
    /// inserted. With `skip_existing` off, a workflow the target has already rolls
    /// everything back and is reported in `existing` with nothing inserted. `rows` holds
    /// the row objects of each table of `tables` (`workflow_status` first), sent as one
    /// `jsonb` array per table.
    pub(crate) async fn import_rows(
        &self,
        ids: &[&str],
        tables: &[Table],
        rows: &[Vec<&Map<String, Value>>],
        skip_existing: bool,
    ) -> Result<Imported> {
        let s = self.quoted_schema();
        let statements: Vec<String> = tables
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let cols = column_list(t);
                let from = format!(
                    "INSERT INTO {s}.{name} ({cols}) SELECT {cols} FROM jsonb_populate_recordset(NULL::{s}.{name}, $1::jsonb)",
                    name = t.name
                );
                if i == 0 {
                    format!("{from} ON CONFLICT ({id}) DO NOTHING RETURNING {id}", id = t.id_column)
                } else {
                    format!("{from} WHERE {id} = ANY($2::text[])", id = t.id_column)
                }
            })
            .collect();
        // The ids the target had before the first attempt: a later attempt that finds all
        // of the others there too ran after a first one whose commit landed unseen.
        let had = {
            let missing = self.missing_ids(ids).await?;
            ids.len() - missing.len()
        };
        self.run("import workflows", |mut client, attempt| {
            let statements = &statements;
            async move {
                let failed = |e| Error::db("could not import workflows", e);
                let tx = client.transaction().await.map_err(failed)?;
                let inserted: Vec<String> = tx
                    .query(statements[0].as_str(), &[&Json(&rows[0])])
                    .await
                    .map_err(failed)?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let existing: Vec<String> = ids
                    .iter()
                    .filter(|id| !inserted.iter().any(|i| i == *id))
                    .map(|id| (*id).to_owned())
                    .collect();
                if attempt > 1 && had == 0 && inserted.is_empty() && !ids.is_empty() {
                    // An earlier attempt imported them all; its acknowledgement was lost.
                    return Ok(Imported {
                        inserted: ids.iter().map(|id| (*id).to_owned()).collect(),
                        existing: Vec::new(),
                    });
                }
                if !existing.is_empty() && !skip_existing {
                    tx.rollback().await.map_err(failed)?;
                    return Ok(Imported {
                        inserted: Vec::new(),
                        existing,
                    });
                }
                for (sql, table_rows) in statements.iter().zip(rows).skip(1) {
                    tx.execute(sql.as_str(), &[&Json(table_rows), &inserted])
                        .await
                        .map_err(failed)?;
                }
                tx.commit().await.map_err(failed)?;
                Ok(Imported { inserted, existing })
            }
        })
        .await
    }
}
