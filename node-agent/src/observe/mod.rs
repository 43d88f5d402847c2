//! Live flows, like `hubble observe`: flow records (one per flow per drain
//! interval, one per dropped (flow, reason)), a hub that keeps the last ones
//! and fans new ones out, filters, the streaming HTTP API, the CLI client,
//! and the JSON-lines flow log.

pub mod api;
pub mod client;
pub mod entry;
pub mod flowlog;
pub mod hub;
pub mod ndjson;
pub mod record;
