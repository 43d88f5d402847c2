//! Hubble's families from real traffic. This file holds one test, so it runs
//! alone (cargo runs test binaries one after another) and IPv6 between the two
//! pods is the only IPv6 traffic on the host: the deltas are exact.

use osprey_e2e::{
    agent::{self},
    exposition::{Sample, samples, sum},
    netns::PodPair,
    settle, traffic,
};

fn v6(s: &[Sample], name: &str, label: (&str, &str)) -> u64 {
    sum(s, name, &[("family", "IPv6"), label]) as u64
}

#[test]
fn tcp_flags_icmp_types_and_processed_flows_match_the_traffic() {
    let Some(agent) = agent::for_test(&["--drain-interval-ms", "200"]) else {
        return;
    };
    let pair = PodPair::new("hb", "fd00:208::1", "fd00:208::2", 64);
    let before = samples(&agent.scrape().1);

    // One TCP connection with a clean close, seen leaving one socket and
    // entering the other: 2 × SYN, 2 × SYN-ACK, 2 × 2 FIN, no RST.
    traffic::tcp(&pair, 7200, 10_000, 10_000);
    // Five echo requests; the replies come back to the ping socket.
    pair.a.exec(&[
        "ping",
        "-6",
        "-c",
        "5",
        "-i",
        "0.2",
        "-W",
        "1",
        "fd00:208::2",
    ]);

    let want = [
        ("hubble_tcp_flags_total", ("flag", "SYN"), 2),
        ("hubble_tcp_flags_total", ("flag", "SYN-ACK"), 2),
        ("hubble_tcp_flags_total", ("flag", "FIN"), 4),
        ("hubble_tcp_flags_total", ("flag", "RST"), 0),
        ("hubble_icmp_total", ("type", "EchoRequest"), 5),
    ];
    let delta = |s: &[Sample], name, label| v6(s, name, label) - v6(&before, name, label);
    let s = settle(10, || {
        let s = samples(&agent.scrape().1);
        let done = want
            .iter()
            .all(|(name, label, n)| delta(&s, name, *label) >= *n);
        (done, s)
    });
    for (name, label, n) in want {
        assert_eq!(
            delta(&s, name, label),
            n,
            "{name}{{family=\"IPv6\",{}=\"{}\"}}",
            label.0,
            label.1
        );
    }
    // Echo replies: at least the five that reached the ping socket.
    assert!(delta(&s, "hubble_icmp_total", ("type", "EchoReply")) >= 5);
    // Every packet counted in the flow series is a processed flow event.
    let processed: f64 = ["TCP", "ICMPv6"]
        .iter()
        .map(|p| {
            sum(
                &s,
                "hubble_flows_processed_total",
                &[("protocol", p), ("verdict", "FORWARDED")],
            )
        })
        .sum();
    let packets: f64 = sum(&s, "osprey_flow_packets_total", &[("protocol", "TCP")])
        + sum(&s, "osprey_flow_packets_total", &[("protocol", "ICMPv6")]);
    assert!(
        processed >= packets,
        "processed {processed} < packets in live series {packets}"
    );
}
