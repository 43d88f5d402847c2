//! The Helm chart's dashboards and alert rules against a real stack: a
//! Prometheus 3 (exemplar storage on, remote-write receiver on) scrapes a
//! real agent over OpenMetrics and the collector, and receives the agent's
//! metrics through the collector's remote-write, while the test makes
//! traffic between two pods (traced HTTP, firewall drops, DNS NXDOMAIN, a
//! retransmitting stream, refused connections), burns CPU in a throttled
//! pod container, writes to disk from it and OOM-kills an allocator there.
//!
//! Every dashboard query (template variables substituted as Grafana's "All"
//! does) returns at least one series through `/api/v1/query`, the panels
//! the scenario feeds return the scenario's own series, and the HTTP
//! dashboard's exemplar queries return the trace ids the client sent. The
//! same Prometheus loads the chart's rule file, rewritten to short `for:`
//! and short windows: the drop, NXDOMAIN and OOM alerts do not fire on the
//! idle start and fire after the traffic. Pods are named through the
//! stand-in API server (no kube-apiserver runs here), each in kubelet-style
//! cgroups: the agent itself as its DaemonSet's pod, the client as a
//! Deployment's, the server as a StatefulSet's, so the queries that select
//! by namespace, pod or workload have the scenario's data too.

use std::{collections::BTreeMap, path::Path, sync::atomic::Ordering, time::Duration};

use osprey_e2e::{
    agent,
    collector::{self, Collector},
    dashboard_stack::*,
    dns::{Dnsmasq, a_query, resolve_udp},
    eventually, free_port,
    grafana::*,
    http::{self, Req, Step},
    netns::PodPair,
    peers, require, require_peer, settle, traffic,
};
use serde_json::Value;

/// Names of the alerts this test provokes: not firing before, firing after.
const PROVOKED: [&str; 5] = [
    "OspreyPacketDropsHigh",
    "OspreyDNSErrorSurge",
    "OspreyContainerOOMKilled",
    "OspreyCollectorDropping",
    "OspreyCollectorRefusing",
];

