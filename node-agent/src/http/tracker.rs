//! Pairs HTTP requests with their responses per connection, in order, and
//! records each pair in the HTTP families with its trace as the exemplar.
//!
//! A connection is one socket's view: the server's socket sees the request
//! enter and the response leave; the client's sees the request leave and the
//! response enter. Both are tracked, each with its own reporter, when both
//! ends are on this node. Durations are kernel timestamp differences (request
//! start to response start at the same socket).

use std::{
    collections::{HashMap, VecDeque, hash_map::Entry},
    net::IpAddr,
    time::{Duration, Instant, SystemTime},
};

use osprey_abi::DIR_INGRESS;
use osprey_model::labels::{
    ContextLabels, HttpDurationLabels, HubbleHttpDurationLabels, HubbleHttpRequestLabels,
    HubbleHttpResponseLabels, Reporter, TraceExemplar, TraceLabel,
};
use tokio::sync::mpsc;

use super::{
    message::{self, Request, Start, Trace},
    metrics::{HttpMetrics, count, observe},
    route::Routes,
    spans::{HttpSpans, SpanInput, SpanSink, span, unix_ns},
    traceparent::Hex,
};
use crate::{
    flows::{
        context::Contexts,
        enrich::{Enricher, Peer, address},
    },
    observe::{
        entry::{FlowEntry, HttpExchange},
        hub::FlowHub,
    },
};

/// A request without a response for this long is counted as unanswered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a connection's ends, as resolved at a request, name its later
/// requests: a keep-alive connection is resolved about once a second, not
/// at every request, and a pod the API names later is seen within that.
const ENDS_TTL: Duration = Duration::from_secs(1);
/// Requests waiting per connection (pipelining depth); past it the oldest
/// is counted as unanswered.
const MAX_PENDING: usize = 64;
/// Connections with requests waiting; a request on a new connection past
/// this is counted as unanswered at once.
const MAX_CONNECTIONS: usize = 65_536;

/// A socket's view of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConnKey {
    reporter: Reporter,
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
}

/// A connection's ends and context labels: resolved at a request, kept for
/// `ENDS_TTL`.
#[derive(Debug)]
struct Ends {
    client: Peer,
    server: Peer,
    context: ContextLabels,
    resolved: Instant,
}

impl Ends {
    /// The client and server ends of the connection `key`, named now.
    fn resolve(enricher: &Enricher, contexts: &Contexts, key: &ConnKey, now: Instant) -> Self {
        let local = enricher.peer(key.local.0, key.local.1);
        let remote = enricher.peer(key.remote.0, key.remote.1);
        let (client, server) = match key.reporter {
            Reporter::Server => (remote, local),
            Reporter::Client => (local, remote),
        };
        Self {
            context: contexts.between(&client, &server),
            client,
            server,
            resolved: now,
        }
    }
}

/// A socket's view of a connection: its ends, and its requests waiting for
/// their responses, oldest first.
#[derive(Debug)]
struct Conn {
    ends: Ends,
    pending: VecDeque<Pending>,
}

#[derive(Debug)]
struct Pending {
    ts_ns: u64,
    at: SystemTime,
    /// The request's exemplar: made once, at the request.
    exemplar: Option<TraceExemplar>,
    request: Request,
    trace: Option<RequestTrace>,
}

/// The trace a request belongs to, and its span's id.
#[derive(Debug, Clone, Copy)]
struct RequestTrace {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_id: Option<[u8; 8]>,
    /// Whether the request becomes a span (whose id the exemplar then
    /// carries; otherwise the caller's span, its parent).
    span: bool,
}

/// What the tracker is configured with.
#[derive(Clone, Default)]
pub struct HttpOptions {
    pub routes: Routes,
    pub trace_label: TraceLabel,
    pub spans: HttpSpans,
    /// Where spans go; None: no spans.
    pub sink: Option<SpanSink>,
}

