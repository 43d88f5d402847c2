//! `osprey_otlp_*`: what the push exporter sent, retried and dropped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Default)]
pub struct PushMetrics {
    batches: Counter,
    points: Counter,
    retries: Family<ReasonLabels, Counter>,
    dropped_batches: Family<ReasonLabels, Counter>,
    dropped_points: Family<ReasonLabels, Counter>,
    queue_batches: Gauge,
    queue_bytes: Gauge,
}

impl PushMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "osprey_otlp_sent_batches",
            "OTLP export requests the endpoint accepted",
            m.batches.clone(),
        );
        registry.register(
            "osprey_otlp_sent_data_points",
            "Data points the OTLP endpoint accepted",
            m.points.clone(),
        );
        registry.register(
            "osprey_otlp_retries",
            "OTLP export attempts retried, by reason (connection, timeout, unavailable, 429, 5xx)",
            m.retries.clone(),
        );
        registry.register("osprey_otlp_dropped_batches", "OTLP export requests dropped, by reason (queue_full, rejected, partial_success, shutdown)", m.dropped_batches.clone());
        registry.register(
            "osprey_otlp_dropped_data_points",
            "Data points dropped, by reason (as osprey_otlp_dropped_batches)",
            m.dropped_points.clone(),
        );
        registry.register(
            "osprey_otlp_queue_batches",
            "OTLP export requests waiting to be sent",
            m.queue_batches.clone(),
        );
        registry.register(
            "osprey_otlp_queue_bytes",
            "Bytes of OTLP export requests waiting to be sent",
            m.queue_bytes.clone(),
        );
        m
    }

    pub fn delivered(&self, points: u64, rejected: u64) {
        self.batches.inc();
        self.points.inc_by(points);
        if rejected > 0 {
            self.dropped_points
                .get_or_create(&ReasonLabels {
                    reason: "partial_success",
                })
                .inc_by(rejected);
        }
    }

    pub fn retried(&self, reason: &'static str) {
        self.retries.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn dropped(&self, points: u64, reason: &'static str) {
        self.dropped_batches
            .get_or_create(&ReasonLabels { reason })
            .inc();
        self.dropped_points
            .get_or_create(&ReasonLabels { reason })
            .inc_by(points);
    }

    pub fn queue(&self, batches: usize, bytes: usize) {
        self.queue_batches.set(batches as i64);
        self.queue_bytes.set(bytes as i64);
    }
}
