//! `osprey-agent events`: the CLI client of `/api/v1/events`.

use anyhow::Result;
use clap::Args;

use super::record::ResourceEvent;
use crate::observe::client::{Compact, StreamArgs, print_stream};

/// Print resource events (OOM kills) from a running agent.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub stream: StreamArgs,
    /// Only events of cgroups under this path.
    #[arg(long)]
    pub cgroup: Option<String>,
}

impl Compact for ResourceEvent {
    const NAME: &'static str = "event";
    fn compact(&self) -> String {
        ResourceEvent::compact(self)
    }
}

pub fn run(args: EventsArgs) -> Result<()> {
    print_stream::<ResourceEvent>(&args.stream, "events", &[("cgroup", args.cgroup)])
}
