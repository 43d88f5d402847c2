//! The walk accepts exactly what prost's decode accepts and counts what
//! `count_metrics` counts on the decoded request: a request holding every
//! field the walk knows, mutated many times, and hand-made corner cases.

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{
        AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
    },
    metrics::v1::{
        AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint,
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar,
        exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
        summary_data_point::ValueAtQuantile,
    },
    resource::v1::Resource,
};
use prost::Message;

use super::{count_metrics, walk};

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
    }
}

fn attrs() -> Vec<KeyValue> {
    use any_value::Value::*;
    vec![
        kv("s", StringValue("v".into())),
        kv("b", BoolValue(true)),
        kv("i", IntValue(-3)),
        kv("d", DoubleValue(1.5)),
        kv("y", BytesValue(vec![0xff, 0])),
        kv(
            "a",
            ArrayValue(self::ArrayValue {
                values: vec![AnyValue {
                    value: Some(KvlistValue(KeyValueList {
                        values: vec![kv("n", StringValue("x".into()))],
                    })),
                }],
            }),
        ),
    ]
}

fn ex(n: usize) -> Vec<Exemplar> {
    (0..n)
        .map(|i| Exemplar {
            filtered_attributes: attrs(),
            time_unix_nano: 7,
            span_id: vec![1; 8],
            trace_id: vec![2; 16],
            value: Some(if i % 2 == 0 {
                exemplar::Value::AsDouble(0.5)
            } else {
                exemplar::Value::AsInt(3)
            }),
        })
        .collect()
}

fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        description: "d".into(),
        unit: "s".into(),
        metadata: attrs(),
        data: Some(data),
    }
}

fn number(n: usize) -> Vec<NumberDataPoint> {
    (0..n)
        .map(|i| NumberDataPoint {
            attributes: attrs(),
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            exemplars: ex(i),
            flags: 1,
            value: Some(number_data_point::Value::AsInt(i as i64)),
        })
        .collect()
}

pub(crate) fn request() -> ExportMetricsServiceRequest {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let delta = AggregationTemporality::Delta as i32;
    let expo = |scale| ExponentialHistogramDataPoint {
        attributes: attrs(),
        count: 3,
        sum: Some(1.0),
        scale,
        zero_count: 1,
        positive: Some(Buckets {
            offset: -2,
            bucket_counts: vec![1, 300, 0],
        }),
        negative: Some(Buckets {
            offset: 5,
            bucket_counts: vec![1],
        }),
        flags: 0,
        exemplars: ex(2),
        min: Some(0.1),
        max: Some(9.0),
        zero_threshold: 1e-9,
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: attrs(),
                dropped_attributes_count: 2,
                entity_refs: vec![EntityRef {
                    schema_url: "u".into(),
                    r#type: "t".into(),
                    id_keys: vec!["k".into()],
                    description_keys: vec!["d".into()],
                }],
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "n".into(),
                    version: "1".into(),
                    attributes: attrs(),
                    dropped_attributes_count: 1,
                }),
                metrics: vec![
                    metric(
                        "g",
                        Data::Gauge(Gauge {
                            data_points: number(3),
                        }),
                    ),
                    metric(
                        "c",
                        Data::Sum(Sum {
                            data_points: number(2),
                            aggregation_temporality: cumulative,
                            is_monotonic: true,
                        }),
                    ),
                    metric(
                        "d",
                        Data::Sum(Sum {
                            data_points: number(2),
                            aggregation_temporality: delta,
                            is_monotonic: false,
                        }),
                    ),
                    metric(
                        "h",
                        Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes: attrs(),
                                count: 4,
                                sum: Some(2.0),
                                bucket_counts: vec![1, 3],
                                explicit_bounds: vec![0.5],
                                exemplars: ex(3),
                                min: Some(0.0),
                                max: Some(1.0),
                                ..Default::default()
                            }],
                            aggregation_temporality: delta,
                        }),
                    ),
                    metric(
                        "e",
                        Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![expo(3), expo(-7), expo(20)],
                            aggregation_temporality: cumulative,
                        }),
                    ),
                    metric(
                        "q",
                        Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                attributes: attrs(),
                                count: 2,
                                sum: 3.0,
                                quantile_values: vec![ValueAtQuantile {
                                    quantile: 0.5,
                                    value: 1.0,
                                }],
                                ..Default::default()
                            }],
                        }),
                    ),
                ],
                schema_url: "s".into(),
            }],
            schema_url: "r".into(),
        }],
    }
}

