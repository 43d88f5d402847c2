//! Where the cgroup controllers are mounted: v1 (the controllers' own
//! hierarchies, as on hybrid hosts, with PSI from the v2 tree beside them)
//! or v2 (one unified hierarchy); the cgroups in it; and opening one.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    files::{Dir, FileBudget},
    opened::{Dirs, Opened},
};
use crate::cgroup::Mounts;

/// Where the controllers are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1: per-controller hierarchies.
    V1 {
        cpuacct: PathBuf,
        cpu: PathBuf,
        memory: PathBuf,
        /// The v2 hierarchy of a hybrid host (PSI files), if mounted.
        unified: Option<PathBuf>,
    },
    /// cgroup v2: one hierarchy.
    V2 { root: PathBuf },
}

impl Layout {
    /// Detects the layout from /proc/self/mountinfo.
    pub fn detect() -> Option<Self> {
        Self::from_mounts(Mounts::read().ok()?)
    }

    /// v1 when cpuacct, cpu and memory all have a v1 hierarchy, else v2;
    /// the last cgroup2 mount is the v2 hierarchy.
    fn from_mounts(mut mounts: Mounts) -> Option<Self> {
        let v2 = mounts.v2.pop();
        let mut v1 = |c: &str| mounts.v1.remove(c);
        match (v1("cpuacct"), v1("cpu"), v1("memory")) {
            (Some(cpuacct), Some(cpu), Some(memory)) => Some(Self::V1 {
                cpuacct,
                cpu,
                memory,
                unified: v2,
            }),
            _ => v2.map(|root| Self::V2 { root }),
        }
    }

    /// Every cgroup (path relative to the hierarchy root, "/" for the root),
    /// at most `limit` of them, in a stable order.
    pub fn cgroups(&self, limit: usize) -> Vec<String> {
        let root = match self {
            Self::V1 { cpuacct, .. } => cpuacct,
            Self::V2 { root } => root,
        };
        let mut out = Vec::new();
        crate::cgroup::walk(root, limit, |_, rel| {
            out.push(rel);
            true
        });
        out
    }

    /// Opens a cgroup's directories (kept across scrapes by the collector);
    /// its files stay open within `budget`.
    pub fn open(&self, cgroup: &str, budget: &Arc<FileBudget>) -> Opened {
        let rel = cgroup.trim_start_matches('/');
        let open = |root: &Path| Dir::open(&root.join(rel), budget);
        match self {
            Self::V1 {
                cpuacct,
                cpu,
                memory,
                unified,
            } => Opened::new(Dirs::V1 {
                cpuacct: open(cpuacct),
                cpu: open(cpu),
                memory: open(memory),
                unified: unified.as_deref().map(open),
            }),
            Self::V2 { root } => Opened::new(Dirs::V2(open(root))),
        }
    }

    /// The cgroup v2 hierarchy (the eBPF probes name cgroups by its ids).
    pub fn v2_root(&self) -> Option<&Path> {
        match self {
            Self::V1 { unified, .. } => unified.as_deref(),
            Self::V2 { root } => Some(root),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::files::scratch_dir;
    use super::*;

    #[test]
    fn detects_hybrid_v1_and_pure_v2() {
        let hybrid = "30 25 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                      31 25 0:28 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n\
                      32 25 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                      33 25 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert!(matches!(
            Layout::from_mounts(Mounts::parse(hybrid)),
            Some(Layout::V1 { .. })
        ));
        let pure = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            Layout::from_mounts(Mounts::parse(pure)),
            Some(Layout::V2 {
                root: "/sys/fs/cgroup".into()
            })
        );
    }

    #[test]
    fn reads_v2_files_in_cadvisor_units() {
        let root = scratch_dir("v2");
        std::fs::create_dir_all(root.join("pod1")).unwrap();
        let cg = root.join("pod1");
        std::fs::write(cg.join("cpu.stat"), "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 10\nnr_throttled 3\nthrottled_usec 150000\n").unwrap();
        std::fs::write(cg.join("memory.current"), "1048576\n").unwrap();
        std::fs::write(
            cg.join("memory.stat"),
            "anon 524288\nfile 262144\ninactive_file 131072\n",
        )
        .unwrap();
        std::fs::write(cg.join("memory.max"), "max\n").unwrap();
        std::fs::write(cg.join("cgroup.procs"), "12\n13\n").unwrap();
        let layout = Layout::V2 { root: root.clone() };
        assert_eq!(layout.cgroups(10), vec!["/".to_owned(), "/pod1".to_owned()]);
        let s = layout
            .open("/pod1", &FileBudget::new(0))
            .stats(true)
            .unwrap_or_default();
        assert_eq!(s.cpu_usage_seconds, Some(2.5));
        assert_eq!(s.cfs_throttled_seconds, Some(0.15));
        assert_eq!(s.memory_working_set_bytes, Some(1048576 - 131072));
        assert_eq!(
            (s.memory_rss_bytes, s.memory_cache_bytes),
            (Some(524288), Some(262144))
        );
        assert_eq!(
            s.memory_limit_bytes,
            Some(0),
            "max = unlimited = 0, as cAdvisor"
        );
        assert_eq!(s.processes, Some(2));
        assert_eq!(s.pressure.cpu, None, "no cpu.pressure written");
        let _ = std::fs::remove_dir_all(root);
    }
}
