//! The render of a scrape: the gathered figures → metric families under
//! cAdvisor's names and the kubelet's labels. Reads nothing.

use osprey_model::{
    catalogue::{
        CONTAINER_CPU_RUNQUEUE_LATENCY_SECONDS, CONTAINER_OOM_EVENTS, OSPREY_CGROUP_OPEN_FILES,
        OSPREY_RESOURCE_PROBE_LOST,
    },
    labels::{
        CgroupDeviceLabels, CgroupLabels, ContainerLabels, InterfaceLabels, PodLabels,
        ResourceLossLabels, ResourceLossReason,
    },
};
use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet},
    metrics::MetricType,
};

use super::{
    families::{FAMILIES, IO, NETWORK},
    gather::{Owner, Scrape},
};

/// The kubelet's labels of a cgroup: its `id`, and its pod and container
/// once the pod watch knows them.
fn labels<'a>(id: &'a str, owner: &'a Owner) -> CgroupLabels<'a> {
    CgroupLabels {
        id,
        pod: owner.as_ref().map(|(pod, container)| PodLabels {
            namespace: &pod.namespace,
            pod: &pod.name,
            container: container.map(|i| {
                let c = &pod.containers[i];
                ContainerLabels {
                    container: &c.name,
                    image: &c.image,
                    name: &c.id,
                }
            }),
        }),
    }
}

fn counter(
    family: &mut MetricEncoder<'_>,
    labels: &impl EncodeLabelSet,
    value: f64,
) -> Result<(), std::fmt::Error> {
    family
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, f64>(&value, None)
}

/// The kernel's first bucket published as its own: the ones below (waits
/// up to 4 and 16 µs, a run queue's ordinary hand-over) are summed into it.
const RUNQ_FIRST: usize = 2;
/// The kernel's last bucket published as its own: the ones above (waits
/// past ≈ 1 s) are summed into +Inf.
const RUNQ_LAST: usize = 9;

/// The kernel's buckets (bucket `i` up to 4^(i+1) µs) as published: 64 µs,
/// 256 µs, …, 4^10 µs ≈ 1.05 s, then +Inf (9 buckets, a resolution of ×4
/// where a wait starts to matter; the run-queue alert's p99 > 100 ms lies
/// between 65 and 262 ms).
fn runq_buckets(h: &osprey_abi::RunqHist) -> Vec<(f64, u64)> {
    let mut out: Vec<(f64, u64)> = (RUNQ_FIRST..=RUNQ_LAST)
        .map(|i| ((1u64 << ((i + 1) * 2)) as f64 / 1e6, h.buckets[i]))
        .collect();
    out[0].1 += h.buckets[..RUNQ_FIRST].iter().sum::<u64>();
    out.push((
        f64::INFINITY,
        h.buckets[RUNQ_LAST + 1..].iter().sum::<u64>(),
    ));
    out
}

/// The families a pod's own cgroup and the pods' parents publish by default:
/// what cAdvisor users query on the pod's cgroup (`container=""`, no
/// `image`). A pod's sandbox (pause) cgroup publishes none of them: its
/// figures are in its pod's totals, and its series, with neither a
/// `container` nor an `image` label, are outside what dashboards sum
/// (`container!=""`, `image!=""`). Network is published as for any cgroup.
pub const TOTALS_FAMILIES: [&str; 2] = [
    osprey_model::catalogue::CONTAINER_CPU_USAGE_SECONDS.name,
    osprey_model::catalogue::CONTAINER_MEMORY_WORKING_SET_BYTES.name,
];

