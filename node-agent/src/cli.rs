//! Command line: every config field as a flag and an environment variable.

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;

use crate::config::{Config, ConfigError};

/// Osprey node agent: eBPF flow accounting served as OpenMetrics.
/// Without a subcommand it runs the agent.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print flows from a running agent, like `hubble observe`.
    Observe(Box<crate::observe::client::ObserveArgs>),
    /// Print resource events (OOM kills with the victim's command) from a running agent.
    Events(crate::events::client::EventsArgs),
    /// Attach empty cgroup_skb programs (ingress and egress) to the root
    /// cgroup, or an empty classifier to a device, until interrupted: what
    /// the hook alone costs, for the bench.
    #[command(hide = true)]
    HookFloor {
        #[arg(long, env = "OSPREY_PROBES")]
        probes: Option<PathBuf>,
        #[arg(long, env = "OSPREY_CGROUP")]
        cgroup: Option<PathBuf>,
        /// Keep the kernel's per-program run-time statistics on meanwhile.
        #[arg(long)]
        bpf_stats: bool,
        /// Instead of the cgroup pair, attach an empty TC classifier to this
        /// device of the current network namespace, through a tcx link.
        #[arg(long)]
        tcx: Option<String>,
        /// With `--tcx`: the device's ingress instead of its egress.
        #[arg(long, requires = "tcx")]
        ingress: bool,
    },
    /// Print `name runs run_time_ns` of every loaded eBPF program, a line
    /// each (the kernel's statistics, for the bench).
    #[command(hide = true)]
    ProgStats,
    /// Time the flow programs (and the empty ones) on built packets with the
    /// kernel's BPF_PROG_TEST_RUN: each program's own cost, without traffic.
    #[command(hide = true)]
    ProgBench {
        #[arg(long, env = "OSPREY_PROBES")]
        probes: Option<PathBuf>,
        /// Runs per measurement.
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        /// Measurements per program and packet (the fastest is printed).
        #[arg(long, default_value_t = 7)]
        rounds: usize,
    },
}

/// Flags of the agent itself.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// TOML configuration file (see deploy/agent.example.toml). Flags override it.
    #[arg(long, env = "OSPREY_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "OSPREY_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "OSPREY_PROBES")]
    pub probes: Option<PathBuf>,
    #[arg(long, env = "OSPREY_CGROUP")]
    pub cgroup: Option<PathBuf>,
    #[arg(long, env = "OSPREY_FLOW_MAP_ENTRIES")]
    pub flow_map_entries: Option<u32>,
    #[arg(long, env = "OSPREY_DRAIN_INTERVAL_MS")]
    pub drain_interval_ms: Option<u64>,
    #[arg(long, env = "OSPREY_FLOW_IDLE_TTL_SECS")]
    pub flow_idle_ttl_secs: Option<u64>,
    #[arg(long, env = "OSPREY_SERIES_BUDGET")]
    pub series_budget: Option<usize>,
    /// Ports in per-flow metrics: server (fold clients' ephemeral ports) or both.
    #[arg(long, env = "OSPREY_FLOW_PORTS", value_enum)]
    pub flow_ports: Option<crate::config::FlowPorts>,
    /// Write every flow record as a JSON line to this file ("-" = stdout).
    #[arg(long, env = "OSPREY_FLOW_LOG")]
    pub flow_log: Option<PathBuf>,
    /// Context of the `source` label of hubble_* families, e.g. "pod|ip".
    #[arg(long, env = "OSPREY_HUBBLE_SOURCE_CONTEXT")]
    pub hubble_source_context: Option<crate::flows::context::ContextSpec>,
    /// Context of the `destination` label of hubble_* families.
    #[arg(long, env = "OSPREY_HUBBLE_DESTINATION_CONTEXT")]
    pub hubble_destination_context: Option<crate::flows::context::ContextSpec>,
    #[arg(long, env = "OSPREY_CGROUP_METRICS_LIMIT")]
    pub cgroup_metrics_limit: Option<usize>,
    #[arg(long, env = "OSPREY_CGROUP_OPEN_FILES")]
    pub cgroup_open_files: Option<usize>,
    #[arg(long, env = "OSPREY_BPF_STATS")]
    pub bpf_stats: Option<bool>,
    /// Time run-queue waits per cgroup from the scheduler's tracepoints.
    #[arg(long, env = "OSPREY_RUNQUEUE_LATENCY")]
    pub runqueue_latency: Option<bool>,
    /// Drop reasons counted only in osprey_drops_ignored_total, comma
    /// separated (e.g. SOCKET_CLOSE,QUEUE_PURGE); "" counts every reason.
    #[arg(long, env = "OSPREY_DROP_REASONS_IGNORED")]
    pub drop_reasons_ignored: Option<String>,
    /// Read the scheduler tracepoints' fields with helper calls at tracefs
    /// offsets even where plain loads apply (the portable path, for tests).
    #[arg(long, hide = true)]
    pub sched_fields_by_helper: bool,
    #[arg(long, env = "OSPREY_SUMMARY_INTERVAL_SECS")]
    pub summary_interval_secs: Option<u64>,
    /// Pod identity from the Kubernetes API: auto, on or off.
    #[arg(long, env = "OSPREY_KUBERNETES", value_enum)]
    pub kubernetes: Option<crate::config::KubernetesMode>,
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Pods watched: cluster (every pod: remote pods are named too) or node.
    #[arg(long, env = "OSPREY_POD_SCOPE", value_enum)]
    pub pod_scope: Option<crate::config::PodScope>,
    /// This node's name (for --pod-scope node).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
}

