//! The stack and the traffic of the dashboards test: a Prometheus with the
//! chart's scrape jobs and rules, a remote-write receiver that can be told
//! to reject, and the scenario's DNS, stalled-upload, refused-connection
//! and CPU-limit helpers.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::Child,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Duration,
};

use serde_json::Value;

use crate::{
    apiserver::{FakeApiServer, pod},
    cgroup::TestCgroup,
    netns::PodPair,
    prometheus::Prometheus,
    traffic,
};

/// The scenario's pods and ports.
pub const A_IP: &str = "10.219.0.1";
pub const B_IP: &str = "10.219.0.2";
pub const HTTP_PORT: u16 = 7380;
pub const DROP_PORT: u16 = 7381;
pub const RETRANS_PORT: u16 = 7382;
pub const CLOSED_PORT: u16 = 7383;

/// The node, and the pods the stand-in API server lists: (uid, container id).
pub const NODE: &str = "osprey-node";
pub const AGENT_POD: &str = "osprey-agent-x7k2p";
pub const AGENT: (&str, &str) = (
    "0f3c8a1e-2b4d-4c6e-8f10-00000000d001",
    "4f2a9c00000000000000000000000000000000000000000000000000000000d1",
);
pub const WEB: (&str, &str) = (
    "0f3c8a1e-2b4d-4c6e-8f10-00000000d002",
    "4f2a9c00000000000000000000000000000000000000000000000000000000d2",
);
pub const DB: (&str, &str) = (
    "0f3c8a1e-2b4d-4c6e-8f10-00000000d003",
    "4f2a9c00000000000000000000000000000000000000000000000000000000d3",
);

/// A pod's container cgroup as the kubelet (cgroupfs driver) lays it out.
pub fn kubelet_cgroup(qos: &str, (uid, container): (&str, &str)) -> TestCgroup {
    TestCgroup::at(&format!(
        "osprey-kubepods-{qos}-{}/{qos}/pod{uid}/{container}",
        std::process::id()
    ))
}

/// The stand-in API server (no kube-apiserver runs here) with the
/// scenario's pods: the agent as its DaemonSet's, pod A as a Deployment's,
/// pod B as a StatefulSet's.
pub fn pods_api() -> FakeApiServer {
    FakeApiServer::start(vec![
        pod(
            "osprey",
            AGENT_POD,
            AGENT.0,
            NODE,
            "10.219.9.9",
            Some(("DaemonSet", "osprey-agent")),
            &[],
            AGENT.1,
        ),
        pod(
            "shop",
            "web-7d4b9c-x2x9q",
            WEB.0,
            NODE,
            A_IP,
            Some(("ReplicaSet", "web-7d4b9c")),
            &[("pod-template-hash", "7d4b9c")],
            WEB.1,
        ),
        pod(
            "shop",
            "db-0",
            DB.0,
            NODE,
            B_IP,
            Some(("StatefulSet", "db")),
            &[],
            DB.1,
        ),
    ])
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Prometheus with this test's configuration: scrape jobs named as the
/// chart's PodMonitor and ServiceMonitor name them, the rule overlay, the
/// remote-write receiver and exemplar storage.
pub struct Prom {
    pub prometheus: Prometheus,
    pub base: String,
}

impl Prom {
    pub fn start(bin: &Path, port: u16, agent: &str, collector: &str, rules: &str) -> Self {
        let listen = format!("--web.listen-address=127.0.0.1:{port}");
        let prometheus = Prometheus::launch(
            bin,
            &[&listen, "--web.enable-remote-write-receiver"],
            |dir| {
                std::fs::write(dir.join("rules.yaml"), rules).unwrap();
                // The PodMonitor's job is `<namespace>/<name>`, the
                // ServiceMonitor's the Service's name: what
                // `up{job=~".*osprey.*-agent"}` expects.
                format!(
                    "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                     rule_files: ['{rules}']\n\
                     scrape_configs:\n\
                     \x20 - job_name: osprey/osprey-agent\n\
                     \x20   scrape_protocols: [OpenMetricsText1.0.0, PrometheusText0.0.4]\n\
                     \x20   static_configs: [{{targets: ['{agent}']}}]\n\
                     \x20 - job_name: osprey-collector\n\
                     \x20   static_configs: [{{targets: ['{collector}']}}]\n",
                    rules = dir.join("rules.yaml").display(),
                )
            },
        )
        .unwrap_or_else(|e| panic!("Prometheus must start: {e}"));
        let base = prometheus.base_url.clone();
        Self { prometheus, base }
    }

    pub fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let mut req = ureq::get(&format!("{}{path}", self.base)).timeout(Duration::from_secs(20));
        for (k, v) in params {
            req = req.query(k, v);
        }
        let body: Value = match req.call() {
            Ok(r) => r.into_json().map_err(|e| e.to_string())?,
            Err(ureq::Error::Status(_, r)) => r.into_json().map_err(|e| e.to_string())?,
            Err(e) => return Err(e.to_string()),
        };
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"].clone())
    }

    /// Instant query: the result's series, or Prometheus' error.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self.get("/api/v1/query", &[("query", promql)])?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// `/api/v1/query_exemplars` over the last 10 minutes: the exemplars' labels.
    pub fn exemplars(&self, promql: &str) -> Result<Vec<Value>, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (start, end) = ((now - 600).to_string(), (now + 60).to_string());
        let data = self.get(
            "/api/v1/query_exemplars",
            &[("query", promql), ("start", &start), ("end", &end)],
        )?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
            .map(|e| e["labels"].clone())
            .collect())
    }

    /// `label_values(metric, label)` as Grafana asks for it.
    pub fn label_values(&self, metric: &str, label: &str) -> Result<Vec<String>, String> {
        let data = self.get(
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", metric)],
        )?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect())
    }

    /// Active alerts: (alertname, state, labels).
    pub fn alerts(&self) -> Vec<(String, String, Value)> {
        let data = self.get("/api/v1/alerts", &[]).expect("/api/v1/alerts");
        data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                    a["state"].as_str().unwrap_or("").to_owned(),
                    a["labels"].clone(),
                )
            })
            .collect()
    }

    /// An alerting rule's health, last error and query, for a failure message.
    pub fn rule_state(&self, name: &str) -> String {
        let data = self.get("/api/v1/rules", &[]).expect("/api/v1/rules");
        let rule = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .find(|r| r["name"] == name)
            .unwrap_or_default();
        let query = rule["query"].as_str().unwrap_or_default();
        let now = self.query(query);
        let lhs = query.split(" > ").next().unwrap_or_default();
        format!(
            "{name}: state {} health {} error {:?}\n    {query}\n    -> {now:?}\n    {lhs}\n    -> {:?}",
            rule["state"],
            rule["health"],
            rule["lastError"],
            self.query(lhs)
        )
    }

    /// How many alerting rules are loaded, and how many have been evaluated.
    pub fn rules_loaded(&self) -> (usize, usize) {
        let data = self.get("/api/v1/rules", &[]).expect("/api/v1/rules");
        let rules: Vec<Value> = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["type"] == "alerting")
            .collect();
        let evaluated = rules
            .iter()
            .filter(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            })
            .count();
        (rules.len(), evaluated)
    }
}

