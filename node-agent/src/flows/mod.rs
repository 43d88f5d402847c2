//! The flow pipeline: drain (kernel maps) → aggregate (series, TTL) → metrics.
pub mod aggregate;
pub mod connections;
pub mod context;
pub mod drain;
pub mod events;
pub mod hubble;
pub mod labels;
pub mod lost;
pub mod metrics;
pub mod rtt;
