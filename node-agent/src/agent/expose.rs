//! The pipeline's outputs: `/metrics`, the flow and event streams and the
//! API (one server), the JSON-lines flow log, the live summary, and the
//! OTLP push beside the scrape.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};
use tracing::warn;

use crate::{
    config::Config,
    events::EventHub,
    flows::handlers::flow_series::Summary,
    observe::{self, hub::FlowHub},
    push, server, summary,
    supervise::Health,
};

/// The running outputs.
pub struct Outputs {
    server: JoinHandle<std::io::Result<()>>,
    flow_log: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    push: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// What the outputs serve.
pub struct Sources {
    pub registry: Arc<Registry>,
    pub hub: FlowHub,
    pub events: EventHub,
    pub health: Health,
    pub unauthenticated: Counter,
    pub flow_log: observe::flowlog::FlowLogMetrics,
    pub push: Option<push::PushMetrics>,
    pub summary: watch::Receiver<Summary>,
}

impl Outputs {
    pub async fn start(
        config: &Config,
        tls: Option<server::ServerTls>,
        sources: Sources,
    ) -> Result<Self> {
        let flow_log = match &config.flow_log {
            Some(path) => {
                let (stop, stopped) = oneshot::channel();
                let task =
                    observe::flowlog::spawn(&sources.hub, path.clone(), sources.flow_log, stopped)
                        .with_context(|| format!("opening the flow log {}", path.display()))?;
                Some((stop, task))
            }
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (addr, server) = server::bind(
            config.listen,
            tls,
            server::Endpoints {
                registry: sources.registry.clone(),
                hub: sources.hub,
                events: sources.events,
                health: sources.health,
                unauthenticated: sources.unauthenticated,
            },
        )
        .await
        .with_context(|| format!("binding {}", config.listen))?;
        println!("osprey-agent: serving {scheme}://{addr}/metrics");
        let server = tokio::spawn(server);
        if config.summary_interval_secs > 0 {
            tokio::spawn(summary_loop(
                sources.summary,
                format!("{scheme}://{addr}/metrics"),
                config.summary_interval_secs,
                config.drain_interval(),
            ));
        }
        let push = match (&config.otlp_endpoint, sources.push) {
            (Some(url), Some(metrics)) => {
                let cfg = push::PushConfig {
                    endpoint: push::Endpoint::parse(url)?,
                    interval: Duration::from_secs(config.otlp_interval_secs),
                    max_batches: config.otlp_queue_batches,
                    max_bytes: config.otlp_queue_bytes,
                    timeout: Duration::from_secs(10),
                };
                let resource = push::resource(config.node_name.as_deref());
                let (flush, flushed) = oneshot::channel();
                let task =
                    tokio::spawn(push::run(cfg, sources.registry, resource, metrics, flushed));
                Some((flush, task))
            }
            _ => None,
        };
        Ok(Self {
            server,
            flow_log,
            push,
        })
    }

    /// Call after the last interval is applied: the flow log writes what it
    /// queued, the push sends the last interval (and its queue), each within
    /// `grace`; then the server stops.
    pub async fn finish(self, grace: Duration) {
        if let Some((stop, task)) = self.flow_log {
            let _ = stop.send(());
            let _ = tokio::time::timeout(grace, task).await;
        }
        if let Some((flush, task)) = self.push {
            let _ = flush.send(());
            if tokio::time::timeout(grace, task).await.is_err() {
                warn!(
                    ?grace,
                    "shutdown grace period over: the last OTLP push did not finish"
                );
            }
        }
        self.server.abort();
    }
}

async fn summary_loop(
    mut summary: watch::Receiver<Summary>,
    url: String,
    every_secs: u64,
    drain_interval: Duration,
) {
    use std::io::IsTerminal;
    // On a terminal, redraw in place; otherwise (a pipe, a log) append.
    let clear = if std::io::stderr().is_terminal() {
        "\x1b[2J\x1b[H"
    } else {
        ""
    };
    let mut tick = tokio::time::interval(Duration::from_secs(every_secs));
    loop {
        tick.tick().await;
        let view = summary.borrow_and_update().clone();
        eprint!(
            "{clear}{}",
            summary::render(&view, &url, drain_interval.as_secs_f64())
        );
    }
}
