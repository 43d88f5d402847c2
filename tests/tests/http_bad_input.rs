//! Bad HTTP on the wire, on port 80, on one connection between two pods:
//! garbage after a method token, binary data, a response nobody asked for,
//! an invalid traceparent, a header block longer than the capture. Each is
//! counted under its reason, at both sockets, exactly (this binary runs
//! alone, so the agent sees no other HTTP but its own scrapes, which parse);
//! the valid requests among them are paired with their own responses.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::mpsc,
    time::Duration,
};

use osprey_e2e::{
    agent,
    exposition::{samples, sum},
    netns::PodPair,
    settle,
};

fn unparsed(text: &str, reason: &str) -> f64 {
    sum(
        &samples(text),
        "osprey_http_unparsed_total",
        &[("reason", reason)],
    )
}

#[test]
fn bad_input_is_counted_by_reason_and_never_attributed_to_another_request() {
    let Some(agent) = agent::for_test(&["--drain-interval-ms", "200"]) else {
        return;
    };
    let (a, b) = ("10.233.0.1", "10.233.0.2");
    let pair = PodPair::new("hb", a, b, 24);
    let reasons = [
        "malformed",
        "response_without_request",
        "invalid_traceparent",
        "headers_truncated",
    ];
    let before = agent.scrape().1;
    let base: Vec<f64> = reasons.iter().map(|r| unparsed(&before, r)).collect();

    // The server answers each client message with the scripted bytes.
    let padding = "x".repeat(1800);
    let exchanges: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"GET \x00\x01\x02 garbage\r\n\r\n".to_vec(), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()),
        (b"GET \xff\xfe\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11".to_vec(), Vec::new()),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all".to_vec(), Vec::new()),
        (
            b"GET /ok HTTP/1.1\r\ntraceparent: 00-zz-01\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
        (
            format!("GET /big HTTP/1.1\r\nX-Pad: {padding}\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n").into_bytes(),
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
    ];
    let (ready_tx, ready_rx) = mpsc::channel();
    let b_ip = pair.b_ip;
    let script = exchanges.clone();
    let server = pair.b.run(move || {
        let listener = TcpListener::bind(SocketAddr::new(b_ip, 80)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_nodelay(true).unwrap();
        for (ask, answer) in script {
            let mut got = vec![0; ask.len()];
            conn.read_exact(&mut got).unwrap();
            assert_eq!(got, ask);
            if !answer.is_empty() {
                conn.write_all(&answer).unwrap();
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    pair.a
        .run(move || {
            let mut conn = TcpStream::connect(SocketAddr::new(b_ip, 80)).unwrap();
            conn.set_nodelay(true).unwrap();
            for (ask, answer) in exchanges {
                conn.write_all(&ask).unwrap();
                let mut got = vec![0; answer.len()];
                conn.read_exact(&mut got).unwrap();
                // Let each message be its own segment.
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .join()
        .unwrap();
    server.join().unwrap();

    // At both sockets: two malformed starts (garbage, binary after GET), one
    // unasked response, one invalid traceparent, one truncated header block.
    let want = [4.0, 2.0, 2.0, 2.0];
    let text = settle(10, || {
        let text = agent.scrape().1;
        let done = reasons
            .iter()
            .zip(&base)
            .zip(&want)
            .all(|((r, b), w)| unparsed(&text, r) - b >= *w);
        (done, text)
    });
    for ((r, b), w) in reasons.iter().zip(&base).zip(&want) {
        assert_eq!(
            unparsed(&text, r) - b,
            *w,
            "osprey_http_unparsed_total{{reason={r:?}}}"
        );
    }
    // The valid requests are paired with their own responses.
    let s = samples(&text);
    for (status, n) in [("200", 1.0), ("404", 1.0)] {
        assert_eq!(
            sum(
                &s,
                "http_server_request_duration_seconds_count",
                &[("server_port", "80"), ("http_response_status_code", status)],
            ),
            n,
            "status {status}"
        );
    }
    // The truncated block's traceparent lay past the capture: no exemplar.
    assert!(!text.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{text}");
}
