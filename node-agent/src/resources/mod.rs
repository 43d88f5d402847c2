//! Per-cgroup resource usage under cAdvisor's names, read at scrape time
//! (like the kubelet's cAdvisor endpoint) from cgroupfs and procfs, plus what
//! the kernel probes keep per cgroup: run-queue latency, block IO, OOM kills.
//!
//! Labels are the kubelet's: `id` (the cgroup path: a systemd unit or a
//! container id standalone), and `namespace`, `pod`, `container`, `image`,
//! `name` when the Kubernetes mapping knows them.
//!
//! A scrape is a gather (`gather`: the layout's cgroups, read by `opened`
//! through `files` with the `v1` or `v2` readers, joined with the kernel
//! maps and pod identity) and a render (`render`, with the `families`
//! tables) of what was gathered.
//!
//! Names and help, node-exporter's and cAdvisor's alike, are the model
//! catalogue's (`osprey_model::catalogue`: `NODE_FAMILIES`, `NODE_PATTERNS`,
//! `CONTAINER_FAMILIES`), and label sets its `labels::{node, container}`;
//! this module reads the figures and encodes them under those.

pub mod cgroupfs;
mod families;
mod files;
mod gather;
pub mod kernel;
pub mod node;
mod node_net;
mod node_storage;
mod opened;
mod render;
mod stats;
mod v1;
mod v2;

use std::{collections::HashMap, sync::Arc};

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder};

use cgroupfs::Layout;
use files::FileBudget;
use kernel::KernelResources;
use opened::Opened;

use crate::pods::PodIndex;

/// Encodes cgroup stats on every scrape; at most `limit` cgroups.
pub struct CgroupCollector {
    layout: Layout,
    limit: usize,
    kernel: Option<Arc<KernelResources>>,
    opened: std::sync::Mutex<HashMap<String, Arc<Opened>>>,
    budget: Arc<FileBudget>,
    pods: PodIndex,
    /// Every family for sandbox (pause) cgroups too.
    sandbox_all: bool,
    /// Every family for pods' own cgroups too.
    pod_all: bool,
}

impl std::fmt::Debug for CgroupCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CgroupCollector")
            .field("layout", &self.layout)
            .field("limit", &self.limit)
            .field("kernel", &self.kernel.is_some())
            .finish()
    }
}

impl CgroupCollector {
    /// `open_files`: how many cgroup files may stay open between scrapes.
    pub fn new(
        layout: Layout,
        limit: usize,
        open_files: usize,
        kernel: Option<Arc<KernelResources>>,
        pods: PodIndex,
    ) -> Self {
        Self {
            layout,
            limit,
            kernel,
            pods,
            opened: Default::default(),
            budget: FileBudget::new(open_files),
            sandbox_all: false,
            pod_all: false,
        }
    }

    /// Publishes every family for pods' sandbox (pause) cgroups too, not
    /// only their network.
    pub fn sandbox_metrics(mut self, all: bool) -> Self {
        self.sandbox_all = all;
        self
    }

    /// Publishes every family for pods' own cgroups (`…/pod<uid>`, the
    /// kernel's totals of their containers) and their parents (`kubepods`,
    /// its QoS classes) too, not only [`render::TOTALS_FAMILIES`].
    pub fn pod_metrics(mut self, all: bool) -> Self {
        self.pod_all = all;
        self
    }
}

impl Collector for CgroupCollector {
    /// Blocks on file reads: the `/metrics` handler encodes off the async
    /// runtime's workers.
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        render::render(&self.gather(), &mut encoder)
    }
}
