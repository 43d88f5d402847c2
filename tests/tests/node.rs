//! The node_* families against Debian's prometheus-node-exporter on the same
//! host: every family and label set the agent exposes exists there (devices
//! node-exporter is configured to skip aside), and values agree — counters are
//! bracketed by two agent scrapes around the node-exporter scrape, gauges
//! agree within a skew tolerance.

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use osprey_e2e::{
    agent, eventually,
    exposition::{Sample, samples},
    require,
};

struct NodeExporter(Child, u16);

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn key(s: &Sample) -> (String, BTreeMap<String, String>) {
    (s.name.clone(), s.labels.clone())
}

#[test]
fn node_families_match_node_exporter() {
    let Some(agent) = agent::for_test(&[]) else {
        return;
    };
    let bin = "/usr/bin/prometheus-node-exporter";
    require!(
        std::path::Path::new(bin).exists(),
        "prometheus-node-exporter is not installed (cargo xtask setup)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exporter = NodeExporter(
        Command::new(bin)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args([
                "--collector.disable-defaults",
                "--collector.cpu",
                "--collector.loadavg",
            ])
            .args([
                "--collector.meminfo",
                "--collector.netdev",
                "--collector.pressure",
            ])
            .args([
                "--collector.filesystem",
                "--collector.diskstats",
                "--collector.netstat",
                "--collector.sockstat",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting node-exporter"),
        port,
    );
    let url = format!("http://127.0.0.1:{}/metrics", exporter.1);
    let scrape_exporter = || {
        ureq::get(&url)
            .timeout(Duration::from_secs(5))
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
    };
    eventually(10, "node-exporter to serve", scrape_exporter);

    let before: BTreeMap<_, f64> = samples(&agent.scrape().1)
        .into_iter()
        .filter(|s| s.name.starts_with("node_"))
        .map(|s| (key(&s), s.value))
        .collect();
    let theirs: BTreeMap<_, f64> = samples(&scrape_exporter().unwrap())
        .into_iter()
        .map(|s| (key(&s), s.value))
        .collect();
    let after: BTreeMap<_, f64> = samples(&agent.scrape().1)
        .into_iter()
        .filter(|s| s.name.starts_with("node_"))
        .map(|s| (key(&s), s.value))
        .collect();
    assert!(
        before.len() > 20,
        "the agent exposes node_* families ({})",
        before.len()
    );

    let mut compared = 0;
    for ((name, labels), ours) in &before {
        // Debian's node-exporter excludes lo by default (--collector.netdev.device-exclude=^lo$).
        if labels.get("device").is_some_and(|d| d == "lo") {
            continue;
        }
        let k = (name.clone(), labels.clone());
        let Some(theirs) = theirs.get(&k) else {
            panic!("{name}{labels:?} is not in node-exporter's output");
        };
        let later = after[&k];
        // Monotonic: counters, and netstat's untyped SNMP counters.
        let monotonic = name.ends_with("_total")
            || (name.starts_with("node_netstat_")
                && !name.ends_with("_CurrEstab")
                && !name.ends_with("_Forwarding"));
        if monotonic {
            let slack = 1e-6 * ours.abs().max(1.0);
            assert!(
                *ours - slack <= *theirs && *theirs <= later + slack,
                "{name}{labels:?}: node-exporter {theirs} not within agent {ours}..{later}"
            );
        } else if name.starts_with("node_load") {
            assert!((ours - theirs).abs() <= 0.5, "{name}: {ours} vs {theirs}");
        } else if !name.ends_with("_bytes") {
            // Counts that move between scrapes (sockets, connections, IOs in flight).
            let (lo, hi) = (ours.min(later), ours.max(later));
            let tolerance = (theirs * 0.05).max(5.0);
            assert!(
                lo - tolerance <= *theirs && *theirs <= hi + tolerance,
                "{name}{labels:?}: node-exporter {theirs} vs agent {ours}..{later}"
            );
        } else {
            // Memory and filesystem gauges move between the scrapes: 64 MiB or 5 %.
            let tolerance = (64.0 * 1024.0 * 1024.0_f64).max(theirs * 0.05);
            assert!(
                (ours - theirs).abs() <= tolerance,
                "{name}: {ours} vs {theirs}"
            );
        }
        compared += 1;
    }
    assert!(compared > 20, "compared {compared} series");
    for family in [
        "node_filesystem_avail_bytes",
        "node_disk_written_bytes_total",
        "node_netstat_Tcp_ActiveOpens",
        "node_sockstat_sockets_used",
    ] {
        assert!(
            before.keys().any(|(name, _)| name == family),
            "the agent exposes {family}"
        );
    }
}
