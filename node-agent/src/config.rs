//! Agent configuration: a documented serde struct, readable from a TOML file,
//! with every field also settable by a CLI flag or an environment variable.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::flows::context::ContextSpec;

/// Errors reading the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid config (file, flags and environment merged)")]
    Merge(#[source] toml::de::Error),
    #[error("invalid config: {0}")]
    Invalid(&'static str),
    #[error("invalid config: node_network_device_exclude is not a regular expression")]
    DeviceExclude(#[source] regex_lite::Error),
}

/// The agent's configuration. Every field has a default; see `deploy/agent.example.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the HTTP server that serves `/metrics` (OpenMetrics) and `/healthz`.
    /// Port 0 picks a free port; the URL is printed at start.
    pub listen: SocketAddr,
    /// Path of the compiled kernel programs (`osprey-probes.bpf.o`).
    /// Empty: next to the agent binary.
    pub probes: PathBuf,
    /// cgroup v2 directory to attach the flow probes to. Empty: the root of the
    /// cgroup v2 hierarchy found in /proc/self/mountinfo (pure v2 or hybrid).
    pub cgroup: PathBuf,
    /// Entries of each of the two kernel flow maps. New flows past this between
    /// two drains are counted in `osprey_flow_lost_packets_total{reason="map_full"}`.
    pub flow_map_entries: u32,
    /// How often the kernel flow maps are drained into metrics, in milliseconds.
    pub drain_interval_ms: u64,
    /// A flow series with no traffic for this many seconds is removed from /metrics.
    pub flow_idle_ttl_secs: u64,
    /// Ports in the per-flow metric families (`osprey_flow_*`,
    /// `osprey_tcp_retransmits_total`): `server` labels a client's ephemeral
    /// port (inside ip_local_port_range, facing a port outside it) 0, so a
    /// client's connections to one service share a series; `both` keeps
    /// every port (a series per connection). Flow records keep both.
    pub flow_ports: FlowPorts,
    /// Series budget of each per-flow metric family (`osprey_flow_bytes_total`
    /// and `_packets_total` share one, `osprey_flow_drops_total`,
    /// `osprey_tcp_retransmits_total`). Past it, new series fold into an
    /// `overflow` series, counted in `osprey_metric_series_folded_total`.
    pub series_budget: usize,
    /// Write every flow record as a JSON line to this file ("-" = stdout).
    pub flow_log: Option<PathBuf>,
    /// Flow records kept for `observe --last` and followers' catch-up.
    pub observe_buffer: usize,
    /// Hubble context options for the `source` label of the `hubble_*`
    /// families: `namespace`, `pod`, `workload`, `ip`, with `|` fallbacks
    /// (e.g. "pod|ip"). Empty: no `source` label, as in Hubble's default.
    pub hubble_source_context: ContextSpec,
    /// The same for the `destination` label.
    pub hubble_destination_context: ContextSpec,
    /// Export per-cgroup CPU and memory usage (cAdvisor's `container_*`
    /// families, read from cgroupfs at scrape time) for at most this many
    /// cgroups; 0 turns them off.
    pub cgroup_metrics_limit: usize,
    /// What a pod's sandbox (pause) container publishes: `minimal` (default:
    /// its network; its CPU and memory are in its pod's totals, and its
    /// series, with neither a `container` nor an `image` label, are outside
    /// what dashboards sum: `container!=""`, `image!=""`) or `all` (every
    /// `container_*` family, as cAdvisor does: ~22 more series per pod).
    pub container_sandbox_metrics: SandboxMetrics,
    /// What a pod's own cgroup (`…/pod<uid>`: the kernel's total of its
    /// containers, which publish the same figures themselves) and the
    /// cgroups above pods (`kubepods` and its QoS classes) publish:
    /// `totals` (default: CPU usage and working set, what cAdvisor users
    /// query with `container=""`; OOM kills are published on the killed
    /// process's container) or `all` (every `container_*` family, as
    /// cAdvisor does: ~19 more series per pod and per QoS class).
    pub container_pod_metrics: PodMetrics,
    /// Cgroup files kept open between scrapes and re-read from offset 0,
    /// which saves an open and a close per file per scrape (about 11 files
    /// per cgroup; ~20-30 µs of CPU per cgroup per scrape, a third of a
    /// scrape's cost). Each kept file costs the kernel about 5 KiB, charged
    /// to the agent's memory cgroup: the default 2,048 (~185 cgroups) caps
    /// that at ~10 MiB; past it, files are opened per scrape. 0: none kept.
    pub cgroup_open_files: usize,
    /// Keep the kernel's per-program run-time statistics on (`kernel.bpf_stats_enabled`)
    /// and export them as `osprey_bpf_program_run_seconds_total`. Costs ~20-30 ns
    /// per run of every program (the bench measures it on an empty program).
    pub bpf_stats: bool,
    /// Export each kernel map's memory and maximum entries
    /// (`osprey_bpf_map_memory_bytes{map}`, `osprey_bpf_map_entries_max{map}`:
    /// 50 series for the 25 maps). Without, only their total memory
    /// (`osprey_bpf_maps_memory_bytes`); `osprey-agent map-memory` lists
    /// the maps on demand.
    pub bpf_map_details: bool,
    /// Time run-queue waits per cgroup (`container_cpu_runqueue_latency_seconds`)
    /// from the scheduler's tracepoints. They fire on every context switch
    /// and wake-up (≈ 110 and ≈ 90 ns each): on a node that switches
    /// 100k times a second that is ≈ 2 % of a CPU. `false` leaves them
    /// unattached; every other probe stays.
    pub runqueue_latency: bool,
    /// Kernel drop reasons (names from the running kernel's
    /// `enum skb_drop_reason`, without the `SKB_DROP_REASON_` prefix) that
    /// are not network drops for this node's users. Such drops are counted in
    /// `osprey_drops_ignored_total{reason}` only: not in `hubble_drop_total`,
    /// `osprey_flow_drops_total` or the flow records. The default keeps out
    /// what sockets free at teardown (unread data when a socket closes, queues
    /// purged), which every local connection produces and Hubble, counting
    /// its datapath's drops, does not show; and `NOT_SPECIFIED`, a free
    /// whose caller gave no reason: on a bridged node these are multicast
    /// frames not for this host (`ip6_mc_input`: neighbour discovery and MLD
    /// to groups a pod has not joined) and the like, not losses. Each is
    /// still counted, by reason and the kernel function that freed it.
    /// `[]` counts every reason.
    pub drop_reasons_ignored: Vec<String>,
    /// Kernel functions (`/proc/kallsyms` names) whose drops count as drops
    /// whatever their reason: a path known to drop without giving a reason
    /// (see `osprey_drops_ignored_total{location}`) is counted by naming it.
    pub drop_locations_counted: Vec<String>,
    /// Print a live summary of the top flows to the terminal every this many
    /// seconds (0: off).
    pub summary_interval_secs: u64,
    /// On SIGTERM, how long the pipeline may take to apply the last drain
    /// interval (and, later, to push it) before the agent exits anyway.
    pub shutdown_grace_secs: u64,
    /// Pod identity from the Kubernetes API: `auto` watches pods when the
    /// agent runs in a cluster (KUBERNETES_SERVICE_HOST) or `kubeconfig` is
    /// set, `on` always (a client that cannot be built is an error), `off`
    /// never (standalone: flows are named by IP, cgroups by path).
    pub kubernetes: KubernetesMode,
    /// kubeconfig file for the API (default: in-cluster service account,
    /// else `$KUBECONFIG` or ~/.kube/config).
    pub kubeconfig: Option<PathBuf>,
    /// Which pods are watched. `cluster`: every pod, so that flows to pods
    /// on other nodes are named too (as Hubble names remote endpoints), at
    /// the cost of the agent's memory per pod (well under 1 KiB) and of one
    /// cluster-wide watch per node on the API server. `node`: only the pods
    /// of `node_name`, for clusters where that watch is too heavy; other
    /// nodes' pods are then named by IP.
    pub pod_scope: PodScope,
    /// This node's name (the DaemonSet sets it from `spec.nodeName`); needed
    /// by `pod_scope = "node"`.
    pub node_name: Option<String>,
    /// The cluster's Service ranges (the API server's
    /// `--service-cluster-ip-range`, which the API does not publish): an
    /// address in them that no listed Service has yet is not
    /// `reserved:world`. Nodes' pod ranges come from their Node objects.
    pub service_cidrs: Vec<crate::pods::Cidr>,
    /// Push the metrics `/metrics` serves, as OTLP, to this endpoint:
    /// `http://HOST:4317` is gRPC, a URL whose path ends in `/v1/metrics`
    /// HTTP/protobuf (the collector, or any OTLP receiver). Unset: off;
    /// scraping works either way.
    pub otlp_endpoint: Option<String>,
    /// How often the OTLP push sends a snapshot, in seconds.
    pub otlp_interval_secs: u64,
    /// Snapshots kept while the endpoint is unreachable; past this (or
    /// `otlp_queue_bytes`) the oldest is dropped and counted in
    /// `osprey_otlp_dropped_batches_total{reason="queue_full"}`. Each is
    /// cumulative, so a dropped one costs resolution, not counts.
    pub otlp_queue_batches: usize,
    /// Bytes of queued snapshots (encoded) before the oldest is dropped.
    pub otlp_queue_bytes: usize,
    /// HTTP/1.x read from the wire: bytes of each segment that starts a
    /// request or response copied to userspace (at most 1024), enough for
    /// the request line, `traceparent` and `Content-Length` of typical
    /// header blocks; longer blocks are counted in
    /// `osprey_http_unparsed_total{reason="headers_truncated"}`. 0: HTTP off.
    pub http_capture_bytes: u32,
    /// Route patterns for `http_route` (`/users/{id}`, `/api/*/items`,
    /// `/static/**`): the first match names a request's route, `_OTHER` if
    /// none does. Empty: no `http_route` label (a path is never a label).
    pub http_routes: Vec<String>,
    /// The exemplar label holding the trace id: `trace_id` (Grafana's
    /// `exemplarTraceIdDestinations` default in kube-prometheus-stack) or `traceID`.
    pub exemplar_trace_label: osprey_model::labels::TraceLabel,
    /// A span per HTTP request, sent as OTLP traces: `traced` (requests
    /// with a valid `traceparent`), `all` (an untraced request starts a new
    /// trace, which its exemplars carry), or `off`. Needs an endpoint.
    pub http_spans: crate::http::spans::HttpSpans,
    /// Where spans go: `http://HOST:4317` (gRPC) or a URL ending in
    /// `/v1/traces` (HTTP). Unset: `otlp_endpoint`'s host (the collector).
    pub otlp_traces_endpoint: Option<String>,
    /// The host's root directory as mounted into the agent's container (the
    /// chart mounts the host's `/` at `/host/root`), as node-exporter's
    /// `--path.rootfs`: `node_filesystem_*` stat each host mount through it
    /// where pid 1's root (`/proc/1/root`) is refused, checking that the
    /// path reaches the mount's own device. Unset: pid 1's root only.
    pub host_root: Option<PathBuf>,
    /// Interfaces left out of `node_network_*`: a regular expression over
    /// the device name, as node-exporter's `--collector.netdev.device-exclude`
    /// (the default is kube-prometheus' setting of it), in RE2 syntax as Go
    /// reads it, without Unicode classes (`regex-lite`). It leaves out pods'
    /// host-side veths, 8 series per pod: a pod's traffic is in its
    /// `container_network_*`. `""` keeps every interface.
    pub node_network_device_exclude: String,
    /// Serve `listen` over TLS with this certificate chain (PEM): `/metrics`,
    /// `/healthz` and the flow and event streams, which reveal every
    /// connection on the node. Needs `tls_key_file`. Unset: plain HTTP.
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Require a client certificate signed by this CA (PEM) on every
    /// endpoint but `/healthz` (which a kubelet probe reaches without one):
    /// a request without one is answered 401 and counted in
    /// `osprey_http_unauthenticated_requests_total`, a certificate from
    /// another CA fails the handshake. Needs `tls_cert_file`.
    pub tls_client_ca_file: Option<PathBuf>,
}

/// Which pods the agent watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PodScope {
    #[default]
    Cluster,
    Node,
}

