//! HTTP and DNS on a bridged node (pods on a Linux bridge, IPv6 left on,
//! ARP, neighbour discovery and MLD as the kernel does them, offloads as
//! veths come: GSO and GRO on), not on the tidy veth pair of `http.rs` and
//! `dns.rs`. Two client pods talk to an HTTP server pod and a dnsmasq pod;
//! every count is exact per client pod, the server durations lie inside
//! the bracket the server and client measured, each traced request's
//! series carries its own trace id, and nothing of it is counted as a drop.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use osprey_e2e::{
    agent,
    bridge::BridgedNode,
    dns::{self, Dnsmasq, a_query, query},
    exposition::{Sample, drops_touching, exemplar_traces, samples, sum},
    http::{self, Req, Step},
    require, settle,
};
use simple_dns::{RCODE, TYPE};

const HTTP_PORT: u16 = 7400;
/// Pods: the HTTP server, dnsmasq, and two clients.
const SERVER: usize = 0;
const DNS: usize = 1;
const CLIENTS: [usize; 2] = [2, 3];
/// Rounding of a duration into float seconds, per request.
const CLOCK_SLACK: f64 = 0.000_1;

/// Each client's plan: keep-alive connections with traced and untraced
/// requests, one pipelined pair; (plans, traced (trace id, path)).
fn plan(client: u8) -> (Vec<Vec<Step>>, Vec<(String, &'static str)>) {
    let t: Vec<_> = (0..3)
        .map(|i| http::traceparent(0x10 * client + i))
        .collect();
    let plans = vec![
        vec![
            Step::One(Req::get("/fast").traced(&t[0].0)),
            Step::One(Req::get("/fast")),
            Step::One(Req::get("/missing").traced(&t[1].0)),
            Step::Pipelined(vec![Req::get("/fast"), Req::get("/fast")]),
        ],
        vec![
            Step::One(Req::post("/error").traced(&t[2].0)),
            Step::One(Req::get("/slow")),
        ],
    ];
    let traced = vec![
        (t[0].1.clone(), "/fast"),
        (t[1].1.clone(), "/missing"),
        (t[2].1.clone(), "/error"),
    ];
    (plans, traced)
}

#[test]
fn http_and_dns_on_a_bridged_node_count_exactly_per_pod() {
    require!(
        std::path::Path::new("/usr/sbin/dnsmasq").exists(),
        "dnsmasq is not installed (cargo xtask setup installs dnsmasq-base)"
    );
    let Some(agent) = agent::for_test_by_ip(&[]) else {
        return;
    };
    // Links come up with the agent watching; wait for duplicate address
    // detection so each pod's IPv6 link-local exists (and its ND and MLD
    // have happened) before our traffic.
    let node = BridgedNode::new("l7", "10.224.0", 4);
    let ours: Vec<IpAddr> = (0..4).flat_map(|i| node.addresses(i, 10)).collect();
    assert_eq!(ours.iter().filter(|a| a.is_ipv6()).count(), 4, "{ours:?}");
    let ip = |i: usize| node.ips[i].to_string();

    // DNS: each client asks its own names. dnsmasq is bound before the
    // first, so no query meets a closed port (a real drop).
    let big = format!("--txt-record=big.osprey.test,{0},{0},{0}", "x".repeat(250));
    let _dnsmasq = Dnsmasq::start(&node.ends(SERVER, DNS), &[&big]);
    let mut dns_want = BTreeMap::new();
    for (n, &c) in CLIENTS.iter().enumerate() {
        let id = 0x0b00 + 0x10 * n as u16;
        let mut queries = vec![
            a_query("web.osprey.test", id),
            a_query("missing.osprey.test", id + 1),
        ];
        if n == 0 {
            // Past the classic 512 bytes, over UDP with EDNS0.
            queries.push(query("big.osprey.test", id + 2, TYPE::TXT, true));
        }
        let got = dns::resolve_udp(&node.ends(c, DNS), queries);
        assert_eq!((got[0].rcode, got[0].answers), (RCODE::NoError, 1));
        assert_eq!((got[1].rcode, got[1].answers), (RCODE::NameError, 0));
        if let Some(big) = got.get(2) {
            assert_eq!((big.rcode, big.answers), (RCODE::NoError, 1));
            assert!(big.bytes > 512, "the TXT answer is {} bytes", big.bytes);
        }
        dns_want.insert(c, got.len());
    }

    // HTTP: one client after the other, each with its own trace ids.
    let mut http_want: BTreeMap<(usize, &str, u16), (u64, Duration, Duration)> = BTreeMap::new();
    let mut traced = Vec::new();
    for (n, &c) in CLIENTS.iter().enumerate() {
        let (plans, t) = plan(n as u8 + 1);
        let server = http::serve(&node.ends(c, SERVER), HTTP_PORT, plans.len());
        let asked = http::client(&node.ends(c, SERVER), HTTP_PORT, plans);
        let served = server.join().expect("server thread");
        assert_eq!(served.len(), asked.len());
        // Requests are answered in order: served[i] is asked[i].
        for (s, a) in served.iter().zip(&asked) {
            assert_eq!((s.method.as_str(), s.path.as_str()), (a.method, a.path));
            let e = http_want.entry((c, a.method, s.status)).or_default();
            e.0 += 1;
            e.1 += s.handled;
            e.2 += a.waited;
        }
        traced.extend(t.into_iter().map(|(trace, path)| (c, trace, path)));
    }

    let count = |s: &[Sample], family: &str, c: usize, method: &str, status: u16| {
        let (src, dst, st) = (ip(c), ip(SERVER), status.to_string());
        sum(
            s,
            family,
            &[
                ("source", src.as_str()),
                ("destination", dst.as_str()),
                ("http_request_method", method),
                ("http_response_status_code", st.as_str()),
            ],
        )
    };
    let dns_count = |s: &[Sample], family: &str, c: usize| {
        let (src, dst) = (ip(c), ip(DNS));
        sum(
            s,
            family,
            &[("source", src.as_str()), ("destination", dst.as_str())],
        )
    };
    let (text, s) = settle(20, || {
        let text = agent.scrape().1;
        let s = samples(&text);
        let done = http_want.iter().all(|((c, m, st), (n, ..))| {
            count(&s, "http_server_request_duration_seconds_count", *c, m, *st) >= *n as f64
                && count(&s, "http_client_request_duration_seconds_count", *c, m, *st) >= *n as f64
        }) && dns_want
            .iter()
            .all(|(c, n)| dns_count(&s, "hubble_dns_responses_total", *c) >= *n as f64);
        (done, (text, s))
    });

    // Every request, counted once at each end, per client pod; the
    // server's duration inside the bracket (server's own account, what the
    // client waited).
    for ((c, method, status), (n, handled, waited)) in &http_want {
        for family in [
            "http_server_request_duration_seconds_count",
            "http_client_request_duration_seconds_count",
        ] {
            assert_eq!(
                count(&s, family, *c, method, *status),
                *n as f64,
                "{family} pod {c} {method} {status}"
            );
        }
        let seconds = count(
            &s,
            "http_server_request_duration_seconds_sum",
            *c,
            method,
            *status,
        );
        let slack = *n as f64 * CLOCK_SLACK;
        let (own, client) = (handled.as_secs_f64(), waited.as_secs_f64());
        assert!(
            own - slack <= seconds && seconds <= client + slack,
            "pod {c} {method} {status}: kernel {seconds:.6}s, server {own:.6}s, client {client:.6}s"
        );
    }
    // Each traced request's server series carries its trace id, and no
    // other client pod's.
    for (c, trace, path) in &traced {
        let (status, _) = http::behaviour(path);
        let method = if *path == "/error" { "POST" } else { "GET" };
        let (src, st) = (ip(*c), status.to_string());
        let got = exemplar_traces(
            &text,
            "http_server_request_duration_seconds_bucket",
            &[
                ("source", src.as_str()),
                ("http_request_method", method),
                ("http_response_status_code", st.as_str()),
            ],
        );
        assert!(
            got.contains(trace),
            "pod {c} {method} {path}: exemplars {got:?}, want trace {trace}"
        );
        let others: Vec<_> = traced
            .iter()
            .filter(|(o, ..)| o != c)
            .map(|(_, t, ..)| t)
            .collect();
        assert!(
            !got.iter().any(|t| others.contains(&t)),
            "pod {c}: another pod's trace id on its series: {got:?}"
        );
    }

    // DNS per client pod: queries and answers exact, the long answer
    // parsed, nothing malformed.
    for (c, n) in &dns_want {
        for family in ["hubble_dns_queries_total", "hubble_dns_responses_total"] {
            assert_eq!(dns_count(&s, family, *c), *n as f64, "{family} pod {c}");
        }
        let (src, dst) = (ip(*c), ip(DNS));
        assert_eq!(
            sum(
                &s,
                "hubble_dns_responses_total",
                &[
                    ("source", src.as_str()),
                    ("destination", dst.as_str()),
                    ("rcode", "Non-Existent Domain")
                ]
            ),
            1.0,
            "pod {c}'s NXDOMAIN"
        );
    }
    let big_src = ip(CLIENTS[0]);
    assert_eq!(
        sum(
            &s,
            "hubble_dns_responses_total",
            &[
                ("source", big_src.as_str()),
                ("qtypes", "TXT"),
                ("rcode", "No Error")
            ]
        ),
        1.0,
        "the long answer, matched to its query"
    );
    assert_eq!(sum(&s, "osprey_dns_malformed_packets_total", &[]), 0.0);

    // Nothing of it is a drop: no drop series has one of our addresses at
    // either end (the bridge's own frees are `bridge.rs`'s subject).
    let ours: Vec<String> = ours.iter().map(ToString::to_string).collect();
    let counted = drops_touching(&s, &ours);
    assert!(counted.is_empty(), "drops on our pods: {counted:#?}");
}
