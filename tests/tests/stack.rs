//! `cargo xtask run --stack` as a user runs it, from a shell without
//! cargo's variables: it prints its guide, and this test's own traffic goes
//! the ways the guide's three queries read it. A UDP flow is in Prometheus
//! twice, scraped (`job="osprey"`) and pushed through the collector's
//! remote-write (`job="osprey-agent"`); a dropped packet has its reason; a
//! traced HTTP request has its duration, its trace id as an exemplar and its
//! span at the traces receiver. Then Ctrl-C (SIGINT to the process group,
//! as a terminal sends it) stops everything, and the ports are free again.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use osprey_e2e::{
    eventually,
    http::{self, Req, Step},
    netns::PodPair,
    require, traffic,
};

const PROMETHEUS: &str = "http://127.0.0.1:9090";
/// What the stack listens on: agent, Prometheus, collector (gRPC, HTTP,
/// metrics), traces receiver (gRPC, HTTP).
const PORTS: [u16; 7] = [9811, 9090, 4317, 4318, 9465, 14317, 14318];
const SPANS: &str = "/tmp/osprey-stack/spans.jsonl";

fn get(path: &str, params: &[(&str, &str)]) -> serde_json::Value {
    let mut req = ureq::get(&format!("{PROMETHEUS}{path}")).timeout(Duration::from_secs(5));
    for (k, v) in params {
        req = req.query(k, v);
    }
    let resp = req.call().unwrap_or_else(|e| panic!("{path}: {e}"));
    resp.into_json().unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Instant query: each series' `job` and value.
fn query(promql: &str) -> Vec<(String, f64)> {
    get("/api/v1/query", &[("query", promql)])["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["metric"]["job"].as_str().unwrap_or_default().to_owned(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn the_stack_runs_wired_as_the_guide_says_and_stops_on_ctrl_c() {
    require!(osprey_e2e::is_root(), "root is needed to load eBPF");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    for port in PORTS {
        assert!(!listening(port), "port {port} is taken before the stack");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut cmd = Command::new(cargo);
    cmd.args(["xtask", "run", "--stack"])
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    // A user's shell: none of the variables `cargo test` gives this process.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" || key.starts_with("OSPREY_") {
            cmd.env_remove(key.as_ref());
        }
    }
    let mut child = cmd.spawn().expect("cargo xtask run --stack");
    let group = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut guide = String::new();
    while !guide.contains("Ctrl-C stops them all.") {
        match rx.recv_timeout(Duration::from_secs(600)) {
            Ok(line) => guide.push_str(&(line + "\n")),
            Err(e) => {
                // SAFETY: kill(2) on the group this test started.
                unsafe { libc::kill(-group, libc::SIGINT) };
                let _ = child.wait();
                panic!("the stack printed no guide ({e}); it printed:\n{guide}");
            }
        }
    }
    for part in [
        "agent      http://127.0.0.1:9811/metrics",
        "Prometheus http://127.0.0.1:9090",
        SPANS,
        "rate(osprey_flow_bytes_total[1m])",
        "hubble_drop_total",
        "histogram_quantile(0.99",
    ] {
        assert!(guide.contains(part), "the guide lacks {part:?}:\n{guide}");
    }

    // This test's traffic, between its own pods.
    let pair = PodPair::new("sk", "10.235.0.1", "10.235.0.2", 24);
    let a = pair.a_ip.to_string();
    traffic::udp(&pair, 7396, (5, 100), (5, 100));
    pair.b.exec(&[
        "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7397", "-j", "DROP",
    ]);
    traffic::udp_send(&pair, 7397, 4, 100);
    let (tp, trace, _) = http::traceparent(0x73);
    let server = http::serve(&pair, 7398, 1);
    http::client(
        &pair,
        7398,
        vec![vec![Step::One(Req::get("/fast").traced(&tp))]],
    );
    server.join().unwrap();

    // The flow, scraped and pushed: 5 packets each way.
    let flow = format!(
        "osprey_flow_packets_total{{source_ip=\"{a}\",destination_port=\"7396\",direction=\"egress\"}}"
    );
    let mut by_job = eventually(60, "the flow, scraped and pushed", || {
        let got = query(&flow);
        (got.len() == 2 && got.iter().all(|(_, v)| *v == 5.0)).then_some(got)
    });
    by_job.sort_by(|x, y| x.0.cmp(&y.0));
    let jobs: Vec<&str> = by_job.iter().map(|(j, _)| j.as_str()).collect();
    assert_eq!(jobs, ["osprey", "osprey-agent"], "{by_job:?}");

    // The drop, by the kernel's reason.
    let drops = format!(
        "osprey_flow_drops_total{{job=\"osprey\",source_ip=\"{a}\",destination_port=\"7397\"}}"
    );
    let reasons = eventually(30, "the dropped datagrams", || {
        let got = get("/api/v1/query", &[("query", drops.as_str())]);
        let series = got["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (!series.is_empty()).then_some(series)
    });
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0]["metric"]["reason"], "NETFILTER_DROP");
    assert_eq!(reasons[0]["value"][1], "4");

    // The request: counted, its trace id an exemplar, its span received.
    let count = "http_server_request_duration_seconds_count{job=\"osprey\",server_port=\"7398\"}";
    eventually(30, "the request's duration", || {
        (query(count).first().map(|(_, v)| *v) == Some(1.0)).then_some(())
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (start, end) = ((now - 600).to_string(), (now + 60).to_string());
    let bucket = "http_server_request_duration_seconds_bucket{job=\"osprey\",server_port=\"7398\"}";
    let exemplars = get(
        "/api/v1/query_exemplars",
        &[("query", bucket), ("start", &start), ("end", &end)],
    );
    assert!(
        exemplars.to_string().contains(&trace),
        "no exemplar of {trace}: {exemplars}"
    );
    eventually(30, "the request's span at the traces receiver", || {
        std::fs::read_to_string(SPANS)
            .ok()
            .filter(|s| s.contains(&trace))
    });

    // Ctrl-C: everything stops, cleanly, and lets go of its ports.
    // SAFETY: kill(2) on the group this test started.
    unsafe { libc::kill(-group, libc::SIGINT) };
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the stack stops within 60 s of Ctrl-C")
        .unwrap();
    assert!(status.success(), "after Ctrl-C: {status}");
    for port in PORTS {
        assert!(!listening(port), "port {port} still listening after Ctrl-C");
    }
}
