//! `osprey-agent events`: the CLI client of `/api/v1/events`.

use anyhow::{Context, Result};
use clap::Args;

use super::record::ResourceEvent;
use crate::observe::client::{Output, print_stream};

/// Print resource events (OOM kills) from a running agent.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The agent's HTTP address.
    #[arg(long, env = "OSPREY_SERVER", default_value = "http://127.0.0.1:9811")]
    pub server: String,
    /// Keep printing new events as they come.
    #[arg(short, long)]
    pub follow: bool,
    /// Print the last N buffered events first.
    #[arg(long)]
    pub last: Option<usize>,
    /// Only events of cgroups under this path.
    #[arg(long)]
    pub cgroup: Option<String>,
    #[arg(short, long, value_enum, default_value = "compact")]
    pub output: Output,
}

pub fn run(args: EventsArgs) -> Result<()> {
    let query = [
        ("last", args.last.map(|v| v.to_string())),
        ("cgroup", args.cgroup.clone()),
    ];
    print_stream(
        &args.server,
        "events",
        args.follow,
        &query,
        |line| match args.output {
            Output::Json => Ok(line),
            Output::Compact => serde_json::from_str::<ResourceEvent>(&line)
                .map(|e| e.compact())
                .with_context(|| format!("not an event: {line}")),
        },
    )
}
