//! DNS without a proxy: a real dnsmasq in pod B answers pod A. The agent's
//! query names, answer codes and latencies must match what the client saw.
//! This file holds one test, so it runs alone: DNS deltas are exact.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use osprey_e2e::{
    agent::{self},
    exposition::{Sample, samples, sum},
    netns::PodPair,
    require, settle,
};
use simple_dns::{CLASS, Name, Packet, PacketFlag, Question, TYPE, rdata::OPT};

struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An A query for `name` with recursion desired, as wire bytes.
fn a_query(name: &'static str, id: u16) -> Vec<u8> {
    query(name, id, TYPE::A, false)
}

/// A `qtype` query for `name`; with `edns`, an OPT record offering 4096-byte
/// UDP answers (EDNS0), as resolvers send by default.
fn query(name: &'static str, id: u16, qtype: TYPE, edns: bool) -> Vec<u8> {
    let mut query = Packet::new_query(id);
    query.set_flags(PacketFlag::RECURSION_DESIRED);
    query.questions.push(Question::new(
        Name::new_unchecked(name),
        qtype.into(),
        CLASS::IN.into(),
        false,
    ));
    if edns {
        *query.opt_mut() = Some(OPT {
            opt_codes: Vec::new(),
            udp_packet_size: 4096,
            version: 0,
        });
    }
    query.build_bytes_vec().unwrap()
}

/// Sends an A query for `name` from pod A; returns (rcode, answers, client-side latency).
fn resolve(pair: &PodPair, name: &'static str, id: u16) -> (simple_dns::RCODE, usize, Duration) {
    let (rcode, answers, _, latency) = resolve_udp(pair, a_query(name, id));
    (rcode, answers, latency)
}

/// Sends a query from pod A over UDP; returns (rcode, answers, answer
/// bytes, client-side latency).
fn resolve_udp(pair: &PodPair, bytes: Vec<u8>) -> (simple_dns::RCODE, usize, usize, Duration) {
    let (a, b) = (pair.a_ip, pair.b_ip);
    pair.a
        .run(move || {
            let sock = UdpSocket::bind(SocketAddr::new(a, 0)).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut buf = [0u8; 4096];
            // dnsmasq may still be starting: retry until it answers.
            for _ in 0..50 {
                let start = Instant::now();
                sock.send_to(&bytes, SocketAddr::new(b, 53)).unwrap();
                if let Ok(n) = sock.recv(&mut buf) {
                    let elapsed = start.elapsed();
                    let reply = Packet::parse(&buf[..n]).unwrap();
                    return (reply.rcode(), reply.answers.len(), n, elapsed);
                }
            }
            panic!("dnsmasq never answered");
        })
        .join()
        .unwrap()
}

/// The same over TCP/53 (RFC 1035 4.2.2: a 2-byte length before each message).
fn resolve_tcp(
    pair: &PodPair,
    name: &'static str,
    id: u16,
) -> (simple_dns::RCODE, usize, Duration) {
    let (a, b) = (pair.a_ip, pair.b_ip);
    pair.a
        .run(move || {
            let mut conn = TcpStream::connect(SocketAddr::new(b, 53)).unwrap();
            assert_eq!(conn.local_addr().unwrap().ip(), a);
            let bytes = a_query(name, id);
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            let start = Instant::now();
            conn.write_all(&framed).unwrap();
            let mut len = [0u8; 2];
            conn.read_exact(&mut len).unwrap();
            let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
            conn.read_exact(&mut reply).unwrap();
            let elapsed = start.elapsed();
            let reply = Packet::parse(&reply).unwrap();
            (reply.rcode(), reply.answers.len(), elapsed)
        })
        .join()
        .unwrap()
}

fn total(s: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    sum(s, name, labels)
}

