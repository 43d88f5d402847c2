//! Per-cgroup usage (cAdvisor's names) against ground truth: the workloads'
//! own accounts (rusage, /proc/<pid>/status), the kernel's per-task
//! schedstat, the bytes a writer wrote, /proc/net/dev of a pod's namespace.
//! Workloads run in cgroups of their own, on this host's layout (hybrid v1
//! here; pure v2 on most nodes).

use std::{
    process::{Child, Command},
    time::Duration,
};

use osprey_e2e::{
    agent,
    cgroup::TestCgroup,
    exposition::{samples, sum},
    netns::{IFACE, PodPair},
};

/// Waits for the child `pid` and returns the CPU seconds (user + system) it
/// and every descendant it waited for used, from the kernel's own rusage
/// (wait4): the process tree's account, not its cgroup's.
fn wait_cpu_seconds(pid: u32) -> f64 {
    // SAFETY: rusage is plain data; wait4 reaps our own child and fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0;
    let rc = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid as i32, "wait4: {}", std::io::Error::last_os_error());
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// A field of /proc/<pid>/status in bytes (the kernel prints kB).
fn status_bytes(pid: u32, field: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    kb * 1024.0
}

/// Each cgroup holds one workload; its CPU and memory come from the
/// workload's own account, not the cgroup files the agent reads: the burner's
/// rusage (as wait4 reports it), the allocator's resident anonymous memory
/// (/proc/<pid>/status).
#[test]
fn cpu_and_memory_per_cgroup_match_the_processes_own_account() {
    let Some(agent) = agent::for_test(&[]) else {
        return;
    };
    let cpu = TestCgroup::new("cpu");
    // `timeout` (the shell that joined the cgroup, exec'd) waits for the
    // burning shell: its rusage holds the whole cgroup's CPU.
    let burner = cpu.run("timeout 1.5 sh -c 'while :; do :; done'").id();
    let mem = TestCgroup::new("mem");
    let mut allocator =
        mem.run("python3 -c 'b = bytearray(96 << 20); import time; time.sleep(30)'");
    let truth_cpu = wait_cpu_seconds(burner);
    std::thread::sleep(Duration::from_millis(500)); // the allocator has touched its pages

    let anon_before = status_bytes(allocator.id(), "RssAnon");
    let s = samples(&agent.scrape().1);
    let anon_after = status_bytes(allocator.id(), "RssAnon");
    let rss_total = status_bytes(allocator.id(), "VmRSS");
    let got_cpu = sum(&s, "container_cpu_usage_seconds_total", &[("id", &cpu.id)]);
    let got_mem = sum(&s, "container_memory_usage_bytes", &[("id", &mem.id)]);
    let _ = allocator.kill();
    let _ = allocator.wait();
    let rss = sum(&s, "container_memory_rss", &[("id", &mem.id)]);
    eprintln!(
        "cpu: agent {got_cpu} s, rusage {truth_cpu} s; memory: agent usage {got_mem}, rss {rss}; \
         allocator RssAnon {anon_before}..{anon_after}, VmRSS {rss_total}"
    );

    assert!(truth_cpu > 0.5, "the burner ran ({truth_cpu} s)");
    assert!(
        (got_cpu - truth_cpu).abs() <= truth_cpu * 0.02,
        "cpu {got_cpu} s vs the burner's rusage {truth_cpu} s"
    );
    let (anon_lo, anon_hi) = (anon_before.min(anon_after), anon_before.max(anon_after));
    assert!(
        anon_lo >= f64::from(96u32 << 20),
        "the allocator holds {anon_lo} bytes"
    );
    // The cgroup's anonymous memory is the allocator's (1 MiB for the
    // kernel's per-CPU batching of both counts).
    assert!(
        anon_lo - f64::from(1u32 << 20) <= rss && rss <= anon_hi + f64::from(1u32 << 20),
        "rss {rss} vs the allocator's RssAnon {anon_before}..{anon_after}"
    );
    // Usage is that plus what else the cgroup was charged (page cache the
    // allocator read, kernel memory): at least its anonymous memory, at most
    // its whole resident set and 16 MiB of kernel memory and cache.
    assert!(
        anon_lo <= got_mem && got_mem <= rss_total + f64::from(16u32 << 20),
        "memory {got_mem} vs the allocator's RssAnon {anon_lo} and VmRSS {rss_total}"
    );
    let ws = sum(&s, "container_memory_working_set_bytes", &[("id", &mem.id)]);
    assert!(
        ws >= anon_lo - f64::from(1u32 << 20) && ws <= got_mem,
        "working set {ws} vs the allocator's RssAnon {anon_lo} and usage {got_mem}"
    );
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
    // The live event stream names the victim's command, pid and cgroup.
    let out = Command::new(agent::binary().unwrap())
        .args([
            "events",
            "--server",
            &format!("http://127.0.0.1:{}", agent.port()),
        ])
        .args(["--cgroup", &cg.id, "-o", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "one OOM event: {text}");
    let e = &events[0];
    assert_eq!(e["kind"], "OOM_KILL");
    assert_eq!(e["command"], "python3");
    assert_eq!(e["cgroup"], cg.id.as_str());
    assert!(e["anon_rss_bytes"].as_u64().unwrap() > 16 << 20, "{e}");
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Field `n` (0-based) of /proc/<pid>/schedstat: 0 = ns on a CPU, 1 = ns
/// waiting on a run queue.
fn schedstat(pid: u32, n: usize) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    text.split_whitespace().nth(n).unwrap().parse().unwrap()
}

/// PSI `some` total of a cgroup's cpu.pressure, seconds.
fn cpu_pressure_some(dir: &std::path::Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("cpu.pressure")).unwrap();
    let us: f64 = text
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total="))
        .unwrap()
        .parse()
        .unwrap();
    us / 1e6
}

