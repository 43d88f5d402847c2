//! A bridged node as a bridge CNI makes it (pods on a Linux bridge, IPv6
//! left on, ARP, neighbour discovery and MLD as the kernel does them, no
//! firewall): what the kernel frees there without a reason (multicast not
//! for a pod: `ip6_mc_input`) stays out of the drop families and is counted
//! apart with where it was freed, while real drops on the same bridge (UDP to
//! a closed port, a full socket receive buffer) count exactly.

use std::{
    io::{Read, Write},
    net::{IpAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    time::Duration,
};

use osprey_e2e::{
    agent,
    bridge::BridgedNode,
    exposition::{Sample, drops_touching, samples, sum},
    settle,
};

const SERVER_UDP: u16 = 7100;
const SERVER_TCP: u16 = 7101;
const CLOSED: u16 = 7102;
const SMALL_BUFFER: u16 = 7103;
const TTL_PORT: u16 = 7104;
const NO_ROUTE_PORT: u16 = 7105;
/// The kernel's reasons for a forwarded packet whose TTL ran out, and for
/// one with no route (`enum skb_drop_reason`).
const TTL_EXPIRED: &str = "IP_INHDR";
const NO_ROUTE: &str = "IP_INNOROUTES";

/// Ordinary traffic from pod `from` to the server pod (0): UDP echoed back,
/// and TCP requests answered, `n` of each.
fn ordinary(node: &BridgedNode, from: usize, n: usize) {
    let server = node.ips[0];
    node.pods[from]
        .run(move || {
            let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
            udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 64];
            for _ in 0..n {
                udp.send_to(b"ping", (server, SERVER_UDP)).unwrap();
                udp.recv_from(&mut buf).expect("the UDP echo");
                let mut tcp = TcpStream::connect((server, SERVER_TCP)).unwrap();
                tcp.write_all(b"GET / HTTP/1.1\r\nHost: s\r\n\r\n").unwrap();
                let mut answer = [0u8; 2];
                tcp.read_exact(&mut answer).expect("the TCP answer");
            }
        })
        .join()
        .unwrap();
}

/// The server pod's UDP echo and TCP answers (threads that end with the
/// test process).
fn serve(node: &BridgedNode) {
    node.pods[0].run(|| {
        let udp = UdpSocket::bind(("0.0.0.0", SERVER_UDP)).unwrap();
        let tcp = TcpListener::bind(("0.0.0.0", SERVER_TCP)).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], from);
            }
        });
        for conn in tcp.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut req = [0u8; 27];
            if conn.read_exact(&mut req).is_ok() {
                let _ = conn.write_all(b"ok");
            }
        }
    });
}

/// A UDP socket in pod 0 with the smallest receive buffer, never read; its
/// drop count from the pod's own `/proc/net/udp` (the socket's `drops`).
fn small_buffer(node: &BridgedNode) -> UdpSocket {
    node.pods[0]
        .run(|| {
            let s = UdpSocket::bind(("0.0.0.0", SMALL_BUFFER)).unwrap();
            let size: libc::c_int = 1;
            // SAFETY: setsockopt with a valid fd and an int option.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&raw const size).cast(),
                    size_of::<libc::c_int>() as u32,
                )
            };
            assert_eq!(rc, 0);
            s
        })
        .join()
        .unwrap()
}

fn socket_drops(node: &BridgedNode, port: u16) -> u64 {
    node.pods[0]
        .run(move || {
            let text = std::fs::read_to_string("/proc/thread-self/net/udp").unwrap();
            let local = format!(":{port:04X}");
            text.lines()
                .skip(1)
                .find(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|a| a.ends_with(&local))
                })
                .and_then(|l| l.split_whitespace().last()?.parse().ok())
                .expect("the socket in /proc/net/udp")
        })
        .join()
        .unwrap()
}

fn send(node: &BridgedNode, from: usize, port: u16, count: usize, size: usize) {
    send_to(node, from, node.ips[0], port, count, size, None);
}

fn send_to(
    node: &BridgedNode,
    from: usize,
    to: IpAddr,
    port: u16,
    count: usize,
    size: usize,
    ttl: Option<u32>,
) {
    node.pods[from]
        .run(move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            if let Some(ttl) = ttl {
                s.set_ttl(ttl).unwrap();
            }
            for _ in 0..count {
                s.send_to(&vec![7u8; size], (to, port)).unwrap();
            }
        })
        .join()
        .unwrap();
}

/// A flow's drops for one reason: (`osprey_flow_drops_total`,
/// `hubble_drop_total`).
fn drops(s: &[Sample], src: IpAddr, port: u16, reason: &str) -> (f64, f64) {
    let (src, dst) = (src.to_string(), port.to_string());
    (
        sum(
            s,
            "osprey_flow_drops_total",
            &[
                ("source_ip", &src),
                ("destination_port", &dst),
                ("reason", reason),
            ],
        ),
        sum(
            s,
            "hubble_drop_total",
            &[("source", &src), ("reason", reason), ("protocol", "UDP")],
        ),
    )
}

