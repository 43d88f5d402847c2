//! The flow metric families and their registration.

use osprey_model::catalogue::{
    OSPREY_FLOW_BYTES, OSPREY_FLOW_LOST_BYTES, OSPREY_FLOW_LOST_PACKETS,
    OSPREY_FLOW_MAP_DRAIN_ERRORS, OSPREY_FLOW_MAP_DRAINS, OSPREY_FLOW_PACKETS, OSPREY_FLOW_SERIES,
    OSPREY_FLOW_SERIES_EXPIRED,
};
use osprey_model::exemplar::TracedCounter;
use osprey_model::labels::{FlowLabels, LossLabels};
use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Default)]
pub struct FlowMetrics {
    /// With the latest trace seen on a counted connection as exemplar.
    pub bytes: Family<FlowLabels, TracedCounter>,
    pub packets: Family<FlowLabels, Counter>,
    pub lost_packets: Family<LossLabels, Counter>,
    pub lost_bytes: Family<LossLabels, Counter>,
    pub active_series: Gauge,
    pub expired_series: Counter,
    pub drains: Counter,
    pub drain_errors: Counter,
}

impl FlowMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        OSPREY_FLOW_BYTES.register(registry, m.bytes.clone());
        OSPREY_FLOW_PACKETS.register(registry, m.packets.clone());
        OSPREY_FLOW_LOST_PACKETS.register(registry, m.lost_packets.clone());
        OSPREY_FLOW_LOST_BYTES.register(registry, m.lost_bytes.clone());
        OSPREY_FLOW_SERIES.register(registry, m.active_series.clone());
        OSPREY_FLOW_SERIES_EXPIRED.register(registry, m.expired_series.clone());
        OSPREY_FLOW_MAP_DRAINS.register(registry, m.drains.clone());
        OSPREY_FLOW_MAP_DRAIN_ERRORS.register(registry, m.drain_errors.clone());
        m
    }
}