#[test]
fn every_dashboard_query_returns_data_and_the_alerts_fire() {
    let p3bin = require_peer!(peers::PROMETHEUS3);
    let helm = require_peer!(peers::HELM);
    require!(osprey_e2e::is_root(), "root is needed to load eBPF");
    require!(
        collector::binary().is_some(),
        "OSPREY_COLLECTOR_BIN unset: run `cargo xtask test`"
    );
    require!(
        Path::new("/usr/sbin/dnsmasq").exists(),
        "dnsmasq is not installed (cargo xtask setup installs dnsmasq-base)"
    );
    let started = std::time::Instant::now();
    let rules_text = std::fs::read_to_string(chart().join("rules/osprey.rules.yaml")).unwrap();
    let overlay = rule_overlay(&rules_text);
    let alert_count = rules_text.matches("- alert: ").count();

    // The collector writes to Prometheus (started below, on a port chosen
    // now), and to two more targets: one nobody listens on (its sends are
    // retried from the start), one that turns to answering 404 during the
    // scenario (what it is sent then is dropped): the health dashboard's
    // failure panels and the collector's alerts have something to show.
    let prom_port = free_port();
    let receiver = Receiver::start();
    let c = Collector::start(
        "dashboards",
        &format!(
            "[[remote_write]]\nname = \"prometheus\"\nurl = \"http://127.0.0.1:{prom_port}/api/v1/write\"\n\
             [[remote_write]]\nname = \"unreachable\"\nurl = \"http://127.0.0.1:{}/api/v1/write\"\n\
             [[remote_write]]\nname = \"rejecting\"\nurl = \"http://127.0.0.1:{}/api/v1/write\"\n",
            free_port(),
            receiver.port
        ),
    );
    let api = pods_api();
    // The agent with the chart's own agent.toml (rendered from values.yaml,
    // faster intervals and BPF statistics set as a user would set them),
    // pushing to the collector as well as being scraped. The flags replace
    // what the chart takes from the cluster: the API, the node's name, the
    // collector's address.
    let agent_toml = std::env::temp_dir().join(format!(
        "osprey-dashboards-agent-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &agent_toml,
        rendered_agent_toml(
            &helm,
            &[
                "agent.config.drain_interval_ms=500",
                "agent.config.otlp_interval_secs=1",
                "agent.config.bpf_stats=true",
                "agent.otlpMetrics=true",
            ],
        ),
    )
    .unwrap();
    let Some(agent) = agent::for_test(&[
        "--config",
        agent_toml.to_str().unwrap(),
        "--kubeconfig",
        api.kubeconfig(),
        "--node-name",
        NODE,
        "--otlp-endpoint",
        &c.grpc,
        "--otlp-traces-endpoint",
        &c.grpc,
    ]) else {
        return;
    };
    let _ = std::fs::remove_file(&agent_toml); // read at start
    // The agent in its pod's container cgroup, as the kubelet would start it.
    let agent_cgroup = kubelet_cgroup("burstable", AGENT);
    agent_cgroup.adopt(agent.pid());
    let collector_target = c.own.trim_start_matches("http://").to_owned();
    let prom = Prom::start(
        &p3bin,
        prom_port,
        &format!("127.0.0.1:{}", agent.port()),
        &collector_target,
        &overlay,
    );

    // Idle: every rule loaded and evaluated over a few scrapes of the agent;
    // none of the alerts this test provokes is pending or firing.
    let (loaded, _) = eventually(60, "the rules evaluated over 5 agent scrapes", || {
        let scraped = prom
            .query("count_over_time(up{job=\"osprey/osprey-agent\"}[1m]) >= 5")
            .ok()?;
        let (loaded, evaluated) = prom.rules_loaded();
        (!scraped.is_empty() && loaded == evaluated && loaded > 0).then_some((loaded, evaluated))
    });
    assert_eq!(loaded, alert_count, "every alert of the rule file loaded");
    let idle: Vec<_> = prom
        .alerts()
        .into_iter()
        .filter(|(name, _, _)| PROVOKED.contains(&name.as_str()))
        .collect();
    assert!(idle.is_empty(), "alerts on the idle start: {idle:?}");
    eprintln!(
        "idle: {loaded} alert rules evaluated, none of {PROVOKED:?} pending or firing ({:.0?})",
        started.elapsed()
    );

    // The scenario.
    let pair = PodPair::new("gd", A_IP, B_IP, 24);
    let _dnsmasq = Dnsmasq::start(&pair, &[]);
    pair.b.exec(&[
        "iptables",
        "-A",
        "INPUT",
        "-p",
        "udp",
        "--dport",
        &DROP_PORT.to_string(),
        "-j",
        "DROP",
    ]);
    // Pod B's app container (the pods dashboard shows containers, not
    // cgroups outside pods): a throttled CPU burner, two busy loops on one
    // CPU at most half of it; direct writes to disk; later the OOM victim
    // (its count seen at 0 before the kill: a counter born at 1 has no
    // increase). Its processes live in pod B's network namespace.
    let oom = kubelet_cgroup("burstable", DB);
    limit_cpu(&oom, 50_000, 100_000);
    oom.limit_memory(32 << 20);
    let in_b = format!("ip netns exec {}", pair.b.name);
    let burners: Vec<Proc> = (0..2)
        .map(|_| {
            Proc(oom.run(&format!(
                "{in_b} timeout 6 taskset -c 0 sh -c 'while :; do :; done'"
            )))
        })
        .collect();
    let disk = std::env::temp_dir().join(format!("osprey-dash-io-{}", std::process::id()));
    let wrote = oom
        .run(&format!(
            "{in_b} dd if=/dev/zero of={} bs=1M count=4 oflag=direct status=none",
            disk.display()
        ))
        .wait()
        .unwrap();
    let _ = std::fs::remove_file(&disk);
    assert!(wrote.success(), "direct writes from pod B's container");
    // Pod A's app container: its process lives in pod A's network
    // namespace, whose interface counters are its network series.
    let pod = kubelet_cgroup("besteffort", WEB);
    let _pod_process = Proc(pod.run(&format!("ip netns exec {} sleep 300", pair.a.name)));

    // HTTP: 200s, a 404 and 500s; first untraced, so that every series
    // exists in Prometheus before the traced round raises it (a series born
    // at 2 has no rate).
    let untraced = vec![vec![
        Step::One(Req::get("/fast")),
        Step::One(Req::get("/slow")),
        Step::One(Req::get("/missing")),
        Step::One(Req::post("/error")),
        Step::One(Req::get("/error")),
    ]];
    let server = http::serve(&pair, HTTP_PORT, 1);
    http::client(&pair, HTTP_PORT, untraced);
    assert_eq!(server.join().unwrap().len(), 5);
    eventually(30, "the HTTP server's 500s in Prometheus", || {
        prom.query(&format!(
            "http_server_request_duration_seconds_count{{server_port=\"{HTTP_PORT}\", \
             http_response_status_code=\"500\"}}"
        ))
        .ok()
        .filter(|r| !r.is_empty())
    });
    let traces: Vec<_> = (0x71..=0x75).map(http::traceparent).collect();
    let plans = vec![
        vec![
            Step::One(Req::get("/fast").traced(&traces[0].0)),
            Step::One(Req::get("/slow").traced(&traces[1].0)),
            Step::One(Req::get("/missing")),
            Step::One(Req::get("/fast")),
        ],
        vec![
            Step::One(Req::post("/error").traced(&traces[2].0)),
            Step::One(Req::get("/error").traced(&traces[3].0)),
            Step::One(Req::get("/fast")),
        ],
    ];
    let server = http::serve(&pair, HTTP_PORT, plans.len());
    http::client(&pair, HTTP_PORT, plans);
    assert_eq!(server.join().unwrap().len(), 7);
    let retransmitted = stalled_upload(&pair, &traces[4].0);
    assert!(retransmitted > 0, "the stalled stream retransmitted");
    refused(&pair, 5);
    // A receiver that rejects, and a request the collector refuses.
    receiver.reject.store(true, Ordering::Relaxed);
    // Refused twice: the first refusal creates the collector's series at 1,
    // which no rate sees; the second, once Prometheus holds it, is a rise.
    let refuse = || {
        assert_eq!(
            c.post("/v1/metrics", "application/x-protobuf", b"not protobuf"),
            400
        )
    };
    refuse();
    eventually(30, "the collector's refusal in Prometheus", || {
        prom.query("osprey_collector_refused_requests_total{reason=\"bad_request\"}")
            .ok()
            .filter(|r| !r.is_empty())
    });
    refuse();

    // Drops and NXDOMAINs in bursts over a few seconds (a rate needs the
    // counter seen before and after).
    let (mut nx, mut ok) = (0, 0);
    for round in 0..8u16 {
        traffic::udp_send(&pair, DROP_PORT, 400, 100);
        let mut names = vec!["missing.osprey.test"; 40];
        names.extend(["web.osprey.test"; 2]);
        let queries = (0..).zip(names).map(|(i, n)| a_query(n, round * 100 + i));
        for answer in resolve_udp(&pair, queries.collect()) {
            match answer.rcode {
                simple_dns::RCODE::NameError => nx += 1,
                simple_dns::RCODE::NoError => ok += 1,
                other => panic!("dnsmasq answered {other:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!((nx, ok), (320, 16), "NXDOMAIN and NOERROR answers");

    // The OOM kill, once Prometheus holds the cgroup's count at 0.
    let oom_sel = format!("container_oom_events_total{{id=\"{}\"}}", oom.id);
    eventually(30, "the OOM cgroup's count in Prometheus", || {
        prom.query(&format!("{oom_sel} == 0"))
            .ok()
            .filter(|r| !r.is_empty())
    });
    let status = oom
        .run(&format!("{in_b} python3 -c 'b = bytearray(256 << 20)'"))
        .wait()
        .unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "the allocator is OOM-killed");
    }
    assert_eq!(oom.oom_kills(), 1.0, "the kernel counted one OOM kill");
    eprintln!("scenario done ({:.0?})", started.elapsed());

    // The provoked alerts fire, on the scenario's own labels.
    // Each with a label only this scenario gives it; the collector's failing
    // target was configured so from the start, so it fires on the idle start
    // already.
    let expected = [
        (PROVOKED[0], "reason", "NETFILTER_DROP"),
        (PROVOKED[1], "rcode", "Non-Existent Domain"),
        (PROVOKED[2], "id", oom.id.as_str()),
        (PROVOKED[3], "exporter", "rejecting"),
        (PROVOKED[4], "reason", "bad_request"),
        (
            "OspreyCollectorRemoteWriteFailing",
            "exporter",
            "unreachable",
        ),
    ];
    // Each counts once seen firing: a burst's rate leaves the window a
    // minute later.
    let mut seen: Vec<Option<Value>> = vec![None; expected.len()];
    let alerts = settle(60, || {
        let a = prom.alerts();
        for ((name, label, value), slot) in expected.iter().zip(seen.iter_mut()) {
            if slot.is_none() {
                *slot = a
                    .iter()
                    .find(|(n, s, l)| n == name && s == "firing" && l[*label] == *value)
                    .map(|(_, _, l)| l.clone());
            }
        }
        (seen.iter().all(Option::is_some), a)
    });
    for ((name, label, value), got) in expected.iter().zip(&seen) {
        assert!(
            got.is_some(),
            "{name} firing with {label}={value:?}; active alerts: {alerts:?}\n{}",
            prom.rule_state(name)
        );
    }
    eprintln!(
        "firing ({:.0?}):\n  {}",
        started.elapsed(),
        seen.iter()
            .flatten()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    );

    // Every panel query returns a series; the scenario's panels its series.
    let (targets, variables) = dashboards();
    let a_ip = A_IP.to_owned();
    let http_port = HTTP_PORT.to_string();
    // (dashboard, panel, refId) → a series this test's scenario alone makes.
    let has = |label: &'static str, value: String| {
        move |s: &Value| s["metric"][label].as_str() == Some(value.as_str())
    };
    let positive = |s: &Value| {
        s["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v > 0.0)
    };
    type Check = Box<dyn Fn(&Value) -> bool>;
    let mut scenario: BTreeMap<(&str, &str, &str), Check> = BTreeMap::new();
    scenario.insert(
        ("osprey-flows.json", "Workload pairs (packets/s)", "A"),
        Box::new({
            let (src, dst) = (
                has("source", "shop/web".into()),
                has("destination", "shop/db".into()),
            );
            move |s| src(s) && dst(s)
        }),
    );
    scenario.insert(
        ("osprey-flows.json", "Drops by reason", "A"),
        Box::new(move |s| has("reason", "NETFILTER_DROP".into())(s) && positive(s)),
    );
    scenario.insert(
        ("osprey-flows.json", "Drops by flow and reason", "A"),
        Box::new({
            let (src, port) = (
                has("source_ip", a_ip.clone()),
                has("destination_port", DROP_PORT.to_string()),
            );
            move |s| src(s) && port(s)
        }),
    );
    scenario.insert(
        (
            "osprey-flows.json",
            "TCP retransmits/s (top destinations)",
            "A",
        ),
        Box::new(has("destination_port", RETRANS_PORT.to_string())),
    );
    scenario.insert(
        (
            "osprey-flows.json",
            "Failing connections (refused, timeout, reset, error)",
            "A",
        ),
        Box::new({
            let (port, out) = (
                has("destination_port", CLOSED_PORT.to_string()),
                has("outcome", "refused".into()),
            );
            move |s| port(s) && out(s)
        }),
    );
    scenario.insert(
        ("osprey-flows.json", "DNS answers by rcode", "A"),
        Box::new(move |s| has("rcode", "Non-Existent Domain".into())(s) && positive(s)),
    );
    scenario.insert(
        (
            "osprey-flows.json",
            "DNS errors (NXDOMAIN, SERVFAIL) by client",
            "A",
        ),
        Box::new(has("source", "shop/web".into())),
    );
    scenario.insert(
        ("osprey-http.json", "Requests/s by status", "A"),
        Box::new(move |s| has("http_response_status_code", "500".into())(s) && positive(s)),
    );
    scenario.insert(
        ("osprey-http.json", "5xx ratio", "A"),
        Box::new(move |s| has("server_port", http_port.clone())(s) && positive(s)),
    );
    scenario.insert(("osprey-pods.json", "OOM kills", "A"), Box::new(positive));
    scenario.insert(
        ("osprey-pods.json", "CPU throttled", "A"),
        Box::new(positive),
    );
    scenario.insert(
        ("osprey-health.json", "Collector sent", "A"),
        Box::new(has("exporter", "prometheus".into())),
    );

    // A query that passes keeps that result (a rate decays once the
    // scenario is over); the others are asked again until all pass.
    let passes = |t: &Target, r: &Result<Vec<Value>, String>| {
        let key = (t.dashboard.as_str(), t.panel.as_str(), t.ref_id.as_str());
        match r {
            Err(_) => false,
            Ok(series) => match scenario.get(&key) {
                Some(check) => series.iter().any(check),
                None => !series.is_empty(),
            },
        }
    };
    let mut results: Vec<Option<Result<Vec<Value>, String>>> = vec![None; targets.len()];
    settle(45, || {
        for (t, slot) in targets.iter().zip(results.iter_mut()) {
            if !slot.as_ref().is_some_and(|r| passes(t, r)) {
                *slot = Some(prom.query(&t.expr));
            }
        }
        let done = targets
            .iter()
            .zip(&results)
            .all(|(t, r)| r.as_ref().is_some_and(|r| passes(t, r)));
        (done, ())
    });
    let results: Vec<Result<Vec<Value>, String>> =
        results.into_iter().map(Option::unwrap).collect();
    let mut failures = Vec::new();
    let (mut with_data, mut panels) = (0, std::collections::BTreeSet::new());
    for (t, r) in targets.iter().zip(&results) {
        panels.insert((t.dashboard.clone(), t.panel.clone()));
        let key = (t.dashboard.as_str(), t.panel.as_str(), t.ref_id.as_str());
        let where_ = format!("{} / {} / {}", t.dashboard, t.panel, t.ref_id);
        match r {
            Err(e) => failures.push(format!("{where_}: query fails: {e}\n    {}", t.expr)),
            Ok(series) => {
                if !series.is_empty() {
                    with_data += 1;
                }
                eprintln!("{:>4} series  {where_}", series.len());
                if series.is_empty() {
                    failures.push(format!("{where_}: no series\n    {}", t.expr));
                } else if let Some(check) = scenario.get(&key)
                    && !series.iter().any(check)
                {
                    failures.push(format!(
                        "{where_}: none of the scenario's series in {series:?}\n    {}",
                        t.expr
                    ));
                }
            }
        }
    }

    // The template variables' values.
    for (dashboard, var, metric, label) in &variables {
        let values = prom.label_values(metric, label).unwrap_or_else(|e| {
            failures.push(format!("{dashboard} ${var}: {e}"));
            Vec::new()
        });
        eprintln!(
            "{:>4} values  {dashboard} / ${var} (label_values({metric}, {label}))",
            values.len()
        );
        if values.is_empty() {
            failures.push(format!("{dashboard} ${var}: no values"));
        }
    }

    // Exemplars: the HTTP dashboard's queries return every trace id the
    // client sent; the flows dashboard's (bytes, drops, retransmits, RTT)
    // the traces of the connections they counted.
    let sent: Vec<&str> = traces.iter().map(|t| t.1.as_str()).collect();
    let mut exemplar_queries = 0;
    for t in targets.iter().filter(|t| t.exemplar) {
        let need = if t.dashboard == "osprey-http.json" {
            sent[..4].len()
        } else {
            1
        };
        let got = settle(20, || {
            let e = prom.exemplars(&t.expr).unwrap_or_default();
            let ids: Vec<String> = e
                .iter()
                .filter_map(|l| l["trace_id"].as_str().map(str::to_owned))
                .collect();
            let mine = sent.iter().filter(|s| ids.iter().any(|i| i == *s)).count();
            (mine >= need, ids)
        });
        let mine = sent.iter().filter(|s| got.iter().any(|i| i == *s)).count();
        eprintln!(
            "{:>4} exemplars {} / {} / {} ({mine} of the {} sent trace ids)",
            got.len(),
            t.dashboard,
            t.panel,
            t.ref_id,
            sent.len()
        );
        exemplar_queries += 1;
        if mine < need {
            failures.push(format!(
                "{} / {} / {}: {mine} exemplars with a sent trace id, {need} expected \
                 ({got:?})\n    {}",
                t.dashboard, t.panel, t.ref_id, t.expr
            ));
        }
    }

    eprintln!(
        "{} panels, {} queries: {with_data} returned data; {} variables; \
         {exemplar_queries} exemplar queries ({:.0?})",
        panels.len(),
        targets.len(),
        variables.len(),
        started.elapsed()
    );
    // Exemplars Prometheus 3 refuses as out of order (a folded series can
    // count two traced connections in one millisecond) cost the request
    // its exemplars, never its samples: the collector resends it without
    // them (`exemplar_rejected`).
    let log = prom.prometheus.log();
    let dropped = |kind: &str| {
        c.metric(
            "osprey_collector_dropped_total",
            &[("exporter", "prometheus"), ("kind", kind)],
        )
    };
    eprintln!(
        "note: Prometheus logged {} out-of-order exemplar lines; the collector dropped {} \
         exemplars bound for it",
        log.lines()
            .filter(|l| l.to_ascii_lowercase().contains("out of order exemplar")
                || l.contains("out-of-order exemplars"))
            .count(),
        // A sum of zeros can be -0.
        dropped("exemplars").abs()
    );
    for kind in ["samples", "histograms"] {
        if dropped(kind) > 0.0 {
            failures.push(format!(
                "the collector dropped {} {kind} bound for Prometheus",
                dropped(kind)
            ));
        }
    }
    drop(burners);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
