//! What the examples share.

use dbos_core::admin::AdminServer;
use dbos_core::otel::Telemetry;
use dbos_core::{Config, Dbos, Error};

/// The variable that starts the admin server and dashboard: `DBOS_DASHBOARD_PORT=3001` (or
/// 0 for any free port). It listens on 127.0.0.1 only.
pub const DASHBOARD_PORT: &str = "DBOS_DASHBOARD_PORT";

/// `config` with the admin server and dashboard when [`DASHBOARD_PORT`] is set.
///
/// # Errors
/// [`ErrorKind::Config`](dbos_core::ErrorKind::Config) when it is not a port number.
pub fn with_dashboard(config: Config) -> Result<Config, Error> {
    let Ok(text) = std::env::var(DASHBOARD_PORT) else {
        return Ok(config);
    };
    let port: u16 = text.trim().parse().map_err(|_| {
        Error::new(dbos_core::ErrorKind::Config, format!(
            "{DASHBOARD_PORT}=`{text}` is not a port: give a number such as 3001 (0: any free port), or unset it"
        ))
    })?;
    Ok(config.admin_server(AdminServer::new(port)))
}

/// Prints the dashboard's URL, when the runtime serves it.
pub fn print_dashboard(dbos: &Dbos) {
    if let Some(address) = dbos.admin_address() {
        println!("dashboard: http://{address}/");
    }
}

/// When the runtime serves the dashboard, keeps it up (and the process alive) until Ctrl-C,
/// so the run's workflows can be looked at; else returns at once.
pub async fn hold_dashboard(dbos: &Dbos) {
    if let Some(address) = dbos.admin_address() {
        println!("dashboard: http://{address}/ stays up until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Installs a `tracing` subscriber that prints log lines on stderr (colored on a terminal): at the levels `RUST_LOG`
/// asks for when it is set (`RUST_LOG=dbos_core=debug`, `RUST_LOG=warn`), else INFO and
/// above, which shows the launch line (the system database, redacted, and the executor id),
/// a launch waiting for its database, outages, recoveries and retried steps.
///
/// When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the
/// spans are exported there too (OTLP over HTTP/protobuf; the other `OTEL_*` variables
/// apply; the service is `OTEL_SERVICE_NAME`, else the example's name), in batches sent every
/// half second unless `OTEL_BSP_SCHEDULE_DELAY` says otherwise, so a run stopped with Ctrl-C
/// has sent what ended before. Keep what it returns until `main` ends: dropping it sends
/// the rest.
///
/// # Panics
/// When a subscriber is installed already (call it once, first thing in `main`), or the
/// `OTEL_*` variables are invalid (the message says which).
pub fn init_logs() -> Option<Telemetry> {
    if std::env::var_os("OTEL_BSP_SCHEDULE_DELAY").is_none() {
        // First thing in `main`: no thread of ours reads the environment yet.
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "500");
    }
    let name = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "dbos-example".to_owned());
    match Telemetry::from_env(&name) {
        Ok(Some(telemetry)) => {
            telemetry
                .init()
                .unwrap_or_else(|e| panic!("installing the subscriber: {e}"));
            return Some(telemetry);
        }
        Ok(None) => {}
        Err(e) => panic!("{e}"),
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    None
}
