//! Osprey's collector: OTLP in (gRPC and HTTP), a disk write-ahead queue
//! per exporter, Prometheus remote-write v1/v2 and OTLP out.
//!
//! Data flows one way: [`ingest`] decodes, counts and appends each request
//! to the [`wal`] of every exporter that takes its signal (the sender is
//! answered only then); each [`export::Exporter`] reads its queue in order,
//! translates ([`export::translate`]) and sends, and commits the queue
//! position once a batch is delivered or dropped for good.

pub mod config;
pub mod export;
pub mod ingest;
pub mod metrics;
pub mod wal;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::{Router, routing::get};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use config::Config;
use export::{Exporter, Sink, otlp::Otlp, remote_write::RemoteWrite};
use ingest::{Ingest, Route};
use metrics::{ExporterLabels, Metrics};
use wal::{Signal, Wal};

/// How long exporters get to finish a send at shutdown (the rest stays queued).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub async fn run(cfg: Config) -> Result<()> {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut routes = Vec::new();
    let mut exporters = Vec::new();
    let open = |name: &str, queue: &wal::QueueConfig| -> Result<Arc<Wal>> {
        let dir = cfg.wal_dir.join(name);
        let (wal, torn) = Wal::open(&dir, queue.clone())
            .with_context(|| format!("opening the queue of exporter {name}"))?;
        let truncated: u64 = torn.iter().map(|t| t.bytes).sum();
        metrics
            .wal_truncated_bytes
            .get_or_create(&ExporterLabels {
                exporter: name.to_owned(),
            })
            .inc_by(truncated);
        Ok(Arc::new(wal))
    };
    for rw in &cfg.remote_write {
        let wal = open(&rw.name, &rw.queue)?;
        routes.push(Route {
            exporter: rw.name.clone(),
            signals: vec![Signal::Metrics],
            prometheus: true,
            native_histograms: rw.send_native_histograms,
            wal: wal.clone(),
        });
        let sink = Sink::RemoteWrite(RemoteWrite::new(rw.clone(), metrics.clone())?);
        exporters.push(Exporter {
            name: rw.name.clone(),
            wal,
            sink,
            metrics: metrics.clone(),
        });
    }
    for o in &cfg.otlp {
        let wal = open(&o.name, &o.queue)?;
        let signals = o.signals.iter().map(|&s| s.into()).collect();
        routes.push(Route {
            exporter: o.name.clone(),
            signals,
            prometheus: false,
            native_histograms: false,
            wal: wal.clone(),
        });
        let sink = Sink::Otlp(Otlp::new(o.clone(), metrics.clone())?);
        exporters.push(Exporter {
            name: o.name.clone(),
            wal,
            sink,
            metrics: metrics.clone(),
        });
    }
    let bearer_token = match (&cfg.bearer_token, &cfg.bearer_token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let tls = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (Some(cert), Some(key)) => Some(ingest::tls::acceptor(
            cert,
            key,
            cfg.tls_client_ca_file.as_deref(),
        )?),
        _ => None,
    };
    let ingest = Arc::new(Ingest {
        routes,
        metrics: metrics.clone(),
        require_client_cert: cfg.tls_client_ca_file.is_some(),
        bearer_token,
        max_request_bytes: cfg.max_request_bytes,
    });

    let grpc = TcpListener::bind(cfg.otlp_grpc_listen)
        .await
        .with_context(|| format!("binding {}", cfg.otlp_grpc_listen))?;
    let http = TcpListener::bind(cfg.otlp_http_listen)
        .await
        .with_context(|| format!("binding {}", cfg.otlp_http_listen))?;
    let own = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    // Scripts and tests read these lines (ports may be 0 = any); a reader
    // that went away is not a reason to stop.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "osprey-collector: OTLP gRPC on {}", grpc.local_addr()?);
        let _ = writeln!(
            out,
            "osprey-collector: OTLP HTTP on http://{}",
            http.local_addr()?
        );
        let _ = writeln!(
            out,
            "osprey-collector: serving http://{}/healthz",
            own.local_addr()?
        );
        let _ = out.flush();
    }

    let mut tasks = tokio::task::JoinSet::new();
    for e in exporters {
        tasks.spawn(e.run(stop_rx.clone()));
    }
    let registry = Arc::new(registry);
    let own_app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(move || metrics_page(registry.clone())));
    let servers = async {
        tokio::try_join!(
            serve_otlp(
                grpc,
                ingest::grpc::router(ingest.clone()),
                tls.clone(),
                stop_rx.clone()
            ),
            serve_otlp(
                http,
                ingest::http::router(ingest.clone()),
                tls.clone(),
                stop_rx.clone()
            ),
            serve(own, own_app, stop_rx.clone()),
        )
    };
    tokio::pin!(servers);
    tokio::select! {
        r = &mut servers => { r?; }
        _ = shutdown_signal() => info!("shutting down: no new requests; exporters finish their current send"),
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let _ = (&mut servers).await;
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// An OTLP listener: plain, or TLS when a certificate is configured.
async fn serve_otlp(
    listener: TcpListener,
    app: Router,
    tls: Option<osprey_tls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    match tls {
        Some(acceptor) => {
            ingest::tls::serve(listener, app, acceptor, stop).await;
            Ok(())
        }
        None => serve(listener, app, stop).await,
    }
}

async fn serve(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) -> Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .context("serving")
}

async fn metrics_page(registry: Arc<Registry>) -> impl axum::response::IntoResponse {
    let mut body = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut body, &registry);
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
