//! The metric catalogue: the name, help and unit of every family the agent
//! exposes, as dashboards query them and `tests/golden/catalogue.txt` pins
//! them. The agent registers and encodes its families through these
//! descriptions, so `/metrics` and the OTLP rendering of the same registry
//! carry exactly these names; their label sets are in
//! [`labels`](crate::labels).
//!
//! - [`FLOW_FAMILIES`]: the flow pipeline, Hubble's flow families and
//!   Osprey's per-flow ones.
//! - [`DNS_FAMILIES`] and [`HTTP_FAMILIES`]: the DNS and HTTP trackers.
//! - [`NODE_FAMILIES`]: node-exporter's `node_*` families, under its names
//!   and help; those whose names node-exporter builds from what the kernel
//!   lists (`node_memory_{field}_bytes`, `node_netstat_{proto}_{key}`,
//!   `node_sockstat_{proto}_{key}`) are patterns, [`NODE_PATTERNS`].
//! - [`CONTAINER_FAMILIES`]: cAdvisor's per-cgroup `container_*` families,
//!   under its names and help, the run-queue latency histogram, and the
//!   cgroup collector's own counters.
//! - [`AGENT_FAMILIES`]: the agent's metrics about itself (kernel programs,
//!   series budgets, record streams, the flow log, the pod watch, the OTLP
//!   push).
//!
//! [`CATALOGUE`] joins the lists and [`PATTERNS`] the patterns;
//! [`describe`] and [`unit_of`] find an exposed name in either.

use prometheus_client::{
    encoding::{DescriptorEncoder, MetricEncoder},
    metrics::MetricType,
    registry::{Metric, Registry},
};

mod agent;
mod container;
mod dns;
mod flow;
mod http;
mod node;

pub use agent::*;
pub use container::*;
pub use dns::*;
pub use flow::*;
pub use http::*;
pub use node::*;

/// A metric family's name (without `_total`: the encoder adds it to
/// counters), help and unit.
///
/// `unit` is the family's UCUM unit as OTLP carries it (`Metric.unit`), in
/// OpenTelemetry's conventions: `By` for bytes, `s` / `ns` for time, and a
/// `{thing}` annotation for a count of things (`{packet}`, `{query}`); `None`
/// where nothing is measured (an info family, a 0/1 state). It is for OTLP
/// only: the OpenMetrics exposition does not show it (families register
/// without a unit, so names and metadata stay as dashboards know them).
///
/// `help` is exposed as written when a collector encodes the family
/// ([`encode_descriptor`](Self::encode_descriptor): the families read at
/// scrape time — node-exporter's and cAdvisor's, whose help keeps its own
/// punctuation, and `hubble_lost_events`), and with a period appended when
/// it is registered
/// ([`register`](Self::register): prometheus-client adds it). Moving a family
/// from one to the other changes its exposed help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDesc {
    pub name: &'static str,
    pub help: &'static str,
    pub unit: Option<&'static str>,
}

impl MetricDesc {
    /// Registers `metric` as this family.
    pub fn register(&self, registry: &mut Registry, metric: impl Metric) {
        registry.register(self.name, self.help, metric);
    }

    /// Starts this family in a collector's encoding (a family read at
    /// scrape time rather than registered), as `metric_type`.
    pub fn encode_descriptor<'e>(
        &self,
        encoder: &'e mut DescriptorEncoder,
        metric_type: MetricType,
    ) -> Result<MetricEncoder<'e>, std::fmt::Error> {
        encoder.encode_descriptor(self.name, self.help, None, metric_type)
    }
}

/// Families whose names are generated from what the kernel lists (a
/// meminfo field, an SNMP counter): one pattern describes every name it
/// generates, and gives them one unit.
///
/// A name is `prefix`, then its parts joined by `_`, then `suffix`
/// (`node_netstat_` + `Tcp_ActiveOpens` + `""`); its help is `help` with
/// each `{}` replaced by the next part (`Statistic {}{}.` →
/// `Statistic TcpActiveOpens.`), so a name takes as many parts as the help
/// has `{}`. `unit` is as [`MetricDesc::unit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricPattern {
    pub prefix: &'static str,
    pub suffix: &'static str,
    pub help: &'static str,
    pub unit: Option<&'static str>,
}

impl MetricPattern {
    /// How many parts a name takes.
    pub fn parts(&self) -> usize {
        self.help.matches("{}").count()
    }

