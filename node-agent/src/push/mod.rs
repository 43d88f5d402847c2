//! OTLP push: every `otlp_interval_secs` the registry that `/metrics`
//! serves is rendered as OTLP metrics (one snapshot, the same families,
//! exemplars included, cumulative temporality) and queued; a sender delivers
//! the queue in order over gRPC or HTTP/protobuf, retrying with backoff and
//! jitter. The queue is bounded in batches and bytes; past either bound the
//! oldest batch is dropped and counted — each batch is a cumulative
//! snapshot, so a dropped one costs resolution, not counts.

mod metrics;
mod transport;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{ResourceMetrics, ScopeMetrics},
    resource::v1::Resource,
};
use prometheus_client::registry::Registry;
use prost::Message;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{info, warn};

pub use metrics::PushMetrics;
pub use transport::{Endpoint, EndpointError, Outcome, Sender};

/// The push exporter's settings (from the agent's config).
#[derive(Debug, Clone)]
pub struct PushConfig {
    pub endpoint: Endpoint,
    pub interval: Duration,
    pub max_batches: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

struct Batch {
    request: ExportMetricsServiceRequest,
    bytes: usize,
    points: u64,
}

/// The resource every batch carries: this node.
pub fn resource(node_name: Option<&str>) -> Resource {
    let host = hostname();
    let mut attrs = vec![
        kv("service.name", "osprey-agent"),
        kv("service.version", env!("CARGO_PKG_VERSION")),
        kv("service.instance.id", node_name.unwrap_or(&host)),
        kv("host.name", &host),
    ];
    if let Some(node) = node_name {
        attrs.push(kv("k8s.node.name", node));
    }
    Resource {
        attributes: attrs,
        ..Default::default()
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Pushes until `flush` fires, then pushes one last snapshot and whatever
/// is queued, and returns (the caller bounds that with its grace period).
pub async fn run(
    cfg: PushConfig,
    registry: Arc<Registry>,
    resource: Resource,
    metrics: PushMetrics,
    mut flush: oneshot::Receiver<()>,
) {
    let started = SystemTime::now();
    let sender = match Sender::new(&cfg.endpoint, cfg.timeout) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "OTLP push is off");
            return;
        }
    };
    info!(endpoint = %cfg.endpoint, interval = ?cfg.interval, "pushing OTLP metrics");
    let mut queue: VecDeque<Batch> = VecDeque::new();
    let mut tick = tokio::time::interval_at(Instant::now() + cfg.interval, cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut attempt = 0u32;
    let mut next_send = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => enqueue(&mut queue, snapshot(&registry, &resource, started), &cfg, &metrics),
            _ = tokio::time::sleep_until(next_send), if !queue.is_empty() => {
                match send_front(&sender, &mut queue, &metrics).await {
                    Some(delay) => {
                        attempt = attempt.saturating_add(1);
                        next_send = Instant::now() + delay.unwrap_or_else(|| backoff(attempt));
                    }
                    None => {
                        attempt = 0;
                        next_send = Instant::now();
                    }
                }
            }
            _ = &mut flush => break,
        }
    }
    // The last interval: one more snapshot, then everything queued, once each.
    enqueue(
        &mut queue,
        snapshot(&registry, &resource, started),
        &cfg,
        &metrics,
    );
    while !queue.is_empty() {
        if send_front(&sender, &mut queue, &metrics).await.is_some() {
            let n = queue.len() as u64;
            warn!(
                batches = n,
                "shutdown: the OTLP endpoint did not take the last batches"
            );
            for b in queue.drain(..) {
                metrics.dropped(b.points, "shutdown");
            }
            break;
        }
    }
}

