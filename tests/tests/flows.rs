//! Real probes, real kernel, real traffic between two network-namespace pods:
//! the agent's per-flow counters against what the generators sent and what the
//! veth interfaces counted.

use osprey_e2e::{
    agent::{self},
    cgroup::TestCgroup,
    eventually,
    exposition::{Sample, samples, sum},
    netns::{IFACE, PodPair},
    settle,
    traffic::{self, ip_header},
};

/// Per-packet IP+TCP header overhead bounds: 20 bytes of TCP header without
/// options up to 60 with the most options a segment can carry.
const TCP_HEADER_MIN: u64 = 20;
const TCP_HEADER_MAX: u64 = 60;
const UDP_HEADER: u64 = 8;

struct Flow<'a> {
    src: (&'a str, u16),
    dst: (&'a str, u16),
    protocol: &'a str,
    direction: &'a str,
}

impl Flow<'_> {
    /// The series' labels, ports as the agent labels them by default.
    fn labels(&self) -> Vec<(&str, String)> {
        let (sp, dp) = if self.protocol.starts_with("ICMP") {
            (self.src.1, self.dst.1)
        } else {
            (
                traffic::metric_port(self.src.1, self.dst.1),
                traffic::metric_port(self.dst.1, self.src.1),
            )
        };
        vec![
            ("source_ip", self.src.0.to_owned()),
            ("source_port", sp.to_string()),
            ("destination_ip", self.dst.0.to_owned()),
            ("destination_port", dp.to_string()),
            ("protocol", self.protocol.to_owned()),
            ("direction", self.direction.to_owned()),
        ]
    }

    fn counters(&self, s: &[Sample]) -> (u64, u64) {
        let owned = self.labels();
        let want: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        (
            sum(s, "osprey_flow_bytes_total", &want) as u64,
            sum(s, "osprey_flow_packets_total", &want) as u64,
        )
    }
}

/// TCP both ways: each direction is seen leaving one pod (egress) and entering
/// the other (ingress), with identical counts; packets equal what the veth
/// interfaces counted; bytes are the payload plus 40..80 (v4) / 60..100 (v6)
/// header bytes per packet.
fn tcp_matches_ground_truth(tag: &str, a_ip: &str, b_ip: &str, prefix: u8) {
    let Some(agent) = agent::for_test(&["--drain-interval-ms", "200"]) else {
        return;
    };
    let pair = PodPair::new(tag, a_ip, b_ip, prefix);
    let (a_ip, b_ip) = (pair.a_ip.to_string(), pair.b_ip.to_string());
    // Ground truth from the interfaces: packets A handed to the veth (sent or
    // dropped by it) and packets B's side received; and the reverse.
    let sent = |ns: &osprey_e2e::netns::Netns| {
        ns.counter(IFACE, "tx_packets") + ns.counter(IFACE, "tx_dropped")
    };
    let received = |ns: &osprey_e2e::netns::Netns| ns.counter(IFACE, "rx_packets");
    let before = (
        sent(&pair.a),
        received(&pair.b),
        sent(&pair.b),
        received(&pair.a),
    );

    let x = traffic::tcp(&pair, 5201, 1_000_000, 300_000);
    let a_tx = sent(&pair.a) - before.0;
    let b_rx = received(&pair.b) - before.1;
    let b_tx = sent(&pair.b) - before.2;
    let a_rx = received(&pair.a) - before.3;

    let a_to_b = |direction| Flow {
        src: (&a_ip, x.client_port),
        dst: (&b_ip, x.server_port),
        protocol: "TCP",
        direction,
    };
    let b_to_a = |direction| Flow {
        src: (&b_ip, x.server_port),
        dst: (&a_ip, x.client_port),
        protocol: "TCP",
        direction,
    };
    // Counters only grow towards the truth: wait until a drain has caught up.
    let s = settle(15, || {
        let s = samples(&agent.scrape().1);
        let done = a_to_b("egress").counters(&s).1 >= a_tx
            && b_to_a("egress").counters(&s).1 >= b_tx
            && a_to_b("ingress").counters(&s).1 >= b_rx
            && b_to_a("ingress").counters(&s).1 >= a_rx;
        (done, s)
    });
    let hdr = ip_header(&pair);
    // Payload on the wire: at least what the application wrote (every byte got
    // through once), at most that plus what TCP retransmitted (TCP_INFO).
    for (flow, payload, resent, wire_packets) in [
        (a_to_b("egress"), x.a_to_b as u64, x.a_retrans_bytes, a_tx),
        (a_to_b("ingress"), x.a_to_b as u64, x.a_retrans_bytes, b_rx),
        (b_to_a("egress"), x.b_to_a as u64, x.b_retrans_bytes, b_tx),
        (b_to_a("ingress"), x.b_to_a as u64, x.b_retrans_bytes, a_rx),
    ] {
        let (bytes, packets) = flow.counters(&s);
        assert_eq!(
            packets, wire_packets,
            "{} {}: packets vs veth counter",
            flow.src.0, flow.direction
        );
        let (low, high) = (
            payload + packets * (hdr + TCP_HEADER_MIN),
            payload + resent + packets * (hdr + TCP_HEADER_MAX),
        );
        assert!(
            (low..=high).contains(&bytes),
            "{} {}: {bytes} bytes not in [{low}, {high}] for {payload} payload (+{resent} resent) in {packets} packets",
            flow.src.0,
            flow.direction
        );
    }
}

