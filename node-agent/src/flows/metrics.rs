//! The flow metric families and their registration.

use osprey_model::catalogue::{
    OSPREY_FLOW_BYTES, OSPREY_FLOW_LOST_BYTES, OSPREY_FLOW_LOST_PACKETS,
    OSPREY_FLOW_MAP_DRAIN_ERRORS, OSPREY_FLOW_MAP_DRAINS, OSPREY_FLOW_PACKETS, OSPREY_FLOW_SERIES,
    OSPREY_FLOW_SERIES_EXPIRED,
};
use std::fmt::Write as _;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::labels::FlowLabels;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossReason {
    /// A new flow found the kernel flow map full.
    MapFull,
    /// The packet's headers could not be parsed (truncated, unknown family).
    Unparsed,
    /// Drained from the kernel but never applied: the aggregation stage was
    /// gone when the drain sent its batch.
    DrainError,
}

impl EncodeLabelValue for LossReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::MapFull => "map_full",
            Self::Unparsed => "unparsed",
            Self::DrainError => "drain_error",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LossLabels {
    pub reason: LossReason,
}

#[derive(Clone, Default)]
pub struct FlowMetrics {
    pub bytes: Family<FlowLabels, Counter>,
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
