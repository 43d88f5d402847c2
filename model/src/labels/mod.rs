//! The typed label sets of the catalogue's families: one struct per family
//! (or per group of families that share labels), with enum label values where
//! the values are a closed set, and the [`Foldable`](crate::Foldable) form of
//! every label set that a series budget can fold.
//!
//! - [`flow`]: the `osprey_*` flow families (per flow, per drop, per
//!   connection, losses), and the `protocol` / `direction` values.
//! - [`hubble`]: the `hubble_*` flow families, led by the context labels
//!   (`source` / `destination`) their context options configure.
//! - [`dns`]: Hubble's DNS families and the DNS latency histogram.
//! - [`http`]: the HTTP request families and their trace exemplars.
//! - [`node`]: node-exporter's families (per CPU, device, filesystem).
//! - [`container`]: cAdvisor's per-cgroup families, led by the kubelet's
//!   cgroup labels, and the resource probes' losses.
//! - [`agent`]: the agent's metrics about itself.
//!
//! These are pure label types: building them from what the agent observes
//! (kernel keys, enriched flows, pods, cgroups) is the agent's business.

pub mod agent;
pub mod container;
pub mod dns;
pub mod flow;
pub mod http;
pub mod hubble;
pub mod node;

pub use agent::{
    ExportReasonLabels, FoldedLabels, MapLabels, ProgramInfoLabels, ProgramLabels,
    SeriesFamilyLabels,
};
pub use container::{
    CgroupDeviceLabels, CgroupLabels, ContainerLabels, InterfaceLabels, PodLabels,
    ResourceLossLabels, ResourceLossReason,
};
pub use dns::{DnsLabels, RcodeLabels};
pub use flow::{
    Address, ConnLabels, Direction, DropLabels, FlowLabels, LossLabels, LossReason, ProbeLabels,
    Protocol, ReasonLabels, RetransmitLabels,
};
pub use http::{
    HttpDurationLabels, HubbleHttpDurationLabels, HubbleHttpRequestLabels,
    HubbleHttpResponseLabels, Reporter, TraceExemplar, TraceLabel, UnparsedLabels,
};
pub use hubble::{
    ContextLabels, FlowsProcessedLabels, HubbleDropLabels, IcmpLabels, LostEventsLabels,
    LostEventsSource, TcpFlagLabels,
};
pub use node::{CpuLabels, DeviceLabels, FilesystemLabels};