/// Which ports the per-flow metric families keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FlowPorts {
    #[default]
    Server,
    Both,
}

/// See [`Config::container_sandbox_metrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMetrics {
    #[default]
    Minimal,
    All,
}

/// kube-prometheus' `--collector.netdev.device-exclude` for node-exporter.
pub const DEVICE_EXCLUDE: &str = "^(veth.*|[a-f0-9]{15})$";

impl Config {
    /// `node_network_device_exclude` compiled; `None` when empty.
    pub fn network_device_exclude(&self) -> Result<Option<regex_lite::Regex>, ConfigError> {
        if self.node_network_device_exclude.is_empty() {
            return Ok(None);
        }
        regex_lite::Regex::new(&self.node_network_device_exclude)
            .map(Some)
            .map_err(ConfigError::DeviceExclude)
    }
}

/// See [`Config::container_pod_metrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PodMetrics {
    #[default]
    Totals,
    All,
}

/// When to watch pods on the Kubernetes API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesMode {
    #[default]
    Auto,
    On,
    Off,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9811)),
            probes: PathBuf::new(),
            cgroup: PathBuf::new(),
            flow_map_entries: osprey_abi::DEFAULT_FLOW_MAP_ENTRIES,
            drain_interval_ms: 2_000,
            flow_idle_ttl_secs: 300,
            series_budget: 10_000,
            flow_ports: FlowPorts::Server,
            cgroup_metrics_limit: 1_000,
            container_sandbox_metrics: SandboxMetrics::Minimal,
            container_pod_metrics: PodMetrics::Totals,
            cgroup_open_files: 2_048,
            hubble_source_context: ContextSpec::default(),
            hubble_destination_context: ContextSpec::default(),
            flow_log: None,
            observe_buffer: 4_096,
            bpf_stats: false,
            bpf_map_details: false,
            runqueue_latency: true,
            drop_reasons_ignored: vec![
                "SOCKET_CLOSE".to_owned(),
                "QUEUE_PURGE".to_owned(),
                "NOT_SPECIFIED".to_owned(),
            ],
            drop_locations_counted: Vec::new(),
            summary_interval_secs: 0,
            shutdown_grace_secs: 5,
            kubernetes: KubernetesMode::Auto,
            kubeconfig: None,
            pod_scope: PodScope::Cluster,
            node_name: None,
            service_cidrs: Vec::new(),
            otlp_endpoint: None,
            otlp_interval_secs: 15,
            otlp_queue_batches: 20,
            otlp_queue_bytes: 64 << 20,
            http_capture_bytes: osprey_abi::HTTP_PAYLOAD_MAX as u32,
            http_routes: Vec::new(),
            exemplar_trace_label: osprey_model::labels::TraceLabel::TraceId,
            http_spans: crate::http::spans::HttpSpans::Traced,
            otlp_traces_endpoint: None,
            host_root: None,
            node_network_device_exclude: DEVICE_EXCLUDE.to_owned(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
        }
    }
}

