//! Pod identity from the Kubernetes API. No API server can run here (none
//! in any reachable registry), so `osprey_e2e::apiserver` stands in for it;
//! everything else is real: the agent's kube-rs client lists and watches
//! pods over HTTP, the probes see real traffic between two namespaces whose
//! addresses are the pods' IPs, and iptables drops part of it.

use std::process::Command;

use osprey_e2e::{
    agent,
    apiserver::{FakeApiServer, pod},
    cgroup::TestCgroup,
    eventually,
    exposition::{Sample, samples, sum},
    netns::PodPair,
    settle, traffic,
};

const NODE: &str = "osprey-node";
const WEB: &str = "web-7d4b9c-x2x9q";
const WEB_UID: &str = "0f3c8a1e-2b4d-4c6e-8f10-00000000a001";
const DB_UID: &str = "0f3c8a1e-2b4d-4c6e-8f10-00000000a002";
/// containerd ids are 64 hex digits.
const WEB_APP: &str = "4f2a9c0000000000000000000000000000000000000000000000000000000001";

fn hubble_drops(s: &[Sample], source: &str, destination: &str) -> u64 {
    sum(
        s,
        "hubble_drop_total",
        &[
            ("source", source),
            ("destination", destination),
            ("reason", "NETFILTER_DROP"),
            ("protocol", "UDP"),
        ],
    ) as u64
}

/// Pod web of this node, made by Deployment web (through its ReplicaSet), at `ip`.
fn web_pod(ip: &str) -> serde_json::Value {
    pod(
        "shop",
        WEB,
        WEB_UID,
        NODE,
        ip,
        Some(("ReplicaSet", "web-7d4b9c")),
        &[("pod-template-hash", "7d4b9c")],
        WEB_APP,
    )
}

/// Pods A and B, with a firewall rule in B that drops UDP to port 7000.
/// db-0, the StatefulSet db's pod, at `ip`.
fn db_pod(ip: &str) -> serde_json::Value {
    pod(
        "shop",
        "db-0",
        DB_UID,
        NODE,
        ip,
        Some(("StatefulSet", "db")),
        &[],
        "db01",
    )
}

fn blocked_pair(tag: &str, a_ip: &str, b_ip: &str) -> PodPair {
    let pair = PodPair::new(tag, a_ip, b_ip, 24);
    pair.b.exec(&[
        "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7000", "-j", "DROP",
    ]);
    pair
}

/// The Hubble contexts both pod tests run with: pods named, addresses where
/// no pod owns them.
const HUBBLE_CONTEXTS: [&str; 4] = [
    "--hubble-source-context",
    "pod|ip",
    "--hubble-destination-context",
    "workload|ip",
];

