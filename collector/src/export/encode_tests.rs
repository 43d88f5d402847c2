//! Remote-write encoding: round trips through prost's decoders, and the
//! bodies written straight from the series against the messages prost
//! encodes (the encoder's earlier form, kept here as the reference).

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;

use super::encode::{Version, encode, shard};
use super::proto::{self, MetricType, v2};
use super::text::Text;
use super::translate::{Exemplar, Meta, Series};

// The reference: the request messages, built and encoded by prost.

/// A series' one sample: a float, or a native histogram.
fn sample_or_histogram(s: &Series<'_>) -> (Vec<proto::Sample>, Vec<proto::Histogram>) {
    match &s.histogram {
        Some(h) => (Vec::new(), vec![(**h).clone()]),
        None => (
            vec![proto::Sample {
                value: s.value,
                timestamp: s.timestamp_ms,
            }],
            Vec::new(),
        ),
    }
}

fn labels_v1(labels: &[(Text<'_>, Text<'_>)]) -> Vec<proto::Label> {
    labels
        .iter()
        .map(|(n, v)| proto::Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect()
}

fn v1_reference(series: &[&Series<'_>]) -> proto::WriteRequest {
    let mut metadata: HashMap<&str, proto::MetricMetadata> = HashMap::new();
    let timeseries = series
        .iter()
        .map(|s| {
            metadata
                .entry(&s.meta.family)
                .or_insert_with(|| proto::MetricMetadata {
                    r#type: s.meta.kind as i32,
                    metric_family_name: s.meta.family.clone(),
                    help: s.meta.help.clone(),
                    unit: s.meta.unit.clone(),
                });
            let (samples, histograms) = sample_or_histogram(s);
            proto::TimeSeries {
                labels: labels_v1(&s.labels),
                samples,
                histograms,
                exemplars: s
                    .exemplars
                    .iter()
                    .map(|e| proto::Exemplar {
                        labels: labels_v1(&e.labels),
                        value: e.value,
                        timestamp: e.timestamp_ms,
                    })
                    .collect(),
            }
        })
        .collect();
    proto::WriteRequest {
        timeseries,
        metadata: metadata.into_values().collect(),
    }
}

#[derive(Default)]
struct RefSymbols<'a> {
    index: HashMap<&'a str, u32, rustc_hash::FxBuildHasher>,
    table: Vec<&'a str>,
}

impl<'a> RefSymbols<'a> {
    fn new() -> Self {
        let mut s = Self::default();
        s.get("");
        s
    }

    fn get(&mut self, s: &'a str) -> u32 {
        let next = self.table.len() as u32;
        let i = *self.index.entry(s).or_insert(next);
        if i == next {
            self.table.push(s);
        }
        i
    }

    fn refs(&mut self, labels: &'a [(Text<'_>, Text<'_>)]) -> Vec<u32> {
        let mut refs = Vec::with_capacity(labels.len() * 2);
        for (n, v) in labels {
            refs.push(self.get(n.as_str()));
            refs.push(self.get(v.as_str()));
        }
        refs
    }

    fn into_table(self) -> Vec<String> {
        self.table.into_iter().map(str::to_owned).collect()
    }
}

fn v2_reference(series: &[&Series<'_>]) -> v2::Request {
    let mut symbols = RefSymbols::new();
    let timeseries = series
        .iter()
        .map(|s| {
            let (samples, histograms) = sample_or_histogram(s);
            v2::TimeSeries {
                labels_refs: symbols.refs(&s.labels),
                samples,
                histograms,
                exemplars: s
                    .exemplars
                    .iter()
                    .map(|e| v2::Exemplar {
                        labels_refs: symbols.refs(&e.labels),
                        value: e.value,
                        timestamp: e.timestamp_ms,
                    })
                    .collect(),
                metadata: Some(v2::Metadata {
                    r#type: s.meta.kind as i32,
                    help_ref: symbols.get(&s.meta.help),
                    unit_ref: symbols.get(&s.meta.unit),
                }),
                created_timestamp: s.created_ms,
            }
        })
        .collect();
    v2::Request {
        symbols: symbols.into_table(),
        timeseries,
    }
}

fn series(name: &str, v: f64) -> Series<'static> {
    Series {
        labels: vec![
            ("__name__".into(), name.to_owned().into()),
            ("job".into(), "a".into()),
        ],
        value: v,
        timestamp_ms: 1_000,
        created_ms: 500,
        exemplars: vec![Exemplar {
            labels: vec![("trace_id".into(), "ab".repeat(16).into())],
            value: v,
            timestamp_ms: 900,
        }],
        histogram: None,
        meta: Arc::new(Meta {
            family: name.into(),
            kind: MetricType::Counter,
            help: "h".into(),
            unit: String::new(),
        }),
    }
}

#[test]
fn v2_round_trips_through_its_symbols() {
    let s = [series("a_total", 1.0), series("b_total", 2.0)];
    let refs: Vec<_> = s.iter().collect();
    let body = encode(&refs, Version::V2);
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body.bytes)
        .unwrap();
    let req = v2::Request::decode(raw.as_slice()).unwrap();
    assert_eq!(req.symbols[0], "");
    let ts = &req.timeseries[1];
    let names: Vec<_> = ts
        .labels_refs
        .iter()
        .map(|&r| req.symbols[r as usize].as_str())
        .collect();
    assert_eq!(names, ["__name__", "b_total", "job", "a"]);
    assert_eq!(ts.created_timestamp, 500);
    assert_eq!(
        req.symbols[ts.exemplars[0].labels_refs[1] as usize],
        "ab".repeat(16)
    );
    assert_eq!((body.samples, body.exemplars), (2, 2));
}