/// UDP both ways, counted exactly: datagrams × (payload + UDP + IP header).
fn udp_matches_ground_truth(tag: &str, a_ip: &str, b_ip: &str, prefix: u8) {
    let Some(agent) = agent::for_test(&["--drain-interval-ms", "200"]) else {
        return;
    };
    let pair = PodPair::new(tag, a_ip, b_ip, prefix);
    let (a_ip, b_ip) = (pair.a_ip.to_string(), pair.b_ip.to_string());
    let x = traffic::udp(&pair, 5353, (300, 1000), (120, 1400));
    let hdr = ip_header(&pair);
    let expect_ab = (
        x.a_to_b.0 as u64 * (x.a_to_b.1 as u64 + UDP_HEADER + hdr),
        x.a_to_b.0 as u64,
    );
    let expect_ba = (
        x.b_to_a.0 as u64 * (x.b_to_a.1 as u64 + UDP_HEADER + hdr),
        x.b_to_a.0 as u64,
    );
    let flows = [
        (
            Flow {
                src: (&a_ip, x.a_port),
                dst: (&b_ip, x.b_port),
                protocol: "UDP",
                direction: "egress",
            },
            expect_ab,
        ),
        (
            Flow {
                src: (&a_ip, x.a_port),
                dst: (&b_ip, x.b_port),
                protocol: "UDP",
                direction: "ingress",
            },
            expect_ab,
        ),
        (
            Flow {
                src: (&b_ip, x.b_port),
                dst: (&a_ip, x.a_port),
                protocol: "UDP",
                direction: "egress",
            },
            expect_ba,
        ),
        (
            Flow {
                src: (&b_ip, x.b_port),
                dst: (&a_ip, x.a_port),
                protocol: "UDP",
                direction: "ingress",
            },
            expect_ba,
        ),
    ];
    let s = eventually(15, "UDP flows to be drained", || {
        let s = samples(&agent.scrape().1);
        flows
            .iter()
            .all(|(f, (_, packets))| f.counters(&s).1 >= *packets)
            .then_some(s)
    });
    for (flow, expected) in &flows {
        assert_eq!(
            flow.counters(&s),
            *expected,
            "{} {} (bytes, packets)",
            flow.src.0,
            flow.direction
        );
    }
}

#[test]
fn tcp_ipv4_bytes_and_packets_match_ground_truth() {
    tcp_matches_ground_truth("t4", "10.201.0.1", "10.201.0.2", 24);
}

#[test]
fn tcp_ipv6_bytes_and_packets_match_ground_truth() {
    tcp_matches_ground_truth("t6", "fd00:201::1", "fd00:201::2", 64);
}

#[test]
fn udp_ipv4_bytes_and_packets_are_exact() {
    udp_matches_ground_truth("u4", "10.202.0.1", "10.202.0.2", 24);
}

#[test]
fn udp_ipv6_bytes_and_packets_are_exact() {
    udp_matches_ground_truth("u6", "fd00:202::1", "fd00:202::2", 64);
}

