//! TCP connection outcomes from real connections between two pods, against
//! what `connect()` itself returned: established, refused (no listener),
//! timed out (SYNs dropped by a firewall rule), reset (peer aborts).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::mpsc,
    time::Duration,
};

use osprey_e2e::{
    agent::{self},
    exposition::{Sample, samples, sum},
    netns::PodPair,
    settle,
};

fn outcome(s: &[Sample], a: &str, b: &str, port: u16, outcome: &str) -> u64 {
    let port = port.to_string();
    sum(
        s,
        "osprey_tcp_connections_total",
        &[
            ("source_ip", a),
            ("destination_ip", b),
            ("destination_port", &port),
            ("outcome", outcome),
        ],
    ) as u64
}

#[test]
fn connection_outcomes_match_what_connect_returned() {
    let Some(agent) = agent::for_test(&["--drain-interval-ms", "200"]) else {
        return;
    };
    let pair = PodPair::new("cn", "10.212.0.1", "10.212.0.2", 24);
    // One SYN retry: a connect to a silent port gives up after about 3 s.
    pair.a
        .exec(&["sysctl", "-q", "-w", "net.ipv4.tcp_syn_retries=1"]);
    pair.b.exec(&[
        "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "7402", "--syn", "-j", "DROP",
    ]);
    let b_ip = pair.b_ip;

    // A listener on 7400 (accepts, then waits for EOF) and one on 7403 (aborts with RST).
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = pair.b.run(move || {
        let ok = TcpListener::bind(SocketAddr::new(b_ip, 7400)).unwrap();
        let abort = TcpListener::bind(SocketAddr::new(b_ip, 7403)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = ok.accept().unwrap();
        let _ = conn.read(&mut [0u8; 1]);
        // Reset only after the client has written: a RST sent right after
        // accept can reach the client before its connect() has returned.
        let (mut conn, _) = abort.accept().unwrap();
        let _ = conn.read(&mut [0u8; 1]);
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on an open socket with a correctly sized linger.
        unsafe {
            libc::setsockopt(
                conn.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        drop(conn); // close with linger 0: RST
    });
    ready_rx.recv().unwrap();
    let results = pair
        .a
        .run(move || {
            let connect = |port| {
                TcpStream::connect_timeout(&SocketAddr::new(b_ip, port), Duration::from_secs(10))
            };
            let established = connect(7400).map(drop);
            let refused = connect(7401).map(drop);
            let timed_out = connect(7402).map(drop);
            // With one SYN retry, a SYN lost to a full backlog under the other
            // tests' traffic fails this connect; that is not under test here.
            let mut reset_conn = connect(7403)
                .or_else(|_| connect(7403))
                .unwrap_or_else(|e| panic!("connect to 7403: {e}"));
            reset_conn.write_all(b"x").unwrap();
            let reset = reset_conn.read(&mut [0u8; 1]);
            (established, refused, timed_out, reset)
        })
        .join()
        .unwrap();
    server.join().unwrap();
    assert!(results.0.is_ok());
    assert_eq!(
        results.1.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    assert_eq!(results.2.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(
        results.3.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionReset
    );

    let (a, b) = (pair.a_ip.to_string(), pair.b_ip.to_string());
    let want = [
        (7400, "established", 1),
        (7401, "refused", 1),
        (7402, "timeout", 1),
        (7403, "reset", 1),
    ];
    let s = settle(10, || {
        let s = samples(&agent.scrape().1);
        (
            want.iter()
                .all(|(p, o, n)| outcome(&s, &a, &b, *p, o) >= *n),
            s,
        )
    });
    // The outcomes come from a tracing program (`tcp_state` on
    // sock:inet_sock_set_state). The kernel skips such a run when the hook
    // fires while another tracing program runs on that CPU (a SYN
    // retransmit timer's softirq on the exit of an interrupt that came
    // inside one), and counts it: the agent exports it. Such a loss is
    // reported, never hidden: an outcome short by at most the missed runs.
    let missed = sum(
        &s,
        "osprey_bpf_program_missed_runs_total",
        &[("program", "tcp_state")],
    ) as u64;
    let ours: Vec<_> = s
        .iter()
        .filter(|x| {
            x.name == "osprey_tcp_connections_total" && x.labels.get("source_ip") == Some(&a)
        })
        .collect();
    let mut short = 0;
    for (port, name, n) in want {
        let got = outcome(&s, &a, &b, port, name);
        assert!(
            got <= n,
            "{name} to port {port}: {got} outcomes for one connect ({ours:?})"
        );
        short += n - got;
    }
    assert!(
        short <= missed,
        "{short} connect outcomes missing, {missed} runs of tcp_state missed: {ours:?}"
    );
    if short > 0 {
        eprintln!("{short} outcomes lost to missed runs of tcp_state, counted ({missed})");
        return;
    }
    // Exactly one outcome per failed connect.
    for port in [7401, 7402] {
        let all: u64 = ["established", "refused", "timeout", "reset", "error"]
            .iter()
            .map(|o| outcome(&s, &a, &b, port, o))
            .sum();
        assert_eq!(all, 1, "port {port}");
    }
}
