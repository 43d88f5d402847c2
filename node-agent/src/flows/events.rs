//! Drops (with the kernel's reason) and TCP retransmissions: label sets,
//! metric families, and their aggregation with idle expiry.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use osprey_abi::{DropKey, FlowKey, FlowLoss};
use osprey_model::{BudgetMetrics, Foldable, OVERFLOW, SeriesBudget, SeriesStore};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

use super::{
    context::ContextLabels,
    hubble::HubbleFlowMetrics,
    labels::{PortFold, Protocol},
};

/// `hubble_drop_total` labels, as Hubble's drop handler has them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubbleDropLabels {
    pub context: ContextLabels,
    pub reason: String,
    pub protocol: Protocol,
}
crate::labels_with_context!(HubbleDropLabels { reason => "reason", protocol => "protocol" });

/// `osprey_flow_drops_total`: the flow the dropped packet belonged to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DropLabels {
    pub source_ip: String,
    pub source_port: u16,
    pub destination_ip: String,
    pub destination_port: u16,
    pub protocol: Protocol,
    pub reason: String,
}

/// `osprey_tcp_retransmits_total`: the flow as the retransmitting socket sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RetransmitLabels {
    pub source_ip: String,
    pub source_port: u16,
    pub destination_ip: String,
    pub destination_port: u16,
}

impl Foldable for DropLabels {
    fn overflow(&self) -> Self {
        Self {
            source_ip: OVERFLOW.to_owned(),
            source_port: 0,
            destination_ip: OVERFLOW.to_owned(),
            destination_port: 0,
            protocol: self.protocol,
            reason: self.reason.clone(),
        }
    }

    fn is_overflow(&self) -> bool {
        self.source_ip == OVERFLOW
    }
}

impl Foldable for RetransmitLabels {
    fn overflow(&self) -> Self {
        Self {
            source_ip: OVERFLOW.to_owned(),
            source_port: 0,
            destination_ip: OVERFLOW.to_owned(),
            destination_port: 0,
        }
    }

    fn is_overflow(&self) -> bool {
        self.source_ip == OVERFLOW
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ProbeLabels {
    pub probe: &'static str,
}

/// `osprey_drops_ignored_total`: drops whose reason the config ignores.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Default)]
pub struct EventMetrics {
    pub hubble_drops: Family<HubbleDropLabels, Counter>,
    pub flow_drops: Family<DropLabels, Counter>,
    pub retransmits: Family<RetransmitLabels, Counter>,
    pub lost_events: Family<ProbeLabels, Counter>,
    pub ignored_drops: Family<ReasonLabels, Counter>,
}

impl EventMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "hubble_drop",
            "Packets dropped by the kernel, by drop reason (enum skb_drop_reason) and protocol",
            m.hubble_drops.clone(),
        );
        registry.register(
            "osprey_flow_drops",
            "Packets dropped by the kernel per flow and drop reason",
            m.flow_drops.clone(),
        );
        registry.register(
            "osprey_tcp_retransmits",
            "TCP retransmissions per flow (tcp:tcp_retransmit_skb)",
            m.retransmits.clone(),
        );
        registry.register(
            "osprey_drops_ignored",
            "Packets the kernel freed with a drop reason the config ignores \
             (drop_reasons_ignored): counted here only, not in hubble_drop_total, \
             osprey_flow_drops_total or the flow records",
            m.ignored_drops.clone(),
        );
        registry.register(
            "osprey_probe_lost_events",
            "Events a probe could not record because its kernel map was full",
            m.lost_events.clone(),
        );
        m
    }
}

pub struct EventAggregator {
    metrics: EventMetrics,
    /// Hubble's families (and their context options): drops are flow events.
    hubble: HubbleFlowMetrics,
    reasons: BTreeMap<u32, String>,
    /// Reason codes counted in `osprey_drops_ignored_total` only.
    ignored: BTreeSet<u32>,
    drop_series: SeriesStore<DropLabels, Family<DropLabels, Counter>>,
    retransmit_series: SeriesStore<RetransmitLabels, Family<RetransmitLabels, Counter>>,
    loss_seen: FlowLoss,
    ports: PortFold,
}

