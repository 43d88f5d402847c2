//! The HTTP families: request durations, Hubble's request and response
//! counters, and the parser's and the span exporter's own counters.

use super::MetricDesc;

pub const HTTP_SERVER_REQUEST_DURATION_SECONDS: MetricDesc = MetricDesc {
    name: "http_server_request_duration_seconds",
    help: "Duration of HTTP server requests, from the request's first segment entering the server socket to the response's first segment leaving it",
    unit: Some("s"),
};

pub const HTTP_CLIENT_REQUEST_DURATION_SECONDS: MetricDesc = MetricDesc {
    name: "http_client_request_duration_seconds",
    help: "Duration of HTTP client requests, from the request's first segment leaving the client socket to the response's first segment entering it",
    unit: Some("s"),
};

pub const HUBBLE_HTTP_REQUESTS: MetricDesc = MetricDesc {
    name: "hubble_http_requests",
    help: "HTTP requests, by method, protocol and reporter (the end that saw them)",
    unit: Some("{request}"),
};

pub const HUBBLE_HTTP_RESPONSES: MetricDesc = MetricDesc {
    name: "hubble_http_responses",
    help: "HTTP responses, by the request's method, status and reporter",
    unit: Some("{response}"),
};

pub const HUBBLE_HTTP_REQUEST_DURATION_SECONDS: MetricDesc = MetricDesc {
    name: "hubble_http_request_duration_seconds",
    help: "HTTP request duration (request start to response start), by method and reporter",
    unit: Some("s"),
};

pub const OSPREY_HTTP_UNPARSED: MetricDesc = MetricDesc {
    name: "osprey_http_unparsed",
    help: "HTTP starts (or parts of them) not understood, by reason; none is attributed to another request",
    unit: Some("{event}"),
};

pub const OSPREY_HTTP_UNANSWERED_REQUESTS: MetricDesc = MetricDesc {
    name: "osprey_http_unanswered_requests",
    help: "HTTP requests without a response within the answer timeout, or left when their connection's queue was full",
    unit: Some("{request}"),
};

pub const OSPREY_HTTP_LOST_EVENTS: MetricDesc = MetricDesc {
    name: "osprey_http_lost_events",
    help: "HTTP ring buffer records too short to parse (a full ring is osprey_probe_lost_events_total{probe=\"http\"})",
    unit: Some("{event}"),
};

pub const OSPREY_HTTP_SPANS_SENT: MetricDesc = MetricDesc {
    name: "osprey_http_spans_sent",
    help: "Spans of HTTP requests the OTLP endpoint accepted",
    unit: Some("{span}"),
};

pub const OSPREY_HTTP_SPANS_DROPPED: MetricDesc = MetricDesc {
    name: "osprey_http_spans_dropped",
    help: "Spans of HTTP requests dropped, by reason (queue_full, rejected, unavailable)",
    unit: Some("{span}"),
};

pub const OSPREY_HTTP_SPANS_RETRIES: MetricDesc = MetricDesc {
    name: "osprey_http_spans_retries",
    help: "Span batches sent again after a retryable failure",
    unit: Some("{batch}"),
};

/// The HTTP families.
pub const HTTP_FAMILIES: &[MetricDesc] = &[
    HTTP_SERVER_REQUEST_DURATION_SECONDS,
    HTTP_CLIENT_REQUEST_DURATION_SECONDS,
    HUBBLE_HTTP_REQUESTS,
    HUBBLE_HTTP_RESPONSES,
    HUBBLE_HTTP_REQUEST_DURATION_SECONDS,
    OSPREY_HTTP_UNPARSED,
    OSPREY_HTTP_UNANSWERED_REQUESTS,
    OSPREY_HTTP_LOST_EVENTS,
    OSPREY_HTTP_SPANS_SENT,
    OSPREY_HTTP_SPANS_DROPPED,
    OSPREY_HTTP_SPANS_RETRIES,
];
