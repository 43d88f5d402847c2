//! The join of a scrape: each cgroup's cgroupfs figures, what the kernel
//! probes hold for it and the pod it belongs to, gathered into plain
//! structs that the render turns into metric families. All of a scrape's
//! blocking reads (cgroupfs, procfs, sysfs, the eBPF maps) happen here.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use osprey_abi::{ResourceLoss, RunqHist};

use super::{CgroupCollector, kernel::KernelResources, opened::Opened, stats::CgroupStats};
use crate::pods::PodMeta;

/// The pod (and container) a cgroup belongs to, when the pod watch knows it.
pub type Owner = Option<(Arc<PodMeta>, Option<usize>)>;

/// One cgroup's figures.
pub struct Cgroup {
    /// The cgroup path ("/" for the root).
    pub id: String,
    pub owner: Owner,
    pub stats: CgroupStats,
    /// OOM kills: from the oom tracepoint when the probes run, else cgroupfs.
    pub oom_kills: Option<u64>,
    /// A pod's sandbox (pause) container: a container cgroup of a known pod
    /// that is none of its listed containers. It publishes only its
    /// network, unless `container_sandbox_metrics = "all"`.
    pub sandbox: bool,
    /// A pod's own cgroup (`…/pod<uid>`): the kernel's total of its
    /// containers, which publish the same figures themselves. It too
    /// publishes only the pod totals cAdvisor users query with
    /// `container=""`, unless `container_pod_metrics = "all"`.
    pub pod_own: bool,
    /// A parent of pods' cgroups (`kubepods`, its QoS classes `burstable`
    /// and `besteffort`): the kernel's total of its pods, which publish the
    /// same figures themselves. Like a pod's own cgroup, it publishes only
    /// the totals, unless `container_pod_metrics = "all"`.
    pub pods_parent: bool,
}

impl Cgroup {
    /// Publishes only its network and, unless a sandbox, the pod-total
    /// families ([`super::render::TOTALS_FAMILIES`]). OOM kills are
    /// published on the container whose process was killed, not again on
    /// the totals above it.
    pub fn totals_only(&self) -> bool {
        self.sandbox || self.pod_own || self.pods_parent
    }
}

/// Which of `ids` are above pods' own cgroups, the root excepted:
/// `kubepods` and its QoS classes, in either cgroup driver's layout.
fn pods_parents(ids: &[String]) -> Vec<bool> {
    let mut parents = HashSet::new();
    for id in ids {
        if !matches!(crate::pods::cgroup::owner(id), Some((_, None))) {
            continue;
        }
        let mut dir = id.as_str();
        while let Some(at) = dir.rfind('/').filter(|&at| at > 0) {
            dir = &dir[..at];
            if !parents.insert(dir) {
                break;
            }
        }
    }
    ids.iter().map(|id| parents.contains(id.as_str())).collect()
}