    /// The family name of `parts`.
    pub fn name(&self, parts: &[&str]) -> String {
        debug_assert_eq!(parts.len(), self.parts(), "{}", self.prefix);
        let mut name = String::with_capacity(
            self.prefix.len()
                + self.suffix.len()
                + parts.iter().map(|p| p.len() + 1).sum::<usize>(),
        );
        name.push_str(self.prefix);
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                name.push('_');
            }
            name.push_str(part);
        }
        name.push_str(self.suffix);
        name
    }

    /// The help of the family of `parts`.
    pub fn help(&self, parts: &[&str]) -> String {
        debug_assert_eq!(parts.len(), self.parts(), "{}", self.prefix);
        let mut pieces = self.help.split("{}");
        let mut help = pieces.next().unwrap_or_default().to_owned();
        for (part, piece) in parts.iter().zip(pieces) {
            help.push_str(part);
            help.push_str(piece);
        }
        help
    }

    /// Whether this pattern generates `name`: the prefix, as many non-empty
    /// `_`-separated parts as it takes (a part may hold `_` itself), the
    /// suffix.
    pub fn generates(&self, name: &str) -> bool {
        let Some(middle) = name
            .strip_prefix(self.prefix)
            .and_then(|n| n.strip_suffix(self.suffix))
        else {
            return false;
        };
        !middle.starts_with('_')
            && !middle.ends_with('_')
            && middle.split('_').filter(|p| !p.is_empty()).count() >= self.parts().max(1)
    }
}

/// Every list of the catalogue.
pub const CATALOGUE: &[&[MetricDesc]] = &[
    FLOW_FAMILIES,
    DNS_FAMILIES,
    HTTP_FAMILIES,
    NODE_FAMILIES,
    CONTAINER_FAMILIES,
    AGENT_FAMILIES,
];

/// Every list of generated families.
pub const PATTERNS: &[&[MetricPattern]] = &[NODE_PATTERNS];

/// What the catalogue says of an exposed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Description {
    /// The name is this family's.
    Family(&'static MetricDesc),
    /// The name is generated through this pattern.
    Generated(&'static MetricPattern),
}

impl Description {
    pub fn unit(&self) -> Option<&'static str> {
        match self {
            Self::Family(d) => d.unit,
            Self::Generated(p) => p.unit,
        }
    }
}

/// The catalogue's description of the family named `name` (its bare name, or
/// the name as exposed: a counter's carries `_total`, as the OTLP
/// rendering's names do): the family of that name, else the pattern that
/// generates it (the most specific, when several do: the longest prefix and
/// suffix).
pub fn describe(name: &str) -> Option<Description> {
    let bare = name.strip_suffix("_total");
    let names = || std::iter::once(name).chain(bare);
    let family = |n: &str| {
        CATALOGUE
            .iter()
            .flat_map(|l| l.iter())
            .find(|d| d.name == n)
    };
    let pattern = |n: &str| {
        PATTERNS
            .iter()
            .flat_map(|l| l.iter())
            .filter(|p| p.generates(n))
            .max_by_key(|p| p.prefix.len() + p.suffix.len())
    };
    names()
        .find_map(family)
        .map(Description::Family)
        .or_else(|| names().find_map(pattern).map(Description::Generated))
}

