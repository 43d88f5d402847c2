//! `osprey-agent observe` against a running agent: real flows and drops in
//! namespaces; each filter narrows the output to exactly what it names; the
//! JSON-lines flow log holds the same records.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use osprey_e2e::{agent, eventually, netns::PodPair, traffic};

fn s(v: &serde_json::Value, key: &str) -> String {
    match &v[key] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn observe_prints_flows_and_each_filter_narrows_the_output() {
    let log = std::env::temp_dir().join(format!("osprey-flowlog-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let Some(agent) = agent::for_test(&[
        "--drain-interval-ms",
        "200",
        "--flow-log",
        log.to_str().unwrap(),
    ]) else {
        return;
    };
    let pair = PodPair::new("ob", "10.210.0.1", "10.210.0.2", 24);
    // The kernel stamps packets with its tick count (4 ms at HZ=250): a
    // flow's first packet is no earlier than a tick before this.
    let started =
        humantime::format_rfc3339_millis(std::time::SystemTime::now() - Duration::from_millis(10))
            .to_string();
    let a = pair.a_ip.to_string();
    pair.b.exec(&[
        "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7302", "-j", "DROP",
    ]);
    traffic::udp(&pair, 7300, (5, 100), (5, 100));
    traffic::tcp(&pair, 7301, 5_000, 5_000);
    let dropped_from = traffic::udp_send(&pair, 7302, 6, 100);

    let all = eventually(10, "the dropped flow in observe", || {
        let all = agent.observe(&["--ip", &a]);
        all.iter()
            .any(|r| s(r, "verdict") == "DROPPED")
            .then_some(all)
    });
    assert!(
        all.iter()
            .all(|r| s(r, "source_ip") == a || s(r, "destination_ip") == a)
    );
    for protocol in ["UDP", "TCP"] {
        assert!(
            all.iter().any(|r| s(r, "protocol") == protocol),
            "no {protocol} flow in {all:?}"
        );
    }

    let udp = agent.observe(&["--ip", &a, "--protocol", "udp"]);
    assert!(!udp.is_empty() && udp.iter().all(|r| s(r, "protocol") == "UDP"));
    // Forwarded records carry first and last seen, in order, after the
    // traffic started and before the record's time (RFC 3339, UTC, ms: they
    // compare as strings).
    for r in udp.iter().filter(|r| s(r, "verdict") == "FORWARDED") {
        let (first, last, time) = (s(r, "first_seen"), s(r, "last_seen"), s(r, "time"));
        assert!(
            started <= first && first <= last && last <= time,
            "started {started}: {first} {last} {time} in {r}"
        );
    }
    assert!(udp.len() < all.len());

    let port = agent.observe(&["--ip", &a, "--port", "7301"]);
    assert!(!port.is_empty());
    assert!(port.iter().all(|r| s(r, "protocol") == "TCP"
        && (s(r, "source_port") == "7301" || s(r, "destination_port") == "7301")));

    let dropped = agent.observe(&["--ip", &a, "--verdict", "dropped"]);
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(s(&dropped[0], "drop_reason"), "NETFILTER_DROP");
    assert_eq!(s(&dropped[0], "source_port"), dropped_from.to_string());
    assert_eq!(s(&dropped[0], "packets"), "6");
    assert_eq!(
        agent.observe(&["--ip", &a, "--drop-reason", "NETFILTER_DROP"]),
        dropped
    );
    assert!(
        agent
            .observe(&["--ip", &a, "--drop-reason", "NO_SOCKET"])
            .is_empty()
    );
    assert!(agent.observe(&["--ip", "10.210.9.9"]).is_empty());
    assert_eq!(agent.observe(&["--ip", &a, "--last", "2"]).len(), 2);
    // No pod identity without Kubernetes: a pod filter matches nothing.
    assert!(
        agent
            .observe(&["--ip", &a, "--namespace", "default"])
            .is_empty()
    );

    // Bad input is a clear error, not an empty answer.
    match ureq::get(&format!("{}/api/v1/flows?port=http", agent.base_url)).call() {
        Err(ureq::Error::Status(400, resp)) => {
            let body = resp.into_string().unwrap();
            assert!(body.contains("port"), "{body}");
        }
        other => panic!("expected HTTP 400, got {other:?}"),
    }

    // Compact output, like `hubble observe`.
    let text = agent.observe_text(&["--verdict", "dropped", "--ip", &a]);
    // The firewall's function (nft_do_chain, ipt_do_table) depends on the
    // iptables flavour.
    let line = text
        .lines()
        .find(|l| {
            l.contains(&format!(
                "{a}:{dropped_from} -> 10.210.0.2:7302 UDP DROPPED"
            ))
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("(NETFILTER_DROP at ") && line.ends_with(") packets=6"),
        "{line}"
    );

    // --follow prints flows that happen after it started.
    let mut child = Command::new(agent::binary().unwrap())
        .args([
            "observe",
            "--server",
            &agent.base_url,
            "--follow",
            "--port",
            "7303",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    traffic::udp_send(&pair, 7303, 3, 100);
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a followed flow within 10 s");
    let _ = child.kill();
    let _ = child.wait();
    let r: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(s(&r, "destination_port"), "7303");

    // The flow log has the same records as JSON lines.
    let text = std::fs::read_to_string(&log).unwrap();
    let logged: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        logged
            .iter()
            .any(|r| s(r, "drop_reason") == "NETFILTER_DROP" && s(r, "source_ip") == a)
    );
    assert!(logged.iter().any(|r| s(r, "destination_port") == "7301"));
    let _ = std::fs::remove_file(&log);
}

/// A flow log whose writes fail (/dev/full: ENOSPC) loses records, and each
/// is counted; the API keeps serving them.
#[test]
fn flow_log_write_errors_are_counted_record_by_record() {
    let Some(agent) = agent::for_test(&["--drain-interval-ms", "200", "--flow-log", "/dev/full"])
    else {
        return;
    };
    let pair = PodPair::new("fl", "10.211.0.1", "10.211.0.2", 24);
    let a = pair.a_ip.to_string();
    traffic::udp(&pair, 7400, (5, 100), (5, 100));
    let ours = eventually(10, "our flows in observe", || {
        let ours = agent.observe(&["--ip", &a]);
        (ours.len() >= 2).then_some(ours)
    });
    let errors = osprey_e2e::exposition::sum(
        &osprey_e2e::exposition::samples(&agent.scrape().1),
        "osprey_flow_log_write_errors_total",
        &[],
    );
    // Every record the hub published failed to be written, ours among them.
    assert!(
        errors >= ours.len() as f64,
        "{errors} write errors for {} records of our own flows",
        ours.len()
    );
}