/// Sends the oldest batch once. `None`: it left the queue (delivered, or
/// rejected for good and counted); `Some(retry_after)`: it stays, retry.
async fn send_front(
    sender: &Sender,
    queue: &mut VecDeque<Batch>,
    metrics: &PushMetrics,
) -> Option<Option<Duration>> {
    let batch = queue.front()?;
    match sender.send(&batch.request).await {
        Outcome::Delivered { rejected } => {
            let b = queue.pop_front().expect("front");
            metrics.delivered(b.points.saturating_sub(rejected), rejected);
            None
        }
        Outcome::Retry { reason, after } => {
            metrics.retried(reason);
            Some(after)
        }
        Outcome::Rejected { message } => {
            let b = queue.pop_front().expect("front");
            warn!(
                message,
                points = b.points,
                "OTLP endpoint rejected a batch; dropped, not retried"
            );
            metrics.dropped(b.points, "rejected");
            None
        }
    }
}

/// Exponential backoff with jitter: 100–200 ms doubling up to 15–30 s.
pub fn backoff(attempt: u32) -> Duration {
    let base = 200u64.saturating_mul(1 << attempt.min(8)).min(30_000);
    Duration::from_millis(base / 2 + fastrand::u64(0..=base / 2))
}

fn snapshot(registry: &Registry, resource: &Resource, started: SystemTime) -> Option<Batch> {
    let rendered = tokio::task::block_in_place(|| {
        osprey_model::otlp::render(registry, started, SystemTime::now())
    });
    let metrics = match rendered {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, "rendering the registry as OTLP");
            return None;
        }
    };
    let points = metrics.iter().map(osprey_model::otlp::data_points).sum();
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "osprey-agent".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    Some(Batch {
        bytes: request.encoded_len(),
        request,
        points,
    })
}

fn enqueue(
    queue: &mut VecDeque<Batch>,
    batch: Option<Batch>,
    cfg: &PushConfig,
    metrics: &PushMetrics,
) {
    let Some(batch) = batch else { return };
    queue.push_back(batch);
    let mut bytes: usize = queue.iter().map(|b| b.bytes).sum();
    while queue.len() > cfg.max_batches.max(1) || (bytes > cfg.max_bytes && queue.len() > 1) {
        let old = queue.pop_front().expect("non-empty");
        bytes -= old.bytes;
        metrics.dropped(old.points, "queue_full");
    }
    metrics.queue(queue.len(), bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(bytes: usize, points: u64) -> Option<Batch> {
        Some(Batch {
            request: ExportMetricsServiceRequest::default(),
            bytes,
            points,
        })
    }

    fn cfg(max_batches: usize, max_bytes: usize) -> PushConfig {
        PushConfig {
            endpoint: Endpoint::Grpc("http://x:4317".into()),
            interval: Duration::from_secs(1),
            max_batches,
            max_bytes,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_queue_keeps_the_newest_within_both_bounds_and_counts_the_rest() {
        let mut registry = Registry::default();
        let metrics = PushMetrics::register(&mut registry);
        let mut q = VecDeque::new();
        // Three batches allowed: the fourth pushes out the oldest.
        for points in 1..=4 {
            enqueue(&mut q, batch(10, points), &cfg(3, 1000), &metrics);
        }
        assert_eq!(q.iter().map(|b| b.points).collect::<Vec<_>>(), [2, 3, 4]);
        // 25 bytes allowed: two 10-byte batches fit, a 10-byte third does not.
        let mut q = VecDeque::new();
        for points in 1..=3 {
            enqueue(&mut q, batch(10, points), &cfg(10, 25), &metrics);
        }
        assert_eq!(q.iter().map(|b| b.points).collect::<Vec<_>>(), [2, 3]);
        // One batch larger than the byte bound is still kept (the newest).
        enqueue(&mut q, batch(100, 9), &cfg(10, 25), &metrics);
        assert_eq!(q.iter().map(|b| b.points).collect::<Vec<_>>(), [9]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        // Dropped: batch 1 (1 point), then 1, then 2 and 3.
        assert!(
            text.contains("osprey_otlp_dropped_batches_total{reason=\"queue_full\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("osprey_otlp_dropped_data_points_total{reason=\"queue_full\"} 7"),
            "{text}"
        );
        assert!(text.contains("osprey_otlp_queue_batches 1"), "{text}");
    }
}
