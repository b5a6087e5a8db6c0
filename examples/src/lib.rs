//! What the examples share.

/// Installs a `tracing` subscriber that prints log lines on stderr (colored on a terminal): at the levels `RUST_LOG`
/// asks for when it is set (`RUST_LOG=dbos_core=debug`, `RUST_LOG=warn`), else INFO and
/// above, which shows the launch line (the system database, redacted, and the executor id),
/// a launch waiting for its database, outages, recoveries and retried steps.
///
/// # Panics
/// When a subscriber is installed already (call it once, first thing in `main`).
pub fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