impl EventAggregator {
    /// Drops with these reasons (names from the kernel's table, without the
    /// `SKB_DROP_REASON_` prefix, in any case) are counted in
    /// `osprey_drops_ignored_total` only. Returns the names this kernel does
    /// not know.
    pub fn ignoring(mut self, names: &[String]) -> (Self, Vec<String>) {
        let mut unknown = Vec::new();
        for name in names {
            let want = name.trim();
            let want = want.strip_prefix("SKB_DROP_REASON_").unwrap_or(want);
            match self
                .reasons
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(want))
            {
                Some((code, _)) => {
                    self.ignored.insert(*code);
                }
                None => unknown.push(name.clone()),
            }
        }
        (self, unknown)
    }

    /// Folds ephemeral ports in the series' labels (default: none).
    pub fn with_ports(mut self, ports: PortFold) -> Self {
        self.ports = ports;
        self
    }

    pub fn new(
        metrics: EventMetrics,
        reasons: BTreeMap<u32, String>,
        idle_ttl: Duration,
        series_budget: usize,
        budgets: &BudgetMetrics,
        hubble: HubbleFlowMetrics,
    ) -> Self {
        Self {
            drop_series: SeriesStore::new(
                metrics.flow_drops.clone(),
                SeriesBudget::new("osprey_flow_drops", series_budget, budgets),
                idle_ttl,
            ),
            retransmit_series: SeriesStore::new(
                metrics.retransmits.clone(),
                SeriesBudget::new("osprey_tcp_retransmits", series_budget, budgets),
                idle_ttl,
            ),
            metrics,
            hubble,
            reasons,
            ignored: BTreeSet::new(),
            loss_seen: FlowLoss::default(),
            ports: PortFold::default(),
        }
    }

    fn reason_name(&self, reason: u32) -> String {
        self.reasons
            .get(&reason)
            .cloned()
            .unwrap_or_else(|| format!("UNKNOWN_{reason}"))
    }

    /// The batch as flow records: one per flow, one per dropped (flow, reason);
    /// at most the last `limit` flows (drops are always included).
    pub fn records(
        &self,
        batch: &super::drain::FlowBatch,
        time: std::time::SystemTime,
        limit: usize,
    ) -> Vec<crate::observe::record::FlowRecord> {
        use crate::observe::record;
        let skip = batch.flows.len().saturating_sub(limit);
        let flows = batch.flows[skip..].iter().map(|d| {
            let mut record = record::forwarded(d, time);
            // The socket's smoothed RTT, last read in the interval.
            record.rtt_us = (d.stats.srtt_us != 0).then_some(u64::from(d.stats.srtt_us));
            record
        });
        let drops = batch
            .drops
            .iter()
            .filter(|(key, _)| !self.ignored.contains(&key.reason))
            .map(|(key, n)| record::dropped(key, self.reason_name(key.reason), *n, time));
        flows.chain(drops).collect()
    }

    pub fn apply(
        &mut self,
        drops: &[(DropKey, u64)],
        retransmits: &[(FlowKey, u64)],
        loss: &FlowLoss,
        now: Instant,
    ) {
        for (key, count) in drops {
            let reason = self.reason_name(key.reason);
            if self.ignored.contains(&key.reason) {
                self.metrics
                    .ignored_drops
                    .get_or_create(&ReasonLabels { reason })
                    .inc_by(*count);
                continue;
            }
            let flow = self.ports.labels(&key.flow);
            let protocol = flow.protocol;
            let context = self.hubble.context_of(&flow);
            self.metrics
                .hubble_drops
                .get_or_create(&HubbleDropLabels {
                    context: context.clone(),
                    reason: reason.clone(),
                    protocol,
                })
                .inc_by(*count);
            self.hubble.observe_drops(context, protocol, *count);
            let labels = DropLabels {
                source_ip: flow.source_ip,
                source_port: flow.source_port,
                destination_ip: flow.destination_ip,
                destination_port: flow.destination_port,
                protocol,
                reason,
            };
            self.drop_series.record(labels, now, |family, labels, ()| {
                family.get_or_create(labels).inc_by(*count);
            });
        }
        for (key, count) in retransmits {
            let flow = self.ports.labels(key);
            let labels = RetransmitLabels {
                source_ip: flow.source_ip,
                source_port: flow.source_port,
                destination_ip: flow.destination_ip,
                destination_port: flow.destination_port,
            };
            self.retransmit_series
                .record(labels, now, |family, labels, ()| {
                    family.get_or_create(labels).inc_by(*count);
                });
        }
        let seen = self.loss_seen;
        for (probe, now_count, before) in [
            ("drops", loss.drop_map_full, seen.drop_map_full),
            (
                "retransmits",
                loss.retransmit_map_full,
                seen.retransmit_map_full,
            ),
            ("connections", loss.conn_map_full, seen.conn_map_full),
            ("dns", loss.dns_ring_full, seen.dns_ring_full),
        ] {
            self.metrics
                .lost_events
                .get_or_create(&ProbeLabels { probe })
                .inc_by(now_count.saturating_sub(before));
        }
        self.loss_seen = *loss;
        self.drop_series.expire(now);
        self.retransmit_series.expire(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::context::Contexts;
    use crate::test_support::v4_flow;
    use osprey_abi::{PROTO_TCP, PROTO_UDP};

    #[test]
    fn drops_are_named_by_the_kernel_table_and_counted_per_flow_and_per_reason() {
        let mut registry = Registry::default();
        let metrics = EventMetrics::register(&mut registry);
        let reasons = BTreeMap::from([(12, "NETFILTER_DROP".to_owned())]);
        let budgets = BudgetMetrics::register(&mut registry);
        // 10.0.0.2 is a pod of this node's; 10.0.0.1 is not.
        let pods = crate::pods::PodIndex::default();
        pods.upsert(crate::pods::PodMeta {
            namespace: "shop".into(),
            name: "db-0".into(),
            uid: "u1".into(),
            workload: "db".into(),
            workload_kind: "StatefulSet".into(),
            ips: vec!["10.0.0.2".parse().unwrap()],
            containers: Vec::new(),
        });
        let mut agg = EventAggregator::new(
            metrics,
            reasons,
            Duration::from_secs(60),
            100,
            &budgets,
            HubbleFlowMetrics::register(
                &mut registry,
                Contexts {
                    source: "pod|ip".parse().unwrap(),
                    destination: "workload|ip".parse().unwrap(),
                    pods: pods.clone(),
                },
            ),
        );
        let flow = v4_flow([10, 0, 0, 1], 4000, [10, 0, 0, 2], 53, PROTO_UDP);
        let drops = [
            (
                DropKey {
                    flow,
                    reason: 12,
                    _pad: 0,
                },
                7,
            ),
            (
                DropKey {
                    flow,
                    reason: 99,
                    _pad: 0,
                },
                1,
            ),
        ];
        agg.apply(&drops, &[], &FlowLoss::default(), Instant::now());
        let text = crate::test_support::exposition(&registry);
        assert!(
            text.contains("hubble_drop_total{source=\"10.0.0.1\",destination=\"shop/db\",reason=\"NETFILTER_DROP\",protocol=\"UDP\"} 7"),
            "{text}"
        );
        assert!(
            text.contains(
                "hubble_drop_total{source=\"10.0.0.1\",destination=\"shop/db\",reason=\"UNKNOWN_99\",protocol=\"UDP\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("hubble_flows_processed_total{source=\"10.0.0.1\",destination=\"shop/db\",protocol=\"UDP\",type=\"Drop\",subtype=\"\",verdict=\"DROPPED\"} 8"),
            "{text}"
        );
        assert!(text.contains("osprey_flow_drops_total{source_ip=\"10.0.0.1\",source_port=\"4000\",destination_ip=\"10.0.0.2\",destination_port=\"53\",protocol=\"UDP\",reason=\"NETFILTER_DROP\"} 7"), "{text}");
    }
    #[test]
    fn ignored_reasons_are_counted_apart_and_kept_out_of_drops_and_records() {
        let mut registry = Registry::default();
        let metrics = EventMetrics::register(&mut registry);
        let budgets = BudgetMetrics::register(&mut registry);
        let reasons = BTreeMap::from([
            (12, "NETFILTER_DROP".to_owned()),
            (3, "SOCKET_CLOSE".to_owned()),
        ]);
        let hubble = HubbleFlowMetrics::register(
            &mut registry,
            Contexts {
                source: "ip".parse().unwrap(),
                destination: "ip".parse().unwrap(),
                pods: crate::pods::PodIndex::default(),
            },
        );
        let (mut agg, unknown) = EventAggregator::new(
            metrics,
            reasons,
            Duration::from_secs(60),
            100,
            &budgets,
            hubble,
        )
        .ignoring(&["socket_close".to_owned(), "NOT_IN_THIS_KERNEL".to_owned()]);
        assert_eq!(unknown, ["NOT_IN_THIS_KERNEL"]);
        let flow = v4_flow([127, 0, 0, 1], 40000, [127, 0, 0, 1], 9000, PROTO_TCP);
        let drop = |reason| DropKey {
            flow,
            reason,
            _pad: 0,
        };
        let drops = vec![(drop(3), 4), (drop(12), 2)];
        agg.apply(&drops, &[], &FlowLoss::default(), Instant::now());
        let text = crate::test_support::exposition(&registry);
        assert!(
            text.contains("osprey_drops_ignored_total{reason=\"SOCKET_CLOSE\"} 4"),
            "{text}"
        );
        assert!(!text.contains("reason=\"SOCKET_CLOSE\",protocol"), "{text}");
        assert!(
            text.contains("hubble_drop_total{source=\"127.0.0.1\",destination=\"127.0.0.1\",reason=\"NETFILTER_DROP\",protocol=\"TCP\"} 2"),
            "{text}"
        );
        assert!(text.contains("verdict=\"DROPPED\"} 2"), "{text}");
        let batch = super::super::drain::FlowBatch {
            drops,
            ..Default::default()
        };
        let records = agg.records(&batch, std::time::SystemTime::now(), 10);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].drop_reason.as_deref(), Some("NETFILTER_DROP"));
    }
}