impl Config {
    /// Reads a TOML file; fields it leaves out keep their defaults.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        Self::merge(Some(path), toml::Table::new())
    }

    /// The one way a configuration is made: defaults, then the file's
    /// fields (if any), then `overrides` (flags and environment, as the
    /// table of the fields they set), then validation.
    pub fn merge(
        path: Option<&std::path::Path>,
        overrides: toml::Table,
    ) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                // Parsed whole first, so a mistake names the file's field.
                toml::from_str::<Self>(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_owned(),
                    source,
                })?
            }
            None => toml::Table::new(),
        };
        table.extend(overrides);
        let mut config: Self = table.try_into().map_err(ConfigError::Merge)?;
        config.drop_reasons_ignored = config
            .drop_reasons_ignored
            .iter()
            .map(|r| r.trim())
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.network_device_exclude()?;
        if self.flow_map_entries == 0 {
            return Err(ConfigError::Invalid("flow_map_entries must be at least 1"));
        }
        if self.series_budget == 0 {
            return Err(ConfigError::Invalid("series_budget must be at least 1"));
        }
        if self.pod_scope == PodScope::Node && self.node_name.is_none() {
            return Err(ConfigError::Invalid(
                "pod_scope = \"node\" needs node_name (--node-name, NODE_NAME)",
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some()
            || (self.tls_client_ca_file.is_some() && self.tls_cert_file.is_none())
        {
            return Err(ConfigError::Invalid(
                "tls_cert_file and tls_key_file go together, and tls_client_ca_file needs them",
            ));
        }
        if self.observe_buffer == 0 {
            return Err(ConfigError::Invalid(
                "observe_buffer must be at least 1 (records kept for observe --last and followers)",
            ));
        }
        if self.otlp_interval_secs == 0
            || self.otlp_queue_batches == 0
            || self.otlp_queue_bytes == 0
        {
            return Err(ConfigError::Invalid(
                "otlp_interval_secs, otlp_queue_batches and otlp_queue_bytes must be at least 1",
            ));
        }
        if let Some(url) = &self.otlp_endpoint {
            crate::push::Endpoint::parse(url).map_err(|_| {
                ConfigError::Invalid(
                    "otlp_endpoint: expected http://HOST:PORT (gRPC) or a URL ending in /v1/metrics (HTTP)",
                )
            })?;
        }
        if self.http_capture_bytes != 0
            && !(64..=osprey_abi::HTTP_PAYLOAD_MAX as u32).contains(&self.http_capture_bytes)
        {
            return Err(ConfigError::Invalid(
                "http_capture_bytes must be 0 (off) or between 64 and 1024",
            ));
        }
        if crate::http::route::Routes::new(&self.http_routes).is_err() {
            return Err(ConfigError::Invalid(
                "http_routes: each must start with '/', with '**' only as its last segment",
            ));
        }
        if self.traces_endpoint().is_some_and(|e| e.is_err()) {
            return Err(ConfigError::Invalid(
                "otlp_traces_endpoint: expected http://HOST:PORT (gRPC) or a URL ending in /v1/traces (HTTP)",
            ));
        }
        if self.drain_interval_ms < 10 {
            return Err(ConfigError::Invalid(
                "drain_interval_ms must be at least 10",
            ));
        }
        Ok(())
    }

    /// Where spans go: `otlp_traces_endpoint`, else `otlp_endpoint`
    /// (over HTTP, the same base with `/v1/traces`); None: nowhere.
    pub fn traces_endpoint(
        &self,
    ) -> Option<Result<crate::push::Endpoint, crate::push::EndpointError>> {
        let url = self
            .otlp_traces_endpoint
            .as_ref()
            .or(self.otlp_endpoint.as_ref())?;
        Some(crate::push::Endpoint::parse(url))
    }

    pub fn drain_interval(&self) -> Duration {
        Duration::from_millis(self.drain_interval_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn flow_idle_ttl(&self) -> Duration {
        Duration::from_secs(self.flow_idle_ttl_secs)
    }

    /// Whether to watch pods, given whether the agent runs in a cluster.
    pub fn watch_pods(&self, in_cluster: bool) -> bool {
        match self.kubernetes {
            KubernetesMode::On => true,
            KubernetesMode::Off => false,
            KubernetesMode::Auto => in_cluster || self.kubeconfig.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_matches_defaults_where_silent() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/agent.example.toml");
        let config = Config::from_file(std::path::Path::new(path)).unwrap();
        assert_eq!(config.flow_map_entries, 65_536);
        assert_eq!(config.listen.port(), 9811);
    }

    #[test]
    fn a_bad_device_exclude_is_a_clear_error() {
        let config: Config = toml::from_str("node_network_device_exclude = \"veth(\"").unwrap();
        let err = config.validate().unwrap_err();
        assert!(matches!(err, ConfigError::DeviceExclude(_)), "{err}");
        assert!(
            err.to_string().contains("node_network_device_exclude"),
            "{err}"
        );
        let re = Config::default().network_device_exclude().unwrap().unwrap();
        assert!(re.is_match("veth1a2b3c") && re.is_match("0123456789abcde"));
        assert!(!re.is_match("eth0") && !re.is_match("cni0") && !re.is_match("lo"));
    }

    #[test]
    fn unknown_fields_are_rejected_with_the_field_name() {
        let err = toml::from_str::<Config>("flow_map_entrys = 3").unwrap_err();
        assert!(err.to_string().contains("flow_map_entrys"), "{err}");
    }

    #[test]
    fn context_options_parse_and_bad_ones_name_the_option() {
        let config: Config = toml::from_str("hubble_source_context = \"pod|ip\"").unwrap();
        assert!(config.hubble_source_context.is_enabled());
        let err =
            toml::from_str::<Config>("hubble_destination_context = \"pod|address\"").unwrap_err();
        assert!(err.to_string().contains("address"), "{err}");
    }

    #[test]
    fn node_scope_needs_a_node_name() {
        let config: Config = toml::from_str("pod_scope = \"node\"").unwrap();
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("node_name"), "{err}");
        let config: Config = toml::from_str("pod_scope = \"node\"\nnode_name = \"n1\"").unwrap();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn an_unbounded_observe_buffer_is_rejected() {
        let config: Config = toml::from_str("observe_buffer = 0").unwrap();
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("observe_buffer"), "{err}");
    }

    #[test]
    fn zero_map_entries_is_invalid() {
        let config = Config {
            flow_map_entries: 0,
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }
}
