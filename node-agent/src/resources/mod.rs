//! Per-cgroup resource usage under cAdvisor's names, read at scrape time
//! (like the kubelet's cAdvisor endpoint) from cgroupfs and procfs, plus what
//! the kernel probes keep per cgroup: run-queue latency, block IO, OOM kills.
//!
//! Labels are the kubelet's: `id` (the cgroup path: a systemd unit or a
//! container id standalone), and `namespace`, `pod`, `container`, `image`,
//! `name` when the Kubernetes mapping knows them.

pub mod cgroupfs;
pub mod kernel;
pub mod node;
mod node_net;
mod node_storage;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
};

use cgroupfs::{CgroupStats, FileBudget, Layout, Opened};
use kernel::KernelResources;

use crate::pods::{PodIndex, PodMeta};

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// The pod (and container) a cgroup belongs to, when the pod watch knows it.
type Owner = Option<(Arc<PodMeta>, Option<usize>)>;

/// The kubelet's labels of a cgroup: `id`, then `namespace`, `pod`, and for
/// a container's cgroup `container`, `image` and `name` (the runtime's
/// container id), once the pod watch knows them (an absent label and an
/// empty one are the same to PromQL, so unknown ones are left out rather
/// than sent empty on every series).
fn labels<'a>(id: &'a str, owner: &'a Owner) -> Labels<'a> {
    let mut l = vec![("id", id)];
    if let Some((pod, container)) = owner {
        l.push(("namespace", pod.namespace.as_str()));
        l.push(("pod", pod.name.as_str()));
        if let Some(c) = container.map(|i| &pod.containers[i]) {
            l.push(("container", c.name.as_str()));
            l.push(("image", c.image.as_str()));
            l.push(("name", c.id.as_str()));
        }
    }
    l
}

fn with<'a>(base: &Labels<'a>, key: &'static str, value: &'a str) -> Labels<'a> {
    let mut l = base.clone();
    l.push((key, value));
    l
}

/// Encodes cgroup stats on every scrape; at most `limit` cgroups.
pub struct CgroupCollector {
    layout: Layout,
    limit: usize,
    kernel: Option<Arc<KernelResources>>,
    opened: std::sync::Mutex<HashMap<String, Arc<Opened>>>,
    budget: Arc<FileBudget>,
    pods: PodIndex,
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
    /// Reads every cgroup's files on two threads (a scrape is mostly file
    /// reads in the kernel; two cores halve its latency). Cgroup directories
    /// and, within the file budget, their files stay open between scrapes;
    /// a cgroup removed (and maybe re-created) since is opened again.
    /// Returns each cgroup's figures and v2 id.
    fn read_all(&self, ids: &[String]) -> Vec<(CgroupStats, Option<u64>)> {
        const THREADS: usize = 2;
        let opened: Vec<Arc<Opened>> = {
            let mut cache = self.opened.lock().unwrap_or_else(|e| e.into_inner());
            let list = ids
                .iter()
                .map(|id| {
                    cache
                        .entry(id.clone())
                        .or_insert_with(|| Arc::new(self.layout.open(id, &self.budget)))
                        .clone()
                })
                .collect();
            let wanted: HashSet<&String> = ids.iter().collect();
            cache.retain(|id, _| wanted.contains(id));
            list
        };
        // The oom tracepoint counts OOM kills when the probes run.
        let oom_from_files = self.kernel.is_none();
        let chunk = ids.len().div_ceil(THREADS).max(1);
        let stats: Vec<(Option<CgroupStats>, Option<u64>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = opened
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|o| (o.stats(oom_from_files), o.v2_id()))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut cache = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        ids.iter()
            .zip(stats)
            .map(|(id, s)| match s {
                (Some(s), v2_id) => (s, v2_id),
                (None, _) => {
                    let fresh = Arc::new(self.layout.open(id, &self.budget));
                    let s = (
                        fresh.stats(oom_from_files).unwrap_or_default(),
                        fresh.v2_id(),
                    );
                    cache.insert(id.clone(), fresh);
                    s
                }
            })
            .collect()
    }

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
        }
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
        "container_processes",
        "Number of processes running inside the container",
        MetricType::Gauge,
        |s| s.processes.map(|v| v as f64),
    ),
    (
        "container_threads",
        "Number of threads running inside the container",
        MetricType::Gauge,
        |s| s.threads.map(|v| v as f64),
    ),
    (
        "container_pressure_cpu_waiting_seconds",
        "Total time duration tasks in the container have waited due to CPU congestion",
        MetricType::Counter,
        |s| s.pressure.cpu.map(|p| p.0),
    ),
    (
        "container_pressure_cpu_stalled_seconds",
        "Total time duration no tasks in the container could make progress due to CPU congestion",
        MetricType::Counter,
        |s| s.pressure.cpu.and_then(|p| p.1),
    ),
    (
        "container_pressure_memory_waiting_seconds",
        "Total time duration tasks in the container have waited due to memory congestion",
        MetricType::Counter,
        |s| s.pressure.memory.map(|p| p.0),
    ),
    (
        "container_pressure_memory_stalled_seconds",
        "Total time duration no tasks in the container could make progress due to memory congestion",
        MetricType::Counter,
        |s| s.pressure.memory.and_then(|p| p.1),
    ),
    (
        "container_pressure_io_waiting_seconds",
        "Total time duration tasks in the container have waited due to IO congestion",
        MetricType::Counter,
        |s| s.pressure.io.map(|p| p.0),
    ),
    (
        "container_pressure_io_stalled_seconds",
        "Total time duration no tasks in the container could make progress due to IO congestion",
        MetricType::Counter,
        |s| s.pressure.io.and_then(|p| p.1),
    ),
];

