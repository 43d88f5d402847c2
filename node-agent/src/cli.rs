//! Command line: every config field as a flag and an environment variable.

use std::{net::SocketAddr, path::PathBuf};

use clap::Parser;
use serde::Serialize;

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
    /// The running agent's kernel maps (those of the programs in the probe
    /// object): definition, memory here, and projected to 16, 64 and 128
    /// possible CPUs (for the memory bench).
    #[command(hide = true)]
    MapMemory {
        #[arg(long, env = "OSPREY_PROBES")]
        probes: Option<PathBuf>,
    },
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
/// The agent's flags (each also an environment variable). Serialized, the
/// ones given form the table that [`Config::merge`] lays over the file.
#[derive(Debug, clap::Args, Serialize)]
pub struct RunArgs {
    /// TOML configuration file (see deploy/agent.example.toml). Flags override it.
    #[arg(long, env = "OSPREY_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[arg(long, env = "OSPREY_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "OSPREY_PROBES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probes: Option<PathBuf>,
    #[arg(long, env = "OSPREY_CGROUP")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
    #[arg(long, env = "OSPREY_FLOW_MAP_ENTRIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_map_entries: Option<u32>,
    #[arg(long, env = "OSPREY_DRAIN_INTERVAL_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_interval_ms: Option<u64>,
    #[arg(long, env = "OSPREY_FLOW_IDLE_TTL_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_idle_ttl_secs: Option<u64>,
    #[arg(long, env = "OSPREY_SERIES_BUDGET")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series_budget: Option<usize>,
    /// Ports in per-flow metrics: server (fold clients' ephemeral ports) or both.
    #[arg(long, env = "OSPREY_FLOW_PORTS", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_ports: Option<crate::config::FlowPorts>,
    /// Write every flow record as a JSON line to this file ("-" = stdout).
    #[arg(long, env = "OSPREY_OBSERVE_BUFFER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observe_buffer: Option<usize>,
    #[arg(long, env = "OSPREY_FLOW_LOG")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_log: Option<PathBuf>,
    /// Context of the `source` label of hubble_* families, e.g. "pod|ip".
    #[arg(long, env = "OSPREY_HUBBLE_SOURCE_CONTEXT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hubble_source_context: Option<crate::flows::context::ContextSpec>,
    /// Context of the `destination` label of hubble_* families.
    #[arg(long, env = "OSPREY_HUBBLE_DESTINATION_CONTEXT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hubble_destination_context: Option<crate::flows::context::ContextSpec>,
    #[arg(long, env = "OSPREY_CGROUP_METRICS_LIMIT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_metrics_limit: Option<usize>,
    /// A pod's sandbox (pause) container: minimal (its network) or all
    /// container_* families.
    #[arg(long, env = "OSPREY_CONTAINER_SANDBOX_METRICS", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_sandbox_metrics: Option<crate::config::SandboxMetrics>,
    /// A pod's own cgroup and the QoS classes above pods: totals (CPU usage,
    /// working set) or all container_* families.
    #[arg(long, env = "OSPREY_CONTAINER_POD_METRICS", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_pod_metrics: Option<crate::config::PodMetrics>,
    #[arg(long, env = "OSPREY_CGROUP_OPEN_FILES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_open_files: Option<usize>,
    #[arg(long, env = "OSPREY_BPF_STATS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_stats: Option<bool>,
    /// Each kernel map's memory and maximum entries as series (else their total).
    #[arg(long, env = "OSPREY_BPF_MAP_DETAILS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_map_details: Option<bool>,
    /// Time run-queue waits per cgroup from the scheduler's tracepoints.
    #[arg(long, env = "OSPREY_RUNQUEUE_LATENCY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runqueue_latency: Option<bool>,
    /// Drop reasons counted only in osprey_drops_ignored_total, comma
    /// separated (e.g. SOCKET_CLOSE,QUEUE_PURGE); "" counts every reason.
    #[arg(long, env = "OSPREY_DROP_REASONS_IGNORED", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_reasons_ignored: Option<Vec<String>>,
    /// Kernel functions whose drops count whatever their reason, comma
    /// separated (e.g. a driver's function that frees without a reason).
    #[arg(long, env = "OSPREY_DROP_LOCATIONS_COUNTED", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_locations_counted: Option<Vec<String>>,
    /// Read the scheduler tracepoints' fields with helper calls at tracefs
    /// offsets even where plain loads apply (the portable path, for tests).
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub sched_fields_by_helper: bool,
    #[arg(long, env = "OSPREY_SHUTDOWN_GRACE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_secs: Option<u64>,
    #[arg(long, env = "OSPREY_SUMMARY_INTERVAL_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary_interval_secs: Option<u64>,
    /// Pod identity from the Kubernetes API: auto, on or off.
    #[arg(long, env = "OSPREY_KUBERNETES", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<crate::config::KubernetesMode>,
    #[arg(long, env = "KUBECONFIG")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// Pods watched: cluster (every pod: remote pods are named too) or node.
    #[arg(long, env = "OSPREY_POD_SCOPE", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_scope: Option<crate::config::PodScope>,
    /// This node's name (for --pod-scope node).
    #[arg(long, env = "NODE_NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The cluster's Service ranges, comma separated (e.g. 10.96.0.0/12):
    /// their addresses are not reserved:world.
    #[arg(long, env = "OSPREY_SERVICE_CIDRS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_cidrs: Option<Vec<String>>,
    /// Push metrics as OTLP: http://HOST:4317 (gRPC) or …/v1/metrics (HTTP).
    #[arg(long, env = "OSPREY_OTLP_ENDPOINT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Seconds between OTLP pushes.
    #[arg(long, env = "OSPREY_OTLP_INTERVAL_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_interval_secs: Option<u64>,
    /// Bytes of each HTTP start copied from the kernel (64..=1024; 0: HTTP off).
    #[arg(long, env = "OSPREY_HTTP_CAPTURE_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_capture_bytes: Option<u32>,
    /// A route pattern for http_route, e.g. /users/{id} (repeatable).
    #[arg(long = "http-route", env = "OSPREY_HTTP_ROUTES", value_delimiter = ',')]
    #[serde(rename = "http_routes", skip_serializing_if = "Option::is_none")]
    pub http_routes: Option<Vec<String>>,
    /// The exemplar label of the trace id: trace_id or traceID.
    #[arg(long, env = "OSPREY_EXEMPLAR_TRACE_LABEL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exemplar_trace_label: Option<String>,
    /// A span per HTTP request: traced, all or off.
    #[arg(long, env = "OSPREY_HTTP_SPANS", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_spans: Option<crate::http::spans::HttpSpans>,
    /// Where spans go (default: the --otlp-endpoint's host).
    #[arg(long, env = "OSPREY_OTLP_TRACES_ENDPOINT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_traces_endpoint: Option<String>,
    /// The host's / as mounted in the agent's container (node_filesystem_*).
    #[arg(long, env = "OSPREY_HOST_ROOT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_root: Option<PathBuf>,
    /// Interfaces left out of node_network_* (a regex; "" keeps all).
    #[arg(long, env = "OSPREY_NODE_NETWORK_DEVICE_EXCLUDE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_network_device_exclude: Option<String>,
    /// Serve the endpoints over TLS with this certificate (PEM).
    #[arg(long, env = "OSPREY_TLS_CERT_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// The key (PEM) of --tls-cert-file.
    #[arg(long, env = "OSPREY_TLS_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// Require client certificates signed by this CA (all but /healthz).
    #[arg(long, env = "OSPREY_TLS_CLIENT_CA_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca_file: Option<PathBuf>,
}

