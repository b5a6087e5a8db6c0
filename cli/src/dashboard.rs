//! `dbos-rs dashboard`: the admin server and web dashboard over a [`Client`](dbos_core::Client),
//! with no application code, until Ctrl-C (or SIGTERM).

use dbos_core::admin::{serve, AdminServer};
use dbos_core::Result;
use serde_json::json;

use crate::args::{DashboardArgs, Global};
use crate::output;

pub(crate) async fn run(g: &Global, a: DashboardArgs) -> Result<()> {
    let client = crate::commands::client(g).await?;
    let mut server = AdminServer::new(a.port).bind(a.bind);
    if let Some(token) = a.token {
        server = server.token(token);
    }
    let mut admin = serve(&client, server).await?;
    let url = format!("http://{}/", admin.address());
    if g.json {
        output::json(&json!({"url": url, "address": admin.address().to_string()}));
    } else {
        println!("dashboard: {url} (Ctrl-C stops it)");
    }
    tokio::select! {
        _ = stop_signal() => admin.shutdown().await,
        _ = admin.wait() => {}
    }
    client.close();
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix.
async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
