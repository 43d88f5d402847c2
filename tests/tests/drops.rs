//! Kernel drops with their reason, and TCP retransmissions, on the right flow:
//! firewall rules inside a namespace make both happen for real.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::mpsc,
    time::Duration,
};

use osprey_e2e::{
    agent::{self, Agent},
    exposition::{Sample, samples, sum},
    netns::PodPair,
    settle,
    traffic::{self, retransmitted_segments},
};

fn agent_or_skip() -> Option<Agent> {
    // Hubble context options: without pods, "pod|ip" falls back to the address.
    agent::for_test(&[
        "--drain-interval-ms",
        "200",
        "--hubble-source-context",
        "pod|ip",
        "--hubble-destination-context",
        "ip",
    ])
}

fn drop_count(
    s: &[Sample],
    src: (&str, u16),
    dst: (&str, u16),
    protocol: &str,
    reason: &str,
) -> u64 {
    let sp = traffic::metric_port(src.1, dst.1).to_string();
    let dp = traffic::metric_port(dst.1, src.1).to_string();
    sum(
        s,
        "osprey_flow_drops_total",
        &[
            ("source_ip", src.0),
            ("source_port", &sp),
            ("destination_ip", dst.0),
            ("destination_port", &dp),
            ("protocol", protocol),
            ("reason", reason),
        ],
    ) as u64
}

fn netfilter_drop_is_counted_on_its_flow(tag: &str, a: &str, b: &str, prefix: u8, iptables: &str) {
    let Some(agent) = agent_or_skip() else { return };
    let pair = PodPair::new(tag, a, b, prefix);
    pair.b.exec(&[
        iptables, "-A", "INPUT", "-p", "udp", "--dport", "7000", "-j", "DROP",
    ]);
    const SENT: u64 = 40;
    let src_port = traffic::udp_send(&pair, 7000, SENT as usize, 200);
    let (a, b) = (pair.a_ip.to_string(), pair.b_ip.to_string());
    // Seen leaving A's socket, never entering B's.
    let sp = traffic::metric_port(src_port, 7000).to_string();
    let flow = |s: &[Sample], direction| {
        sum(
            s,
            "osprey_flow_packets_total",
            &[
                ("source_ip", a.as_str()),
                ("source_port", sp.as_str()),
                ("direction", direction),
            ],
        ) as u64
    };
    // Drops and flow packets live in different kernel maps: wait for both.
    let s = settle(15, || {
        let s = samples(&agent.scrape().1);
        (
            drop_count(&s, (&a, src_port), (&b, 7000), "UDP", "NETFILTER_DROP") >= SENT
                && flow(&s, "egress") >= SENT,
            s,
        )
    });
    assert_eq!(
        drop_count(&s, (&a, src_port), (&b, 7000), "UDP", "NETFILTER_DROP"),
        SENT,
        "every datagram the firewall dropped, on its flow, with the kernel's reason"
    );
    let hubble = [
        ("source", a.as_str()),
        ("destination", b.as_str()),
        ("reason", "NETFILTER_DROP"),
        ("protocol", "UDP"),
    ];
    assert_eq!(
        sum(&s, "hubble_drop_total", &hubble),
        SENT as f64,
        "hubble_drop_total{hubble:?}"
    );
    let mine: Vec<_> = s
        .iter()
        .filter(|x| x.name == "osprey_flow_packets_total" && x.labels.values().any(|v| *v == a))
        .collect();
    assert_eq!(flow(&s, "egress"), SENT, "A's flow series: {mine:?}");
    assert_eq!(flow(&s, "ingress"), 0, "A's flow series: {mine:?}");
}

#[test]
fn netfilter_drop_ipv4_counted_with_reason_on_the_flow() {
    netfilter_drop_is_counted_on_its_flow("d4", "10.206.0.1", "10.206.0.2", 24, "iptables");
}

#[test]
fn netfilter_drop_ipv6_counted_with_reason_on_the_flow() {
    netfilter_drop_is_counted_on_its_flow("d6", "fd00:206::1", "fd00:206::2", 64, "ip6tables");
}

