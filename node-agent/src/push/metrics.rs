//! `osprey_otlp_*`: what the push exporter sent, retried and dropped.

use osprey_model::{
    catalogue::{
        OSPREY_OTLP_DROPPED_BATCHES, OSPREY_OTLP_DROPPED_DATA_POINTS, OSPREY_OTLP_QUEUE_BATCHES,
        OSPREY_OTLP_QUEUE_BYTES, OSPREY_OTLP_RETRIES, OSPREY_OTLP_SENT_BATCHES,
        OSPREY_OTLP_SENT_DATA_POINTS,
    },
    labels::ExportReasonLabels,
};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub struct PushMetrics {
    batches: Counter,
    points: Counter,
    retries: Family<ExportReasonLabels, Counter>,
    dropped_batches: Family<ExportReasonLabels, Counter>,
    dropped_points: Family<ExportReasonLabels, Counter>,
    queue_batches: Gauge,
    queue_bytes: Gauge,
}

impl PushMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        OSPREY_OTLP_SENT_BATCHES.register(registry, m.batches.clone());
        OSPREY_OTLP_SENT_DATA_POINTS.register(registry, m.points.clone());
        OSPREY_OTLP_RETRIES.register(registry, m.retries.clone());
        OSPREY_OTLP_DROPPED_BATCHES.register(registry, m.dropped_batches.clone());
        OSPREY_OTLP_DROPPED_DATA_POINTS.register(registry, m.dropped_points.clone());
        OSPREY_OTLP_QUEUE_BATCHES.register(registry, m.queue_batches.clone());
        OSPREY_OTLP_QUEUE_BYTES.register(registry, m.queue_bytes.clone());
        m
    }

    pub fn delivered(&self, points: u64, rejected: u64) {
        self.batches.inc();
        self.points.inc_by(points);
        if rejected > 0 {
            self.dropped_points
                .get_or_create(&ExportReasonLabels {
                    reason: "partial_success",
                })
                .inc_by(rejected);
        }
    }

    pub fn retried(&self, reason: &'static str) {
        self.retries
            .get_or_create(&ExportReasonLabels { reason })
            .inc();
    }

    pub fn dropped(&self, points: u64, reason: &'static str) {
        self.dropped_batches
            .get_or_create(&ExportReasonLabels { reason })
            .inc();
        self.dropped_points
            .get_or_create(&ExportReasonLabels { reason })
            .inc_by(points);
    }

    pub fn queue(&self, batches: usize, bytes: usize) {
        self.queue_batches.set(batches as i64);
        self.queue_bytes.set(bytes as i64);
    }
}
