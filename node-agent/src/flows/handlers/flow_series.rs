//! `osprey_flow_bytes_total` / `osprey_flow_packets_total`: drained flow
//! deltas folded into cumulative series (idle ones expire), the flow loss
//! counters kept in step with the kernel's, and the live summary's top flows.

use std::time::{Duration, Instant};

use osprey_abi::FlowLoss;
use osprey_model::exemplar::{self, LastTrace, TracedCounter};
use osprey_model::labels::{FlowLabels, LossLabels, LossReason};
use osprey_model::{SeriesBudget, SeriesStore};
use prometheus_client::metrics::{counter::Counter, family::Family};

use super::FlowHandler;
use crate::flows::{enrich::EnrichedBatch, labels::PortFold, metrics::FlowMetrics};

/// Per-series totals, for the live summary.
#[derive(Debug, Clone, Default)]
struct Totals {
    bytes: u64,
    packets: u64,
    last_interval_bytes: u64,
    /// The bytes series' exemplar.
    trace: LastTrace,
}

/// The two families a flow's label set indexes: bytes and packets.
type FlowFamilies = (
    Family<FlowLabels, TracedCounter>,
    Family<FlowLabels, Counter>,
);

/// One line of the live summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopFlow {
    pub labels: FlowLabels,
    pub bytes: u64,
    pub packets: u64,
    /// Bytes in the most recent drain interval.
    pub recent_bytes: u64,
}

/// What the live summary shows after each drain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Busiest flows of the last drain interval first.
    pub top: Vec<TopFlow>,
    pub series: usize,
    pub lost_packets: u64,
}

pub struct FlowSeries {
    metrics: FlowMetrics,
    series: SeriesStore<FlowLabels, FlowFamilies, Totals>,
    loss_seen: FlowLoss,
    ports: PortFold,
}

impl FlowSeries {
    /// Folds ephemeral ports in the series' labels (default: none).
    pub fn with_ports(mut self, ports: PortFold) -> Self {
        self.ports = ports;
        self
    }

    pub fn new(metrics: FlowMetrics, idle_ttl: Duration, budget: SeriesBudget) -> Self {
        let series = SeriesStore::new(
            (metrics.bytes.clone(), metrics.packets.clone()),
            budget,
            idle_ttl,
        )
        .counting_expired(metrics.expired_series.clone());
        Self {
            metrics,
            series,
            loss_seen: FlowLoss::default(),
            ports: PortFold::default(),
        }
    }

    pub fn apply(&mut self, batch: &EnrichedBatch, now: Instant) {
        for totals in self.series.states_mut() {
            totals.last_interval_bytes = 0;
        }
        for (flow, delta) in &batch.flows {
            let labels = self.ports.labels(flow);
            let (bytes, packets) = (delta.stats.bytes, delta.stats.packets);
            self.series
                .record(labels, now, |(b, p): &(TracedCounter, Counter), totals| {
                    exemplar::inc(b, bytes, flow.trace.as_ref(), &mut totals.trace);
                    p.inc_by(packets);
                    totals.bytes += bytes;
                    totals.packets += packets;
                    totals.last_interval_bytes += bytes;
                });
        }
        self.apply_loss(&batch.loss);
        self.metrics.drain_errors.inc_by(batch.read_errors);
        self.metrics.drains.inc();
        self.series.expire(now);
        self.metrics.active_series.set(self.series.len() as i64);
    }

    /// The kernel's loss counters are cumulative; export their increase.
    fn apply_loss(&mut self, loss: &FlowLoss) {
        let seen = self.loss_seen;
        let inc = |family: &prometheus_client::metrics::family::Family<LossLabels, _>,
                   reason,
                   now: u64,
                   before: u64| {
            let counter: &prometheus_client::metrics::counter::Counter =
                &family.get_or_create(&LossLabels { reason });
            counter.inc_by(now.saturating_sub(before));
        };
        inc(
            &self.metrics.lost_packets,
            LossReason::MapFull,
            loss.map_full_packets,
            seen.map_full_packets,
        );
        inc(
            &self.metrics.lost_bytes,
            LossReason::MapFull,
            loss.map_full_bytes,
            seen.map_full_bytes,
        );
        inc(
            &self.metrics.lost_packets,
            LossReason::Unparsed,
            loss.unparsed_packets,
            seen.unparsed_packets,
        );
        self.loss_seen = *loss;
    }

    pub fn summary(&self, n: usize) -> Summary {
        Summary {
            top: self.top(n),
            series: self.series.len(),
            lost_packets: self.loss_seen.map_full_packets + self.loss_seen.unparsed_packets,
        }
    }

