//! The remote-write sink: queued OTLP metrics → Prometheus series → v2 (or
//! v1) requests, sharded by series so each series' samples stay in order.
//!
//! Version negotiation follows the remote-write 2.0 specification: a 2xx
//! answer to a v2 request without `X-Prometheus-Remote-Write-Samples-Written`
//! comes from a v1-only receiver (Prometheus 2.x, VictoriaMetrics), which
//! dropped the data; so does a 415. The exporter then falls back to v1 for
//! good and resends the same series. A 2xx that wrote fewer samples than
//! were sent counts the rest as dropped (`partial_write`), not retried.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{error, warn};

use super::client::Endpoint;
use super::encode::{self, Version};
use super::retry::{self, Failure, RetryConfig};
use super::translate::{Series, Translation};
use super::view;
use crate::metrics::{ExporterLabels, Metrics};
use crate::wal::{QueueConfig, Record, Signal};

/// One remote-write exporter (`[[remote_write]]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Names the exporter's queue directory and its metrics.
    pub name: String,
    /// e.g. `http://prometheus:9090/api/v1/write`, `http://thanos-receive:19291/api/v1/receive`.
    pub url: String,
    /// `"2"` (default; falls back to 1 when the receiver does not confirm v2) or `"1"`.
    #[serde(default = "default_version")]
    pub version: Version,
    /// Added to every series that lacks them (`cluster`, `replica`).
    #[serde(default)]
    pub external_labels: std::collections::BTreeMap<String, String>,
    /// Append unit and `_total` suffixes as the OTel specification does
    /// (default true; Osprey's own names come through unchanged either way).
    #[serde(default = "yes")]
    pub add_metric_suffixes: bool,
    /// OTLP exponential histograms as native histograms (default true); the
    /// receiver must take them (Prometheus before 3.8 only with
    /// `--enable-feature=native-histograms`). False drops them, counted.
    #[serde(default = "yes")]
    pub send_native_histograms: bool,
    /// Resource attributes copied onto every series as labels.
    #[serde(default)]
    pub promote_resource_attributes: Vec<String>,
    /// Concurrent requests per batch (series are split by label hash).
    #[serde(default = "default_shards")]
    pub shards: usize,
    /// Series per request.
    #[serde(default = "default_max_samples")]
    pub max_samples_per_send: usize,
    #[serde(default)]
    pub endpoint: Endpoint,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub queue: QueueConfig,
}

fn default_version() -> Version {
    Version::V2
}
fn yes() -> bool {
    true
}
fn default_shards() -> usize {
    4
}
fn default_max_samples() -> usize {
    2000
}

pub struct RemoteWrite {
    pub cfg: RemoteWriteConfig,
    client: reqwest::Client,
    translation: Translation,
    v1_only: AtomicBool,
    metrics: Arc<Metrics>,
}