type NetGetter = fn(&cgroupfs::NetDev) -> u64;

/// cAdvisor's per-interface network families.
const NETWORK: &[(&str, &str, NetGetter)] = &[
    (
        "container_network_receive_bytes",
        "Cumulative count of bytes received",
        |n| n.rx_bytes,
    ),
    (
        "container_network_receive_packets",
        "Cumulative count of packets received",
        |n| n.rx_packets,
    ),
    (
        "container_network_receive_packets_dropped",
        "Cumulative count of packets dropped while receiving",
        |n| n.rx_dropped,
    ),
    (
        "container_network_receive_errors",
        "Cumulative count of errors encountered while receiving",
        |n| n.rx_errors,
    ),
    (
        "container_network_transmit_bytes",
        "Cumulative count of bytes transmitted",
        |n| n.tx_bytes,
    ),
    (
        "container_network_transmit_packets",
        "Cumulative count of packets transmitted",
        |n| n.tx_packets,
    ),
    (
        "container_network_transmit_packets_dropped",
        "Cumulative count of packets dropped while transmitting",
        |n| n.tx_dropped,
    ),
    (
        "container_network_transmit_errors",
        "Cumulative count of errors encountered while transmitting",
        |n| n.tx_errors,
    ),
];

/// Block IO of one cgroup on one device.
#[derive(Debug, Default, Clone, Copy)]
struct Io {
    read_bytes: u64,
    write_bytes: u64,
    reads: u64,
    writes: u64,
}

/// `/dev/<name>` of a block device from its numbers, as cAdvisor labels it.
fn device_name(major: u32, minor: u32, cache: &mut HashMap<(u32, u32), String>) -> String {
    cache
        .entry((major, minor))
        .or_insert_with(|| {
            std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
                .ok()
                .and_then(|u| {
                    u.lines()
                        .find_map(|l| l.strip_prefix("DEVNAME="))
                        .map(|n| format!("/dev/{n}"))
                })
                .unwrap_or_else(|| format!("{major}:{minor}"))
        })
        .clone()
}

fn counter(
    family: &mut prometheus_client::encoding::MetricEncoder<'_>,
    labels: &Labels<'_>,
    value: f64,
) -> Result<(), std::fmt::Error> {
    family
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, f64>(&value, None)
}

/// What the kernel probes hold for the scraped cgroups, by cgroup index.
struct KernelView {
    runq: BTreeMap<usize, osprey_abi::RunqHist>,
    io: BTreeMap<(usize, String), Io>,
    oom: BTreeMap<usize, u64>,
    loss: osprey_abi::ResourceLoss,
}

/// `v2_ids`: each scraped cgroup's v2 id, by index.
fn kernel_view(kernel: &KernelResources, ids: &[String], v2_ids: &[Option<u64>]) -> KernelView {
    let by_path: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let by_id: HashMap<u64, usize> = v2_ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| Some(((*id)?, i)))
        .collect();
    let scraped: HashSet<u64> = by_id.keys().copied().collect();
    let index = |cgroup_id: u64| by_id.get(&cgroup_id).copied();
    let runq = kernel
        .runq(&scraped)
        .into_iter()
        .filter_map(|(id, h)| Some((index(id)?, h)))
        .collect();
    let mut names = HashMap::new();
    let mut io: BTreeMap<(usize, String), Io> = BTreeMap::new();
    for (key, s) in kernel.block(&scraped) {
        let Some(i) = index(key.cgroup_id) else {
            continue;
        };
        let device = device_name(key.dev >> 20, key.dev & 0xfffff, &mut names);
        let e = io.entry((i, device)).or_default();
        if key.op == osprey_abi::BLOCK_WRITE {
            e.write_bytes += s.bytes;
            e.writes += s.ios;
        } else {
            e.read_bytes += s.bytes;
            e.reads += s.ios;
        }
    }
    let oom = kernel
        .oom_kills()
        .into_iter()
        .filter_map(|(path, n)| Some((*by_path.get(path.as_str())?, n)))
        .collect();
    KernelView {
        runq,
        io,
        oom,
        loss: kernel.loss(),
    }
}