impl RunArgs {
    /// The configuration: defaults, the file (`--config`), then the flags
    /// and environment variables given, through [`Config::merge`].
    pub fn into_config(mut self) -> Result<Config, ConfigError> {
        // An empty NODE_NAME (an unset downward-API field) is no name.
        self.node_name = self.node_name.filter(|n| !n.is_empty());
        let overrides =
            toml::Table::try_from(&self).expect("flags serialize as a TOML table of their values");
        Config::merge(self.config.as_deref(), overrides)
    }

    /// Run-queue probes' field reads (the hidden `--sched-fields-by-helper`,
    /// for the tests that run both paths; not a configuration key).
    pub fn sched_fields(&self) -> crate::kernel::probes::SchedFields {
        if self.sched_fields_by_helper {
            crate::kernel::probes::SchedFields::Helpers
        } else {
            crate::kernel::probes::SchedFields::Auto
        }
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

    #[test]
    fn flags_lay_over_the_file_which_lays_over_defaults() {
        let dir = std::env::temp_dir().join(format!("osprey-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("agent.toml");
        std::fs::write(
            &file,
            "series_budget = 7\ndrain_interval_ms = 500\nhubble_source_context = \"pod\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "osprey-agent",
            "--config",
            file.to_str().unwrap(),
            "--drain-interval-ms",
            "250",
            "--hubble-source-context",
            "workload|ip",
            "--drop-reasons-ignored",
            "NO_SOCKET, ,OTHERHOST",
        ]);
        let config = cli.run.into_config().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(config.series_budget, 7, "from the file");
        assert_eq!(config.drain_interval_ms, 250, "the flag wins");
        assert_eq!(config.hubble_source_context.to_string(), "workload|ip");
        assert_eq!(config.drop_reasons_ignored, ["NO_SOCKET", "OTHERHOST"]);
        assert_eq!(
            config.flow_idle_ttl_secs,
            Config::default().flow_idle_ttl_secs
        );
    }

    #[test]
    fn a_flag_that_breaks_a_rule_is_an_error() {
        let cli = Cli::parse_from(["osprey-agent", "--observe-buffer", "0"]);
        let err = cli.run.into_config().unwrap_err();
        assert!(err.to_string().contains("observe_buffer"), "{err}");
    }
}
