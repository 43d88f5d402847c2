//! Test cgroups: made in every hierarchy the agent reads, removed on drop.

use std::{path::PathBuf, process::Command, time::Duration};

/// A test cgroup in every hierarchy the agent reads; removed on drop.
pub struct TestCgroup {
    /// The cgroup's directory in each hierarchy.
    pub dirs: Vec<PathBuf>,
    /// Directories made for it, deepest first (removed on drop).
    made: Vec<PathBuf>,
    /// The cgroup path, as the agent labels it (`id`).
    pub id: String,
}

impl TestCgroup {
    pub fn new(tag: &str) -> Self {
        Self::at(&format!("osprey-{tag}-{}", std::process::id()))
    }

    /// A cgroup at `path` (relative, may be nested; parents are made too).
    pub fn at(path: &str) -> Self {
        let name = path.trim_start_matches('/');
        let v1 = PathBuf::from("/sys/fs/cgroup/cpuacct/cpuacct.usage").exists();
        // v1: cpuacct, cpu, memory (the agent reads them), then blkio and the
        // v2 tree (the eBPF probes name tasks by their v2 cgroup).
        let roots: Vec<PathBuf> = if v1 {
            ["cpuacct", "cpu", "memory", "blkio", "unified"]
                .iter()
                .map(|c| PathBuf::from("/sys/fs/cgroup").join(c))
                .collect()
        } else {
            let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+cpu +memory +io");
            vec![PathBuf::from("/sys/fs/cgroup")]
        };
        let dirs: Vec<PathBuf> = roots.iter().map(|r| r.join(name)).collect();
        let mut made = Vec::new();
        for (root, d) in roots.iter().zip(&dirs) {
            let mut missing: Vec<PathBuf> = d
                .ancestors()
                .take_while(|a| *a != root.as_path() && !a.exists())
                .map(PathBuf::from)
                .collect();
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            if !v1 {
                // v2: a nested cgroup has the controllers its parents hand down.
                for parent in missing.iter().skip(1).rev() {
                    let _ =
                        std::fs::write(parent.join("cgroup.subtree_control"), "+cpu +memory +io");
                }
            }
            made.append(&mut missing);
        }
        Self {
            dirs,
            made,
            id: format!("/{name}"),
        }
    }

    /// Moves a running process (all its threads) into the cgroup.
    pub fn adopt(&self, pid: u32) {
        for d in &self.dirs {
            std::fs::write(d.join("cgroup.procs"), pid.to_string())
                .unwrap_or_else(|e| panic!("moving {pid} to {}: {e}", d.display()));
        }
    }

    /// A shell line that moves itself into the cgroup, then runs `cmd`.
    pub fn run(&self, cmd: &str) -> std::process::Child {
        let join: String = self
            .dirs
            .iter()
            .map(|d| format!("echo $$ > {}/cgroup.procs; ", d.display()))
            .collect();
        Command::new("sh")
            .arg("-c")
            .arg(format!("{join}exec {cmd}"))
            .spawn()
            .unwrap()
    }

    pub fn file(&self, v1_dir: usize, v1: &str, v2: &str) -> String {
        let path = if self.dirs.len() > 1 {
            self.dirs[v1_dir].join(v1)
        } else {
            self.dirs[0].join(v2)
        };
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Ground truth: CPU seconds from cgroupfs.
    pub fn cpu_seconds(&self) -> f64 {
        if self.dirs.len() > 1 {
            self.file(0, "cpuacct.usage", "")
                .trim()
                .parse::<f64>()
                .unwrap()
                / 1e9
        } else {
            let stat = self.file(0, "", "cpu.stat");
            let usec: f64 = stat
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            usec / 1e6
        }
    }

    /// Limits memory (and swap) to `bytes`.
    pub fn limit_memory(&self, bytes: u64) {
        let write = |path: PathBuf, value: &str| {
            std::fs::write(&path, value).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        if self.dirs.len() > 1 {
            write(
                self.dirs[2].join("memory.limit_in_bytes"),
                &bytes.to_string(),
            );
            let memsw = self.dirs[2].join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write(memsw, &bytes.to_string());
            }
        } else {
            write(self.dirs[0].join("memory.max"), &bytes.to_string());
            let _ = std::fs::write(self.dirs[0].join("memory.swap.max"), "0");
        }
    }

    /// Ground truth: the kernel's OOM-kill count for the cgroup.
    pub fn oom_kills(&self) -> f64 {
        let text = self.file(2, "memory.oom_control", "memory.events");
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    /// The v2 directory (PSI files).
    pub fn v2_dir(&self) -> &PathBuf {
        self.dirs.last().unwrap()
    }

    pub fn memory_bytes(&self) -> f64 {
        self.file(2, "memory.usage_in_bytes", "memory.current")
            .trim()
            .parse()
            .unwrap()
    }
}

impl TestCgroup {
    /// Moves every process still in the cgroup to its hierarchy's root (an
    /// agent the test adopted and still runs): a cgroup with a process in
    /// it cannot be removed, and one left behind is a stray pod cgroup in
    /// the next test's and bench's scrapes.
    fn evacuate(&self) {
        for d in &self.dirs {
            let Some(root) = d.to_str().and_then(|p| p.strip_suffix(self.id.as_str())) else {
                continue;
            };
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines() {
                let _ = std::fs::write(PathBuf::from(root).join("cgroup.procs"), pid);
            }
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.evacuate();
        for d in &self.made {
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