#[test]
fn a_bridged_node_shows_real_drops_only_and_counts_the_rest_apart() {
    let Some(agent) = agent::for_test_by_ip(&[]) else {
        return;
    };
    // Links come up with the agent watching: DAD, router solicitations
    // and MLD reports go to multicast groups the other pods have not joined.
    let node = BridgedNode::new("bd", "10.217.0", 4);
    let ours: Vec<IpAddr> = (0..4).flat_map(|i| node.addresses(i, 10)).collect();
    let link_local: Vec<IpAddr> = ours.iter().filter(|a| a.is_ipv6()).copied().collect();
    assert_eq!(
        link_local.len(),
        4,
        "each pod has its IPv6 link-local: {ours:?}"
    );
    let ours_text: Vec<String> = ours.iter().map(ToString::to_string).collect();

    serve(&node);
    std::thread::sleep(Duration::from_millis(300));
    for from in 1..4 {
        ordinary(&node, from, 10);
    }

    // Real drops on the same bridge: no socket on a closed UDP port, and a
    // receive buffer that is full.
    const CLOSED_SENT: usize = 25;
    send(&node, 1, CLOSED, CLOSED_SENT, 100);
    let _held = small_buffer(&node);
    send(&node, 2, SMALL_BUFFER, 200, 1000);
    let full = socket_drops(&node, SMALL_BUFFER);
    assert!(full > 0, "the small buffer overflowed");
    // And at the node, forwarding: a TTL that runs out (the node routes
    // 10.216.0.0/24 to a link of its own), and a destination it has no
    // route to.
    let n = node.node();
    n.exec(&[
        "ip", "link", "add", "out0", "type", "veth", "peer", "name", "out1",
    ]);
    n.exec(&["ip", "addr", "add", "10.216.0.1/24", "dev", "out0"]);
    n.exec(&["ip", "link", "set", "out0", "up"]);
    n.exec(&["ip", "link", "set", "out1", "up"]);
    const FORWARDED_SENT: usize = 15;
    let beyond: IpAddr = "10.216.0.9".parse().unwrap();
    let nowhere: IpAddr = "10.215.0.9".parse().unwrap();
    send_to(&node, 3, beyond, TTL_PORT, FORWARDED_SENT, 100, Some(1));
    send_to(&node, 3, nowhere, NO_ROUTE_PORT, FORWARDED_SENT, 100, None);

    // Router solicitations repeat for ~8 s after link-up; MLD reports too.
    let not_drops = |agent: &agent::Agent| -> Vec<serde_json::Value> {
        link_local
            .iter()
            .flat_map(|ip| {
                agent.observe(&[
                    "--from-ip",
                    &ip.to_string(),
                    "--drop-reason",
                    "NOT_SPECIFIED",
                ])
            })
            .collect()
    };
    let (pod1, pod2, pod3) = (node.ips[1], node.ips[2], node.ips[3]);
    settle(20, || {
        let s = samples(&agent.scrape().1);
        let done = drops(&s, pod1, CLOSED, "NO_SOCKET").0 >= CLOSED_SENT as f64
            && drops(&s, pod2, SMALL_BUFFER, "SOCKET_RCVBUFF").0 >= full as f64
            && drops(&s, pod3, TTL_PORT, TTL_EXPIRED).0 >= FORWARDED_SENT as f64
            && drops(&s, pod3, NO_ROUTE_PORT, NO_ROUTE).0 >= FORWARDED_SENT as f64
            && !not_drops(&agent).is_empty();
        (done, ())
    });
    std::thread::sleep(Duration::from_secs(1));
    let s = samples(&agent.scrape().1);

    assert_eq!(
        drops(&s, pod1, CLOSED, "NO_SOCKET"),
        (CLOSED_SENT as f64, CLOSED_SENT as f64),
        "every datagram to the closed port, in both drop families"
    );
    assert_eq!(
        drops(&s, pod2, SMALL_BUFFER, "SOCKET_RCVBUFF"),
        (full as f64, full as f64),
        "every datagram the full buffer refused, as the socket itself counted them"
    );
    assert_eq!(
        drops(&s, pod3, TTL_PORT, TTL_EXPIRED),
        (FORWARDED_SENT as f64, FORWARDED_SENT as f64),
        "every datagram whose TTL ran out at the node"
    );
    assert_eq!(
        drops(&s, pod3, NO_ROUTE_PORT, NO_ROUTE),
        (FORWARDED_SENT as f64, FORWARDED_SENT as f64),
        "every datagram the node had no route for"
    );
    let mut counted = drops_touching(&s, &ours_text);
    counted.retain(|c| {
        ![
            "\"NO_SOCKET\"",
            "\"SOCKET_RCVBUFF\"",
            &format!("\"{TTL_EXPIRED}\""),
            &format!("\"{NO_ROUTE}\""),
        ]
        .iter()
        .any(|r| c.contains(r))
    });
    assert!(
        counted.is_empty(),
        "nothing else on the bridge counts as a drop: {counted:#?}"
    );

    // Set apart, not lost: the pods' multicast frees, with the function.
    let records = not_drops(&agent);
    assert!(
        !records.is_empty(),
        "the pods' NOT_SPECIFIED frees are in the records"
    );
    for r in &records {
        assert_eq!(r["drop_ignored"], true, "{r}");
        // Neighbour discovery is ICMPv6; MLD reports start with a
        // hop-by-hop header, so their protocol is Other.
        assert!(
            ["ICMPv6", "Other"].contains(&r["protocol"].as_str().unwrap()),
            "{r}"
        );
        assert!(
            r["destination_ip"].as_str().unwrap().starts_with("ff02::"),
            "{r}"
        );
        assert_eq!(r["drop_location"], "ip6_mc_input", "{r}");
    }
    assert!(
        sum(
            &s,
            "osprey_drops_ignored_total",
            &[("reason", "NOT_SPECIFIED"), ("location", "ip6_mc_input")]
        ) >= records
            .iter()
            .map(|r| r["packets"].as_f64().unwrap())
            .sum::<f64>(),
        "counted in osprey_drops_ignored_total by reason and location"
    );
}
