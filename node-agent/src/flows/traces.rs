//! The trace most recently seen on each connection: the HTTP tracker notes
//! a request's trace on its connection, and enrichment attaches it to every
//! flow, drop and retransmit of that connection, so network series carry a
//! trace exemplar too (a drop or retransmit spike links to a trace that
//! suffered it).
//!
//! Bounded: past `MAX_CONNECTIONS` the least recently noted half is
//! forgotten; a connection not noted for `TTL` is forgotten at `expire`.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use osprey_model::labels::TraceExemplar;

const MAX_CONNECTIONS: usize = 16_384;
const TTL: Duration = Duration::from_secs(300);

/// A connection's two ends, in a fixed order: both directions, and both
/// sockets of a connection whose ends are on this node, share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Connection((IpAddr, u16), (IpAddr, u16));

impl Connection {
    fn of(a: (IpAddr, u16), b: (IpAddr, u16)) -> Self {
        if a <= b { Self(a, b) } else { Self(b, a) }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TraceIndex {
    inner: Arc<Mutex<HashMap<Connection, (TraceExemplar, Instant)>>>,
    /// Whether any trace was ever noted: until then a lookup costs a load.
    used: Arc<AtomicBool>,
}

impl TraceIndex {
    /// Notes `trace` as the latest on the connection between `a` and `b`.
    pub fn note(&self, a: (IpAddr, u16), b: (IpAddr, u16), trace: TraceExemplar, now: Instant) {
        self.used.store(true, Ordering::Relaxed);
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_CONNECTIONS && !map.contains_key(&Connection::of(a, b)) {
            let mut ages: Vec<Instant> = map.values().map(|(_, at)| *at).collect();
            let (_, median, _) = ages.select_nth_unstable(MAX_CONNECTIONS / 2);
            let median = *median;
            map.retain(|_, (_, at)| *at > median);
        }
        map.insert(Connection::of(a, b), (trace, now));
    }

    /// The latest trace on the connection between `a` and `b`.
    pub fn get(&self, a: (IpAddr, u16), b: (IpAddr, u16)) -> Option<TraceExemplar> {
        if !self.used.load(Ordering::Relaxed) {
            return None;
        }
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&Connection::of(a, b)).map(|(t, _)| t.clone())
    }

    /// Forgets connections not noted for the TTL.
    pub fn expire(&self, now: Instant) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, at)| now.duration_since(*at) < TTL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use osprey_model::labels::TraceLabel;

    fn trace(n: u8) -> TraceExemplar {
        TraceExemplar {
            label: TraceLabel::TraceId,
            trace_id: format!("{n:02x}").repeat(16),
            span_id: format!("{n:02x}").repeat(8),
        }
    }

    #[test]
    fn both_directions_share_the_latest_trace_and_old_ones_expire() {
        let index = TraceIndex::default();
        let a = ("10.0.0.1".parse().unwrap(), 40000);
        let b = ("10.0.0.2".parse().unwrap(), 80);
        assert_eq!(index.get(a, b), None);
        let t0 = Instant::now();
        index.note(a, b, trace(1), t0);
        index.note(b, a, trace(2), t0);
        assert_eq!(index.get(a, b), Some(trace(2)));
        assert_eq!(index.get(b, a), Some(trace(2)));
        assert_eq!(index.get(a, (b.0, 81)), None);
        index.expire(t0 + TTL);
        assert_eq!(index.get(a, b), None);
    }

    #[test]
    fn it_stays_bounded() {
        let index = TraceIndex::default();
        let t0 = Instant::now();
        let b = ("10.0.0.2".parse().unwrap(), 80);
        for port in 0..(MAX_CONNECTIONS as u16 + 10) {
            let a = ("10.0.0.1".parse().unwrap(), port);
            index.note(a, b, trace(1), t0 + Duration::from_millis(port as u64));
        }
        let len = index.inner.lock().unwrap().len();
        assert!(len <= MAX_CONNECTIONS, "{len}");
        // The most recent connection is kept.
        let last = ("10.0.0.1".parse().unwrap(), MAX_CONNECTIONS as u16 + 9);
        assert!(index.get(last, b).is_some());
    }
}
