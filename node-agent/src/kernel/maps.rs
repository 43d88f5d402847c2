//! The map handles the probes hand over once loaded: the flow maps to the
//! drain stage, the resource maps to the scrape-time readers.

use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap, RingBuf};
use osprey_abi::{
    BlockKey, BlockStats, ConnKey, DropKey, FlowKey, FlowLoss, FlowSlots, FlowStats, ResourceLoss,
    RunqHist,
};

use crate::kernel::{clock::KernelClock, grace::ProgramGrace};

/// A flow map: shared by the CPUs (the probes' layout), or one value per
/// CPU (the former layout, which the probes bench still builds to compare).
pub enum FlowMap {
    Shared(HashMap<MapData, FlowKey, FlowStats>),
    PerCpu(PerCpuHashMap<MapData, FlowKey, FlowStats>),
}

impl TryFrom<Map> for FlowMap {
    type Error = MapError;

    fn try_from(map: Map) -> Result<Self, MapError> {
        match map {
            Map::PerCpuHashMap(_) => PerCpuHashMap::try_from(map).map(Self::PerCpu),
            map => HashMap::try_from(map).map(Self::Shared),
        }
    }
}

/// Handles to the probes' maps, moved to the drain stage.
pub struct FlowMaps {
    pub flows: [FlowMap; 2],
    /// The per-CPU last-flow slots of both map indexes (see `osprey_abi::FlowSlot`).
    pub slots: PerCpuArray<MapData, FlowSlots>,
    /// Counts shared by every CPU (atomic adds: rare events).
    pub drops: [HashMap<MapData, DropKey, u64>; 2],
    pub retransmits: [HashMap<MapData, FlowKey, u64>; 2],
    pub connections: [HashMap<MapData, ConnKey, u64>; 2],
    /// Taken by the DNS reader.
    pub dns: Option<RingBuf<MapData>>,
    /// Taken by the HTTP reader (None when HTTP is off).
    pub http: Option<RingBuf<MapData>>,
    pub active: Array<MapData, u32>,
    /// Waits out the programs that read `active` before a flip; None where
    /// this kernel cannot create it (the drain then sleeps a few ms).
    pub grace: Option<ProgramGrace>,
    pub loss: PerCpuArray<MapData, FlowLoss>,
    /// Turns the flows' tick counts into time.
    pub clock: KernelClock,
}

/// Handles to the resource probes' maps (cumulative; read at scrape time).
pub struct ResourceMaps {
    pub runq: PerCpuHashMap<MapData, u64, RunqHist>,
    pub block: PerCpuHashMap<MapData, BlockKey, BlockStats>,
    /// Taken by the OOM event reader.
    pub oom: Option<RingBuf<MapData>>,
    pub loss: PerCpuArray<MapData, ResourceLoss>,
}
