//! `osprey_tcp_rtt_seconds`: the kernel's log2 histogram of TCP smoothed RTT
//! samples (sock_ops RTT callbacks), exposed as a Prometheus histogram with
//! power-of-two bucket bounds. The kernel counts are cumulative, so the
//! exposed histogram is a copy of the kernel's, not a re-observation.

use std::sync::{Arc, Mutex};

use osprey_abi::RTT_BUCKETS;
use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, TypedMetric},
    registry::Registry,
};

/// The kernel histogram summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttSnapshot {
    /// `buckets[i]`: samples in [2^i, 2^(i+1)) µs.
    pub buckets: [u64; RTT_BUCKETS as usize],
    pub sum_us: u64,
    pub count: u64,
}

impl Default for RttSnapshot {
    fn default() -> Self {
        Self {
            buckets: [0; RTT_BUCKETS as usize],
            sum_us: 0,
            count: 0,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RttHistogram(Arc<Mutex<RttSnapshot>>);

impl RttHistogram {
    pub fn register(registry: &mut Registry) -> Self {
        let h = Self::default();
        registry.register(
            "osprey_tcp_rtt_seconds",
            "Smoothed TCP round-trip time samples (sock_ops RTT callbacks), log2 buckets",
            h.clone(),
        );
        h
    }

    pub fn set(&self, snapshot: RttSnapshot) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }
}

impl TypedMetric for RttHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for RttHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let s = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Upper bound of bucket i is 2^(i+1) µs; the last one is +Inf.
        let mut buckets: Vec<(f64, u64)> = s
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| ((1u64 << (i + 1)) as f64 / 1e6, *n))
            .collect();
        if let Some(last) = buckets.last_mut() {
            last.0 = f64::MAX;
        }
        encoder.encode_histogram::<NoLabelSet>(s.sum_us as f64 / 1e6, s.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_cumulative_power_of_two_buckets() {
        let mut registry = Registry::default();
        let h = RttHistogram::register(&mut registry);
        let mut s = RttSnapshot::default();
        s.buckets[6] = 3; // 64..128 µs
        s.buckets[10] = 1; // 1024..2048 µs
        s.sum_us = 3 * 100 + 1500;
        s.count = 4;
        h.set(s);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("osprey_tcp_rtt_seconds_bucket{le=\"0.000128\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("osprey_tcp_rtt_seconds_bucket{le=\"0.002048\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("osprey_tcp_rtt_seconds_bucket{le=\"+Inf\"} 4"),
            "{text}"
        );
        assert!(text.contains("osprey_tcp_rtt_seconds_count 4"), "{text}");
        assert!(text.contains("osprey_tcp_rtt_seconds_sum 0.0018"), "{text}");
    }
}
