//! A span per parsed request (`http_spans`), sent as OTLP traces: kind
//! SERVER at the server's socket, CLIENT at the client's; the request's
//! trace id and its caller's span as parent (from `traceparent`), a fresh
//! span id, start and end from kernel timestamps, and the semantic
//! conventions' attributes.
//!
//! Bounded like the rest: spans wait in a channel of `QUEUE` (a full one
//! drops and counts), go out in batches of up to `BATCH` at least every
//! second, and a batch the endpoint keeps refusing is dropped and counted
//! after `ATTEMPTS` tries with backoff.

use std::time::Duration;

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span, status},
};
use osprey_model::{
    catalogue::{OSPREY_HTTP_SPANS_DROPPED, OSPREY_HTTP_SPANS_RETRIES, OSPREY_HTTP_SPANS_SENT},
    labels::ExportReasonLabels,
};
use prometheus_client::{
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::warn;

use crate::{
    flows::enrich::Peer,
    push::{Outcome, Sender, backoff},
};

const QUEUE: usize = 8192;
const BATCH: usize = 512;
const ATTEMPTS: u32 = 5;

/// Which requests become spans.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HttpSpans {
    /// None.
    Off,
    /// Requests with a valid `traceparent`.
    #[default]
    Traced,
    /// Every request; one without `traceparent` starts a new trace, whose
    /// id its exemplars carry.
    All,
}

#[derive(Clone, Default)]
pub struct SpanMetrics {
    sent: Counter,
    dropped: Family<ExportReasonLabels, Counter>,
    retries: Counter,
}

impl SpanMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        OSPREY_HTTP_SPANS_SENT.register(registry, m.sent.clone());
        OSPREY_HTTP_SPANS_DROPPED.register(registry, m.dropped.clone());
        OSPREY_HTTP_SPANS_RETRIES.register(registry, m.retries.clone());
        m
    }

    fn dropped(&self, n: usize, reason: &'static str) {
        if n == 0 {
            return;
        }
        self.dropped
            .get_or_create(&ExportReasonLabels { reason })
            .inc_by(n as u64);
    }
}

/// Where the tracker hands its spans.
#[derive(Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<Span>,
    metrics: SpanMetrics,
}

impl SpanSink {
    pub fn send(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            self.metrics.dropped(1, "queue_full");
        }
    }
}

/// The sink, and the task that sends what it gets to `sender`.
pub fn exporter(
    sender: Sender,
    resource: Resource,
    metrics: SpanMetrics,
) -> (SpanSink, impl Future<Output = ()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let sink = SpanSink {
        tx,
        metrics: metrics.clone(),
    };
    (sink, run(sender, resource, metrics, rx))
}

async fn run(
    sender: Sender,
    resource: Resource,
    metrics: SpanMetrics,
    mut rx: mpsc::Receiver<Span>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let deadline = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(deadline);
        let open = loop {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= BATCH { break true; }
                    }
                    None => break false,
                },
                _ = &mut deadline => break true,
            }
        };
        if !batch.is_empty() {
            send(&sender, &resource, &metrics, std::mem::take(&mut batch)).await;
        }
        if !open {
            return;
        }
    }
}

async fn send(sender: &Sender, resource: &Resource, metrics: &SpanMetrics, spans: Vec<Span>) {
    let n = spans.len();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "osprey-agent/http".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    for attempt in 1..=ATTEMPTS {
        match sender.send_traces(&req).await {
            Outcome::Delivered { rejected } => {
                metrics
                    .sent
                    .inc_by(n.saturating_sub(rejected as usize) as u64);
                metrics.dropped(rejected as usize, "rejected");
                return;
            }
            Outcome::Rejected { message } => {
                warn!(message, spans = n, "OTLP endpoint rejected spans; dropped");
                metrics.dropped(n, "rejected");
                return;
            }
            Outcome::Retry { after, .. } => {
                metrics.retries.inc();
                if attempt < ATTEMPTS {
                    tokio::time::sleep(after.unwrap_or_else(|| backoff(attempt))).await;
                }
            }
        }
    }
    metrics.dropped(n, "unavailable");
}

/// What a span is made of.
pub struct SpanInput<'a> {
    pub server: bool,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_id: Option<[u8; 8]>,
    pub tracestate: Option<&'a str>,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub method: &'static str,
    pub path: &'a str,
    pub route: Option<&'a str>,
    pub status: u16,
    pub client: &'a Peer,
    pub server_peer: &'a Peer,
}

/// The span of one request, as the semantic conventions for HTTP have it.
pub fn span(i: &SpanInput) -> Span {
    let mut attributes = vec![
        kv("http.request.method", i.method.into()),
        int("http.response.status_code", i.status as i64),
        kv("url.path", i.path.into()),
        kv("server.address", i.server_peer.ip.to_string()),
        int("server.port", i.server_peer.port as i64),
        kv("client.address", i.client.ip.to_string()),
        kv("network.protocol.version", "1.1".into()),
    ];
    if let Some(route) = i.route {
        attributes.push(kv("http.route", route.into()));
    }
    // The pod of this span's own end.
    let own = if i.server { i.server_peer } else { i.client };
    if let Some(pod) = &own.pod {
        attributes.push(kv("k8s.namespace.name", pod.namespace.clone()));
        attributes.push(kv("k8s.pod.name", pod.name.clone()));
        if pod.workload_kind == "Deployment" {
            attributes.push(kv("k8s.deployment.name", pod.workload.clone()));
        }
    }
    let error = if i.server {
        i.status >= 500
    } else {
        i.status >= 400
    };
    Span {
        trace_id: i.trace_id.to_vec(),
        span_id: i.span_id.to_vec(),
        trace_state: i.tracestate.unwrap_or_default().to_owned(),
        parent_span_id: i.parent_id.map(|p| p.to_vec()).unwrap_or_default(),
        name: match i.route {
            Some(route) => format!("{} {route}", i.method),
            None => i.method.to_owned(),
        },
        kind: if i.server {
            span::SpanKind::Server
        } else {
            span::SpanKind::Client
        } as i32,
        start_time_unix_nano: i.start_unix_ns,
        end_time_unix_nano: i.end_unix_ns,
        attributes,
        status: Some(Status {
            code: if error {
                status::StatusCode::Error
            } else {
                status::StatusCode::Unset
            } as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

fn kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
    }
}

/// CLOCK_MONOTONIC nanoseconds (kernel timestamps) as Unix time, by the
/// two clocks' offset now.
pub fn unix_ns(mono_ns: u64) -> u64 {
    let read = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into a valid timespec.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    };
    let offset = read(libc::CLOCK_REALTIME) - read(libc::CLOCK_MONOTONIC);
    (mono_ns as i128 + offset).max(0) as u64
}
