//! The metric catalogue, as a live agent exposes it, against a checked-in
//! file (`tests/golden/catalogue.txt`): every family's name, type, unit and
//! help, and the label names its series carry. A rename, a new family or a
//! changed label is a deliberate act: rerun with `OSPREY_BLESS=1` and commit
//! the file. Families without series are not exposed (prometheus-client
//! filters them, as the Go client does); the scenario's traffic gives the
//! network families series, so their label names are checked too.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    time::Duration,
};

use osprey_e2e::{agent, eventually, netns::PodPair, traffic};

#[derive(Debug, Default, Clone, PartialEq)]
struct Family {
    kind: String,
    unit: String,
    help: String,
    labels: BTreeSet<String>,
    /// Whether the family had series (when blessed: in any blessing run).
    series: bool,
}

/// The families this test's own traffic gives series: they must be exposed,
/// with no label name the catalogue lacks.
const SCENARIO: [&str; 16] = [
    "osprey_flow_bytes",
    "osprey_flow_packets",
    "hubble_flows_processed",
    "hubble_tcp_flags",
    "hubble_icmp",
    "osprey_tcp_connections",
    "hubble_dns_queries",
    "hubble_dns_responses",
    "osprey_dns_latency_seconds",
    "osprey_drops_ignored",
    "osprey_tcp_rtt_seconds",
    "http_server_request_duration_seconds",
    "http_client_request_duration_seconds",
    "hubble_http_requests",
    "hubble_http_responses",
    "hubble_http_request_duration_seconds",
];

/// Families by name, from an OpenMetrics exposition: metadata lines, and
/// the label names of the samples that follow them.
fn catalogue(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (Some(what), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            let value = parts.next().unwrap_or_default().to_owned();
            let family = out.entry(name.to_owned()).or_default();
            current = name.to_owned();
            match what {
                "TYPE" => family.kind = value,
                "UNIT" => family.unit = value,
                "HELP" => family.help = value,
                _ => {}
            }
            continue;
        }
        let series = line.split(" # ").next().unwrap_or_default();
        if series.trim().is_empty() {
            continue;
        }
        let Some((_, labels)) = series.split_once('{') else {
            out.entry(current.clone()).or_default().series = true;
            continue;
        };
        let labels = labels.rsplit_once('}').map_or(labels, |(l, _)| l);
        let family = out.entry(current.clone()).or_default();
        family.series = true;
        for pair in labels.split("\",") {
            if let Some((name, _)) = pair.split_once('=') {
                family.labels.insert(name.trim().to_owned());
            }
        }
    }
    out
}

fn render(catalogue: &BTreeMap<String, Family>) -> String {
    let mut out = String::new();
    for (name, f) in catalogue {
        out.push_str(&format!("{name} {} unit={}\n", f.kind, f.unit));
        out.push_str(&format!("  help {}\n", f.help));
        let labels: Vec<_> = f.labels.iter().map(String::as_str).collect();
        // "-": no series when blessed (label names unknown).
        let labels = if f.series {
            labels.join(",")
        } else {
            "-".into()
        };
        out.push_str(&format!("  labels {labels}\n"));
    }
    out
}

fn parse(golden: &str) -> BTreeMap<String, Family> {
    let mut out = BTreeMap::new();
    let mut lines = golden.lines();
    while let Some(head) = lines.next() {
        let mut parts = head.splitn(3, ' ');
        let name = parts.next().unwrap().to_owned();
        let kind = parts.next().unwrap_or_default().to_owned();
        let unit = parts
            .next()
            .unwrap_or_default()
            .trim_start_matches("unit=")
            .to_owned();
        let help = lines
            .next()
            .and_then(|l| l.strip_prefix("  help "))
            .unwrap_or_default()
            .to_owned();
        let labels = lines
            .next()
            .and_then(|l| l.strip_prefix("  labels"))
            .unwrap_or_default()
            .trim();
        let series = labels != "-";
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty() && *l != "-")
            .map(str::to_owned)
            .collect();
        out.insert(
            name,
            Family {
                kind,
                unit,
                help,
                labels,
                series,
            },
        );
    }
    out
}

