//! Pairs DNS queries with their answers and exports Hubble's DNS families,
//! the latency histogram, and flow records carrying the query name.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant, SystemTime},
};

use osprey_abi::DnsEvent;
use osprey_model::{
    SeriesStore,
    catalogue::{
        HUBBLE_DNS_QUERIES, HUBBLE_DNS_RESPONSES, OSPREY_DNS_LATENCY_SECONDS,
        OSPREY_DNS_LOST_EVENTS, OSPREY_DNS_MALFORMED_PACKETS, OSPREY_DNS_UNANSWERED_QUERIES,
    },
    labels::{DnsLabels, RcodeLabels},
};
use prometheus_client::{
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use tokio::sync::mpsc;

use super::message::{DnsMessage, Skip};
use crate::{
    flows::{context::Contexts, enrich::Enricher, handlers::Limits},
    observe::{
        hub::FlowHub,
        record::{DnsInfo, FlowRecord, Verdict, with_peers},
    },
};

/// A query without an answer for this long is counted as unanswered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct DnsMetrics {
    pub queries: Family<DnsLabels, Counter>,
    pub responses: Family<DnsLabels, Counter>,
    pub latency: Family<RcodeLabels, Histogram>,
    pub unanswered: Counter,
    pub malformed: Counter,
    pub lost: Counter,
}

impl DnsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            queries: Family::default(),
            responses: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    0.000_1, 2.0, 16,
                ))
            }),
            unanswered: Counter::default(),
            malformed: Counter::default(),
            lost: Counter::default(),
        };
        HUBBLE_DNS_QUERIES.register(registry, m.queries.clone());
        HUBBLE_DNS_RESPONSES.register(registry, m.responses.clone());
        OSPREY_DNS_LATENCY_SECONDS.register(registry, m.latency.clone());
        OSPREY_DNS_UNANSWERED_QUERIES.register(registry, m.unanswered.clone());
        OSPREY_DNS_MALFORMED_PACKETS.register(registry, m.malformed.clone());
        OSPREY_DNS_LOST_EVENTS.register(registry, m.lost.clone());
        m
    }
}

type PendingKey = (IpAddr, u16, IpAddr, u16);

/// Hubble's DNS family: its series grow with the clients and servers a
/// node's pods talk to, so they are kept within the series budget and TTL.
type DnsSeries = SeriesStore<DnsLabels, Family<DnsLabels, Counter>>;

pub struct DnsTracker {
    metrics: DnsMetrics,
    queries: DnsSeries,
    responses: DnsSeries,
    hub: FlowHub,
    contexts: Contexts,
    enricher: Enricher,
    /// Queries waiting for answers: (client ip, client port, server ip, id) → (ts, message).
    pending: HashMap<PendingKey, (u64, SystemTime)>,
}

impl DnsTracker {
    pub fn new(
        metrics: DnsMetrics,
        hub: FlowHub,
        contexts: Contexts,
        enricher: Enricher,
        limits: &Limits,
    ) -> Self {
        Self {
            queries: limits.store(metrics.queries.clone(), HUBBLE_DNS_QUERIES.name),
            responses: limits.store(metrics.responses.clone(), HUBBLE_DNS_RESPONSES.name),
            metrics,
            hub,
            contexts,
            enricher,
            pending: HashMap::new(),
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<DnsEvent>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => self.observe(&event, SystemTime::now()),
                    None => return,
                },
                _ = tick.tick() => {
                    self.expire(SystemTime::now());
                    self.queries.expire(Instant::now());
                    self.responses.expire(Instant::now());
                }
            }
        }
    }

    pub fn observe(&mut self, event: &DnsEvent, now: SystemTime) {
        let msg = match DnsMessage::from_event(event) {
            Ok(msg) => msg,
            Err(Skip::ServerSide | Skip::Continuation) => return,
            Err(Skip::Malformed) => {
                self.metrics.malformed.inc();
                return;
            }
        };
        let key = (msg.client_ip, msg.client_port, msg.server_ip, msg.id);
        let client = self.enricher.peer(msg.client_ip, msg.client_port);
        let server = self.enricher.peer(msg.server_ip, 53);
        let context = self.contexts.between(&client, &server);
        let mut latency = None;
        if msg.response {
            let rcode = msg.rcode.unwrap_or("Other").to_owned();
            let labels = DnsLabels {
                context: context.clone(),
                rcode: rcode.clone(),
                qtypes: msg.qtype.clone(),
                ips_returned: msg.ips.len().to_string(),
            };
            self.responses.record(labels, Instant::now(), |c, ()| {
                c.inc();
            });
            if let Some((sent_ns, _)) = self.pending.remove(&key) {
                let seconds = msg.ts_ns.saturating_sub(sent_ns) as f64 / 1e9;
                self.metrics
                    .latency
                    .get_or_create(&RcodeLabels { rcode })
                    .observe(seconds);
                latency = Some(seconds * 1e3);
            }
        } else {
            let labels = DnsLabels {
                context,
                rcode: String::new(),
                qtypes: msg.qtype.clone(),
                ips_returned: "0".into(),
            };
            self.queries.record(labels, Instant::now(), |c, ()| {
                c.inc();
            });
            self.pending.insert(key, (msg.ts_ns, now));
        }
        let record = record(&msg, latency, now);
        self.hub.publish(vec![if msg.response {
            with_peers(record, &server, &client)
        } else {
            with_peers(record, &client, &server)
        }]);
    }

    fn expire(&mut self, now: SystemTime) {
        let unanswered = &self.metrics.unanswered;
        self.pending.retain(|_, (_, at)| {
            let keep = now.duration_since(*at).unwrap_or_default() < ANSWER_TIMEOUT;
            if !keep {
                unanswered.inc();
            }
            keep
        });
    }
}

