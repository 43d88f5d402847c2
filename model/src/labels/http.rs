//! Label sets of the HTTP families: OpenTelemetry's semantic-convention
//! histograms (`http_server_request_duration_seconds`,
//! `http_client_request_duration_seconds`), Hubble's `hubble_http_*`, and
//! the trace exemplar every one of them carries.

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use serde::{Deserialize, Serialize};

use super::hubble::{ContextLabels, labels_with_context};
use crate::{Foldable, OVERFLOW};

/// `http_{server,client}_request_duration_seconds`: the context labels, then
/// the semantic conventions' `http_request_method`,
/// `http_response_status_code`, `http_route` (only when routes are
/// configured) and `server_port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpDurationLabels {
    pub context: ContextLabels,
    pub method: &'static str,
    pub status: u16,
    pub route: Option<String>,
    pub server_port: u16,
}

impl EncodeLabelSet for HttpDurationLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.context.encode(encoder)?;
        ("http_request_method", self.method).encode(encoder.encode_label())?;
        ("http_response_status_code", self.status as u64).encode(encoder.encode_label())?;
        if let Some(route) = &self.route {
            ("http_route", route.as_str()).encode(encoder.encode_label())?;
        }
        ("server_port", self.server_port as u64).encode(encoder.encode_label())
    }
}

impl Foldable for HttpDurationLabels {
    fn overflow(&self) -> Self {
        Self {
            context: self.context.overflow(),
            method: self.method,
            status: self.status,
            route: self.route.as_ref().map(|_| OVERFLOW.to_owned()),
            server_port: 0,
        }
    }

    fn is_overflow(&self) -> bool {
        // No server listens on port 0.
        self.server_port == 0
    }
}

/// Which end of a request the agent saw it at: Hubble's `reporter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    Server,
    Client,
}

impl Reporter {
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Server => "server",
            Reporter::Client => "client",
        }
    }
}

/// `hubble_http_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubbleHttpRequestLabels {
    pub context: ContextLabels,
    pub method: &'static str,
    pub protocol: &'static str,
    pub reporter: &'static str,
}
labels_with_context!(HubbleHttpRequestLabels { method => "method", protocol => "protocol", reporter => "reporter" });

/// `hubble_http_responses_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubbleHttpResponseLabels {
    pub context: ContextLabels,
    pub method: &'static str,
    pub status: u16,
    pub reporter: &'static str,
}
labels_with_context!(HubbleHttpResponseLabels { method => "method", status => "status", reporter => "reporter" });

/// `hubble_http_request_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubbleHttpDurationLabels {
    pub context: ContextLabels,
    pub method: &'static str,
    pub reporter: &'static str,
}
labels_with_context!(HubbleHttpDurationLabels { method => "method", reporter => "reporter" });

/// `osprey_http_unparsed_total`: why a start (or a part of it) was not
/// understood.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UnparsedLabels {
    pub reason: &'static str,
}

/// The exemplar label that holds the trace id: `trace_id` (what Grafana's
/// `exemplarTraceIdDestinations` in kube-prometheus-stack looks up, and
/// OpenTelemetry's name) or `traceID`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum TraceLabel {
    #[default]
    #[serde(rename = "trace_id")]
    TraceId,
    #[serde(rename = "traceID")]
    TraceIdCamel,
}

impl TraceLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceLabel::TraceId => "trace_id",
            TraceLabel::TraceIdCamel => "traceID",
        }
    }
}

/// A trace exemplar: the W3C trace id and span id (lowercase hex) of a
/// request a series counted. 32 + 16 characters of ids and two short names:
/// well within OpenMetrics' 128-character limit on an exemplar's labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceExemplar {
    pub label: TraceLabel,
    pub trace_id: String,
    pub span_id: String,
}

impl EncodeLabelSet for TraceExemplar {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        (self.label.as_str(), self.trace_id.as_str()).encode(encoder.encode_label())?;
        ("span_id", self.span_id.as_str()).encode(encoder.encode_label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> ContextLabels {
        ContextLabels {
            source: Some("default/client".into()),
            destination: None,
        }
    }

    #[test]
    fn duration_labels_fold_ports_routes_and_context_but_keep_method_and_status() {
        let l = HttpDurationLabels {
            context: context(),
            method: "GET",
            status: 404,
            route: Some("/users/{id}".into()),
            server_port: 8080,
        };
        let o = l.overflow();
        assert_eq!(o.method, "GET");
        assert_eq!(o.status, 404);
        assert_eq!(o.route.as_deref(), Some(OVERFLOW));
        assert_eq!(o.context.source.as_deref(), Some(OVERFLOW));
        assert_eq!(o.context.destination, None);
        assert!(o.is_overflow());
        assert!(!l.is_overflow());
    }

    #[test]
    fn the_trace_label_is_switchable_and_fits_openmetrics() {
        let e = TraceExemplar {
            label: TraceLabel::TraceIdCamel,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
        };
        let chars = e.label.as_str().len() + e.trace_id.len() + "span_id".len() + e.span_id.len();
        assert!(chars <= 128);
        let parsed: TraceLabel = serde_json::from_str("\"traceID\"").unwrap();
        assert_eq!(parsed, TraceLabel::TraceIdCamel);
        assert!(serde_json::from_str::<TraceLabel>("\"traceId\"").is_err());
    }
}
