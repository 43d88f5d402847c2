//! Counters and histograms that carry a trace exemplar, and how a series
//! keeps the latest trace it counted.
//!
//! prometheus-client's counter replaces its exemplar at every increment
//! (with none when none is given); a network series counts traced and
//! untraced connections alike, so it keeps the last trace it saw in its
//! series state ([`LastTrace`]) and gives it again with increments that
//! have none.

use std::time::SystemTime;

use prometheus_client::metrics::exemplar::{CounterWithExemplar, HistogramWithExemplars};

use crate::labels::TraceExemplar;

pub type TracedCounter = CounterWithExemplar<TraceExemplar>;
pub type TracedHistogram = HistogramWithExemplars<TraceExemplar>;

/// A series' latest trace and when it was last counted.
pub type LastTrace = Option<(TraceExemplar, SystemTime)>;

/// Adds `v` to `counter`; its exemplar is `trace` if given, else the
/// series' `last` one, stamped now: the exemplar's value is this increment,
/// so its timestamp is this increment's too. (Stamped when the trace was
/// first seen, a later increment of the same trace would be a different
/// exemplar — another value — at the same time, which a receiver refuses
/// as out of order: Prometheus 3 rolls back a whole remote-write 2.0
/// request for it.)
pub fn inc(counter: &TracedCounter, v: u64, trace: Option<&TraceExemplar>, last: &mut LastTrace) {
    let now = SystemTime::now();
    if let Some(t) = trace {
        *last = Some((t.clone(), now));
    }
    match last {
        Some((t, at)) => {
            *at = now;
            counter.inc_by(v, Some(t.clone()), Some(now))
        }
        None => counter.inc_by(v, None, None),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::TraceLabel;

    #[test]
    fn an_untraced_increment_keeps_the_last_trace() {
        let c = TracedCounter::default();
        let mut last = None;
        inc(&c, 1, None, &mut last);
        assert!(c.get().1.is_none());
        let t = TraceExemplar {
            label: TraceLabel::TraceId,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
        };
        inc(&c, 2, Some(&t), &mut last);
        inc(&c, 3, None, &mut last);
        assert_eq!(c.get().0, 6);
        assert!(c.get().1.is_some());
        assert_eq!(last.map(|(l, _)| l), Some(t));
    }
}
