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

/// A batch of drops of `flow`, one per (reason, packets).
pub fn drops_of(flow: FlowKey, drops: &[(u32, u64)]) -> crate::flows::drain::FlowBatch {
    crate::flows::drain::FlowBatch {
        drops: drops
            .iter()
            .map(|&(reason, n)| {
                (
                    osprey_abi::DropKey {
                        flow,
                        reason,
                        _pad: 0,
                        location: 0,
                    },
                    n,
                )
            })
            .collect(),
        ..Default::default()
    }
}

/// Pod `shop/db-0` of StatefulSet `db`, at 10.0.0.2.
pub fn db_pod_meta() -> crate::pods::PodMeta {
    crate::pods::PodMeta {
        namespace: "shop".into(),
        name: "db-0".into(),
        uid: "u1".into(),
        workload: "db".into(),
        workload_kind: "StatefulSet".into(),
        ips: vec!["10.0.0.2".parse().unwrap()],
        containers: Vec::new(),
    }
}

/// [`db_pod_meta`] in a fresh index.
pub fn db_pod() -> crate::pods::PodIndex {
    let pods = crate::pods::PodIndex::default();
    pods.upsert(db_pod_meta());
    pods
}
