//! Stage 4: expose. `/metrics` in OpenMetrics text, `/api/v1/flows`,
//! `/api/v1/events`, `/healthz`; over TLS when a certificate is configured,
//! and behind client certificates (all but `/healthz`) when a client CA is.

use std::{net::SocketAddr, path::Path, sync::Arc};

use axum::{
    Router,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{Next, from_fn_with_state},
    response::{IntoResponse, Response},
    routing::get,
};
use osprey_model::catalogue::OSPREY_HTTP_UNAUTHENTICATED_REQUESTS;
use osprey_tls::{ClientCert, TlsAcceptor, TlsError};
use prometheus_client::{encoding::text::encode, metrics::counter::Counter, registry::Registry};
use tokio::net::TcpListener;

use crate::{events::EventHub, observe::hub::FlowHub, supervise::Health};

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The endpoints' TLS, from the agent's `tls_*` settings.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    client_ca: bool,
}

impl ServerTls {
    /// Reads the certificate, key and client CA (PEM files).
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        Ok(Self {
            acceptor: osprey_tls::acceptor(cert, key, client_ca)?,
            client_ca: client_ca.is_some(),
        })
    }
}

/// What the endpoints serve.
pub struct Endpoints {
    pub registry: Arc<Registry>,
    pub hub: FlowHub,
    pub events: EventHub,
    pub health: Health,
    /// Counts 401s (registered by [`register`]).
    pub unauthenticated: Counter,
}

/// Registers the server's own counter.
pub fn register(registry: &mut Registry) -> Counter {
    let unauthenticated = Counter::default();
    OSPREY_HTTP_UNAUTHENTICATED_REQUESTS.register(registry, unauthenticated.clone());
    unauthenticated
}

/// Binds the listener (so the caller can print the real port) and returns
/// the server future.
pub async fn bind(
    addr: SocketAddr,
    tls: Option<ServerTls>,
    endpoints: Endpoints,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let Endpoints {
        registry,
        hub,
        events,
        health,
        unauthenticated,
    } = endpoints;
    let mut guarded = Router::new()
        .route("/metrics", get(metrics))
        .with_state(registry)
        .merge(
            Router::new()
                .route("/api/v1/flows", get(crate::observe::api::flows))
                .with_state(hub),
        )
        .merge(
            Router::new()
                .route("/api/v1/events", get(crate::events::api::events))
                .with_state(events),
        );
    if tls.as_ref().is_some_and(|t| t.client_ca) {
        guarded = guarded.layer(from_fn_with_state(unauthenticated, require_client_cert));
    }
    let app = Router::new()
        .route("/healthz", get(healthz))
        .with_state(health)
        .merge(guarded);
    Ok((local, async move {
        match tls {
            None => axum::serve(listener, app).await,
            Some(tls) => {
                // The agent aborts this task at shutdown; nothing stops it before.
                let (_keep, stop) = tokio::sync::watch::channel(false);
                osprey_tls::serve(listener, app, tls.acceptor, stop).await;
                Ok(())
            }
        }
    }))
}

/// 401 (counted) for a request whose connection presented no client
/// certificate; a certificate from another CA never gets this far.
async fn require_client_cert(
    State(unauthenticated): State<Counter>,
    req: Request,
    next: Next,
) -> Response {
    match req.extensions().get::<ClientCert>() {
        Some(ClientCert(true)) => next.run(req).await,
        _ => {
            unauthenticated.inc();
            (
                StatusCode::UNAUTHORIZED,
                "a client certificate signed by the agent's tls_client_ca_file is required\n",
            )
                .into_response()
        }
    }
}

/// `ok` while every pipeline stage runs; 503 naming the stages that stopped.
async fn healthz(State(health): State<Health>) -> impl IntoResponse {
    match health.check() {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(failed) => (StatusCode::SERVICE_UNAVAILABLE, format!("{failed}\n")),
    }
}

/// Encodes in `block_in_place`: the collectors read cgroupfs, procfs and
/// sysfs synchronously, and this worker hands its other tasks to the rest of
/// the (multi-thread) runtime meanwhile, so no task waits behind a scrape.
/// `spawn_blocking` did the same at the price of a thread hand-off: 8 % more
/// CPU and wall time per scrape of 100 cgroups in the bench.
async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let encoded = tokio::task::block_in_place(|| {
        let mut body = String::with_capacity(64 * 1024);
        encode(&mut body, &registry).map(|()| body)
    });
    match encoded {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(e) => failed(e),
    }
}

fn failed(e: impl std::fmt::Display) -> axum::response::Response {
    (
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        format!("encoding metrics failed: {e}\n"),
    )
        .into_response()
}
