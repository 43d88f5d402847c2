//! `osprey-collector`: flags and config in, [`collector::run`] does the rest.

use anyhow::Result;

use clap::Parser;

#[tokio::main(worker_threads = 2)]
async fn main() -> Result<()> {
    // Each queue append runs on the blocking pool; with glibc's default of
    // an arena per thread (up to 8 per core), RSS would follow how many
    // such threads ever ran. Two arenas keep it to the data in flight.
    // SAFETY: mallopt only tunes the allocator; glibc takes it at any time.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = collector::config::Cli::parse().into_config()?;
    collector::run(cfg).await
}