/// What prost and `count_metrics` make of `body`, and what the walk does.
fn both(body: &[u8]) -> (Option<super::Counts>, Option<super::Counts>) {
    let decoded = ExportMetricsServiceRequest::decode(body)
        .ok()
        .map(|r| count_metrics(&r));
    (decoded, walk::metrics(body).ok())
}

#[test]
fn the_walk_counts_what_the_decoded_request_holds() {
    let body = request().encode_to_vec();
    let (decoded, walked) = both(&body);
    let counts = walked.expect("a valid request");
    assert_eq!(Some(counts), decoded);
    // 3 + 2 + 2 + 1 + 3 + 1 points; exemplars 0+1+2, 0+1, 0+1, 3, 2×3.
    assert_eq!(counts.items, 12);
    assert_eq!(counts.exemplars, 3 + 1 + 1 + 3 + 6);
    // Delta: 2 (sum) + 1 (histogram); scale -7: 1.
    assert_eq!((counts.not_for_prometheus, counts.exponential), (4, 2));
}

#[test]
fn mutated_bodies_are_accepted_and_counted_exactly_as_prost_does() {
    let good = request().encode_to_vec();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    let (mut valid, mut invalid) = (0, 0);
    for _ in 0..60_000 {
        let mut b = good.clone();
        for _ in 0..1 + rand(3) {
            if b.is_empty() {
                break;
            }
            match rand(4) {
                0 => {
                    let i = rand(b.len());
                    b[i] ^= 1 << rand(8);
                }
                1 => b.truncate(rand(b.len() + 1)),
                2 => {
                    let i = rand(b.len());
                    b.insert(i, rand(256) as u8);
                }
                _ => {
                    let i = rand(b.len());
                    b[i] = rand(256) as u8;
                }
            }
        }
        let (decoded, walked) = both(&b);
        assert_eq!(decoded, walked, "body {b:02x?}");
        if walked.is_some() {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    assert!(
        valid > 5_000 && invalid > 5_000,
        "{valid} valid, {invalid} invalid"
    );
}

/// Raw protobuf: a field key and a length-delimited body.
fn field(tag: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

#[test]
fn a_metrics_data_given_twice_merges_or_replaces_as_prost_does() {
    let gauge = Gauge {
        data_points: number(2),
    }
    .encode_to_vec();
    let sum = Sum {
        data_points: number(1),
        aggregation_temporality: AggregationTemporality::Delta as i32,
        is_monotonic: true,
    }
    .encode_to_vec();
    for data in [
        [field(5, &gauge), field(5, &gauge)].concat(), // merged: 4 points
        [field(5, &gauge), field(7, &sum)].concat(),   // replaced: 1 delta point
        [field(7, &sum), field(5, &gauge)].concat(),   // replaced: 2 gauge points
        [field(7, &sum), field(7, &sum)].concat(),     // merged: 2 delta points
    ] {
        let body = field(1, &field(2, &field(2, &data)));
        let (decoded, walked) = both(&body);
        assert!(walked.is_some());
        assert_eq!(decoded, walked);
    }
}

#[test]
fn nesting_stops_where_prost_stops() {
    // AnyValue arrays nested n deep in a resource attribute.
    let nested = |n: usize| {
        let mut v = AnyValue {
            value: Some(any_value::Value::IntValue(1)),
        };
        for _ in 0..n {
            v = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "k".into(),
                        value: Some(v),
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }],
        }
        .encode_to_vec()
    };
    let mut seen = (false, false);
    for n in 40..60 {
        let (decoded, walked) = both(&nested(n));
        assert_eq!(decoded.is_some(), walked.is_some(), "depth {n}");
        seen = (seen.0 || walked.is_some(), seen.1 || walked.is_none());
    }
    assert_eq!(seen, (true, true), "the limit lies in the range tried");
}
