//! One series store for every family whose series come and go.
//!
//! A [`SeriesStore`] keeps, per label set, when the series was last active
//! and an optional state of the caller's (`S`). It admits new label sets
//! through a [`SeriesBudget`] (past the budget a new series is folded into its
//! `overflow` form and counted), and removes series idle for longer than the
//! TTL from its families, so they leave both renderings at once.

use std::{
    collections::HashMap,
    hash::Hash,
    time::{Duration, Instant},
};

use prometheus_client::metrics::{
    counter::Counter,
    family::{Family, MetricConstructor},
};

use crate::budget::{Foldable, SeriesBudget};

/// The metric families a store's label sets index: a new series is created
/// in each of them once, and a series that expires is removed from each.
pub trait Families<L> {
    /// A series' metrics in these families: handles that share the
    /// families' values (prometheus-client's metrics are `Arc`s inside).
    type Series;
    /// Gets or creates the series of `labels` in every family.
    fn series(&self, labels: &L) -> Self::Series;
    fn remove(&self, labels: &L);
}

impl<L, M, C> Families<L> for Family<L, M, C>
where
    L: Clone + Eq + Hash,
    M: Clone,
    C: MetricConstructor<M>,
{
    type Series = M;

    fn series(&self, labels: &L) -> M {
        self.get_or_create(labels).clone()
    }

    fn remove(&self, labels: &L) {
        Family::remove(self, labels);
    }
}

impl<L, A: Families<L>, B: Families<L>> Families<L> for (A, B) {
    type Series = (A::Series, B::Series);

    fn series(&self, labels: &L) -> Self::Series {
        (self.0.series(labels), self.1.series(labels))
    }

    fn remove(&self, labels: &L) {
        self.0.remove(labels);
        self.1.remove(labels);
    }
}

/// A live series: its metrics (looked up in the families once, when it
/// was created: recording into a live series hashes its labels once, in
/// the store, not again in every family), when it was last active, and the
/// caller's state.
struct Entry<M, S> {
    metrics: M,
    last_active: Instant,
    state: S,
}

/// Series of one or more families indexed by the same label set `L`, with a
/// budget and an idle TTL; `S` is per-series state of the caller's.
pub struct SeriesStore<L, F: Families<L>, S = ()> {
    families: F,
    /// Hashed with foldhash (seeded per process), not SipHash: every live
    /// series is looked up once per drain, and SipHash alone took 5 % of
    /// the agent's CPU at 10k flows/s.
    series: HashMap<L, Entry<F::Series, S>, foldhash::fast::RandomState>,
    budget: SeriesBudget,
    idle_ttl: Duration,
    expired: Option<Counter>,
}