/// An established stream whose packets are dropped for a while by a firewall
/// rule retransmits; the retransmissions are counted on that flow, never more
/// than the sender's own TCP_INFO says, and none on the reverse direction.
#[test]
fn retransmits_are_counted_on_the_stalled_flow() {
    let Some(agent) = agent_or_skip() else { return };
    let pair = PodPair::new("rt", "10.207.0.1", "10.207.0.2", 24);
    const PORT: u16 = 7100;
    const CHUNKS: usize = 40;
    const CHUNK: usize = 16 * 1024;
    let (b_ip, a_ip) = (pair.b_ip, pair.a_ip);
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = pair.b.run(move || {
        let listener = TcpListener::bind(SocketAddr::new(b_ip, PORT)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; CHUNKS * CHUNK];
        conn.read_exact(&mut buf)
            .expect("every byte arrives despite the outage");
    });
    ready_rx.recv().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let client = pair.a.run(move || {
        let mut conn = TcpStream::connect(SocketAddr::new(b_ip, PORT)).unwrap();
        started_tx.send(conn.local_addr().unwrap().port()).unwrap();
        for _ in 0..CHUNKS {
            conn.write_all(&[4u8; CHUNK]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        conn.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        retransmitted_segments(&conn)
    });
    let client_port = started_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let rule = ["INPUT", "-p", "tcp", "--dport", "7100", "-j", "DROP"];
    pair.b.exec(&[&["iptables", "-A"][..], &rule].concat());
    std::thread::sleep(Duration::from_millis(1500));
    pair.b.exec(&[&["iptables", "-D"][..], &rule].concat());
    server.join().unwrap();
    let retrans_segments = client.join().unwrap();
    assert!(
        retrans_segments > 0,
        "the outage must cause retransmissions"
    );

    let (a, b, cp, sp) = (
        a_ip.to_string(),
        b_ip.to_string(),
        traffic::metric_port(client_port, PORT).to_string(),
        PORT.to_string(),
    );
    let count = |s: &[Sample], src: (&str, &str), dst: (&str, &str)| {
        sum(
            s,
            "osprey_tcp_retransmits_total",
            &[
                ("source_ip", src.0),
                ("source_port", src.1),
                ("destination_ip", dst.0),
                ("destination_port", dst.1),
            ],
        ) as u64
    };
    let s = settle(10, || {
        let s = samples(&agent.scrape().1);
        (count(&s, (&a, &cp), (&b, &sp)) > 0, s)
    });
    let counted = count(&s, (&a, &cp), (&b, &sp));
    eprintln!("retransmits: counted {counted}, TCP_INFO total_retrans {retrans_segments}");
    assert!(
        (1..=retrans_segments).contains(&counted),
        "{counted} retransmits counted, sender's TCP_INFO says {retrans_segments} segments"
    );
    assert_eq!(
        count(&s, (&b, &sp), (&a, &cp)),
        0,
        "the receiver sent no data, so retransmitted none"
    );
    // The dropped segments were counted as drops with the firewall's reason.
    assert!(drop_count(&s, (&a, client_port), (&b, PORT), "TCP", "NETFILTER_DROP") > 0);
}

/// Connections between two pods that close the way HTTP clients do make the
/// kernel free skbs at teardown with QUEUE_PURGE. With `drop_reasons_ignored`
/// empty, these show as drops of the pods' own flows: exactly one per
/// connection (the server's FIN, still queued when the client's socket is
/// destroyed). By default (QUEUE_PURGE ignored) the same traffic is counted in
/// `osprey_drops_ignored_total` only: at least that many more there (the
/// family has no flow labels, so the host's other teardowns count too), none
/// on the pods' flows.
#[test]
fn teardown_frees_are_not_drops_unless_asked_for() {
    const CONNECTIONS: usize = 10;
    for (ignored, tag, a, b) in [
        (false, "tr", "10.221.0.1", "10.221.0.2"),
        (true, "tq", "10.220.0.1", "10.220.0.2"),
    ] {
        let mut args = vec!["--drain-interval-ms", "200"];
        if !ignored {
            args.extend(["--drop-reasons-ignored", ""]);
        }
        let Some(agent) = agent::for_test(&args) else {
            return;
        };
        let pair = PodPair::new(tag, a, b, 24);
        let ignored_total = |s: &[Sample]| {
            sum(
                s,
                "osprey_drops_ignored_total",
                &[("reason", "QUEUE_PURGE")],
            )
        };
        let on_pair = |s: &[Sample]| {
            [a, b]
                .iter()
                .map(|ip| {
                    sum(
                        s,
                        "osprey_flow_drops_total",
                        &[("source_ip", *ip), ("reason", "QUEUE_PURGE")],
                    )
                })
                .sum::<f64>()
        };
        // The pods' own teardown frees, from the flow records: an ignored
        // reason shows only to a filter that names it.
        let purged_records = |filter: &[&str]| -> f64 {
            [a, b]
                .iter()
                .flat_map(|ip| agent.observe(&[&["--from-ip", ip][..], filter].concat()))
                .filter(|r| r["drop_reason"] == "QUEUE_PURGE")
                .map(|r| {
                    assert_eq!(r["drop_ignored"].as_bool().unwrap_or(false), ignored, "{r}");
                    r["packets"].as_f64().unwrap()
                })
                .sum()
        };
        let before = ignored_total(&samples(&agent.scrape().1));
        traffic::request_then_close(&pair, 7300, CONNECTIONS);
        let expected = CONNECTIONS as f64;
        let s = settle(10, || {
            let s = samples(&agent.scrape().1);
            let seen = if ignored {
                purged_records(&["--drop-reason", "QUEUE_PURGE"]) >= expected
            } else {
                on_pair(&s) >= expected
            };
            (seen, s)
        });
        if ignored {
            assert_eq!(
                purged_records(&["--drop-reason", "QUEUE_PURGE"]),
                expected,
                "the pods' teardown frees, one per connection, as ignored drop records"
            );
            assert_eq!(
                purged_records(&[]),
                0.0,
                "shown only when their reason is asked for"
            );
            // Counted apart (a host-wide family: at least the pods' own).
            assert!(
                ignored_total(&s) - before >= expected,
                "teardown frees counted as ignored: {} more, {CONNECTIONS} connections",
                ignored_total(&s) - before
            );
            assert_eq!(on_pair(&s), 0.0, "and not as drops of the pods' flows");
            assert!(
                !s.iter().any(|x| x.name == "hubble_drop_total"
                    && x.labels.get("reason").map(String::as_str) == Some("QUEUE_PURGE")),
                "nor in hubble_drop_total"
            );
        } else {
            assert_eq!(
                on_pair(&s),
                expected,
                "without the default list, the same teardown shows as drops on the pods' flows: one per connection"
            );
            assert_eq!(purged_records(&[]), expected, "and as their drop records");
            assert_eq!(ignored_total(&s), 0.0);
        }
    }
}
