//! DNS without a proxy: a real dnsmasq in pod B answers pod A. The agent's
//! query names, answer codes and latencies must match what the client saw.
//! This file holds one test, so it runs alone: DNS deltas are exact.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use osprey_e2e::{
    agent::{self},
    dns::{self, Dnsmasq, a_query, query},
    exposition::{Sample, samples, sum},
    netns::PodPair,
    require, settle,
};
use simple_dns::{Packet, TYPE};

/// Sends an A query for `name` from pod A; returns (rcode, answers, client-side latency).
fn resolve(pair: &PodPair, name: &'static str, id: u16) -> (simple_dns::RCODE, usize, Duration) {
    let got = dns::resolve_udp(pair, vec![a_query(name, id)])[0];
    (got.rcode, got.answers, got.latency)
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
    // Three 250-byte strings: an answer of ~800 bytes.
    let big = format!("--txt-record=big.osprey.test,{0},{0},{0}", "x".repeat(250));
    let _dnsmasq = Dnsmasq::start(&pair, &[&big]);
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
    let (big_rcode, big_answers, big_bytes, big_latency) = match dns::resolve_udp(
        &pair,
        vec![query("big.osprey.test", 0x0a04, TYPE::TXT, true)],
    )[..]
    {
        [got] => (got.rcode, got.answers, got.bytes, got.latency),
        _ => unreachable!("one query, one answer"),
    };
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
