//! Series budgets: a cap on the number of series of one metric family. Past
//! it, a new series is folded into an overflow series (address and port labels
//! become "overflow"; low-cardinality labels are kept so totals still add up),
//! and `osprey_metric_series_folded_total{metric}` counts the folded series.
//! `osprey_series{family}` shows each family's live series, and a warning is
//! logged when a family starts folding (again at most every
//! [`FOLD_LOG_EVERY`] while it goes on).

use std::{
    collections::HashSet,
    hash::{BuildHasher, Hash},
    time::{Duration, Instant},
};

use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    catalogue::{OSPREY_METRIC_SERIES_FOLDED, OSPREY_SERIES},
    labels::{FoldedLabels, SeriesFamilyLabels},
};

/// While a family keeps folding, its warning is repeated at most this often.
pub const FOLD_LOG_EVERY: Duration = Duration::from_secs(300);

/// The label value that replaces high-cardinality labels of folded series.
pub const OVERFLOW: &str = "overflow";

/// Folded series are remembered (by hash) up to this many, so each is counted once.
const MAX_REMEMBERED: usize = 1 << 20;

/// A label set that can be folded into its overflow form.
pub trait Foldable {
    fn overflow(&self) -> Self;
    fn is_overflow(&self) -> bool;
}

#[derive(Clone, Default)]
pub struct BudgetMetrics {
    folded: Family<FoldedLabels, Counter>,
    live: Family<SeriesFamilyLabels, Gauge>,
}

impl BudgetMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        OSPREY_METRIC_SERIES_FOLDED.register(registry, m.folded.clone());
        OSPREY_SERIES.register(registry, m.live.clone());
        m
    }
}

pub struct SeriesBudget {
    metric: &'static str,
    limit: usize,
    folded: HashSet<u64>,
    counter: Counter,
    live: Gauge,
    /// When the last fold warning was logged.
    warned: Option<Instant>,
    hasher: std::collections::hash_map::RandomState,
}

impl SeriesBudget {
    pub fn new(metric: &'static str, limit: usize, metrics: &BudgetMetrics) -> Self {
        Self {
            metric,
            limit,
            folded: HashSet::new(),
            counter: metrics
                .folded
                .get_or_create(&FoldedLabels { metric })
                .clone(),
            live: metrics
                .live
                .get_or_create(&SeriesFamilyLabels { family: metric })
                .clone(),
            warned: None,
            hasher: Default::default(),
        }
    }

    /// The family has `live` series now (`osprey_series{family}`).
    pub fn set_live(&self, live: usize) {
        self.live.set(live as i64);
    }

    /// The labels to record under: `labels` itself if it is live or fits in
    /// the budget (`live` series now), its overflow form otherwise.
    pub fn admit<L: Foldable + Hash>(&mut self, labels: L, is_live: bool, live: usize) -> L {
        if is_live || labels.is_overflow() || live < self.limit {
            return labels;
        }
        let hash = self.hasher.hash_one(&labels);
        if self.folded.len() >= MAX_REMEMBERED || self.folded.insert(hash) {
            self.counter.inc();
        }
        let now = Instant::now();
        if self
            .warned
            .is_none_or(|at| now.duration_since(at) >= FOLD_LOG_EVERY)
        {
            self.warned = Some(now);
            tracing::warn!(
                family = self.metric,
                series_budget = self.limit,
                folded = self.counter.get(),
                "series budget reached: new series of this family fold into its overflow series \
                 (osprey_metric_series_folded_total; raise series_budget or narrow the context options)"
            );
        }
        labels.overflow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    struct L(String);

    impl Foldable for L {
        fn overflow(&self) -> Self {
            L(OVERFLOW.into())
        }
        fn is_overflow(&self) -> bool {
            self.0 == OVERFLOW
        }
    }

    #[test]
    fn folds_new_series_past_the_limit_and_counts_each_once() {
        let mut registry = Registry::default();
        let metrics = BudgetMetrics::register(&mut registry);
        let mut budget = SeriesBudget::new("m", 2, &metrics);
        assert_eq!(budget.admit(L("a".into()), false, 0), L("a".into()));
        assert_eq!(budget.admit(L("b".into()), false, 1), L("b".into()));
        assert_eq!(
            budget.admit(L("a".into()), true, 2),
            L("a".into()),
            "live series stay"
        );
        assert_eq!(budget.admit(L("c".into()), false, 2), L(OVERFLOW.into()));
        assert_eq!(budget.admit(L("c".into()), false, 2), L(OVERFLOW.into()));
        assert_eq!(budget.admit(L("d".into()), false, 2), L(OVERFLOW.into()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("osprey_metric_series_folded_total{metric=\"m\"} 2"),
            "{text}"
        );
    }
}
