//! OTLP in: one acceptance path for both transports.
//!
//! A request is validated and counted — metrics by a walk over the wire
//! format ([`walk`], no decode), traces and logs by decoding them — and
//! appended to the write-ahead queue of every exporter that takes its
//! signal; only then
//! is the sender answered with success. A full queue answers with OTLP's
//! retryable status, so senders back off instead of losing data.

pub mod grpc;
pub mod http;
pub use osprey_tls as tls;
pub mod walk;
#[cfg(test)]
pub(crate) mod walk_tests;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest,
    metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    },
    trace::v1::ExportTraceServiceRequest,
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use tracing::warn;

use crate::metrics::{Metrics, Transport};
use crate::wal::{Record, Signal, Wal, WalError};

/// Why a request was not accepted (each maps to an HTTP and a gRPC status).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("malformed {signal} request: {message}")]
    BadRequest {
        signal: &'static str,
        message: String,
    },
    #[error("request body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("missing or invalid credentials")]
    Unauthenticated,
    #[error("queue of exporter {exporter} is full: retry later")]
    QueueFull { exporter: String },
    #[error("queue of exporter {exporter}: {message}")]
    Internal { exporter: String, message: String },
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "bad_request",
            Self::TooLarge { .. } => "too_large",
            Self::Unauthenticated => "unauthenticated",
            Self::QueueFull { .. } => "queue_full",
            Self::Internal { .. } => "internal",
        }
    }
}

/// A decoded, counted request ready to queue.
pub struct Accepted {
    pub signal: Signal,
    pub items: u32,
    pub exemplars: u64,
    /// Data points Prometheus cannot store (delta temporality, exponential
    /// histograms coarser than schema -4): rejected when remote-write is
    /// their only way out.
    pub not_for_prometheus: u64,
    /// Cumulative exponential histogram points: native histograms for
    /// remote-write exporters that send them, rejected by the others.
    pub exponential: u64,
    pub payload: Bytes,
}

/// What a success answer reports as `partial_success` (OTLP).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Partial {
    pub rejected: u64,
    pub message: String,
}

/// An exporter's queue and the signals it takes.
pub struct Route {
    pub exporter: String,
    pub signals: Vec<Signal>,
    /// A remote-write exporter (its metrics must fit Prometheus).
    pub prometheus: bool,
    /// It sends exponential histograms as native histograms.
    pub native_histograms: bool,
    pub wal: Arc<Wal>,
}

pub struct Ingest {
    pub routes: Vec<Route>,
    pub metrics: Arc<Metrics>,
    pub bearer_token: Option<String>,
    /// mTLS: requests must come by a connection with a verified client certificate.
    pub require_client_cert: bool,
    pub max_request_bytes: usize,
}

impl Ingest {
    /// Checks the connection's client certificate (mTLS) and an
    /// `Authorization` header value against what is configured.
    pub fn authorize(
        &self,
        cert: Option<&tls::ClientCert>,
        header: Option<&str>,
    ) -> Result<(), Refusal> {
        if self.require_client_cert && !cert.is_some_and(|c| c.0) {
            return Err(Refusal::Unauthenticated);
        }
        match &self.bearer_token {
            None => Ok(()),
            Some(token) => match header.and_then(|h| h.strip_prefix("Bearer ")) {
                Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
                _ => Err(Refusal::Unauthenticated),
            },
        }
    }

    /// Points of `accepted` that no exporter can deliver, when every
    /// exporter of its signal writes remote-write (and there is one).
    fn unstorable(&self, accepted: &Accepted) -> u64 {
        let mut routes = self
            .routes
            .iter()
            .filter(|r| r.signals.contains(&accepted.signal))
            .peekable();
        if routes.peek().is_none() || !routes.clone().all(|r| r.prometheus) {
            return 0;
        }
        let native = routes.any(|r| r.native_histograms);
        accepted.not_for_prometheus + if native { 0 } else { accepted.exponential }
    }

    /// Queues an accepted request in every matching exporter's WAL.
    pub async fn queue(
        &self,
        accepted: Accepted,
        transport: Transport,
    ) -> Result<Partial, Refusal> {
        let signal = accepted.signal;
        let mut partial = Partial::default();
        let unstorable = self.unstorable(&accepted);
        if unstorable > 0 {
            partial = Partial {
                rejected: unstorable,
                message: "delta-temporality sums and histograms, and exponential histograms \
                          (with a scale below -4, or to remote-write exporters without \
                          send_native_histograms), cannot be written to Prometheus \
                          remote-write; send cumulative data"
                    .to_owned(),
            };
        }
        if accepted.items == 0 {
            return Ok(partial);
        }
        let record = Record {
            signal,
            items: accepted.items,
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            payload: accepted.payload,
        };
        let record = Arc::new(record);
        for route in self.routes.iter().filter(|r| r.signals.contains(&signal)) {
            let (wal, rec) = (route.wal.clone(), record.clone());
            let appended = tokio::task::spawn_blocking(move || wal.append(&rec))
                .await
                .map_err(|e| Refusal::Internal {
                    exporter: route.exporter.clone(),
                    message: e.to_string(),
                })?;
            match appended {
                Ok(()) => {}
                Err(WalError::Full { .. }) => {
                    return Err(Refusal::QueueFull {
                        exporter: route.exporter.clone(),
                    });
                }
                Err(e) => {
                    warn!(exporter = %route.exporter, error = %e, "cannot queue a request");
                    return Err(Refusal::Internal {
                        exporter: route.exporter.clone(),
                        message: e.to_string(),
                    });
                }
            }
        }
        if partial.rejected > 0 {
            self.metrics.rejected_points(transport, partial.rejected);
        }
        self.metrics.received(
            transport,
            signal,
            u64::from(accepted.items),
            accepted.exemplars,
        );
        Ok(partial)
    }
}

