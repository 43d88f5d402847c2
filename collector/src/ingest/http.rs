//! OTLP/HTTP: `POST /v1/metrics`, `/v1/traces`, `/v1/logs`, binary protobuf
//! (`application/x-protobuf`) or JSON (`application/json`). Errors carry a
//! `google.rpc.Status` body naming the problem, in the request's encoding.

use std::sync::Arc;
use std::time::Instant;

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message;

use super::{Ingest, Refusal, decode};
use crate::metrics::Transport;
use crate::wal::Signal;

/// `google.rpc.Status`, the OTLP/HTTP error body.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

pub fn router(ingest: Arc<Ingest>) -> Router {
    let limit = ingest.max_request_bytes;
    Router::new()
        .route("/v1/metrics", post(|s, r| handle(s, r, Signal::Metrics)))
        .route("/v1/traces", post(|s, r| handle(s, r, Signal::Traces)))
        .route("/v1/logs", post(|s, r| handle(s, r, Signal::Logs)))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(ingest)
}

async fn handle(State(ingest): State<Arc<Ingest>>, req: Request, signal: Signal) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    // The body is read (within the limit) before any refusal: answering
    // first would reset an HTTP/2 stream whose body is still arriving, and
    // the sender would see a framing error instead of the status.
    let body = axum::body::to_bytes(body, ingest.max_request_bytes).await;
    let encoding = match content_type(&parts.headers) {
        Ok(e) => e,
        Err(ct) => {
            let msg = format!(
                "unsupported Content-Type {ct:?}: use application/x-protobuf or application/json"
            );
            ingest
                .metrics
                .refused(Transport::Http, signal, "unsupported_media_type");
            return error(
                Encoding::Protobuf,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                msg,
                None,
            );
        }
    };
    if let Some(enc) = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .filter(|v| *v != "identity")
    {
        ingest
            .metrics
            .refused(Transport::Http, signal, "unsupported_media_type");
        let msg = format!("unsupported Content-Encoding {enc:?}: send the body uncompressed");
        return error(encoding, StatusCode::UNSUPPORTED_MEDIA_TYPE, msg, None);
    }
    let result = async {
        ingest.authorize(
            parts.extensions.get::<super::tls::ClientCert>(),
            parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )?;
        let body = body.map_err(|_| Refusal::TooLarge {
            size: ingest.max_request_bytes + 1,
            limit: ingest.max_request_bytes,
        })?;
        let body = match encoding {
            Encoding::Protobuf => body,
            Encoding::Json => json_to_protobuf(signal, &body)?,
        };
        let accepted = decode(signal, body)?;
        ingest.queue(accepted, Transport::Http).await
    }
    .await;
    ingest
        .metrics
        .request_duration(Transport::Http, signal, started.elapsed());
    match result {
        Ok(partial) => success(encoding, &partial),
        Err(refusal) => {
            ingest
                .metrics
                .refused(Transport::Http, signal, refusal.reason());
            let (status, retry) = match &refusal {
                Refusal::BadRequest { .. } => (StatusCode::BAD_REQUEST, None),
                Refusal::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, None),
                Refusal::Unauthenticated => (StatusCode::UNAUTHORIZED, None),
                Refusal::QueueFull { .. } | Refusal::Internal { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, Some(1))
                }
            };
            error(encoding, status, refusal.to_string(), retry)
        }
    }
}

fn content_type(headers: &HeaderMap) -> Result<Encoding, String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match ct.split(';').next().unwrap_or("").trim() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(ct.to_owned()),
    }
}

fn json_to_protobuf(signal: Signal, body: &[u8]) -> Result<Bytes, Refusal> {
    let bad = |e: serde_json::Error| Refusal::BadRequest {
        signal: signal.as_str(),
        message: e.to_string(),
    };
    Ok(match signal {
        Signal::Metrics => serde_json::from_slice::<ExportMetricsServiceRequest>(body)
            .map_err(bad)?
            .encode_to_vec(),
        Signal::Traces => serde_json::from_slice::<ExportTraceServiceRequest>(body)
            .map_err(bad)?
            .encode_to_vec(),
        Signal::Logs => serde_json::from_slice::<ExportLogsServiceRequest>(body)
            .map_err(bad)?
            .encode_to_vec(),
    }
    .into())
}

fn success(encoding: Encoding, partial: &super::Partial) -> Response {
    let answer = super::metrics_answer(partial);
    match encoding {
        Encoding::Protobuf => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            answer.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&answer).unwrap_or_else(|_| "{}".to_owned()),
        )
            .into_response(),
    }
}

fn error(
    encoding: Encoding,
    status: StatusCode,
    message: String,
    retry_after: Option<u32>,
) -> Response {
    let code = match status {
        StatusCode::BAD_REQUEST => 3,          // INVALID_ARGUMENT
        StatusCode::PAYLOAD_TOO_LARGE => 8,    // RESOURCE_EXHAUSTED
        StatusCode::UNAUTHORIZED => 16,        // UNAUTHENTICATED
        StatusCode::SERVICE_UNAVAILABLE => 14, // UNAVAILABLE
        _ => 2,                                // UNKNOWN
    };
    let mut response = match encoding {
        Encoding::Protobuf => (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            RpcStatus { code, message }.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "code": code, "message": message }).to_string(),
        )
            .into_response(),
    };
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
