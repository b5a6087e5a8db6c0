//! Launches the runtime and prints what it connected to.
//!
//! With `DBOS_SYSTEM_DATABASE_URL` set it uses that database (creating it if missing);
//! without it, it starts a local Postgres in `~/.local/share/dbos-rs/hello` from the installed server
//! binaries (`dbos-rs postgres stop --app hello` stops it).
//!
//! ```sh
//! cargo run -p examples --bin hello
//! DBOS_SYSTEM_DATABASE_URL=postgres://postgres:pw@localhost/hello_sys cargo run -p examples --bin hello
//! ```

use dbos_core::{Config, Dbos};

#[tokio::main]
async fn main() -> Result<(), dbos_core::Error> {
    let _telemetry = examples::init_logs();
    let dbos = Dbos::launch(Config::from_env("hello")?).await?;
    let sysdb = dbos.system_database();
    println!("system database: {}", sysdb.redacted_url());
    println!(
        "schema: {} (version {})",
        sysdb.schema(),
        dbos.migration().version()
    );
    if let Some(pg) = dbos.local_postgres() {
        println!(
            "local Postgres: {} (port {})",
            pg.root().display(),
            pg.port()
        );
    }
    dbos.shutdown().await
}
