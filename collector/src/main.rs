//! Osprey collector. This first version starts, serves `/healthz`, and says
//! plainly that the OTLP receive → durable queue → export pipeline is not
//! built yet (a later issue); it accepts no data rather than losing it.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::{Router, routing::get};
use clap::Parser;
use tracing::{info, warn};

/// Osprey collector: receives OTLP from agents and exports to Prometheus/Thanos and Tempo.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address of the HTTP endpoint (`/healthz`). Port 0 picks a free port.
    #[arg(
        long,
        env = "OSPREY_COLLECTOR_LISTEN",
        default_value = "127.0.0.1:4318"
    )]
    listen: SocketAddr,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr()?;
    println!("osprey-collector: serving http://{addr}/healthz");
    warn!("OTLP receivers and exporters are not implemented yet: this collector accepts no data");
    let app = Router::new().route("/healthz", get(|| async { "ok\n" }));
    let server = axum::serve(listener, app);
    tokio::select! {
        r = server => r.context("serving")?,
        _ = tokio::signal::ctrl_c() => info!("shutting down"),
    }
    Ok(())
}
