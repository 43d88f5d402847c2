//! The agent's pipeline, wired: probes (kernel) → drain (thread) →
//! aggregate (task) → /metrics (axum), flow and event streams, live summary.

use std::{path::PathBuf, sync::Arc, time::Instant};

use anyhow::{Context, Result};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use osprey_abi::{DnsEvent, HttpEvent, OomEvent};
use osprey_model::{
    BudgetMetrics, SeriesBudget,
    catalogue::{OSPREY_FLOW_BYTES, OSPREY_OOM_EVENTS_MALFORMED},
};

use crate::{
    cgroup, config,
    config::Config,
    dns, events, flows,
    flows::{
        drain::{FlowBatch, FlowDrainer},
        enrich::Enricher,
        handlers::{
            Handlers, connections::ConnAggregator, drops::Drops, flow_series::FlowSeries,
            flow_series::Summary, flows_processed::FlowsProcessed, icmp::Icmp,
            probe_loss::ProbeLoss, retransmits::Retransmits, rtt::RttHistogram,
            tcp_flags::TcpFlags,
        },
        metrics::FlowMetrics,
    },
    http,
    kernel::{
        probes::{self, Probes},
        ring,
    },
    observe, pods, resources,
    self_metrics::ProgramMetrics,
    server, summary,
    supervise::{self, Health},
};

/// Batches waiting between drain and aggregate. A full channel blocks the
/// drain thread, and the kernel keeps counting in its map meanwhile: no loss.
const BATCH_CHANNEL: usize = 4;
/// DNS events waiting for the tracker; past this they are counted as lost.
const DNS_CHANNEL: usize = 4096;
/// Batches of HTTP starts (up to `ring::CHUNK` each) waiting for the
/// tracker; when it is full the ring reader waits, and records wait in the
/// ring.
const HTTP_CHANNEL: usize = 16;
/// The HTTP ring is read this often, and whenever 1.5 MiB of its 2 are
/// waiting (the programs wake the reader only then: a wake-up per record
/// would cost more than the record). Read every 25 ms, the bench's p99
/// latency was +1 ms worse (the tracker's bursts preempt the workload); a
/// ring 4× larger read 4× less often costs the same per record in the
/// kernel, and 12 MiB more RSS (the reader maps it twice).
/// While no HTTP records come, the reads back off to every 100 ms.
const HTTP_POLL: ring::Poll = ring::Poll {
    busy: std::time::Duration::from_millis(5),
    idle: std::time::Duration::from_millis(100),
};

/// Raises the soft limit on open files to the hard limit (as Go programs
/// do): the agent keeps cgroup files open between scrapes.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                warn!(
                    "cannot raise the open-file limit; cgroup files past it are opened per scrape"
                );
            }
        }
    }
}

