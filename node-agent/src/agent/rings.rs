//! The event stages beside the flow pipeline: DNS and HTTP records, each a
//! ring buffer read by one reader into its tracker (queries paired with
//! answers, requests with responses), and the HTTP spans' exporter.

use anyhow::Result;
use tokio::sync::mpsc;
use tracing::info;

use osprey_abi::DnsEvent;

use crate::{
    config::Config,
    dns,
    flows::{context::Contexts, enrich::Enricher, handlers::Limits},
    http,
    kernel::{maps::FlowMaps, ring},
    observe::hub::FlowHub,
    supervise::{self, Health},
};

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

/// What both trackers share with the flow pipeline.
pub struct Shared<'a> {
    pub health: &'a Health,
    pub hub: &'a FlowHub,
    pub contexts: &'a Contexts,
    pub enricher: &'a Enricher,
    pub limits: &'a Limits,
}

/// DNS: ring buffer → tracker.
pub fn dns(maps: &mut FlowMaps, metrics: dns::tracker::DnsMetrics, shared: &Shared<'_>) {
    let Some(ring) = maps.dns.take() else {
        return;
    };
    let (tx, rx) = mpsc::channel(DNS_CHANNEL);
    // A record too short to be an event, or one the tracker has no room
    // for, is counted as lost.
    let lost = metrics.lost.clone();
    supervise::spawn(
        shared.health,
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
        shared.health,
        "dns-tracker",
        dns::tracker::DnsTracker::new(
            metrics,
            shared.hub.clone(),
            shared.contexts.clone(),
            shared.enricher.clone(),
            shared.limits,
        )
        .run(rx),
    );
}

/// HTTP: ring buffer → tracker (requests paired with responses), and the
/// spans' exporter when spans are on and have somewhere to go.
pub fn http(
    config: &Config,
    maps: &mut FlowMaps,
    metrics: Option<(http::metrics::HttpMetrics, http::spans::SpanMetrics)>,
    shared: &Shared<'_>,
) -> Result<()> {
    let (Some(ring), Some((metrics, span_metrics))) = (maps.http.take(), metrics) else {
        return Ok(());
    };
    let (tx, rx) = mpsc::channel(HTTP_CHANNEL);
    let lost = metrics.lost.clone();
    supervise::spawn(
        shared.health,
        "http-events",
        ring::read_polling::<http::HttpStart, _>(
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
            let sender = crate::push::Sender::new(&endpoint, std::time::Duration::from_secs(10))?;
            let (sink, task) = http::spans::exporter(
                sender,
                crate::push::resource(config.node_name.as_deref()),
                span_metrics,
            );
            info!(%endpoint, "sending a span per HTTP request");
            supervise::spawn(shared.health, "http-spans", task);
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
        shared.health,
        "http-tracker",
        http::tracker::HttpTracker::new(
            metrics,
            shared.hub.clone(),
            shared.contexts.clone(),
            shared.enricher.clone(),
            options,
        )
        .run(rx),
    );
    Ok(())
}
