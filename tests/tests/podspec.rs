//! The chart's rendered agent pod runs, the way a node would run it: `helm
//! template` renders deploy/helm/osprey in each mode (privileged: true; and
//! least privilege: only the chart's capabilities, as user 65534), the
//! test takes the DaemonSet's pod template as a Pod and runs it with
//! `podman kube play` (Debian's podman 4.3, runc) from an image built of the
//! local target/release (the agent, its `ldd` libraries, the probe object
//! beside it; the agent carrying the chart's capabilities as file
//! capabilities, as the image must: Kubernetes gives a non-root user no
//! ambient capabilities). The pod keeps its host network, host PID, host
//! mounts (bpffs, tracefs, BTF, cgroupfs, the host's /proc and root) and
//! security context. Every probe loads (`osprey_bpf_program_info` names all
//! thirteen programs and the log warns of none disabled), and what the agent
//! sees from inside the pod matches the host: `node_network_*` of `lo` and
//! of a host-side veth, `node_filesystem_size_bytes` of `/` and of a tmpfs
//! mounted on the host for the test, and a test pod's (a cgroup whose
//! process lives in its own network namespace) `container_cpu_usage_seconds_total`,
//! `container_memory_working_set_bytes` and `container_network_*` against
//! its cgroup files and interface counters.
//!
//! What podman 4.3 cannot do is rewritten, each rewrite said where it is
//! made: DaemonSet → Pod; `fieldRef` env → literal values and `$(VAR)`
//! expanded; no `ports` (refused with host network); the long
//! `checksum/config` annotation dropped; `seccompProfile: Unconfined` given
//! as the annotation podman reads; `hostPID` as `pidns = "host"` in the
//! CONTAINERS_CONF file.

use std::{
    collections::BTreeSet,
    ffi::CString,
    path::Path,
    process::{Child, Command},
    time::Duration,
};

use osprey_e2e::{
    agent,
    cgroup::TestCgroup,
    eventually,
    exposition::{Sample, samples, sum},
    free_port, is_root,
    netns::{IFACE, Netns},
    peers,
    podman::{
        Cleanup, Mode, PODMAN, added_capabilities, build_image, cap_mask, document, mask_of,
        pod_of, podman, root, run, status_field, values_capabilities,
    },
    require, require_peer,
};

/// Every program the agent loads: eleven attached, clock_sample and
/// symbol_name test-run.
const PROGRAMS: [&str; 13] = [
    "block_io",
    "clock_sample",
    "flow_egress",
    "flow_ingress",
    "oom_victim",
    "sched_exit",
    "sched_switch",
    "sched_wakeup",
    "sched_wakeup_new",
    "skb_drop",
    "symbol_name",
    "tcp_retransmit",
    "tcp_state",
];
#[test]
fn the_privileged_pod_spec_runs_and_sees_the_host() {
    pod_spec_runs(Mode::Privileged);
}

#[test]
fn the_least_privilege_pod_spec_runs_and_sees_the_host() {
    pod_spec_runs(Mode::LeastPrivilege);
}

/// statfs of a host path: size in bytes (f_blocks × f_bsize, as
/// node-exporter and the agent compute it).
fn host_size_bytes(path: &Path) -> f64 {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string and a statfs buffer of the right type.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut buf) }, 0);
    buf.f_blocks as f64 * buf.f_bsize as f64
}

fn sysfs_counter(dev: &str, stat: &str) -> f64 {
    let path = format!("/sys/class/net/{dev}/statistics/{stat}");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

/// The cgroup's working set as cAdvisor computes it: usage less inactive
/// file pages.
fn working_set(cg: &TestCgroup) -> f64 {
    let usage: f64 = cg.memory_bytes();
    let stat = cg.file(2, "memory.stat", "memory.stat");
    let key = if cg.dirs.len() > 1 {
        "total_inactive_file "
    } else {
        "inactive_file "
    };
    let inactive: f64 = stat
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0);
    (usage - inactive).max(0.0)
}

