//! Per-cgroup CPU, memory, IO, pressure, task and network figures from
//! cgroupfs and procfs, v1 (the controllers' own hierarchies, as on hybrid
//! hosts, with PSI from the v2 tree beside them) or v2 (one unified
//! hierarchy), read with the files and units cAdvisor uses.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

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

/// One cgroup's usage. Absent values are None (a controller not enabled there).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupStats {
    pub cpu_usage_seconds: Option<f64>,
    pub cpu_user_seconds: Option<f64>,
    pub cpu_system_seconds: Option<f64>,
    pub cfs_periods: Option<u64>,
    pub cfs_throttled_periods: Option<u64>,
    pub cfs_throttled_seconds: Option<f64>,
    pub memory_usage_bytes: Option<u64>,
    pub memory_working_set_bytes: Option<u64>,
    pub memory_rss_bytes: Option<u64>,
    pub memory_cache_bytes: Option<u64>,
    /// 0 when unlimited, as cAdvisor reports it.
    pub memory_limit_bytes: Option<u64>,
    pub processes: Option<u64>,
    /// OOM kills in this cgroup (v1 memory.oom_control / v2 memory.events `oom_kill`).
    pub oom_kills: Option<u64>,
    pub threads: Option<u64>,
    /// PSI totals, seconds: (some, full) of cpu, memory, io.
    pub pressure: Pressure,
    /// v2 io.stat per device ("major:minor"), when the io controller is on.
    pub io: Vec<IoStat>,
    /// Interfaces of the cgroup's network namespace, when it is not the host's.
    pub network: Vec<NetDev>,
}

