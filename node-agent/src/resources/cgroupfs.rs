//! Per-cgroup CPU, memory, IO, pressure, task and network figures from
//! cgroupfs and procfs, v1 (the controllers' own hierarchies, as on hybrid
//! hosts, with PSI from the v2 tree beside them) or v2 (one unified
//! hierarchy), read with the files and units cAdvisor uses.

use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
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

    #[cfg(test)]
    pub fn stats(&self, cgroup: &str) -> CgroupStats {
        self.open(cgroup, &FileBudget::new(0))
            .stats(true)
            .unwrap_or_default()
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
pub struct Opened {
    dirs: Dirs,
    v2_id: Option<u64>,
    /// (first process, whether its network namespace is not the host's).
    netns: Mutex<Option<(u32, bool)>>,
}

enum Dirs {
    V1 {
        cpuacct: Dir,
        cpu: Dir,
        memory: Dir,
        unified: Option<Dir>,
    },
    V2(Dir),
}

impl Opened {
    fn new(dirs: Dirs) -> Self {
        let v2_id = match &dirs {
            Dirs::V1 { unified, .. } => unified.as_ref().and_then(Dir::ino),
            Dirs::V2(dir) => dir.ino(),
        };
        Self {
            dirs,
            v2_id,
            netns: Mutex::new(None),
        }
    }

    /// The cgroup's v2 id (the inode of its v2 directory, what the eBPF
    /// probes see), if it has a v2 directory.
    pub fn v2_id(&self) -> Option<u64> {
        self.v2_id
    }

    fn dirs(&self) -> [Option<&Dir>; 4] {
        match &self.dirs {
            Dirs::V1 {
                cpuacct,
                cpu,
                memory,
                unified,
            } => [Some(cpuacct), Some(cpu), Some(memory), unified.as_ref()],
            Dirs::V2(dir) => [Some(dir), None, None, None],
        }
    }

    /// The cgroup's figures; None once the cgroup is gone (its directory was
    /// removed, perhaps to be created again under the same path).
    /// `oom_kills`: read the kernel's OOM-kill count too (not needed when
    /// the oom tracepoint counts them).
    pub fn stats(&self, oom_kills: bool) -> Option<CgroupStats> {
        let stats = self.read_stats(oom_kills)?;
        let stale = self.dirs().iter().flatten().any(|d| d.is_stale());
        (!stale).then_some(stats)
    }

    fn read_stats(&self, oom_kills: bool) -> Option<CgroupStats> {
        let (mut stats, first) = match &self.dirs {
            Dirs::V1 {
                cpuacct,
                cpu,
                memory,
                unified,
            } => {
                let (mut s, first) = v1_stats(cpuacct, cpu, memory, oom_kills)?;
                if let Some(unified) = unified {
                    s.pressure = pressure(unified);
                }
                (s, first)
            }
            Dirs::V2(dir) => v2_stats(dir, oom_kills)?,
        };
        if let Some(pid) = first {
            // The namespace check is redone only when the first process changes.
            let mut netns = self.netns.lock().unwrap_or_else(|e| e.into_inner());
            let foreign = match *netns {
                Some((p, foreign)) if p == pid => foreign,
                _ => {
                    let foreign = foreign_netns(pid);
                    *netns = Some((pid, foreign));
                    foreign
                }
            };
            if foreign {
                stats.network = network(pid);
            }
        }
        Some(stats)
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

/// How many cgroup files may stay open between scrapes, shared by every
/// cgroup. A kept file costs the kernel about 5 KiB (its seq_file buffer
/// and open-file state, charged to the agent's memory cgroup) and saves an
/// open and a close per scrape.
#[derive(Debug)]
pub struct FileBudget {
    limit: usize,
    used: AtomicUsize,
}

impl FileBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Files kept open now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// A cgroup directory opened once; its files are opened relative to it (the
/// kernel does not walk the whole path again) and, within the budget, kept
/// open and re-read from offset 0 (a seq_file regenerates its text then).
pub struct Dir {
    dir: Option<File>,
    kept: Mutex<Vec<(&'static str, File)>>,
    /// A kept file failed to read: the directory was removed (and maybe
    /// created again under the same path), so it must be opened anew.
    stale: AtomicBool,
    budget: Arc<FileBudget>,
}

impl Drop for Dir {
    fn drop(&mut self) {
        let kept = self.kept.get_mut().unwrap_or_else(|e| e.into_inner());
        self.budget.give_back(kept.len());
    }
}

impl Dir {
    fn open(path: &Path, budget: &Arc<FileBudget>) -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)
            .ok();
        Self {
            dir,
            kept: Mutex::new(Vec::new()),
            stale: AtomicBool::new(false),
            budget: budget.clone(),
        }
    }

    /// The directory's inode number: for a cgroup v2 directory, the cgroup
    /// id the eBPF probes see.
    fn ino(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        Some(self.dir.as_ref()?.metadata().ok()?.ino())
    }

    fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Reads file `name` and hands its text to `parse` (the text lives in a
    /// per-thread buffer, reused by every read).
    fn with<T>(&self, name: &'static str, parse: impl FnOnce(&str) -> T) -> Option<T> {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 8192]);
        }
        BUF.with_borrow_mut(|buf| {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            let len = match kept.iter().find(|(n, _)| *n == name) {
                Some((_, file)) => {
                    let len = pread_all(file, buf);
                    if len.is_none() {
                        self.stale.store(true, Ordering::Relaxed);
                    }
                    len?
                }
                None => {
                    let file = self.openat(name)?;
                    let len = pread_all(&file, buf)?;
                    if self.budget.take() {
                        kept.push((name, file));
                    }
                    len
                }
            };
            drop(kept);
            Some(parse(std::str::from_utf8(&buf[..len]).ok()?))
        })
    }

    fn openat(&self, name: &str) -> Option<File> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let dir = self.dir.as_ref()?;
        let name = std::ffi::CString::new(name).ok()?;
        // SAFETY: a valid directory fd and C string; the returned fd is owned here.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        // SAFETY: a fresh fd nobody else owns.
        (fd >= 0).then(|| unsafe { File::from_raw_fd(fd) })
    }
}

/// Reads a file whole into `buf` with `pread` from offset 0 until EOF (at
/// most 1 MiB), growing `buf` as needed; returns the length.
fn pread_all(file: &File, buf: &mut Vec<u8>) -> Option<usize> {
    use std::os::unix::fs::FileExt;
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len >= 1 << 20 {
                break;
            }
            buf.resize(len * 2, 0);
        }
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(len)
}

