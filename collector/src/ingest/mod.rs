//! OTLP in: one acceptance path for both transports.
//!
//! A request is decoded (which is the validation), counted, and appended to
//! the write-ahead queue of every exporter that takes its signal; only then
//! is the sender answered with success. A full queue answers with OTLP's
//! retryable status, so senders back off instead of losing data.

pub mod grpc;
pub mod http;
pub mod tls;

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
    /// histograms): rejected when remote-write is their only way out.
    pub not_for_prometheus: u64,
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

    /// Whether every exporter of `signal` writes remote-write (and there is one).
    fn prometheus_only(&self, signal: Signal) -> bool {
        let mut routes = self.routes.iter().filter(|r| r.signals.contains(&signal));
        routes.next().is_some_and(|r| r.prometheus) && routes.all(|r| r.prometheus)
    }

    /// Queues an accepted request in every matching exporter's WAL.
    pub async fn queue(
        &self,
        accepted: Accepted,
        transport: Transport,
    ) -> Result<Partial, Refusal> {
        let signal = accepted.signal;
        let mut partial = Partial::default();
        let prometheus_only = self.prometheus_only(signal);
        if accepted.not_for_prometheus > 0 && prometheus_only {
            partial = Partial {
                rejected: accepted.not_for_prometheus,
                message: "delta-temporality sums and histograms and exponential histograms \
                          cannot be written to Prometheus remote-write; send cumulative, \
                          explicit-bucket data"
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
    let (items, exemplars, not_for_prometheus) = match signal {
        Signal::Metrics => {
            count_metrics(&ExportMetricsServiceRequest::decode(body.clone()).map_err(bad)?)
        }
        Signal::Traces => (
            count_spans(&ExportTraceServiceRequest::decode(body.clone()).map_err(bad)?),
            0,
            0,
        ),
        Signal::Logs => (
            count_logs(&ExportLogsServiceRequest::decode(body.clone()).map_err(bad)?),
            0,
            0,
        ),
    };
    Ok(Accepted {
        signal,
        items: saturate(items),
        exemplars,
        not_for_prometheus,
        payload: body,
    })
}

fn saturate(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Data points, exemplars, and the points Prometheus cannot store (delta
/// temporality, exponential histograms) of a metrics request.
pub fn count_metrics(req: &ExportMetricsServiceRequest) -> (u64, u64, u64) {
    use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
    let delta = AggregationTemporality::Delta as i32;
    let (mut points, mut exemplars, mut odd) = (0u64, 0u64, 0u64);
    for m in req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        let (p, e, o) = match &m.data {
            Some(Data::Gauge(g)) => (
                g.data_points.len(),
                g.data_points.iter().map(|p| p.exemplars.len()).sum(),
                0,
            ),
            Some(Data::Sum(s)) => {
                let n = s.data_points.len();
                (
                    n,
                    s.data_points.iter().map(|p| p.exemplars.len()).sum(),
                    if s.aggregation_temporality == delta {
                        n
                    } else {
                        0
                    },
                )
            }
            Some(Data::Histogram(h)) => {
                let n = h.data_points.len();
                (
                    n,
                    h.data_points.iter().map(|p| p.exemplars.len()).sum(),
                    if h.aggregation_temporality == delta {
                        n
                    } else {
                        0
                    },
                )
            }
            Some(Data::ExponentialHistogram(h)) => {
                let n = h.data_points.len();
                (n, h.data_points.iter().map(|p| p.exemplars.len()).sum(), n)
            }
            Some(Data::Summary(s)) => (s.data_points.len(), 0, 0),
            None => (0, 0, 0),
        };
        points += p as u64;
        exemplars += e as u64;
        odd += o as u64;
    }
    (points, exemplars, odd)
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
