//! The Helm chart's dashboards and alert rules against a real stack: a
//! Prometheus 3 (exemplar storage on, remote-write receiver on) scrapes a
//! real agent over OpenMetrics and the collector, and receives the agent's
//! metrics through the collector's remote-write, while the test makes
//! traffic between two pods (traced HTTP, firewall drops, DNS NXDOMAIN, a
//! retransmitting stream, refused connections), burns CPU in a throttled
//! cgroup and OOM-kills an allocator.
//!
//! Every dashboard query (template variables substituted as Grafana's "All"
//! does) returns at least one series through `/api/v1/query`, the panels
//! the scenario feeds return the scenario's own series, and the HTTP
//! dashboard's exemplar queries return the trace ids the client sent. The
//! same Prometheus loads the chart's rule file, rewritten to short `for:`
//! and short windows: the drop, NXDOMAIN and OOM alerts do not fire on the
//! idle start and fire after the traffic. The few queries that cannot have
//! data on a host without Kubernetes are listed in [`EXCEPTIONS`], printed,
//! and must really be empty.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Duration,
};

use osprey_e2e::{
    agent,
    cgroup::TestCgroup,
    collector::{self, Collector},
    eventually, free_port,
    http::{self, Req, Step},
    netns::PodPair,
    peers, require, require_peer, settle, traffic,
};
use serde_json::Value;
use simple_dns::{CLASS, Name, Packet, PacketFlag, Question, TYPE};

/// Queries that cannot return a series on a standalone host, with why:
/// (dashboard file, panel title, refId or variable name, reason).
const EXCEPTIONS: &[(&str, &str, &str, &str)] = &[
    (
        "osprey-health.json",
        "Agent memory (working set)",
        "A",
        "selects the agent's pod by its `pod` label, which only Kubernetes pod identity \
         gives a cgroup; standalone, container_* series carry only `id`",
    ),
    (
        "osprey-pods.json",
        "$namespace",
        "namespace",
        "label_values(…, namespace): the `namespace` label comes from Kubernetes pod \
         identity; standalone the variable is empty and \"All\" (.*) still selects every series",
    ),
    (
        "osprey-pods.json",
        "$pod",
        "pod",
        "label_values(…, pod): the `pod` label comes from Kubernetes pod identity; \
         standalone the variable is empty and \"All\" (.*) still selects every series",
    ),
];

const A_IP: &str = "10.219.0.1";
const B_IP: &str = "10.219.0.2";
const HTTP_PORT: u16 = 7380;
const DROP_PORT: u16 = 7381;
const RETRANS_PORT: u16 = 7382;
const CLOSED_PORT: u16 = 7383;

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn chart() -> PathBuf {
    root().join("deploy/helm/osprey")
}