impl RunArgs {
    /// The file's config (or the defaults) with flags and variables on top.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.probes {
            c.probes = v;
        }
        if let Some(v) = self.cgroup {
            c.cgroup = v;
        }
        if let Some(v) = self.flow_map_entries {
            c.flow_map_entries = v;
        }
        if let Some(v) = self.drain_interval_ms {
            c.drain_interval_ms = v;
        }
        if let Some(v) = self.flow_idle_ttl_secs {
            c.flow_idle_ttl_secs = v;
        }
        if let Some(v) = self.series_budget {
            c.series_budget = v;
        }
        if let Some(v) = self.flow_ports {
            c.flow_ports = v;
        }
        if let Some(v) = self.flow_log {
            c.flow_log = Some(v);
        }
        if let Some(v) = self.hubble_source_context {
            c.hubble_source_context = v;
        }
        if let Some(v) = self.hubble_destination_context {
            c.hubble_destination_context = v;
        }
        if let Some(v) = self.cgroup_metrics_limit {
            c.cgroup_metrics_limit = v;
        }
        if let Some(v) = self.cgroup_open_files {
            c.cgroup_open_files = v;
        }
        if let Some(v) = self.bpf_stats {
            c.bpf_stats = v;
        }
        if let Some(v) = self.runqueue_latency {
            c.runqueue_latency = v;
        }
        c.sched_fields_by_helper |= self.sched_fields_by_helper;
        if let Some(v) = &self.drop_reasons_ignored {
            c.drop_reasons_ignored = v
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = self.summary_interval_secs {
            c.summary_interval_secs = v;
        }
        if let Some(v) = self.kubernetes {
            c.kubernetes = v;
        }
        if let Some(v) = self.kubeconfig {
            c.kubeconfig = Some(v);
        }
        if let Some(v) = self.pod_scope {
            c.pod_scope = v;
        }
        if let Some(v) = self.node_name.filter(|n| !n.is_empty()) {
            c.node_name = Some(v);
        }
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observe_is_a_subcommand_with_filters() {
        let cli = Cli::parse_from([
            "osprey-agent",
            "observe",
            "--port",
            "53",
            "--verdict",
            "dropped",
            "-o",
            "json",
        ]);
        let Some(Command::Observe(args)) = cli.command else {
            panic!("not observe")
        };
        assert_eq!(args.port, Some(53));
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::parse_from([
            "osprey-agent",
            "--listen",
            "127.0.0.1:0",
            "--flow-map-entries",
            "16",
        ]);
        let config = cli.run.into_config().unwrap();
        assert_eq!(config.flow_map_entries, 16);
        assert_eq!(config.listen.port(), 0);
        assert_eq!(
            config.drain_interval_ms,
            Config::default().drain_interval_ms
        );
    }
}
