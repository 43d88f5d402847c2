//! Series → remote-write request bodies (protobuf, then snappy block
//! compression, as both versions require).

use std::collections::HashMap;

use prost::Message;

use super::proto::{self, v2};
use super::translate::Series;

/// The remote-write protocol version a request is encoded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum Version {
    #[serde(rename = "1")]
    V1,
    #[serde(rename = "2")]
    V2,
}

impl Version {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::V1 => "application/x-protobuf",
            Self::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    pub fn header(self) -> &'static str {
        match self {
            Self::V1 => "0.1.0",
            Self::V2 => "2.0.0",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "1",
            Self::V2 => "2",
        }
    }
}

/// A compressed request body and what it carries.
#[derive(Debug, Clone)]
pub struct Body {
    pub bytes: Vec<u8>,
    /// Float samples.
    pub samples: u64,
    /// Native histogram samples.
    pub histograms: u64,
    pub exemplars: u64,
}

pub fn encode(series: &[&Series], version: Version) -> Body {
    let raw = match version {
        Version::V1 => v1_request(series).encode_to_vec(),
        Version::V2 => v2_request(series).encode_to_vec(),
    };
    let bytes = snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy block compression of an in-memory buffer");
    let histograms = series.iter().filter(|s| s.histogram.is_some()).count() as u64;
    Body {
        bytes,
        samples: series.len() as u64 - histograms,
        histograms,
        exemplars: series.iter().map(|s| s.exemplars.len() as u64).sum(),
    }
}

/// A series' one sample: a float, or a native histogram.
fn sample_or_histogram(s: &Series) -> (Vec<proto::Sample>, Vec<proto::Histogram>) {
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

fn labels_v1(labels: &[(String, String)]) -> Vec<proto::Label> {
    labels
        .iter()
        .map(|(n, v)| proto::Label {
            name: n.clone(),
            value: v.clone(),
        })
        .collect()
}

fn v1_request(series: &[&Series]) -> proto::WriteRequest {
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

/// The v2 symbol table: every string once, "" first. Symbols borrow from
/// the series until the request is built.
#[derive(Default)]
struct Symbols<'a> {
    index: HashMap<&'a str, u32, rustc_hash::FxBuildHasher>,
    table: Vec<&'a str>,
}

impl<'a> Symbols<'a> {
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

    fn refs(&mut self, labels: &'a [(String, String)]) -> Vec<u32> {
        let mut refs = Vec::with_capacity(labels.len() * 2);
        for (n, v) in labels {
            refs.push(self.get(n));
            refs.push(self.get(v));
        }
        refs
    }

    fn into_table(self) -> Vec<String> {
        self.table.into_iter().map(str::to_owned).collect()
    }
}

fn v2_request(series: &[&Series]) -> v2::Request {
    let mut symbols = Symbols::new();
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

/// Splits series into `shards` groups by label hash, so one series always
/// goes through the same shard (its samples stay in order).
pub fn shard(series: &[Series], shards: usize) -> Vec<Vec<&Series>> {
    use std::hash::BuildHasher;
    let shards = shards.max(1);
    let mut out = vec![Vec::new(); shards];
    for s in series {
        let h = rustc_hash::FxBuildHasher.hash_one(&s.labels);
        out[(h % shards as u64) as usize].push(s);
    }
    out.retain(|v| !v.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::proto::MetricType;
    use crate::export::translate::{Exemplar, Meta};

    fn series(name: &str, v: f64) -> Series {
        Series {
            labels: vec![("__name__".into(), name.into()), ("job".into(), "a".into())],
            value: v,
            timestamp_ms: 1_000,
            created_ms: 500,
            exemplars: vec![Exemplar {
                labels: vec![("trace_id".into(), "ab".repeat(16))],
                value: v,
                timestamp_ms: 900,
            }],
            histogram: None,
            meta: std::sync::Arc::new(Meta {
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
}