/// Two CPU burners pinned to one CPU wait for it half of the time. The
/// agent's run-queue latency histogram (eBPF sched tracepoints) sums to what
/// the kernel's own per-task schedstat says they waited, and PSI agrees with
/// the cgroup's cpu.pressure.
#[test]
fn runqueue_latency_matches_schedstat() {
    runqueue_latency_matches_schedstat_with(&[], "runq");
}

/// The same with the probes reading the tracepoints' fields through helper
/// calls at tracefs offsets: the path kernels of another record layout take.
#[test]
fn runqueue_latency_matches_schedstat_on_the_portable_path() {
    runqueue_latency_matches_schedstat_with(&["--sched-fields-by-helper"], "runq-portable");
}

fn runqueue_latency_matches_schedstat_with(args: &[&str], tag: &str) {
    let Some(agent) = agent::for_test(args) else {
        return;
    };
    let cg = TestCgroup::new(tag);
    let burners: Vec<Child> = (0..2)
        .map(|_| cg.run("taskset -c 0 sh -c 'while :; do :; done'"))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // Stopping them switches them out, which charges their last wait.
    for b in &burners {
        unsafe { libc::kill(b.id() as i32, libc::SIGSTOP) };
    }
    std::thread::sleep(Duration::from_millis(200));
    let truth_wait: f64 = burners.iter().map(|b| schedstat(b.id(), 1)).sum::<f64>() / 1e9;
    let psi_before = cpu_pressure_some(cg.v2_dir());
    let s = samples(&agent.scrape().1);
    let psi_after = cpu_pressure_some(cg.v2_dir());
    for b in burners {
        kill(b);
    }
    let id = [("id", cg.id.as_str())];
    let got = sum(&s, "container_cpu_runqueue_latency_seconds_sum", &id);
    let count = sum(&s, "container_cpu_runqueue_latency_seconds_count", &id);
    let inf = sum(
        &s,
        "container_cpu_runqueue_latency_seconds_bucket",
        &[("id", cg.id.as_str()), ("le", "+Inf")],
    );
    eprintln!("run-queue wait: agent {got:.3} s over {count} waits, schedstat {truth_wait:.3} s");
    assert!(
        truth_wait > 0.5,
        "the burners competed for CPU 0 ({truth_wait} s)"
    );
    assert!(
        (got - truth_wait).abs() <= truth_wait * 0.05 + 0.02,
        "agent {got} s vs schedstat {truth_wait} s"
    );
    assert_eq!(count, inf, "the +Inf bucket holds every wait");
    let psi = sum(&s, "container_pressure_cpu_waiting_seconds_total", &id);
    assert!(
        psi_before <= psi && psi <= psi_after && psi > 0.5,
        "PSI cpu some: agent {psi} vs cpu.pressure {psi_before}..{psi_after}"
    );
}

