//! OTLP exponential histograms through the collector into a real
//! Prometheus 3.5 as native histograms, over remote-write 2.0 and 1.0 side
//! by side: count, sum, every bucket's bounds and count (the scale-10 point
//! is merged down to schema 8 on the way), and the exemplars' trace ids.
//!
//! Prometheus 3.5's remote-write 1.0 handler appends a series' exemplars
//! before its histograms, so the exemplar of a native histogram's very
//! first sample finds no series yet and is dropped (logged at debug); from
//! the second sample on they arrive. 2.0 appends them with the sample. The
//! test sends two pushes and checks exactly that.

use opentelemetry_proto::tonic::{
    collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse},
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint,
        Metric, ResourceMetrics, ScopeMetrics, exemplar, exponential_histogram_data_point::Buckets,
        metric,
    },
    resource::v1::Resource,
};
use osprey_e2e::collector::{Collector, post};
use osprey_e2e::prometheus::Prometheus;
use osprey_e2e::{peers, require_peer};
use prost::Message;

/// Push `k`'s exemplar has this trace id with `k` as its last byte.
const TRACE_ID: [u8; 15] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47,
];
const SPAN_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

fn expo(
    name: &str,
    temporality: AggregationTemporality,
    p: ExponentialHistogramDataPoint,
) -> Metric {
    Metric {
        name: name.into(),
        unit: "s".into(),
        description: "request latency".into(),
        data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![p],
            aggregation_temporality: temporality as i32,
        })),
        ..Default::default()
    }
}

