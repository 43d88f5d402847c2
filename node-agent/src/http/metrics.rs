//! The HTTP families, each a series store (budget, `overflow` fold, idle
//! TTL) over an exemplar-carrying prometheus-client family.

use std::time::{Instant, SystemTime};

use crate::flows::handlers::Limits;

use osprey_model::{
    SeriesStore,
    catalogue::{
        HTTP_CLIENT_REQUEST_DURATION_SECONDS, HTTP_SERVER_REQUEST_DURATION_SECONDS,
        HUBBLE_HTTP_REQUEST_DURATION_SECONDS, HUBBLE_HTTP_REQUESTS, HUBBLE_HTTP_RESPONSES,
        OSPREY_HTTP_LOST_EVENTS, OSPREY_HTTP_UNANSWERED_REQUESTS, OSPREY_HTTP_UNPARSED,
    },
    labels::{
        HttpDurationLabels, HubbleHttpDurationLabels, HubbleHttpRequestLabels,
        HubbleHttpResponseLabels, TraceExemplar, UnparsedLabels,
    },
};
use prometheus_client::{
    metrics::{
        counter::Counter,
        exemplar::{CounterWithExemplar, HistogramWithExemplars},
        family::Family,
    },
    registry::Registry,
};

/// OpenTelemetry's recommended boundaries for HTTP durations (seconds).
const SEMCONV_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Hubble's (Prometheus' default buckets).
const HUBBLE_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type Histogram = HistogramWithExemplars<TraceExemplar>;
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;
type Counters<L> = Family<L, CounterWithExemplar<TraceExemplar>>;

fn semconv() -> Histogram {
    Histogram::new(SEMCONV_BUCKETS.into_iter())
}

fn hubble() -> Histogram {
    Histogram::new(HUBBLE_BUCKETS.into_iter())
}

pub struct HttpMetrics {
    pub server: SeriesStore<HttpDurationLabels, Histograms<HttpDurationLabels>>,
    pub client: SeriesStore<HttpDurationLabels, Histograms<HttpDurationLabels>>,
    pub requests: SeriesStore<HubbleHttpRequestLabels, Counters<HubbleHttpRequestLabels>>,
    pub responses: SeriesStore<HubbleHttpResponseLabels, Counters<HubbleHttpResponseLabels>>,
    pub duration: SeriesStore<HubbleHttpDurationLabels, Histograms<HubbleHttpDurationLabels>>,
    pub unparsed: Family<UnparsedLabels, Counter>,
    pub unanswered: Counter,
    pub lost: Counter,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry, limits: &Limits) -> Self {
        fn store<L, M: Clone + 'static, C>(
            registry: &mut Registry,
            desc: &osprey_model::catalogue::MetricDesc,
            family: Family<L, M, C>,
            limits: &Limits,
        ) -> SeriesStore<L, Family<L, M, C>>
        where
            L: osprey_model::Foldable + Clone + Eq + std::hash::Hash + Send + Sync + 'static,
            L: prometheus_client::encoding::EncodeLabelSet + std::fmt::Debug,
            Family<L, M, C>: prometheus_client::registry::Metric,
            C: prometheus_client::metrics::family::MetricConstructor<M> + Clone + 'static,
        {
            desc.register(registry, family.clone());
            limits.store(family, desc.name)
        }
        let m = Self {
            server: store(
                registry,
                &HTTP_SERVER_REQUEST_DURATION_SECONDS,
                Family::new_with_constructor(semconv as fn() -> Histogram),
                limits,
            ),
            client: store(
                registry,
                &HTTP_CLIENT_REQUEST_DURATION_SECONDS,
                Family::new_with_constructor(semconv as fn() -> Histogram),
                limits,
            ),
            requests: store(registry, &HUBBLE_HTTP_REQUESTS, Family::default(), limits),
            responses: store(registry, &HUBBLE_HTTP_RESPONSES, Family::default(), limits),
            duration: store(
                registry,
                &HUBBLE_HTTP_REQUEST_DURATION_SECONDS,
                Family::new_with_constructor(hubble as fn() -> Histogram),
                limits,
            ),
            unparsed: Family::default(),
            unanswered: Counter::default(),
            lost: Counter::default(),
        };
        OSPREY_HTTP_UNPARSED.register(registry, m.unparsed.clone());
        OSPREY_HTTP_UNANSWERED_REQUESTS.register(registry, m.unanswered.clone());
        OSPREY_HTTP_LOST_EVENTS.register(registry, m.lost.clone());
        m
    }

    pub fn unparsed(&self, reason: &'static str) {
        self.unparsed
            .get_or_create(&UnparsedLabels { reason })
            .inc();
    }

    /// Removes the series idle for the TTL.
    pub fn expire(&mut self, now: Instant) {
        self.server.expire(now);
        self.client.expire(now);
        self.requests.expire(now);
        self.responses.expire(now);
        self.duration.expire(now);
    }
}

/// Observes `seconds` with `exemplar` in a histogram series of `store`.
pub fn observe<L>(
    store: &mut SeriesStore<L, Histograms<L>>,
    labels: L,
    now: Instant,
    seconds: f64,
    exemplar: Option<TraceExemplar>,
    at: SystemTime,
) where
    L: osprey_model::Foldable + Clone + Eq + std::hash::Hash,
{
    store.record(labels, now, |histogram, ()| {
        histogram.observe(seconds, exemplar, Some(at))
    });
}

/// Adds one with `exemplar` to a counter series of `store`.
pub fn count<L>(
    store: &mut SeriesStore<L, Counters<L>>,
    labels: L,
    now: Instant,
    exemplar: Option<TraceExemplar>,
    at: SystemTime,
) where
    L: osprey_model::Foldable + Clone + Eq + std::hash::Hash,
{
    store.record(labels, now, |counter, ()| {
        counter.inc_by(1, exemplar, Some(at));
    });
}
