//! Resource events (OOM kills) as a live stream: `GET /api/v1/events` and
//! `osprey-agent events`, beside the flow stream of `observe`.

pub mod api;
pub mod client;
/// Resource events are wire types of the model crate.
pub use osprey_model::event as record;

pub type EventHub = crate::observe::hub::Hub<record::ResourceEvent>;

pub fn hub(capacity: usize, registry: &mut prometheus_client::registry::Registry) -> EventHub {
    EventHub::with_lost_metric(
        capacity,
        registry,
        &osprey_model::catalogue::OSPREY_EVENTS_LOST_RECORDS,
    )
}