/// Push `k` (1, 2, …): one cumulative point at scale 10 (finer than
/// Prometheus' finest schema, 8) with `k` times the first push's counts,
/// and one delta point, which Prometheus cannot take.
fn request(now_ns: u64, k: u64) -> ExportMetricsServiceRequest {
    let mut trace_id = TRACE_ID.to_vec();
    trace_id.push(k as u8);
    let point = ExponentialHistogramDataPoint {
        attributes: vec![kv("route", "/checkout")],
        start_time_unix_nano: now_ns - 60_000_000_000,
        time_unix_nano: now_ns,
        count: 20 * k,
        sum: Some(13.0625 * k as f64),
        scale: 10,
        zero_count: 3 * k,
        // Scale-10 buckets 4..=8; merged by fours into schema-8 buckets
        // 1 (4..=7: 1+2+3+4) and 2 (8: 5), which Prometheus numbers 2 and 3.
        positive: Some(Buckets {
            offset: 4,
            bucket_counts: vec![k, 2 * k, 3 * k, 4 * k, 5 * k],
        }),
        // Scale-10 bucket 0 → schema-8 bucket 0 → Prometheus' 1: 2 points.
        negative: Some(Buckets {
            offset: 0,
            bucket_counts: vec![2 * k],
        }),
        exemplars: vec![Exemplar {
            value: Some(exemplar::Value::AsDouble(1.006)),
            time_unix_nano: now_ns,
            trace_id,
            span_id: SPAN_ID.to_vec(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let delta = ExponentialHistogramDataPoint {
        time_unix_nano: now_ns,
        count: 1,
        scale: 0,
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "shop"),
                    kv("service.instance.id", "shop-1"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    expo("http.latency", AggregationTemporality::Cumulative, point),
                    expo("http.delta_latency", AggregationTemporality::Delta, delta),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A bucket as Prometheus' query API shows it: (lower, upper, count).
type Bucket = (f64, f64, f64);

/// The native histogram Prometheus holds for `selector`: (count, sum, buckets).
fn histogram(prom: &Prometheus, selector: &str) -> Option<(f64, f64, Vec<Bucket>)> {
    let resp: serde_json::Value = ureq::get(&format!("{}/api/v1/query", prom.base_url))
        .query("query", selector)
        .call()
        .ok()?
        .into_json()
        .ok()?;
    let h = &resp["data"]["result"][0]["histogram"][1];
    let num = |v: &serde_json::Value| v.as_str()?.parse::<f64>().ok();
    let buckets = h["buckets"]
        .as_array()?
        .iter()
        .map(|b| Some((num(&b[1])?, num(&b[2])?, num(&b[3])?)))
        .collect::<Option<Vec<_>>>()?;
    Some((num(&h["count"])?, num(&h["sum"])?, buckets))
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

#[test]
fn exponential_histograms_arrive_as_native_histograms_over_rw2_and_rw1() {
    let bin = require_peer!(peers::PROMETHEUS3);
    // Prometheus 3.5 refuses native histograms over remote-write without it.
    let prom = Prometheus::start_with(
        &bin,
        &[],
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ],
    )
    .expect("starting Prometheus 3");
    let exporter = |name: &str, version: &str, native: bool| {
        format!(
            "[[remote_write]]\nname = {name:?}\nurl = {:?}\nversion = {version:?}\nsend_native_histograms = {native}\n[remote_write.external_labels]\nrw = {name:?}\n",
            prom.write_url()
        )
    };
    // A third exporter for a receiver without native histograms.
    let c = Collector::start(
        "native",
        &format!(
            "{}{}{}",
            exporter("v2", "2", true),
            exporter("v1", "1", true),
            exporter("off", "2", false)
        ),
    );
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let push = |k: u64| {
        let (status, _, body) = post(
            &format!("{}/v1/metrics", c.http),
            "application/x-protobuf",
            &request(now_ns - (2 - k) * 1_000_000_000, k).encode_to_vec(),
            &[],
        );
        assert_eq!(status, 200);
        // The delta point is refused, as before; the cumulative one is taken.
        let partial = ExportMetricsServiceResponse::decode(body.as_slice())
            .unwrap()
            .partial_success
            .expect("the delta point is a partial success");
        assert_eq!(partial.rejected_data_points, 1);
    };
    push(1);
    // The first push is delivered by both exporters before the second.
    osprey_e2e::eventually(60, "the first push to be delivered", || {
        (c.metric("osprey_collector_sent_total", &[("kind", "histograms")]) == 2.0).then_some(())
    });
    push(2);
    assert_eq!(
        c.metric("osprey_collector_partial_rejected_total", &[]),
        2.0
    );

    let r = 2f64.powf(1.0 / 256.0);
    // The second push: twice the first's counts.
    let want_buckets = [
        (-r, -1.0, 4.0),
        (-1e-128, 1e-128, 6.0),
        (r, r * r, 20.0),
        (r * r, r * r * r, 10.0),
    ];
    for rw in ["v2", "v1"] {
        let selector = format!("http_latency_seconds{{rw=\"{rw}\",route=\"/checkout\"}}");
        let got = osprey_e2e::settle(60, || {
            let h = histogram(&prom, &selector);
            (h.as_ref().is_some_and(|h| h.0 == 40.0), h)
        })
        .unwrap_or_else(|| panic!("no native histogram for {selector}"));
        let (count, sum, buckets) = got;
        assert_eq!((count, sum), (40.0, 26.125), "{rw}");
        assert_eq!(buckets.len(), want_buckets.len(), "{rw}: {buckets:?}");
        for (g, w) in buckets.iter().zip(&want_buckets) {
            assert!(
                close(g.0, w.0) && close(g.1, w.1) && g.2 == w.2,
                "{rw}: bucket {g:?}, expected {w:?} (all: {buckets:?})"
            );
        }
        let q = |f: &str| {
            prom.query(&format!("{f}({selector})"))
                .first()
                .map(|(_, v)| *v)
        };
        assert_eq!(q("histogram_count"), Some(40.0), "{rw}");
        assert_eq!(q("histogram_sum"), Some(26.125), "{rw}");
        // The receiver confirmed what it wrote (v2 headers), nothing dropped.
        assert_eq!(
            c.metric(
                "osprey_collector_sent_total",
                &[("exporter", rw), ("kind", "histograms")]
            ),
            2.0,
            "{rw}"
        );
        let exemplars = prom.exemplars(&selector, 300);
        let trace_ids: Vec<_> = exemplars
            .iter()
            .map(|(_, l, _)| l["trace_id"].as_str().unwrap_or_default())
            .collect();
        let want: &[&str] = if rw == "v2" {
            &[
                "4bf92f3577b34da6a3ce929d0e0e4701",
                "4bf92f3577b34da6a3ce929d0e0e4702",
            ]
        } else {
            // See the module's comment: v1 loses the first sample's exemplar.
            &["4bf92f3577b34da6a3ce929d0e0e4702"]
        };
        assert_eq!(trace_ids, want, "{rw}: {exemplars:?}");
        for (_, labels, value) in &exemplars {
            assert_eq!(labels["span_id"], "00f067aa0ba902b7");
            assert_eq!(*value, 1.006);
        }
    }
    assert_eq!(
        c.metric(
            "osprey_collector_dropped_total",
            &[("reason", "partial_write")]
        ),
        0.0
    );
    // Each exporter drops the delta point it was handed, counted.
    assert_eq!(
        c.metric(
            "osprey_collector_dropped_total",
            &[("reason", "delta_temporality")]
        ),
        6.0
    );
    // Without send_native_histograms the points are dropped, counted.
    let off = osprey_e2e::settle(30, || {
        let n = c.metric(
            "osprey_collector_dropped_total",
            &[("exporter", "off"), ("reason", "exponential_histogram")],
        );
        (n == 2.0, n)
    });
    assert_eq!(off, 2.0);
    assert!(
        prom.query("count({rw=\"off\",__name__=~\"http_.*\"})")
            .is_empty()
    );
    assert!(prom.query("http_delta_latency_seconds").is_empty());
}
