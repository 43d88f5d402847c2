//! Stage 3 of the flow pipeline: one handler per metric family, as Hubble's
//! metrics handlers are, each over enriched batches. A new family is a new
//! file here (and its line in the catalogue), not an edit of a big switch.

pub mod connections;
pub mod drops;
pub mod flow_series;
pub mod flows_processed;
pub mod icmp;
pub mod probe_loss;
pub mod retransmits;
pub mod rtt;
pub mod tcp_flags;

use std::{
    hash::Hash,
    time::{Duration, Instant},
};

use osprey_model::{BudgetMetrics, Foldable, SeriesBudget, SeriesStore, catalogue::MetricDesc};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::enrich::EnrichedBatch;

/// What bounds every family whose series grow with traffic and identities:
/// each family's series budget (past it new series fold into `overflow`,
/// counted), and the idle TTL after which a series leaves.
#[derive(Clone)]
pub struct Limits {
    pub idle_ttl: Duration,
    pub series_budget: usize,
    pub budgets: BudgetMetrics,
}

impl Limits {
    /// A store over `families` (already registered) whose series count
    /// against the budget of `metric`.
    pub fn store<L, F, S>(&self, families: F, metric: &'static str) -> SeriesStore<L, F, S>
    where
        L: Foldable + Clone + Eq + Hash,
        F: osprey_model::Families<L>,
        S: Default,
    {
        SeriesStore::new(
            families,
            SeriesBudget::new(metric, self.series_budget, &self.budgets),
            self.idle_ttl,
        )
    }
}

/// A counter family registered as `desc`, its series kept within `limits`.
pub fn counter_store<L>(
    registry: &mut Registry,
    desc: &MetricDesc,
    limits: &Limits,
) -> SeriesStore<L, Family<L, Counter>>
where
    L: Foldable + EncodeLabelSet + Clone + Eq + Hash + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Counter>::default();
    desc.register(registry, family.clone());
    limits.store(family, desc.name)
}

/// A metric family fed from the flow pipeline.
pub trait FlowHandler: Send {
    /// Counts `batch` (one drain interval) and expires what went idle by `now`.
    fn handle(&mut self, batch: &EnrichedBatch, now: Instant);
}

/// The handlers of the configured families, run in order on every batch.
#[derive(Default)]
pub struct Handlers(Vec<Box<dyn FlowHandler>>);

impl Handlers {
    pub fn with(mut self, handler: impl FlowHandler + 'static) -> Self {
        self.0.push(Box::new(handler));
        self
    }

    pub fn handle(&mut self, batch: &EnrichedBatch, now: Instant) {
        for handler in &mut self.0 {
            handler.handle(batch, now);
        }
    }
}

