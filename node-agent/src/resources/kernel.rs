//! Per-cgroup figures the kernel probes keep: run-queue latency and block IO
//! (cumulative per-CPU maps, summed over CPUs at scrape time) and OOM kills
//! (events from a ring buffer, counted here and streamed to `events`).
//! Map entries of cgroups that no longer exist are deleted at scrape time.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use crate::events::record::{EventKind, ResourceEvent};
use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use osprey_abi::{BlockKey, BlockStats, OomEvent, RUNQ_BUCKETS, ResourceLoss, RunqHist};

struct Maps {
    runq: PerCpuHashMap<MapData, u64, RunqHist>,
    block: PerCpuHashMap<MapData, BlockKey, BlockStats>,
    loss: PerCpuArray<MapData, ResourceLoss>,
}

pub struct KernelResources {
    maps: Mutex<Maps>,
    oom_kills: Mutex<BTreeMap<String, u64>>,
    v2_root: PathBuf,
    /// Ids of every v2 cgroup at the last walk of the tree, and when.
    live: Mutex<Option<(Instant, HashSet<u64>)>>,
}

/// The v2 tree is walked again (to find map entries of removed cgroups) at
/// most this often, and only when the maps hold ids no scrape covers.
const WALK_EVERY: Duration = Duration::from_secs(30);

/// Every cgroup of the v2 hierarchy at `root`: its id (the directory's inode
/// number, what `bpf_get_current_cgroup_id` returns) → its path ("/" for the root).
pub fn v2_ids(root: &Path) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    crate::cgroup::walk(root, usize::MAX, |dir, rel| {
        let Ok(meta) = std::fs::metadata(dir) else {
            return false;
        };
        out.insert(meta.ino(), rel);
        true
    });
    out
}

/// A process's cgroup v2 path from /proc/<pid>/cgroup ("0::/path").
fn proc_cgroup(pid: u32) -> Option<String> {
    let process = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
    v2_path(process.cgroups().ok()?)
}

/// The v2 entry of /proc/<pid>/cgroup: hierarchy 0, no controllers.
fn v2_path(cgroups: procfs::ProcessCGroups) -> Option<String> {
    cgroups
        .into_iter()
        .find(|c| c.hierarchy == 0 && c.controllers.is_empty())
        .map(|c| c.pathname)
}

fn sum_hist(values: &[RunqHist]) -> RunqHist {
    let mut out = RunqHist {
        buckets: [0; RUNQ_BUCKETS],
        sum_ns: 0,
        count: 0,
    };
    for v in values {
        for (o, b) in out.buckets.iter_mut().zip(v.buckets) {
            *o += b;
        }
        out.sum_ns += v.sum_ns;
        out.count += v.count;
    }
    out
}

impl KernelResources {
    pub fn new(
        runq: PerCpuHashMap<MapData, u64, RunqHist>,
        block: PerCpuHashMap<MapData, BlockKey, BlockStats>,
        loss: PerCpuArray<MapData, ResourceLoss>,
        v2_root: PathBuf,
    ) -> Arc<Self> {
        Arc::new(Self {
            maps: Mutex::new(Maps { runq, block, loss }),
            oom_kills: Mutex::new(BTreeMap::new()),
            v2_root,
            live: Mutex::new(None),
        })
    }

