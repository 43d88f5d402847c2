//! Every family the agent publishes, registered once and in one order (the
//! exposition's): the flow series and the per-family handlers, the DNS and
//! HTTP trackers' metrics, the agent's own, and the node collector. The
//! cgroup collector, the push's and the server's own come after (see
//! `run`), so the order is the same as it always was.

use anyhow::Result;
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use tracing::info;

use osprey_model::{
    BudgetMetrics, SeriesBudget,
    catalogue::{OSPREY_FLOW_BYTES, OSPREY_OOM_EVENTS_MALFORMED},
};

use crate::{
    config::{self, Config},
    dns, events, flows,
    flows::{
        handlers::{
            Handlers, Limits, connections::ConnAggregator, drops::Drops, flow_series::FlowSeries,
            flows_processed::FlowsProcessed, icmp::Icmp, probe_loss::ProbeLoss,
            retransmits::Retransmits, rtt::RttHistogram, tcp_flags::TcpFlags,
        },
        metrics::FlowMetrics,
    },
    http,
    kernel::probes::Probes,
    observe, resources,
    self_metrics::ProgramMetrics,
};

pub struct Families {
    pub flow_metrics: FlowMetrics,
    /// Hubble's context options, for every family that has them.
    pub contexts: flows::context::Contexts,
    /// Series budget and idle TTL, one mechanism for every family.
    pub limits: Limits,
    /// Flow records for `observe`, the flow log and the API.
    pub hub: observe::hub::FlowHub,
    /// Resource events (OOM kills) for `observe` and the API.
    pub events: events::EventHub,
    pub flow_series: FlowSeries,
    pub handlers: Handlers,
    pub programs: ProgramMetrics,
    pub flow_log: observe::flowlog::FlowLogMetrics,
    pub dns: dns::tracker::DnsMetrics,
    /// With HTTP capture on.
    pub http: Option<(http::metrics::HttpMetrics, http::spans::SpanMetrics)>,
    pub oom_malformed: Counter,
}

impl Families {
    pub fn register(config: &Config, registry: &mut Registry, probes: &Probes) -> Result<Self> {
        let flow_metrics = FlowMetrics::register(registry);
        let contexts = flows::context::Contexts {
            source: config.hubble_source_context.clone(),
            destination: config.hubble_destination_context.clone(),
        };
        let budgets = BudgetMetrics::register(registry);
        let hub = observe::hub::FlowHub::new(config.observe_buffer, registry);
        let ttl = config.flow_idle_ttl();
        let ports = match config.flow_ports {
            config::FlowPorts::Server => flows::labels::PortFold::host(),
            config::FlowPorts::Both => flows::labels::PortFold::default(),
        };
        let probe_loss = ProbeLoss::register(registry);
        let probe_lost_events = probe_loss.family();
        let flow_series = FlowSeries::new(
            flow_metrics.clone(),
            ttl,
            SeriesBudget::new(OSPREY_FLOW_BYTES.name, config.series_budget, &budgets),
        )
        .with_ports(ports.clone());
        let limits = Limits {
            idle_ttl: ttl,
            series_budget: config.series_budget,
            budgets,
        };
        let handlers = Handlers::default()
            .with(FlowsProcessed::register(
                registry,
                contexts.clone(),
                &limits,
            ))
            .with(TcpFlags::register(registry, contexts.clone(), &limits))
            .with(Icmp::register(registry, contexts.clone(), &limits))
            .with(Drops::register(
                registry,
                contexts.clone(),
                ports.clone(),
                &limits,
            ))
            .with(Retransmits::register(registry, ports, &limits))
            .with(ConnAggregator::register(registry, &limits))
            .with(RttHistogram::register(registry))
            .with(probe_loss);
        let programs = ProgramMetrics::register(registry, config.bpf_stats);
        let maps = probes.map_footprints();
        info!(
            memory_bytes = maps.iter().map(|m| m.memory_bytes).sum::<u64>(),
            entries = %maps
                .iter()
                .map(|m| format!("{}={}", m.name, m.max_entries))
                .collect::<Vec<_>>()
                .join(","),
            "kernel maps loaded (`osprey-agent map-memory` lists each map's memory)"
        );
        crate::self_metrics::register_maps(registry, &maps, config.bpf_map_details);
        let flow_log = observe::flowlog::FlowLogMetrics::register(registry);
        let dns = dns::tracker::DnsMetrics::register(registry);
        let http = (config.http_capture_bytes > 0).then(|| {
            let spans = http::spans::SpanMetrics::register(registry);
            (
                http::metrics::HttpMetrics::register(registry, &limits),
                spans,
            )
        });
        registry.register_collector(Box::new(flows::lost::HubbleLostEvents {
            flow_lost_packets: flow_metrics.lost_packets.clone(),
            probe_lost_events,
            dns_queue: dns.lost.clone(),
            followers: hub.lost.clone(),
        }));
        registry.register_collector(Box::new(resources::node::NodeCollector {
            host_root: config.host_root.clone(),
            network_exclude: config.network_device_exclude()?,
        }));
        let events = events::hub(config.observe_buffer, registry);
        let oom_malformed = Counter::default();
        OSPREY_OOM_EVENTS_MALFORMED.register(registry, oom_malformed.clone());
        Ok(Self {
            flow_metrics,
            contexts,
            limits,
            hub,
            events,
            flow_series,
            handlers,
            programs,
            flow_log,
            dns,
            http,
            oom_malformed,
        })
    }
}
