//! Osprey's node agent, as a library; `osprey-agent` is its thin binary.
//!
//! Data flows one way through these modules:
//! [`kernel`] (probes, maps, ring buffers) → [`flows::drain`] → enrichment
//! ([`pods`], [`flows::context`]) → aggregation into the families of
//! [`flows`], [`dns`], [`http`], [`resources`] (series stores of
//! `osprey-model`) → exposition ([`server`]: `/metrics`, [`observe`] and
//! [`events`] streams; [`push`]: OTLP).
//! [`agent`] wires the stages.

pub mod agent;
pub mod cgroup;
pub mod cli;
pub mod config;
pub mod dns;
pub mod events;
pub mod flows;
pub mod http;
pub mod kernel;
pub mod observe;
pub mod pods;
pub mod push;
pub mod resources;
pub mod self_metrics;
pub mod server;
pub mod summary;
pub mod supervise;
#[cfg(test)]
mod test_support;
