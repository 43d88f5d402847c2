//! The lookup cost of identity per flow end, for `cargo xtask bench --only
//! identity`: the agent's index (`PodIndex`) filled as the watches fill it
//! with `PODS SERVICES NODES` (default 10,000, 1,000, 100), then
//! `identify` over shuffled addresses of each kind, beside a standalone
//! index (the agent without Kubernetes). Median of 5 passes, ns per lookup;
//! enrichment does one lookup per end, two per flow.

use std::{hint::black_box, net::IpAddr, time::Instant};

use node_agent::pods::{NodeMeta, PodIndex, PodMeta, ServiceMeta};

fn ip(s: String) -> IpAddr {
    s.parse().expect("a generated address")
}

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (pods, services, nodes) = (arg(1, 10_000), arg(2, 1_000), arg(3, 100));
    let node_ip = |n: usize| ip(format!("192.168.{}.{}", n / 250, n % 250 + 1));
    let pod_ip = |p: usize| {
        let n = p % nodes;
        ip(format!(
            "10.{}.{}.{}",
            n / 256 + 64,
            n % 256,
            (p / nodes + 1) % 254 + 1
        ))
    };
    let index = PodIndex::for_cluster(Some("node-0".into()), vec!["10.96.0.0/12".parse().unwrap()]);
    index.replace_nodes(
        (0..nodes)
            .map(|n| NodeMeta {
                name: format!("node-{n}"),
                addresses: vec![node_ip(n)],
                pod_cidrs: vec![
                    format!("10.{}.{}.0/24", n / 256 + 64, n % 256)
                        .parse()
                        .unwrap(),
                ],
            })
            .collect(),
    );
    index.replace(
        (0..pods)
            .map(|p| PodMeta {
                namespace: format!("ns-{}", p % 50),
                name: format!("app-{}-5f6d7c-{p:05}", p % 500),
                uid: format!("uid-{p:08}"),
                workload: format!("app-{}", p % 500),
                workload_kind: "Deployment".into(),
                ips: vec![pod_ip(p)],
                containers: Vec::new(),
            })
            .collect(),
    );
    index.replace_services(
        (0..services)
            .map(|s| ServiceMeta {
                namespace: format!("ns-{}", s % 50),
                name: format!("svc-{s}"),
                cluster_ips: vec![ip(format!("10.96.{}.{}", s / 250, s % 250 + 1))],
            })
            .collect(),
    );
    index.synced(|s| {
        s.pods = true;
        s.services = true;
        s.nodes = true;
    });
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
    let kinds: Vec<(&str, Vec<IpAddr>)> = vec![
        ("a pod", shuffled((0..pods).map(pod_ip).collect())),
        (
            "a Service",
            shuffled(
                (0..services)
                    .map(|s| ip(format!("10.96.{}.{}", s / 250, s % 250 + 1)))
                    .collect(),
            ),
        ),
        ("another node", shuffled((1..nodes).map(node_ip).collect())),
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
            shuffled(
                (0..nodes)
                    .map(|n| ip(format!("10.{}.{}.255", n / 256 + 64, n % 256)))
                    .collect(),
            ),
        ),
    ];
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
    println!(
        "Identity lookup per flow end ({pods} pods, {services} Services, {nodes} Nodes; median of 5 passes)"
    );
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