pub struct HttpTracker {
    metrics: HttpMetrics,
    hub: FlowHub,
    contexts: Contexts,
    enricher: Enricher,
    options: HttpOptions,
    conns: HashMap<ConnKey, Conn, foldhash::fast::RandomState>,
    /// The table was full of connections with requests waiting at the last
    /// look: until the next `expire`, a new one is not looked for room for.
    crowded: bool,
}

impl HttpTracker {
    pub fn new(
        metrics: HttpMetrics,
        hub: FlowHub,
        contexts: Contexts,
        enricher: Enricher,
        options: HttpOptions,
    ) -> Self {
        Self {
            metrics,
            hub,
            contexts,
            enricher,
            options,
            conns: HashMap::default(),
            crowded: false,
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Vec<super::HttpStart>>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                events = rx.recv() => match events {
                    Some(events) => {
                        let now = SystemTime::now();
                        for event in &events {
                            self.observe(event, now);
                        }
                    }
                    None => return,
                },
                _ = tick.tick() => self.expire(SystemTime::now()),
            }
        }
    }

    pub fn observe(&mut self, event: &super::HttpStart, now: SystemTime) {
        let segment = message::parse(&event.payload, event.cut);
        for reason in &segment.unparsed {
            self.metrics.unparsed(reason);
        }
        let flow = &event.flow;
        let src = (address(flow.family, &flow.src_addr), flow.src_port);
        let dst = (address(flow.family, &flow.dst_addr), flow.dst_port);
        let ingress = flow.direction == DIR_INGRESS;
        let (local, remote) = if ingress { (dst, src) } else { (src, dst) };
        for start in segment.starts {
            match start {
                Start::Request(request) => {
                    // A request entering a socket reaches its server.
                    let reporter = if ingress {
                        Reporter::Server
                    } else {
                        Reporter::Client
                    };
                    let key = ConnKey {
                        reporter,
                        local,
                        remote,
                    };
                    self.request(key, event.ts_ns, request, now);
                }
                Start::Response(response) => {
                    // Interim responses (100 Continue, 103 Early Hints)
                    // precede the final one.
                    if (100..200).contains(&response.status) && response.status != 101 {
                        continue;
                    }
                    let reporter = if ingress {
                        Reporter::Client
                    } else {
                        Reporter::Server
                    };
                    let key = ConnKey {
                        reporter,
                        local,
                        remote,
                    };
                    self.response(key, event.ts_ns, response.status, now);
                }
            }
        }
    }

    /// The request's trace: its caller's, or (with `http_spans = "all"`
    /// and somewhere to send spans) a new one.
    fn trace(&self, trace: &Trace) -> Option<RequestTrace> {
        let emit = self.options.sink.is_some();
        let span_id = || loop {
            let id = fastrand::u64(..).to_be_bytes();
            if id != [0; 8] {
                return id;
            }
        };
        match trace {
            Trace::Parent(tp) => Some(RequestTrace {
                trace_id: tp.trace_id,
                span_id: span_id(),
                parent_id: Some(tp.parent_id),
                span: emit && self.options.spans != HttpSpans::Off,
            }),
            Trace::None | Trace::Invalid if emit && self.options.spans == HttpSpans::All => {
                Some(RequestTrace {
                    trace_id: fastrand::u128(1..).to_be_bytes(),
                    span_id: span_id(),
                    parent_id: None,
                    span: true,
                })
            }
            Trace::None | Trace::Invalid => None,
        }
    }

    fn exemplar(&self, trace: &Option<RequestTrace>) -> Option<TraceExemplar> {
        let t = trace.as_ref()?;
        let span = match (t.span, t.parent_id) {
            (false, Some(parent)) => parent,
            _ => t.span_id,
        };
        Some(TraceExemplar {
            label: self.options.trace_label,
            trace_id: Hex(&t.trace_id).to_string(),
            span_id: Hex(&span).to_string(),
        })
    }

    fn request(&mut self, key: ConnKey, ts_ns: u64, request: Request, now: SystemTime) {
        let mono = Instant::now();
        if !self.crowded && self.conns.len() >= MAX_CONNECTIONS && !self.conns.contains_key(&key) {
            // Connections with nothing waiting make room first.
            self.conns.retain(|_, conn| !conn.pending.is_empty());
            self.crowded = self.conns.len() >= MAX_CONNECTIONS;
        }
        let trace = self.trace(&request.trace);
        let exemplar = self.exemplar(&trace);
        if let Some(trace) = &exemplar {
            // The connection's flows, drops and retransmits carry it from now.
            self.enricher
                .traces()
                .note(key.local, key.remote, trace.clone(), mono);
        }
        // One lookup: a tracked connection's ends are named again once
        // stale, a new connection's at once.
        let (enricher, contexts) = (&self.enricher, &self.contexts);
        let room = self.conns.len() < MAX_CONNECTIONS;
        let (context, conn) = match self.conns.entry(key) {
            Entry::Occupied(entry) => {
                let conn = entry.into_mut();
                if mono.duration_since(conn.ends.resolved) >= ENDS_TTL {
                    conn.ends = Ends::resolve(enricher, contexts, &key, mono);
                }
                (conn.ends.context.clone(), Some(conn))
            }
            Entry::Vacant(entry) => {
                let ends = Ends::resolve(enricher, contexts, &key, mono);
                if room {
                    let conn = entry.insert(Conn {
                        ends,
                        pending: VecDeque::new(),
                    });
                    (conn.ends.context.clone(), Some(conn))
                } else {
                    (ends.context, None)
                }
            }
        };
        let labels = HubbleHttpRequestLabels {
            context,
            method: request.method,
            protocol: "HTTP/1.1",
            reporter: key.reporter.as_str(),
        };
        count(
            &mut self.metrics.requests,
            labels,
            mono,
            exemplar.clone(),
            now,
        );
        let Some(conn) = conn else {
            self.metrics.unanswered.inc();
            return;
        };
        if conn.pending.len() >= MAX_PENDING {
            conn.pending.pop_front();
            self.metrics.unanswered.inc();
        }
        conn.pending.push_back(Pending {
            ts_ns,
            at: now,
            exemplar,
            request,
            trace,
        });
    }

    fn response(&mut self, key: ConnKey, ts_ns: u64, status: u16, now: SystemTime) {
        let Some(conn) = self.conns.get_mut(&key) else {
            self.metrics.unparsed("response_without_request");
            return;
        };
        let Some(pending) = conn.pending.pop_front() else {
            self.metrics.unparsed("response_without_request");
            return;
        };
        let seconds = ts_ns.saturating_sub(pending.ts_ns) as f64 / 1e9;
        let Ends {
            client,
            server,
            context,
            ..
        } = &conn.ends;
        let Pending {
            exemplar, request, ..
        } = &pending;
        let route = self.options.routes.of(&request.path);
        if let (Some(t), Some(sink)) = (&pending.trace, &self.options.sink)
            && t.span
        {
            sink.send(span(&SpanInput {
                server: key.reporter == Reporter::Server,
                trace_id: t.trace_id,
                span_id: t.span_id,
                parent_id: t.parent_id,
                tracestate: request.tracestate.as_deref(),
                start_unix_ns: unix_ns(pending.ts_ns),
                end_unix_ns: unix_ns(ts_ns),
                method: request.method,
                path: &request.path,
                route: route.as_deref(),
                status,
                client,
                server_peer: server,
            }));
        }
        let mono = Instant::now();
        let semconv = HttpDurationLabels {
            context: context.clone(),
            method: request.method,
            status,
            route,
            server_port: server.port,
        };
        let store = match key.reporter {
            Reporter::Server => &mut self.metrics.server,
            Reporter::Client => &mut self.metrics.client,
        };
        observe(store, semconv, mono, seconds, exemplar.clone(), now);
        let reporter = key.reporter.as_str();
        count(
            &mut self.metrics.responses,
            HubbleHttpResponseLabels {
                context: context.clone(),
                method: request.method,
                status,
                reporter,
            },
            mono,
            exemplar.clone(),
            now,
        );
        observe(
            &mut self.metrics.duration,
            HubbleHttpDurationLabels {
                context: context.clone(),
                method: request.method,
                reporter,
            },
            mono,
            seconds,
            exemplar.clone(),
            now,
        );
        if self.hub.wanted() > 0 {
            let exchange = HttpExchange {
                at: pending.at,
                client: client.clone(),
                server: server.clone(),
                reporter: key.reporter,
                method: request.method,
                path: pending.request.path,
                status,
                latency_ms: seconds * 1e3,
                trace_id: pending.exemplar.map(|e| e.trace_id),
            };
            self.hub.publish([FlowEntry::Http(exchange)]);
        }
    }

    fn expire(&mut self, now: SystemTime) {
        let unanswered = &self.metrics.unanswered;
        let mono = Instant::now();
        self.conns.retain(|_, conn| {
            conn.pending.retain(|p| {
                let keep = now.duration_since(p.at).unwrap_or_default() < ANSWER_TIMEOUT;
                if !keep {
                    unanswered.inc();
                }
                keep
            });
            // Kept while its ends are fresh: its next request reuses them.
            !conn.pending.is_empty() || mono.duration_since(conn.ends.resolved) < ENDS_TTL
        });
        self.crowded = false;
        self.metrics.expire(Instant::now());
        self.enricher.traces().expire(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use osprey_abi::{DIR_EGRESS, FlowKey, PROTO_TCP};
    use osprey_model::BudgetMetrics;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::{
        flows::handlers::Limits,
        pods::PodIndex,
        test_support::{db_pod_meta, exposition, v4_flow},
    };

    fn start(flow: FlowKey, ts_ns: u64, payload: &[u8]) -> super::super::HttpStart {
        super::super::HttpStart {
            ts_ns,
            flow,
            cut: false,
            payload: payload.into(),
        }
    }

    /// The server's socket (10.0.0.2:80) sees `path` enter at `at_ms` and
    /// a 200 leave `took_ms` later.
    fn exchange(tracker: &mut HttpTracker, path: &str, at_ms: u64, took_ms: u64) {
        let request = v4_flow([10, 0, 0, 1], 40_000, [10, 0, 0, 2], 80, PROTO_TCP);
        let mut response = v4_flow([10, 0, 0, 2], 80, [10, 0, 0, 1], 40_000, PROTO_TCP);
        response.direction = DIR_EGRESS;
        let head = format!("GET {path} HTTP/1.1\r\nHost: db\r\n\r\n");
        let now = SystemTime::now();
        tracker.observe(&start(request, at_ms * 1_000_000, head.as_bytes()), now);
        let status = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        tracker.observe(&start(response, (at_ms + took_ms) * 1_000_000, status), now);
    }

    /// A tracker over `pods` naming both ends `pod|ip`, its hub, and the
    /// registry its families are in.
    fn tracker(pods: &PodIndex) -> (HttpTracker, FlowHub, Registry) {
        let mut registry = Registry::default();
        let limits = Limits {
            idle_ttl: Duration::from_secs(60),
            series_budget: 100,
            budgets: BudgetMetrics::register(&mut registry),
        };
        let metrics = HttpMetrics::register(&mut registry, &limits);
        let hub = FlowHub::new(16, &mut registry);
        let contexts = Contexts {
            source: "pod|ip".parse().unwrap(),
            destination: "pod|ip".parse().unwrap(),
        };
        let enricher = Enricher::new(pods.clone(), BTreeMap::new());
        let tracker = HttpTracker::new(
            metrics,
            hub.clone(),
            contexts,
            enricher,
            HttpOptions::default(),
        );
        (tracker, hub, registry)
    }

    #[test]
    fn a_connection_keeps_its_ends_for_a_second_and_its_exchanges_become_records() {
        let pods = PodIndex::default();
        let (mut tracker, hub, registry) = tracker(&pods);

        exchange(&mut tracker, "/a", 1, 3);
        let recent = hub.recent();
        assert_eq!(recent.len(), 1);
        let record = recent[0].record();
        assert_eq!(
            (record.source_ip.as_str(), record.source_port),
            ("10.0.0.1", 40_000)
        );
        assert_eq!(
            (record.destination_ip.as_str(), record.destination_port),
            ("10.0.0.2", 80)
        );
        assert_eq!(record.traffic_direction.as_deref(), Some("ingress"));
        assert_eq!(record.destination_pod, None);
        let http = record.http.as_ref().expect("an HTTP record");
        assert_eq!(
            (http.method.as_str(), http.path.as_str(), http.status),
            ("GET", "/a", 200)
        );
        assert_eq!((http.latency_ms, http.reporter.as_str()), (3.0, "server"));

        // The API names the server's pod now: the connection's next request,
        // within a second, is still named as resolved at its first.
        pods.upsert(db_pod_meta());
        exchange(&mut tracker, "/b", 10, 1);
        let text = exposition(&registry);
        let requests = |destination: &str| {
            format!(
                "hubble_http_requests_total{{source=\"10.0.0.1\",destination=\"{destination}\",method=\"GET\",protocol=\"HTTP/1.1\",reporter=\"server\"}}"
            )
        };
        assert!(
            text.contains(&format!("{} 2\n", requests("10.0.0.2"))),
            "{text}"
        );

        // A second later, its next request is named afresh.
        std::thread::sleep(ENDS_TTL + Duration::from_millis(50));
        exchange(&mut tracker, "/c", 20, 1);
        let text = exposition(&registry);
        assert!(
            text.contains(&format!("{} 1\n", requests("shop/db-0"))),
            "{text}"
        );
        let recent = hub.recent();
        let last = recent.last().unwrap().record();
        assert_eq!(last.destination_pod.as_deref(), Some("db-0"));
        assert_eq!(last.http.as_ref().map(|h| h.path.as_str()), Some("/c"));
    }

    /// The value of a plain sample line of `name` in the exposition.
    fn sample(registry: &Registry, name: &str) -> String {
        let text = exposition(registry);
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    #[test]
    fn a_full_table_makes_room_from_connections_with_nothing_waiting() {
        let pods = PodIndex::default();
        let (mut tracker, _hub, registry) = tracker(&pods);
        let now = SystemTime::now();
        // The server's socket at 10.0.0.2:80; client `n` at 10.(1 + n / 65536).x.y:1000.
        let client = |n: usize| [10, 1 + (n >> 16) as u8, (n >> 8) as u8, n as u8];
        let request = |n: usize| {
            let flow = v4_flow(client(n), 1000, [10, 0, 0, 2], 80, PROTO_TCP);
            start(flow, 1_000, b"GET / HTTP/1.1\r\n\r\n")
        };
        let response = |n: usize| {
            let mut flow = v4_flow([10, 0, 0, 2], 80, client(n), 1000, PROTO_TCP);
            flow.direction = DIR_EGRESS;
            start(flow, 2_000_000, b"HTTP/1.1 204 No Content\r\n\r\n")
        };
        for n in 0..MAX_CONNECTIONS {
            tracker.observe(&request(n), now);
        }
        let unanswered = "osprey_http_unanswered_requests_total";
        assert_eq!(sample(&registry, unanswered), "0");
        // Every connection has a request waiting: no room.
        tracker.observe(&request(MAX_CONNECTIONS), now);
        assert_eq!(sample(&registry, unanswered), "1");
        // One is answered; until the next expiry the table is not searched again.
        tracker.observe(&response(0), now);
        tracker.observe(&request(MAX_CONNECTIONS + 1), now);
        assert_eq!(sample(&registry, unanswered), "2");
        // Then the answered one makes room, and the new request is paired.
        tracker.expire(now);
        tracker.observe(&request(MAX_CONNECTIONS + 2), now);
        tracker.observe(&response(MAX_CONNECTIONS + 2), now);
        assert_eq!(sample(&registry, unanswered), "2");
        let text = exposition(&registry);
        let served = text
            .lines()
            .filter(|l| {
                l.starts_with("hubble_http_responses_total{") && l.contains("status=\"204\"")
            })
            .count();
        assert_eq!(served, 2, "{text}");
    }
}