fn one(s: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    s.iter()
        .any(|x| {
            x.name == name
                && want
                    .iter()
                    .all(|(k, v)| x.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .then(|| sum(s, name, want))
}

fn pod_spec_runs(mode: Mode) {
    require!(
        is_root(),
        "root is needed to run the agent's pod with podman"
    );
    let helm = require_peer!(peers::HELM);
    require!(
        agent::binary().is_some(),
        "OSPREY_AGENT_BIN unset: run `cargo xtask test`"
    );
    require!(
        Path::new(PODMAN).exists(),
        "podman is not installed (cargo xtask setup)"
    );
    let (short, privileged) = match mode {
        Mode::Privileged => ("p", true),
        Mode::LeastPrivilege => ("l", false),
    };
    let pid = std::process::id();
    let tag = format!("{short}{pid}");
    let dir = std::env::temp_dir().join(format!("osprey-podspec-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("containers.conf");
    let mut cleanup = Cleanup {
        conf: conf.clone(),
        pod: None,
        volume: None,
        image: None,
        mount: None,
        link: None,
        dir: Some(dir.clone()),
    };

    // The runtime as a node's: runc (crun refuses this host's hybrid cgroup
    // layout), cgroupfs (no systemd here), and hostPID, which podman 4.3's
    // kube play ignores (rewrite: every container in the host's PID
    // namespace). Open files: the limit this test has (an unprivileged
    // runtime cannot raise it).
    let mut nofile = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut nofile) };
    std::fs::write(
        &conf,
        format!(
            "[containers]\npidns = \"host\"\n\
             default_ulimits = [\"nofile={0}:{0}\", \"nproc=32768:32768\"]\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
            nofile.rlim_max
        ),
    )
    .unwrap();

    // Render. Only values: the image, and a free port (tests run side by side).
    let port = free_port();
    let release = format!("osprey-{tag}");
    let repository = "localhost/osprey-podspec";
    let image = format!("{repository}:{tag}");
    let rendered = run(Command::new(&helm)
        .args(["template", &release])
        .arg(root().join("deploy/helm/osprey"))
        .args(["--set", &format!("agent.privileged={privileged}")])
        .args(["--set", &format!("agent.image.repository={repository}")])
        .args(["--set", &format!("agent.image.tag={tag}")])
        .args(["--set", "agent.image.pullPolicy=Never"])
        .args(["--set", &format!("agent.port={port}")])
        .args(["--show-only", "templates/agent-daemonset.yaml"])
        .args(["--show-only", "templates/agent-configmap.yaml"]));
    let daemonset = document(&rendered, "DaemonSet");
    let configmap = document(&rendered, "ConfigMap");
    let config_name = configmap
        .lines()
        .find_map(|l| l.strip_prefix("  name: "))
        .unwrap()
        .trim()
        .to_owned();

    // The chart's capabilities, less those this host's runtime cannot hand
    // out: a capability outside the test's own bounding set (this sandbox's
    // root lacks SYS_RESOURCE, needed only below kernel 5.11) is dropped by
    // podman, and a file capability the process cannot hold makes exec fail.
    let self_status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = cap_mask(&self_status, "CapBnd");
    let chart_caps = added_capabilities(daemonset);
    if mode == Mode::LeastPrivilege {
        assert_eq!(
            chart_caps,
            values_capabilities(),
            "the values' list rendered"
        );
    }
    let grantable = |caps: &[String]| -> Vec<String> {
        caps.iter()
            .filter(|c| mask_of(std::slice::from_ref(c)) & bounding != 0)
            .cloned()
            .collect()
    };
    let held = grantable(&chart_caps);
    let withheld: Vec<&String> = chart_caps.iter().filter(|c| !held.contains(c)).collect();
    eprintln!("chart capabilities {chart_caps:?}; not grantable on this host: {withheld:?}");
    // One image for both modes, as the chart's values describe it: the
    // agent with the least-privilege list as file capabilities.
    build_image(&dir, &conf, &image, &grantable(&values_capabilities()));
    cleanup.image = Some(image.clone());

    // The host's side: a veth whose host end only the host network shows;
    // a tmpfs mounted on the host (not in the pod's mount namespace); a test
    // pod: a cgroup whose process lives in the veth's other end.
    let ns = Netns::new(&format!("ps{short}"));
    let host_if = format!("ospps{short}{}", pid % 100_000);
    let peer_if = format!("{host_if}x");
    let net = format!("10.213.{}", if privileged { 1 } else { 2 });
    let ip = |args: &[&str]| run(Command::new("ip").args(args));
    ip(&[
        "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
    ]);
    cleanup.link = Some(host_if.clone());
    ip(&["link", "set", &peer_if, "netns", &ns.name]);
    run(Command::new("sysctl").args([
        "-q",
        "-w",
        &format!("net.ipv6.conf.{host_if}.disable_ipv6=1"),
    ]));
    ip(&["addr", "add", &format!("{net}.1/30"), "dev", &host_if]);
    ip(&["link", "set", &host_if, "up"]);
    ns.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
    ns.exec(&["ip", "link", "set", &peer_if, "name", IFACE]);
    ns.exec(&["ip", "addr", "add", &format!("{net}.2/30"), "dev", IFACE]);
    ns.exec(&["ip", "link", "set", IFACE, "up"]);
    let host_mac = std::fs::read_to_string(format!("/sys/class/net/{host_if}/address")).unwrap();
    // Static neighbour: no ARP, so the counters hold only the test's packets.
    ns.exec(&[
        "ip",
        "neigh",
        "replace",
        &format!("{net}.1"),
        "lladdr",
        host_mac.trim(),
        "dev",
        IFACE,
        "nud",
        "permanent",
    ]);

    let mount = dir.join("fs");
    std::fs::create_dir_all(&mount).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=7m", "osprey-podspec"])
        .arg(&mount));
    cleanup.mount = Some(mount.clone());

    let cg = TestCgroup::new(&format!("podspec-{short}"));
    // 200 datagrams of 1,000 bytes to the host end, a second of CPU, 64 MiB
    // held: then it sleeps, so every figure stands still while compared.
    let script = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for _ in range(200): s.sendto(b'x' * 1000, ('{net}.1', 9))\n\
         t = time.process_time()\n\
         while time.process_time() - t < 1.0: pass\n\
         b = bytearray(64 << 20)\n\
         open('{}', 'w').close()\n\
         time.sleep(120)\n",
        dir.join("ready").display()
    );
    std::fs::write(dir.join("workload.py"), script).unwrap();
    let workload = Workload(cg.run(&format!(
        "ip netns exec {} python3 {}",
        ns.name,
        dir.join("workload.py").display()
    )));

    // The pod, and its ConfigMap beside it (kube play mounts it).
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let pod_name = format!("osprey-agent-{tag}");
    let pod = pod_of(daemonset, &pod_name, &hostname, "127.0.0.1", mode);
    let play = dir.join("pod.yaml");
    std::fs::write(&play, format!("{}\n---\n{pod}\n", configmap.trim())).unwrap();
    eprintln!("podman kube play {}:\n{pod}", play.display());
    cleanup.pod = Some(pod_name.clone());
    cleanup.volume = Some(config_name);
    run(podman(&conf).args(["kube", "play"]).arg(&play));
    let container = format!("{pod_name}-agent");
    let logs = || {
        let out = podman(&conf)
            .args(["logs", &container])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            })
            .unwrap_or_default();
        strip_ansi(&out)
    };

    let url = format!("http://127.0.0.1:{port}/metrics");
    let scrape = || {
        ureq::get(&url)
            .timeout(Duration::from_secs(10))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while scrape().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent's pod did not serve {url} within 60 s; its log:\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // The process as the runtime made it.
    let agent_pid = run(podman(&conf).args(["inspect", "--format", "{{.State.Pid}}", &container]))
        .trim()
        .to_owned();
    let status = std::fs::read_to_string(format!("/proc/{agent_pid}/status")).unwrap();
    let effective = cap_mask(&status, "CapEff");
    eprintln!(
        "agent pid {agent_pid}: Uid {} CapEff {effective:016x} NoNewPrivs {} Seccomp {}",
        status_field(&status, "Uid"),
        status_field(&status, "NoNewPrivs"),
        status_field(&status, "Seccomp")
    );
    assert_eq!(status_field(&status, "Seccomp"), "0", "seccomp unconfined");
    match mode {
        Mode::Privileged => {
            assert!(status_field(&status, "Uid").starts_with("0\t"));
            assert_eq!(effective, bounding, "privileged: every capability");
        }
        Mode::LeastPrivilege => {
            assert!(
                status_field(&status, "Uid").starts_with("65534\t"),
                "runs as 65534"
            );
            assert_eq!(status_field(&status, "NoNewPrivs"), "1");
            assert_eq!(
                effective,
                mask_of(&held),
                "least privilege: exactly the chart's capabilities {held:?}"
            );
        }
    }

    // Every probe loaded.
    let programs: BTreeSet<String> = eventually(20, "osprey_bpf_program_info", || {
        let names: BTreeSet<String> = samples(&scrape()?)
            .into_iter()
            .filter(|s| s.name == "osprey_bpf_program_info")
            .filter_map(|s| s.labels.get("program").cloned())
            .collect();
        (names.len() >= PROGRAMS.len()).then_some(names)
    });
    let want: BTreeSet<String> = PROGRAMS.iter().map(|p| p.to_string()).collect();
    assert_eq!(programs, want, "every program loaded");
    let log = logs();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    eprintln!("agent warnings: {warnings:#?}");
    assert!(
        !warnings
            .iter()
            .any(|l| l.contains("disabled") || l.contains(" are off")),
        "a probe is off: {warnings:#?}"
    );

    // The test pod has sent, burnt and allocated.
    eventually(30, "the test pod's workload", || {
        dir.join("ready").exists().then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));

    // The agent stats each host mount through /proc/1/root, or where the
    // host refuses that path even to its own root (this sandbox's pid 1, a
    // firecracker init, is sealed: EACCES) through the host's / that the
    // chart mounts at /host/root (`host_root` in the rendered config): the
    // sizes must match the host's either way.
    if std::fs::read_dir("/proc/1/root").is_err() {
        eprintln!("NOTE: /proc/1/root is refused on this host: sizes come through /host/root");
    }
    let mut last = String::new();
    for round in 1..=5 {
        let lo_before = sysfs_counter("lo", "rx_bytes");
        let veth_rx = sysfs_counter(&host_if, "rx_bytes");
        let pod_tx = ns.counter(IFACE, "tx_bytes") as f64;
        let cpu_before = cg.cpu_seconds();
        let ws_before = working_set(&cg);
        let text = scrape().expect("the agent serves");
        let ws_after = working_set(&cg);
        let cpu_after = cg.cpu_seconds();
        let lo_after = sysfs_counter("lo", "rx_bytes");
        let s = samples(&text);
        let get = |name: &str, want: &[(&str, &str)]| one(&s, name, want).unwrap_or(f64::NAN);
        let mountpoint = mount.to_str().unwrap();
        let checks = [
            (
                "node_network_receive_bytes_total{device=lo}",
                get("node_network_receive_bytes_total", &[("device", "lo")]),
                lo_before,
                lo_after,
            ),
            (
                "node_network_receive_bytes_total{device=<host veth>}",
                get("node_network_receive_bytes_total", &[("device", &host_if)]),
                veth_rx,
                veth_rx,
            ),
            (
                "node_filesystem_size_bytes{mountpoint=/}",
                get("node_filesystem_size_bytes", &[("mountpoint", "/")]),
                host_size_bytes(Path::new("/")),
                host_size_bytes(Path::new("/")),
            ),
            (
                "node_filesystem_size_bytes{mountpoint=<host tmpfs>}",
                get("node_filesystem_size_bytes", &[("mountpoint", mountpoint)]),
                host_size_bytes(&mount),
                host_size_bytes(&mount),
            ),
            (
                "container_cpu_usage_seconds_total{id=<test pod>}",
                get("container_cpu_usage_seconds_total", &[("id", &cg.id)]),
                cpu_before - 1e-6,
                cpu_after + 1e-6,
            ),
            (
                "container_memory_working_set_bytes{id=<test pod>}",
                get("container_memory_working_set_bytes", &[("id", &cg.id)]),
                ws_before.min(ws_after) - f64::from(1u32 << 20),
                ws_before.max(ws_after) + f64::from(1u32 << 20),
            ),
            (
                "container_network_transmit_bytes_total{id=<test pod>,interface=eth0}",
                get(
                    "container_network_transmit_bytes_total",
                    &[("id", &cg.id), ("interface", IFACE)],
                ),
                pod_tx,
                pod_tx,
            ),
        ];
        let report: Vec<String> = checks
            .iter()
            .map(|(what, got, lo, hi)| {
                let ok = *lo <= *got && *got <= *hi;
                format!(
                    "{} {what}: agent {got} host {lo}..{hi}",
                    if ok { "ok  " } else { "FAIL" }
                )
            })
            .collect();
        last = report.join("\n");
        eprintln!("round {round}:\n{last}");
        assert!(veth_rx >= 200.0 * 1028.0, "the pod sent 200 × 1,028 B");
        assert!(cpu_before >= 1.0, "the pod burnt a second ({cpu_before} s)");
        assert!(ws_before >= f64::from(64u32 << 20), "the pod holds 64 MiB");
        if checks.iter().all(|(_, got, lo, hi)| lo <= got && got <= hi) {
            drop(workload);
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("the pod's agent disagrees with the host in 5 rounds:\n{last}");
}

/// The test pod's process, killed on drop.
struct Workload(Child);

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
