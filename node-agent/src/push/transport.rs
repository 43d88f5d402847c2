//! The two OTLP transports: gRPC (`http://host:4317`) and HTTP/protobuf (an
//! endpoint whose path ends in `/v1/metrics`), with OTLP's retry rules.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_client::MetricsServiceClient,
};
use prost::Message;
use tonic::{Code, transport::Channel};

/// Where the agent pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Grpc(String),
    Http(String),
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "otlp_endpoint {0:?}: expected http://HOST:PORT (gRPC) or http://HOST:PORT/…/v1/metrics (HTTP)"
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
            Some((_, path)) if path.ends_with("v1/metrics") => Ok(Self::Http(url.to_owned())),
            Some(_) => Err(EndpointError::Invalid(url.to_owned())),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Grpc(u) => write!(f, "{u} (gRPC)"),
            Self::Http(u) => write!(f, "{u} (HTTP/protobuf)"),
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

pub enum Sender {
    Grpc(MetricsServiceClient<Channel>),
    Http {
        client: reqwest::Client,
        url: String,
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
                Ok(Self::Grpc(
                    MetricsServiceClient::new(channel).max_decoding_message_size(4 << 20),
                ))
            }
            Endpoint::Http(url) => {
                let client = reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| EndpointError::Client(e.to_string()))?;
                Ok(Self::Http {
                    client,
                    url: url.clone(),
                })
            }
        }
    }

    pub async fn send(&self, req: &ExportMetricsServiceRequest) -> Outcome {
        match self {
            Self::Grpc(client) => match client.clone().export(req.clone()).await {
                Ok(resp) => Outcome::Delivered {
                    rejected: rejected(Some(resp.into_inner())),
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
            },
            Self::Http { client, url } => {
                let sent = client
                    .post(url)
                    .header("Content-Type", "application/x-protobuf")
                    .body(req.encode_to_vec())
                    .send()
                    .await;
                match sent {
                    Err(e) if e.is_timeout() => Outcome::Retry {
                        reason: "timeout",
                        after: None,
                    },
                    Err(_) => Outcome::Retry {
                        reason: "connection",
                        after: None,
                    },
                    Ok(resp) => {
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
                                rejected: rejected(ExportMetricsServiceResponse::decode(body).ok()),
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
                }
            }
        }
    }
}

fn rejected(resp: Option<ExportMetricsServiceResponse>) -> u64 {
    resp.and_then(|r| r.partial_success)
        .map_or(0, |p| p.rejected_data_points.max(0) as u64)
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
        assert_eq!(
            Endpoint::parse("http://c:4318/v1/metrics").unwrap(),
            Endpoint::Http("http://c:4318/v1/metrics".into())
        );
        assert!(Endpoint::parse("c:4317").is_err());
        assert!(Endpoint::parse("http://c:4318/v1/traces").is_err());
    }
}
