//! Osprey's metric model, shared by the agent's `/metrics` and its OTLP push.
//!
//! - [`store`]: one series store for every family whose series come and go
//!   (flows, drops, retransmits, connections): a [series budget](budget) with
//!   the `overflow` fold, and idle expiry.
//! - [`record`] and [`event`]: the flow records and resource events the
//!   agent streams, as wire types the agent, the CLI and the collector share.
//! - [`catalogue`]: the name, help and unit of every family the agent
//!   exposes (flows, DNS, HTTP, node-exporter's, cAdvisor's, its own), through
//!   which it registers and encodes them; [`labels`]: their typed label sets.
//! - [`exemplar`]: trace-carrying counters and histograms.
//! - [`otlp`]: the registry that `/metrics` encodes, rendered as OTLP metrics
//!   (exemplars included) from the same snapshot.
//!
//! Families are prometheus-client families (counters, gauges, histograms, and
//! their exemplar-carrying forms): the registry is the one source of truth,
//! and both renderings read it.

pub mod budget;
pub mod catalogue;
pub mod event;
pub mod exemplar;
pub mod labels;
pub mod otlp;
pub mod record;
pub mod store;

pub use budget::{BudgetMetrics, Foldable, OVERFLOW, SeriesBudget};
pub use store::{Families, SeriesStore};
