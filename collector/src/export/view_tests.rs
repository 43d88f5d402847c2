//! Reading a request in place gives what prost's decode gives, for every
//! field translation uses: the in-place request, turned back into prost's
//! messages, encodes to the same bytes as prost's decode of the same body
//! with the fields translation ignores left out — over the ingest walk's
//! rich request and tens of thousands of mutations of it.

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{self as common, any_value},
    metrics::v1::{
        self as metrics, exemplar, exponential_histogram_data_point, metric::Data as PData,
        number_data_point, summary_data_point::ValueAtQuantile,
    },
    resource::v1 as resource,
};
use prost::Message;

use super::view::{self, AnyValue, Data, Number};

fn any(v: &AnyValue<'_>) -> common::AnyValue {
    use any_value::Value as V;
    let value = match v {
        AnyValue::Empty => return common::AnyValue::default(),
        AnyValue::String(s) => V::StringValue((*s).to_owned()),
        AnyValue::Bool(b) => V::BoolValue(*b),
        AnyValue::Int(i) => V::IntValue(*i),
        AnyValue::Double(d) => V::DoubleValue(*d),
        AnyValue::Bytes(b) => V::BytesValue(b.to_vec()),
        AnyValue::Array(items) => V::ArrayValue(common::ArrayValue {
            values: items
                .iter()
                .map(|i| i.as_ref().map(any).unwrap_or_default())
                .collect(),
        }),
        AnyValue::Kvlist(kvs) => V::KvlistValue(common::KeyValueList { values: attrs(kvs) }),
    };
    common::AnyValue { value: Some(value) }
}

