//! The pods dashboard's per-pod figures against what the pod's processes
//! did. A pod as the kubelet lays it out has three cgroups: the pod's own
//! (the kernel's total of its containers), its sandbox (pause) container's
//! and each app container's. A panel that sums every series of a pod counts
//! its containers twice; this test catches that with ground truth the agent
//! does not read: the app process's own CPU time (`/proc/<pid>/stat`), the
//! process the test started in it, and the bytes the pod's interface
//! received (`/proc/net/dev` in its namespace).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use osprey_e2e::{
    agent,
    apiserver::{FakeApiServer, pod},
    cgroup::TestCgroup,
    dashboard_stack::{Proc, Prom},
    eventually,
    grafana::chart,
    netns::{IFACE, PodPair},
    peers, require_peer,
    traffic::udp_send,
};
use serde_json::Value;

const NODE: &str = "osprey-node";
const POD: &str = "burner-0";
const UID: &str = "0f3c8a1e-2b4d-4c6e-8f10-00000000e001";
/// containerd ids are 64 hex digits.
const APP: &str = "4f2a9c00000000000000000000000000000000000000000000000000000000e1";
const PAUSE: &str = "ba0500000000000000000000000000000000000000000000000000000000e1e1";
/// The window of the rate panels, as Grafana's `$__rate_interval`.
const WINDOW_SECS: u64 = 20;

/// The pods dashboard's query of panel `title` (its first target), with
/// `$namespace`/`$pod` naming this test's pod and the rate window `WINDOW_SECS`.
fn panel_query(title: &str) -> String {
    let path = chart().join("dashboards/osprey-pods.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let expr = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("the pods dashboard has no panel {title:?}"))["targets"][0]
        ["expr"]
        .as_str()
        .unwrap()
        .to_owned();
    let vars = BTreeMap::from([
        ("${namespace}", "shop".to_owned()),
        ("$namespace", "shop".to_owned()),
        ("${pod}", POD.to_owned()),
        ("$pod", POD.to_owned()),
        ("$__rate_interval", format!("{WINDOW_SECS}s")),
    ]);
    vars.iter()
        .fold(expr, |e, (var, value)| e.replace(var, value))
}

/// The single value of `promql` for this test's pod at `time`.
fn pod_value(prom: &Prom, promql: &str, time: f64) -> f64 {
    let data = prom
        .get(
            "/api/v1/query",
            &[("query", promql), ("time", &format!("{time:.3}"))],
        )
        .unwrap_or_else(|e| panic!("{promql}: {e}"));
    let result = data["result"].as_array().cloned().unwrap_or_default();
    let ours: Vec<&Value> = result
        .iter()
        .filter(|s| s["metric"]["pod"] == POD)
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "{promql}: one series for the pod: {result:?}"
    );
    ours[0]["value"][1].as_str().unwrap().parse().unwrap()
}

/// utime + stime of a process, in seconds (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn close(what: &str, got: f64, truth: f64, tolerance: f64) -> Option<String> {
    let ratio = got / truth;
    eprintln!("{what}: panel {got:.4}, the pod's own {truth:.4} ({ratio:.3}×)");
    ((ratio - 1.0).abs() > tolerance).then(|| {
        format!(
            "{what}: the panel shows {got:.4}, the pod's own figure is {truth:.4} ({ratio:.2}×)"
        )
    })
}

#[test]
fn the_pods_dashboard_counts_each_pod_once() {
    let p3bin = require_peer!(peers::PROMETHEUS3);
    let pair = PodPair::new("pt", "10.231.0.1", "10.231.0.2", 24);
    let api = FakeApiServer::start(vec![pod(
        "shop",
        POD,
        UID,
        NODE,
        "10.231.0.2",
        Some(("StatefulSet", "burner")),
        &[],
        APP,
    )]);
    // The pod's cgroup first: the containers' are dropped (removed) first.
    let root = format!(
        "osprey-kubepods-pt-{}/besteffort/pod{UID}",
        std::process::id()
    );
    let _pod_cgroup = TestCgroup::at(&root);
    let pause = TestCgroup::at(&format!("{root}/{PAUSE}"));
    let app = TestCgroup::at(&format!("{root}/{APP}"));
    let ns = pair.b.name.clone();
    let _pause = Proc(pause.run(&format!("ip netns exec {ns} sleep 300")));
    let burner = Proc(app.run(&format!("ip netns exec {ns} sh -c 'while :; do :; done'")));
    let Some(agent) = agent::for_test(&[
        "--kubeconfig",
        api.kubeconfig(),
        "--node-name",
        NODE,
        "--drain-interval-ms",
        "200",
    ]) else {
        return;
    };
    let prom = Prom::start(
        &p3bin,
        osprey_e2e::free_port(),
        &format!("127.0.0.1:{}", agent.port()),
        "127.0.0.1:1",
        "groups: []\n",
    );
    // The app's series in Prometheus for a whole window.
    eventually(60, "the app container's CPU in Prometheus", || {
        prom.query(&format!(
            "count_over_time(container_cpu_usage_seconds_total{{pod=\"{POD}\", container=\"app\"}}[{WINDOW_SECS}s]) >= 3"
        ))
        .ok()
        .filter(|r| !r.is_empty())
    });

    // One window: the burner's CPU and the pod interface's received bytes,
    // as the process and the kernel count them, with a burst of datagrams
    // to the pod in the middle.
    let start = Instant::now();
    let (t0, cpu0, rx0) = (
        now(),
        cpu_seconds(burner.0.id()),
        pair.b.counter(IFACE, "rx_bytes"),
    );
    std::thread::sleep(Duration::from_secs(WINDOW_SECS / 2));
    udp_send(&pair, 9, 500, 1000);
    std::thread::sleep(Duration::from_secs(WINDOW_SECS).saturating_sub(start.elapsed()));
    let (t1, cpu1, rx1) = (
        now(),
        cpu_seconds(burner.0.id()),
        pair.b.counter(IFACE, "rx_bytes"),
    );
    let window = t1 - t0;
    // Scrapes past the window's end.
    std::thread::sleep(Duration::from_secs(3));

    let mut failures = Vec::new();
    failures.extend(close(
        "CPU (cores)",
        pod_value(&prom, &panel_query("CPU (cores)"), t1),
        (cpu1 - cpu0) / window,
        0.15,
    ));
    failures.extend(close(
        "Network receive (bytes/s)",
        pod_value(&prom, &panel_query("Network receive / transmit"), t1),
        (rx1 - rx0) as f64 / window,
        0.15,
    ));
    // The app container's one process (the pause container is not in a
    // pod's figures: kube-prometheus' cAdvisor panels leave it out with
    // `container!=""` too; its CPU here is the sleep's, nothing).
    failures.extend(close(
        "Processes",
        pod_value(&prom, &panel_query("Processes and threads"), t1),
        1.0,
        0.0,
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
