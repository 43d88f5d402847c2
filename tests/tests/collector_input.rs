//! Bad input at the collector's OTLP/HTTP door: each malformed body gets
//! the right 4xx naming the problem, is counted, and the collector keeps
//! serving; then a bounded mutation run over a real request body.

use osprey_e2e::collector::{Collector, gauges, post};
use osprey_e2e::require;

const PB: &str = "application/x-protobuf";

fn collector(tag: &str, extra: &str) -> Option<Collector> {
    require!(
        osprey_e2e::collector::binary().is_some(),
        "OSPREY_COLLECTOR_BIN unset: run `cargo xtask test`"
    );
    // A receiver that is never up: the queue only has to accept.
    Some(Collector::start(
        tag,
        &format!(
            "max_request_bytes = 65536\n{extra}[[remote_write]]\nname = \"rw\"\nurl = \"http://127.0.0.1:9/api/v1/write\"\n"
        ),
    ))
}

/// (what, path, content type, body, expected status, expected message).
type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, &'a str);

#[test]
fn malformed_bodies_get_the_right_4xx_and_the_collector_stays_up() {
    let Some(c) = collector("badinput", "") else {
        return;
    };
    let good = gauges("osprey_test_points", "bad", 0, 10);
    let trace = {
        // A trace request (span ids are random bytes, not UTF-8) sent to /v1/metrics.
        use opentelemetry_proto::tonic::{
            collector::trace::v1::ExportTraceServiceRequest, trace::v1::*,
        };
        use prost::Message;
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xff; 16],
                        span_id: vec![0xfe; 8],
                        name: "x".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    };
    // Just over the limit: the server answers 413 before reading it all, and
    // a body that fits the socket's send buffer lets the client read that.
    let huge = gauges("osprey_test_points", "bad", 0, 1500);
    assert!(huge.len() > 65536 && huge.len() < 100_000, "{}", huge.len());
    let cases: Vec<Case> = vec![
        (
            "garbage",
            "/v1/metrics",
            PB,
            b"\xff\xff\xff\xff\x0f not protobuf".to_vec(),
            400,
            "malformed metrics request",
        ),
        (
            "truncated",
            "/v1/metrics",
            PB,
            good[..good.len() - 7].to_vec(),
            400,
            "malformed metrics request",
        ),
        (
            "wrong signal",
            "/v1/metrics",
            PB,
            trace.clone(),
            400,
            "malformed metrics request",
        ),
        (
            "bad JSON",
            "/v1/traces",
            "application/json",
            b"{\"resourceSpans\": [".to_vec(),
            400,
            "malformed traces request",
        ),
        (
            "wrong JSON type",
            "/v1/logs",
            "application/json",
            b"{\"resourceLogs\": 5}".to_vec(),
            400,
            "malformed logs request",
        ),
        ("oversized", "/v1/metrics", PB, huge, 413, ""),
        (
            "unknown content type",
            "/v1/metrics",
            "text/plain",
            good.clone(),
            415,
            "unsupported Content-Type",
        ),
        ("unknown path", "/v1/profiles", PB, good.clone(), 404, ""),
    ];
    for (what, path, ct, body, want, message) in cases {
        let (status, _, answer) = post(&format!("{}{path}", c.http), ct, &body, &[]);
        assert_eq!(status, want, "{what}: status");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.contains(message),
            "{what}: answer {text:?} should say {message:?}"
        );
    }
    assert_eq!(
        c.metric(
            "osprey_collector_refused_requests_total",
            &[("reason", "bad_request")]
        ),
        5.0
    );
    assert_eq!(
        c.metric(
            "osprey_collector_refused_requests_total",
            &[("reason", "too_large")]
        ),
        1.0
    );
    assert_eq!(
        c.metric(
            "osprey_collector_refused_requests_total",
            &[("reason", "unsupported_media_type")]
        ),
        1.0
    );
    // Still up, and a good request is accepted and counted.
    assert_eq!(c.post("/v1/metrics", PB, &good), 200);
    assert_eq!(c.post("/v1/traces", PB, &trace), 200);
    assert_eq!(
        c.metric(
            "osprey_collector_received_total",
            &[("kind", "data_points")]
        ),
        10.0
    );
    assert_eq!(
        c.metric("osprey_collector_received_total", &[("kind", "spans")]),
        1.0
    );
}

