//! Creating and upgrading the DBOS system schema.
//!
//! Migrations are the numbered files in the repository's `migrations/` folder, embedded at
//! build time. Their numbers are DBOS's schema versions: `0125_*.sql` is the baseline that
//! creates the whole schema as DBOS migration 125 leaves it. Each pending migration runs in
//! its own transaction holding a transaction-level advisory lock keyed by the schema, so
//! processes launching at once against an empty database serialise and all succeed.

use super::{Conn, Sql};

use super::quote_ident;
use crate::error::{Error, ErrorKind, Result};

/// One embedded migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The DBOS schema version this file brings the database to.
    pub version: i64,
    /// The file name, e.g. `0125_dbos_system_schema.sql`.
    pub file: &'static str,
    /// The SQL text, with `{{schema}}` standing for the quoted schema name.
    pub sql: &'static str,
}

/// Every migration, in increasing version order.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 125,
    file: "0125_dbos_system_schema.sql",
    sql: include_str!("../../../migrations/0125_dbos_system_schema.sql"),
}];

/// The schema version this build writes and expects.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The oldest recorded version the migrations can continue from (the baseline's).
const BASELINE: i64 = MIGRATIONS[0].version;

/// Tables every usable DBOS schema has; checked so a tampered schema is reported clearly.
const REQUIRED_TABLES: &[&str] = &[
    "workflow_status",
    "workflow_input",
    "workflow_output",
    "operation_outputs",
    "notifications",
    "workflow_events",
    "workflow_events_history",
    "streams",
    "queues",
    "application_versions",
];

/// What [`SystemDatabase::migrate`](super::SystemDatabase::migrate) found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrationOutcome {
    /// Migrations were applied; the schema is now at `to`.
    Applied {
        /// The version found before (`None`: no schema).
        from: Option<i64>,
        /// The version now recorded.
        to: i64,
    },
    /// The schema was already at this build's version; nothing changed.
    UpToDate,
    /// The schema is newer than this build (written by a newer DBOS); accepted as is.
    Ahead {
        /// The recorded version.
        found: i64,
    },
}

impl MigrationOutcome {
    /// The version recorded after migrating.
    pub fn version(&self) -> i64 {
        match self {
            MigrationOutcome::Applied { to, .. } => *to,
            MigrationOutcome::UpToDate => SCHEMA_VERSION,
            MigrationOutcome::Ahead { found } => *found,
        }
    }
}

/// The advisory lock key for migrating `schema`: the first 8 bytes of
/// sha256("dbos.migrate.<schema>").
fn lock_key(schema: &str) -> i64 {
    advisory_key("migrate", schema)
}

/// The transaction advisory lock key of one kind of schema change (`what`) in `schema`.
pub(super) fn advisory_key(what: &str, schema: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("dbos.{what}.{schema}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// What the database holds under the schema name.
enum Found {
    Nothing,
    Foreign { relations: Vec<String> },
    Dbos { version: Option<i64> },
}

async fn inspect(client: &impl Sql, schema: &str) -> Result<Found> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1),
                    EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                              JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                             WHERE n.nspname = $1 AND c.relname = 'dbos_migrations' AND c.relkind = 'r')",
            &[&schema],
        )
        .await
        .map_err(|e| Error::db("could not inspect the system schema", e))?;
    let (schema_exists, has_migrations): (bool, bool) = (row.get(0), row.get(1));
    if !schema_exists {
        return Ok(Found::Nothing);
    }
    if !has_migrations {
        let rows = client
            .query(
                "SELECT c.relname FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                  ORDER BY 1",
                &[&schema],
            )
            .await
            .map_err(|e| Error::db("could not inspect the system schema", e))?;
        let relations: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        return Ok(if relations.is_empty() {
            Found::Nothing
        } else {
            Found::Foreign { relations }
        });
    }
    let version: Option<i64> = client
        .query_one(
            &format!(
                "SELECT max(version) FROM {}.dbos_migrations",
                quote_ident(schema)
            ),
            &[],
        )
        .await
        .map_err(|e| Error::db("could not read dbos_migrations", e))?
        .get(0);
    Ok(Found::Dbos { version })
}

/// The version recorded in `<schema>.dbos_migrations`, or `None` without a DBOS schema.
pub(super) async fn recorded_version(client: &Conn, schema: &str) -> Result<Option<i64>> {
    Ok(match inspect(client, schema).await? {
        Found::Dbos { version } => version,
        _ => None,
    })
}

