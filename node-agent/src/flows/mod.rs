//! The flow pipeline, in the order data flows:
//! [`drain`] (kernel maps → deltas) → [`enrich`] (kernel keys → typed
//! identities, once) → [`handlers`] (one per metric family: series, budgets,
//! expiry) → `/metrics`; and the same enriched batch → flow records
//! (`observe`). [`traces`] carries HTTP requests' traces to the flows of
//! their connections.
pub mod context;
pub mod drain;
mod empty;
pub mod enrich;
pub mod handlers;
pub mod labels;
pub mod lost;
pub mod metrics;
mod slots;
pub mod traces;
