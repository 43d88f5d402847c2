//! `osprey-agent events`: the CLI client of `/api/v1/events`.

use std::io::{BufRead, BufReader, Write};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::record::ResourceEvent;
use crate::observe::client::Output;

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
    let url = format!("{}/api/v1/events", args.server.trim_end_matches('/'));
    let mut req = ureq::get(&url).query("follow", if args.follow { "true" } else { "false" });
    if let Some(last) = args.last {
        req = req.query("last", &last.to_string());
    }
    if let Some(cgroup) = &args.cgroup {
        req = req.query("cgroup", cgroup);
    }
    let resp = match req.call() {
        Ok(resp) => resp,
        Err(ureq::Error::Status(code, resp)) => bail!(
            "{url}: HTTP {code}: {}",
            resp.into_string().unwrap_or_default().trim()
        ),
        Err(e) => return Err(e).with_context(|| format!("connecting to {url}")),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in BufReader::new(resp.into_reader()).lines() {
        let line = line.context("reading the event stream")?;
        if line.is_empty() {
            continue;
        }
        let text = match args.output {
            Output::Json => line,
            Output::Compact => serde_json::from_str::<ResourceEvent>(&line)
                .map(|e| e.compact())
                .with_context(|| format!("not an event: {line}"))?,
        };
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(())
}