/// Two client sockets of one pod sending to one server port share a series
/// (`flow_ports = "server"`, the default): their ephemeral ports are
/// labelled 0, and the series holds exactly what both sent.
#[test]
fn clients_ephemeral_ports_fold_into_one_series() {
    let Some(agent) = agent::for_test(&["--drain-interval-ms", "200"]) else {
        return;
    };
    let pair = PodPair::new("ep", "10.217.0.1", "10.217.0.2", 24);
    let first = traffic::udp_send(&pair, 7100, 30, 100);
    let second = traffic::udp_send(&pair, 7100, 20, 100);
    assert_ne!(first, second);
    let a = pair.a_ip.to_string();
    let series = |s: &[Sample], port: &str, metric: &str| {
        sum(
            s,
            metric,
            &[
                ("source_ip", &a),
                ("source_port", port),
                ("destination_port", "7100"),
                ("direction", "egress"),
            ],
        ) as u64
    };
    let s = settle(15, || {
        let s = samples(&agent.scrape().1);
        (series(&s, "0", "osprey_flow_packets_total") >= 50, s)
    });
    assert_eq!(series(&s, "0", "osprey_flow_packets_total"), 50);
    assert_eq!(
        series(&s, "0", "osprey_flow_bytes_total"),
        50 * (100 + UDP_HEADER + ip_header(&pair))
    );
    for port in [first, second] {
        assert_eq!(
            series(&s, &port.to_string(), "osprey_flow_packets_total"),
            0,
            "no series per ephemeral port"
        );
    }
}

/// A tiny flow map and many new flows inside one drain interval: the flows
/// that did not fit are counted as lost, never silently dropped. The probes
/// watch only a cgroup of the test's own, whose one process sends the flows,
/// so every packet they see is one the test sent: counted and lost add up to
/// exactly what it sent.
#[test]
fn full_flow_map_counts_lost_packets() {
    osprey_e2e::require!(
        osprey_e2e::is_root(),
        "root is needed to load eBPF and create network namespaces"
    );
    let cg = TestCgroup::new("mapfull");
    let watched = cg.v2_dir().display().to_string();
    let Some(agent) = agent::for_test(&[
        "--drain-interval-ms",
        "3000",
        "--flow-map-entries",
        "8",
        "--bpf-map-details",
        "true",
        "--cgroup",
        &watched,
    ]) else {
        return;
    };
    let pair = PodPair::new("mf", "10.203.0.1", "10.203.0.2", 24);
    let lost = |s: &[Sample]| {
        sum(
            s,
            "osprey_flow_lost_packets_total",
            &[("reason", "map_full")],
        ) as u64
    };
    let kernel_lost = |s: &[Sample]| {
        sum(
            s,
            "hubble_lost_events_total",
            &[("source", "perf_event_ring_buffer")],
        ) as u64
    };
    let probes_lost = |s: &[Sample]| sum(s, "osprey_probe_lost_events_total", &[]) as u64;
    let first = samples(&agent.scrape().1);
    let before = (lost(&first), kernel_lost(&first), probes_lost(&first));
    // The agent reports the maps it was given, with their kernel memory:
    // an 8-entry shared flow map holds 8 elements (+ a spare per CPU) of
    // 48 + 48 + 64 bytes, well under a page of the default's 11 MiB.
    for map in ["FLOWS_0", "FLOWS_1"] {
        let want = [("map", map)];
        assert_eq!(
            sum(&first, "osprey_bpf_map_entries_max", &want),
            8.0,
            "{map}"
        );
        let bytes = sum(&first, "osprey_bpf_map_memory_bytes", &want);
        assert!((1.0..65_536.0).contains(&bytes), "{map}: {bytes} bytes");
    }
    const FLOWS: u16 = 200;
    const SIZE: u64 = 100;
    traffic::udp_fanout_from(&cg, &pair, 20_000, FLOWS, SIZE as usize);
    let a_ip = pair.a_ip.to_string();
    let counted = |s: &[Sample]| {
        sum(
            s,
            "osprey_flow_packets_total",
            &[("source_ip", &a_ip), ("direction", "egress")],
        ) as u64
    };
    // Every datagram is either in a's egress series or lost, once drained.
    let s = settle(15, || {
        let s = samples(&agent.scrape().1);
        (counted(&s) + lost(&s) - before.0 >= u64::from(FLOWS), s)
    });
    let counted = counted(&s);
    let lost_packets = lost(&s) - before.0;
    assert!(
        counted < u64::from(FLOWS),
        "only 8 entries, yet {counted} of {FLOWS} flows counted"
    );
    assert_eq!(
        counted + lost_packets,
        u64::from(FLOWS),
        "{counted} counted + {lost_packets} lost vs {FLOWS} datagrams sent"
    );
    let lost_bytes = sum(
        &s,
        "osprey_flow_lost_bytes_total",
        &[("reason", "map_full")],
    ) as u64;
    assert_eq!(
        lost_bytes,
        lost_packets * (SIZE + UDP_HEADER + ip_header(&pair)),
        "lost bytes for {lost_packets} lost datagrams of {SIZE} bytes"
    );
    // Hubble's family counts the same loss: the datagrams the test sent that
    // were not counted, with whatever the event probes (which watch the whole
    // host) lost meanwhile.
    let kernel = kernel_lost(&s) - before.1;
    let probes = probes_lost(&s) - before.2;
    assert_eq!(
        kernel,
        u64::from(FLOWS) - counted + probes,
        "hubble_lost_events_total{{source=\"perf_event_ring_buffer\"}}: {FLOWS} sent - {counted} counted + {probes} lost by the event probes"
    );
}