impl RemoteWrite {
    pub fn new(
        cfg: RemoteWriteConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, super::client::ClientError> {
        let client = cfg.endpoint.client()?;
        let translation = Translation {
            add_suffixes: cfg.add_metric_suffixes,
            native_histograms: cfg.send_native_histograms,
            promote: cfg.promote_resource_attributes.clone(),
            external_labels: cfg.external_labels.clone(),
        };
        let me = Self {
            v1_only: AtomicBool::new(cfg.version == Version::V1),
            cfg,
            client,
            translation,
            metrics,
        };
        me.report_version();
        Ok(me)
    }

    fn version(&self) -> Version {
        if self.v1_only.load(Ordering::Relaxed) {
            Version::V1
        } else {
            Version::V2
        }
    }

    fn report_version(&self) {
        let v = if self.version() == Version::V1 { 1 } else { 2 };
        self.metrics
            .remote_write_version
            .get_or_create(&ExporterLabels {
                exporter: self.cfg.name.clone(),
            })
            .set(v);
    }

    /// Delivers (or drops for good, counted) every record; `Err` only on shutdown.
    pub async fn deliver(
        &self,
        records: &[Record],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ()> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // The batch's requests, read in place; its series borrow their labels.
        let mut requests = Vec::with_capacity(records.len());
        for r in records.iter().filter(|r| r.signal == Signal::Metrics) {
            match view::read(&r.payload) {
                Ok(req) => requests.push(req),
                Err(e) => {
                    error!(exporter = %self.cfg.name, error = %e, "undecodable queued request, dropped");
                    self.metrics.dropped(
                        &self.cfg.name,
                        "data_points",
                        "corrupt",
                        u64::from(r.items),
                    );
                }
            }
        }
        let mut series = Vec::new();
        for req in &requests {
            let t = self.translation.translate(req, now_ms);
            for (reason, n) in &t.rejected {
                self.metrics
                    .dropped(&self.cfg.name, "data_points", reason, *n);
            }
            series.extend(t.series);
        }
        for chunk in series.chunks(self.cfg.max_samples_per_send.max(1)) {
            let shards = encode::shard(chunk, self.cfg.shards);
            let sends = shards.into_iter().map(|s| {
                let mut shutdown = shutdown.clone();
                async move { self.send(&s, &mut shutdown).await }
            });
            let results = futures_util::future::join_all(sends).await;
            if results.iter().any(Result::is_err) {
                return Err(());
            }
        }
        Ok(())
    }

    async fn send(
        &self,
        series: &[&Series<'_>],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ()> {
        // The series without their exemplars, once a receiver refused them.
        let mut without_exemplars: Option<Vec<Series<'_>>> = None;
        loop {
            let version = self.version();
            let body = match &without_exemplars {
                Some(stripped) => encode::encode(&stripped.iter().collect::<Vec<_>>(), version),
                None => encode::encode(series, version),
            };
            let build = || {
                self.client
                    .post(&self.cfg.url)
                    .header("Content-Type", version.content_type())
                    .header("Content-Encoding", "snappy")
                    .header("X-Prometheus-Remote-Write-Version", version.header())
                    .body(body.bytes.clone())
            };
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
                    let wire = body.bytes.len() as u64;
                    self.metrics.sent(&self.cfg.name, "wire_bytes", wire);
                    if version == Version::V2 {
                        let written =
                            header_u64(&resp, "X-Prometheus-Remote-Write-Samples-Written");
                        let Some(written) = written else {
                            self.fall_back(
                                "a 2xx without X-Prometheus-Remote-Write-Samples-Written",
                            );
                            continue;
                        };
                        let or_all = |name, all| header_u64(&resp, name).unwrap_or(all);
                        self.account(
                            &body,
                            Written {
                                samples: written,
                                histograms: or_all(
                                    "X-Prometheus-Remote-Write-Histograms-Written",
                                    body.histograms,
                                ),
                                exemplars: or_all(
                                    "X-Prometheus-Remote-Write-Exemplars-Written",
                                    body.exemplars,
                                ),
                            },
                        );
                    } else {
                        self.account(
                            &body,
                            Written {
                                samples: body.samples,
                                histograms: body.histograms,
                                exemplars: body.exemplars,
                            },
                        );
                    }
                    return Ok(());
                }
                Err(Failure::Rejected {
                    status: Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                    ..
                }) if version == Version::V2 => {
                    self.fall_back("415 Unsupported Media Type");
                }
                // Prometheus 3 answers a 2.0 request holding an exemplar
                // older than its series' latest (a sender's exemplars may go
                // back in time: a folded series counting two traced
                // connections in one millisecond) with 400 and rolls the
                // whole request back. The samples are good: send them again
                // without the exemplars, as a scrape would drop only those.
                Err(Failure::Rejected {
                    status: Some(StatusCode::BAD_REQUEST),
                    message,
                    ..
                }) if without_exemplars.is_none()
                    && body.exemplars > 0
                    && message.contains("exemplar") =>
                {
                    warn!(exporter = %self.cfg.name, message, exemplars = body.exemplars, "receiver refused a request for its exemplars; resending it without them");
                    self.metrics.dropped(
                        &self.cfg.name,
                        "exemplars",
                        "exemplar_rejected",
                        body.exemplars,
                    );
                    without_exemplars = Some(
                        series
                            .iter()
                            .map(|s| Series {
                                exemplars: Vec::new(),
                                ..(*s).clone()
                            })
                            .collect(),
                    );
                }
                Err(Failure::Rejected {
                    reason, message, ..
                }) => {
                    error!(exporter = %self.cfg.name, reason, message, samples = body.samples, "receiver rejected a request; dropped, not retried");
                    self.metrics
                        .dropped(&self.cfg.name, "samples", &reason, body.samples);
                    self.metrics
                        .dropped(&self.cfg.name, "histograms", &reason, body.histograms);
                    self.metrics
                        .dropped(&self.cfg.name, "exemplars", &reason, body.exemplars);
                    return Ok(());
                }
                Err(Failure::Shutdown) => return Err(()),
            }
        }
    }

    fn fall_back(&self, why: &str) {
        if !self.v1_only.swap(true, Ordering::Relaxed) {
            warn!(exporter = %self.cfg.name, url = %self.cfg.url, why, "receiver does not confirm remote-write 2.0; falling back to 1.0 and resending");
            self.report_version();
        }
    }

    /// Counts what the receiver wrote as sent and the rest as dropped.
    fn account(&self, sent: &encode::Body, written: Written) {
        let name = &self.cfg.name;
        for (kind, sent, written) in [
            ("samples", sent.samples, written.samples),
            ("histograms", sent.histograms, written.histograms),
            ("exemplars", sent.exemplars, written.exemplars),
        ] {
            self.metrics.sent(name, kind, written.min(sent));
            self.metrics
                .dropped(name, kind, "partial_write", sent.saturating_sub(written));
        }
    }
}

/// What a receiver says it wrote of a request.
struct Written {
    samples: u64,
    histograms: u64,
    exemplars: u64,
}

fn header_u64(resp: &reqwest::Response, name: &str) -> Option<u64> {
    resp.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}