    /// The `n` busiest series: most bytes in the last interval, then most in
    /// total. Only the winners' labels are copied.
    pub fn top(&self, n: usize) -> Vec<TopFlow> {
        let order = |a: &(&FlowLabels, &Totals), b: &(&FlowLabels, &Totals)| {
            (b.1.last_interval_bytes, b.1.bytes)
                .cmp(&(a.1.last_interval_bytes, a.1.bytes))
                .then_with(|| a.0.cmp(b.0))
        };
        let mut all: Vec<(&FlowLabels, &Totals)> = self.series.iter().collect();
        if all.len() > n && n > 0 {
            all.select_nth_unstable_by(n - 1, order);
        }
        all.truncate(n);
        all.sort_by(order);
        all.into_iter()
            .map(|(labels, s)| TopFlow {
                labels: labels.clone(),
                bytes: s.bytes,
                packets: s.packets,
                recent_bytes: s.last_interval_bytes,
            })
            .collect()
    }
}

impl FlowHandler for FlowSeries {
    fn handle(&mut self, batch: &EnrichedBatch, now: Instant) {
        self.apply(batch, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::{
        drain::{FlowBatch, FlowDelta},
        enrich::Enricher,
    };
    use osprey_abi::{DIR_EGRESS, FAMILY_V4, FlowKey, FlowStats, PROTO_UDP};
    use prometheus_client::{encoding::text::encode, registry::Registry};

    fn delta(port: u16, bytes: u64, packets: u64) -> FlowDelta {
        let key = FlowKey {
            src_addr: osprey_abi::addr_words(&[10, 1, 0, 1]),
            dst_addr: osprey_abi::addr_words(&[10, 1, 0, 2]),
            cgroup_id: 1,
            src_port: port,
            dst_port: 53,
            family: FAMILY_V4,
            protocol: PROTO_UDP,
            direction: DIR_EGRESS,
            _pad: 0,
        };
        FlowDelta {
            key,
            stats: FlowStats {
                bytes,
                packets,
                ..FlowStats::default()
            },
            ..FlowDelta::default()
        }
    }

    fn exposition(registry: &Registry) -> String {
        let mut out = String::new();
        encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn deltas_accumulate_losses_export_increase_and_idle_series_expire() {
        let mut registry = Registry::default();
        let metrics = FlowMetrics::register(&mut registry);
        let budgets = osprey_model::BudgetMetrics::register(&mut registry);
        let budget = SeriesBudget::new("osprey_flow_bytes", 100, &budgets);
        let mut agg = FlowSeries::new(metrics, Duration::from_secs(10), budget);
        let enrich = |b: &FlowBatch| {
            Enricher::default().batch(FlowBatch {
                flows: b.flows.clone(),
                loss: b.loss,
                read_errors: b.read_errors,
                ..FlowBatch::default()
            })
        };
        let t0 = Instant::now();
        let mut batch = FlowBatch {
            flows: vec![delta(1000, 128, 2), delta(2000, 64, 1)],
            loss: FlowLoss {
                map_full_packets: 3,
                map_full_bytes: 300,
                unparsed_packets: 0,
                ..FlowLoss::default()
            },
            read_errors: 0,
            ..FlowBatch::default()
        };
        agg.apply(&enrich(&batch), t0);
        batch.flows = vec![delta(1000, 72, 1)];
        batch.loss.map_full_packets = 5;
        agg.apply(&enrich(&batch), t0 + Duration::from_secs(5));

        let text = exposition(&registry);
        assert!(text.contains(
            "osprey_flow_bytes_total{source_ip=\"10.1.0.1\",source_port=\"1000\",destination_ip=\"10.1.0.2\",destination_port=\"53\",protocol=\"UDP\",direction=\"egress\"} 200"
        ), "{text}");
        assert!(
            text.contains("osprey_flow_lost_packets_total{reason=\"map_full\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("osprey_flow_lost_bytes_total{reason=\"map_full\"} 300"),
            "{text}"
        );
        assert_eq!(agg.top(1)[0].bytes, 200);
        assert_eq!(agg.top(1)[0].recent_bytes, 72);

        // Port 2000 was last active at t0: gone after the TTL; port 1000 stays.
        batch.flows.clear();
        agg.apply(&enrich(&batch), t0 + Duration::from_secs(12));
        let text = exposition(&registry);
        assert!(!text.contains("source_port=\"2000\""), "{text}");
        assert!(text.contains("source_port=\"1000\""), "{text}");
        assert!(
            text.contains("osprey_flow_series_expired_total 1"),
            "{text}"
        );
        assert!(text.contains("osprey_flow_series 1"), "{text}");
    }
}
