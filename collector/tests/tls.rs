//! mTLS on OTLP/HTTP through the real binary, with certificates made by
//! `openssl` (osprey-e2e's `certs`) and requests sent by `curl`: a client certificate from the
//! configured CA is accepted, none gets 401 (counted), one from another CA
//! fails the handshake, and plain HTTP is not served.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    metrics::v1::{Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric},
};
use prost::Message;

struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// POSTs `body.pb` as OTLP/HTTP protobuf; the status, or None.
fn curl(dir: &Path, url: &str, extra: &[&str]) -> Option<u16> {
    let post = [
        "-H",
        "Content-Type: application/x-protobuf",
        "--data-binary",
        "@body.pb",
    ];
    osprey_e2e::certs::curl_status(dir, &[&post[..], extra, &[url]].concat())
}

#[test]
fn mtls_accepts_the_cas_clients_and_answers_401_without_a_certificate() {
    use osprey_e2e::certs::{CLIENT, Certs, SERVER_ON_LOOPBACK};
    let Some(certs) = Certs::new("collector") else {
        return;
    };
    certs
        .leaf("ca", "server", SERVER_ON_LOOPBACK)
        .leaf("ca", "agent", CLIENT)
        .leaf("other-ca", "stranger", CLIENT);
    let dir = certs.path().to_owned();
    let body = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "tls_test".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 1,
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    std::fs::write(dir.join("body.pb"), body.encode_to_vec()).unwrap();
    let d = |f: &str| dir.join(f).display().to_string();
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\notlp_grpc_listen = \"127.0.0.1:0\"\notlp_http_listen = \"127.0.0.1:0\"\nwal_dir = {:?}\n\
         tls_cert_file = {:?}\ntls_key_file = {:?}\ntls_client_ca_file = {:?}\n\
         [[remote_write]]\nname = \"rw\"\nurl = \"http://127.0.0.1:9/api/v1/write\"\n",
        d("wal"),
        d("server.pem"),
        d("server.key"),
        d("ca.pem")
    );
    std::fs::write(dir.join("c.toml"), cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_osprey-collector"))
        .arg("--config")
        .arg(dir.join("c.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _grpc = lines.next().unwrap().unwrap();
    let http = lines.next().unwrap().unwrap();
    let own = lines.next().unwrap().unwrap();
    let _c = Collector(child);
    let port = http.rsplit(':').next().unwrap().to_owned();
    let url = format!("https://127.0.0.1:{port}/v1/metrics");
    let ca = ["--cacert", "ca.pem"];

    assert_eq!(
        curl(
            &dir,
            &url,
            &[&ca[..], &["--cert", "agent.pem", "--key", "agent.key"]].concat()
        ),
        Some(200),
        "the CA's client"
    );
    assert_eq!(curl(&dir, &url, &ca), Some(401), "no client certificate");
    assert_eq!(
        curl(
            &dir,
            &url,
            &[
                &ca[..],
                &["--cert", "stranger.pem", "--key", "stranger.key"]
            ]
            .concat()
        ),
        None,
        "another CA's client fails the handshake"
    );
    assert_eq!(
        curl(&dir, &format!("http://127.0.0.1:{port}/v1/metrics"), &[]),
        None,
        "no plain HTTP"
    );
    let own = own
        .trim()
        .strip_prefix("osprey-collector: serving ")
        .unwrap()
        .trim_end_matches("/healthz");
    let metrics = Command::new("curl")
        .args(["-s", &format!("{own}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        text.contains("osprey_collector_refused_requests_total{transport=\"http\",signal=\"metrics\",reason=\"unauthenticated\"} 1"),
        "{text}"
    );
}
