//! `osprey-collector`: flags and config in, [`collector::run`] does the rest.

use anyhow::Result;

use clap::Parser;

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = collector::config::Cli::parse().into_config()?;
    collector::run(cfg).await
}