#[test]
fn dns_queries_answers_nxdomain_and_latency_match_the_client() {
    let dnsmasq_ok = std::path::Path::new("/usr/sbin/dnsmasq").exists();
    require!(
        dnsmasq_ok,
        "dnsmasq is not installed (cargo xtask setup installs dnsmasq-base)"
    );
    // Hubble context options: the client is the source of queries and of
    // responses alike.
    let Some(agent) = agent::for_test_by_ip(&[]) else {
        return;
    };
    let pair = PodPair::new("dn", "10.214.0.1", "10.214.0.2", 24);
    let _dnsmasq = Dnsmasq(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &pair.b.name,
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
            ])
            .args([
                "--conf-file=/dev/null",
                "--pid-file=",
                "--user=root",
                "--bind-interfaces",
            ])
            .args([
                "--listen-address=10.214.0.2",
                "--local=/osprey.test/",
                "--address=/web.osprey.test/10.9.9.9",
                // Three 250-byte strings: an answer of ~800 bytes.
                &format!("--txt-record=big.osprey.test,{0},{0},{0}", "x".repeat(250)),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dnsmasq"),
    );
    // Wait until dnsmasq answers (its first answer may take a few tries),
    // then count from a clean snapshot.
    resolve(&pair, "warmup.osprey.test", 0x0a00);
    std::thread::sleep(Duration::from_millis(600));
    let before = samples(&agent.scrape().1);

    let (ok_rcode, ok_answers, ok_latency) = resolve(&pair, "web.osprey.test", 0x0a01);
    let (nx_rcode, nx_answers, _) = resolve(&pair, "missing.osprey.test", 0x0a02);
    assert_eq!((ok_rcode, ok_answers), (simple_dns::RCODE::NoError, 1));
    assert_eq!((nx_rcode, nx_answers), (simple_dns::RCODE::NameError, 0));
    let (tcp_rcode, tcp_answers, tcp_latency) = resolve_tcp(&pair, "web.osprey.test", 0x0a03);
    assert_eq!((tcp_rcode, tcp_answers), (simple_dns::RCODE::NoError, 1));
    // Past the classic 512 bytes, over UDP with EDNS0.
    let (big_rcode, big_answers, big_bytes, big_latency) =
        resolve_udp(&pair, query("big.osprey.test", 0x0a04, TYPE::TXT, true));
    assert_eq!((big_rcode, big_answers), (simple_dns::RCODE::NoError, 1));
    assert!(big_bytes > 512, "the TXT answer is {big_bytes} bytes");

    let delta = |s: &[Sample], name: &str, labels: &[(&str, &str)]| {
        total(s, name, labels) - total(&before, name, labels)
    };
    let s = settle(10, || {
        let s = samples(&agent.scrape().1);
        (delta(&s, "hubble_dns_responses_total", &[]) >= 4.0, s)
    });
    assert_eq!(
        delta(
            &s,
            "hubble_dns_responses_total",
            &[("rcode", "No Error"), ("qtypes", "TXT")]
        ),
        1.0,
        "the long answer, matched to its query"
    );
    assert_eq!(
        delta(&s, "osprey_dns_malformed_packets_total", &[]),
        0.0,
        "nothing malformed"
    );
    // Two over UDP, one over TCP.
    assert_eq!(
        delta(&s, "hubble_dns_queries_total", &[("qtypes", "A")]),
        3.0
    );
    assert_eq!(
        delta(
            &s,
            "hubble_dns_responses_total",
            &[
                ("rcode", "No Error"),
                ("qtypes", "A"),
                ("ips_returned", "1")
            ]
        ),
        2.0
    );
    assert_eq!(
        delta(
            &s,
            "hubble_dns_responses_total",
            &[("rcode", "Non-Existent Domain"), ("ips_returned", "0")]
        ),
        1.0
    );
    let (client, server) = (pair.a_ip.to_string(), pair.b_ip.to_string());
    let ends = [
        ("source", client.as_str()),
        ("destination", server.as_str()),
    ];
    assert_eq!(delta(&s, "hubble_dns_queries_total", &ends), 4.0);
    assert_eq!(delta(&s, "hubble_dns_responses_total", &ends), 4.0);
    // The kernel timestamps lie between the clients' sends and receives.
    let latency_sum = delta(
        &s,
        "osprey_dns_latency_seconds_sum",
        &[("rcode", "No Error")],
    );
    assert_eq!(
        delta(
            &s,
            "osprey_dns_latency_seconds_count",
            &[("rcode", "No Error")]
        ),
        3.0,
        "the UDP, the TCP and the long answer"
    );
    let clients = ok_latency + tcp_latency + big_latency;
    assert!(
        latency_sum > 0.0 && latency_sum <= clients.as_secs_f64(),
        "agent {latency_sum}s vs clients {clients:?}"
    );

    // observe shows the query name, the answer and the NXDOMAIN.
    let text = agent.observe_text(&["--port", "53", "--ip", "10.214.0.1"]);
    assert!(text.contains("DNS query web.osprey.test A"), "{text}");
    assert!(
        text.contains("DNS answer web.osprey.test A (No Error) 10.9.9.9"),
        "{text}"
    );
    assert!(
        text.contains("DNS answer missing.osprey.test A (Non-Existent Domain)"),
        "{text}"
    );
    // The TCP exchange is there too, under TCP.
    let text = agent.observe_text(&["--port", "53", "--protocol", "tcp", "--ip", "10.214.0.1"]);
    assert!(text.contains("DNS query web.osprey.test A"), "{text}");
    assert!(
        text.contains("DNS answer web.osprey.test A (No Error) 10.9.9.9"),
        "{text}"
    );
    assert!(!text.contains("missing.osprey.test"), "{text}");
}
