//! HTTP read from the wire: a real server and client in two pods, keep-alive,
//! traced and untraced requests, pipelining and a split header block. The
//! agent's counts are exact, its durations agree with what the server
//! measured, and Prometheus returns exactly the sent trace ids as exemplars.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use osprey_e2e::{
    agent,
    exposition::{Sample, exemplar_traces, samples, sum},
    http::{self, Req, Served, Step},
    netns::PodPair,
    prometheus::{self, Prometheus},
    require, settle,
};

const PORT: u16 = 7300;
/// Seconds per request allowed outside a bracket of timestamps: the
/// rounding of a duration turned into float seconds, nothing else.
const CLOCK_SLACK: f64 = 0.000_1;

/// Series of `name` whose labels include all of `want`.
fn total(s: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    sum(s, name, want)
}

/// The plan: two keep-alive connections; four traced requests, each alone
/// in its (series, bucket); untraced, invalid-traceparent, pipelined and
/// split requests around them.
/// A traced request as Prometheus should return it: (trace id, span id, status).
type Traced = (String, String, u16);

fn plan() -> (Vec<Vec<Step>>, Vec<Traced>) {
    let t: Vec<_> = (1..=5).map(http::traceparent).collect();
    let first = vec![
        Step::One(Req::get("/fast").traced(&t[0].0)),
        Step::One(Req::get("/fast")),
        Step::One(Req::get("/fast")),
        Step::One(Req::get("/slow").traced(&t[1].0)),
        Step::One(Req::get("/missing")),
        Step::One(Req::get("/missing").traced(&t[2].0)),
        Step::One(Req::get("/fast").traced("00-not-a-trace-01")),
    ];
    let second = vec![
        Step::One(Req::post("/error").traced(&t[3].0)),
        Step::One(Req::post("/error")),
        Step::Pipelined(vec![
            Req::get("/fast"),
            Req::get("/fast"),
            Req::get("/missing"),
        ]),
        // The traceparent travels in the second segment, which the kernel
        // does not capture: counted, without an exemplar (documented).
        Step::One(Req::get("/slow").traced(&t[4].0).split()),
    ];
    let traced = vec![
        (t[0].1.clone(), t[0].2.clone(), 200),
        (t[1].1.clone(), t[1].2.clone(), 200),
        (t[2].1.clone(), t[2].2.clone(), 404),
        (t[3].1.clone(), t[3].2.clone(), 500),
    ];
    (vec![first, second], traced)
}