/// Pressure stall totals of one cgroup, seconds (`some` = waiting, `full` = stalled).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pressure {
    pub cpu: Option<(f64, Option<f64>)>,
    pub memory: Option<(f64, Option<f64>)>,
    pub io: Option<(f64, Option<f64>)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoStat {
    pub device: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDev {
    pub interface: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// `USER_HZ`: the unit of v1's cpuacct.stat.
const USER_HZ: f64 = 100.0;
/// A v1 memory limit at or above this means "no limit".
const V1_UNLIMITED: u64 = 1 << 62;

impl Layout {
    /// Detects the layout from /proc/self/mountinfo.
    pub fn detect() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        Self::from_mountinfo(&text)
    }

    fn from_mountinfo(text: &str) -> Option<Self> {
        let mut v1: BTreeMap<&str, PathBuf> = BTreeMap::new();
        let mut v2 = None;
        for line in text.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mut post = post.split_whitespace();
            let fstype = post.next().unwrap_or_default();
            let options = post.nth(1).unwrap_or_default();
            let Some(mount) = pre.split_whitespace().nth(4) else {
                continue;
            };
            match fstype {
                "cgroup2" => v2 = Some(PathBuf::from(mount)),
                "cgroup" => {
                    for c in options.split(',') {
                        if matches!(c, "cpuacct" | "cpu" | "memory") {
                            v1.insert(c, PathBuf::from(mount));
                        }
                    }
                }
                _ => {}
            }
        }
        match (v1.get("cpuacct"), v1.get("cpu"), v1.get("memory")) {
            (Some(cpuacct), Some(cpu), Some(memory)) => Some(Self::V1 {
                cpuacct: cpuacct.clone(),
                cpu: cpu.clone(),
                memory: memory.clone(),
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
        walk(root, root, &mut out, limit);
        out
    }

    /// Opens a cgroup's directories (kept across scrapes by the collector).
    pub fn open(&self, cgroup: &str) -> Opened {
        let rel = cgroup.trim_start_matches('/');
        match self {
            Self::V1 {
                cpuacct,
                cpu,
                memory,
                unified,
            } => Opened::V1 {
                cpuacct: Dir::open(&cpuacct.join(rel)),
                cpu: Dir::open(&cpu.join(rel)),
                memory: Dir::open(&memory.join(rel)),
                unified: unified.as_ref().map(|u| Dir::open(&u.join(rel))),
            },
            Self::V2 { root } => Opened::V2(Dir::open(&root.join(rel))),
        }
    }

    #[cfg(test)]
    pub fn stats(&self, cgroup: &str) -> CgroupStats {
        self.open(cgroup).stats().unwrap_or_default()
    }

    /// The cgroup v2 hierarchy (the eBPF probes name cgroups by its ids).
    pub fn v2_root(&self) -> Option<&Path> {
        match self {
            Self::V1 { unified, .. } => unified.as_deref(),
            Self::V2 { root } => Some(root),
        }
    }
}

/// One cgroup's directories, opened once.
pub enum Opened {
    V1 {
        cpuacct: Dir,
        cpu: Dir,
        memory: Dir,
        unified: Option<Dir>,
    },
    V2(Dir),
}

impl Opened {
    /// The cgroup's figures; None once the cgroup is gone (its directory was
    /// removed, perhaps to be created again under the same path).
    pub fn stats(&self) -> Option<CgroupStats> {
        match self {
            Self::V1 {
                cpuacct,
                cpu,
                memory,
                unified,
            } => {
                let mut s = v1_stats(cpuacct, cpu, memory)?;
                if let Some(unified) = unified {
                    s.pressure = pressure(unified);
                }
                Some(s)
            }
            Self::V2(dir) => v2_stats(dir),
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>, limit: usize) {
    if out.len() >= limit {
        return;
    }
    let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
    out.push(format!("/{}", rel.display()));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for d in dirs {
        walk(root, &d, out, limit);
    }
}

/// Reads a small file whole without asking its size first (cgroupfs and
/// procfs files report 0 or 4096 anyway): open, read, close.
fn read(path: &Path) -> Option<String> {
    read_file(std::fs::File::open(path).ok()?)
}

fn read_file(file: std::fs::File) -> Option<String> {
    use std::io::Read;
    let mut text = String::with_capacity(4096);
    file.take(1 << 20).read_to_string(&mut text).ok()?;
    Some(text)
}

/// A cgroup directory opened once; its files are opened relative to it, so
/// the kernel does not walk the whole path again for each file.
pub struct Dir(Option<std::os::fd::OwnedFd>);

impl Dir {
    fn open(path: &Path) -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)
            .ok()
            .map(std::os::fd::OwnedFd::from);
        Self(fd)
    }

    fn read(&self, name: &str) -> Option<String> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let dir = self.0.as_ref()?;
        let name = std::ffi::CString::new(name).ok()?;
        // SAFETY: a valid directory fd and C string; the returned fd is owned by the File.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        read_file(unsafe { std::fs::File::from_raw_fd(fd) })
    }
}

fn read_u64(text: Option<String>) -> Option<u64> {
    text?.trim().parse().ok()
}

/// `key value` lines (cpu.stat, memory.stat, cpuacct.stat).
fn keyed(text: Option<String>) -> BTreeMap<String, u64> {
    text.unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn count_lines(text: Option<String>) -> Option<u64> {
    Some(text?.lines().count() as u64)
}

fn v1_stats(cpuacct: &Dir, cpu: &Dir, memory: &Dir) -> Option<CgroupStats> {
    let procs = Some(cpuacct.read("cgroup.procs")?);
    let acct = keyed(cpuacct.read("cpuacct.stat"));
    let cfs = keyed(cpu.read("cpu.stat"));
    let mem = keyed(memory.read("memory.stat"));
    let usage = read_u64(memory.read("memory.usage_in_bytes"));
    let inactive = mem.get("total_inactive_file").copied().unwrap_or(0);
    Some(CgroupStats {
        cpu_usage_seconds: read_u64(cpuacct.read("cpuacct.usage")).map(|ns| ns as f64 / 1e9),
        cpu_user_seconds: acct.get("user").map(|t| *t as f64 / USER_HZ),
        cpu_system_seconds: acct.get("system").map(|t| *t as f64 / USER_HZ),
        cfs_periods: cfs.get("nr_periods").copied(),
        cfs_throttled_periods: cfs.get("nr_throttled").copied(),
        cfs_throttled_seconds: cfs.get("throttled_time").map(|ns| *ns as f64 / 1e9),
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.map(|u| u.saturating_sub(inactive)),
        memory_rss_bytes: mem.get("total_rss").copied(),
        memory_cache_bytes: mem.get("total_cache").copied(),
        memory_limit_bytes: read_u64(memory.read("memory.limit_in_bytes"))
            .map(|l| if l >= V1_UNLIMITED { 0 } else { l }),
        processes: procs.as_ref().map(|p| p.lines().count() as u64),
        oom_kills: keyed(memory.read("memory.oom_control"))
            .get("oom_kill")
            .copied(),
        threads: count_lines(cpuacct.read("tasks")),
        network: network(procs.as_deref()),
        ..CgroupStats::default()
    })
}

/// `some avg10=… total=<µs>` / `full …` lines of a PSI file.
fn psi(text: Option<String>) -> Option<(f64, Option<f64>)> {
    let text = text?;
    let total = |kind: &str| {
        text.lines()
            .find(|l| l.starts_with(kind))?
            .split_whitespace()
            .find_map(|f| f.strip_prefix("total="))?
            .parse::<u64>()
            .ok()
            .map(|us| us as f64 / 1e6)
    };
    Some((total("some")?, total("full")))
}

fn pressure(dir: &Dir) -> Pressure {
    Pressure {
        cpu: psi(dir.read("cpu.pressure")),
        memory: psi(dir.read("memory.pressure")),
        io: psi(dir.read("io.pressure")),
    }
}

/// v2 io.stat: `MAJ:MIN rbytes=… wbytes=… rios=… wios=… …` per device.
fn io_stat(text: Option<String>) -> Vec<IoStat> {
    let Some(text) = text else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let mut s = IoStat {
                device: fields.next()?.to_owned(),
                ..IoStat::default()
            };
            for f in fields {
                let (k, v) = f.split_once('=')?;
                let v = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => s.read_bytes = v,
                    "wbytes" => s.write_bytes = v,
                    "rios" => s.reads = v,
                    "wios" => s.writes = v,
                    _ => {}
                }
            }
            Some(s)
        })
        .collect()
}

