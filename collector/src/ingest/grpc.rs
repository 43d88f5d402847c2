//! OTLP/gRPC: the three `Export` methods, served on the same HTTP/2 router.
//!
//! The messages are decoded by [`super::decode`], not by tonic's prost
//! codec, so a malformed body gets `INVALID_ARGUMENT` and an oversized one
//! `RESOURCE_EXHAUSTED` (the OTLP specification's codes) naming the problem.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use bytes::{Buf, BufMut, Bytes};
use futures_util::future::BoxFuture;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Request, Response, Status};

use super::{Ingest, Refusal, decode};
use crate::metrics::Transport;
use crate::wal::Signal;

const METHODS: [(&str, Signal); 3] = [
    (
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Metrics,
    ),
    (
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        Signal::Traces,
    ),
    (
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        Signal::Logs,
    ),
];

pub fn router(ingest: Arc<Ingest>) -> Router {
    let mut router = Router::new();
    for (path, signal) in METHODS {
        let ingest = ingest.clone();
        let svc = tower_service(move |req: axum::http::Request<axum::body::Body>| {
            let ingest = ingest.clone();
            async move {
                let limit = ingest.max_request_bytes;
                let mut grpc = tonic::server::Grpc::new(RawCodec { limit })
                    .apply_max_message_size_config(Some(limit), None);
                let response = grpc
                    .unary(
                        Export {
                            ingest: ingest.clone(),
                            signal,
                        },
                        req,
                    )
                    .await;
                Ok::<_, Infallible>(too_large_is_resource_exhausted(response, &ingest, signal))
            }
        });
        router = router.route_service(path, svc);
    }
    router
}

/// tonic refuses a message past the limit from its length prefix, before
/// reading it, with `OUT_OF_RANGE`; OTLP says `RESOURCE_EXHAUSTED`. The
/// answer is trailers-only, so the status is in its headers.
fn too_large_is_resource_exhausted<B>(
    mut response: axum::http::Response<B>,
    ingest: &Ingest,
    signal: Signal,
) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    if headers.get("grpc-status").is_some_and(|v| v == "11") {
        let message = format!(
            "request body exceeds the limit of {} bytes",
            ingest.max_request_bytes
        );
        headers.insert("grpc-status", axum::http::HeaderValue::from_static("8"));
        if let Ok(v) = axum::http::HeaderValue::try_from(message) {
            headers.insert("grpc-message", v);
        }
        ingest.metrics.refused(Transport::Grpc, signal, "too_large");
    }
    response
}

fn tower_service<F, Fut>(f: F) -> ServiceFn<F>
where
    F: Fn(axum::http::Request<axum::body::Body>) -> Fut,
{
    ServiceFn(f)
}

#[derive(Clone)]
struct ServiceFn<F>(F);

impl<F, Fut, R> tower_service::Service<axum::http::Request<axum::body::Body>> for ServiceFn<F>
where
    F: Fn(axum::http::Request<axum::body::Body>) -> Fut,
    Fut: std::future::Future<Output = Result<R, Infallible>>,
{
    type Response = R;
    type Error = Infallible;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<axum::body::Body>) -> Fut {
        (self.0)(req)
    }
}

struct Export {
    ingest: Arc<Ingest>,
    signal: Signal,
}

impl tonic::server::UnaryService<Result<Bytes, Refusal>> for Export {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<Response<Bytes>, Status>>;

    fn call(&mut self, request: Request<Result<Bytes, Refusal>>) -> Self::Future {
        let (ingest, signal) = (self.ingest.clone(), self.signal);
        Box::pin(async move {
            let started = Instant::now();
            let auth = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let cert = request
                .extensions()
                .get::<super::tls::ClientCert>()
                .copied();
            let result = async {
                ingest.authorize(cert.as_ref(), auth.as_deref())?;
                let body = request.into_inner()?;
                let accepted = decode(signal, body)?;
                ingest.queue(accepted, Transport::Grpc).await
            }
            .await;
            ingest
                .metrics
                .request_duration(Transport::Grpc, signal, started.elapsed());
            match result {
                // Every Export*ServiceResponse has partial_success as field 1,
                // so the metrics answer encodes the same for all three.
                Ok(partial) => Ok(Response::new(
                    super::metrics_answer(&partial).encode_to_vec().into(),
                )),
                Err(refusal) => {
                    ingest
                        .metrics
                        .refused(Transport::Grpc, signal, refusal.reason());
                    let code = match &refusal {
                        Refusal::BadRequest { .. } => Code::InvalidArgument,
                        Refusal::TooLarge { .. } => Code::ResourceExhausted,
                        Refusal::Unauthenticated => Code::Unauthenticated,
                        Refusal::QueueFull { .. } | Refusal::Internal { .. } => Code::Unavailable,
                    };
                    Err(Status::new(code, refusal.to_string()))
                }
            }
        })
    }
}

/// Passes message bytes through; the size check happens here so it can
/// answer with the OTLP code.
struct RawCodec {
    limit: usize,
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Result<Bytes, Refusal>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder { limit: self.limit }
    }
}

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

struct RawDecoder {
    limit: usize,
}

impl Decoder for RawDecoder {
    type Item = Result<Bytes, Refusal>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let size = src.remaining();
        if size > self.limit {
            src.advance(size);
            return Ok(Some(Err(Refusal::TooLarge {
                size,
                limit: self.limit,
            })));
        }
        Ok(Some(Ok(src.copy_to_bytes(size))))
    }
}