#[test]
fn a_bearer_token_is_required_when_set() {
    let Some(c) = collector("auth", "bearer_token = \"s3cret\"\n") else {
        return;
    };
    let body = gauges("osprey_test_points", "auth", 0, 3);
    let url = format!("{}/v1/metrics", c.http);
    assert_eq!(post(&url, PB, &body, &[]).0, 401);
    assert_eq!(
        post(&url, PB, &body, &[("Authorization", "Bearer wrong")]).0,
        401
    );
    assert_eq!(
        post(&url, PB, &body, &[("Authorization", "Bearer s3cret")]).0,
        200
    );
    assert_eq!(
        c.metric(
            "osprey_collector_refused_requests_total",
            &[("reason", "unauthenticated")]
        ),
        2.0
    );
}

/// 3,000 mutations of a real request (bit flips, cuts, splices, byte runs,
/// deterministic seed): each answer is 200 or 400, never a 5xx or a hang,
/// and the collector serves a good request at the end.
#[test]
fn mutated_requests_never_break_the_collector() {
    let Some(c) = collector("mutate", "") else {
        return;
    };
    let good = gauges("osprey_test_points", "mutate", 0, 20);
    let url = format!("{}/v1/metrics", c.http);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    let (mut ok, mut bad) = (0, 0);
    for _ in 0..3000 {
        let mut b = good.clone();
        match rand(4) {
            0 => {
                for _ in 0..1 + rand(4) {
                    let i = rand(b.len());
                    b[i] ^= 1 << rand(8);
                }
            }
            1 => b.truncate(rand(b.len())),
            2 => {
                let (i, j) = (rand(b.len()), rand(b.len()));
                let chunk = b[i.min(j)..i.max(j)].to_vec();
                let at = rand(b.len());
                b.splice(at..at, chunk);
            }
            _ => {
                let i = rand(b.len());
                let v = rand(256) as u8;
                for x in b.iter_mut().skip(i).take(1 + rand(8)) {
                    *x = v;
                }
            }
        }
        match post(&url, PB, &b, &[]).0 {
            200 => ok += 1,
            400 => bad += 1,
            413 => {}
            s => panic!("status {s} for a mutated body"),
        }
    }
    assert!(ok > 0 && bad > 0, "ok {ok}, bad {bad}");
    assert_eq!(c.post("/v1/metrics", PB, &good), 200);
}

/// Delta sums cannot be written to Prometheus: with remote-write the only
/// way out, the answer is a partial success naming how many points and why.
#[test]
fn points_prometheus_cannot_store_are_a_partial_success() {
    use opentelemetry_proto::tonic::{
        collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse},
        metrics::v1::{
            AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
            metric,
        },
    };
    use prost::Message;
    let Some(c) = collector("partial", "") else {
        return;
    };
    let points = |n: u64| {
        (0..n)
            .map(|i| NumberDataPoint {
                time_unix_nano: i + 1,
                ..Default::default()
            })
            .collect()
    };
    let sum = |name: &str, temporality: AggregationTemporality, n| Metric {
        name: name.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points(n),
            aggregation_temporality: temporality as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    sum("d", AggregationTemporality::Delta, 4),
                    sum("c", AggregationTemporality::Cumulative, 3),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (status, _, body) = post(
        &format!("{}/v1/metrics", c.http),
        PB,
        &req.encode_to_vec(),
        &[],
    );
    assert_eq!(status, 200);
    let answer = ExportMetricsServiceResponse::decode(body.as_slice()).unwrap();
    let partial = answer.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_data_points, 4);
    assert!(
        partial.error_message.contains("delta"),
        "{}",
        partial.error_message
    );
    assert_eq!(
        c.metric("osprey_collector_partial_rejected_total", &[]),
        4.0
    );
    // A request Prometheus can take whole has no partial_success.
    let (status, _, body) = post(
        &format!("{}/v1/metrics", c.http),
        PB,
        &gauges("g", "partial", 0, 2),
        &[],
    );
    assert_eq!(status, 200);
    assert!(
        ExportMetricsServiceResponse::decode(body.as_slice())
            .unwrap()
            .partial_success
            .is_none()
    );
}
