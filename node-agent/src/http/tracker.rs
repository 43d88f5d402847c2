//! Pairs HTTP requests with their responses per connection, in order, and
//! records each pair in the HTTP families with its trace as the exemplar.
//!
//! A connection is one socket's view: the server's socket sees the request
//! enter and the response leave; the client's sees the request leave and the
//! response enter. Both are tracked, each with its own reporter, when both
//! ends are on this node. Durations are kernel timestamp differences (request
//! start to response start at the same socket).

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant, SystemTime},
};

use osprey_abi::DIR_INGRESS;
use osprey_model::{
    labels::{
        ContextLabels, HttpDurationLabels, HubbleHttpDurationLabels, HubbleHttpRequestLabels,
        HubbleHttpResponseLabels, Reporter, TraceExemplar, TraceLabel,
    },
    record::HttpInfo,
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
        hub::FlowHub,
        record::{FlowRecord, Verdict, with_peers},
    },
};

/// A request without a response for this long is counted as unanswered.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
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

#[derive(Debug)]
struct Pending {
    ts_ns: u64,
    at: SystemTime,
    /// The connection's ends and context labels, and the request's
    /// exemplar: resolved once, at the request.
    client: Peer,
    server: Peer,
    context: ContextLabels,
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
    conns: HashMap<ConnKey, VecDeque<Pending>>,
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
            conns: HashMap::new(),
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

    /// The client and server ends of a connection.
    fn ends(&self, key: &ConnKey) -> (Peer, Peer) {
        let local = self.enricher.peer(key.local.0, key.local.1);
        let remote = self.enricher.peer(key.remote.0, key.remote.1);
        match key.reporter {
            Reporter::Server => (remote, local),
            Reporter::Client => (local, remote),
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
        let (client, server) = self.ends(&key);
        let context = self.contexts.between(&client, &server);
        let labels = HubbleHttpRequestLabels {
            context: context.clone(),
            method: request.method.to_owned(),
            protocol: "HTTP/1.1",
            reporter: key.reporter.as_str(),
        };
        let trace = self.trace(&request.trace);
        let exemplar = self.exemplar(&trace);
        if let Some(trace) = &exemplar {
            // The connection's flows, drops and retransmits carry it from now.
            self.enricher
                .traces()
                .note(key.local, key.remote, trace.clone(), Instant::now());
        }
        count(
            &mut self.metrics.requests,
            labels,
            Instant::now(),
            exemplar.clone(),
            now,
        );
        if !self.conns.contains_key(&key) && self.conns.len() >= MAX_CONNECTIONS {
            self.metrics.unanswered.inc();
            return;
        }
        let queue = self.conns.entry(key).or_default();
        if queue.len() >= MAX_PENDING {
            queue.pop_front();
            self.metrics.unanswered.inc();
        }
        queue.push_back(Pending {
            ts_ns,
            at: now,
            client,
            server,
            context,
            exemplar,
            request,
            trace,
        });
    }

    fn response(&mut self, key: ConnKey, ts_ns: u64, status: u16, now: SystemTime) {
        let Some(pending) = self.conns.get_mut(&key).and_then(VecDeque::pop_front) else {
            self.metrics.unparsed("response_without_request");
            return;
        };
        if self.conns.get(&key).is_some_and(VecDeque::is_empty) {
            self.conns.remove(&key);
        }
        let seconds = ts_ns.saturating_sub(pending.ts_ns) as f64 / 1e9;
        let Pending {
            client,
            server,
            context,
            exemplar,
            request,
            ..
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
            method: request.method.to_owned(),
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
                method: request.method.to_owned(),
                status: status.to_string(),
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
                method: request.method.to_owned(),
                reporter,
            },
            mono,
            seconds,
            exemplar.clone(),
            now,
        );
        if self.hub.wanted() > 0 {
            let record = FlowRecord {
                traffic_direction: Some(
                    match key.reporter {
                        Reporter::Server => "ingress",
                        Reporter::Client => "egress",
                    }
                    .into(),
                ),
                http: Some(HttpInfo {
                    method: request.method.to_owned(),
                    path: request.path.clone(),
                    status,
                    latency_ms: seconds * 1e3,
                    reporter: reporter.to_owned(),
                    trace_id: exemplar.as_ref().map(|e| e.trace_id.clone()),
                }),
                ..FlowRecord::new(
                    pending.at,
                    Verdict::Forwarded,
                    "TCP",
                    (client.ip.to_string(), client.port),
                    (server.ip.to_string(), server.port),
                    1,
                )
            };
            self.hub.publish(vec![with_peers(record, client, server)]);
        }
    }

    fn expire(&mut self, now: SystemTime) {
        let unanswered = &self.metrics.unanswered;
        self.conns.retain(|_, queue| {
            queue.retain(|p| {
                let keep = now.duration_since(p.at).unwrap_or_default() < ANSWER_TIMEOUT;
                if !keep {
                    unanswered.inc();
                }
                keep
            });
            !queue.is_empty()
        });
        self.metrics.expire(Instant::now());
        self.enricher.traces().expire(Instant::now());
    }
}