/// One DNS query from pod a and its (empty, NOERROR) answer from pod b.
fn dns_exchange(pair: &PodPair) {
    let (a, b) = (pair.a_ip, pair.b_ip);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let answer = pair.b.run(move || {
        let sock = UdpSocket::bind(SocketAddr::new(b, 53)).expect("bind :53 in pod b");
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 512];
        let (n, from) = sock.recv_from(&mut buf).expect("a query");
        buf[2] |= 0x80; // QR: this is the response to the query.
        sock.send_to(&buf[..n], from).unwrap();
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    pair.a
        .run(move || {
            let sock = UdpSocket::bind(SocketAddr::new(a, 0)).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // id 0x0007, RD, one question: example.com. A IN
            let mut query = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            query.extend(b"\x07example\x03com\x00\x00\x01\x00\x01");
            sock.send_to(&query, SocketAddr::new(b, 53)).unwrap();
            let mut buf = [0u8; 512];
            sock.recv(&mut buf).expect("the answer");
        })
        .join()
        .unwrap();
    answer.join().unwrap();
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/catalogue.txt")
}

#[test]
fn parses_what_it_renders() {
    let text = "# HELP a_total An a.\n# TYPE a_total counter\na_total{x=\"1\",y=\"a,b\"} 2 # {trace_id=\"t\"} 1\n# TYPE b gauge\n# UNIT b bytes\n# HELP b B.\nb 1\n# EOF\n";
    let c = catalogue(text);
    assert_eq!(
        c["a_total"].labels,
        BTreeSet::from(["x".to_owned(), "y".to_owned()])
    );
    assert_eq!(c["b"].unit, "bytes");
    assert!(c["a_total"].series && c["b"].series);
    assert_eq!(parse(&render(&c)), c);
}

#[test]
fn the_live_catalogue_is_the_checked_in_one() {
    let Some(agent) = agent::for_test(&["--drain-interval-ms", "200"]) else {
        return;
    };
    // Traffic that gives the flow, drop, TCP and ICMP families series.
    let pair = PodPair::new("cat", "10.209.0.1", "10.209.0.2", 24);
    traffic::udp(&pair, 6100, (5, 100), (5, 100));
    traffic::tcp(&pair, 6101, 1000, 1000);
    pair.a.exec(&["ping", "-c", "2", "-i", "0.2", "10.209.0.2"]);
    // Nothing listens on 6102: the datagrams are freed with NO_SOCKET.
    traffic::udp_send(&pair, 6102, 3, 50);
    dns_exchange(&pair);
    // An HTTP request: the HTTP families' series.
    let server = osprey_e2e::http::serve(&pair, 6104, 1);
    osprey_e2e::http::client(
        &pair,
        6104,
        vec![vec![osprey_e2e::http::Step::One(
            osprey_e2e::http::Req::get("/fast"),
        )]],
    );
    server.join().unwrap();
    // Connections closed by the client with the server's reply unread: the
    // kernel frees it with SOCKET_CLOSE / QUEUE_PURGE (ignored drops).
    traffic::request_then_close(&pair, 6103, 3);
    let text = eventually(10, "flow and drop series in /metrics", || {
        let (_, text) = agent.scrape();
        let live = catalogue(&text);
        (SCENARIO
            .iter()
            .all(|f| live.get(*f).is_some_and(|f| f.series))
            && text.contains("source_ip=\"10.209.0.1\""))
        .then_some(text)
    });
    let live = catalogue(&text);
    let path = golden_path();
    if std::env::var_os("OSPREY_BLESS").is_some() {
        // Label names are a union: a family's series carry different label
        // names only when the catalogue says so (none today).
        let mut merged = std::fs::read_to_string(&path)
            .map(|g| parse(&g))
            .unwrap_or_default();
        for (name, f) in &live {
            let entry = merged.entry(name.clone()).or_default();
            let (labels, series) = (std::mem::take(&mut entry.labels), entry.series);
            *entry = f.clone();
            entry.labels.extend(labels);
            entry.series |= series;
        }
        merged.retain(|name, _| live.contains_key(name));
        std::fs::write(&path, render(&merged)).unwrap();
        return;
    }
    let golden = parse(
        &std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (OSPREY_BLESS=1 writes it)", path.display())),
    );
    let mut problems = Vec::new();
    for (name, want) in &golden {
        match live.get(name) {
            // prometheus-client leaves out families without series (as the
            // Go client does). Must be exposed: the families this test's
            // traffic feeds, and those without labels that had series (a
            // plain counter or gauge always has its one).
            None if SCENARIO.contains(&name.as_str())
                || (want.series && want.labels.is_empty()) =>
            {
                problems.push(format!("{name}: in the catalogue, not exposed"))
            }
            None => {}
            Some(got) => {
                if (&got.kind, &got.unit, &got.help) != (&want.kind, &want.unit, &want.help) {
                    problems.push(format!(
                        "{name}: exposed as {got:?}, catalogue says {want:?}"
                    ));
                }
                let extra: Vec<_> = got.labels.difference(&want.labels).collect();
                if !extra.is_empty() {
                    problems.push(format!("{name}: labels {extra:?} not in the catalogue"));
                }
            }
        }
    }
    for name in live.keys().filter(|n| !golden.contains_key(*n)) {
        problems.push(format!("{name}: exposed, not in the catalogue"));
    }
    assert!(
        problems.is_empty(),
        "the exposition differs from {} (OSPREY_BLESS=1 rewrites it):\n{}",
        path.display(),
        problems.join("\n")
    );
}