/// Block IO of one cgroup on one device.
#[derive(Debug, Default, Clone, Copy)]
pub struct Io {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// What only the kernel probes know.
pub struct Probes {
    /// Run-queue latency, by cgroup index.
    pub runq: BTreeMap<usize, RunqHist>,
    pub loss: ResourceLoss,
}

/// One scrape's figures.
pub struct Scrape {
    pub cgroups: Vec<Cgroup>,
    /// Block IO by (cgroup index, device name).
    pub io: BTreeMap<(usize, String), Io>,
    /// Cgroup files kept open between scrapes.
    pub open_files: usize,
    /// None when the probes are off.
    pub probes: Option<Probes>,
}

impl CgroupCollector {
    /// Reads every cgroup's files on two threads, this one and one spawned
    /// (a scrape is mostly file reads in the kernel; two cores halve its
    /// latency). Cgroup directories
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
        let read = |part: &[Arc<Opened>]| {
            part.iter()
                .map(|o| (o.stats(oom_from_files), o.v2_id()))
                .collect::<Vec<_>>()
        };
        // The first part on this thread, the others on threads of their own
        // (one spawn per scrape, not two). A part whose thread panicked
        // reads as unread: each of its cgroups is opened and read again
        // below, here.
        let mut parts = opened.chunks(chunk);
        let here = parts.next().unwrap_or_default();
        let stats: Vec<(Option<CgroupStats>, Option<u64>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = parts
                .map(|part| (part.len(), scope.spawn(move || read(part))))
                .collect();
            let mut stats = read(here);
            for (len, handle) in handles {
                match handle.join() {
                    Ok(part) => stats.extend(part),
                    Err(_) => stats.extend((0..len).map(|_| (None, None))),
                }
            }
            stats
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

    /// Gathers a scrape: at most `limit` cgroups, joined with the kernel
    /// probes' figures and the pod watch's owners.
    pub(super) fn gather(&self) -> Scrape {
        let ids = self.layout.cgroups(self.limit);
        let (stats, v2_ids): (Vec<CgroupStats>, Vec<Option<u64>>) =
            self.read_all(&ids).into_iter().unzip();
        let open_files = self.budget.used();
        let view = self
            .kernel
            .as_deref()
            .map(|k| kernel_view(k, &ids, &v2_ids));
        let mut names = HashMap::new();
        // Block IO: the kernel's own io.stat where the v2 io controller keeps
        // one (it charges writeback to the right cgroup), else the probe's.
        let mut io: BTreeMap<(usize, String), Io> = BTreeMap::new();
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
        let parents = if self.pod_all {
            vec![false; ids.len()]
        } else {
            pods_parents(&ids)
        };
        let cgroups = ids
            .into_iter()
            .zip(stats)
            .enumerate()
            .map(|(i, (id, stats))| {
                let owner = self.pods.by_cgroup(&id);
                let pod_level = owner.as_ref().is_some_and(|(_, c)| c.is_none());
                let container_path = crate::pods::cgroup::owner(&id).map(|(_, c)| c.is_some());
                let sandbox = !self.sandbox_all && pod_level && container_path == Some(true);
                let pod_own = !self.pod_all && pod_level && container_path == Some(false);
                Cgroup {
                    owner,
                    sandbox,
                    pod_own,
                    pods_parent: parents[i],
                    oom_kills: match &view {
                        Some(view) => Some(view.oom.get(&i).copied().unwrap_or(0)),
                        None => stats.oom_kills,
                    },
                    id,
                    stats,
                }
            })
            .collect();
        Scrape {
            cgroups,
            io,
            open_files,
            probes: view.map(|v| Probes {
                runq: v.runq,
                loss: v.loss,
            }),
        }
    }
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

/// What the kernel probes hold for the scraped cgroups, by cgroup index.
struct KernelView {
    runq: BTreeMap<usize, RunqHist>,
    io: BTreeMap<(usize, String), Io>,
    oom: BTreeMap<usize, u64>,
    loss: ResourceLoss,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parents_of_pods_in_both_drivers_layouts_but_not_the_root() {
        let uid = "0f3c8a1e-2b4d-4c6e-8f10-123456789abc";
        let ids: Vec<String> = [
            "/".to_owned(),
            "/kubepods".to_owned(),
            "/kubepods/burstable".to_owned(),
            format!("/kubepods/burstable/pod{uid}"),
            format!("/kubepods/burstable/pod{uid}/4f2a9c"),
            "/kubepods/besteffort".to_owned(),
            "/kubepods.slice/kubepods-besteffort.slice".to_owned(),
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
                uid.replace('-', "_")
            ),
            "/system.slice".to_owned(),
            "/system.slice/containerd.service".to_owned(),
        ]
        .into();
        let got: Vec<&str> = ids
            .iter()
            .zip(pods_parents(&ids))
            .filter_map(|(id, parent)| parent.then_some(id.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                "/kubepods",
                "/kubepods/burstable",
                "/kubepods.slice/kubepods-besteffort.slice",
            ]
        );
    }
}
