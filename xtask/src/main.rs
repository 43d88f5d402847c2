//! Osprey's task runner. `cargo xtask run` and `cargo xtask test` are the
//! README's two commands; both set up the machine first if needed.

mod bench;
mod bench_collector;
mod bench_http;
mod bench_identity;
mod bench_memory;
mod bench_probes;
mod bench_scale;
mod bench_scrape;
mod bench_series;
mod build;
mod layout;
mod setup;
mod sh;
mod stack;

use std::process::Command;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Osprey's task runner")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install packages, bpf-linker and test peers (idempotent, seconds when done).
    Setup,
    /// Build the kernel programs and the host binaries (release).
    Build,
    /// Set up, build, and start the agent on this host with a live flow summary.
    Run {
        /// The whole pipeline on loopback, as the Helm chart wires it: the
        /// agent, the collector, Prometheus 3 (remote-write receiver and
        /// exemplar storage on) and an OTLP traces receiver.
        #[arg(long)]
        stack: bool,
        /// Extra agent flags, after `--` (e.g. `-- --listen 0.0.0.0:9811`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, check formatting and lints, run every test (unit and real eBPF).
    Test {
        /// Extra arguments for `cargo test` (a filter, `--nocapture`, …).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Throughput with probes detached vs attached, ns per packet from kernel stats.
    Bench {
        /// Repetitions of each measurement (medians are reported).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Seconds per throughput measurement.
        #[arg(long, default_value_t = 4)]
        secs: u64,
        /// Run one part only: `probes` (throughput, ns/packet), `flows` (agent
        /// cost per flow rate), `scrape` (node + cgroups vs node-exporter),
        /// `collector` (vs vmagent), `http` (HTTP parsing), `identity`
        /// (10k pods, 1k Services, 100 Nodes: RSS and lookup ns), `series`
        /// (series, bytes, RSS and CPU per pod at 10, 50, 100 pods) or
        /// `memory` (kernel maps and RSS, projected to 16/64/128 CPUs).
        #[arg(long)]
        only: Option<String>,
        /// Another agent binary (its probe object beside it) measured in the
        /// same invocation in the flows, scrape and http parts: before vs after.
        #[arg(long)]
        against: Option<std::path::PathBuf>,
        /// Measure this agent binary (its probe object beside it) as "this
        /// build" in the flows, scrape and http parts, e.g. one commit against
        /// another, instead of the tree's own build.
        #[arg(long)]
        agent: Option<std::path::PathBuf>,
    },
    /// Profile the agent through the benches' workloads and write the
    /// functions that ran to node-agent/osprey-agent.order, which the linker
    /// places side by side (fewer of the agent's code pages resident).
    Layout,
    /// (Used by bench, inside a namespace) send `rate` new UDP flows per second.
    #[command(hide = true)]
    Flowgen {
        #[arg(long)]
        target: String,
        #[arg(long)]
        rate: u32,
        #[arg(long)]
        secs: u64,
    },
    /// (Used by bench, inside a namespace) a minimal keep-alive HTTP server.
    #[command(hide = true)]
    Httpd {
        #[arg(long)]
        listen: String,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::setup(),
        Task::Build => {
            setup::setup()?;
            build::all().map(|_| ())
        }
        Task::Layout => {
            setup::setup()?;
            layout::run()
        }
        Task::Run { stack, args } => {
            setup::setup()?;
            let agent = build::all()?;
            if stack {
                return stack::run(&agent, &args);
            }
            let mut cmd = Command::new(agent);
            cmd.args([
                "--summary-interval-secs",
                "3",
                "--drain-interval-ms",
                "1000",
            ])
            .args(args);
            eprintln!("xtask: starting the agent; Ctrl-C detaches the probes and exits");
            exec(cmd)
        }
        Task::Test { args } => {
            setup::setup()?;
            let agent = build::all()?;
            sh::run(sh::cargo().args(["fmt", "--all", "--check"]))?;
            sh::run(sh::cargo().args([
                "clippy",
                "--release",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))?;
            sh::run_tests(
                sh::cargo()
                    // Every test binary runs even after a failure, so one
                    // run reports all failures.
                    .args(["test", "--release", "--no-fail-fast"])
                    .args(&args)
                    .env("OSPREY_AGENT_BIN", &agent)
                    .env(
                        "OSPREY_COLLECTOR_BIN",
                        agent.with_file_name("osprey-collector"),
                    )
                    // Prometheus 3, VictoriaMetrics, vmagent, rotel-agent.
                    .envs(setup::peers::env()?),
            )
        }
        Task::Bench {
            reps,
            secs,
            only,
            against,
            agent: given,
        } => {
            setup::setup()?;
            let built = build::all()?;
            let agent = match given {
                Some(a)
                    if only
                        .as_deref()
                        .is_some_and(|o| ["flows", "scrape", "http"].contains(&o)) =>
                {
                    a
                }
                Some(_) => anyhow::bail!("--agent is for --only flows, scrape or http"),
                None => built,
            };
            let part = |p: &str| only.as_deref().is_none_or(|o| o == p);
            if let Some(o) = only.as_deref()
                && ![
                    "probes",
                    "flows",
                    "scrape",
                    "collector",
                    "http",
                    "identity",
                    "series",
                    "memory",
                ]
                .contains(&o)
            {
                anyhow::bail!(
                    "--only takes probes, flows, scrape, collector, http, identity, series or memory, not {o}"
                );
            }
            bench::no_other_agent()?;
            if part("probes") {
                bench_probes::run(&agent, reps, secs)?;
            }
            if part("flows") {
                bench::flow_rates(&agent, against.as_deref(), reps, secs + 2)?;
            }
            if part("scrape") {
                bench_scrape::run(&agent, against.as_deref(), reps)?;
            }
            if part("http") {
                bench_http::run(&agent, against.as_deref(), reps, secs + 4)?;
            }
            if part("identity") {
                bench_identity::run(&agent, reps)?;
            }
            if part("series") {
                let peers: std::collections::HashMap<_, _> =
                    setup::peers::env()?.into_iter().collect();
                bench_series::run(&agent, &peers["OSPREY_PROMETHEUS3"], secs * 5)?;
            }
            if part("memory") {
                bench_memory::run(&agent, reps, secs + 2)?;
            }
            if part("collector") {
                let peers: std::collections::HashMap<_, _> =
                    setup::peers::env()?.into_iter().collect();
                bench_collector::run(
                    &agent.with_file_name("osprey-collector"),
                    &peers["OSPREY_PROMETHEUS3"],
                    &peers["OSPREY_VMAGENT"],
                    reps.min(3),
                )?;
            }
            Ok(())
        }
        Task::Flowgen { target, rate, secs } => bench::flowgen(&target, rate, secs),
        Task::Httpd { listen } => bench_http::httpd(&listen),
    }
}

/// Replaces xtask with `cmd`, so Ctrl-C reaches the agent directly.
fn exec(mut cmd: Command) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    bail!("cannot start {}: {err}", sh::describe(&cmd))
}