/// A traced HTTP upload from A to B whose packets a firewall rule drops
/// for a while: the sender retransmits, and the connection's drops and
/// retransmits carry the request's trace. Returns the segments it
/// retransmitted.
pub fn stalled_upload(pair: &PodPair, traceparent: &str) -> u64 {
    const CHUNKS: usize = 30;
    const CHUNK: usize = 16 * 1024;
    let b_ip = pair.b_ip;
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = pair.b.run(move || {
        let listener = TcpListener::bind(SocketAddr::new(b_ip, RETRANS_PORT)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            conn.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let mut body = vec![0u8; CHUNKS * CHUNK];
        conn.read_exact(&mut body).expect("every byte arrives");
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    });
    ready_rx.recv().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: pod-b\r\ntraceparent: {traceparent}\r\n\
         Content-Length: {}\r\n\r\n",
        CHUNKS * CHUNK
    );
    let client = pair.a.run(move || {
        let mut conn = TcpStream::connect(SocketAddr::new(b_ip, RETRANS_PORT)).unwrap();
        conn.write_all(head.as_bytes()).unwrap();
        started_tx.send(()).unwrap();
        for _ in 0..CHUNKS {
            conn.write_all(&[4u8; CHUNK]).unwrap();
            std::thread::sleep(Duration::from_millis(40));
        }
        let mut response = [0u8; 38];
        conn.read_exact(&mut response).unwrap();
        assert!(
            response.starts_with(b"HTTP/1.1 200"),
            "the upload is answered"
        );
        traffic::retransmitted_segments(&conn)
    });
    started_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let port = RETRANS_PORT.to_string();
    let rule = ["INPUT", "-p", "tcp", "--dport", &port, "-j", "DROP"];
    pair.b.exec(&[&["iptables", "-I"][..], &rule].concat());
    std::thread::sleep(Duration::from_millis(500));
    pair.b.exec(&[&["iptables", "-D"][..], &rule].concat());
    let retransmitted = client.join().unwrap();
    server.join().unwrap();
    retransmitted
}

/// Connections to a port nobody listens on: refused.
pub fn refused(pair: &PodPair, n: usize) {
    let b_ip = pair.b_ip;
    pair.a
        .run(move || {
            for _ in 0..n {
                let r = TcpStream::connect_timeout(
                    &SocketAddr::new(b_ip, CLOSED_PORT),
                    Duration::from_secs(2),
                );
                assert!(r.is_err(), "nothing listens on {CLOSED_PORT}");
            }
        })
        .join()
        .unwrap();
}

/// Writes a CPU quota for `cg` (cgroup v1 cpu controller or v2 cpu.max):
/// its burners are throttled.
pub fn limit_cpu(cg: &TestCgroup, quota_us: u64, period_us: u64) {
    if cg.dirs.len() > 1 {
        let cpu = &cg.dirs[1];
        std::fs::write(cpu.join("cpu.cfs_period_us"), period_us.to_string()).unwrap();
        std::fs::write(cpu.join("cpu.cfs_quota_us"), quota_us.to_string()).unwrap();
    } else {
        std::fs::write(
            cg.dirs[0].join("cpu.max"),
            format!("{quota_us} {period_us}"),
        )
        .unwrap();
    }
}

/// A remote-write receiver that accepts (204) until told to reject (404):
/// the collector then drops what it sends there for good.
pub struct Receiver {
    pub port: u16,
    pub reject: Arc<AtomicBool>,
}

impl Receiver {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let reject = Arc::new(AtomicBool::new(false));
        let flag = reject.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let flag = flag.clone();
                std::thread::spawn(move || answer(conn, &flag));
            }
        });
        Self { port, reject }
    }
}

/// Answers each request of a keep-alive connection per the flag.
pub fn answer(conn: TcpStream, reject: &AtomicBool) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let response: &[u8] = if reject.load(Ordering::Relaxed) {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        } else {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        };
        if writer.write_all(response).is_err() {
            return;
        }
    }
}
