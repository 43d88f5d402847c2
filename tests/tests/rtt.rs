//! TCP RTT histogram against the sender's own smoothed RTT (TCP_INFO). A
//! token-bucket filter on pod A's interface makes a bulk transfer queue, so
//! its RTT climbs to tens of milliseconds: far above anything else on the
//! host (loopback scrapes are microseconds), so the samples it adds to the
//! high buckets are the test's own.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::mpsc,
};

use osprey_e2e::{
    agent::{self},
    exposition::{Sample, samples},
    netns::{IFACE, PodPair},
    settle,
};

/// Per-bucket counts (non-cumulative) keyed by log2 of the upper bound in µs.
fn buckets(s: &[Sample]) -> Vec<(u32, f64)> {
    let mut cumulative: Vec<(f64, f64)> = s
        .iter()
        .filter(|x| x.name == "osprey_tcp_rtt_seconds_bucket")
        .map(|x| {
            (
                x.labels["le"].parse::<f64>().unwrap_or(f64::INFINITY),
                x.value,
            )
        })
        .collect();
    cumulative.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut prev = 0.0;
    cumulative
        .into_iter()
        .map(|(le, c)| {
            let n = c - prev;
            prev = c;
            ((le * 1e6).log2().round() as u32, n)
        })
        .collect()
}

#[test]
fn rtt_histogram_holds_the_senders_smoothed_rtt() {
    let Some(agent) = agent::for_test(&["--drain-interval-ms", "200"]) else {
        return;
    };
    let pair = PodPair::new("rt", "10.213.0.1", "10.213.0.2", 24);
    pair.a.exec(&[
        "tc", "qdisc", "add", "dev", IFACE, "root", "tbf", "rate", "4mbit", "burst", "8kb",
        "latency", "400ms",
    ]);
    let before = buckets(&samples(&agent.scrape().1));

    let b_ip = pair.b_ip;
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = pair.b.run(move || {
        let listener = TcpListener::bind(SocketAddr::new(b_ip, 7500)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut all = vec![0u8; 600_000];
        conn.read_exact(&mut all).unwrap();
        conn.write_all(b"k").unwrap(); // everything arrived
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).unwrap();
        all.len() + rest.len()
    });
    ready_rx.recv().unwrap();
    // Send in chunks, sampling the socket's smoothed RTT (TCP_INFO) as it climbs.
    let (srtt_us, client_port, seen) = pair
        .a
        .run(move || {
            let mut conn = TcpStream::connect(SocketAddr::new(b_ip, 7500)).unwrap();
            let mut seen = Vec::new();
            for _ in 0..20 {
                conn.write_all(&[1u8; 30_000]).unwrap();
                seen.push(osprey_e2e::traffic::smoothed_rtt_us(&conn));
            }
            // Keep sampling while the queue drains, until the receiver has it all.
            conn.set_read_timeout(Some(std::time::Duration::from_millis(20)))
                .unwrap();
            let mut done = [0u8; 1];
            while conn.read(&mut done).is_err() {
                seen.push(osprey_e2e::traffic::smoothed_rtt_us(&conn));
            }
            let rtt = osprey_e2e::traffic::smoothed_rtt_us(&conn);
            conn.shutdown(std::net::Shutdown::Write).unwrap();
            (rtt, conn.local_addr().unwrap().port(), seen)
        })
        .join()
        .unwrap();
    assert_eq!(server.join().unwrap(), 600_000);
    assert!(
        srtt_us >= 8_000,
        "the queue should have raised the RTT, TCP_INFO says {srtt_us} µs"
    );

    // The bucket holding the sender's final smoothed RTT (bounds are 2^(i+1) µs).
    let bucket = 64 - u64::from(srtt_us).leading_zeros();
    let near = |b: &[(u32, f64)]| -> f64 {
        b.iter()
            .filter(|(log2, _)| (bucket.saturating_sub(1)..=bucket + 1).contains(log2))
            .map(|(_, n)| n)
            .sum()
    };
    let s = settle(10, || {
        let s = samples(&agent.scrape().1);
        (near(&buckets(&s)) > near(&before), s)
    });
    let added = near(&buckets(&s)) - near(&before);
    assert!(
        added >= 1.0,
        "no RTT samples near {srtt_us} µs (log2 bucket {bucket}) were added"
    );
    eprintln!("TCP_INFO srtt {srtt_us} µs; {added} samples added around bucket 2^{bucket} µs");

    // Per flow: the flow records of the sending socket carry its smoothed RTT
    // as last read in each interval.
    let out = std::process::Command::new(agent::binary().unwrap())
        .args([
            "observe",
            "--server",
            &agent.base_url,
            "-o",
            "json",
            "--port",
            &client_port.to_string(),
        ])
        .output()
        .unwrap();
    let per_flow: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["source_port"] == client_port && r["traffic_direction"] == "egress")
        .filter_map(|r| r["rtt_us"].as_u64())
        .collect();
    assert!(
        !per_flow.is_empty(),
        "flow records of the sender carry rtt_us"
    );
    // Each record's RTT lies within (a factor 2 of) the range the socket itself reported.
    let (low, high) = (
        u64::from(*seen.iter().min().unwrap()) / 2,
        u64::from(*seen.iter().max().unwrap()) * 2,
    );
    for rtt in &per_flow {
        assert!(
            (low..=high).contains(rtt),
            "per-flow RTT {rtt} µs outside [{low}, {high}] (TCP_INFO {seen:?})"
        );
    }
    assert!(per_flow.iter().any(|r| *r >= 8_000), "{per_flow:?}");
}