pub async fn run(config: Config, sched_fields: probes::SchedFields) -> Result<()> {
    raise_open_file_limit();
    // Read before anything is loaded: a bad certificate is a clear error now.
    let tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            server::ServerTls::load(cert, key, config.tls_client_ca_file.as_deref())
                .context("the endpoints' TLS (tls_cert_file, tls_key_file, tls_client_ca_file)")?,
        ),
        _ => None,
    };
    let probes_path = probes_path(&config.probes)?;
    let cgroup = if config.cgroup.as_os_str().is_empty() {
        cgroup::v2_root()?
    } else {
        config.cgroup.clone()
    };
    let (mut probes, maps, resource_maps) = Probes::load_and_attach(
        probes_path.clone(),
        cgroup.clone(),
        config.flow_map_entries,
        config.bpf_stats,
        config.runqueue_latency.then_some(sched_fields),
        config.http_capture_bytes,
    )
    .with_context(|| format!("loading {}", probes_path.display()))?;
    info!(programs = ?probes.attached, cgroup = %cgroup.display(), "flow probes attached");
    // Loading parsed the object and the kernel's BTF; give that memory back.
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };

    let mut registry = Registry::default();
    let health = Health::default();
    let pods = watch_pods(&config, &mut registry, &health).await?;
    let flow_metrics = FlowMetrics::register(&mut registry);
    let contexts = flows::context::Contexts {
        source: config.hubble_source_context.clone(),
        destination: config.hubble_destination_context.clone(),
    };
    let budget_metrics = BudgetMetrics::register(&mut registry);
    let hub = observe::hub::FlowHub::new(config.observe_buffer, &mut registry);
    let ttl = config.flow_idle_ttl();
    let ports = match config.flow_ports {
        config::FlowPorts::Server => flows::labels::PortFold::host(),
        config::FlowPorts::Both => flows::labels::PortFold::default(),
    };
    let (enricher, unknown) = Enricher::new(pods.clone(), probes.drop_reasons.clone())
        .ignoring(&config.drop_reasons_ignored);
    let enricher = enricher.counting_locations(&config.drop_locations_counted);
    let enricher = match probes.symbol_program() {
        Ok(kernel) => enricher.naming_with(kernel),
        Err(e) => {
            warn!(error = %e, "drop locations are named from /proc/kallsyms");
            enricher
        }
    };
    if !unknown.is_empty() {
        // Kernels differ in their reasons: a name this one lacks is not an
        // error, but it ignores nothing.
        warn!(
            ?unknown,
            "drop_reasons_ignored: not drop reasons of this kernel"
        );
    }
    let probe_loss = ProbeLoss::register(&mut registry);
    let probe_lost_events = probe_loss.family();
    let mut flow_series = FlowSeries::new(
        flow_metrics.clone(),
        ttl,
        SeriesBudget::new(
            OSPREY_FLOW_BYTES.name,
            config.series_budget,
            &budget_metrics,
        ),
    )
    .with_ports(ports.clone());
    let limits = flows::handlers::Limits {
        idle_ttl: ttl,
        series_budget: config.series_budget,
        budgets: budget_metrics.clone(),
    };
    let mut handlers = Handlers::default()
        .with(FlowsProcessed::register(
            &mut registry,
            contexts.clone(),
            &limits,
        ))
        .with(TcpFlags::register(&mut registry, contexts.clone(), &limits))
        .with(Icmp::register(&mut registry, contexts.clone(), &limits))
        .with(Drops::register(
            &mut registry,
            contexts.clone(),
            ports.clone(),
            &limits,
        ))
        .with(Retransmits::register(&mut registry, ports, &limits))
        .with(ConnAggregator::register(&mut registry, &limits))
        .with(RttHistogram::register(&mut registry))
        .with(probe_loss);
    let mut program_metrics = ProgramMetrics::register(&mut registry, config.bpf_stats);
    let maps_footprint = probes.map_footprints();
    info!(
        memory_bytes = maps_footprint.iter().map(|m| m.memory_bytes).sum::<u64>(),
        entries = %maps_footprint
            .iter()
            .map(|m| format!("{}={}", m.name, m.max_entries))
            .collect::<Vec<_>>()
            .join(","),
        "kernel maps loaded (osprey_bpf_map_memory_bytes has each map's memory)"
    );
    crate::self_metrics::register_maps(&mut registry, &maps_footprint);
    let flow_log_metrics = observe::flowlog::FlowLogMetrics::register(&mut registry);
    let dns_metrics = dns::tracker::DnsMetrics::register(&mut registry);
    let span_metrics =
        (config.http_capture_bytes > 0).then(|| http::spans::SpanMetrics::register(&mut registry));
    let http_metrics = (config.http_capture_bytes > 0)
        .then(|| http::metrics::HttpMetrics::register(&mut registry, &limits));
    registry.register_collector(Box::new(flows::lost::HubbleLostEvents {
        flow_lost_packets: flow_metrics.lost_packets.clone(),
        probe_lost_events,
        dns_queue: dns_metrics.lost.clone(),
        followers: hub.lost.clone(),
    }));
    registry.register_collector(Box::new(resources::node::NodeCollector {
        host_root: config.host_root.clone(),
        network_exclude: config.network_device_exclude()?,
    }));
    let event_hub = events::hub(config.observe_buffer, &mut registry);
    let oom_malformed = prometheus_client::metrics::counter::Counter::default();
    OSPREY_OOM_EVENTS_MALFORMED.register(&mut registry, oom_malformed.clone());
    if config.cgroup_metrics_limit > 0 {
        match resources::cgroupfs::Layout::detect() {
            Some(layout) => {
                let kernel = match (resource_maps, layout.v2_root()) {
                    (Some(mut m), Some(v2)) => {
                        let kernel = resources::kernel::KernelResources::new(
                            m.runq,
                            m.block,
                            m.loss,
                            v2.to_owned(),
                        );
                        if let Some(ring) = m.oom.take() {
                            let (kernel, hub) = (kernel.clone(), event_hub.clone());
                            supervise::spawn(
                                &health,
                                "oom-events",
                                ring::read::<OomEvent>("oom", ring, oom_malformed, move |events| {
                                    hub.publish(events.iter().map(|e| kernel.oom_kill(e)))
                                }),
                            );
                        }
                        Some(kernel)
                    }
                    _ => {
                        warn!(
                            "run-queue latency, block IO and OOM probes are off: per-cgroup figures come from cgroupfs only"
                        );
                        None
                    }
                };
                registry.register_collector(Box::new(
                    resources::CgroupCollector::new(
                        layout,
                        config.cgroup_metrics_limit,
                        config.cgroup_open_files,
                        kernel,
                        pods.clone(),
                    )
                    .sandbox_metrics(
                        config.container_sandbox_metrics == config::SandboxMetrics::All,
                    )
                    .pod_metrics(config.container_pod_metrics == config::PodMetrics::All),
                ))
            }
            None => warn!(
                "no cgroup v1 cpu/cpuacct/memory or v2 mount found: container_* metrics are off"
            ),
        }
    }
    let push_metrics = config
        .otlp_endpoint
        .is_some()
        .then(|| crate::push::PushMetrics::register(&mut registry));
    let unauthenticated = server::register(&mut registry);
    let registry = Arc::new(registry);

    // DNS: ring buffer → tracker, beside the flow pipeline.
    let mut maps = maps;
    if let Some(ring) = maps.dns.take() {
        let (tx, rx) = mpsc::channel(DNS_CHANNEL);
        // A record too short to be an event, or one the tracker has no room
        // for, is counted as lost.
        let lost = dns_metrics.lost.clone();
        supervise::spawn(
            &health,
            "dns-events",
            ring::read::<DnsEvent>("dns", ring, lost.clone(), move |events| {
                for event in events {
                    if tx.try_send(event).is_err() {
                        lost.inc();
                    }
                }
            }),
        );
        supervise::spawn(
            &health,
            "dns-tracker",
            dns::tracker::DnsTracker::new(
                dns_metrics,
                hub.clone(),
                contexts.clone(),
                enricher.clone(),
                &limits,
            )
            .run(rx),
        );
    }

    // HTTP: ring buffer → tracker (requests paired with responses).
    if let (Some(ring), Some(metrics)) = (maps.http.take(), http_metrics) {
        let (tx, rx) = mpsc::channel(HTTP_CHANNEL);
        let lost = metrics.lost.clone();
        supervise::spawn(
            &health,
            "http-events",
            ring::read_polling::<HttpEvent, _>(
                "http",
                ring,
                lost.clone(),
                Some(HTTP_POLL),
                // Waits for the tracker: the ring holds what it has not read.
                move |events| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send(events).await;
                    }
                },
            ),
        );
        let sink = match (config.http_spans, config.traces_endpoint()) {
            (http::spans::HttpSpans::Off, _) | (_, None) => None,
            (_, Some(endpoint)) => {
                let endpoint = endpoint?;
                let sender =
                    crate::push::Sender::new(&endpoint, std::time::Duration::from_secs(10))?;
                let (sink, task) = http::spans::exporter(
                    sender,
                    crate::push::resource(config.node_name.as_deref()),
                    span_metrics.clone().expect("registered with http"),
                );
                info!(%endpoint, "sending a span per HTTP request");
                supervise::spawn(&health, "http-spans", task);
                Some(sink)
            }
        };
        let options = http::tracker::HttpOptions {
            routes: http::route::Routes::new(&config.http_routes)?,
            trace_label: config.exemplar_trace_label,
            spans: config.http_spans,
            sink,
        };
        supervise::spawn(
            &health,
            "http-tracker",
            http::tracker::HttpTracker::new(
                metrics,
                hub.clone(),
                contexts.clone(),
                enricher.clone(),
                options,
            )
            .run(rx),
        );
    }

    // Stage 1: drain, on its own thread (map syscalls block).
    let (batch_tx, mut batch_rx) = mpsc::channel::<FlowBatch>(BATCH_CHANNEL);
    // Applied batches go back to the drain, emptied, to be filled again.
    let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel::<FlowBatch>(BATCH_CHANNEL);
    // Dropping `stop` ends it after one last drain, whose batch it sends.
    let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
    let drain_thread = {
        let interval = config.drain_interval();
        let metrics = flow_metrics.clone();
        let drainer = FlowDrainer::new(maps).recycling(recycle_rx);
        let stage = health.stage("flow-drain");
        std::thread::Builder::new()
            .name("flow-drain".into())
            .spawn(move || {
                let _stage = stage;
                drainer.run(interval, &stop_rx, &batch_tx, &metrics)
            })?
    };

    // Stages 2 and 3: enrich (identities, once), then every family's
    // handler; the same enriched batch becomes the flow records.
    let (summary_tx, summary_rx) = watch::channel(Summary::default());
    let publish = hub.clone();
    let aggregate = supervise::spawn(&health, "aggregate", async move {
        // Kept from batch to batch, like the drain's buffers: a steady flow
        // rate allocates nothing here per drain but the records.
        let mut enriched = flows::enrich::EnrichedBatch::default();
        while let Some(mut batch) = batch_rx.recv().await {
            let now = Instant::now();
            enricher.batch_into(&batch, &mut enriched);
            batch.clear();
            // A full or closed channel: the drain makes a new one.
            let _ = recycle_tx.try_send(batch);
            flow_series.apply(&enriched, now);
            handlers.handle(&enriched, now);
            let now_wall = std::time::SystemTime::now();
            publish.publish(observe::record::records(
                &enriched,
                now_wall,
                publish.wanted(),
            ));
            summary_tx.send_replace(flow_series.summary(10));
        }
    });

    // Stage 4: expose.
    let (flow_log_stop, flow_log) = tokio::sync::oneshot::channel();
    let flow_log = match &config.flow_log {
        Some(path) => Some(
            observe::flowlog::spawn(&hub, path.clone(), flow_log_metrics, flow_log)
                .with_context(|| format!("opening the flow log {}", path.display()))?,
        ),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (addr, server) = server::bind(
        config.listen,
        tls,
        server::Endpoints {
            registry: registry.clone(),
            hub,
            events: event_hub,
            health: health.clone(),
            unauthenticated,
        },
    )
    .await
    .with_context(|| format!("binding {}", config.listen))?;
    println!("osprey-agent: serving {scheme}://{addr}/metrics");
    let server = tokio::spawn(server);

    if config.summary_interval_secs > 0 {
        tokio::spawn(summary_loop(
            summary_rx,
            format!("{scheme}://{addr}/metrics"),
            config.summary_interval_secs,
            config.drain_interval(),
        ));
    }

    // Stage 5: push (beside the scrape), when an OTLP endpoint is set.
    let (push_flush, push) = match (&config.otlp_endpoint, push_metrics) {
        (Some(url), Some(metrics)) => {
            let cfg = crate::push::PushConfig {
                endpoint: crate::push::Endpoint::parse(url)?,
                interval: std::time::Duration::from_secs(config.otlp_interval_secs),
                max_batches: config.otlp_queue_batches,
                max_bytes: config.otlp_queue_bytes,
                timeout: std::time::Duration::from_secs(10),
            };
            let resource = crate::push::resource(config.node_name.as_deref());
            let (flush, flushed) = tokio::sync::oneshot::channel();
            let task = tokio::spawn(crate::push::run(
                cfg,
                registry.clone(),
                resource,
                metrics,
                flushed,
            ));
            (Some(flush), Some(task))
        }
        _ => (None, None),
    };

    let mut stats_tick = tokio::time::interval(config.drain_interval());
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = stats_tick.tick() => program_metrics.update(&probes.run_stats()),
        }
    }

    info!("shutting down: detaching probes");
    health.stopping();
    let attached = probes.attached.len();
    drop(probes);
    // The last drain, after the detach; the aggregator applies its batch
    // and ends with the channel, within the grace period. /metrics and the
    // streams stay up meanwhile, so they show the last interval too.
    drop(stop);
    let grace = config.shutdown_grace();
    let aborted = aggregate.abort_handle();
    if tokio::time::timeout(grace, aggregate).await.is_err() {
        // The drain thread then finds no receiver and counts the batch in
        // osprey_flow_lost_*{reason="drain_error"}.
        warn!(
            ?grace,
            "shutdown grace period over: the last interval is not applied"
        );
        aborted.abort();
    }
    let _ = tokio::task::spawn_blocking(move || drain_thread.join()).await;
    // The flow log writes what the last interval queued, then ends.
    let _ = flow_log_stop.send(());
    if let Some(flow_log) = flow_log {
        let _ = tokio::time::timeout(grace, flow_log).await;
    }
    // The push sends the last interval (and its queue) within the grace.
    if let (Some(flush), Some(push)) = (push_flush, push) {
        let _ = flush.send(());
        if tokio::time::timeout(grace, push).await.is_err() {
            warn!(
                ?grace,
                "shutdown grace period over: the last OTLP push did not finish"
            );
        }
    }
    server.abort();
    info!(programs = attached, "probes detached; bye");
    Ok(())
}