#[test]
fn v1_carries_exemplars_and_metadata() {
    let s = [series("a_total", 1.0)];
    let refs: Vec<_> = s.iter().collect();
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&encode(&refs, Version::V1).bytes)
        .unwrap();
    let req = proto::WriteRequest::decode(raw.as_slice()).unwrap();
    assert_eq!(req.timeseries[0].exemplars[0].labels[0].name, "trace_id");
    assert_eq!(req.metadata[0].metric_family_name, "a_total");
}

#[test]
fn a_native_histogram_goes_in_histograms_not_samples() {
    let mut h = series("lat_seconds", 0.0);
    h.histogram = Some(Box::new(proto::Histogram {
        count_int: 4,
        sum: 2.5,
        schema: 3,
        positive_spans: vec![proto::BucketSpan {
            offset: -2,
            length: 2,
        }],
        positive_deltas: vec![1, 2],
        timestamp: 1_000,
        ..Default::default()
    }));
    let s = [h, series("a_total", 1.0)];
    let refs: Vec<_> = s.iter().collect();
    let body = encode(&refs, Version::V2);
    assert_eq!((body.samples, body.histograms, body.exemplars), (1, 1, 2));
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body.bytes)
        .unwrap();
    let req = v2::Request::decode(raw.as_slice()).unwrap();
    assert!(req.timeseries[0].samples.is_empty());
    assert_eq!(req.timeseries[0].histograms[0].positive_deltas, [1, 2]);
    assert_eq!(req.timeseries[0].histograms[0].schema, 3);
    assert_eq!(req.timeseries[1].histograms.len(), 0);
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&encode(&refs, Version::V1).bytes)
        .unwrap();
    let req = proto::WriteRequest::decode(raw.as_slice()).unwrap();
    assert_eq!(req.timeseries[0].histograms[0].count_int, 4);
    assert_eq!(req.timeseries[0].histograms[0].positive_spans[0].offset, -2);
    assert!(req.timeseries[0].samples.is_empty());
}

#[test]
fn a_series_always_lands_in_the_same_shard() {
    let s: Vec<_> = (0..100).map(|i| series(&format!("m{i}"), 1.0)).collect();
    let a = shard(&s, 4);
    let b = shard(&s, 4);
    assert_eq!(a.iter().map(Vec::len).sum::<usize>(), 100);
    assert_eq!(a, b);
}

/// Series of every shape: floats, a native histogram, exemplars, empty and
/// negative values, labels shared between series.
fn assorted() -> Vec<Series<'static>> {
    let mut out: Vec<_> = (0..50)
        .map(|i| {
            let mut s = series(&format!("m{}", i % 7), f64::from(i) - 10.0);
            s.created_ms = if i % 3 == 0 { 0 } else { -5 + i64::from(i) };
            s.timestamp_ms = if i % 11 == 0 { 0 } else { 1_700_000_000_000 };
            if i % 4 == 0 {
                s.exemplars.clear();
            }
            s.labels.push(("zone".into(), format!("z{}", i % 3).into()));
            s
        })
        .collect();
    let mut h = series("lat_seconds", 0.0);
    h.histogram = Some(Box::new(proto::Histogram {
        count_int: 9,
        sum: -1.5,
        schema: -2,
        zero_threshold: 1e-128,
        zero_count_int: 1,
        negative_spans: vec![proto::BucketSpan {
            offset: -3,
            length: 1,
        }],
        negative_deltas: vec![2],
        positive_spans: vec![proto::BucketSpan {
            offset: 1,
            length: 2,
        }],
        positive_deltas: vec![4, -2],
        reset_hint: 0,
        timestamp: 42,
    }));
    out.push(h);
    out
}

#[test]
fn v2_bodies_are_byte_for_byte_what_prost_encodes() {
    let s = assorted();
    let refs: Vec<_> = s.iter().collect();
    let ours = snap::raw::Decoder::new()
        .decompress_vec(&encode(&refs, Version::V2).bytes)
        .unwrap();
    assert_eq!(ours, v2_reference(&refs).encode_to_vec());
}

#[test]
fn v1_bodies_decode_to_the_messages_prost_would_encode() {
    let s = assorted();
    let refs: Vec<_> = s.iter().collect();
    let ours = snap::raw::Decoder::new()
        .decompress_vec(&encode(&refs, Version::V1).bytes)
        .unwrap();
    let mut got = proto::WriteRequest::decode(ours.as_slice()).unwrap();
    let mut want = v1_reference(&refs);
    // The reference's metadata come out of a HashMap; ours in order of appearance.
    let families: Vec<_> = got
        .metadata
        .iter()
        .map(|m| m.metric_family_name.clone())
        .collect();
    assert_eq!(families[..2], ["m0".to_owned(), "m1".to_owned()]);
    for r in [&mut got, &mut want] {
        r.metadata
            .sort_by(|a, b| a.metric_family_name.cmp(&b.metric_family_name));
    }
    assert_eq!(got, want);
    // Without metadata the bodies are the same bytes.
    want.metadata.clear();
    let timeseries_only = want.encode_to_vec();
    assert_eq!(ours[..timeseries_only.len()], timeseries_only[..]);
}