fn attrs(kvs: &[view::KeyValue<'_>]) -> Vec<common::KeyValue> {
    kvs.iter()
        .map(|kv| common::KeyValue {
            key: kv.key.to_owned(),
            value: kv.value.as_ref().map(any),
        })
        .collect()
}

fn exemplars(es: &[view::Exemplar<'_>]) -> Vec<metrics::Exemplar> {
    es.iter()
        .map(|e| metrics::Exemplar {
            filtered_attributes: attrs(&e.filtered_attributes),
            time_unix_nano: e.time_unix_nano,
            span_id: e.span_id.to_vec(),
            trace_id: e.trace_id.to_vec(),
            value: e.value.map(|v| match v {
                Number::Double(d) => exemplar::Value::AsDouble(d),
                Number::Int(i) => exemplar::Value::AsInt(i),
            }),
        })
        .collect()
}

fn numbers(ps: &[view::NumberDataPoint<'_>]) -> Vec<metrics::NumberDataPoint> {
    ps.iter()
        .map(|p| metrics::NumberDataPoint {
            attributes: attrs(&p.attributes),
            start_time_unix_nano: p.start_time_unix_nano,
            time_unix_nano: p.time_unix_nano,
            exemplars: exemplars(&p.exemplars),
            flags: p.flags,
            value: p.value.map(|v| match v {
                Number::Double(d) => number_data_point::Value::AsDouble(d),
                Number::Int(i) => number_data_point::Value::AsInt(i),
            }),
        })
        .collect()
}

fn buckets(b: &Option<view::Buckets>) -> Option<exponential_histogram_data_point::Buckets> {
    b.as_ref()
        .map(|b| exponential_histogram_data_point::Buckets {
            offset: b.offset,
            bucket_counts: b.bucket_counts.clone(),
        })
}

fn data(d: &Data<'_>) -> PData {
    match d {
        Data::Gauge(ps) => PData::Gauge(metrics::Gauge {
            data_points: numbers(ps),
        }),
        Data::Sum(s) => PData::Sum(metrics::Sum {
            data_points: numbers(&s.data_points),
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        }),
        Data::Histogram(h) => PData::Histogram(metrics::Histogram {
            data_points: h
                .data_points
                .iter()
                .map(|p| metrics::HistogramDataPoint {
                    attributes: attrs(&p.attributes),
                    start_time_unix_nano: p.start_time_unix_nano,
                    time_unix_nano: p.time_unix_nano,
                    count: p.count,
                    sum: p.sum,
                    bucket_counts: p.bucket_counts.clone(),
                    explicit_bounds: p.explicit_bounds.clone(),
                    exemplars: exemplars(&p.exemplars),
                    flags: p.flags,
                    min: None,
                    max: None,
                })
                .collect(),
            aggregation_temporality: h.aggregation_temporality,
        }),
        Data::ExponentialHistogram(h) => {
            PData::ExponentialHistogram(metrics::ExponentialHistogram {
                data_points: h
                    .data_points
                    .iter()
                    .map(|p| metrics::ExponentialHistogramDataPoint {
                        attributes: attrs(&p.attributes),
                        start_time_unix_nano: p.start_time_unix_nano,
                        time_unix_nano: p.time_unix_nano,
                        count: p.count,
                        sum: p.sum,
                        scale: p.scale,
                        zero_count: p.zero_count,
                        positive: buckets(&p.positive),
                        negative: buckets(&p.negative),
                        flags: p.flags,
                        exemplars: exemplars(&p.exemplars),
                        min: None,
                        max: None,
                        zero_threshold: p.zero_threshold,
                    })
                    .collect(),
                aggregation_temporality: h.aggregation_temporality,
            })
        }
        Data::Summary(ps) => PData::Summary(metrics::Summary {
            data_points: ps
                .iter()
                .map(|p| metrics::SummaryDataPoint {
                    attributes: attrs(&p.attributes),
                    start_time_unix_nano: p.start_time_unix_nano,
                    time_unix_nano: p.time_unix_nano,
                    count: p.count,
                    sum: p.sum,
                    quantile_values: p
                        .quantile_values
                        .iter()
                        .map(|&(quantile, value)| ValueAtQuantile { quantile, value })
                        .collect(),
                    flags: 0,
                })
                .collect(),
        }),
    }
}

/// The in-place request as prost's messages.
fn back(r: &view::Request<'_>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: r
            .resource_metrics
            .iter()
            .map(|rm| metrics::ResourceMetrics {
                resource: rm.resource.as_ref().map(|res| resource::Resource {
                    attributes: attrs(&res.attributes),
                    ..Default::default()
                }),
                scope_metrics: rm
                    .scope_metrics
                    .iter()
                    .map(|sm| metrics::ScopeMetrics {
                        metrics: sm
                            .metrics
                            .iter()
                            .map(|m| metrics::Metric {
                                name: m.name.to_owned(),
                                description: m.description.to_owned(),
                                unit: m.unit.to_owned(),
                                metadata: Vec::new(),
                                data: m.data.as_ref().map(data),
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// prost's decode with the fields translation does not read left out.
fn projected(mut r: ExportMetricsServiceRequest) -> ExportMetricsServiceRequest {
    for rm in &mut r.resource_metrics {
        rm.schema_url.clear();
        if let Some(res) = &mut rm.resource {
            res.dropped_attributes_count = 0;
            res.entity_refs.clear();
        }
        for sm in &mut rm.scope_metrics {
            sm.scope = None;
            sm.schema_url.clear();
            for m in &mut sm.metrics {
                m.metadata.clear();
                match &mut m.data {
                    Some(PData::Histogram(h)) => {
                        for p in &mut h.data_points {
                            (p.min, p.max) = (None, None);
                        }
                    }
                    Some(PData::ExponentialHistogram(h)) => {
                        for p in &mut h.data_points {
                            (p.min, p.max) = (None, None);
                        }
                    }
                    Some(PData::Summary(s)) => {
                        for p in &mut s.data_points {
                            p.flags = 0;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    r
}

fn agree(body: &[u8]) -> bool {
    let decoded = ExportMetricsServiceRequest::decode(body)
        .ok()
        .map(projected);
    let read = view::read(body).ok().map(|r| back(&r));
    let (d, r) = (
        decoded.as_ref().map(Message::encode_to_vec),
        read.as_ref().map(Message::encode_to_vec),
    );
    if d != r {
        let (dt, rt) = (format!("{decoded:#?}"), format!("{read:#?}"));
        let diff: Vec<_> = dt
            .lines()
            .zip(rt.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(3)
            .collect();
        panic!(
            "prost and the in-place read differ ({} body bytes): {diff:?}",
            body.len()
        );
    }
    read.is_some()
}

#[test]
fn reading_in_place_gives_what_prost_decodes() {
    let good = crate::ingest::walk_tests::request().encode_to_vec();
    assert!(agree(&good));
    let mut seed = 0x5851_f42d_4c95_7f2du64;
    let mut rand = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    };
    let mut read = 0;
    for _ in 0..40_000 {
        let mut b = good.clone();
        for _ in 0..1 + rand(3) {
            if b.is_empty() {
                break;
            }
            let i = rand(b.len());
            match rand(4) {
                0 => b[i] ^= 1 << rand(8),
                1 => b.truncate(i),
                2 => b.insert(i, rand(256) as u8),
                _ => b[i] = rand(256) as u8,
            }
        }
        read += usize::from(agree(&b));
    }
    assert!(read > 3_000, "{read} mutations read");
}