#[test]
fn flows_and_drops_are_named_by_pod_and_workload() {
    let (a_ip, b_ip) = ("10.216.0.1", "10.216.0.2");
    let web = web_pod(a_ip);
    // Another node's pod with db's address: the agent must not see it.
    let elsewhere = pod(
        "other",
        "impostor",
        "uid-x",
        "node-2",
        b_ip,
        None,
        &[],
        "ff",
    );
    let api = FakeApiServer::start(vec![web, elsewhere]);
    let Some(agent) = agent::for_test(
        &[
            HUBBLE_CONTEXTS.as_slice(),
            &[
                "--drain-interval-ms",
                "200",
                "--kubeconfig",
                api.kubeconfig(),
                "--pod-scope",
                "node",
                "--node-name",
                NODE,
            ],
        ]
        .concat(),
    ) else {
        return;
    };
    let pods = || sum(&samples(&agent.scrape().1), "osprey_kubernetes_pods", &[]) as u64;
    eventually(15, "the initial pod list", || (pods() == 1).then_some(()));
    // The watch path: db-0 is created after the list.
    api.apply(db_pod(b_ip));
    eventually(15, "db-0 from the watch", || (pods() == 2).then_some(()));

    let pair = blocked_pair("k8", a_ip, b_ip);
    const SENT: u64 = 40;
    traffic::udp_send(&pair, 7000, SENT as usize, 200);
    let source = format!("shop/{WEB}");
    let s = settle(15, || {
        let s = samples(&agent.scrape().1);
        (hubble_drops(&s, &source, "shop/db") >= SENT, s)
    });
    assert_eq!(
        hubble_drops(&s, &source, "shop/db"),
        SENT,
        "drops named by pod (source) and workload (destination)"
    );
    assert_eq!(hubble_drops(&s, a_ip, b_ip), 0, "no drop left named by IP");
    assert!(
        sum(
            &s,
            "hubble_flows_processed_total",
            &[
                ("source", &source),
                ("destination", "shop/db"),
                ("verdict", "DROPPED")
            ]
        ) as u64
            == SENT
    );

    // observe: the records carry the pods; --pod and --namespace select them.
    let dropped = agent.observe(&["--pod", WEB, "--verdict", "dropped"]);
    let packets: u64 = dropped.iter().map(|r| r["packets"].as_u64().unwrap()).sum();
    assert_eq!(packets, SENT, "{dropped:?}");
    for r in &dropped {
        assert_eq!(r["source_namespace"], "shop");
        assert_eq!(r["source_pod"], WEB);
        assert_eq!(r["destination_pod"], "db-0");
    }
    assert_eq!(
        agent.observe(&["--namespace", "shop", "--verdict", "dropped"]),
        dropped
    );
    assert!(agent.observe(&["--namespace", "other"]).is_empty());
    // One side only, as hubble observe's --from-pod / --to-pod.
    assert_eq!(
        agent.observe(&[
            "--from-pod",
            WEB,
            "--to-pod",
            "db-0",
            "--verdict",
            "dropped"
        ]),
        dropped
    );
    assert!(
        agent
            .observe(&["--from-pod", "db-0", "--verdict", "dropped"])
            .is_empty()
    );
    assert!(agent.observe(&["--to-namespace", "other"]).is_empty());
    let compact = agent.observe_text(&["--pod", WEB, "--verdict", "dropped"]);
    assert!(
        compact.contains(&format!(" shop/{WEB}:")) && compact.contains(" -> shop/db-0:7000 "),
        "{compact}"
    );

    // container_*: the kubelet's cgroups of web's pod and of its container
    // (cgroupfs driver layout) carry the pod's and the container's names.
    let pod_cgroup = format!(
        "osprey-kubepods-{}/besteffort/pod{WEB_UID}",
        std::process::id()
    );
    let app = TestCgroup::at(&format!("{pod_cgroup}/{WEB_APP}"));
    let mut sleeper = app.run("sleep 30");
    let s = settle(10, || {
        let s = samples(&agent.scrape().1);
        (sum(&s, "container_processes", &[("id", &app.id)]) >= 1.0, s)
    });
    let app_series: Vec<&Sample> = s
        .iter()
        .filter(|x| x.name == "container_memory_usage_bytes" && x.labels["id"] == app.id)
        .collect();
    assert_eq!(app_series.len(), 1, "{app_series:?}");
    let want = [
        ("namespace", "shop"),
        ("pod", WEB),
        ("container", "app"),
        ("image", "busybox:1.36"),
        ("name", WEB_APP),
    ];
    for (k, v) in want {
        assert_eq!(
            app_series[0].labels.get(k).map(String::as_str),
            Some(v),
            "{k}"
        );
    }
    // The pod's own cgroup publishes the pod totals (CPU usage, working
    // set) under the pod's labels, without a container; its containers
    // publish the rest (`container_pod_metrics = "totals"`).
    let pod_id = format!("/{pod_cgroup}");
    let of_pod = |name: &str| -> Vec<&Sample> {
        s.iter()
            .filter(|x| x.name == name && x.labels["id"] == pod_id)
            .collect()
    };
    let pod_series = of_pod("container_memory_working_set_bytes");
    assert_eq!(pod_series.len(), 1, "the pod's own cgroup");
    assert_eq!(pod_series[0].labels["pod"], WEB);
    assert!(!pod_series[0].labels.contains_key("container"));
    assert_eq!(of_pod("container_cpu_usage_seconds_total").len(), 1);
    assert_eq!(of_pod("container_memory_usage_bytes").len(), 0);
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    // A deleted pod's address falls back to the IP.
    api.delete(DB_UID);
    eventually(15, "db-0's deletion", || (pods() == 1).then_some(()));
    const AFTER: u64 = 10;
    traffic::udp_send(&pair, 7000, AFTER as usize, 200);
    let s = settle(15, || {
        let s = samples(&agent.scrape().1);
        (hubble_drops(&s, &source, b_ip) >= AFTER, s)
    });
    assert_eq!(hubble_drops(&s, &source, b_ip), AFTER);
    assert_eq!(hubble_drops(&s, &source, "shop/db"), SENT);

    // Only this node's pods were asked for, by list and by watch.
    let requests = api.requests();
    let selected = |r: &&String| r.contains("fieldSelector=spec.nodeName%3Dosprey-node");
    assert!(
        requests
            .iter()
            .filter(selected)
            .any(|r| r.contains("watch=true")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .filter(selected)
            .any(|r| !r.contains("watch=")),
        "{requests:?}"
    );
    assert_eq!(sum(&s, "osprey_kubernetes_watch_errors_total", &[]), 0.0);
}

/// `pod_scope = "cluster"` (the default): the pods of other nodes are
/// watched too, so a flow to one is named by its pod, as Hubble names a
/// remote endpoint. (The "remote" pod's address lives in a local namespace
/// here; to the agent it is node-2's pod because the API says so.)
#[test]
fn with_cluster_scope_another_nodes_pod_is_named_too() {
    let (a_ip, b_ip) = ("10.219.0.1", "10.219.0.2");
    let web = web_pod(a_ip);
    let remote = pod(
        "ledger",
        "api-0",
        DB_UID,
        "node-2",
        b_ip,
        Some(("StatefulSet", "api")),
        &[],
        "db01",
    );
    let api = FakeApiServer::start(vec![web, remote]);
    let Some(agent) = agent::for_test(&[
        "--drain-interval-ms",
        "200",
        "--kubeconfig",
        api.kubeconfig(),
        "--node-name",
        NODE,
        "--hubble-source-context",
        "pod",
        "--hubble-destination-context",
        "workload",
    ]) else {
        return;
    };
    eventually(15, "both pods listed", || {
        let n = sum(&samples(&agent.scrape().1), "osprey_kubernetes_pods", &[]);
        (n == 2.0).then_some(())
    });
    let pair = blocked_pair("kc", a_ip, b_ip);
    const SENT: u64 = 20;
    traffic::udp_send(&pair, 7000, SENT as usize, 200);
    let source = format!("shop/{WEB}");
    let s = settle(15, || {
        let s = samples(&agent.scrape().1);
        (hubble_drops(&s, &source, "ledger/api") >= SENT, s)
    });
    assert_eq!(hubble_drops(&s, &source, "ledger/api"), SENT);
    let requests = api.requests();
    assert!(
        requests.iter().all(|r| !r.contains("fieldSelector")),
        "cluster scope asks for every pod: {requests:?}"
    );
}

/// A deleted pod's series leave after the grace period, the idle TTL
/// (`flow_idle_ttl_secs`, 4 s here), while traffic to its address goes on
/// under the address: nothing is named after a pod that no longer exists.
#[test]
fn a_deleted_pods_series_leave_after_the_grace_period() {
    let (a_ip, b_ip) = ("10.236.0.1", "10.236.0.2");
    let db = db_pod(b_ip);
    let api = FakeApiServer::start(vec![web_pod(a_ip), db]);
    let Some(agent) = agent::for_test(
        &[
            HUBBLE_CONTEXTS.as_slice(),
            &[
                "--drain-interval-ms",
                "200",
                "--flow-idle-ttl-secs",
                "4",
                "--kubeconfig",
                api.kubeconfig(),
            ],
        ]
        .concat(),
    ) else {
        return;
    };
    let pods = || sum(&samples(&agent.scrape().1), "osprey_kubernetes_pods", &[]);
    eventually(15, "both pods listed", || (pods() == 2.0).then_some(()));
    let pair = blocked_pair("dg", a_ip, b_ip);
    let source = format!("shop/{WEB}");
    traffic::udp_send(&pair, 7000, 10, 200);
    eventually(15, "the drops named by workload", || {
        (hubble_drops(&samples(&agent.scrape().1), &source, "shop/db") == 10).then_some(())
    });

    api.delete(DB_UID);
    eventually(15, "db-0's deletion", || (pods() == 1.0).then_some(()));
    let named = |s: &[Sample]| {
        s.iter().any(|x| {
            x.name == "hubble_drop_total"
                && x.labels.get("destination").map(String::as_str) == Some("shop/db")
        })
    };
    // Within the grace period the series is still there (what was counted
    // under the pod's name stays readable); traffic goes on to the deleted
    // pod's address the whole time, under the address.
    assert!(named(&samples(&agent.scrape().1)), "removed at once");
    let s = eventually(20, "the deleted pod's series to leave", || {
        traffic::udp_send(&pair, 7000, 2, 200);
        let s = samples(&agent.scrape().1);
        (!named(&s)).then_some(s)
    });
    assert!(hubble_drops(&s, &source, b_ip) >= 2, "the address's series");
}

#[test]
fn a_bad_kubeconfig_is_a_clear_error() {
    osprey_e2e::require!(osprey_e2e::is_root(), "root is needed to load eBPF");
    osprey_e2e::require!(agent::binary().is_some(), "OSPREY_AGENT_BIN unset");
    let out = Command::new(agent::binary().unwrap())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
}

/// The API over TLS with a bearer token, as in a cluster: a CA and a server
/// certificate made with openssl, a Python HTTPS server that records each
/// request's Authorization header, and a kubeconfig naming the CA file.
#[test]
fn the_api_is_reached_over_tls_with_a_bearer_token() {
    let Some(certs) = osprey_e2e::certs::Certs::new("apiserver") else {
        return;
    };
    certs.leaf("ca", "cert", osprey_e2e::certs::SERVER_ON_LOOPBACK);
    let dir = certs.path().to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let pod = pod("shop", WEB, WEB_UID, NODE, "10.218.0.1", None, &[], WEB_APP);
    let list = serde_json::json!({"apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": "1"}, "items": [pod]});
    std::fs::write(dir.join("list.json"), list.to_string()).unwrap();
    std::fs::write(
        dir.join("server.py"),
        format!(
            r#"
import http.server, ssl, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open("auth.log", "a") as f:
            f.write(str(self.headers.get("Authorization")) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if "watch=" in self.path:
            self.end_headers()
            time.sleep(30)
            return
        body = open("list.json", "rb").read()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("cert.pem", "cert.key")
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#
        ),
    )
    .unwrap();
    let mut server = Command::new("python3")
        .arg("server.py")
        .current_dir(&dir)
        .spawn()
        .unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {}\n\
             contexts:\n- name: c\n  context: {{cluster: c, user: u}}\n\
             users:\n- name: u\n  user: {{token: osprey-test-token}}\n",
            dir.join("ca.pem").display()
        ),
    )
    .unwrap();
    let agent = agent::for_test(&["--kubeconfig", kubeconfig.to_str().unwrap()]);
    let result = agent.map(|agent| {
        eventually(15, "the pod listed over TLS", || {
            let s = samples(&agent.scrape().1);
            (sum(&s, "osprey_kubernetes_pods", &[]) == 1.0).then_some(())
        });
        std::fs::read_to_string(dir.join("auth.log")).unwrap()
    });
    let _ = server.kill();
    let _ = server.wait();
    if let Some(auth) = result {
        assert!(
            auth.lines().all(|l| l == "Bearer osprey-test-token") && !auth.is_empty(),
            "{auth}"
        );
    }
}
