//! The statements a `#[transaction]` runs in an application data source (a database apart
//! from the system database): the completion table `datasource_outputs` and its migration.
//!
//! The layout is DBOS's (Python 3.x `datasource_outputs`, in a schema of the data source,
//! `dbos` by default): `(workflow_id, step_id)` primary key, `output`, `error`,
//! `serialization`, `created_at` (epoch milliseconds), with the version recorded in
//! `dbos_datasource_migrations` and migrations serialised by a transaction-scoped advisory
//! lock keyed like DBOS's, so a DBOS application and this library can share a data source.

use deadpool_postgres::GenericClient;

use crate::codec::PORTABLE_JSON;
use crate::error::{Error, Result};
use crate::sysdb::quote_ident;
use crate::sysdb::transactions::IS_MANAGED;

/// The version this library brings a data source's schema to.
pub(crate) const DATASOURCE_SCHEMA_VERSION: i64 = 1;

/// The completion table's name, as DBOS names it.
pub(crate) const COMPLETION_TABLE: &str = "datasource_outputs";

const MIGRATIONS_TABLE: &str = "dbos_datasource_migrations";

/// A completion row as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Completion {
    pub(crate) output: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) serialization: Option<String>,
}

/// The statements of one data source, built once for its schema.
#[derive(Debug)]
pub(crate) struct CompletionSql {
    insert: String,
    read: String,
}

impl CompletionSql {
    pub(crate) fn new(schema: &str) -> Self {
        let t = format!("{}.{COMPLETION_TABLE}", quote_ident(schema));
        CompletionSql {
            // Only in the transaction the library began (the body did not end it).
            // `ON CONFLICT DO NOTHING`: a row that is already there is another execution's
            // (or a stale one's) result for this step; no row back tells the caller to roll
            // back and adopt it. The transaction id comes back in the same statement, for
            // settling a lost commit acknowledgement.
            insert: format!(
                "INSERT INTO {t} (workflow_id, step_id, output, error, serialization, created_at)
                 SELECT $1, $2, $3, $4, $5, $6 WHERE {IS_MANAGED}
                 ON CONFLICT (workflow_id, step_id) DO NOTHING
                 RETURNING txid_current()"
            ),
            read: format!(
                "SELECT output, error, serialization FROM {t} WHERE workflow_id = $1 AND step_id = $2"
            ),
        }
    }

    /// Inserts the completion row inside the caller's transaction. `Some(xid)` when written,
    /// `None` when the step already has a row (or the body ended the transaction).
    pub(crate) async fn insert(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        workflow_id: &str,
        step_id: i32,
        output: Option<&str>,
        error: Option<&str>,
    ) -> std::result::Result<Option<i64>, tokio_postgres::Error> {
        let stmt = tx.prepare_cached(&self.insert).await?;
        let row = tx
            .query_opt(
                &stmt,
                &[
                    &workflow_id,
                    &step_id,
                    &output,
                    &error,
                    &PORTABLE_JSON,
                    &crate::sysdb::workflows::now_ms(),
                ],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The completion row of a step, if one was committed.
    pub(crate) async fn read<C: GenericClient>(
        &self,
        client: &C,
        workflow_id: &str,
        step_id: i32,
    ) -> std::result::Result<Option<Completion>, tokio_postgres::Error> {
        let stmt = client.prepare_cached(&self.read).await?;
        let row = client.query_opt(&stmt, &[&workflow_id, &step_id]).await?;
        Ok(row.map(|r| Completion {
            output: r.get(0),
            error: r.get(1),
            serialization: r.get(2),
        }))
    }
}

/// The advisory-lock key DBOS uses for a data source's migrations: the first 8 bytes of
/// sha256("dbos.datasource_migrations.<schema>"), big-endian, signed.
pub(crate) fn migration_lock_key(schema: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("dbos.datasource_migrations.{schema}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// The recorded version of a data source's schema (0 when never migrated).
async fn recorded_version<C: GenericClient>(client: &C, schema: &str) -> Result<i64> {
    let failed = |e| Error::db("could not read a data source's schema version", e);
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = $2",
            &[&schema, &MIGRATIONS_TABLE],
        )
        .await
        .map_err(failed)?
        .is_some();
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_opt(
            &format!(
                "SELECT version FROM {}.{MIGRATIONS_TABLE}",
                quote_ident(schema)
            ),
            &[],
        )
        .await
        .map_err(failed)?;
    Ok(row.map_or(0, |r| r.get(0)))
}

/// Brings a data source's schema to [`DATASOURCE_SCHEMA_VERSION`]: creates the schema, the
/// version table and `datasource_outputs` when missing. Issues no DDL when the database is
/// already there (or ahead: a newer peer migrated it). Returns whether it migrated.
pub(crate) async fn migrate(client: &mut deadpool_postgres::Object, schema: &str) -> Result<bool> {
    if recorded_version(&*client, schema).await? >= DATASOURCE_SCHEMA_VERSION {
        return Ok(false);
    }
    let failed = |e| {
        Error::db(
            format!("could not create the completion table of schema `{schema}`"),
            e,
        )
    };
    let q = quote_ident(schema);
    let tx = client.transaction().await.map_err(failed)?;
    tx.query_one(
        "SELECT pg_advisory_xact_lock($1)",
        &[&migration_lock_key(schema)],
    )
    .await
    .map_err(failed)?;
    let current = recorded_version(&tx, schema).await?;
    if current >= DATASOURCE_SCHEMA_VERSION {
        return Ok(false);
    }
    // Checked first: `CREATE SCHEMA IF NOT EXISTS` demands the CREATE privilege even when the
    // schema exists.
    let has_schema = tx
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .await
        .map_err(failed)?
        .is_some();
    if !has_schema {
        tx.batch_execute(&format!("CREATE SCHEMA {q}"))
            .await
            .map_err(failed)?;
    }
    if current == 0 {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {q}.{MIGRATIONS_TABLE} (version BIGINT NOT NULL PRIMARY KEY)"
        ))
        .await
        .map_err(failed)?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {q}.{COMPLETION_TABLE} (
             workflow_id TEXT NOT NULL,
             step_id INT4 NOT NULL,
             output TEXT,
             error TEXT,
             serialization TEXT,
             created_at BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now())*1000)::bigint,
             PRIMARY KEY (workflow_id, step_id)
         )"
    ))
    .await
    .map_err(failed)?;
    let record = if current == 0 {
        format!("INSERT INTO {q}.{MIGRATIONS_TABLE} (version) VALUES ($1)")
    } else {
        format!("UPDATE {q}.{MIGRATIONS_TABLE} SET version = $1")
    };
    tx.execute(&record, &[&DATASOURCE_SCHEMA_VERSION])
        .await
        .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_key_is_dbos_pythons() {
        // What DBOS Python 3.4 computes for the default schema (`_migration_lock_key("dbos")`).
        assert_eq!(migration_lock_key("dbos"), -539_682_970_964_697_559);
        assert_ne!(migration_lock_key("dbos"), migration_lock_key("app"));
    }
}