/// ICMP echo: `ping -c 5 -s 100` from pod A. Each request and each reply is
/// 100 bytes of payload + 8 of ICMP header + the IP header, counted exactly
/// where a socket sees them: the request leaving A's ping socket, the reply
/// entering it. (The ports of an ICMP flow are its type and code.)
fn icmp_echo_is_exact(tag: &str, a_ip: &str, b_ip: &str, prefix: u8, family: (&str, &str, &str)) {
    let Some(agent) = agent::for_test(&["--drain-interval-ms", "200"]) else {
        return;
    };
    let pair = PodPair::new(tag, a_ip, b_ip, prefix);
    let (protocol, request, reply) = family;
    const COUNT: u64 = 5;
    const SIZE: u64 = 100;
    pair.a
        .exec(&["ping", "-c", "5", "-i", "0.2", "-s", "100", "-W", "1", b_ip]);
    let expected = (COUNT * (SIZE + 8 + ip_header(&pair)), COUNT);
    let (a, b) = (pair.a_ip.to_string(), pair.b_ip.to_string());
    let req_type: u16 = request.parse().unwrap();
    let rep_type: u16 = reply.parse().unwrap();
    let flows = [
        Flow {
            src: (&a, req_type),
            dst: (&b, 0),
            protocol,
            direction: "egress",
        },
        Flow {
            src: (&b, rep_type),
            dst: (&a, 0),
            protocol,
            direction: "ingress",
        },
    ];
    let s = settle(10, || {
        let s = samples(&agent.scrape().1);
        (flows.iter().all(|f| f.counters(&s).1 >= COUNT), s)
    });
    for flow in &flows {
        assert_eq!(
            flow.counters(&s),
            expected,
            "{} {} {}",
            protocol,
            flow.src.0,
            flow.direction
        );
    }
}

#[test]
fn icmp_ipv4_echo_bytes_and_packets_are_exact() {
    icmp_echo_is_exact("i4", "10.211.0.1", "10.211.0.2", 24, ("ICMPv4", "8", "0"));
}

#[test]
fn icmp_ipv6_echo_bytes_and_packets_are_exact() {
    icmp_echo_is_exact(
        "i6",
        "fd00:211::1",
        "fd00:211::2",
        64,
        ("ICMPv6", "128", "129"),
    );
}

/// Thousands of new flows inside one drain interval are drained whole: the
/// agent reads and deletes the kernel map in batches of 1,024 entries, so
/// 3,000 flows take several batch calls, and every packet of every one is
/// counted exactly once.
#[test]
fn thousands_of_flows_in_one_interval_are_all_counted() {
    let Some(agent) = agent::for_test(&["--drain-interval-ms", "3000"]) else {
        return;
    };
    let pair = PodPair::new("mb", "10.222.0.1", "10.222.0.2", 24);
    const FLOWS: u16 = 3000;
    traffic::udp_fanout(&pair, 20_000, FLOWS, 60);
    let a_ip = pair.a_ip.to_string();
    let counted = |s: &[Sample]| {
        sum(
            s,
            "osprey_flow_packets_total",
            &[
                ("source_ip", &a_ip),
                ("direction", "egress"),
                ("protocol", "UDP"),
            ],
        ) as u64
    };
    // Until every flow is in (a drain may fall inside the fan-out), or 15 s.
    let s = settle(15, || {
        let s = samples(&agent.scrape().1);
        (counted(&s) >= u64::from(FLOWS), s)
    });
    assert_eq!(
        counted(&s),
        u64::from(FLOWS),
        "one datagram per flow, each counted once"
    );
    let series = s
        .iter()
        .filter(|x| {
            x.name == "osprey_flow_packets_total"
                && x.labels.get("source_ip") == Some(&a_ip)
                && x.labels.get("direction").map(String::as_str) == Some("egress")
        })
        .count();
    assert_eq!(series, usize::from(FLOWS), "a series per destination port");
    assert_eq!(
        sum(&s, "osprey_flow_lost_packets_total", &[]),
        0.0,
        "none lost"
    );
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for the calling thread (0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0,
            "pinning to CPU {cpu}"
        );
    }
}

