//! The lookup cost of identity per flow end, for `cargo xtask bench --only
//! identity`: the agent's index (`PodIndex`) filled from the stand-in API
//! server's generated cluster (`osprey_e2e::apiserver::cluster`, the objects
//! the bench's `fake-apiserver` serves; `PODS SERVICES NODES`, default
//! 10,000, 1,000, 100) as the watches fill it, then `identify` over shuffled
//! addresses of each kind, beside a standalone index (the agent without
//! Kubernetes). Median of 5 passes, ns per lookup; enrichment does one
//! lookup per end, two per flow.

use std::{hint::black_box, net::IpAddr, time::Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use node_agent::pods::{NodeMeta, PodIndex, PodMeta, ServiceMeta};

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (mut pods, mut services, mut nodes) = (Vec::new(), Vec::new(), Vec::new());
    for object in osprey_e2e::apiserver::cluster(arg(1, 10_000), arg(2, 1_000), arg(3, 100)) {
        match object["kind"].as_str() {
            Some("Pod") => pods.extend(PodMeta::from_pod(
                &serde_json::from_value::<Pod>(object).unwrap(),
            )),
            Some("Service") => services.extend(ServiceMeta::from_service(
                &serde_json::from_value::<Service>(object).unwrap(),
            )),
            _ => nodes.extend(NodeMeta::from_node(
                &serde_json::from_value::<Node>(object).unwrap(),
            )),
        }
    }
    let title = format!(
        "{} pods, {} Services, {} Nodes",
        pods.len(),
        services.len(),
        nodes.len()
    );
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut shuffled = |mut v: Vec<IpAddr>| {
        for i in (1..v.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            v.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        v
    };
    let unknown_pod = |n: &NodeMeta| match n.pod_cidrs[0].network() {
        IpAddr::V4(v4) => IpAddr::from((u32::from(v4) + 255).to_be_bytes()),
        v6 => v6,
    };
    let kinds: Vec<(&str, Vec<IpAddr>)> = vec![
        (
            "a pod",
            shuffled(pods.iter().flat_map(|p| p.ips.clone()).collect()),
        ),
        (
            "a Service",
            shuffled(
                services
                    .iter()
                    .flat_map(|s| s.cluster_ips.clone())
                    .collect(),
            ),
        ),
        (
            "another node",
            shuffled(
                nodes[1..]
                    .iter()
                    .flat_map(|n| n.addresses.clone())
                    .collect(),
            ),
        ),
        (
            "the world",
            shuffled(
                (0..10_000u32)
                    .map(|i| IpAddr::from((0xC633_6400u32 + i).to_be_bytes()))
                    .collect(),
            ),
        ),
        (
            "an unknown pod address",
            shuffled(nodes.iter().map(unknown_pod).collect()),
        ),
    ];
    let index = PodIndex::for_cluster(
        Some(nodes[0].name.clone()),
        vec!["10.96.0.0/12".parse().unwrap()],
    );
    index.replace_nodes(nodes);
    index.replace(pods);
    index.replace_services(services);
    index.synced(|s| {
        s.pods = true;
        s.services = true;
        s.nodes = true;
    });
    let standalone = PodIndex::standalone();
    let measure = |index: &PodIndex, addrs: &[IpAddr]| {
        let mut passes: Vec<f64> = (0..5)
            .map(|_| {
                let rounds = (200_000 / addrs.len()).max(1);
                let start = Instant::now();
                for _ in 0..rounds {
                    for a in addrs {
                        black_box(index.identify(black_box(a)));
                    }
                }
                start.elapsed().as_nanos() as f64 / (rounds * addrs.len()) as f64
            })
            .collect();
        passes.sort_by(f64::total_cmp);
        passes[2]
    };
    println!("Identity lookup per flow end ({title}; median of 5 passes)");
    println!();
    println!("| address | with the cluster | standalone | ratio |");
    println!("|---|---|---|---|");
    for (kind, addrs) in &kinds {
        let named = measure(&index, addrs);
        let alone = measure(&standalone, addrs);
        println!(
            "| {kind} | {named:.0} ns | {alone:.0} ns | {:.2}× |",
            named / alone
        );
    }
}
