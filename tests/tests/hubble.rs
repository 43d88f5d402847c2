//! Hubble's families from real traffic, against ground truth the test owns:
//! the packets its own two pods' interfaces counted and the echoes ping sent.
//! The agent names each flow's source and destination by IP (Hubble's `ip`
//! context option), so every series read here is the test's own flow: no
//! other traffic on the host can make or break an assertion.

use osprey_e2e::{
    agent::{self},
    exposition::{Sample, samples, sum},
    netns::{IFACE, Netns, PodPair},
    settle, traffic,
};

const A: &str = "fd00:208::1";
const B: &str = "fd00:208::2";

/// Packets a pod's sockets handed to its veth (sent, or dropped by it), and
/// packets its veth received. Neighbours are static and IPv6 autoconfiguration
/// is off (PodPair), so these are exactly the packets of the test's flows.
fn sent(ns: &Netns) -> u64 {
    ns.counter(IFACE, "tx_packets") + ns.counter(IFACE, "tx_dropped")
}

fn received(ns: &Netns) -> u64 {
    ns.counter(IFACE, "rx_packets")
}

/// (a sent, b received, b sent, a received) since `before`.
fn veth_deltas(pair: &PodPair, before: [u64; 4]) -> [u64; 4] {
    let now = [
        sent(&pair.a),
        received(&pair.b),
        sent(&pair.b),
        received(&pair.a),
    ];
    [0, 1, 2, 3].map(|i| now[i] - before[i])
}

/// A Hubble series of the flow `src` → `dst`.
fn of(s: &[Sample], name: &str, src: &str, dst: &str, more: &[(&str, &str)]) -> u64 {
    let mut want = vec![("source", src), ("destination", dst)];
    want.extend_from_slice(more);
    sum(s, name, &want) as u64
}

fn processed(s: &[Sample], src: &str, dst: &str, protocol: &str, subtype: &str) -> u64 {
    of(
        s,
        "hubble_flows_processed_total",
        src,
        dst,
        &[
            ("protocol", protocol),
            ("subtype", subtype),
            ("verdict", "FORWARDED"),
        ],
    )
}

#[test]
fn tcp_flags_icmp_types_and_processed_flows_match_the_traffic() {
    let Some(agent) = agent::for_test_by_ip(&[]) else {
        return;
    };
    let pair = PodPair::new("hb", A, B, 64);
    let zero = [0; 4];
    let start = veth_deltas(&pair, zero);

    // One TCP connection with a clean close, seen leaving one socket and
    // entering the other: 2 × SYN, 2 × SYN-ACK, 2 × 2 FIN, no RST.
    traffic::tcp(&pair, 7200, 10_000, 10_000);
    let tcp = veth_deltas(&pair, start);
    let after_tcp = veth_deltas(&pair, zero);
    // Five echo requests; the replies come back to the ping socket.
    let ping = std::process::Command::new("ip")
        .args(["netns", "exec", &pair.a.name])
        .args(["ping", "-6", "-c", "5", "-i", "0.2", "-W", "1", B])
        .output()
        .expect("running ping");
    let ping_text = String::from_utf8_lossy(&ping.stdout);
    assert!(ping.status.success(), "ping: {ping_text}");
    assert!(ping_text.contains("5 received"), "ping: {ping_text}");
    let icmp = veth_deltas(&pair, after_tcp);
    assert_eq!(icmp[0], 5, "a sent the five echo requests");
    assert_eq!(icmp[3], 5, "a received the five echo replies");

    let flags = [
        (A, B, "SYN", 2),
        (B, A, "SYN-ACK", 2),
        (A, B, "FIN", 2),
        (B, A, "FIN", 2),
        (A, B, "RST", 0),
        (B, A, "RST", 0),
    ];
    // Every packet of every flow is one processed flow event per observation
    // point: leaving a socket (from-endpoint), entering one (to-endpoint).
    let events = [
        (A, B, "TCP", "from-endpoint", tcp[0]),
        (A, B, "TCP", "to-endpoint", tcp[1]),
        (B, A, "TCP", "from-endpoint", tcp[2]),
        (B, A, "TCP", "to-endpoint", tcp[3]),
        // Requests leave a's ping socket; the replies b's kernel sends are
        // seen leaving it and entering a's ping socket.
        (A, B, "ICMPv6", "from-endpoint", icmp[0]),
        (B, A, "ICMPv6", "from-endpoint", icmp[2]),
        (B, A, "ICMPv6", "to-endpoint", icmp[3]),
    ];
    let flag = |s: &[Sample], src, dst, f| {
        of(
            s,
            "hubble_tcp_flags_total",
            src,
            dst,
            &[("family", "IPv6"), ("flag", f)],
        )
    };
    let icmp_type = |s: &[Sample], src, dst, t| {
        of(
            s,
            "hubble_icmp_total",
            src,
            dst,
            &[("family", "IPv6"), ("type", t)],
        )
    };
    // Counters only grow towards the truth: wait until a drain has caught up.
    let s = settle(10, || {
        let s = samples(&agent.scrape().1);
        let done = flags.iter().all(|(a, b, f, n)| flag(&s, a, b, f) >= *n)
            && events
                .iter()
                .all(|(a, b, p, sub, n)| processed(&s, a, b, p, sub) >= *n)
            && icmp_type(&s, A, B, "EchoRequest") >= icmp[0]
            && icmp_type(&s, B, A, "EchoReply") >= icmp[2] + icmp[3];
        (done, s)
    });
    for (src, dst, f, n) in flags {
        assert_eq!(
            flag(&s, src, dst, f),
            n,
            "hubble_tcp_flags_total{{source=\"{src}\",destination=\"{dst}\",family=\"IPv6\",flag=\"{f}\"}}"
        );
    }
    for (src, dst, protocol, subtype, n) in events {
        assert_eq!(
            processed(&s, src, dst, protocol, subtype),
            n,
            "hubble_flows_processed_total{{source=\"{src}\",destination=\"{dst}\",protocol=\"{protocol}\",subtype=\"{subtype}\"}} vs the veth's packets"
        );
    }
    // The requests once (leaving a), the replies twice (leaving b, entering a).
    assert_eq!(icmp_type(&s, A, B, "EchoRequest"), icmp[0]);
    assert_eq!(icmp_type(&s, B, A, "EchoReply"), icmp[2] + icmp[3]);
}
