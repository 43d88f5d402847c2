//! The agent's pipeline, stage by stage, in the order data flows:
//!
//! 1. `load`: the probes loaded and attached (kernel).
//! 2. `identity`: pods, services and nodes watched; the enricher that names
//!    kernel keys once.
//! 3. `families`: every family registered, the flow handlers built.
//! 4. `cgroups`, `rings`: per-cgroup resources and OOM events; DNS and HTTP
//!    records, each ring → tracker.
//! 5. `flow`: drain (thread) → enrich → handlers, and flow records.
//! 6. `expose`: `/metrics`, the streams and API, the flow log, the summary,
//!    the OTLP push.
//!
//! Shutdown runs the other way: detach, last drain, outputs flushed.

mod cgroups;
mod expose;
mod families;
mod flow;
mod identity;
mod load;
mod rings;

use std::sync::Arc;

use anyhow::Result;
use prometheus_client::registry::Registry;
use tracing::info;

pub use load::probes_path;

use crate::{kernel::probes, server, supervise::Health};

pub async fn run(config: crate::config::Config, sched_fields: probes::SchedFields) -> Result<()> {
    load::raise_open_file_limit();
    let tls = load::server_tls(&config)?;
    let (mut probes, mut maps, resource_maps) = load::probes(&config, sched_fields)?;

    let mut registry = Registry::default();
    let health = Health::default();
    let pods = identity::watch_pods(&config, &mut registry, &health).await?;
    let enricher = identity::enricher(&config, pods.clone(), &mut probes);
    let mut families = families::Families::register(&config, &mut registry, &probes)?;
    cgroups::register(
        &config,
        &mut registry,
        &health,
        resource_maps,
        pods,
        &families.events,
        families.oom_malformed,
    );
    let push = config
        .otlp_endpoint
        .is_some()
        .then(|| crate::push::PushMetrics::register(&mut registry));
    let unauthenticated = server::register(&mut registry);
    let registry = Arc::new(registry);

    let shared = rings::Shared {
        health: &health,
        hub: &families.hub,
        contexts: &families.contexts,
        enricher: &enricher,
        limits: &families.limits,
    };
    rings::dns(&mut maps, families.dns, &shared);
    rings::http(&config, &mut maps, families.http, &shared)?;

    let (pipeline, summary) = flow::FlowPipeline::start(
        maps,
        config.drain_interval(),
        families.flow_metrics,
        flow::Stages {
            enricher,
            flow_series: families.flow_series,
            handlers: families.handlers,
            hub: families.hub.clone(),
        },
        &health,
    )?;

    let outputs = expose::Outputs::start(
        &config,
        tls,
        expose::Sources {
            registry,
            hub: families.hub,
            events: families.events,
            health: health.clone(),
            unauthenticated,
            flow_log: families.flow_log,
            push,
            summary,
        },
    )
    .await?;

    // The programs' info, missed runs (which the kernel always counts) and,
    // while the kernel keeps them (`bpf_stats`), run counters: every drain
    // interval.
    families.programs.update(&probes.run_stats());
    let mut stats_tick = tokio::time::interval(config.drain_interval());
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = stats_tick.tick() => {
                families.programs.update(&probes.run_stats());
            }
        }
    }

    info!("shutting down: detaching probes");
    health.stopping();
    let attached = probes.attached.len();
    drop(probes);
    // The last drain, after the detach; /metrics and the streams stay up
    // meanwhile, so they show the last interval too.
    let grace = config.shutdown_grace();
    pipeline.finish(grace).await;
    outputs.finish(grace).await;
    info!(programs = attached, "probes detached; bye");
    Ok(())
}

pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
