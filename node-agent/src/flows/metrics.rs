//! The flow metric families and their registration.

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
        registry.register(
            "osprey_flow_bytes",
            "L3 bytes (IP headers included) per flow and direction, counted at the socket layer",
            m.bytes.clone(),
        );
        registry.register(
            "osprey_flow_packets",
            "Packets per flow and direction (GSO super-packets count as their segments)",
            m.packets.clone(),
        );
        registry.register(
            "osprey_flow_lost_packets",
            "Packets the flow probe could not account to a flow, by reason",
            m.lost_packets.clone(),
        );
        registry.register(
            "osprey_flow_lost_bytes",
            "Bytes of packets the flow probe could not account to a flow, by reason",
            m.lost_bytes.clone(),
        );
        registry.register(
            "osprey_flow_series",
            "Flow series currently exposed",
            m.active_series.clone(),
        );
        registry.register(
            "osprey_flow_series_expired",
            "Flow series removed after their idle TTL",
            m.expired_series.clone(),
        );
        registry.register(
            "osprey_flow_map_drains",
            "Drains of the kernel flow maps",
            m.drains.clone(),
        );
        registry.register(
            "osprey_flow_map_drain_errors",
            "Failed drains or flow entries that could not be read or removed",
            m.drain_errors.clone(),
        );
        m
    }
}