/// A Prometheus with this test's configuration: scrape jobs named as the
/// chart's PodMonitor and ServiceMonitor name them, the rule overlay, the
/// remote-write receiver and exemplar storage.
struct Prom {
    _child: Proc,
    dir: PathBuf,
    base: String,
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prom {
    fn start(bin: &Path, port: u16, agent: &str, collector: &str, rules: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("osprey-dashboards-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("rules.yaml"), rules).unwrap();
        // The PodMonitor's job is `<namespace>/<name>`, the ServiceMonitor's
        // the Service's name: what `up{job=~".*osprey.*-agent"}` expects.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{rules}']\n\
             scrape_configs:\n\
             \x20 - job_name: osprey/osprey-agent\n\
             \x20   scrape_protocols: [OpenMetricsText1.0.0, PrometheusText0.0.4]\n\
             \x20   static_configs: [{{targets: ['{agent}']}}]\n\
             \x20 - job_name: osprey-collector\n\
             \x20   static_configs: [{{targets: ['{collector}']}}]\n",
            rules = dir.join("rules.yaml").display(),
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args([
                "--enable-feature=exemplar-storage",
                "--web.enable-remote-write-receiver",
                "--log.level=warn",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let prom = Self {
            _child: Proc(child),
            dir,
            base: format!("http://127.0.0.1:{port}"),
        };
        eventually(60, "Prometheus to be ready", || {
            ureq::get(&format!("{}/-/ready", prom.base))
                .timeout(Duration::from_secs(2))
                .call()
                .ok()
        });
        prom
    }

    fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
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
    fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self.get("/api/v1/query", &[("query", promql)])?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// `/api/v1/query_exemplars` over the last 10 minutes: the exemplars' labels.
    fn exemplars(&self, promql: &str) -> Result<Vec<Value>, String> {
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
    fn label_values(&self, metric: &str, label: &str) -> Result<Vec<String>, String> {
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
    fn alerts(&self) -> Vec<(String, String, Value)> {
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
    fn rule_state(&self, name: &str) -> String {
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
    fn rules_loaded(&self) -> (usize, usize) {
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

/// The chart's rule file with every `for:` shortened to 1s and every range
/// window to 1m, so that an alert fires within seconds of its cause.
fn rule_overlay(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(value) = trimmed.strip_prefix("for: ") {
            assert!(
                humantime::parse_duration(value.trim()).is_ok(),
                "for: {value}"
            );
            out.push_str(&line[..line.len() - trimmed.len()]);
            out.push_str("for: 1s\n");
            continue;
        }
        let mut rest = line;
        while let Some(open) = rest.find('[') {
            out.push_str(&rest[..=open]);
            rest = &rest[open + 1..];
            let close = rest.find(']').unwrap_or(0);
            let inner = &rest[..close];
            let is_range = inner.len() >= 2
                && inner[..inner.len() - 1].chars().all(|c| c.is_ascii_digit())
                && inner.ends_with(['s', 'm', 'h', 'd']);
            if is_range {
                out.push_str("1m");
                rest = &rest[close..];
            }
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// The value Grafana gives a template variable when "All" is selected (the
/// variable's `allValue`, `.*`), and `$__rate_interval` / `$__interval` as
/// for a 1s scrape interval in a short time range.
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').expect("closing brace");
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            // `$1` of label_replace.
            out.push('$');
            continue;
        }
        let value = match name {
            "__rate_interval" | "__interval" | "__range" => "1m",
            _ => vars
                .get(name)
                .unwrap_or_else(|| panic!("{expr}: template variable ${name} unknown"))
                .as_str(),
        };
        out.push_str(value);
        rest = after;
    }
    out.push_str(rest);
    out
}

/// One query of a panel.
struct Target {
    dashboard: String,
    panel: String,
    ref_id: String,
    expr: String,
    exemplar: bool,
}

/// A template variable: (dashboard file, name, metric, label).
type Variable = (String, String, String, String);

/// Every dashboard's panel queries (substituted) and template variables
/// (name, metric, label).
fn dashboards() -> (Vec<Target>, Vec<Variable>) {
    let mut targets = Vec::new();
    let mut variables = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut vars = BTreeMap::new();
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            let var = v["name"].as_str().unwrap().to_owned();
            match v["type"].as_str() {
                Some("datasource") => {}
                Some("query") => {
                    let all = v["allValue"].as_str().unwrap_or(".*");
                    assert!(v["includeAll"] == true, "{name}: ${var} has no All");
                    vars.insert(var.clone(), all.to_owned());
                    let q = v["query"]["query"].as_str().unwrap_or_default();
                    let inner = q
                        .strip_prefix("label_values(")
                        .and_then(|q| q.strip_suffix(')'))
                        .unwrap_or_else(|| panic!("{name}: ${var}: {q}"));
                    let (metric, label) = inner.rsplit_once(',').unwrap();
                    variables.push((
                        name.clone(),
                        var,
                        metric.trim().to_owned(),
                        label.trim().to_owned(),
                    ));
                }
                other => panic!("{name}: ${var}: variable type {other:?}"),
            }
        }
        // `label_values(m{namespace=~"$namespace"}, pod)`: chained variables.
        for v in variables.iter_mut().filter(|v| v.0 == name) {
            v.2 = substitute(&v.2, &vars);
        }
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                targets.push(Target {
                    dashboard: name.clone(),
                    panel: p["title"].as_str().unwrap().to_owned(),
                    ref_id: t["refId"].as_str().unwrap().to_owned(),
                    expr: substitute(t["expr"].as_str().unwrap(), &vars),
                    exemplar: t["exemplar"] == true,
                });
            }
        }
    }
    (targets, variables)
}

fn exception(dashboard: &str, panel: &str, ref_id: &str) -> Option<&'static str> {
    EXCEPTIONS
        .iter()
        .find(|e| e.0 == dashboard && e.1 == panel && e.2 == ref_id)
        .map(|e| e.3)
}

/// An A query for `name`, recursion desired.
fn a_query(name: &'static str, id: u16) -> Vec<u8> {
    let mut q = Packet::new_query(id);
    q.set_flags(PacketFlag::RECURSION_DESIRED);
    q.questions.push(Question::new(
        Name::new_unchecked(name),
        TYPE::A.into(),
        CLASS::IN.into(),
        false,
    ));
    q.build_bytes_vec().unwrap()
}

/// Resolves each of `names` from pod A at dnsmasq in pod B, one socket;
/// the rcodes the client got.
fn resolve_all(pair: &PodPair, names: Vec<&'static str>, first_id: u16) -> Vec<simple_dns::RCODE> {
    let (a, b) = (pair.a_ip, pair.b_ip);
    pair.a
        .run(move || {
            let sock = UdpSocket::bind(SocketAddr::new(a, 0)).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut buf = [0u8; 4096];
            let mut rcodes = Vec::new();
            for (i, name) in names.into_iter().enumerate() {
                let id = first_id.wrapping_add(i as u16);
                let bytes = a_query(name, id);
                // dnsmasq may still be starting: retry until it answers.
                let rcode = (0..40)
                    .find_map(|_| {
                        sock.send_to(&bytes, SocketAddr::new(b, 53)).unwrap();
                        let n = sock.recv(&mut buf).ok()?;
                        let reply = Packet::parse(&buf[..n]).ok()?;
                        (reply.id() == id).then(|| reply.rcode())
                    })
                    .expect("dnsmasq answers");
                rcodes.push(rcode);
            }
            rcodes
        })
        .join()
        .unwrap()
}

/// A traced HTTP upload from A to B whose packets a firewall rule drops
/// for a while: the sender retransmits, and the connection's drops and
/// retransmits carry the request's trace. Returns the segments it
/// retransmitted.
fn stalled_upload(pair: &PodPair, traceparent: &str) -> u64 {
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
fn refused(pair: &PodPair, n: usize) {
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
fn limit_cpu(cg: &TestCgroup, quota_us: u64, period_us: u64) {
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
struct Receiver {
    port: u16,
    reject: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Self {
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
fn answer(conn: TcpStream, reject: &AtomicBool) {
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

/// Names of the alerts this test provokes: not firing before, firing after.
const PROVOKED: [&str; 5] = [
    "OspreyPacketDropsHigh",
    "OspreyDNSErrorSurge",
    "OspreyContainerOOMKilled",
    "OspreyCollectorDropping",
    "OspreyCollectorRefusing",
];

#[test]
fn every_dashboard_query_returns_data_and_the_alerts_fire() {
    let p3bin = require_peer!(peers::PROMETHEUS3);
    require!(osprey_e2e::is_root(), "root is needed to load eBPF");
    require!(
        collector::binary().is_some(),
        "OSPREY_COLLECTOR_BIN unset: run `cargo xtask test`"
    );
    require!(
        Path::new("/usr/sbin/dnsmasq").exists(),
        "dnsmasq is not installed (cargo xtask setup installs dnsmasq-base)"
    );
    let started = std::time::Instant::now();
    let rules_text = std::fs::read_to_string(chart().join("rules/osprey.rules.yaml")).unwrap();
    let overlay = rule_overlay(&rules_text);
    let alert_count = rules_text.matches("- alert: ").count();

    // The collector writes to Prometheus (started below, on a port chosen
    // now), and to two more targets: one nobody listens on (its sends are
    // retried from the start), one that turns to answering 404 during the
    // scenario (what it is sent then is dropped): the health dashboard's
    // failure panels and the collector's alerts have something to show.
    let prom_port = free_port();
    let receiver = Receiver::start();
    let c = Collector::start(
        "dashboards",
        &format!(
            "[[remote_write]]\nname = \"prometheus\"\nurl = \"http://127.0.0.1:{prom_port}/api/v1/write\"\n\
             [[remote_write]]\nname = \"unreachable\"\nurl = \"http://127.0.0.1:{}/api/v1/write\"\n\
             [[remote_write]]\nname = \"rejecting\"\nurl = \"http://127.0.0.1:{}/api/v1/write\"\n",
            free_port(),
            receiver.port
        ),
    );
    // The agent as the chart configures it (values.yaml's agent.config),
    // faster, pushing to the collector as well as being scraped.
    let Some(agent) = agent::for_test(&[
        "--drain-interval-ms",
        "500",
        "--hubble-source-context",
        "workload|ip",
        "--hubble-destination-context",
        "workload|ip",
        "--drop-reasons-ignored",
        "SOCKET_CLOSE,QUEUE_PURGE,NOT_SPECIFIED",
        "--exemplar-trace-label",
        "trace_id",
        "--http-spans",
        "traced",
        "--bpf-stats",
        "true",
        "--otlp-endpoint",
        &c.grpc,
        "--otlp-interval-secs",
        "1",
    ]) else {
        return;
    };
    let collector_target = c.own.trim_start_matches("http://").to_owned();
    let prom = Prom::start(
        &p3bin,
        prom_port,
        &format!("127.0.0.1:{}", agent.port()),
        &collector_target,
        &overlay,
    );

    // Idle: every rule loaded and evaluated over a few scrapes of the agent;
    // none of the alerts this test provokes is pending or firing.
    let (loaded, _) = eventually(60, "the rules evaluated over 5 agent scrapes", || {
        let scraped = prom
            .query("count_over_time(up{job=\"osprey/osprey-agent\"}[1m]) >= 5")
            .ok()?;
        let (loaded, evaluated) = prom.rules_loaded();
        (!scraped.is_empty() && loaded == evaluated && loaded > 0).then_some((loaded, evaluated))
    });
    assert_eq!(loaded, alert_count, "every alert of the rule file loaded");
    let idle: Vec<_> = prom
        .alerts()
        .into_iter()
        .filter(|(name, _, _)| PROVOKED.contains(&name.as_str()))
        .collect();
    assert!(idle.is_empty(), "alerts on the idle start: {idle:?}");
    eprintln!(
        "idle: {loaded} alert rules evaluated, none of {PROVOKED:?} pending or firing ({:.0?})",
        started.elapsed()
    );

    // The scenario.
    let pair = PodPair::new("gd", A_IP, B_IP, 24);
    let _dnsmasq = Proc(
        Command::new("ip")
            .args(["netns", "exec", &pair.b.name, "dnsmasq"])
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts"])
            .args(["--conf-file=/dev/null", "--pid-file=", "--user=root"])
            .args(["--bind-interfaces", &format!("--listen-address={B_IP}")])
            .args([
                "--local=/osprey.test/",
                "--address=/web.osprey.test/10.9.9.9",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dnsmasq"),
    );
    pair.b.exec(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "udp",
        "--dport",
        &DROP_PORT.to_string(),
        "-j",
        "DROP",
    ]);
    // A throttled CPU burner: two busy loops on one CPU, at most half of it.
    let burn = TestCgroup::new("dash-burn");
    limit_cpu(&burn, 50_000, 100_000);
    let burners: Vec<Proc> = (0..2)
        .map(|_| Proc(burn.run("timeout 6 taskset -c 0 sh -c 'while :; do :; done'")))
        .collect();
    // A "pod" whose process lives in pod A's network namespace: that
    // namespace's interface counters are its network series.
    let pod = TestCgroup::new("dash-pod");
    let _pod_process = Proc(pod.run(&format!("ip netns exec {} sleep 300", pair.a.name)));
    // The OOM victim's cgroup, seen at 0 kills before the kill (a counter
    // born at 1 has no increase).
    let oom = TestCgroup::new("dash-oom");
    oom.limit_memory(32 << 20);

    // HTTP: 200s, a 404 and 500s; first untraced, so that every series
    // exists in Prometheus before the traced round raises it (a series born
    // at 2 has no rate).
    let untraced = vec![vec![
        Step::One(Req::get("/fast")),
        Step::One(Req::get("/slow")),
        Step::One(Req::get("/missing")),
        Step::One(Req::post("/error")),
        Step::One(Req::get("/error")),
    ]];
    let server = http::serve(&pair, HTTP_PORT, 1);
    http::client(&pair, HTTP_PORT, untraced);
    assert_eq!(server.join().unwrap().len(), 5);
    eventually(30, "the HTTP server's 500s in Prometheus", || {
        prom.query(&format!(
            "http_server_request_duration_seconds_count{{server_port=\"{HTTP_PORT}\", \
             http_response_status_code=\"500\"}}"
        ))
        .ok()
        .filter(|r| !r.is_empty())
    });
    let traces: Vec<_> = (0x71..=0x75).map(http::traceparent).collect();
    let plans = vec![
        vec![
            Step::One(Req::get("/fast").traced(&traces[0].0)),
            Step::One(Req::get("/slow").traced(&traces[1].0)),
            Step::One(Req::get("/missing")),
            Step::One(Req::get("/fast")),
        ],
        vec![
            Step::One(Req::post("/error").traced(&traces[2].0)),
            Step::One(Req::get("/error").traced(&traces[3].0)),
            Step::One(Req::get("/fast")),
        ],
    ];
    let server = http::serve(&pair, HTTP_PORT, plans.len());
    http::client(&pair, HTTP_PORT, plans);
    assert_eq!(server.join().unwrap().len(), 7);
    let retransmitted = stalled_upload(&pair, &traces[4].0);
    assert!(retransmitted > 0, "the stalled stream retransmitted");
    refused(&pair, 5);
    // A receiver that rejects, and a request the collector refuses.
    receiver.reject.store(true, Ordering::Relaxed);
    // Refused twice: the first refusal creates the collector's series at 1,
    // which no rate sees; the second, once Prometheus holds it, is a rise.
    let refuse = || {
        assert_eq!(
            c.post("/v1/metrics", "application/x-protobuf", b"not protobuf"),
            400
        )
    };
    refuse();
    eventually(30, "the collector's refusal in Prometheus", || {
        prom.query("osprey_collector_refused_requests_total{reason=\"bad_request\"}")
            .ok()
            .filter(|r| !r.is_empty())
    });
    refuse();

    // Drops and NXDOMAINs in bursts over a few seconds (a rate needs the
    // counter seen before and after).
    let (mut nx, mut ok) = (0, 0);
    for round in 0..8u16 {
        traffic::udp_send(&pair, DROP_PORT, 400, 100);
        let mut names = vec!["missing.osprey.test"; 40];
        names.extend(["web.osprey.test"; 2]);
        for rcode in resolve_all(&pair, names, round * 100) {
            match rcode {
                simple_dns::RCODE::NameError => nx += 1,
                simple_dns::RCODE::NoError => ok += 1,
                other => panic!("dnsmasq answered {other:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!((nx, ok), (320, 16), "NXDOMAIN and NOERROR answers");

    // The OOM kill, once Prometheus holds the cgroup's count at 0.
    let oom_sel = format!("container_oom_events_total{{id=\"{}\"}}", oom.id);
    eventually(30, "the OOM cgroup's count in Prometheus", || {
        prom.query(&format!("{oom_sel} == 0"))
            .ok()
            .filter(|r| !r.is_empty())
    });
    let status = oom
        .run("python3 -c 'b = bytearray(256 << 20)'")
        .wait()
        .unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "the allocator is OOM-killed");
    }
    assert_eq!(oom.oom_kills(), 1.0, "the kernel counted one OOM kill");
    eprintln!("scenario done ({:.0?})", started.elapsed());

    // The provoked alerts fire, on the scenario's own labels.
    // Each with a label only this scenario gives it; the collector's failing
    // target was configured so from the start, so it fires on the idle start
    // already.
    let expected = [
        (PROVOKED[0], "reason", "NETFILTER_DROP"),
        (PROVOKED[1], "rcode", "Non-Existent Domain"),
        (PROVOKED[2], "id", oom.id.as_str()),
        (PROVOKED[3], "exporter", "rejecting"),
        (PROVOKED[4], "reason", "bad_request"),
        (
            "OspreyCollectorRemoteWriteFailing",
            "exporter",
            "unreachable",
        ),
    ];
    // Each counts once seen firing: a burst's rate leaves the window a
    // minute later.
    let mut seen: Vec<Option<Value>> = vec![None; expected.len()];
    let alerts = settle(60, || {
        let a = prom.alerts();
        for ((name, label, value), slot) in expected.iter().zip(seen.iter_mut()) {
            if slot.is_none() {
                *slot = a
                    .iter()
                    .find(|(n, s, l)| n == name && s == "firing" && l[*label] == *value)
                    .map(|(_, _, l)| l.clone());
            }
        }
        (seen.iter().all(Option::is_some), a)
    });
    for ((name, label, value), got) in expected.iter().zip(&seen) {
        assert!(
            got.is_some(),
            "{name} firing with {label}={value:?}; active alerts: {alerts:?}\n{}",
            prom.rule_state(name)
        );
    }
    eprintln!(
        "firing ({:.0?}):\n  {}",
        started.elapsed(),
        seen.iter()
            .flatten()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    );

    // Every panel query returns a series; the scenario's panels its series.
    let (targets, variables) = dashboards();
    let a_ip = A_IP.to_owned();
    let b_ip = B_IP.to_owned();
    let http_port = HTTP_PORT.to_string();
    // (dashboard, panel, refId) → a series this test's scenario alone makes.
    let has = |label: &'static str, value: String| {
        move |s: &Value| s["metric"][label].as_str() == Some(value.as_str())
    };
    let positive = |s: &Value| {
        s["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v > 0.0)
    };
    type Check = Box<dyn Fn(&Value) -> bool>;
    let mut scenario: BTreeMap<(&str, &str, &str), Check> = BTreeMap::new();
    scenario.insert(
        ("osprey-flows.json", "Workload pairs (packets/s)", "A"),
        Box::new({
            let (src, dst) = (
                has("source", a_ip.clone()),
                has("destination", b_ip.clone()),
            );
            move |s| src(s) && dst(s)
        }),
    );
    scenario.insert(
        ("osprey-flows.json", "Drops by reason", "A"),
        Box::new(move |s| has("reason", "NETFILTER_DROP".into())(s) && positive(s)),
    );
    scenario.insert(
        ("osprey-flows.json", "Drops by flow and reason", "A"),
        Box::new({
            let (src, port) = (
                has("source_ip", a_ip.clone()),
                has("destination_port", DROP_PORT.to_string()),
            );
            move |s| src(s) && port(s)
        }),
    );
    scenario.insert(
        (
            "osprey-flows.json",
            "TCP retransmits/s (top destinations)",
            "A",
        ),
        Box::new(has("destination_port", RETRANS_PORT.to_string())),
    );
    scenario.insert(
        (
            "osprey-flows.json",
            "Failing connections (refused, timeout, reset, error)",
            "A",
        ),
        Box::new({
            let (port, out) = (
                has("destination_port", CLOSED_PORT.to_string()),
                has("outcome", "refused".into()),
            );
            move |s| port(s) && out(s)
        }),
    );
    scenario.insert(
        ("osprey-flows.json", "DNS answers by rcode", "A"),
        Box::new(move |s| has("rcode", "Non-Existent Domain".into())(s) && positive(s)),
    );
    scenario.insert(
        (
            "osprey-flows.json",
            "DNS errors (NXDOMAIN, SERVFAIL) by client",
            "A",
        ),
        Box::new(has("source", a_ip.clone())),
    );
    scenario.insert(
        ("osprey-http.json", "Requests/s by status", "A"),
        Box::new(move |s| has("http_response_status_code", "500".into())(s) && positive(s)),
    );
    scenario.insert(
        ("osprey-http.json", "5xx ratio", "A"),
        Box::new(move |s| has("server_port", http_port.clone())(s) && positive(s)),
    );
    scenario.insert(("osprey-pods.json", "OOM kills", "A"), Box::new(positive));
    scenario.insert(
        ("osprey-pods.json", "CPU throttled", "A"),
        Box::new(positive),
    );
    scenario.insert(
        ("osprey-health.json", "Collector sent", "A"),
        Box::new(has("exporter", "prometheus".into())),
    );

    // A query that passes keeps that result (a rate decays once the
    // scenario is over); the others are asked again until all pass.
    let passes = |t: &Target, r: &Result<Vec<Value>, String>| {
        let key = (t.dashboard.as_str(), t.panel.as_str(), t.ref_id.as_str());
        match r {
            Err(_) => false,
            Ok(series) if exception(key.0, key.1, key.2).is_some() => series.is_empty(),
            Ok(series) => match scenario.get(&key) {
                Some(check) => series.iter().any(check),
                None => !series.is_empty(),
            },
        }
    };
    let mut results: Vec<Option<Result<Vec<Value>, String>>> = vec![None; targets.len()];
    settle(45, || {
        for (t, slot) in targets.iter().zip(results.iter_mut()) {
            if !slot.as_ref().is_some_and(|r| passes(t, r)) {
                *slot = Some(prom.query(&t.expr));
            }
        }
        let done = targets
            .iter()
            .zip(&results)
            .all(|(t, r)| r.as_ref().is_some_and(|r| passes(t, r)));
        (done, ())
    });
    let results: Vec<Result<Vec<Value>, String>> =
        results.into_iter().map(Option::unwrap).collect();
    let mut failures = Vec::new();
    let (mut with_data, mut panels) = (0, std::collections::BTreeSet::new());
    for (t, r) in targets.iter().zip(&results) {
        panels.insert((t.dashboard.clone(), t.panel.clone()));
        let key = (t.dashboard.as_str(), t.panel.as_str(), t.ref_id.as_str());
        let where_ = format!("{} / {} / {}", t.dashboard, t.panel, t.ref_id);
        match r {
            Err(e) => failures.push(format!("{where_}: query fails: {e}\n    {}", t.expr)),
            Ok(series) => {
                if !series.is_empty() {
                    with_data += 1;
                }
                eprintln!("{:>4} series  {where_}", series.len());
                if let Some(reason) = exception(key.0, key.1, key.2) {
                    if !series.is_empty() {
                        failures.push(format!(
                            "{where_}: listed as an exception ({reason}) but returns data: \
                             remove it from EXCEPTIONS"
                        ));
                    }
                } else if series.is_empty() {
                    failures.push(format!("{where_}: no series\n    {}", t.expr));
                } else if let Some(check) = scenario.get(&key)
                    && !series.iter().any(check)
                {
                    failures.push(format!(
                        "{where_}: none of the scenario's series in {series:?}\n    {}",
                        t.expr
                    ));
                }
            }
        }
    }

    // The template variables' values.
    for (dashboard, var, metric, label) in &variables {
        let values = prom.label_values(metric, label).unwrap_or_else(|e| {
            failures.push(format!("{dashboard} ${var}: {e}"));
            Vec::new()
        });
        eprintln!(
            "{:>4} values  {dashboard} / ${var} (label_values({metric}, {label}))",
            values.len()
        );
        match exception(dashboard, &format!("${var}"), var) {
            Some(reason) if !values.is_empty() => failures.push(format!(
                "{dashboard} ${var}: listed as an exception ({reason}) but has values"
            )),
            Some(_) => {}
            None if values.is_empty() => failures.push(format!("{dashboard} ${var}: no values")),
            None => {}
        }
    }

    // Exemplars: the HTTP dashboard's queries return every trace id the
    // client sent; the flows dashboard's (bytes, drops, retransmits, RTT)
    // the traces of the connections they counted.
    let sent: Vec<&str> = traces.iter().map(|t| t.1.as_str()).collect();
    let mut exemplar_queries = 0;
    for t in targets.iter().filter(|t| t.exemplar) {
        let need = if t.dashboard == "osprey-http.json" {
            sent[..4].len()
        } else {
            1
        };
        let got = settle(20, || {
            let e = prom.exemplars(&t.expr).unwrap_or_default();
            let ids: Vec<String> = e
                .iter()
                .filter_map(|l| l["trace_id"].as_str().map(str::to_owned))
                .collect();
            let mine = sent.iter().filter(|s| ids.iter().any(|i| i == *s)).count();
            (mine >= need, ids)
        });
        let mine = sent.iter().filter(|s| got.iter().any(|i| i == *s)).count();
        eprintln!(
            "{:>4} exemplars {} / {} / {} ({mine} of the {} sent trace ids)",
            got.len(),
            t.dashboard,
            t.panel,
            t.ref_id,
            sent.len()
        );
        exemplar_queries += 1;
        if mine < need {
            failures.push(format!(
                "{} / {} / {}: {mine} exemplars with a sent trace id, {need} expected \
                 ({got:?})\n    {}",
                t.dashboard, t.panel, t.ref_id, t.expr
            ));
        }
    }

    // Printed past cargo's output capture, like a skip: never silent.
    let mut listed = String::from("dashboards: queries without data on a standalone host:\n");
    for (dashboard, panel, ref_id, reason) in EXCEPTIONS {
        listed.push_str(&format!("  {dashboard} / {panel} / {ref_id}: {reason}\n"));
    }
    let _ = std::io::stderr().write_all(listed.as_bytes());
    eprintln!(
        "{} panels, {} queries: {with_data} returned data; {} variables; \
         {exemplar_queries} exemplar queries ({:.0?})",
        panels.len(),
        targets.len(),
        variables.len(),
        started.elapsed()
    );
    // Exemplars Prometheus 3 refuses as out of order (a folded series can
    // count two traced connections in one millisecond) cost the request
    // its exemplars, never its samples: the collector resends it without
    // them (`exemplar_rejected`).
    let log = std::fs::read_to_string(prom.dir.join("prometheus.log")).unwrap_or_default();
    let dropped = |kind: &str| {
        c.metric(
            "osprey_collector_dropped_total",
            &[("exporter", "prometheus"), ("kind", kind)],
        )
    };
    eprintln!(
        "note: Prometheus logged {} out-of-order exemplar lines; the collector dropped {} \
         exemplars bound for it",
        log.lines()
            .filter(|l| l.to_ascii_lowercase().contains("out of order exemplar")
                || l.contains("out-of-order exemplars"))
            .count(),
        dropped("exemplars")
    );
    for kind in ["samples", "histograms"] {
        if dropped(kind) > 0.0 {
            failures.push(format!(
                "the collector dropped {} {kind} bound for Prometheus",
                dropped(kind)
            ));
        }
    }
    drop(burners);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
