//! The two OTLP transports: gRPC (`http://host:4317`) and HTTP/protobuf (an
//! endpoint whose path ends in `/v1/metrics`), with OTLP's retry rules.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::{
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
use tonic::{Code, Status, transport::Channel};

/// Where the agent pushes: a gRPC server (one channel for every signal),
/// or an OTLP/HTTP base URL to which each signal adds `v1/metrics` or
/// `v1/traces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Grpc(String),
    Http { base: String },
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "OTLP endpoint {0:?}: expected http://HOST:PORT (gRPC) or http://HOST:PORT/…/v1/metrics or …/v1/traces (HTTP)"
    )]
    Invalid(String),
    #[error("otlp_endpoint: {0}")]
    Client(String),
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, EndpointError> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| EndpointError::Invalid(url.to_owned()))?;
        match rest.split_once('/') {
            None | Some((_, "")) => Ok(Self::Grpc(url.trim_end_matches('/').to_owned())),
            Some(_) => match url
                .strip_suffix("v1/metrics")
                .or_else(|| url.strip_suffix("v1/traces"))
            {
                Some(base) => Ok(Self::Http {
                    base: base.to_owned(),
                }),
                None => Err(EndpointError::Invalid(url.to_owned())),
            },
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Grpc(u) => write!(f, "{u} (gRPC)"),
            Self::Http { base } => write!(f, "{base}v1/… (HTTP/protobuf)"),
        }
    }
}

pub enum Outcome {
    /// Accepted; `rejected` data points per the answer's partial_success.
    Delivered { rejected: u64 },
    /// Try again (after the server's hint, if any).
    Retry {
        reason: &'static str,
        after: Option<Duration>,
    },
    /// Refused for good.
    Rejected { message: String },
}

/// One OTLP endpoint for both signals the agent sends: metrics, and the
/// spans of the HTTP requests it reads (gRPC services on one channel, or
/// `…/v1/metrics` and `…/v1/traces` over HTTP).
pub enum Sender {
    Grpc(Channel),
    Http {
        client: reqwest::Client,
        base: String,
    },
}

impl Sender {
    pub fn new(endpoint: &Endpoint, timeout: Duration) -> Result<Self, EndpointError> {
        match endpoint {
            Endpoint::Grpc(url) => {
                let channel = Channel::from_shared(url.clone())
                    .map_err(|e| EndpointError::Client(e.to_string()))?
                    .connect_timeout(timeout)
                    .timeout(timeout)
                    .connect_lazy();
                Ok(Self::Grpc(channel))
            }
            Endpoint::Http { base } => {
                let client = reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| EndpointError::Client(e.to_string()))?;
                Ok(Self::Http {
                    client,
                    base: base.clone(),
                })
            }
        }
    }

    pub async fn send(&self, req: &ExportMetricsServiceRequest) -> Outcome {
        fn rejected(r: ExportMetricsServiceResponse) -> u64 {
            r.partial_success
                .map_or(0, |p| p.rejected_data_points.max(0) as u64)
        }
        match self {
            Self::Grpc(channel) => grpc(
                MetricsServiceClient::new(channel.clone())
                    .max_decoding_message_size(4 << 20)
                    .export(req.clone())
                    .await,
                rejected,
            ),
            Self::Http { client, base } => {
                let url = format!("{base}v1/metrics");
                http(client, &url, req.encode_to_vec(), |b| {
                    ExportMetricsServiceResponse::decode(b).map_or(0, rejected)
                })
                .await
            }
        }
    }

    pub async fn send_traces(&self, req: &ExportTraceServiceRequest) -> Outcome {
        fn rejected(r: ExportTraceServiceResponse) -> u64 {
            r.partial_success
                .map_or(0, |p| p.rejected_spans.max(0) as u64)
        }
        match self {
            Self::Grpc(channel) => grpc(
                TraceServiceClient::new(channel.clone())
                    .max_decoding_message_size(4 << 20)
                    .export(req.clone())
                    .await,
                rejected,
            ),
            Self::Http { client, base } => {
                let url = format!("{base}v1/traces");
                http(client, &url, req.encode_to_vec(), |b| {
                    ExportTraceServiceResponse::decode(b).map_or(0, rejected)
                })
                .await
            }
        }
    }
}

/// A gRPC export's outcome, as the OTLP specification classifies statuses.
fn grpc<T>(result: Result<tonic::Response<T>, Status>, rejected: impl FnOnce(T) -> u64) -> Outcome {
    match result {
        Ok(resp) => Outcome::Delivered {
            rejected: rejected(resp.into_inner()),
        },
        Err(status) => match status.code() {
            Code::Unavailable
            | Code::Cancelled
            | Code::Aborted
            | Code::OutOfRange
            | Code::DataLoss => Outcome::Retry {
                reason: "unavailable",
                after: None,
            },
            Code::DeadlineExceeded => Outcome::Retry {
                reason: "timeout",
                after: None,
            },
            Code::Unknown if status.message().contains("transport") => Outcome::Retry {
                reason: "connection",
                after: None,
            },
            _ => Outcome::Rejected {
                message: format!("{:?}: {}", status.code(), status.message()),
            },
        },
    }
}

/// An HTTP/protobuf export's outcome: 429 and 502–504 are retried (after
/// Retry-After when given), other statuses are final.
async fn http(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    rejected: impl FnOnce(Bytes) -> u64,
) -> Outcome {
    let sent = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await;
    let resp = match sent {
        Err(e) if e.is_timeout() => {
            return Outcome::Retry {
                reason: "timeout",
                after: None,
            };
        }
        Err(_) => {
            return Outcome::Retry {
                reason: "connection",
                after: None,
            };
        }
        Ok(resp) => resp,
    };
    let status = resp.status().as_u16();
    let after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_secs);
    let body = resp.bytes().await.unwrap_or_default();
    match status {
        200..=299 => Outcome::Delivered {
            rejected: rejected(body),
        },
        429 => Outcome::Retry {
            reason: "429",
            after,
        },
        502..=504 => Outcome::Retry {
            reason: "5xx",
            after,
        },
        _ => Outcome::Rejected {
            message: format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(512)])
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metrics_path_means_http_and_a_bare_host_grpc() {
        assert_eq!(
            Endpoint::parse("http://c:4317").unwrap(),
            Endpoint::Grpc("http://c:4317".into())
        );
        assert_eq!(
            Endpoint::parse("http://c:4317/").unwrap(),
            Endpoint::Grpc("http://c:4317".into())
        );
        // Either signal's path names the same OTLP/HTTP base.
        let http = Endpoint::Http {
            base: "http://c:4318/otlp/".into(),
        };
        assert_eq!(
            Endpoint::parse("http://c:4318/otlp/v1/metrics").unwrap(),
            http
        );
        assert_eq!(
            Endpoint::parse("http://c:4318/otlp/v1/traces").unwrap(),
            http
        );
        assert!(Endpoint::parse("c:4317").is_err());
        assert!(Endpoint::parse("http://c:4318/v1/logs").is_err());
    }
}