/// A writer in its own cgroup writes 32 MiB with O_DIRECT (block IO in its
/// own context): the agent's written bytes (eBPF block tracepoint) match
/// what it wrote within 1 %.
#[test]
fn block_writes_match_what_the_writer_wrote() {
    let Some(agent) = agent::for_test(&[]) else {
        return;
    };
    let cg = TestCgroup::new("disk");
    let file = format!("/var/tmp/osprey-disk-{}", std::process::id());
    let written: f64 = (32u64 << 20) as f64;
    let status = cg
        .run(&format!(
            "dd if=/dev/zero of={file} bs=1M count=32 oflag=direct status=none"
        ))
        .wait()
        .unwrap();
    assert!(status.success(), "dd: {status:?}");
    let s = samples(&agent.scrape().1);
    let _ = std::fs::remove_file(&file);
    let id = [("id", cg.id.as_str())];
    let got = sum(&s, "container_fs_writes_bytes_total", &id);
    let ios = sum(&s, "container_fs_writes_total", &id);
    eprintln!("written: agent {got} bytes in {ios} IOs, dd {written}");
    assert!(
        (got - written).abs() <= written * 0.01,
        "agent {got} bytes vs dd {written}"
    );
    assert!(ios >= 32.0, "at least one IO per 1 MiB block ({ios})");
}

/// Threads and processes per cgroup, against the workload's own count.
#[test]
fn threads_and_processes_per_cgroup() {
    let Some(agent) = agent::for_test(&[]) else {
        return;
    };
    let cg = TestCgroup::new("threads");
    let py = cg.run(
        "python3 -c 'import threading, time\n\
         [threading.Thread(target=time.sleep, args=(30,)).start() for _ in range(4)]\n\
         time.sleep(30)'",
    );
    std::thread::sleep(Duration::from_millis(700));
    let s = samples(&agent.scrape().1);
    kill(py);
    let id = [("id", cg.id.as_str())];
    assert_eq!(sum(&s, "container_processes", &id), 1.0);
    assert_eq!(sum(&s, "container_threads", &id), 5.0, "main + 4 threads");
}

/// Pid lists longer than a page: the kernel renders `cgroup.procs`,
/// `cgroup.threads` and `tasks` a record per pid, so a read can end short at
/// a page boundary while pids remain, and the agent must read on to the end.
/// 650 children and 1,500 threads put ~4.5 KiB and ~15 KiB in the lists;
/// the counts are the workload's own, by construction.
#[test]
fn pid_lists_past_a_page_are_counted_whole() {
    const CHILDREN: u32 = 650;
    const THREADS: u32 = 1500;
    let Some(agent) = agent::for_test(&[]) else {
        return;
    };
    let cg = TestCgroup::new("manypids");
    // The children wait on a pipe the parent holds: they exit with it.
    let py = cg.run(&format!(
        "python3 -c 'import os, threading, time\n\
         r, w = os.pipe()\n\
         for _ in range({CHILDREN}):\n\
         \x20   if os.fork() == 0:\n\
         \x20       os.close(w); os.read(r, 1); os._exit(0)\n\
         os.close(r)\n\
         threading.stack_size(256 * 1024)\n\
         done = threading.Event()\n\
         [threading.Thread(target=done.wait, daemon=True).start() for _ in range({THREADS})]\n\
         time.sleep(60)'"
    ));
    let status = format!("/proc/{}/status", py.id());
    let threads_of_main = || {
        std::fs::read_to_string(&status)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|v| v.trim().parse::<u32>().ok())
            })
            .unwrap_or(0)
    };
    osprey_e2e::settle(20, || (threads_of_main() == THREADS + 1, ()));
    assert_eq!(threads_of_main(), THREADS + 1, "the workload did not start");
    let id = [("id", cg.id.as_str())];
    let s = osprey_e2e::settle(5, || {
        let s = samples(&agent.scrape().1);
        (
            sum(&s, "container_threads", &id) == f64::from(CHILDREN + 1 + THREADS),
            s,
        )
    });
    kill(py);
    assert_eq!(
        sum(&s, "container_processes", &id),
        f64::from(CHILDREN + 1),
        "the parent and its children"
    );
    assert_eq!(
        sum(&s, "container_threads", &id),
        f64::from(CHILDREN + 1 + THREADS),
        "one thread per child, the parent's main thread and its threads"
    );
}