/// The kernel's log2 buckets merged in pairs: upper bounds 4 µs, 16 µs, …,
/// 4^11 µs ≈ 4.2 s, then +Inf (12 buckets, a resolution of ×4 per bucket).
fn runq_buckets(h: &osprey_abi::RunqHist) -> Vec<(f64, u64)> {
    h.buckets
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| {
            let le = if (i + 1) * 2 >= osprey_abi::RUNQ_BUCKETS {
                f64::INFINITY
            } else {
                (1u64 << ((i + 1) * 2)) as f64 / 1e6
            };
            (le, pair.iter().sum())
        })
        .collect()
}

impl Collector for CgroupCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ids = self.layout.cgroups(self.limit);
        let (stats, v2_ids): (Vec<CgroupStats>, Vec<Option<u64>>) =
            self.read_all(&ids).into_iter().unzip();
        let owners: Vec<Owner> = ids.iter().map(|id| self.pods.by_cgroup(id)).collect();
        let base: Vec<Labels<'_>> = ids
            .iter()
            .zip(&owners)
            .map(|(id, o)| labels(id, o))
            .collect();
        for (name, help, metric_type, get) in FAMILIES {
            let mut family = encoder.encode_descriptor(name, help, None, *metric_type)?;
            for (labels, s) in base.iter().zip(&stats) {
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
        encoder
            .encode_descriptor(
                "osprey_cgroup_open_files",
                "Cgroup files kept open between scrapes (see cgroup_open_files)",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&(self.budget.used() as i64))?;
        for (name, help, get) in NETWORK {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, s) in base.iter().zip(&stats) {
                for dev in &s.network {
                    counter(
                        &mut family,
                        &with(labels, "interface", &dev.interface),
                        get(dev) as f64,
                    )?;
                }
            }
        }
        let view = self
            .kernel
            .as_deref()
            .map(|k| kernel_view(k, &ids, &v2_ids));

        // Block IO: the kernel's own io.stat where the v2 io controller keeps
        // one (it charges writeback to the right cgroup), else the probe's.
        let mut io: BTreeMap<(usize, String), Io> = BTreeMap::new();
        let mut names = HashMap::new();
        for (i, s) in stats.iter().enumerate() {
            for d in &s.io {
                let (major, minor) = d.device.split_once(':').unwrap_or(("0", "0"));
                let device = device_name(
                    major.parse().unwrap_or(0),
                    minor.parse().unwrap_or(0),
                    &mut names,
                );
                io.insert(
                    (i, device),
                    Io {
                        read_bytes: d.read_bytes,
                        write_bytes: d.write_bytes,
                        reads: d.reads,
                        writes: d.writes,
                    },
                );
            }
        }
        if let Some(view) = &view {
            for ((i, device), v) in &view.io {
                if stats[*i].io.is_empty() {
                    io.insert((*i, device.clone()), *v);
                }
            }
        }
        type IoGetter = fn(&Io) -> u64;
        let io_families: [(&str, &str, IoGetter); 4] = [
            (
                "container_fs_reads_bytes",
                "Cumulative count of bytes read",
                |v| v.read_bytes,
            ),
            (
                "container_fs_writes_bytes",
                "Cumulative count of bytes written",
                |v| v.write_bytes,
            ),
            (
                "container_fs_reads",
                "Cumulative count of reads completed",
                |v| v.reads,
            ),
            (
                "container_fs_writes",
                "Cumulative count of writes completed",
                |v| v.writes,
            ),
        ];
        for (name, help, get) in io_families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ((i, device), v) in &io {
                counter(
                    &mut family,
                    &with(&base[*i], "device", device),
                    get(v) as f64,
                )?;
            }
        }

        // OOM kills: from the oom tracepoint when the probes run, else cgroupfs.
        let mut family = encoder.encode_descriptor(
            "container_oom_events",
            "Count of out of memory events observed for the container",
            None,
            MetricType::Counter,
        )?;
        for (i, (labels, s)) in base.iter().zip(&stats).enumerate() {
            let value = match &view {
                Some(view) => Some(view.oom.get(&i).copied().unwrap_or(0)),
                None => s.oom_kills,
            };
            if let Some(v) = value {
                counter(&mut family, labels, v as f64)?;
            }
        }
        let Some(view) = view else { return Ok(()) };

        let mut family = encoder.encode_descriptor(
            "container_cpu_runqueue_latency_seconds",
            "Time the container's tasks waited for a CPU after becoming runnable (eBPF sched tracepoints)",
            None,
            MetricType::Histogram,
        )?;
        for (i, h) in &view.runq {
            let buckets = runq_buckets(h);
            family
                .encode_family(&base[*i])?
                .encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.count, &buckets, None)?;
        }
        let mut family = encoder.encode_descriptor(
            "osprey_resource_probe_lost",
            "Events the resource probes could not account, by reason (a kernel map or ring buffer was full)",
            None,
            MetricType::Counter,
        )?;
        let l = view.loss;
        for (reason, v) in [
            ("runq_start_map_full", l.runq_start_full),
            ("runq_latency_map_full", l.runq_hist_full),
            ("block_io_map_full", l.block_map_full),
            ("oom_ring_full", l.oom_ring_full),
        ] {
            counter(&mut family, &vec![("reason", reason)], v as f64)?;
        }
        Ok(())
    }
}