/// Starts the pod watch when the config asks for it (see
/// [`Config::watch_pods`]); the index stays empty (standalone) otherwise.
async fn watch_pods(
    config: &Config,
    registry: &mut Registry,
    health: &Health,
) -> Result<pods::PodIndex> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    if !config.watch_pods(in_cluster) {
        info!("standalone: no Kubernetes API; flows are named by IP, cgroups by path");
        return Ok(pods::PodIndex::standalone());
    }
    let client = match pods::watch::client(config.kubeconfig.as_deref()).await {
        Ok(client) => client,
        // Only `auto` inside a cluster may fall back to standalone.
        Err(e)
            if config.kubernetes == config::KubernetesMode::Auto && config.kubeconfig.is_none() =>
        {
            warn!(error = %e, "cannot reach the Kubernetes API: standalone, flows named by IP");
            return Ok(pods::PodIndex::standalone());
        }
        Err(e) => return Err(e).context("pod identity from the Kubernetes API"),
    };
    let node = match config.pod_scope {
        config::PodScope::Node => config.node_name.clone(),
        config::PodScope::Cluster => None,
    };
    let index = pods::PodIndex::for_cluster(config.node_name.clone(), config.service_cidrs.clone());
    let metrics = pods::watch::PodMetrics::register(registry);
    supervise::spawn(
        health,
        "pod-watch",
        pods::watch::run(client.clone(), node, index.clone(), metrics.clone()),
    );
    supervise::spawn(
        health,
        "service-watch",
        pods::watch::run_services(client.clone(), index.clone(), metrics.clone()),
    );
    supervise::spawn(
        health,
        "node-watch",
        pods::watch::run_nodes(client, index.clone(), metrics),
    );
    Ok(index)
}

/// The probe object: `configured` (config `probes`), or next to the agent
/// binary when that is empty.
pub fn probes_path(configured: &std::path::Path) -> Result<PathBuf> {
    if !configured.as_os_str().is_empty() {
        return Ok(configured.to_owned());
    }
    let exe = std::env::current_exe().context("locating the agent binary")?;
    Ok(exe.with_file_name("osprey-probes.bpf.o"))
}

async fn summary_loop(
    mut summary: watch::Receiver<Summary>,
    url: String,
    every_secs: u64,
    drain_interval: std::time::Duration,
) {
    use std::io::IsTerminal;
    // On a terminal, redraw in place; otherwise (a pipe, a log) append.
    let clear = if std::io::stderr().is_terminal() {
        "\x1b[2J\x1b[H"
    } else {
        ""
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(every_secs));
    loop {
        tick.tick().await;
        let view = summary.borrow_and_update().clone();
        eprint!(
            "{clear}{}",
            summary::render(&view, &url, drain_interval.as_secs_f64())
        );
    }
}

pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