/// Encodes a gathered scrape.
pub(super) fn render(scrape: &Scrape, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    let base: Vec<CgroupLabels<'_>> = scrape
        .cgroups
        .iter()
        .map(|c| labels(&c.id, &c.owner))
        .collect();
    let cgroups = || base.iter().zip(&scrape.cgroups);
    for (desc, metric_type, get) in FAMILIES {
        let mut family = desc.encode_descriptor(encoder, *metric_type)?;
        let totals = TOTALS_FAMILIES.contains(&desc.name);
        for (labels, c) in cgroups() {
            // A sandbox publishes no totals; other totals-only cgroups, only those.
            let published = if totals { !c.sandbox } else { !c.totals_only() };
            if !published {
                continue;
            }
            let Some(value) = get(&c.stats) else { continue };
            let mut metric = family.encode_family(labels)?;
            match metric_type {
                MetricType::Counter => metric.encode_counter::<NoLabelSet, _, f64>(&value, None)?,
                _ => metric.encode_gauge(&value)?,
            }
        }
    }
    OSPREY_CGROUP_OPEN_FILES
        .encode_descriptor(encoder, MetricType::Gauge)?
        .encode_gauge(&(scrape.open_files as i64))?;
    for (desc, get) in NETWORK {
        let mut family = desc.encode_descriptor(encoder, MetricType::Counter)?;
        for (cgroup, c) in cgroups() {
            for dev in &c.stats.network {
                let labels = InterfaceLabels {
                    cgroup,
                    interface: &dev.interface,
                };
                counter(&mut family, &labels, get(dev) as f64)?;
            }
        }
    }
    for (desc, get) in IO {
        let mut family = desc.encode_descriptor(encoder, MetricType::Counter)?;
        for ((i, device), v) in &scrape.io {
            if scrape.cgroups[*i].totals_only() {
                continue;
            }
            let labels = CgroupDeviceLabels {
                cgroup: &base[*i],
                device,
            };
            counter(&mut family, &labels, get(v) as f64)?;
        }
    }
    let mut family = CONTAINER_OOM_EVENTS.encode_descriptor(encoder, MetricType::Counter)?;
    for (labels, c) in cgroups() {
        if c.totals_only() {
            continue;
        }
        if let Some(v) = c.oom_kills {
            counter(&mut family, labels, v as f64)?;
        }
    }
    let Some(probes) = &scrape.probes else {
        return Ok(());
    };
    let mut family =
        CONTAINER_CPU_RUNQUEUE_LATENCY_SECONDS.encode_descriptor(encoder, MetricType::Histogram)?;
    for (i, h) in &probes.runq {
        if scrape.cgroups[*i].totals_only() {
            continue;
        }
        let buckets = runq_buckets(h);
        family
            .encode_family(&base[*i])?
            .encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.count, &buckets, None)?;
    }
    let mut family = OSPREY_RESOURCE_PROBE_LOST.encode_descriptor(encoder, MetricType::Counter)?;
    let l = probes.loss;
    for (reason, v) in [
        (ResourceLossReason::RunqStartMapFull, l.runq_start_full),
        (ResourceLossReason::RunqLatencyMapFull, l.runq_hist_full),
        (ResourceLossReason::BlockIoMapFull, l.block_map_full),
        (ResourceLossReason::OomRingFull, l.oom_ring_full),
    ] {
        counter(&mut family, &ResourceLossLabels { reason }, v as f64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use osprey_abi::{ResourceLoss, RunqHist};
    use osprey_model::catalogue::CONTAINER_FAMILIES;
    use prometheus_client::{collector::Collector, registry::Registry};

    use super::*;
    use crate::{
        pods::{PodMeta, meta::ContainerMeta},
        resources::{
            gather::{Cgroup, Io, Probes},
            stats::{CgroupStats, NetDev, Pressure},
        },
    };

    struct Fixed(Scrape);

    impl std::fmt::Debug for Fixed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Fixed")
        }
    }

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
            render(&self.0, &mut encoder)
        }
    }

    fn scrape() -> Scrape {
        let pod = Arc::new(PodMeta {
            namespace: "shop".into(),
            name: "web-0".into(),
            uid: "u1".into(),
            workload: "web".into(),
            workload_kind: "StatefulSet".into(),
            ips: Vec::new(),
            containers: vec![ContainerMeta {
                id: "c1".into(),
                name: "web".into(),
                image: "nginx:1".into(),
            }],
        });
        let full = Some((1.0, Some(0.5)));
        let stats = CgroupStats {
            cpu_usage_seconds: Some(1.0),
            cpu_user_seconds: Some(1.0),
            cpu_system_seconds: Some(1.0),
            cfs_periods: Some(1),
            cfs_throttled_periods: Some(1),
            cfs_throttled_seconds: Some(1.0),
            memory_usage_bytes: Some(1),
            memory_working_set_bytes: Some(1),
            memory_rss_bytes: Some(1),
            memory_cache_bytes: Some(1),
            memory_limit_bytes: Some(1),
            processes: Some(1),
            oom_kills: Some(1),
            threads: Some(1),
            pressure: Pressure {
                cpu: full,
                memory: full,
                io: full,
            },
            io: Vec::new(),
            network: vec![NetDev {
                interface: "eth0".into(),
                rx_bytes: 10,
                ..Default::default()
            }],
        };
        Scrape {
            cgroups: vec![
                Cgroup {
                    id: "/kubepods/pod-u1/c1".into(),
                    owner: Some((pod.clone(), Some(0))),
                    stats: stats.clone(),
                    oom_kills: Some(2),
                    sandbox: false,
                    pod_own: false,
                    pods_parent: false,
                },
                Cgroup {
                    id: "/system.slice".into(),
                    owner: None,
                    stats: CgroupStats::default(),
                    oom_kills: None,
                    sandbox: false,
                    pod_own: false,
                    pods_parent: false,
                },
                Cgroup {
                    id: "/kubepods/pod-u1/pause1".into(),
                    owner: Some((pod.clone(), None)),
                    stats: stats.clone(),
                    oom_kills: Some(0),
                    sandbox: true,
                    pod_own: false,
                    pods_parent: false,
                },
                // The pod's own cgroup: no process of its own, so no network.
                Cgroup {
                    id: "/kubepods/pod-u1".into(),
                    owner: Some((pod.clone(), None)),
                    stats: CgroupStats {
                        network: Vec::new(),
                        ..stats.clone()
                    },
                    oom_kills: Some(2),
                    sandbox: false,
                    pod_own: true,
                    pods_parent: false,
                },
                // The pods' parent (QoS class): their totals only.
                Cgroup {
                    id: "/kubepods".into(),
                    owner: None,
                    stats: CgroupStats {
                        network: Vec::new(),
                        ..stats
                    },
                    oom_kills: Some(2),
                    sandbox: false,
                    pod_own: false,
                    pods_parent: true,
                },
            ],
            io: [
                ((1, "vda".to_owned()), Io::default()),
                ((3, "vda".to_owned()), Io::default()),
            ]
            .into(),
            open_files: 3,
            probes: Some(Probes {
                runq: [(
                    0,
                    RunqHist {
                        buckets: [0; osprey_abi::RUNQ_BUCKETS],
                        sum_ns: 0,
                        count: 0,
                    },
                )]
                .into(),
                loss: ResourceLoss {
                    oom_ring_full: 4,
                    ..Default::default()
                },
            }),
        }
    }

    #[test]
    fn runqueue_buckets_are_powers_of_four_microseconds_from_64_to_a_second() {
        // The kernel's bucket i holds i + 1 waits.
        let h = RunqHist {
            buckets: std::array::from_fn(|i| i as u64 + 1),
            sum_ns: 0,
            count: 78,
        };
        let b = runq_buckets(&h);
        assert_eq!(b.len(), 9);
        // Up to 4, 16 and 64 µs: 1 + 2 + 3.
        assert_eq!(b[0], (64e-6, 6));
        assert_eq!(b[1], (256e-6, 4));
        assert_eq!(b[7], ((1u64 << 20) as f64 / 1e6, 10));
        // Past 4^10 µs: 11 + 12.
        assert_eq!(b[8], (f64::INFINITY, 23));
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), h.count);
    }

    /// Every family of the catalogue's container list is rendered, under
    /// the kubelet's labels in the kubelet's order.
    #[test]
    fn renders_every_container_family_with_the_kubelets_labels() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(scrape())));
        let text = crate::test_support::exposition(&registry);
        for d in CONTAINER_FAMILIES {
            assert!(text.contains(&format!("# TYPE {} ", d.name)), "{}", d.name);
            assert!(
                text.contains(&format!("# HELP {} {}\n", d.name, d.help)),
                "{}",
                d.name
            );
        }
        for want in [
            "container_network_receive_bytes_total{id=\"/kubepods/pod-u1/c1\",namespace=\"shop\",pod=\"web-0\",container=\"web\",image=\"nginx:1\",name=\"c1\",interface=\"eth0\"} 10",
            "container_oom_events_total{id=\"/kubepods/pod-u1/c1\",namespace=\"shop\",pod=\"web-0\",container=\"web\",image=\"nginx:1\",name=\"c1\"} 2",
            "container_fs_reads_total{id=\"/system.slice\",device=\"vda\"} 0",
            "osprey_cgroup_open_files 3",
            "osprey_resource_probe_lost_total{reason=\"oom_ring_full\"} 4",
            "osprey_resource_probe_lost_total{reason=\"runq_start_map_full\"} 0",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
        // The families of the series whose labels contain `id`.
        let families_of = |id: &str| -> Vec<&str> {
            text.lines()
                .filter(|l| l.contains(id))
                .map(|l| l.split('{').next().unwrap())
                .collect()
        };
        // The sandbox: its network only (its CPU and memory are in the pod's
        // totals); OOM kills are the killed process's container's.
        assert_eq!(
            families_of("id=\"/kubepods/pod-u1/pause1\""),
            [
                "container_network_receive_bytes_total",
                "container_network_receive_packets_total",
                "container_network_receive_packets_dropped_total",
                "container_network_receive_errors_total",
                "container_network_transmit_bytes_total",
                "container_network_transmit_packets_total",
                "container_network_transmit_packets_dropped_total",
                "container_network_transmit_errors_total",
            ],
            "{text}"
        );
        // The pod's own cgroup and the pods' parent: the totals only (no
        // IO, no histogram, no OOM kills: their containers publish them).
        for id in ["id=\"/kubepods/pod-u1\"", "id=\"/kubepods\""] {
            assert_eq!(
                families_of(id),
                [
                    "container_cpu_usage_seconds_total",
                    "container_memory_working_set_bytes",
                ],
                "{text}"
            );
        }
    }
}
