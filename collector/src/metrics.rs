//! The collector's own metrics, on `/metrics` (OpenMetrics).

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use prometheus_client::registry::Registry;

use crate::wal::Signal;

/// Which OTLP transport a request came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Grpc,
    Http,
}

impl EncodeLabelValue for Transport {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            Self::Grpc => "grpc",
            Self::Http => "http",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IngestLabels {
    transport: Transport,
    signal: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReceivedLabels {
    transport: Transport,
    /// data_points, exemplars, spans, log_records
    kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusedLabels {
    transport: Transport,
    signal: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ItemLabels {
    pub exporter: String,
    /// samples, exemplars, data_points, spans, log_records, requests
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DropLabels {
    pub exporter: String,
    pub kind: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    pub exporter: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ExporterLabels {
    pub exporter: String,
}

pub struct Metrics {
    received: Family<ReceivedLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    refused_points: Family<ReceivedLabels, Counter>,
    request_seconds: Family<IngestLabels, Histogram>,
    pub sent: Family<ItemLabels, Counter>,
    pub dropped: Family<DropLabels, Counter>,
    pub retries: Family<ReasonLabels, Counter>,
    pub send_seconds: Family<ExporterLabels, Histogram>,
    pub queue_bytes: Family<ExporterLabels, Gauge>,
    pub queue_records: Family<ExporterLabels, Gauge>,
    pub queue_disk_bytes: Family<ExporterLabels, Gauge>,
    pub oldest_age_seconds: Family<ExporterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub wal_truncated_bytes: Family<ExporterLabels, Counter>,
    pub remote_write_version: Family<ExporterLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            received: Family::default(),
            refused: Family::default(),
            refused_points: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            sent: Family::default(),
            dropped: Family::default(),
            retries: Family::default(),
            send_seconds: Family::new_with_constructor(latency_histogram),
            queue_bytes: Family::default(),
            queue_records: Family::default(),
            queue_disk_bytes: Family::default(),
            oldest_age_seconds: Family::default(),
            wal_truncated_bytes: Family::default(),
            remote_write_version: Family::default(),
        };
        let r = registry;
        r.register("osprey_collector_received", "Items accepted (durably queued) from senders, by transport and kind (data_points, exemplars, spans, log_records)", m.received.clone());
        r.register("osprey_collector_refused_requests", "Requests refused, by transport, signal and reason (bad_request, too_large, unauthenticated, queue_full, unsupported_media_type, internal)", m.refused.clone());
        r.register(
            "osprey_collector_partial_rejected",
            "Data points answered as rejected in an OTLP partial success (Prometheus cannot store them and remote-write is their only way out)",
            m.refused_points.clone(),
        );
        r.register(
            "osprey_collector_request_duration_seconds",
            "Time to accept an OTLP request (decode, queue, fsync)",
            m.request_seconds.clone(),
        );
        r.register("osprey_collector_sent", "Items delivered by an exporter, by kind (samples, histograms (native), exemplars, spans, log_records, data_points; wire_bytes: compressed remote-write bodies)", m.sent.clone());
        r.register("osprey_collector_dropped", "Items an exporter dropped for good, by kind and reason (a 4xx from the receiver, a partial write, a full queue's drop_oldest, untranslatable data)", m.dropped.clone());
        r.register(
            "osprey_collector_retries",
            "Send attempts retried, by reason (connection, 429, 5xx, timeout)",
            m.retries.clone(),
        );
        r.register(
            "osprey_collector_send_duration_seconds",
            "Duration of one send attempt of an exporter",
            m.send_seconds.clone(),
        );
        r.register(
            "osprey_collector_queue_bytes",
            "Undelivered bytes in an exporter's write-ahead queue",
            m.queue_bytes.clone(),
        );
        r.register(
            "osprey_collector_queue_records",
            "Undelivered requests in an exporter's write-ahead queue",
            m.queue_records.clone(),
        );
        r.register(
            "osprey_collector_queue_disk_bytes",
            "Bytes of an exporter's queue segments on disk (what its budget measures)",
            m.queue_disk_bytes.clone(),
        );
        r.register(
            "osprey_collector_queue_oldest_age_seconds",
            "Age of the oldest undelivered request of an exporter (0 when empty)",
            m.oldest_age_seconds.clone(),
        );
        r.register(
            "osprey_collector_wal_truncated_bytes",
            "Bytes of torn records truncated from an exporter's queue at start",
            m.wal_truncated_bytes.clone(),
        );
        r.register("osprey_collector_remote_write_version", "Remote-write protocol version an exporter currently speaks (2, or 1 after falling back)", m.remote_write_version.clone());
        m
    }

    pub fn received(&self, transport: Transport, signal: Signal, items: u64, exemplars: u64) {
        let kind = match signal {
            Signal::Metrics => "data_points",
            Signal::Traces => "spans",
            Signal::Logs => "log_records",
        };
        self.received
            .get_or_create(&ReceivedLabels { transport, kind })
            .inc_by(items);
        if exemplars > 0 {
            self.received
                .get_or_create(&ReceivedLabels {
                    transport,
                    kind: "exemplars",
                })
                .inc_by(exemplars);
        }
    }

    /// Data points a success answer reported as rejected (partial success).
    pub fn rejected_points(&self, transport: Transport, n: u64) {
        self.refused_points
            .get_or_create(&ReceivedLabels {
                transport,
                kind: "data_points",
            })
            .inc_by(n);
    }

    pub fn refused(&self, transport: Transport, signal: Signal, reason: &'static str) {
        self.refused
            .get_or_create(&RefusedLabels {
                transport,
                signal: signal.as_str(),
                reason,
            })
            .inc();
    }

    pub fn request_duration(&self, transport: Transport, signal: Signal, d: Duration) {
        self.request_seconds
            .get_or_create(&IngestLabels {
                transport,
                signal: signal.as_str(),
            })
            .observe(d.as_secs_f64());
    }

    pub fn sent(&self, exporter: &str, kind: &'static str, n: u64) {
        if n > 0 {
            self.sent
                .get_or_create(&ItemLabels {
                    exporter: exporter.to_owned(),
                    kind,
                })
                .inc_by(n);
        }
    }

    pub fn dropped(&self, exporter: &str, kind: &'static str, reason: &str, n: u64) {
        if n > 0 {
            self.dropped
                .get_or_create(&DropLabels {
                    exporter: exporter.to_owned(),
                    kind,
                    reason: reason.to_owned(),
                })
                .inc_by(n);
        }
    }

    pub fn retried(&self, exporter: &str, reason: &'static str) {
        self.retries
            .get_or_create(&ReasonLabels {
                exporter: exporter.to_owned(),
                reason,
            })
            .inc();
    }
}
