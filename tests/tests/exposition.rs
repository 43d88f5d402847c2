//! The exposition as consumers see it: valid OpenMetrics (checked by the
//! Python prometheus-client parser), and scraped by a real Prometheus whose
//! HTTP API returns the same values the traffic generator sent.

use osprey_e2e::{
    agent::{self, Agent},
    cgroup::TestCgroup,
    eventually,
    exposition::{samples, sum, validate_openmetrics},
    netns::PodPair,
    prometheus::{self, Prometheus},
    require,
    traffic::{self, ip_header},
};

fn agent_or_skip() -> Option<Agent> {
    agent::for_test(&["--drain-interval-ms", "200"])
}

#[test]
fn exposition_is_valid_openmetrics_with_flow_series() {
    let Some(agent) = agent_or_skip() else { return };
    let pair = PodPair::new("om", "10.205.0.1", "10.205.0.2", 24);
    traffic::udp(&pair, 6000, (10, 100), (10, 100));
    let (ctype, text) = eventually(10, "flow series in /metrics", || {
        let (ctype, text) = agent.scrape();
        text.contains("source_ip=\"10.205.0.1\"")
            .then_some((ctype, text))
    });
    assert!(
        ctype.starts_with("application/openmetrics-text; version=1.0.0"),
        "{ctype}"
    );
    assert!(text.ends_with("# EOF\n"));
    let families =
        validate_openmetrics(&text).unwrap_or_else(|e| panic!("invalid OpenMetrics: {e}\n{text}"));
    assert!(families >= 10, "only {families} families parsed");
}

#[test]
fn prometheus_scrapes_the_agent_and_returns_the_sent_bytes() {
    let Some(agent) = agent_or_skip() else { return };
    require!(
        prometheus::binary().is_some(),
        "prometheus is not installed (cargo xtask setup)"
    );
    let prom = Prometheus::start(&[format!("127.0.0.1:{}", agent.port())])
        .unwrap_or_else(|e| panic!("Prometheus must start: {e}"));
    let pair = PodPair::new("pr", "10.204.0.1", "10.204.0.2", 24);
    let x = traffic::udp(&pair, 6001, (250, 700), (50, 300));
    let expected = x.a_to_b.0 as f64 * (x.a_to_b.1 as f64 + 8.0 + ip_header(&pair) as f64);

    // The agent itself has the exact value...
    let local = eventually(10, "the agent to count the flow", || {
        let s = samples(&agent.scrape().1);
        let v = sum(
            &s,
            "osprey_flow_bytes_total",
            &[("source_ip", "10.204.0.1"), ("direction", "egress")],
        );
        (v >= expected).then_some(v)
    });
    assert_eq!(local, expected);
    // ...and Prometheus, having scraped it, returns the same through its API.
    let query = "sum(osprey_flow_bytes_total{source_ip=\"10.204.0.1\",direction=\"egress\",protocol=\"UDP\"})";
    let stored = eventually(30, "Prometheus to store the flow", || {
        let r = prom.query(query);
        r.first().map(|(_, v)| *v).filter(|v| *v >= expected)
    });
    assert_eq!(stored, expected, "{query}");
    let up = prom.query("up{job=\"osprey\"}");
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1, 1.0, "{:?}", prom.targets_up());
}

/// A series budget of 5 and 60 new flows: the flow family stays within the
/// budget (plus overflow series), the folded series are counted, and no packet
/// is lost from the totals. The probes watch only a cgroup of the test's own,
/// whose one process sends the flows, so the totals are exactly the test's.
#[test]
fn series_budget_folds_new_series_into_overflow_and_counts_them() {
    require!(
        osprey_e2e::is_root(),
        "root is needed to load eBPF and create network namespaces"
    );
    let cg = TestCgroup::new("budget");
    let watched = cg.v2_dir().display().to_string();
    let Some(agent) = agent::for_test(&[
        "--drain-interval-ms",
        "200",
        "--series-budget",
        "5",
        "--cgroup",
        &watched,
    ]) else {
        return;
    };
    let pair = PodPair::new("sb", "10.209.0.1", "10.209.0.2", 24);
    const FLOWS: u16 = 60;
    const SIZE: u16 = 50;
    traffic::udp_fanout_from(&cg, &pair, 30_000, FLOWS, usize::from(SIZE));
    let folded = |s: &[osprey_e2e::exposition::Sample]| {
        sum(
            s,
            "osprey_metric_series_folded_total",
            &[("metric", "osprey_flow_bytes")],
        )
    };
    let udp_egress = |s: &[osprey_e2e::exposition::Sample], metric| {
        sum(s, metric, &[("protocol", "UDP"), ("direction", "egress")])
    };
    let s = eventually(15, "folded series", || {
        let s = samples(&agent.scrape().1);
        (folded(&s) >= f64::from(FLOWS - 5)
            && udp_egress(&s, "osprey_flow_packets_total") >= f64::from(FLOWS))
        .then_some(s)
    });
    let exposed: Vec<_> = s
        .iter()
        .filter(|x| x.name == "osprey_flow_bytes_total")
        .collect();
    let overflow = exposed
        .iter()
        .filter(|x| x.labels["source_ip"] == "overflow")
        .count();
    assert!(
        exposed.len() - overflow <= 5,
        "{} regular series with a budget of 5",
        exposed.len() - overflow
    );
    assert!(overflow >= 1);
    // Folding keeps the totals: every datagram is in some series, once.
    assert_eq!(
        udp_egress(&s, "osprey_flow_packets_total"),
        f64::from(FLOWS),
        "UDP packets in all series vs {FLOWS} sent"
    );
    assert_eq!(
        udp_egress(&s, "osprey_flow_bytes_total"),
        f64::from(FLOWS) * f64::from(SIZE + 8) + f64::from(FLOWS) * ip_header(&pair) as f64,
        "UDP bytes in all series vs {FLOWS} datagrams of {SIZE} bytes sent"
    );
}
