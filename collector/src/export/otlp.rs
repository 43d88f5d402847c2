//! The OTLP sink: queued requests of each signal, merged into one request
//! per batch, sent over HTTP/protobuf to `<url>/v1/<signal>` (or to `url` as
//! given when it already ends in `/v1/<signal>`) or over gRPC to `url` —
//! Tempo, an OTel Collector, VictoriaMetrics' `/opentelemetry/v1/metrics`.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::{
    logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse, logs_service_client::LogsServiceClient,
    },
    metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_client::MetricsServiceClient,
    },
    trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_client::TraceServiceClient,
    },
};
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::transport::Channel;
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

/// How an OTLP exporter sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/protobuf (`url` + `/v1/<signal>`).
    #[default]
    Http,
    /// gRPC (`url` = `http://host:4317`).
    Grpc,
}

/// One OTLP exporter (`[[otlp]]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    pub name: String,
    /// HTTP: a base URL (`http://tempo:4318`) or a full `…/v1/<signal>` URL.
    /// gRPC: `http://tempo:4317`.
    pub url: String,
    #[serde(default)]
    pub protocol: Protocol,
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
    channel: Option<Channel>,
    metrics: Arc<Metrics>,
}

/// One merged request of a signal.
#[derive(Clone)]
enum Merged {
    Metrics(ExportMetricsServiceRequest),
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Otlp {
    pub fn new(cfg: OtlpConfig, metrics: Arc<Metrics>) -> Result<Self, super::client::ClientError> {
        let channel = match cfg.protocol {
            Protocol::Http => None,
            Protocol::Grpc => Some(
                Channel::from_shared(cfg.url.clone())
                    .map_err(|e| {
                        super::client::ClientError::Header(format!("url {}: {e}", cfg.url))
                    })?
                    .timeout(std::time::Duration::from_secs(
                        cfg.endpoint.timeout_secs.unwrap_or(30),
                    ))
                    .connect_lazy(),
            ),
        };
        Ok(Self {
            client: cfg.endpoint.client()?,
            channel,
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
            let merged = merge(signal, &mine);
            let sent = match &self.channel {
                Some(channel) => self.send_grpc(channel, &merged, shutdown).await,
                None => self.send_http(signal, &merged, shutdown).await,
            };
            let kind = kind(signal);
            match sent {
                Ok(rejected) => {
                    let rejected = rejected.min(items);
                    self.metrics.sent(&self.cfg.name, kind, items - rejected);
                    self.metrics
                        .dropped(&self.cfg.name, kind, "partial_success", rejected);
                }
                Err(Failure::Rejected {
                    reason, message, ..
                }) => {
                    error!(exporter = %self.cfg.name, reason, message, items, "receiver rejected a request; dropped, not retried");
                    self.metrics.dropped(&self.cfg.name, kind, &reason, items);
                }
                Err(Failure::Shutdown) => return Err(()),
            }
        }
        Ok(())
    }

    /// The receiver's `partial_success` count of rejected items.
    async fn send_http(
        &self,
        signal: Signal,
        merged: &Merged,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<u64, Failure> {
        let body = match merged {
            Merged::Metrics(r) => r.encode_to_vec(),
            Merged::Traces(r) => r.encode_to_vec(),
            Merged::Logs(r) => r.encode_to_vec(),
        };
        let url = self.url(signal);
        let build = || {
            self.client
                .post(&url)
                .header("Content-Type", "application/x-protobuf")
                .body(body.clone())
        };
        let resp = retry::send(
            build,
            &self.cfg.retry,
            &self.metrics,
            &self.cfg.name,
            shutdown,
        )
        .await?;
        let answer = resp.bytes().await.unwrap_or_default();
        Ok(match signal {
            Signal::Metrics => ExportMetricsServiceResponse::decode(answer)
                .ok()
                .map(|r| metrics_rejected(&r)),
            Signal::Traces => ExportTraceServiceResponse::decode(answer)
                .ok()
                .map(|r| traces_rejected(&r)),
            Signal::Logs => ExportLogsServiceResponse::decode(answer)
                .ok()
                .map(|r| logs_rejected(&r)),
        }
        .unwrap_or(0))
    }

    async fn send_grpc(
        &self,
        channel: &Channel,
        merged: &Merged,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<u64, Failure> {
        let (cfg, m, name) = (&self.cfg.retry, &self.metrics, &self.cfg.name);
        match merged {
            Merged::Metrics(r) => {
                let attempt = || async {
                    retry::grpc(
                        MetricsServiceClient::new(channel.clone())
                            .export(r.clone())
                            .await
                            .map(|a| metrics_rejected(a.get_ref())),
                    )
                };
                retry::retrying(attempt, cfg, m, name, shutdown).await
            }
            Merged::Traces(r) => {
                let attempt = || async {
                    retry::grpc(
                        TraceServiceClient::new(channel.clone())
                            .export(r.clone())
                            .await
                            .map(|a| traces_rejected(a.get_ref())),
                    )
                };
                retry::retrying(attempt, cfg, m, name, shutdown).await
            }
            Merged::Logs(r) => {
                let attempt = || async {
                    retry::grpc(
                        LogsServiceClient::new(channel.clone())
                            .export(r.clone())
                            .await
                            .map(|a| logs_rejected(a.get_ref())),
                    )
                };
                retry::retrying(attempt, cfg, m, name, shutdown).await
            }
        }
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
fn merge(signal: Signal, records: &[&Record]) -> Merged {
    macro_rules! merged {
        ($req:ty, $field:ident) => {{
            let mut all = <$req>::default();
            for r in records {
                if let Ok(req) = <$req>::decode(r.payload.clone()) {
                    all.$field.extend(req.$field);
                }
            }
            all
        }};
    }
    match signal {
        Signal::Metrics => Merged::Metrics(merged!(ExportMetricsServiceRequest, resource_metrics)),
        Signal::Traces => Merged::Traces(merged!(ExportTraceServiceRequest, resource_spans)),
        Signal::Logs => Merged::Logs(merged!(ExportLogsServiceRequest, resource_logs)),
    }
}

fn metrics_rejected(r: &ExportMetricsServiceResponse) -> u64 {
    r.partial_success
        .as_ref()
        .map_or(0, |p| p.rejected_data_points.max(0) as u64)
}

fn traces_rejected(r: &ExportTraceServiceResponse) -> u64 {
    r.partial_success
        .as_ref()
        .map_or(0, |p| p.rejected_spans.max(0) as u64)
}

fn logs_rejected(r: &ExportLogsServiceResponse) -> u64 {
    r.partial_success
        .as_ref()
        .map_or(0, |p| p.rejected_log_records.max(0) as u64)
}
