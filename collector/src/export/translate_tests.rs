//! Translation of every OTLP metric kind, and a mutation run over a request
//! holding them all: decoding, translating and encoding never panic.

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint,
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar, metric::Data, number_data_point,
        summary_data_point::ValueAtQuantile,
    },
    resource::v1::Resource,
};
use prost::Message;

use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;

use super::encode::{self, Version};
use super::proto::BucketSpan;
use super::translate::{STALE_NAN, Series, Translation};
use super::view;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        description: "d".into(),
        data: Some(data),
        ..Default::default()
    }
}

fn request() -> ExportMetricsServiceRequest {
    let t = 1_700_000_000_000_000_000u64;
    let point = |v: f64, flags: u32| NumberDataPoint {
        attributes: vec![kv("route", "/a")],
        start_time_unix_nano: t - 60_000_000_000,
        time_unix_nano: t,
        flags,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let ex = |v: f64| Exemplar {
        value: Some(exemplar::Value::AsDouble(v)),
        time_unix_nano: t,
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        ..Default::default()
    };
    let cumulative = AggregationTemporality::Cumulative as i32;
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "shop"),
                    kv("service.namespace", "prod"),
                    kv("service.instance.id", "p-1"),
                    kv("k8s.pod.name", "p"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    metric(
                        "requests",
                        "{request}",
                        Data::Sum(Sum {
                            data_points: vec![point(5.0, 0)],
                            aggregation_temporality: cumulative,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "queue.depth",
                        "",
                        Data::Sum(Sum {
                            data_points: vec![point(3.0, 0)],
                            aggregation_temporality: cumulative,
                            is_monotonic: false,
                        }),
                    ),
                    metric(
                        "delta.requests",
                        "",
                        Data::Sum(Sum {
                            data_points: vec![point(1.0, 0)],
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "temp",
                        "Cel",
                        Data::Gauge(Gauge {
                            data_points: vec![point(21.5, 0), point(0.0, 1)],
                        }),
                    ),
                    metric(
                        "latency",
                        "s",
                        Data::Histogram(Histogram {
                            aggregation_temporality: cumulative,
                            data_points: vec![HistogramDataPoint {
                                attributes: vec![kv("route", "/a")],
                                time_unix_nano: t,
                                count: 6,
                                sum: Some(3.5),
                                bucket_counts: vec![1, 2, 3],
                                explicit_bounds: vec![0.1, 1.0],
                                exemplars: vec![ex(0.05), ex(0.5), ex(7.0)],
                                ..Default::default()
                            }],
                        }),
                    ),
                    metric(
                        "rpc",
                        "ms",
                        Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                time_unix_nano: t,
                                count: 4,
                                sum: 10.0,
                                quantile_values: vec![ValueAtQuantile {
                                    quantile: 0.5,
                                    value: 2.0,
                                }],
                                ..Default::default()
                            }],
                        }),
                    ),
                    metric(
                        "expo",
                        "",
                        Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![
                                ExponentialHistogramDataPoint {
                                    attributes: vec![kv("route", "/e")],
                                    start_time_unix_nano: t - 60_000_000_000,
                                    time_unix_nano: t,
                                    count: 5,
                                    sum: Some(9.5),
                                    scale: 3,
                                    zero_count: 1,
                                    positive: Some(Buckets {
                                        offset: -1,
                                        bucket_counts: vec![2, 0, 2],
                                    }),
                                    exemplars: vec![ex(1.1)],
                                    ..Default::default()
                                },
                                // Coarser than Prometheus' coarsest schema.
                                ExponentialHistogramDataPoint {
                                    scale: -5,
                                    count: 1,
                                    ..Default::default()
                                },
                            ],
                            aggregation_temporality: cumulative,
                        }),
                    ),
                ],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn find<'s, 'a>(series: &'s [Series<'a>], name: &str, extra: &[(&str, &str)]) -> &'s Series<'a> {
    series
        .iter()
        .find(|s| {
            s.labels.iter().any(|(k, v)| k == "__name__" && v == name)
                && extra
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .unwrap_or_else(|| panic!("no {name} {extra:?} in {series:#?}"))
}

#[test]
fn every_kind_becomes_prometheus_series() {
    let mut tr = Translation {
        add_suffixes: true,
        native_histograms: true,
        promote: vec!["k8s.pod.name".into()],
        ..Default::default()
    };
    tr.external_labels.insert("cluster".into(), "eu".into());
    let body = request().encode_to_vec();
    let req = view::read(&body).unwrap();
    let out = tr.translate(&req, 0);
    let s = &out.series;
    let c = find(
        s,
        "requests_total",
        &[
            ("job", "prod/shop"),
            ("instance", "p-1"),
            ("k8s_pod_name", "p"),
            ("cluster", "eu"),
            ("route", "/a"),
        ],
    );
    assert_eq!(
        (c.value, c.timestamp_ms, c.created_ms),
        (5.0, 1_700_000_000_000, 1_699_999_940_000)
    );
    assert_eq!(find(s, "queue_depth", &[]).value, 3.0);
    assert_eq!(find(s, "temp_celsius", &[]).value, 21.5);
    assert!(
        s.iter().any(|x| x.value.to_bits() == STALE_NAN.to_bits()),
        "no-recorded-value point is a staleness marker"
    );
    // Cumulative buckets; each exemplar in the first bucket that holds it.
    let b = |le| find(s, "latency_seconds_bucket", &[("le", le)]);
    assert_eq!(
        (b("0.1").value, b("1.0").value, b("+Inf").value),
        (1.0, 3.0, 6.0)
    );
    assert_eq!(b("0.1").exemplars.len(), 1);
    assert_eq!(b("1.0").exemplars[0].value, 0.5);
    assert_eq!(
        b("+Inf").exemplars[0].labels,
        vec![
            ("span_id".into(), "cd".repeat(8).into()),
            ("trace_id".into(), "ab".repeat(16).into())
        ]
    );
    assert_eq!(find(s, "latency_seconds_sum", &[]).value, 3.5);
    assert_eq!(find(s, "latency_seconds_count", &[]).value, 6.0);
    assert_eq!(
        find(s, "rpc_milliseconds", &[("quantile", "0.5")]).value,
        2.0
    );
    assert_eq!(find(s, "rpc_milliseconds_count", &[]).value, 4.0);
    let info = find(
        s,
        "target_info",
        &[("job", "prod/shop"), ("k8s_pod_name", "p")],
    );
    assert_eq!(info.value, 1.0);
    assert_eq!(out.rejected.get("delta_temporality"), Some(&1));
    assert_eq!(out.rejected.get("exponential_histogram_scale"), Some(&1));
    // A native histogram: OTLP buckets -1 and 1 are Prometheus' 0 and 2,
    // one span with an empty bucket between them.
    let e = find(s, "expo", &[("route", "/e")]);
    let h = e.histogram.as_deref().expect("a native histogram");
    assert_eq!(
        (h.schema, h.count_int, h.sum, h.zero_count_int),
        (3, 5, 9.5, 1)
    );
    assert_eq!(
        h.positive_spans,
        [BucketSpan {
            offset: 0,
            length: 3
        }]
    );
    assert_eq!(h.positive_deltas, [2, -2, 2]);
    assert_eq!(
        (h.timestamp, e.created_ms),
        (1_700_000_000_000, 1_699_999_940_000)
    );
    assert_eq!(e.exemplars[0].value, 1.1);
    assert_eq!((out.samples(), out.histograms()), (s.len() as u64 - 1, 1));
    // Label sets are sorted, as remote-write requires.
    for x in s {
        assert!(
            x.labels.windows(2).all(|w| w[0].0 < w[1].0),
            "{:?}",
            x.labels
        );
    }
}

#[test]
fn without_native_histograms_exponential_points_are_rejected() {
    let body = request().encode_to_vec();
    let req = view::read(&body).unwrap();
    let out = Translation::default().translate(&req, 0);
    assert_eq!(out.rejected.get("exponential_histogram"), Some(&2));
    assert_eq!(out.histograms(), 0);
    assert!(!out.series.iter().any(|s| s.meta.family == "expo"));
}

#[test]
fn mutated_requests_never_panic_anywhere_on_the_way_out() {
    let good = request().encode_to_vec();
    let tr = Translation {
        add_suffixes: true,
        native_histograms: true,
        ..Default::default()
    };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    let mut decoded = 0;
    for _ in 0..20_000 {
        let mut b = good.clone();
        for _ in 0..1 + rand(3) {
            if b.is_empty() {
                break;
            }
            match rand(3) {
                0 => {
                    let i = rand(b.len());
                    b[i] ^= 1 << rand(8);
                }
                1 => b.truncate(rand(b.len() + 1)),
                _ => {
                    let i = rand(b.len());
                    b[i] = rand(256) as u8;
                }
            }
        }
        let prost_ok = ExportMetricsServiceRequest::decode(b.as_slice()).is_ok();
        assert_eq!(view::read(&b).is_ok(), prost_ok, "body {b:02x?}");
        if let Ok(req) = view::read(&b) {
            decoded += 1;
            let out = tr.translate(&req, 1);
            let refs: Vec<&Series> = out.series.iter().collect();
            encode::encode(&refs, Version::V1);
            encode::encode(&refs, Version::V2);
        }
    }
    assert!(decoded > 1000, "{decoded} mutations decoded");
}

#[test]
fn where_label_names_collide_the_stronger_source_wins() {
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "shop"), kv("service.instance.id", "i")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![metric(
                    "g",
                    "",
                    Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![
                                kv("job", "mine"),
                                kv("a.b", "1"),
                                kv("a_b", "2"),
                                kv("__name__", "x"),
                                kv("le", "y"),
                            ],
                            value: Some(number_data_point::Value::AsDouble(1.0)),
                            ..Default::default()
                        }],
                    }),
                )],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let body = req.encode_to_vec();
    let req = view::read(&body).unwrap();
    let out = Translation::default().translate(&req, 5);
    let labels: Vec<(&str, &str)> = out.series[0]
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // A later attribute over an earlier one, attributes over the resource's
    // job, the metric's name over an attribute called __name__.
    assert_eq!(
        labels,
        [
            ("__name__", "g"),
            ("a_b", "2"),
            ("instance", "i"),
            ("job", "mine"),
            ("le", "y")
        ]
    );
}