/// The agent keeps cgroup files open between scrapes; a cgroup removed and
/// created again under the same path (a restarted container) must be read
/// afresh, not through the old, dead files.
#[test]
fn a_recreated_cgroup_is_read_afresh() {
    let Some(agent) = agent::for_test(&[]) else {
        return;
    };
    let cg = TestCgroup::new("recreate");
    let one = cg.run("sleep 30");
    std::thread::sleep(Duration::from_millis(300));
    let id = cg.id.clone();
    let s = samples(&agent.scrape().1);
    assert_eq!(sum(&s, "container_processes", &[("id", &id)]), 1.0);
    assert!(
        sum(&s, "osprey_cgroup_open_files", &[]) > 0.0,
        "the agent keeps the cgroup's files open"
    );
    kill(one);
    drop(cg);

    let cg = TestCgroup::new("recreate");
    assert_eq!(cg.id, id, "the same path again");
    let a = cg.run("sleep 30");
    let b = cg.run("sleep 30");
    std::thread::sleep(Duration::from_millis(300));
    let s = samples(&agent.scrape().1);
    let truth = cg.cpu_seconds();
    let got = sum(&s, "container_cpu_usage_seconds_total", &[("id", &id)]);
    kill(a);
    kill(b);
    assert_eq!(sum(&s, "container_processes", &[("id", &id)]), 2.0);
    assert!(
        got <= truth + 1e-9 && got > 0.0,
        "CPU of the new cgroup: agent {got} s, cgroupfs {truth} s"
    );
}

/// A process of the cgroup lives in a pod network namespace: the agent
/// reports that namespace's interface counters (cAdvisor's per-pod network
/// families), equal to /proc/net/dev read around the scrape.
#[test]
fn pod_network_counters_match_the_pods_interface() {
    let Some(agent) = agent::for_test(&[]) else {
        return;
    };
    let pods = PodPair::new("rnet", "10.215.0.1", "10.215.0.2", 24);
    let cg = TestCgroup::new("net");
    let sleeper = cg.run(&format!("ip netns exec {} sleep 30", pods.a.name));
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pods.a.name,
            "ping",
            "-q",
            "-c",
            "20",
            "-i",
            "0.01",
        ])
        .args(["-s", "1000", "10.215.0.2"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "ping: {ping:?}");
    std::thread::sleep(Duration::from_millis(300));
    let before = pods.a.counter(IFACE, "tx_bytes");
    let s = samples(&agent.scrape().1);
    let after = pods.a.counter(IFACE, "tx_bytes");
    let rx = pods.a.counter(IFACE, "rx_packets");
    kill(sleeper);
    let labels = [("id", cg.id.as_str()), ("interface", IFACE)];
    let tx = sum(&s, "container_network_transmit_bytes_total", &labels);
    assert!(before >= 20 * 1028, "ping sent 20 × 1028 B ({before})");
    assert!(
        before as f64 <= tx && tx <= after as f64,
        "agent {tx} vs /proc/net/dev {before}..{after}"
    );
    let got_rx = sum(&s, "container_network_receive_packets_total", &labels);
    assert!(
        got_rx >= 20.0 && got_rx <= rx as f64,
        "rx packets: agent {got_rx} vs {rx}"
    );
}
