//! Helpers shared by the unit tests.

use prometheus_client::{encoding::text::encode, registry::Registry};

/// The registry as the text exposition `/metrics` serves.
pub fn exposition(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("a registry encodes to text");
    text
}
