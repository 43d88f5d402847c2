//! The agent's endpoints over TLS with client certificates, as the chart's
//! `agent.tls` sets them up: a real Prometheus scrapes `/metrics` with its
//! client certificate and stores this test's flow; `osprey-agent observe`
//! streams it with its own; a request without a certificate gets 401
//! (counted), one from another CA fails the handshake, plain HTTP is not
//! served, and `/healthz` stays open to a kubelet probe (no certificate).

use std::{path::Path, process::Command};

use osprey_e2e::{
    agent,
    certs::{CLIENT, Certs, SERVER_ON_LOOPBACK, curl_status},
    eventually,
    netns::PodPair,
    prometheus::{self, Prometheus},
    require, traffic,
};

fn curl(dir: &Path, url: &str, extra: &[&str]) -> Option<u16> {
    curl_status(dir, &[extra, &[url]].concat())
}

#[test]
fn endpoints_over_mtls_serve_prometheus_and_observe_and_refuse_the_rest() {
    let Some(certs) = Certs::new("agent") else {
        return;
    };
    certs
        .leaf("ca", "agent", SERVER_ON_LOOPBACK)
        .leaf("ca", "prometheus", CLIENT)
        .leaf("ca", "observer", CLIENT)
        .leaf("other-ca", "stranger", CLIENT);
    let dir = certs.path();
    let file = |name: &str| dir.join(name).display().to_string();
    let Some(agent) = agent::for_test_by_ip(&[
        "--tls-cert-file",
        &file("agent.pem"),
        "--tls-key-file",
        &file("agent.key"),
        "--tls-client-ca-file",
        &file("ca.pem"),
    ]) else {
        return;
    };
    require!(
        prometheus::binary().is_some(),
        "prometheus is not installed (cargo xtask setup)"
    );
    assert!(agent.base_url.starts_with("https://"), "{}", agent.base_url);
    let base = agent.base_url.clone();
    let ca = ["--cacert", "ca.pem"];

    // Refusals first, so the 401 count below is exactly this test's.
    assert_eq!(
        curl(dir, &format!("{base}/healthz"), &ca),
        Some(200),
        "/healthz without a client certificate (a kubelet probe)"
    );
    for path in ["/metrics", "/api/v1/flows?follow=false"] {
        assert_eq!(
            curl(dir, &format!("{base}{path}"), &ca),
            Some(401),
            "{path} without a client certificate"
        );
    }
    let stranger = [
        &ca[..],
        &["--cert", "stranger.pem", "--key", "stranger.key"],
    ]
    .concat();
    assert_eq!(
        curl(dir, &format!("{base}/metrics"), &stranger),
        None,
        "another CA's client certificate fails the handshake"
    );
    let plain = base.replace("https://", "http://");
    assert_eq!(
        curl(dir, &format!("{plain}/metrics"), &[]),
        None,
        "plain HTTP is not served"
    );

    // This test's flow: 5 datagrams each way between its own pods.
    let pair = PodPair::new("tl", "10.234.0.1", "10.234.0.2", 24);
    let (a, b) = (pair.a_ip.to_string(), pair.b_ip.to_string());
    let udp = traffic::udp(&pair, 7390, (5, 100), (5, 100));

    // Prometheus scrapes over TLS with its client certificate.
    let prom = Prometheus::launch(&prometheus::binary().unwrap(), &[], |_| {
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: osprey\n\
             \x20   scheme: https\n\
             \x20   tls_config: {{ca_file: '{ca}', cert_file: '{cert}', key_file: '{key}'}}\n\
             \x20   static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
            ca = file("ca.pem"),
            cert = file("prometheus.pem"),
            key = file("prometheus.key"),
            port = agent.port(),
        )
    })
    .unwrap_or_else(|e| panic!("Prometheus must start: {e}"));
    let query = format!(
        "sum(osprey_flow_packets_total{{source_ip=\"{a}\",destination_ip=\"{b}\",\
         destination_port=\"7390\",direction=\"egress\"}})"
    );
    let packets = eventually(
        20,
        "this test's flow in Prometheus, scraped over TLS",
        || {
            prom.query(&query)
                .first()
                .map(|(_, v)| *v)
                .filter(|v| *v >= 5.0)
        },
    );
    assert_eq!(packets, 5.0, "{query}");
    assert_eq!(
        prom.targets_up(),
        vec![(
            format!("https://127.0.0.1:{}/metrics", agent.port()),
            "up".to_owned()
        )]
    );
    let unauthenticated = prom.query("osprey_http_unauthenticated_requests_total");
    assert_eq!(
        unauthenticated.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
        vec![2.0],
        "the two 401s above, and nothing else"
    );

    // observe, with the observer's certificate; without one, a clear error.
    let observe = |extra: &[&str]| {
        Command::new(agent::binary().unwrap())
            .args(["observe", "--server", &base, "-o", "json", "--ip", &a])
            .args(["--tls-ca-file", &file("ca.pem")])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = observe(&[
        "--tls-cert-file",
        &file("observer.pem"),
        "--tls-key-file",
        &file("observer.key"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sent: u64 = records
        .iter()
        .filter(|r| {
            r["source_ip"] == a.as_str()
                && r["destination_port"] == 7390
                && r["source_port"] == udp.a_port
                && r["traffic_direction"] == "egress"
        })
        .map(|r| r["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(sent, 5, "{records:#?}");
    let out = observe(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("401"),
        "observe without a client certificate: {err}"
    );
}