fn run(tag: &str, a: &str, b: &str, prefix: u8, trace_label: &str) {
    let Some(agent) = agent::for_test_by_ip(&["--exemplar-trace-label", trace_label]) else {
        return;
    };
    require!(
        prometheus::binary().is_some(),
        "prometheus is not installed (cargo xtask setup)"
    );
    let prom = Prometheus::start(&[format!("127.0.0.1:{}", agent.port())])
        .unwrap_or_else(|e| panic!("Prometheus must start: {e}"));
    let pair = PodPair::new(tag, a, b, prefix);
    let (plans, traced) = plan();
    let server = http::serve(&pair, PORT, plans.len());
    let asked = http::client(&pair, PORT, plans);
    let served = server.join().expect("server thread");
    assert_eq!(served.len(), 13, "{served:?}");

    // What the server answered, per (method, status), and what the client
    // waited for those answers.
    let mut waited: BTreeMap<(String, u16), Duration> = BTreeMap::new();
    for q in &asked {
        *waited
            .entry((q.method.to_owned(), http::behaviour(q.path).0))
            .or_default() += q.waited;
    }
    let mut want: BTreeMap<(String, u16), (u64, Duration)> = BTreeMap::new();
    for Served {
        method,
        status,
        handled,
        ..
    } in &served
    {
        let e = want.entry((method.clone(), *status)).or_default();
        e.0 += 1;
        e.1 += *handled;
    }
    let ctx = |reporter: &'static str| {
        [
            ("source", a.to_owned()),
            ("destination", b.to_owned()),
            ("reporter", reporter.to_owned()),
        ]
    };
    let count_of = |s: &[Sample], name: &str, method: &str, status: u16| {
        let st = status.to_string();
        total(
            s,
            name,
            &[
                ("source", a),
                ("destination", b),
                ("server_port", "7300"),
                ("http_request_method", method),
                ("http_response_status_code", st.as_str()),
            ],
        )
    };
    let s = settle(20, || {
        let s = samples(&agent.scrape().1);
        let done = want.iter().all(|((m, st), (n, _))| {
            count_of(&s, "http_client_request_duration_seconds_count", m, *st) >= *n as f64
                && count_of(&s, "http_server_request_duration_seconds_count", m, *st) >= *n as f64
        });
        (done, s)
    });

    for ((method, status), (n, handled)) in &want {
        for family in [
            "http_server_request_duration_seconds",
            "http_client_request_duration_seconds",
        ] {
            let got = count_of(&s, &format!("{family}_count"), method, *status);
            assert_eq!(got, *n as f64, "{family} {method} {status}");
        }
        // The kernel's server duration lies between the server's own
        // account (the kernel saw the request before the server's read
        // returned, the response after its write began) and what the client
        // waited (it wrote before the kernel saw the request, and read after
        // the response left): a bracket no scheduling delay can break.
        let seconds = count_of(
            &s,
            "http_server_request_duration_seconds_sum",
            method,
            *status,
        );
        let own = handled.as_secs_f64();
        let client = waited[&(method.clone(), *status)].as_secs_f64();
        let slack = *n as f64 * CLOCK_SLACK;
        assert!(
            own - slack <= seconds && seconds <= client + slack,
            "{method} {status}: kernel {seconds:.6}s, server {own:.6}s, client {client:.6}s"
        );
        for reporter in ["server", "client"] {
            let st = status.to_string();
            let c = ctx(reporter);
            let mut labels: Vec<(&str, &str)> = c.iter().map(|(k, v)| (*k, v.as_str())).collect();
            labels.push(("method", method));
            labels.push(("status", &st));
            assert_eq!(
                total(&s, "hubble_http_responses_total", &labels),
                *n as f64,
                "hubble_http_responses_total {labels:?}"
            );
        }
    }
    for reporter in ["server", "client"] {
        for method in ["GET", "POST"] {
            let n: u64 = want
                .iter()
                .filter(|((m, _), _)| m == method)
                .map(|(_, (n, _))| n)
                .sum();
            let c = ctx(reporter);
            let mut labels: Vec<(&str, &str)> = c.iter().map(|(k, v)| (*k, v.as_str())).collect();
            labels.push(("method", method));
            labels.push(("protocol", "HTTP/1.1"));
            assert_eq!(
                total(&s, "hubble_http_requests_total", &labels),
                n as f64,
                "{labels:?}"
            );
        }
    }

    // Observe: one HTTP record per request and reporter, filtered by status
    // and method as `osprey-agent observe --http-status/--http-method` asks.
    let records = |query: &str| -> Vec<serde_json::Value> {
        ureq::get(&format!("{}/api/v1/flows?ip={b}&{query}", agent.base_url))
            .call()
            .expect("observe API")
            .into_string()
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let missing = records("http_status=404");
    assert_eq!(missing.len(), 6, "{missing:#?}");
    for r in &missing {
        assert_eq!(r["http"]["method"], "GET", "{r}");
        assert_eq!(r["http"]["path"], "/missing", "{r}");
        assert!(r["http"]["latency_ms"].as_f64().unwrap() >= 5.0, "{r}");
    }
    let traced_404: Vec<_> = missing
        .iter()
        .filter(|r| r["http"]["trace_id"] == traced[2].0.as_str())
        .collect();
    assert_eq!(traced_404.len(), 2, "{missing:#?}");
    assert_eq!(records("http_method=POST").len(), 4);

    // Prometheus has scraped the exemplars: exactly the sent trace ids,
    // each with its parent span id, on the series of its own status.
    let query = format!("http_server_request_duration_seconds_bucket{{destination=\"{b}\"}}");
    let want_ids: BTreeSet<_> = traced.iter().cloned().collect();
    let got = settle(30, || {
        let got: BTreeSet<(String, String, u16)> = prom
            .exemplars(&query, 300)
            .into_iter()
            .map(|(series, labels, _)| {
                (
                    labels[trace_label].as_str().unwrap_or_default().to_owned(),
                    labels["span_id"].as_str().unwrap_or_default().to_owned(),
                    series["http_response_status_code"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap(),
                )
            })
            .collect();
        (got == want_ids, got)
    });
    assert_eq!(got, want_ids, "exemplars of {query}");
}

#[test]
fn requests_are_counted_timed_and_carry_their_trace_ids() {
    run("h4", "10.230.0.1", "10.230.0.2", 24, "trace_id");
}

#[test]
fn over_ipv6_with_the_trace_label_switched() {
    run("h6", "fd00:230::1", "fd00:230::2", 64, "traceID");
}

/// A traced connection whose packets a firewall drops for a while: its
/// drops, retransmits, bytes and RTT carry that trace's id as exemplar.
#[test]
fn drops_and_retransmits_of_a_traced_connection_link_to_its_trace() {
    use std::{io::BufReader, io::Write, net::SocketAddr, sync::mpsc};
    let Some(agent) = agent::for_test(&[
        "--drain-interval-ms",
        "200",
        "--hubble-source-context",
        "ip",
    ]) else {
        return;
    };
    const P: u16 = 7301;
    let (a, b) = ("10.231.0.1", "10.231.0.2");
    let pair = PodPair::new("hx", a, b, 24);
    let server = http::serve(&pair, P, 1);
    let (tp, trace, _) = http::traceparent(0x7a);
    let (answered_tx, answered_rx) = mpsc::channel();
    let (blocked_tx, blocked_rx) = mpsc::channel::<()>();
    let b_ip = pair.b_ip;
    let client = pair.a.run(move || {
        let conn = std::net::TcpStream::connect(SocketAddr::new(b_ip, P)).unwrap();
        conn.set_nodelay(true).unwrap();
        let mut w = conn.try_clone().unwrap();
        let mut r = BufReader::new(conn);
        let req = Req::get("/fast").traced(&tp).head();
        w.write_all(req.as_bytes()).unwrap();
        http::read_response(&mut r);
        answered_tx.send(()).unwrap();
        blocked_rx.recv().unwrap();
        // Dropped by B's firewall until the rule goes: retransmitted.
        w.write_all(req.as_bytes()).unwrap();
        http::read_response(&mut r);
    });
    answered_rx.recv().unwrap();
    let rule = ["INPUT", "-p", "tcp", "--dport", "7301", "-j", "DROP"];
    pair.b.exec(&[&["iptables", "-A"][..], &rule].concat());
    blocked_tx.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    pair.b.exec(&[&["iptables", "-D"][..], &rule].concat());
    client.join().unwrap();
    server.join().unwrap();

    let families: [(&str, Vec<(&str, &str)>); 5] = [
        (
            "osprey_flow_drops_total",
            vec![("source_ip", a), ("reason", "NETFILTER_DROP")],
        ),
        (
            "hubble_drop_total",
            vec![("source", a), ("reason", "NETFILTER_DROP")],
        ),
        ("osprey_tcp_retransmits_total", vec![("source_ip", a)]),
        (
            "osprey_flow_bytes_total",
            vec![("source_ip", a), ("direction", "egress")],
        ),
        // The node's one RTT histogram: a bucket holds it.
        ("osprey_tcp_rtt_seconds_bucket", vec![]),
    ];
    let text = settle(15, || {
        let text = agent.scrape().1;
        let done = families
            .iter()
            .all(|(name, want)| exemplar_traces(&text, name, want).contains(&trace));
        (done, text)
    });
    for (name, want) in &families {
        let got = exemplar_traces(&text, name, want);
        assert!(got.contains(&trace), "{name}{want:?}: {got:?}");
    }
}

/// With `http_spans = "all"`, every request becomes a span at a real OTLP
/// receiver (rotel): traced ones in their caller's trace, under its span,
/// at both ends; an untraced one in a new trace, which its exemplar names.
#[test]
fn spans_arrive_at_an_otlp_receiver_and_exemplars_resolve_to_them() {
    use osprey_e2e::{peers, require_peer, rotel::Rotel};
    let rotel_bin = require_peer!(peers::ROTEL);
    let rotel = Rotel::start(&rotel_bin, "spans");
    let endpoint = format!("http://127.0.0.1:{}", rotel.grpc_port);
    let Some(agent) = agent::for_test(&[
        "--drain-interval-ms",
        "200",
        "--hubble-destination-context",
        "ip",
        "--http-spans",
        "all",
        "--otlp-traces-endpoint",
        &endpoint,
    ]) else {
        return;
    };
    const P: u16 = 7302;
    let (a, b) = ("10.232.0.1", "10.232.0.2");
    let pair = PodPair::new("hs", a, b, 24);
    let (t1, t2) = (http::traceparent(0x31), http::traceparent(0x32));
    let plan = vec![vec![
        Step::One(Req::get("/fast").traced(&t1.0)),
        Step::One(Req::get("/missing")),
        Step::One(Req::post("/error").traced(&t2.0)),
    ]];
    let server = http::serve(&pair, P, 1);
    let sent_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let asked = http::client(&pair, P, plan);
    let served = server.join().unwrap();

    // The untraced request's exemplar: a trace the agent started.
    let text = settle(15, || {
        let text = agent.scrape().1;
        let found = exemplar_traces(
            &text,
            "http_server_request_duration_seconds_bucket",
            &[("destination", b), ("http_response_status_code", "404")],
        );
        (!found.is_empty(), text)
    });
    let new_trace = exemplar_traces(
        &text,
        "http_server_request_duration_seconds_bucket",
        &[("destination", b), ("http_response_status_code", "404")],
    );
    assert_eq!(new_trace.len(), 1, "{new_trace:?}");
    let new_trace = new_trace[0].clone();

    let mine =
        |s: &serde_json::Value| s["attributes"]["server.port"].as_u64() == Some(u64::from(P));
    let spans = settle(20, || {
        let spans: Vec<_> = rotel.spans().into_iter().filter(mine).collect();
        (spans.len() >= 6, spans)
    });
    assert_eq!(spans.len(), 6, "{spans:#?}");
    let find = |trace: &str, server: bool| {
        spans
            .iter()
            .find(|s| {
                let kind = s["kind"].to_string().to_ascii_lowercase();
                s["trace_id"] == trace
                    && if server {
                        kind.contains('2') || kind.contains("server")
                    } else {
                        kind.contains('3') || kind.contains("client")
                    }
            })
            .unwrap_or_else(|| {
                panic!(
                    "no {} span of {trace}: {spans:#?}",
                    if server { "server" } else { "client" }
                )
            })
    };
    for ((_, trace, parent), (method, path, status), (handled, waited)) in [
        (
            &t1,
            ("GET", "/fast", 200),
            (served[0].handled, asked[0].waited),
        ),
        (
            &t2,
            ("POST", "/error", 500),
            (served[2].handled, asked[2].waited),
        ),
    ] {
        for server in [true, false] {
            let s = find(trace, server);
            assert_eq!(s["parent_span_id"], parent.as_str(), "{s}");
            assert_ne!(s["span_id"], parent.as_str(), "{s}");
            let attrs = &s["attributes"];
            assert_eq!(attrs["http.request.method"], method, "{s}");
            assert_eq!(attrs["url.path"], path, "{s}");
            assert_eq!(
                attrs["http.response.status_code"].to_string(),
                status.to_string(),
                "{s}"
            );
            assert_eq!(attrs["server.address"], b, "{s}");
            assert_eq!(attrs["client.address"], a, "{s}");
            let (start, end) = (s["start"].as_u64().unwrap(), s["end"].as_u64().unwrap());
            assert!(
                start >= sent_at - 1_000_000_000 && start <= sent_at + 30_000_000_000,
                "{s}"
            );
            if server {
                // Bracketed as the histogram sums are, in `run`.
                let took = Duration::from_nanos(end - start).as_secs_f64();
                let (own, client) = (handled.as_secs_f64(), waited.as_secs_f64());
                assert!(
                    own - CLOCK_SLACK <= took && took <= client + CLOCK_SLACK,
                    "server span {took:.6}s, server's own {own:.6}s, client {client:.6}s"
                );
            }
        }
    }
    // The untraced request's new trace is a span that arrived: no parent.
    let s = find(&new_trace, true);
    assert_eq!(s["parent_span_id"], "", "{s}");
    assert_eq!(
        s["attributes"]["http.response.status_code"].to_string(),
        "404"
    );
}