fn record(msg: &DnsMessage, latency_ms: Option<f64>, now: SystemTime) -> FlowRecord {
    let (src, dst) = if msg.response {
        (
            (msg.server_ip.to_string(), 53),
            (msg.client_ip.to_string(), msg.client_port),
        )
    } else {
        (
            (msg.client_ip.to_string(), msg.client_port),
            (msg.server_ip.to_string(), 53),
        )
    };
    FlowRecord {
        traffic_direction: Some(if msg.response { "ingress" } else { "egress" }.into()),
        dns: Some(DnsInfo {
            query: msg.qname.clone(),
            qtype: msg.qtype.clone(),
            id: msg.id,
            response: msg.response,
            rcode: msg.rcode.map(str::to_owned),
            ips: msg.ips.clone(),
            latency_ms,
        }),
        ..FlowRecord::new(now, Verdict::Forwarded, msg.transport, src, dst, 1)
    }
}

#[cfg(test)]
mod tests {
    use osprey_abi::{DIR_EGRESS, DNS_PAYLOAD_MAX, FlowKey, PROTO_UDP};
    use osprey_model::BudgetMetrics;
    use simple_dns::{CLASS, Name, Packet, Question, TYPE};

    use super::*;
    use crate::test_support::{exposition, v4_flow};

    fn query_from(client: [u8; 4], id: u16) -> DnsEvent {
        let mut q = Packet::new_query(id);
        q.questions.push(Question::new(
            Name::new_unchecked("web.osprey.test"),
            TYPE::A.into(),
            CLASS::IN.into(),
            false,
        ));
        let bytes = q.build_bytes_vec().unwrap();
        let mut payload = [0u8; DNS_PAYLOAD_MAX];
        payload[..bytes.len()].copy_from_slice(&bytes);
        DnsEvent {
            ts_ns: 1,
            flow: FlowKey {
                direction: DIR_EGRESS,
                ..v4_flow(client, 40000, [10, 0, 0, 53], 53, PROTO_UDP)
            },
            payload_len: bytes.len() as u32,
            captured: bytes.len() as u32,
            payload,
        }
    }

    /// Each client address is a series of the DNS families: past the
    /// budget new clients fold into `overflow`, and idle series leave.
    #[test]
    fn dns_series_fold_past_the_budget_and_expire_when_idle() {
        let mut registry = Registry::default();
        let limits = Limits {
            idle_ttl: Duration::from_secs(60),
            series_budget: 1,
            budgets: BudgetMetrics::register(&mut registry),
        };
        let metrics = DnsMetrics::register(&mut registry);
        let hub = FlowHub::new(16, &mut registry);
        let contexts = Contexts {
            source: "ip".parse().unwrap(),
            destination: Default::default(),
        };
        let mut t = DnsTracker::new(metrics, hub, contexts, Enricher::default(), &limits);
        t.observe(&query_from([10, 0, 0, 1], 1), SystemTime::now());
        t.observe(&query_from([10, 0, 0, 2], 2), SystemTime::now());
        t.observe(&query_from([10, 0, 0, 3], 3), SystemTime::now());
        let text = exposition(&registry);
        for line in [
            "hubble_dns_queries_total{source=\"10.0.0.1\",rcode=\"\",qtypes=\"A\",ips_returned=\"0\"} 1",
            "hubble_dns_queries_total{source=\"overflow\",rcode=\"\",qtypes=\"A\",ips_returned=\"0\"} 2",
        ] {
            assert!(text.contains(line), "{line}:\n{text}");
        }
        t.queries.expire(Instant::now() + Duration::from_secs(60));
        assert!(!exposition(&registry).contains("source="));
    }
}
