//! Helpers shared by the unit tests.

use osprey_abi::{FAMILY_V4, FlowKey, addr_words};
use prometheus_client::{encoding::text::encode, registry::Registry};

/// The registry as the text exposition `/metrics` serves.
pub fn exposition(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("a registry encodes to text");
    text
}

/// An IPv4 flow key, direction 0 (ingress) unless set afterwards.
pub fn v4_flow(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, protocol: u8) -> FlowKey {
    FlowKey {
        src_addr: addr_words(&src),
        dst_addr: addr_words(&dst),
        cgroup_id: 0,
        src_port: sport,
        dst_port: dport,
        family: FAMILY_V4,
        protocol,
        direction: 0,
        _pad: 0,
    }
}
