//! Per-cgroup resources: the cgroupfs collector joined with the kernel's
//! run-queue and block IO maps, and the OOM event stage (ring buffer →
//! resource events), when the config has cgroup metrics on.

use prometheus_client::{metrics::counter::Counter, registry::Registry};
use tracing::warn;

use osprey_abi::OomEvent;

use crate::{
    config::{self, Config},
    events::EventHub,
    kernel::{maps::ResourceMaps, ring},
    pods::PodIndex,
    resources,
    supervise::{self, Health},
};

/// Registers the cgroup collector and starts the OOM reader, unless
/// `cgroup_metrics_limit` is 0 or this host has no cgroup mount.
pub fn register(
    config: &Config,
    registry: &mut Registry,
    health: &Health,
    maps: Option<ResourceMaps>,
    pods: PodIndex,
    events: &EventHub,
    oom_malformed: Counter,
) {
    if config.cgroup_metrics_limit == 0 {
        return;
    }
    let Some(layout) = resources::cgroupfs::Layout::detect() else {
        warn!("no cgroup v1 cpu/cpuacct/memory or v2 mount found: container_* metrics are off");
        return;
    };
    let kernel = match (maps, layout.v2_root()) {
        (Some(mut m), Some(v2)) => {
            let kernel =
                resources::kernel::KernelResources::new(m.runq, m.block, m.loss, v2.to_owned());
            if let Some(ring) = m.oom.take() {
                let (kernel, hub) = (kernel.clone(), events.clone());
                supervise::spawn(
                    health,
                    "oom-events",
                    ring::read::<OomEvent>("oom", ring, oom_malformed, move |events| {
                        hub.publish(events.iter().map(|e| kernel.oom_kill(e)))
                    }),
                );
            }
            Some(kernel)
        }
        _ => {
            warn!(
                "run-queue latency, block IO and OOM probes are off: per-cgroup figures come from cgroupfs only"
            );
            None
        }
    };
    registry.register_collector(Box::new(
        resources::CgroupCollector::new(
            layout,
            config.cgroup_metrics_limit,
            config.cgroup_open_files,
            kernel,
            pods,
        )
        .sandbox_metrics(config.container_sandbox_metrics == config::SandboxMetrics::All)
        .pod_metrics(config.container_pod_metrics == config::PodMetrics::All),
    ));
}
