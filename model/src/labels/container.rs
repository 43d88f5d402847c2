//! Label sets of cAdvisor's per-cgroup families, with the kubelet's label
//! names: the cgroup and what the pod watch knows of it, then the network
//! interface or block device of the per-interface and per-device families;
//! and the reasons of the resource probes' losses. The cgroup sets borrow
//! their values (a scrape encodes them once and keeps nothing).

use std::fmt::Write as _;

use prometheus_client::encoding::{
    EncodeLabel, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};

/// The kubelet's labels of a cgroup, on every `container_*` series: `id`
/// (the cgroup path: a systemd unit, or a container id standalone), then,
/// once the pod watch knows them, the pod's `namespace` and `pod`, and for a
/// container's cgroup its `container`, `image` and `name`. An unknown label
/// is left out rather than sent empty on every series (an absent label and
/// an empty one are the same to PromQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CgroupLabels<'a> {
    pub id: &'a str,
    pub pod: Option<PodLabels<'a>>,
}

/// The pod a cgroup belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PodLabels<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    /// None for the pod's own cgroup.
    pub container: Option<ContainerLabels<'a>>,
}

/// The container a cgroup is: its name in the pod, its image, and the
/// runtime's container id (the kubelet's `name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContainerLabels<'a> {
    pub container: &'a str,
    pub image: &'a str,
    pub name: &'a str,
}

impl EncodeLabelSet for CgroupLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("id", self.id).encode(encoder.encode_label())?;
        let Some(pod) = &self.pod else {
            return Ok(());
        };
        ("namespace", pod.namespace).encode(encoder.encode_label())?;
        ("pod", pod.pod).encode(encoder.encode_label())?;
        let Some(c) = &pod.container else {
            return Ok(());
        };
        ("container", c.container).encode(encoder.encode_label())?;
        ("image", c.image).encode(encoder.encode_label())?;
        ("name", c.name).encode(encoder.encode_label())
    }
}

/// `container_network_*_total`: the cgroup's labels, then the `interface`
/// (of the cgroup's network namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InterfaceLabels<'a> {
    pub cgroup: &'a CgroupLabels<'a>,
    pub interface: &'a str,
}

impl EncodeLabelSet for InterfaceLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.cgroup.encode(encoder)?;
        ("interface", self.interface).encode(encoder.encode_label())
    }
}

/// `container_fs_*_total`: the cgroup's labels, then the block `device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CgroupDeviceLabels<'a> {
    pub cgroup: &'a CgroupLabels<'a>,
    pub device: &'a str,
}

impl EncodeLabelSet for CgroupDeviceLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.cgroup.encode(encoder)?;
        ("device", self.device).encode(encoder.encode_label())
    }
}

/// Why the resource probes could not account an event: which kernel map or
/// ring buffer was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceLossReason {
    /// A wake-up not timed: the run-queue task map was full.
    RunqStartMapFull,
    /// A new cgroup's wait found the run-queue histogram map full.
    RunqLatencyMapFull,
    /// A block IO of a new (cgroup, device, op) key found the map full.
    BlockIoMapFull,
    /// An OOM kill found the event ring buffer full.
    OomRingFull,
}

impl EncodeLabelValue for ResourceLossReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::RunqStartMapFull => "runq_start_map_full",
            Self::RunqLatencyMapFull => "runq_latency_map_full",
            Self::BlockIoMapFull => "block_io_map_full",
            Self::OomRingFull => "oom_ring_full",
        })
    }
}

/// `osprey_resource_probe_lost_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResourceLossLabels {
    pub reason: ResourceLossReason,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::{
        encoding::text::encode,
        metrics::{counter::Counter, family::Family},
        registry::Registry,
    };

    fn exposition<L>(labels: L) -> String
    where
        L: EncodeLabelSet + Clone + Eq + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static,
    {
        let mut registry = Registry::default();
        let family = Family::<L, Counter>::default();
        registry.register("c", "C", family.clone());
        family.get_or_create(&labels).inc();
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    static STANDALONE: CgroupLabels<'static> = CgroupLabels {
        id: "/system.slice/containerd.service",
        pod: None,
    };

    static CONTAINER: CgroupLabels<'static> = CgroupLabels {
        id: "/kubepods/pod1/abc",
        pod: Some(PodLabels {
            namespace: "shop",
            pod: "web-0",
            container: Some(ContainerLabels {
                container: "web",
                image: "nginx:1",
                name: "abc",
            }),
        }),
    };

    /// The kubelet's order; unknown labels absent; the family's own last.
    #[test]
    fn cgroup_labels_lead_in_the_kubelets_order() {
        let text = exposition(STANDALONE);
        assert!(
            text.contains("c_total{id=\"/system.slice/containerd.service\"} 1"),
            "{text}"
        );
        let pod = CgroupLabels {
            id: "/kubepods/pod1",
            pod: Some(PodLabels {
                namespace: "shop",
                pod: "web-0",
                container: None,
            }),
        };
        let text = exposition(pod);
        assert!(
            text.contains("c_total{id=\"/kubepods/pod1\",namespace=\"shop\",pod=\"web-0\"} 1"),
            "{text}"
        );
        let text = exposition(InterfaceLabels {
            cgroup: &CONTAINER,
            interface: "eth0",
        });
        assert!(
            text.contains("c_total{id=\"/kubepods/pod1/abc\",namespace=\"shop\",pod=\"web-0\",container=\"web\",image=\"nginx:1\",name=\"abc\",interface=\"eth0\"} 1"),
            "{text}"
        );
        let text = exposition(CgroupDeviceLabels {
            cgroup: &STANDALONE,
            device: "vda",
        });
        assert!(
            text.contains("c_total{id=\"/system.slice/containerd.service\",device=\"vda\"} 1"),
            "{text}"
        );
        let text = exposition(ResourceLossLabels {
            reason: ResourceLossReason::OomRingFull,
        });
        assert!(
            text.contains("c_total{reason=\"oom_ring_full\"} 1"),
            "{text}"
        );
    }
}