fn parse_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The values of `keys` in `key value` lines (cpu.stat, memory.stat,
/// cpuacct.stat), in one pass and without allocating.
fn pick<const N: usize>(text: &str, keys: [&str; N]) -> [Option<u64>; N] {
    let mut out = [None; N];
    for line in text.lines() {
        let Some((k, v)) = line.split_once(' ') else {
            continue;
        };
        if let Some(i) = keys.iter().position(|want| *want == k) {
            out[i] = v.trim().parse().ok();
        }
    }
    out
}

/// (number of lines, first line as a pid) of cgroup.procs.
fn procs(text: &str) -> (u64, Option<u32>) {
    let first = text.lines().next().and_then(|l| l.trim().parse().ok());
    (text.lines().count() as u64, first)
}

fn count_lines(text: &str) -> u64 {
    text.lines().count() as u64
}

/// A v1 cgroup's figures and its first process.
fn v1_stats(
    cpuacct: &Dir,
    cpu: &Dir,
    memory: &Dir,
    oom: bool,
) -> Option<(CgroupStats, Option<u32>)> {
    let (processes, first) = cpuacct.with("cgroup.procs", procs)?;
    let [user, system] = cpuacct
        .with("cpuacct.stat", |t| pick(t, ["user", "system"]))
        .unwrap_or_default();
    let [periods, throttled, throttled_ns] = cpu
        .with("cpu.stat", |t| {
            pick(t, ["nr_periods", "nr_throttled", "throttled_time"])
        })
        .unwrap_or_default();
    let [inactive, rss, cache] = memory
        .with("memory.stat", |t| {
            pick(t, ["total_inactive_file", "total_rss", "total_cache"])
        })
        .unwrap_or_default();
    let usage = memory.with("memory.usage_in_bytes", parse_u64).flatten();
    let [oom_kills] = oom
        .then(|| memory.with("memory.oom_control", |t| pick(t, ["oom_kill"])))
        .flatten()
        .unwrap_or_default();
    let stats = CgroupStats {
        cpu_usage_seconds: cpuacct
            .with("cpuacct.usage", parse_u64)
            .flatten()
            .map(|ns| ns as f64 / 1e9),
        cpu_user_seconds: user.map(|t| t as f64 / USER_HZ),
        cpu_system_seconds: system.map(|t| t as f64 / USER_HZ),
        cfs_periods: periods,
        cfs_throttled_periods: throttled,
        cfs_throttled_seconds: throttled_ns.map(|ns| ns as f64 / 1e9),
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.map(|u| u.saturating_sub(inactive.unwrap_or(0))),
        memory_rss_bytes: rss,
        memory_cache_bytes: cache,
        memory_limit_bytes: memory
            .with("memory.limit_in_bytes", parse_u64)
            .flatten()
            .map(|l| if l >= V1_UNLIMITED { 0 } else { l }),
        processes: Some(processes),
        oom_kills,
        threads: cpuacct.with("tasks", count_lines),
        ..CgroupStats::default()
    };
    Some((stats, first))
}

/// `some avg10=… total=<µs>` / `full …` lines of a PSI file.
fn psi(text: &str) -> Option<(f64, Option<f64>)> {
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
        cpu: dir.with("cpu.pressure", psi).flatten(),
        memory: dir.with("memory.pressure", psi).flatten(),
        io: dir.with("io.pressure", psi).flatten(),
    }
}

