//! Per-cgroup resource usage under cAdvisor's names, read from cgroupfs at
//! scrape time (like the kubelet's cAdvisor endpoint). Labels: `id` (the
//! cgroup path); the kubelet-style `namespace`, `pod`, `container`, `image`
//! join once the Kubernetes mapping knows them.

pub mod cgroupfs;
pub mod node;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet},
    metrics::MetricType,
};

use cgroupfs::{CgroupStats, Layout};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CgroupLabels {
    id: String,
}

/// Encodes cgroup stats on every scrape; at most `limit` cgroups.
#[derive(Debug)]
pub struct CgroupCollector {
    layout: Layout,
    limit: usize,
}

impl CgroupCollector {
    pub fn new(layout: Layout, limit: usize) -> Self {
        Self { layout, limit }
    }
}

type Getter = fn(&CgroupStats) -> Option<f64>;

/// (name, help, type, value): cAdvisor's families.
const FAMILIES: &[(&str, &str, MetricType, Getter)] = &[
    (
        "container_cpu_usage_seconds",
        "Cumulative cpu time consumed",
        MetricType::Counter,
        |s| s.cpu_usage_seconds,
    ),
    (
        "container_cpu_user_seconds",
        "Cumulative user cpu time consumed",
        MetricType::Counter,
        |s| s.cpu_user_seconds,
    ),
    (
        "container_cpu_system_seconds",
        "Cumulative system cpu time consumed",
        MetricType::Counter,
        |s| s.cpu_system_seconds,
    ),
    (
        "container_cpu_cfs_periods",
        "Number of elapsed enforcement period intervals",
        MetricType::Counter,
        |s| s.cfs_periods.map(|v| v as f64),
    ),
    (
        "container_cpu_cfs_throttled_periods",
        "Number of throttled period intervals",
        MetricType::Counter,
        |s| s.cfs_throttled_periods.map(|v| v as f64),
    ),
    (
        "container_cpu_cfs_throttled_seconds",
        "Total time duration the container has been throttled",
        MetricType::Counter,
        |s| s.cfs_throttled_seconds,
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        MetricType::Gauge,
        |s| s.memory_usage_bytes.map(|v| v as f64),
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes",
        MetricType::Gauge,
        |s| s.memory_working_set_bytes.map(|v| v as f64),
    ),
    (
        "container_memory_rss",
        "Size of RSS in bytes",
        MetricType::Gauge,
        |s| s.memory_rss_bytes.map(|v| v as f64),
    ),
    (
        "container_memory_cache",
        "Number of bytes of page cache memory",
        MetricType::Gauge,
        |s| s.memory_cache_bytes.map(|v| v as f64),
    ),
    (
        "container_spec_memory_limit_bytes",
        "Memory limit for the container",
        MetricType::Gauge,
        |s| s.memory_limit_bytes.map(|v| v as f64),
    ),
    (
        "container_oom_events",
        "Count of out of memory events observed for the container",
        MetricType::Counter,
        |s| s.oom_kills.map(|v| v as f64),
    ),
    (
        "container_processes",
        "Number of processes running inside the container",
        MetricType::Gauge,
        |s| s.processes.map(|v| v as f64),
    ),
];

impl Collector for CgroupCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats: Vec<(CgroupLabels, CgroupStats)> = self
            .layout
            .cgroups(self.limit)
            .into_iter()
            .map(|id| {
                let s = self.layout.stats(&id);
                (CgroupLabels { id }, s)
            })
            .collect();
        for (name, help, metric_type, get) in FAMILIES {
            let mut family = encoder.encode_descriptor(name, help, None, *metric_type)?;
            for (labels, s) in &stats {
                let Some(value) = get(s) else { continue };
                let mut metric = family.encode_family(labels)?;
                match metric_type {
                    MetricType::Counter => {
                        metric.encode_counter::<NoLabelSet, _, f64>(&value, None)?
                    }
                    _ => metric.encode_gauge(&value)?,
                }
            }
        }
        Ok(())
    }
}