/// The success answer. `partial_success` is field 1 of every
/// Export*ServiceResponse, with the rejected count as its field 1 and the
/// message as field 2, so this one message encodes the answer for all three
/// signals (only metrics ever report a rejection).
pub fn metrics_answer(partial: &Partial) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: (partial.rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(partial.rejected).unwrap_or(i64::MAX),
            error_message: partial.message.clone(),
        }),
    }
}

/// Decodes and counts a protobuf body of `signal`.
pub fn decode(signal: Signal, body: Bytes) -> Result<Accepted, Refusal> {
    let bad = |e: prost::DecodeError| Refusal::BadRequest {
        signal: signal.as_str(),
        message: e.to_string(),
    };
    let counts = match signal {
        // Walked, not decoded: the exporters read it in place when they translate it.
        Signal::Metrics => walk::metrics(&body).map_err(|e| Refusal::BadRequest {
            signal: signal.as_str(),
            message: e.to_string(),
        })?,
        Signal::Traces => Counts {
            items: count_spans(&ExportTraceServiceRequest::decode(body.clone()).map_err(bad)?),
            ..Counts::default()
        },
        Signal::Logs => Counts {
            items: count_logs(&ExportLogsServiceRequest::decode(body.clone()).map_err(bad)?),
            ..Counts::default()
        },
    };
    Ok(Accepted {
        signal,
        items: saturate(counts.items),
        exemplars: counts.exemplars,
        not_for_prometheus: counts.not_for_prometheus,
        exponential: counts.exponential,
        payload: body,
    })
}

fn saturate(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// What a request holds, as acceptance counts it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Data points, spans or log records.
    pub items: u64,
    pub exemplars: u64,
    /// Points Prometheus cannot store: delta temporality, exponential
    /// histograms coarser than schema -4.
    pub not_for_prometheus: u64,
    /// Cumulative exponential histogram points Prometheus can store as
    /// native histograms.
    pub exponential: u64,
}

/// The [`Counts`] of a decoded metrics request ([`walk::metrics`] counts
/// the same without decoding it).
pub fn count_metrics(req: &ExportMetricsServiceRequest) -> Counts {
    use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
    let delta = AggregationTemporality::Delta as i32;
    let mut c = Counts::default();
    for m in req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        let (points, exemplars, odd, exponential) = match &m.data {
            Some(Data::Gauge(g)) => (
                g.data_points.len(),
                g.data_points.iter().map(|p| p.exemplars.len()).sum(),
                0,
                0,
            ),
            Some(Data::Sum(s)) => {
                let n = s.data_points.len();
                let odd = if s.aggregation_temporality == delta {
                    n
                } else {
                    0
                };
                let e = s.data_points.iter().map(|p| p.exemplars.len()).sum();
                (n, e, odd, 0)
            }
            Some(Data::Histogram(h)) => {
                let n = h.data_points.len();
                let odd = if h.aggregation_temporality == delta {
                    n
                } else {
                    0
                };
                let e = h.data_points.iter().map(|p| p.exemplars.len()).sum();
                (n, e, odd, 0)
            }
            Some(Data::ExponentialHistogram(h)) => {
                let n = h.data_points.len();
                let e = h.data_points.iter().map(|p| p.exemplars.len()).sum();
                if h.aggregation_temporality == delta {
                    (n, e, n, 0)
                } else {
                    let fit = h
                        .data_points
                        .iter()
                        .filter(|p| crate::export::native::representable(p.scale))
                        .count();
                    (n, e, n - fit, fit)
                }
            }
            Some(Data::Summary(s)) => (s.data_points.len(), 0, 0, 0),
            None => (0, 0, 0, 0),
        };
        c.items += points as u64;
        c.exemplars += exemplars as u64;
        c.not_for_prometheus += odd as u64;
        c.exponential += exponential as u64;
    }
    c
}

pub fn count_spans(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

pub fn count_logs(req: &ExportLogsServiceRequest) -> u64 {
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
