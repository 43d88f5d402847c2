//! The OTLP/HTTP sink: queued requests of each signal, merged into one
//! request per batch, posted as protobuf to `<url>/v1/<signal>` (or to `url`
//! as given when it already ends in `/v1/<signal>`) — Tempo, an OTel
//! Collector, VictoriaMetrics' `/opentelemetry/v1/metrics`.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
    metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse},
    trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::error;

use super::client::Endpoint;
use super::retry::{self, Failure, RetryConfig};
use crate::metrics::Metrics;
use crate::wal::{QueueConfig, Record, Signal};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalName {
    Metrics,
    Traces,
    Logs,
}

impl From<SignalName> for Signal {
    fn from(s: SignalName) -> Self {
        match s {
            SignalName::Metrics => Signal::Metrics,
            SignalName::Traces => Signal::Traces,
            SignalName::Logs => Signal::Logs,
        }
    }
}

/// One OTLP exporter (`[[otlp]]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    pub name: String,
    /// Base URL (`http://tempo:4318`) or a full signal URL ending in `/v1/<signal>`.
    pub url: String,
    /// Signals this exporter forwards.
    pub signals: Vec<SignalName>,
    #[serde(default)]
    pub endpoint: Endpoint,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub queue: QueueConfig,
}

pub struct Otlp {
    pub cfg: OtlpConfig,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl Otlp {
    pub fn new(cfg: OtlpConfig, metrics: Arc<Metrics>) -> Result<Self, super::client::ClientError> {
        Ok(Self {
            client: cfg.endpoint.client()?,
            cfg,
            metrics,
        })
    }

    fn url(&self, signal: Signal) -> String {
        let base = self.cfg.url.trim_end_matches('/');
        if ["/v1/metrics", "/v1/traces", "/v1/logs"]
            .iter()
            .any(|p| base.ends_with(p))
        {
            base.to_owned()
        } else {
            format!("{base}/v1/{}", signal.as_str())
        }
    }

    /// Delivers (or drops for good, counted) every record; `Err` only on shutdown.
    pub async fn deliver(
        &self,
        records: &[Record],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ()> {
        for signal in [Signal::Metrics, Signal::Traces, Signal::Logs] {
            let mine: Vec<&Record> = records.iter().filter(|r| r.signal == signal).collect();
            if mine.is_empty() {
                continue;
            }
            let items: u64 = mine.iter().map(|r| u64::from(r.items)).sum();
            let body = merge(signal, &mine);
            let url = self.url(signal);
            let build = || {
                self.client
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .body(body.clone())
            };
            let kind = kind(signal);
            match retry::send(
                build,
                &self.cfg.retry,
                &self.metrics,
                &self.cfg.name,
                shutdown,
            )
            .await
            {
                Ok(resp) => {
                    let answer = resp.bytes().await.unwrap_or_default();
                    let rejected = rejected(signal, &answer).min(items);
                    self.metrics.sent(&self.cfg.name, kind, items - rejected);
                    self.metrics
                        .dropped(&self.cfg.name, kind, "partial_success", rejected);
                }
                Err(Failure::Rejected { status, message }) => {
                    error!(exporter = %self.cfg.name, %status, message, items, "receiver rejected a request; dropped, not retried");
                    self.metrics.dropped(
                        &self.cfg.name,
                        kind,
                        &format!("http_{}", status.as_u16()),
                        items,
                    );
                }
                Err(Failure::Shutdown) => return Err(()),
            }
        }
        Ok(())
    }
}

fn kind(signal: Signal) -> &'static str {
    match signal {
        Signal::Metrics => "data_points",
        Signal::Traces => "spans",
        Signal::Logs => "log_records",
    }
}

/// One request holding every queued request's resources.
fn merge(signal: Signal, records: &[&Record]) -> Vec<u8> {
    macro_rules! merged {
        ($req:ty, $field:ident) => {{
            let mut all = <$req>::default();
            for r in records {
                if let Ok(req) = <$req>::decode(r.payload.clone()) {
                    all.$field.extend(req.$field);
                }
            }
            all.encode_to_vec()
        }};
    }
    match signal {
        Signal::Metrics => merged!(ExportMetricsServiceRequest, resource_metrics),
        Signal::Traces => merged!(ExportTraceServiceRequest, resource_spans),
        Signal::Logs => merged!(ExportLogsServiceRequest, resource_logs),
    }
}

/// The receiver's `partial_success` count of rejected items.
fn rejected(signal: Signal, answer: &[u8]) -> u64 {
    let n = match signal {
        Signal::Metrics => ExportMetricsServiceResponse::decode(answer)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| p.rejected_data_points),
        Signal::Traces => ExportTraceServiceResponse::decode(answer)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| p.rejected_spans),
        Signal::Logs => ExportLogsServiceResponse::decode(answer)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| p.rejected_log_records),
    };
    n.unwrap_or(0).max(0) as u64
}