/// The network namespace of the cgroup's first process, when it is not the
/// host's (the agent's): its interfaces from /proc/<pid>/net/dev, as cAdvisor reads them.
fn network(procs: Option<&str>) -> Vec<NetDev> {
    static HOST_NETNS: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let Some(pid) = procs.and_then(|t| t.lines().next()) else {
        return Vec::new();
    };
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
    let host = HOST_NETNS.get_or_init(|| ns("self"));
    match (ns(pid), host) {
        (Some(theirs), Some(ours)) if theirs != *ours => {}
        _ => return Vec::new(),
    }
    let Some(text) = read(Path::new(&format!("/proc/{pid}/net/dev"))) else {
        return Vec::new();
    };
    parse_net_dev(&text)
}

/// /proc/net/dev: two header lines, then `iface: rx(8 fields) tx(8 fields)`.
fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            (v.len() >= 12).then(|| NetDev {
                interface: name.to_owned(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

fn v2_stats(dir: &Dir) -> Option<CgroupStats> {
    let procs = Some(dir.read("cgroup.procs")?);
    let cpu = keyed(dir.read("cpu.stat"));
    let mem = keyed(dir.read("memory.stat"));
    let usage = read_u64(dir.read("memory.current"));
    let inactive = mem.get("inactive_file").copied().unwrap_or(0);
    let us = |k: &str| cpu.get(k).map(|v| *v as f64 / 1e6);
    Some(CgroupStats {
        cpu_usage_seconds: us("usage_usec"),
        cpu_user_seconds: us("user_usec"),
        cpu_system_seconds: us("system_usec"),
        cfs_periods: cpu.get("nr_periods").copied(),
        cfs_throttled_periods: cpu.get("nr_throttled").copied(),
        cfs_throttled_seconds: us("throttled_usec"),
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.map(|u| u.saturating_sub(inactive)),
        memory_rss_bytes: mem.get("anon").copied(),
        memory_cache_bytes: mem.get("file").copied(),
        memory_limit_bytes: dir
            .read("memory.max")
            .map(|m| m.trim().parse().unwrap_or(0)),
        processes: procs.as_ref().map(|p| p.lines().count() as u64),
        oom_kills: keyed(dir.read("memory.events")).get("oom_kill").copied(),
        threads: count_lines(dir.read("cgroup.threads")),
        pressure: pressure(dir),
        io: io_stat(dir.read("io.stat")),
        network: network(procs.as_deref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("osprey-cg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn detects_hybrid_v1_and_pure_v2() {
        let hybrid = "30 25 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                      31 25 0:28 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n\
                      32 25 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                      33 25 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert!(matches!(
            Layout::from_mountinfo(hybrid),
            Some(Layout::V1 { .. })
        ));
        let pure = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            Layout::from_mountinfo(pure),
            Some(Layout::V2 {
                root: "/sys/fs/cgroup".into()
            })
        );
    }

    #[test]
    fn reads_v2_files_in_cadvisor_units() {
        let root = dir("v2");
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
        let s = layout.stats("/pod1");
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

    #[test]
    fn reads_psi_io_stat_and_net_dev() {
        let root = dir("psi");
        std::fs::write(root.join("cgroup.procs"), "").unwrap();
        std::fs::write(
            root.join("cpu.pressure"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=500000\n",
        )
        .unwrap();
        std::fs::write(
            root.join("io.stat"),
            "254:0 rbytes=4096 wbytes=1048576 rios=1 wios=16 dbytes=0 dios=0\n",
        )
        .unwrap();
        let s = v2_stats(&Dir::open(&root)).unwrap_or_default();
        assert_eq!(s.pressure.cpu, Some((2.5, Some(0.5))));
        assert_eq!(
            s.io,
            vec![IoStat {
                device: "254:0".into(),
                read_bytes: 4096,
                write_bytes: 1048576,
                reads: 1,
                writes: 16
            }]
        );
        let dev = "Inter-|   Receive                                                |  Transmit\n                    face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n                       lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n                     eth0:    2000      20    1    2    0     0          0         0     3000      30    3    4    0     0       0          0\n";
        let parsed = parse_net_dev(dev);
        assert_eq!(parsed.len(), 1, "lo is skipped");
        assert_eq!(
            (
                parsed[0].rx_bytes,
                parsed[0].rx_dropped,
                parsed[0].tx_packets,
                parsed[0].tx_errors
            ),
            (2000, 2, 30, 3)
        );
        let _ = std::fs::remove_dir_all(root);
    }
}