async fn check_tables(client: &impl Sql, schema: &str, version: i64) -> Result<()> {
    let rows = client
        .query(
            "SELECT t FROM unnest($2::text[]) AS t
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                 WHERE n.nspname = $1 AND c.relname = t AND c.relkind = 'r')",
            &[&schema, &REQUIRED_TABLES],
        )
        .await
        .map_err(|e| Error::db("could not inspect the system schema", e))?;
    if rows.is_empty() {
        return Ok(());
    }
    let missing: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    Err(Error::new(
        ErrorKind::Schema,
        format!(
            "schema `{schema}` records DBOS version {version} but lacks the table(s) {}: it was altered by hand \
             or only partly created. Restore it, or point the application at an empty database",
            missing.join(", ")
        ),
    ))
}

/// Brings `schema` to [`SCHEMA_VERSION`].
pub(super) async fn migrate(client: &mut Conn, schema: &str) -> Result<MigrationOutcome> {
    let quoted = quote_ident(schema);
    let mut from = None;
    let mut applied_any = false;
    for migration in MIGRATIONS {
        let tx = client
            .transaction()
            .await
            .map_err(|e| Error::db("could not begin the migration transaction", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema)])
            .await
            .map_err(|e| Error::db("could not take the migration lock", e))?;
        // Inspect under the lock: another process may have migrated while we waited.
        let current = match inspect(&tx, schema).await? {
            Found::Nothing => None,
            Found::Foreign { relations } => {
                return Err(Error::new(
                    ErrorKind::Schema,
                    format!(
                        "schema `{schema}` exists but is not a DBOS system schema (it has no dbos_migrations table; \
                         it holds {}). Use another schema name (Config::schema or DBOS_SYSTEM_SCHEMA) or another database",
                        relations.join(", ")
                    ),
                ))
            }
            Found::Dbos { version: None } => {
                return Err(Error::new(
                    ErrorKind::Schema,
                    format!(
                        "schema `{schema}` has an empty dbos_migrations table: a DBOS migration was interrupted. \
                         Drop the schema (DROP SCHEMA {quoted} CASCADE) if it holds nothing you need, or finish it with `dbos migrate`"
                    ),
                ))
            }
            Found::Dbos { version: Some(v) } => Some(v),
        };
        if !applied_any {
            from = current;
        }
        match current {
            Some(v) if v > SCHEMA_VERSION => {
                check_tables(&tx, schema, v).await?;
                tracing::warn!(
                    schema,
                    found = v,
                    expected = SCHEMA_VERSION,
                    "the system schema is newer than this build of dbos-core; continuing without migrating"
                );
                return Ok(MigrationOutcome::Ahead { found: v });
            }
            Some(v) if v < BASELINE => {
                return Err(Error::new(
                    ErrorKind::Schema,
                    format!(
                        "schema `{schema}` is at DBOS version {v}, older than the {BASELINE} this library can continue from. \
                         Upgrade it with DBOS's own tool (pip install dbos==3.4.0; dbos migrate -s <url> --schema {schema}), \
                         or use an empty database"
                    ),
                ))
            }
            Some(v) if v >= migration.version => continue,
            _ => {}
        }
        let sql = migration.sql.replace("{{schema}}", &quoted);
        tx.batch_execute(&sql).await.map_err(|e| {
            Error::db(
                format!(
                    "migration {} ({}) failed",
                    migration.version, migration.file
                ),
                e,
            )
        })?;
        if current.is_some() {
            tx.execute(
                &format!("UPDATE {quoted}.dbos_migrations SET version = $1"),
                &[&migration.version],
            )
            .await
            .map_err(|e| Error::db("could not record the schema version", e))?;
        }
        tx.commit().await.map_err(|e| {
            Error::db(
                format!("could not commit migration {}", migration.version),
                e,
            )
        })?;
        tracing::info!(
            schema,
            version = migration.version,
            file = migration.file,
            "applied migration"
        );
        applied_any = true;
    }
    let version = recorded_version(client, schema).await?.unwrap_or_default();
    check_tables(&*client, schema, version).await?;
    Ok(if applied_any {
        MigrationOutcome::Applied { from, to: version }
    } else {
        MigrationOutcome::UpToDate
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_are_numbered_unique_and_all_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|m| m.file).collect();
        assert_eq!(
            files, embedded,
            "every file in migrations/ must be listed in MIGRATIONS, in order"
        );
        let mut last = 0;
        for m in MIGRATIONS {
            let (num, rest) = m.file.split_once('_').expect("NNNN_description.sql");
            assert_eq!(num.len(), 4, "{}: four-digit version prefix", m.file);
            assert_eq!(
                num.parse::<i64>().unwrap(),
                m.version,
                "{}: prefix is the version",
                m.file
            );
            assert!(
                m.version > last,
                "{}: versions must strictly increase",
                m.file
            );
            assert!(rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'));
            last = m.version;
        }
    }

    /// What is wrong with the migration files compared with the manifest of their hashes
    /// (`sha256sum` format: `<hex>  <file>` per line); empty when they agree.
    fn manifest_problems(
        files: &[(String, String)],
        manifest: &str,
        manifest_name: &str,
    ) -> Vec<String> {
        let mut pinned = std::collections::BTreeMap::new();
        let mut problems = Vec::new();
        for line in manifest.lines().filter(|l| !l.trim().is_empty()) {
            match line.split_once("  ") {
                Some((sum, file)) => {
                    pinned.insert(file.trim().to_owned(), sum.trim().to_owned());
                }
                None => problems.push(format!(
                    "{manifest_name}: `{line}` is not `<sha256>  <file>`"
                )),
            }
        }
        for (file, actual) in files {
            match pinned.remove(file) {
                None => problems.push(format!(
                    "{file} is new: pin it by adding this line to {manifest_name}:\n{actual}  {file}"
                )),
                Some(sum) if &sum != actual => problems.push(format!(
                    "{file} was edited after it was pinned (sha256 {actual}, pinned {sum}): never edit \
                     an applied migration, since databases that ran it would differ from ones that \
                     run it later; restore it and put the change in a new numbered file"
                )),
                Some(_) => {}
            }
        }
        for file in pinned.keys() {
            problems.push(format!(
                "{file} is pinned in {manifest_name} but missing: applied migrations are never removed"
            ));
        }
        problems
    }

    #[test]
    fn applied_migrations_never_change() {
        // Migrations are append-only: a database that ran a file must get the same schema as
        // one that runs it later. Every file in migrations/ is pinned by its SHA-256 in
        // migrations/SHA256SUMS (`cd migrations && sha256sum -c SHA256SUMS` checks it too).
        use sha2::{Digest, Sha256};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".sql") {
                let bytes = std::fs::read(dir.join(&name)).unwrap();
                files.push((name, format!("{:x}", Sha256::digest(&bytes))));
            }
        }
        files.sort();
        assert!(!files.is_empty());
        let manifest = std::fs::read_to_string(dir.join("SHA256SUMS"))
            .expect("migrations/SHA256SUMS pins every migration file");
        let problems = manifest_problems(&files, &manifest, "migrations/SHA256SUMS");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // What is embedded is what is pinned.
        for m in MIGRATIONS {
            let sum = format!("{:x}", Sha256::digest(m.sql.as_bytes()));
            assert!(files.contains(&(m.file.to_owned(), sum)), "{}", m.file);
        }
    }

    #[test]
    fn the_manifest_check_names_new_edited_and_missing_files() {
        let files = vec![
            ("0125_base.sql".to_owned(), "aa".to_owned()),
            ("0126_next.sql".to_owned(), "bb".to_owned()),
        ];
        assert!(
            manifest_problems(&files, "aa  0125_base.sql\nbb  0126_next.sql\n", "M").is_empty()
        );
        let p = manifest_problems(&files, "aa  0125_base.sql\n", "M");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].contains("0126_next.sql is new") && p[0].contains("bb  0126_next.sql"),
            "{p:?}"
        );
        let p = manifest_problems(&files, "aa  0125_base.sql\ncc  0126_next.sql\n", "M");
        assert!(
            p[0].contains("0126_next.sql was edited") && p[0].contains("never edit"),
            "{p:?}"
        );
        let p = manifest_problems(&files[..1], "aa  0125_base.sql\nbb  0126_next.sql\n", "M");
        assert!(
            p[0].contains("0126_next.sql is pinned in M but missing"),
            "{p:?}"
        );
        let p = manifest_problems(&files[..1], "aa 0125_base.sql\n", "M");
        assert!(
            p.iter().any(|p| p.contains("is not `<sha256>  <file>`")),
            "{p:?}"
        );
    }

    #[test]
    fn lock_key_depends_on_schema() {
        assert_ne!(lock_key("dbos"), lock_key("other"));
    }
}