impl<L, F, S> SeriesStore<L, F, S>
where
    L: Foldable + Clone + Eq + Hash,
    F: Families<L>,
    S: Default,
{
    pub fn new(families: F, budget: SeriesBudget, idle_ttl: Duration) -> Self {
        Self {
            families,
            series: HashMap::default(),
            budget,
            idle_ttl,
            expired: None,
        }
    }

    /// Counts each expired series in `counter` too.
    pub fn counting_expired(mut self, counter: Counter) -> Self {
        self.expired = Some(counter);
        self
    }

    /// Records into the series of `labels` (or its overflow form, past the
    /// budget), marking it active at `now`: `f` gets the series' metrics
    /// and its state.
    pub fn record(&mut self, labels: L, now: Instant, f: impl FnOnce(&F::Series, &mut S)) {
        // A live series (the common case, every drain) is found without
        // copying its labels; only a new one is cloned, for its entry.
        if let Some(entry) = self.series.get_mut(&labels) {
            entry.last_active = now;
            f(&entry.metrics, &mut entry.state);
            return;
        }
        let labels = self.budget.admit(labels, false, self.series.len());
        let families = &self.families;
        let entry = match self.series.entry(labels) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let metrics = families.series(e.key());
                e.insert(Entry {
                    metrics,
                    last_active: now,
                    state: S::default(),
                })
            }
        };
        entry.last_active = now;
        f(&entry.metrics, &mut entry.state);
        self.budget.set_live(self.series.len());
    }

    /// Removes the series idle for the TTL or longer at `now`, from the store
    /// and from its families; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let ttl = self.idle_ttl;
        let families = &self.families;
        let before = self.series.len();
        self.series.retain(|labels, entry| {
            let keep = now.duration_since(entry.last_active) < ttl;
            if !keep {
                families.remove(labels);
            }
            keep
        });
        let expired = before - self.series.len();
        self.budget.set_live(self.series.len());
        if let Some(counter) = &self.expired {
            counter.inc_by(expired as u64);
        }
        expired
    }

    /// Live series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn families(&self) -> &F {
        &self.families
    }

    /// Every live series with its state.
    pub fn iter(&self) -> impl Iterator<Item = (&L, &S)> {
        self.series.iter().map(|(l, e)| (l, &e.state))
    }

    /// Every live series' state, to update in place (e.g. per-interval resets).
    pub fn states_mut(&mut self) -> impl Iterator<Item = &mut S> {
        self.series.values_mut().map(|e| &mut e.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{BudgetMetrics, OVERFLOW};
    use prometheus_client::{
        encoding::EncodeLabelSet,
        metrics::{exemplar::HistogramWithExemplars, histogram::exponential_buckets},
        registry::Registry,
    };

    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    struct Peer {
        peer: String,
    }

    impl Foldable for Peer {
        fn overflow(&self) -> Self {
            Peer {
                peer: OVERFLOW.into(),
            }
        }
        fn is_overflow(&self) -> bool {
            self.peer == OVERFLOW
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    struct Trace {
        trace_id: String,
    }

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    fn peer(p: &str) -> Peer {
        Peer { peer: p.into() }
    }

    #[test]
    fn records_fold_past_the_budget_and_expire_from_every_family() {
        let mut registry = Registry::default();
        let budgets = BudgetMetrics::register(&mut registry);
        let bytes = Family::<Peer, Counter>::default();
        let packets = Family::<Peer, Counter>::default();
        registry.register("b", "bytes", bytes.clone());
        registry.register("p", "packets", packets.clone());
        let expired = Counter::default();
        let mut store: SeriesStore<Peer, _, u64> = SeriesStore::new(
            (bytes, packets),
            SeriesBudget::new("b", 2, &budgets),
            Duration::from_secs(10),
        )
        .counting_expired(expired.clone());
        let t0 = Instant::now();
        let put = |store: &mut SeriesStore<Peer, _, u64>, p: &str, n: u64, at| {
            store.record(peer(p), at, |(b, p): &(Counter, Counter), s| {
                b.inc_by(n * 100);
                p.inc_by(n);
                *s += n;
            })
        };
        put(&mut store, "a", 1, t0);
        put(&mut store, "b", 2, t0 + Duration::from_secs(5));
        put(&mut store, "c", 4, t0 + Duration::from_secs(5)); // past the budget
        put(&mut store, "d", 8, t0 + Duration::from_secs(5)); // past the budget
        put(&mut store, "a", 16, t0 + Duration::from_secs(5)); // live: stays
        let out = text(&registry);
        assert!(out.contains("b_total{peer=\"a\"} 1700"), "{out}");
        assert!(out.contains("p_total{peer=\"overflow\"} 12"), "{out}");
        assert!(
            out.contains("osprey_metric_series_folded_total{metric=\"b\"} 2"),
            "{out}"
        );
        assert!(out.contains("osprey_series{family=\"b\"} 3"), "{out}");
        assert_eq!(store.len(), 3);
        let states: u64 = store.iter().map(|(_, s)| *s).sum();
        assert_eq!(states, 31);

        // Everything was last active at t0+5 except nothing; at t0+14 "a",
        // "b" and overflow are 9 s idle: kept. At t0+15 all go.
        assert_eq!(store.expire(t0 + Duration::from_secs(14)), 0);
        assert_eq!(store.expire(t0 + Duration::from_secs(15)), 3);
        assert_eq!(expired.get(), 3);
        let out = text(&registry);
        assert!(!out.contains("peer="), "{out}");
        assert!(out.contains("osprey_series{family=\"b\"} 0"), "{out}");
    }

    #[test]
    fn a_histogram_with_exemplars_is_a_family_like_any_other() {
        let mut registry = Registry::default();
        let budgets = BudgetMetrics::register(&mut registry);
        let family = Family::<Peer, HistogramWithExemplars<Trace>>::new_with_constructor(|| {
            HistogramWithExemplars::new(exponential_buckets(0.001, 10.0, 4))
        });
        registry.register("latency", "seconds", family.clone());
        let mut store: SeriesStore<Peer, _> = SeriesStore::new(
            family,
            SeriesBudget::new("latency", 10, &budgets),
            Duration::from_secs(10),
        );
        let t0 = Instant::now();
        store.record(peer("a"), t0, |h, _| {
            h.observe(
                0.05,
                Some(Trace {
                    trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                }),
                None,
            )
        });
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains(
                "latency_bucket{le=\"0.1\",peer=\"a\"} 1 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.05"
            ),
            "{out}"
        );
        store.expire(t0 + Duration::from_secs(10));
        assert!(!text(&registry).contains("peer="));
    }
}