/// `IPv4` / `IPv6`, as Hubble's `family` label has it.
pub fn family_name(v4: bool) -> &'static str {
    if v4 { "IPv4" } else { "IPv6" }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use osprey_abi::{
        DIR_EGRESS, FAMILY_V4, FAMILY_V6, FlowKey, FlowStats, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
        addr_words,
    };
    use osprey_model::BudgetMetrics;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::{
        flows::{
            context::Contexts,
            drain::{FlowBatch, FlowDelta},
            enrich::Enricher,
            labels::PortFold,
        },
        pods::PodIndex,
        test_support::{db_pod, drops_of, exposition, v4_flow},
    };

    /// The Hubble-named handlers and the drop handler, as the agent wires them.
    fn handlers(registry: &mut Registry, contexts: Contexts) -> Handlers {
        let budgets = BudgetMetrics::register(registry);
        let limits = Limits {
            idle_ttl: Duration::from_secs(60),
            series_budget: 100,
            budgets: budgets.clone(),
        };
        Handlers::default()
            .with(flows_processed::FlowsProcessed::register(
                registry,
                contexts.clone(),
                &limits,
            ))
            .with(tcp_flags::TcpFlags::register(
                registry,
                contexts.clone(),
                &limits,
            ))
            .with(icmp::Icmp::register(registry, contexts.clone(), &limits))
            .with(drops::Drops::register(
                registry,
                contexts,
                PortFold::default(),
                &limits,
            ))
    }

    fn spec(s: &str) -> crate::flows::context::ContextSpec {
        s.parse().unwrap()
    }

    #[test]
    fn counts_flags_icmp_types_and_processed_flows_under_hubble_names() {
        let mut registry = Registry::default();
        let mut h = handlers(&mut registry, Contexts::default());
        let key = |protocol, family, src_port| FlowKey {
            src_addr: addr_words(&[10, 0, 0, 1]),
            dst_addr: addr_words(&[10, 0, 0, 2]),
            cgroup_id: 0,
            src_port,
            dst_port: 0,
            family,
            protocol,
            direction: DIR_EGRESS,
            _pad: 0,
        };
        let tcp = FlowDelta {
            key: key(PROTO_TCP, FAMILY_V4, 80),
            stats: FlowStats {
                packets: 10,
                syn: 1,
                fin: 1,
                ..FlowStats::default()
            },
            ..FlowDelta::default()
        };
        let ping6 = FlowDelta {
            key: key(PROTO_ICMPV6, FAMILY_V6, 128),
            stats: FlowStats {
                packets: 3,
                ..FlowStats::default()
            },
            ..FlowDelta::default()
        };
        let batch = Enricher::default().batch(FlowBatch {
            flows: vec![tcp, ping6],
            ..FlowBatch::default()
        });
        h.handle(&batch, Instant::now());
        let text = exposition(&registry);
        for line in [
            "hubble_tcp_flags_total{flag=\"SYN\",family=\"IPv4\"} 1",
            "hubble_tcp_flags_total{flag=\"FIN\",family=\"IPv4\"} 1",
            "hubble_icmp_total{family=\"IPv6\",type=\"EchoRequest\"} 3",
            "hubble_flows_processed_total{protocol=\"TCP\",type=\"Trace\",subtype=\"from-endpoint\",verdict=\"FORWARDED\"} 10",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
        assert!(!text.contains("flag=\"RST\""));
    }

    /// With context labels the Hubble families grow with the addresses a
    /// node talks to: past the budget the ends fold into `overflow`
    /// (counted), and idle series leave after the TTL.
    #[test]
    fn hubble_series_fold_past_the_budget_and_expire_when_idle() {
        let mut registry = Registry::default();
        let limits = Limits {
            idle_ttl: Duration::from_secs(60),
            series_budget: 2,
            budgets: BudgetMetrics::register(&mut registry),
        };
        let contexts = Contexts {
            source: spec("ip"),
            destination: spec("ip"),
        };
        let mut h = flows_processed::FlowsProcessed::register(&mut registry, contexts, &limits);
        let flows = (1..=3u8)
            .map(|i| FlowDelta {
                key: FlowKey {
                    direction: DIR_EGRESS,
                    ..v4_flow([10, 0, 0, i], 4000, [10, 0, 9, 9], 53, PROTO_UDP)
                },
                stats: FlowStats {
                    packets: u64::from(i),
                    ..FlowStats::default()
                },
                ..FlowDelta::default()
            })
            .collect();
        let t0 = Instant::now();
        h.handle(
            &Enricher::default().batch(FlowBatch {
                flows,
                ..FlowBatch::default()
            }),
            t0,
        );
        let text = exposition(&registry);
        let series = |from: &str, to: &str| {
            format!(
                "hubble_flows_processed_total{{source=\"{from}\",destination=\"{to}\",protocol=\"UDP\",type=\"Trace\",subtype=\"from-endpoint\",verdict=\"FORWARDED\"}}"
            )
        };
        // Both configured ends fold.
        for (from, to, n) in [
            ("10.0.0.1", "10.0.9.9", 1),
            ("10.0.0.2", "10.0.9.9", 2),
            ("overflow", "overflow", 3),
        ] {
            let line = format!("{} {n}", series(from, to));
            assert!(text.contains(&line), "{line}:\n{text}");
        }
        assert!(
            text.contains("osprey_metric_series_folded_total{metric=\"hubble_flows_processed\"} 1"),
            "{text}"
        );
        h.handle(&EnrichedBatch::default(), t0 + Duration::from_secs(60));
        assert!(
            !exposition(&registry).contains("source=\""),
            "idle series left"
        );
    }

    #[test]
    fn drops_are_named_by_the_kernel_table_and_counted_per_flow_and_per_reason() {
        let mut registry = Registry::default();
        // 10.0.0.2 is a pod of this node's; 10.0.0.1 is not.
        let pods = db_pod();
        let contexts = Contexts {
            source: spec("pod|ip"),
            destination: spec("workload|ip"),
        };
        let mut h = handlers(&mut registry, contexts);
        let enricher = Enricher::new(pods, BTreeMap::from([(12, "NETFILTER_DROP".to_owned())]));
        let flow = v4_flow([10, 0, 0, 1], 4000, [10, 0, 0, 2], 53, PROTO_UDP);
        let batch = enricher.batch(drops_of(flow, &[(12, 7), (99, 1)]));
        h.handle(&batch, Instant::now());
        let text = exposition(&registry);
        for line in [
            "hubble_drop_total{source=\"10.0.0.1\",destination=\"shop/db\",reason=\"NETFILTER_DROP\",protocol=\"UDP\"} 7",
            "hubble_drop_total{source=\"10.0.0.1\",destination=\"shop/db\",reason=\"UNKNOWN_99\",protocol=\"UDP\"} 1",
            "hubble_flows_processed_total{source=\"10.0.0.1\",destination=\"shop/db\",protocol=\"UDP\",type=\"Drop\",subtype=\"\",verdict=\"DROPPED\"} 8",
            "osprey_flow_drops_total{source_ip=\"10.0.0.1\",source_port=\"4000\",destination_ip=\"10.0.0.2\",destination_port=\"53\",protocol=\"UDP\",reason=\"NETFILTER_DROP\"} 7",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
    }

    #[test]
    fn ignored_reasons_are_counted_apart_and_kept_out_of_drops() {
        let mut registry = Registry::default();
        let contexts = Contexts {
            source: spec("ip"),
            destination: spec("ip"),
        };
        let mut h = handlers(&mut registry, contexts);
        let (enricher, unknown) = Enricher::new(
            PodIndex::default(),
            BTreeMap::from([
                (12, "NETFILTER_DROP".to_owned()),
                (3, "SOCKET_CLOSE".to_owned()),
            ]),
        )
        .ignoring(&["socket_close".to_owned(), "NOT_IN_THIS_KERNEL".to_owned()]);
        assert_eq!(unknown, ["NOT_IN_THIS_KERNEL"]);
        let flow = v4_flow([127, 0, 0, 1], 40000, [127, 0, 0, 1], 9000, PROTO_TCP);
        let batch = enricher.batch(drops_of(flow, &[(3, 4), (12, 2)]));
        h.handle(&batch, Instant::now());
        let text = exposition(&registry);
        assert!(
            text.contains(
                "osprey_drops_ignored_total{reason=\"SOCKET_CLOSE\",location=\"unknown\"} 4"
            ),
            "{text}"
        );
        assert!(!text.contains("reason=\"SOCKET_CLOSE\",protocol"), "{text}");
        assert!(
            text.contains("hubble_drop_total{source=\"127.0.0.1\",destination=\"127.0.0.1\",reason=\"NETFILTER_DROP\",protocol=\"TCP\"} 2"),
            "{text}"
        );
        assert!(text.contains("verdict=\"DROPPED\"} 2"), "{text}");
    }
}
