//! Sends with retries: connection errors, timeouts, HTTP 429 and 5xx (gRPC
//! `UNAVAILABLE` and the other codes OTLP calls retryable) are retried with
//! exponential backoff and jitter, honouring `Retry-After`; any other answer
//! is final and never retried.

use std::future::Future;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode, header::RETRY_AFTER};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::metrics::{ExporterLabels, Metrics};

/// Backoff between attempts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// First backoff, milliseconds (doubled per attempt, with jitter).
    pub min_backoff_ms: u64,
    /// Longest backoff, milliseconds.
    pub max_backoff_ms: u64,
    /// Longest `Retry-After` honoured, seconds.
    pub max_retry_after_secs: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            min_backoff_ms: 100,
            max_backoff_ms: 30_000,
            max_retry_after_secs: 300,
        }
    }
}

/// Why a send ended without delivery.
#[derive(Debug)]
pub enum Failure {
    /// The receiver refused the data for good. `reason` names the answer
    /// (`http_400`, `grpc_invalid_argument`); `status` is the HTTP status.
    Rejected {
        reason: String,
        status: Option<StatusCode>,
        message: String,
    },
    /// The collector is shutting down; the data stays queued.
    Shutdown,
}

/// What one attempt came to.
pub enum Attempt<T> {
    Done(T),
    Retry {
        reason: &'static str,
        after: Option<Duration>,
    },
    Reject {
        reason: String,
        status: Option<StatusCode>,
        message: String,
    },
}

/// Runs `attempt` until it is done or rejected; retries are counted per reason.
pub async fn retrying<T, F, Fut>(
    mut attempt: F,
    cfg: &RetryConfig,
    metrics: &Metrics,
    exporter: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut n: u32 = 0;
    loop {
        if *shutdown.borrow() {
            return Err(Failure::Shutdown);
        }
        let started = std::time::Instant::now();
        let result = attempt().await;
        metrics
            .send_seconds
            .get_or_create(&ExporterLabels {
                exporter: exporter.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
        let (reason, after) = match result {
            Attempt::Done(v) => return Ok(v),
            Attempt::Reject {
                reason,
                status,
                message,
            } => {
                return Err(Failure::Rejected {
                    reason,
                    status,
                    message,
                });
            }
            Attempt::Retry { reason, after } => (reason, after),
        };
        if n == 0 {
            warn!(exporter, reason, "send failed, retrying with backoff");
        }
        metrics.retried(exporter, reason);
        let backoff = match after {
            Some(after) => after.min(Duration::from_secs(cfg.max_retry_after_secs)),
            None => jittered(cfg, n),
        };
        n = n.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return Err(Failure::Shutdown),
        }
    }
}

/// An HTTP send: 2xx is done, 429 and 5xx are retried, the rest rejected.
pub async fn send(
    build: impl Fn() -> RequestBuilder,
    cfg: &RetryConfig,
    metrics: &Metrics,
    exporter: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Response, Failure> {
    let attempt = || async {
        match build().send().await {
            Ok(resp) if resp.status().is_success() => Attempt::Done(resp),
            Ok(resp)
                if resp.status() == StatusCode::TOO_MANY_REQUESTS
                    || resp.status().is_server_error() =>
            {
                let reason = if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                    "429"
                } else {
                    "5xx"
                };
                debug!(exporter, status = %resp.status(), "retryable answer");
                Attempt::Retry {
                    reason,
                    after: retry_after(&resp),
                }
            }
            Ok(resp) => {
                let status = resp.status();
                let mut message = resp.text().await.unwrap_or_default();
                message.truncate(1024);
                Attempt::Reject {
                    reason: format!("http_{}", status.as_u16()),
                    status: Some(status),
                    message,
                }
            }
            Err(e) if e.is_timeout() => Attempt::Retry {
                reason: "timeout",
                after: None,
            },
            Err(_) => Attempt::Retry {
                reason: "connection",
                after: None,
            },
        }
    };
    retrying(attempt, cfg, metrics, exporter, shutdown).await
}

/// A gRPC answer, by OTLP's rules for retryable codes.
pub fn grpc<T>(result: Result<T, tonic::Status>) -> Attempt<T> {
    use tonic::Code;
    match result {
        Ok(v) => Attempt::Done(v),
        Err(s) => match s.code() {
            Code::Unavailable
            | Code::Cancelled
            | Code::Aborted
            | Code::OutOfRange
            | Code::DataLoss => Attempt::Retry {
                reason: "unavailable",
                after: None,
            },
            Code::DeadlineExceeded => Attempt::Retry {
                reason: "timeout",
                after: None,
            },
            // Retryable only when the server says when (RetryInfo); without
            // it, a slow retry is the cautious reading.
            Code::ResourceExhausted => Attempt::Retry {
                reason: "429",
                after: Some(Duration::from_secs(1)),
            },
            code => Attempt::Reject {
                reason: format!("grpc_{}", format!("{code:?}").to_lowercase()),
                status: None,
                message: s.message().to_owned(),
            },
        },
    }
}

/// `min · 2^attempt`, capped, then a random point in its upper half.
fn jittered(cfg: &RetryConfig, attempt: u32) -> Duration {
    let base = cfg
        .min_backoff_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(cfg.max_backoff_ms)
        .max(1);
    Duration::from_millis(base / 2 + fastrand::u64(0..=base / 2))
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp.headers().get(RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let cfg = RetryConfig {
            min_backoff_ms: 100,
            max_backoff_ms: 1000,
            max_retry_after_secs: 5,
        };
        for _ in 0..100 {
            let d0 = jittered(&cfg, 0).as_millis();
            assert!((50..=100).contains(&d0), "{d0}");
            let d2 = jittered(&cfg, 2).as_millis();
            assert!((200..=400).contains(&d2), "{d2}");
            let d9 = jittered(&cfg, 9).as_millis();
            assert!((500..=1000).contains(&d9), "{d9}");
        }
    }

    #[test]
    fn grpc_codes_follow_otlp() {
        assert!(matches!(
            grpc::<()>(Err(tonic::Status::unavailable("x"))),
            Attempt::Retry { .. }
        ));
        assert!(matches!(
            grpc::<()>(Err(tonic::Status::invalid_argument("x"))),
            Attempt::Reject { reason, .. } if reason == "grpc_invalidargument"
        ));
    }
}