/// Two CPUs send at once through one socket — a thread pinned to each — on
/// one flow and on 64 more (each thread cycles through the same ports), so
/// both CPUs add to the same entries of the shared flow map, while the agent
/// drains every 100 ms. Every packet and byte is counted: against what the
/// threads sent and what the veth transmitted (or dropped).
#[test]
fn two_cpus_on_the_same_flows_are_counted_exactly() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    osprey_e2e::require!(cpus >= 2, "one CPU: no contention to test");
    let Some(agent) = agent::for_test(&["--drain-interval-ms", "100"]) else {
        return;
    };
    let pair = PodPair::new("cc", "10.223.0.1", "10.223.0.2", 24);
    const SAME: u16 = 30_000;
    const OTHERS: u16 = 64;
    const PER_PORT: usize = 100;
    const SIZE: usize = 32;
    // Per thread: half to the one flow, half spread over the others.
    const PER_THREAD: usize = 2 * OTHERS as usize * PER_PORT;
    let tx = |stat| pair.a.counter(IFACE, stat);
    let before = [tx("tx_packets"), tx("tx_dropped"), tx("tx_bytes")];
    let (a_ip, b_ip) = (pair.a_ip, pair.b_ip);
    pair.a
        .run(move || {
            let sock = std::sync::Arc::new(std::net::UdpSocket::bind((a_ip, 0)).unwrap());
            let threads: Vec<_> = (0..2)
                .map(|cpu| {
                    let sock = sock.clone();
                    std::thread::spawn(move || {
                        pin_to(cpu);
                        for i in 0..PER_THREAD {
                            let port = if i % 2 == 0 {
                                SAME
                            } else {
                                SAME + 1 + (i / 2 % OTHERS as usize) as u16
                            };
                            sock.send_to(&[7u8; SIZE], (b_ip, port)).unwrap();
                        }
                    })
                })
                .collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
        })
        .join()
        .unwrap();
    let sent = 2 * PER_THREAD as u64;
    let wire = SIZE as u64 + UDP_HEADER + 20;
    let after = [tx("tx_packets"), tx("tx_dropped"), tx("tx_bytes")];
    let [packets, dropped, bytes] = [0, 1, 2].map(|i| after[i] - before[i]);
    // Only the test's datagrams left A (static neighbours, no IPv6): the
    // veth transmitted or dropped each, frames with a 14-byte Ethernet header.
    assert_eq!(packets + dropped, sent, "the veth saw every datagram");
    assert_eq!(bytes, packets * (wire + 14), "the veth's bytes");

    let a = a_ip.to_string();
    let port_counts = |s: &[Sample], port: u16| {
        let port = port.to_string();
        let want = [
            ("source_ip", a.as_str()),
            ("direction", "egress"),
            ("destination_port", port.as_str()),
        ];
        (
            sum(s, "osprey_flow_packets_total", &want) as u64,
            sum(s, "osprey_flow_bytes_total", &want) as u64,
        )
    };
    let s = settle(15, || {
        let s = samples(&agent.scrape().1);
        let all = (SAME..=SAME + OTHERS)
            .map(|p| port_counts(&s, p).0)
            .sum::<u64>();
        (all >= sent, s)
    });
    let same = (PER_THREAD as u64, PER_THREAD as u64 * wire);
    assert_eq!(port_counts(&s, SAME), same, "the one flow (packets, bytes)");
    for port in SAME + 1..=SAME + OTHERS {
        let each = 2 * PER_PORT as u64;
        assert_eq!(port_counts(&s, port), (each, each * wire), "port {port}");
    }
    assert_eq!(
        sum(&s, "osprey_flow_lost_packets_total", &[]),
        0.0,
        "none lost"
    );
}
