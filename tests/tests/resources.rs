//! Per-cgroup usage (cAdvisor's names) against cgroupfs itself: a CPU burner
//! and a memory allocator in cgroups of their own, on this host's layout
//! (hybrid v1 here; pure v2 on most nodes).

use std::{path::PathBuf, process::Command, time::Duration};

use osprey_e2e::{
    agent,
    exposition::{samples, sum},
};

/// A test cgroup in every hierarchy the agent reads; removed on drop.
struct TestCgroup {
    dirs: Vec<PathBuf>,
    id: String,
}

impl TestCgroup {
    fn new(tag: &str) -> Self {
        let name = format!("osprey-{tag}-{}", std::process::id());
        let v1 = PathBuf::from("/sys/fs/cgroup/cpuacct/cpuacct.usage").exists();
        let roots: Vec<PathBuf> = if v1 {
            ["cpuacct", "cpu", "memory"]
                .iter()
                .map(|c| PathBuf::from("/sys/fs/cgroup").join(c))
                .collect()
        } else {
            let _ = std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+cpu +memory");
            vec![PathBuf::from("/sys/fs/cgroup")]
        };
        let dirs: Vec<PathBuf> = roots.iter().map(|r| r.join(&name)).collect();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        Self {
            dirs,
            id: format!("/{name}"),
        }
    }

    /// A shell line that moves itself into the cgroup, then runs `cmd`.
    fn run(&self, cmd: &str) -> std::process::Child {
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

    fn file(&self, v1_dir: usize, v1: &str, v2: &str) -> String {
        let path = if self.dirs.len() == 3 {
            self.dirs[v1_dir].join(v1)
        } else {
            self.dirs[0].join(v2)
        };
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Ground truth: CPU seconds from cgroupfs.
    fn cpu_seconds(&self) -> f64 {
        if self.dirs.len() == 3 {
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
    fn limit_memory(&self, bytes: u64) {
        let write = |path: PathBuf, value: &str| {
            std::fs::write(&path, value).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        if self.dirs.len() == 3 {
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
    fn oom_kills(&self) -> f64 {
        let text = self.file(2, "memory.oom_control", "memory.events");
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    fn memory_bytes(&self) -> f64 {
        self.file(2, "memory.usage_in_bytes", "memory.current")
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[test]
fn cpu_and_memory_per_cgroup_match_cgroupfs() {
    let Some(agent) = agent::for_test(&[]) else {
        return;
    };
    let cpu = TestCgroup::new("cpu");
    let burner = cpu.run("timeout 1.5 sh -c 'while :; do :; done'");
    let mem = TestCgroup::new("mem");
    let mut allocator =
        mem.run("python3 -c 'b = bytearray(96 << 20); import time; time.sleep(30)'");
    assert!(burner.wait_with_output().is_ok());
    std::thread::sleep(Duration::from_millis(500)); // the allocator has touched its pages

    let s = samples(&agent.scrape().1);
    let truth_cpu = cpu.cpu_seconds();
    let truth_mem = mem.memory_bytes();
    let got_cpu = sum(&s, "container_cpu_usage_seconds_total", &[("id", &cpu.id)]);
    let got_mem = sum(&s, "container_memory_usage_bytes", &[("id", &mem.id)]);
    let _ = allocator.kill();
    let _ = allocator.wait();

    assert!(truth_cpu > 0.5, "the burner ran ({truth_cpu} s)");
    assert!(
        (got_cpu - truth_cpu).abs() <= truth_cpu * 0.02,
        "cpu {got_cpu} s vs cgroupfs {truth_cpu} s"
    );
    assert!(
        truth_mem >= f64::from(96u32 << 20),
        "allocator charged {truth_mem} bytes"
    );
    assert!(
        (got_mem - truth_mem).abs() <= truth_mem * 0.05,
        "memory {got_mem} vs cgroupfs {truth_mem}"
    );
    let ws = sum(&s, "container_memory_working_set_bytes", &[("id", &mem.id)]);
    assert!(
        ws > 0.0 && ws <= got_mem,
        "working set {ws} vs usage {got_mem}"
    );
    let rss = sum(&s, "container_memory_rss", &[("id", &mem.id)]);
    assert!(rss >= f64::from(90u32 << 20), "rss {rss}");
}

/// A real OOM kill: a 256 MiB allocation in a cgroup limited to 32 MiB. The
/// kernel kills it (SIGKILL); the agent's count equals the kernel's.
#[test]
fn an_oom_kill_is_counted_on_its_cgroup() {
    use std::os::unix::process::ExitStatusExt;
    let Some(agent) = agent::for_test(&[]) else {
        return;
    };
    let cg = TestCgroup::new("oom");
    cg.limit_memory(32 << 20);
    let status = cg
        .run("python3 -c 'b = bytearray(256 << 20)'")
        .wait()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the allocator must be OOM-killed: {status:?}"
    );
    let s = samples(&agent.scrape().1);
    assert_eq!(cg.oom_kills(), 1.0, "the kernel counted one OOM kill");
    assert_eq!(
        sum(&s, "container_oom_events_total", &[("id", &cg.id)]),
        1.0
    );
}