/// v2 io.stat: `MAJ:MIN rbytes=… wbytes=… rios=… wios=… …` per device.
fn io_stat(text: &str) -> Vec<IoStat> {
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

/// Whether process `pid` lives in a network namespace other than the
/// host's (the agent's).
fn foreign_netns(pid: u32) -> bool {
    static HOST_NETNS: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
    let host = HOST_NETNS.get_or_init(|| ns("self"));
    matches!((ns(&pid.to_string()), host), (Some(theirs), Some(ours)) if theirs != *ours)
}

/// The interfaces of process `pid`'s network namespace, from
/// /proc/<pid>/net/dev, as cAdvisor reads them.
fn network(pid: u32) -> Vec<NetDev> {
    read(Path::new(&format!("/proc/{pid}/net/dev")))
        .map(|text| parse_net_dev(&text))
        .unwrap_or_default()
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

/// A v2 cgroup's figures and its first process.
fn v2_stats(dir: &Dir, oom: bool) -> Option<(CgroupStats, Option<u32>)> {
    let (processes, first) = dir.with("cgroup.procs", procs)?;
    let [
        usage_us,
        user_us,
        system_us,
        periods,
        throttled,
        throttled_us,
    ] = dir
        .with("cpu.stat", |t| {
            pick(
                t,
                [
                    "usage_usec",
                    "user_usec",
                    "system_usec",
                    "nr_periods",
                    "nr_throttled",
                    "throttled_usec",
                ],
            )
        })
        .unwrap_or_default();
    let [inactive, anon, file] = dir
        .with("memory.stat", |t| {
            pick(t, ["inactive_file", "anon", "file"])
        })
        .unwrap_or_default();
    let usage = dir.with("memory.current", parse_u64).flatten();
    let [oom_kills] = oom
        .then(|| dir.with("memory.events", |t| pick(t, ["oom_kill"])))
        .flatten()
        .unwrap_or_default();
    let secs = |us: Option<u64>| us.map(|v| v as f64 / 1e6);
    let stats = CgroupStats {
        cpu_usage_seconds: secs(usage_us),
        cpu_user_seconds: secs(user_us),
        cpu_system_seconds: secs(system_us),
        cfs_periods: periods,
        cfs_throttled_periods: throttled,
        cfs_throttled_seconds: secs(throttled_us),
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.map(|u| u.saturating_sub(inactive.unwrap_or(0))),
        memory_rss_bytes: anon,
        memory_cache_bytes: file,
        // "max" (unlimited) is 0, as cAdvisor reports it.
        memory_limit_bytes: dir.with("memory.max", |t| t.trim().parse().unwrap_or(0)),
        processes: Some(processes),
        oom_kills,
        threads: dir.with("cgroup.threads", count_lines),
        pressure: pressure(dir),
        io: dir.with("io.stat", io_stat).unwrap_or_default(),
        network: Vec::new(),
    };
    Some((stats, first))
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
        let s = v2_stats(&Dir::open(&root, &FileBudget::new(0)), true)
            .unwrap_or_default()
            .0;
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
