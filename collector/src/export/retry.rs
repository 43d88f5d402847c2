//! One HTTP send with retries: connection errors, timeouts, 429 and 5xx are
//! retried with exponential backoff and jitter (a `Retry-After` is honoured);
//! any other status is final and never retried.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode, header::RETRY_AFTER};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::metrics::Metrics;

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
    /// The receiver refused the data for good (a 4xx other than 429).
    Rejected { status: StatusCode, message: String },
    /// The collector is shutting down; the data stays queued.
    Shutdown,
}

/// Sends the request `build` makes until it is answered with 2xx (returned)
/// or a final status; retries are counted per reason.
pub async fn send(
    build: impl Fn() -> RequestBuilder,
    cfg: &RetryConfig,
    metrics: &Metrics,
    exporter: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Response, Failure> {
    let mut attempt: u32 = 0;
    loop {
        if *shutdown.borrow() {
            return Err(Failure::Shutdown);
        }
        let started = std::time::Instant::now();
        let result = build().send().await;
        metrics
            .send_seconds
            .get_or_create(&crate::metrics::ExporterLabels {
                exporter: exporter.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
        let (reason, retry_after) = match result {
            Ok(resp) if resp.status().is_success() => return Ok(resp),
            Ok(resp)
                if resp.status() == StatusCode::TOO_MANY_REQUESTS
                    || resp.status().is_server_error() =>
            {
                let reason = if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                    "429"
                } else {
                    "5xx"
                };
                let after = retry_after(&resp);
                debug!(exporter, status = %resp.status(), "retryable answer");
                (reason, after)
            }
            Ok(resp) => {
                let status = resp.status();
                let mut message = resp.text().await.unwrap_or_default();
                message.truncate(1024);
                return Err(Failure::Rejected { status, message });
            }
            Err(e) if e.is_timeout() => ("timeout", None),
            Err(e) => {
                if attempt == 0 {
                    warn!(exporter, error = %e, "send failed, retrying with backoff");
                }
                ("connection", None)
            }
        };
        metrics.retried(exporter, reason);
        let backoff = match retry_after {
            Some(after) => after.min(Duration::from_secs(cfg.max_retry_after_secs)),
            None => jittered(cfg, attempt),
        };
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return Err(Failure::Shutdown),
        }
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
}