    /// Of `others` (ids in the maps that no scrape covers), those of
    /// cgroups that no longer exist. Decided by a walk of the v2 tree, done
    /// again only when an id is missing from the last walk and that walk is
    /// older than `WALK_EVERY`: a scrape normally walks nothing.
    fn gone(&self, others: &BTreeSet<u64>) -> BTreeSet<u64> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let missing = |l: &Option<(Instant, HashSet<u64>)>| -> BTreeSet<u64> {
            others
                .iter()
                .filter(|id| !l.as_ref().is_some_and(|(_, l)| l.contains(id)))
                .copied()
                .collect()
        };
        if missing(&live).is_empty() {
            return BTreeSet::new();
        }
        if live
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < WALK_EVERY)
        {
            return BTreeSet::new();
        }
        *live = Some((Instant::now(), v2_ids(&self.v2_root).into_keys().collect()));
        missing(&live)
    }

    /// Run-queue latency of the `scraped` cgroup ids, summed over CPUs.
    /// Entries of cgroups that are gone are deleted.
    pub fn runq(&self, scraped: &HashSet<u64>) -> BTreeMap<u64, RunqHist> {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeMap::new();
        let mut others = BTreeSet::new();
        for (id, values) in maps.runq.iter().filter_map(Result::ok) {
            if scraped.contains(&id) {
                out.insert(id, sum_hist(&values));
            } else {
                others.insert(id);
            }
        }
        for id in self.gone(&others) {
            let _ = maps.runq.remove(&id);
        }
        out
    }

    /// Block IO of the `scraped` cgroup ids per (cgroup id, device, op),
    /// summed over CPUs; entries of cgroups that are gone are deleted.
    pub fn block(&self, scraped: &HashSet<u64>) -> BTreeMap<BlockKey, BlockStats> {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeMap::new();
        let mut others = Vec::new();
        for (key, values) in maps.block.iter().filter_map(Result::ok) {
            if scraped.contains(&key.cgroup_id) {
                let mut s = BlockStats::default();
                for v in values.iter() {
                    s.bytes += v.bytes;
                    s.ios += v.ios;
                }
                out.insert(key, s);
            } else {
                others.push(key);
            }
        }
        let gone = self.gone(&others.iter().map(|k| k.cgroup_id).collect());
        for key in others.iter().filter(|k| gone.contains(&k.cgroup_id)) {
            let _ = maps.block.remove(key);
        }
        out
    }

    pub fn loss(&self) -> ResourceLoss {
        let maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = ResourceLoss::default();
        if let Ok(values) = maps.loss.get(&0, 0) {
            for v in values.iter() {
                out.runq_start_full += v.runq_start_full;
                out.runq_hist_full += v.runq_hist_full;
                out.block_map_full += v.block_map_full;
                out.oom_ring_full += v.oom_ring_full;
            }
        }
        out
    }

    /// OOM kills per cgroup path since the agent started.
    pub fn oom_kills(&self) -> BTreeMap<String, u64> {
        self.oom_kills
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts an OOM kill and turns it into an event. The victim's cgroup is
    /// read from /proc while it is still there (it is being killed); failing
    /// that, the cgroup of the task that triggered the kill stands in (for a
    /// memory-cgroup OOM, inside the cgroup that hit its limit).
    pub fn oom_kill(&self, e: &OomEvent) -> ResourceEvent {
        let cgroup = proc_cgroup(e.victim_pid)
            .or_else(|| v2_ids(&self.v2_root).remove(&e.trigger_cgroup_id))
            .unwrap_or_else(|| format!("cgroup-id:{}", e.trigger_cgroup_id));
        *self
            .oom_kills
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(cgroup.clone())
            .or_default() += 1;
        let len = e.comm.iter().position(|&b| b == 0).unwrap_or(e.comm.len());
        ResourceEvent {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            kind: EventKind::OomKill,
            cgroup,
            pid: e.victim_pid,
            command: String::from_utf8_lossy(&e.comm[..len]).into_owned(),
            uid: e.victim_uid,
            total_vm_bytes: e.total_vm_kb * 1024,
            anon_rss_bytes: e.anon_rss_kb * 1024,
            namespace: None,
            pod: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs::FromRead;

    #[test]
    fn finds_the_v2_path_of_a_process() {
        let parse =
            |text: &str| v2_path(procfs::ProcessCGroups::from_read(text.as_bytes()).unwrap());
        assert_eq!(
            parse("12:memory:/kubepods/pod1\n0::/kubepods/pod1/c1\n"),
            Some("/kubepods/pod1/c1".to_owned())
        );
        assert_eq!(parse("4:cpu,cpuacct:/x\n"), None);
    }
}