/// The UCUM unit of the family named `name` (bare or exposed), if the
/// catalogue has the family (or its pattern) and gives it a unit.
pub fn unit_of(name: &str) -> Option<&'static str> {
    describe(name)?.unit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn families() -> impl Iterator<Item = &'static MetricDesc> {
        CATALOGUE.iter().flat_map(|l| l.iter())
    }

    fn patterns() -> impl Iterator<Item = &'static MetricPattern> {
        PATTERNS.iter().flat_map(|l| l.iter())
    }

    #[test]
    fn names_are_unique_and_bare() {
        let all: Vec<_> = families().collect();
        let mut names: Vec<_> = all.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(names.iter().all(|n| !n.ends_with("_total")));
        // A pattern generates no constant family's name: a name is
        // described one way.
        for d in families() {
            assert!(!patterns().any(|p| p.generates(d.name)), "{}", d.name);
        }
    }

    #[test]
    fn units_are_found_by_bare_and_exposed_names() {
        assert_eq!(unit_of("osprey_flow_bytes"), Some("By"));
        assert_eq!(unit_of("osprey_flow_bytes_total"), Some("By"));
        assert_eq!(unit_of("osprey_tcp_rtt_seconds"), Some("s"));
        assert_eq!(unit_of("hubble_dns_queries_total"), Some("{query}"));
        assert_eq!(unit_of("osprey_dns_latency_seconds"), Some("s"));
        assert_eq!(
            unit_of("osprey_bpf_program_run_time_nanoseconds_total"),
            Some("ns")
        );
        assert_eq!(unit_of("node_cpu_seconds_total"), Some("s"));
        assert_eq!(unit_of("container_memory_rss"), None);
        assert_eq!(unit_of("osprey_otlp_queue_bytes"), Some("By"));
        // In the catalogue without a unit; not in the catalogue.
        assert_eq!(unit_of("osprey_bpf_program_info"), None);
        assert_eq!(
            describe("osprey_bpf_program_info"),
            Some(Description::Family(&OSPREY_BPF_PROGRAM_INFO))
        );
        assert_eq!(unit_of("requests_total"), None);
        assert_eq!(describe("requests_total"), None);
        assert_eq!(unit_of("_total"), None);
    }

    /// A generated name is found through its pattern: the most specific
    /// one, when several generate it.
    #[test]
    fn generated_names_are_found_through_their_patterns() {
        assert_eq!(unit_of("node_memory_MemTotal_bytes"), Some("By"));
        assert_eq!(
            describe("node_memory_Active_anon_bytes"),
            Some(Description::Generated(&NODE_MEMORY))
        );
        assert_eq!(
            describe("node_netstat_Tcp_ActiveOpens"),
            Some(Description::Generated(&NODE_NETSTAT))
        );
        assert_eq!(unit_of("node_netstat_Tcp_ActiveOpens"), None);
        assert_eq!(
            describe("node_sockstat_TCP_inuse"),
            Some(Description::Generated(&NODE_SOCKSTAT))
        );
        assert_eq!(
            describe("node_sockstat_TCP_mem_bytes"),
            Some(Description::Generated(&NODE_SOCKSTAT_MEM_BYTES))
        );
        assert_eq!(unit_of("node_sockstat_TCP_mem_bytes"), Some("By"));
        for name in [
            "node_memory__bytes",
            "node_memory_bytes",
            "node_netstat_Tcp",
            "node_netstat_Tcp_",
            "node_sockstat_",
        ] {
            assert_eq!(describe(name), None, "{name}");
        }
    }

    #[test]
    fn patterns_build_node_exporter_names_and_help() {
        assert_eq!(NODE_NETSTAT.parts(), 2);
        assert_eq!(
            NODE_NETSTAT.name(&["Tcp", "ActiveOpens"]),
            "node_netstat_Tcp_ActiveOpens"
        );
        assert_eq!(
            NODE_NETSTAT.help(&["Tcp", "ActiveOpens"]),
            "Statistic TcpActiveOpens."
        );
        assert_eq!(
            NODE_MEMORY.name(&["MemTotal"]),
            "node_memory_MemTotal_bytes"
        );
        assert_eq!(
            NODE_MEMORY.help(&["MemTotal"]),
            "Memory information field MemTotal_bytes."
        );
        assert_eq!(
            NODE_SOCKSTAT.help(&["sockets", "used"]),
            "Number of sockets_used sockets in state."
        );
        assert_eq!(
            NODE_SOCKSTAT_MEM_BYTES.name(&["TCP"]),
            "node_sockstat_TCP_mem_bytes"
        );
        assert_eq!(
            NODE_SOCKSTAT_MEM_BYTES.help(&["TCP"]),
            "Number of TCP_mem_bytes sockets in state."
        );
        for p in patterns() {
            let parts = vec!["A_b"; p.parts()];
            let name = p.name(&parts);
            assert_eq!(describe(&name), Some(Description::Generated(p)), "{name}");
        }
    }

    /// A seconds family's unit is seconds, a bytes family's bytes: the unit
    /// agrees with the suffix dashboards read, for generated names too.
    #[test]
    fn units_agree_with_name_suffixes() {
        let named = families().map(|d| (d.name, d.unit));
        let generated = patterns().map(|p| (p.suffix, p.unit));
        for (name, unit) in named.chain(generated) {
            let want = if name.ends_with("_seconds") {
                Some("s")
            } else if name.ends_with("_nanoseconds") {
                Some("ns")
            } else if name.ends_with("_bytes") {
                Some("By")
            } else {
                // A unit without its suffix would make Prometheus' OTLP
                // translation add the suffix: the pushed name would differ
                // from the scraped one.
                assert!(
                    !matches!(unit, Some("s" | "ns" | "By")),
                    "{name}: unit {unit:?} without its name suffix"
                );
                continue;
            };
            assert_eq!(unit, want, "{name}");
        }
    }
}
