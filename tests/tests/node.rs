//! The node_* families against Debian's prometheus-node-exporter on the same
//! host: every family and label set the agent exposes exists there (`lo`
//! included), and values agree: every value node-exporter read lies between
//! the agent's two scrapes around it. Byte gauges get a 1 % + 512 B slack
//! (far less than a kB-vs-bytes slip: every /proc/meminfo figure is a
//! multiple of 1,024 bytes), counts none. A host busy enough to move a value
//! across the bracket gets a few fresh rounds; a wrong value fails them all.

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
                // The agent's default (kube-prometheus' setting: pods'
                // host-side veths left out); Debian's (^lo$) would leave out
                // lo, which the agent exposes.
                "--collector.netdev.device-exclude=^(veth.*|[a-f0-9]{15})$",
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

    let node = |text: &str| -> BTreeMap<_, f64> {
        samples(text)
            .into_iter()
            .filter(|s| s.name.starts_with("node_"))
            .map(|s| (key(&s), s.value))
            .collect()
    };
    const ROUNDS: usize = 5;
    let mut before = BTreeMap::new();
    for round in 1..=ROUNDS {
        before = node(&agent.scrape().1);
        let theirs = node(&scrape_exporter().expect("node-exporter serves"));
        let after = node(&agent.scrape().1);
        assert!(
            before.len() > 20,
            "the agent exposes node_* families ({})",
            before.len()
        );
        let (compared, mismatches) = compare(&before, &theirs, &after);
        assert!(compared > 20, "compared {compared} series");
        assert!(
            before
                .keys()
                .any(|(_, l)| l.get("device").is_some_and(|d| d == "lo")),
            "lo is compared too"
        );
        if mismatches.is_empty() {
            break;
        }
        eprintln!("round {round}: {}", mismatches.join("\n"));
        assert!(
            round < ROUNDS,
            "{} series disagree with node-exporter in each of {ROUNDS} rounds; last:\n{}",
            mismatches.len(),
            mismatches.join("\n")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
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

/// Compares the agent's series (scraped `before` and `after` node-exporter's
/// `theirs`) with node-exporter's: how many were compared, and the values that
/// disagree. A series node-exporter lacks fails the test at once.
fn compare(
    before: &BTreeMap<(String, BTreeMap<String, String>), f64>,
    theirs: &BTreeMap<(String, BTreeMap<String, String>), f64>,
    after: &BTreeMap<(String, BTreeMap<String, String>), f64>,
) -> (usize, Vec<String>) {
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for (k, ours) in before {
        let (name, labels) = k;
        let Some(theirs) = theirs.get(k) else {
            panic!("{name}{labels:?} is not in node-exporter's output");
        };
        let Some(later) = after.get(k) else {
            panic!("{name}{labels:?} is gone from the agent's second scrape");
        };
        // Monotonic: counters, and netstat's untyped SNMP counters, only grow
        // from the first agent scrape to the second.
        let monotonic = name.ends_with("_total")
            || (name.starts_with("node_netstat_")
                && !name.ends_with("_CurrEstab")
                && !name.ends_with("_Forwarding"));
        let (lo, hi) = if monotonic {
            (*ours, *later)
        } else {
            (ours.min(*later), ours.max(*later))
        };
        let slack = if monotonic {
            // Float formatting of large counters.
            1e-6 * ours.abs().max(1.0)
        } else if name.ends_with("_bytes") {
            // Memory and filesystem gauges: 1 % + 512 B, so a value read in
            // kB (÷1,024) or multiplied twice (×1,024) fails.
            theirs.abs() * 0.01 + 512.0
        } else {
            // Counts (sockets, IOs in flight, inodes), load averages and
            // 0/1 gauges (read-only, device errors): exact within the bracket.
            0.0
        };
        if !(lo - slack <= *theirs && *theirs <= hi + slack) {
            mismatches.push(format!(
                "{name}{labels:?}: node-exporter {theirs} not within agent {ours}..{later} (± {slack})"
            ));
        }
        compared += 1;
    }
    (compared, mismatches)
}
