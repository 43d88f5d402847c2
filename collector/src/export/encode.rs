//! Series → remote-write request bodies (protobuf, then snappy block
//! compression, as both versions require).
//!
//! The protobuf is written straight from the series with prost's wire
//! primitives, byte for byte what prost makes of `proto::WriteRequest` /
//! `proto::v2::Request` (fields in tag order, defaults left out), without
//! building those messages: no copy of any label, no allocation per series.

use std::collections::HashMap;

use bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use super::text::Text;
use std::sync::Arc;

use super::translate::{Exemplar, Meta, Series};

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

pub fn encode(series: &[&Series<'_>], version: Version) -> Body {
    let raw = match version {
        Version::V1 => v1_request(series),
        Version::V2 => v2_request(series),
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

// Field writers: proto3 leaves default values out, as prost does.

fn len_prefix(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        key_len(tag) + encoded_len_varint(s.len() as u64) + s.len()
    }
}

fn put_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        len_prefix(tag, s.len(), buf);
        buf.extend_from_slice(s.as_bytes());
    }
}

fn double_len(tag: u32, v: f64) -> usize {
    if v != 0.0 { key_len(tag) + 8 } else { 0 }
}

fn put_double(tag: u32, v: f64, buf: &mut Vec<u8>) {
    if v != 0.0 {
        encode_key(tag, WireType::SixtyFourBit, buf);
        buf.put_f64_le(v);
    }
}

/// int64, int32 (sign-extended) and uint32 are all plain varints.
fn varint_len(tag: u32, v: u64) -> usize {
    if v != 0 {
        key_len(tag) + encoded_len_varint(v)
    } else {
        0
    }
}

fn put_varint(tag: u32, v: u64, buf: &mut Vec<u8>) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

/// A message field of `len` bytes (key, length, body).
fn message_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// `Sample { value = 1, timestamp = 2 }` (the same in both versions).
fn put_sample(tag: u32, value: f64, timestamp: i64, buf: &mut Vec<u8>) {
    len_prefix(
        tag,
        double_len(1, value) + varint_len(2, timestamp as u64),
        buf,
    );
    put_double(1, value, buf);
    put_varint(2, timestamp as u64, buf);
}

/// v1 `Label { name = 1, value = 2 }`.
fn label_len(n: &str, v: &str) -> usize {
    str_len(1, n) + str_len(2, v)
}

fn put_labels_v1(tag: u32, labels: &[(Text<'_>, Text<'_>)], buf: &mut Vec<u8>) {
    for (n, v) in labels {
        len_prefix(tag, label_len(n, v), buf);
        put_str(1, n, buf);
        put_str(2, v, buf);
    }
}

fn labels_v1_len(tag: u32, labels: &[(Text<'_>, Text<'_>)]) -> usize {
    labels
        .iter()
        .map(|(n, v)| message_len(tag, label_len(n, v)))
        .sum()
}

/// v1 `Exemplar { labels = 1, value = 2, timestamp = 3 }`.
fn exemplar_v1_len(e: &Exemplar<'_>) -> usize {
    labels_v1_len(1, &e.labels) + double_len(2, e.value) + varint_len(3, e.timestamp_ms as u64)
}

fn v1_request(series: &[&Series<'_>]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(series.len() * 96);
    for s in series {
        // TimeSeries { labels = 1, samples = 2, exemplars = 3, histograms = 4 }
        let mut len = labels_v1_len(1, &s.labels);
        let histogram_len = s.histogram.as_deref().map(prost::Message::encoded_len);
        len += match histogram_len {
            Some(h) => message_len(4, h),
            None => message_len(
                2,
                double_len(1, s.value) + varint_len(2, s.timestamp_ms as u64),
            ),
        };
        for e in &s.exemplars {
            len += message_len(3, exemplar_v1_len(e));
        }
        len_prefix(1, len, &mut buf);
        put_labels_v1(1, &s.labels, &mut buf);
        if s.histogram.is_none() {
            put_sample(2, s.value, s.timestamp_ms, &mut buf);
        }
        for e in &s.exemplars {
            len_prefix(3, exemplar_v1_len(e), &mut buf);
            put_labels_v1(1, &e.labels, &mut buf);
            put_double(2, e.value, &mut buf);
            put_varint(3, e.timestamp_ms as u64, &mut buf);
        }
        if let Some(h) = &s.histogram {
            prost::encoding::message::encode(4, h.as_ref(), &mut buf);
        }
    }
    // WriteRequest.metadata = 3: each family once, in order of appearance.
    let mut seen = rustc_hash::FxHashSet::default();
    for s in series {
        let m = &s.meta;
        if !seen.insert(m.family.as_str()) {
            continue;
        }
        let kind = i64::from(m.kind as i32) as u64;
        len_prefix(
            3,
            varint_len(1, kind) + str_len(2, &m.family) + str_len(4, &m.help) + str_len(5, &m.unit),
            &mut buf,
        );
        put_varint(1, kind, &mut buf);
        put_str(2, &m.family, &mut buf);
        put_str(4, &m.help, &mut buf);
        put_str(5, &m.unit, &mut buf);
    }
    buf
}

/// The v2 symbol table: every string once, "" first. Symbols borrow from
/// the series until the request is written. Shared label text (`job`,
/// `instance`, metric names) is looked up by address first, so the many
/// series that carry the same `Arc<str>` do not hash and compare it again.
#[derive(Default)]
struct Symbols<'a> {
    index: HashMap<&'a str, u32, rustc_hash::FxBuildHasher>,
    by_address: HashMap<usize, u32, rustc_hash::FxBuildHasher>,
    table: Vec<&'a str>,
    /// The last series' metadata and its (help, unit) refs.
    last_meta: Option<(*const Meta, u32, u32)>,
}

impl<'a> Symbols<'a> {
    /// A table sized for `n` series (about three new strings each).
    fn new(n: usize) -> Self {
        let mut s = Self {
            index: HashMap::with_capacity_and_hasher(n * 3, Default::default()),
            table: Vec::with_capacity(n * 3),
            ..Self::default()
        };
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

    fn text(&mut self, t: &'a Text<'a>) -> u32 {
        match t {
            Text::Shared(arc) => {
                let address = arc.as_ptr() as usize;
                if let Some(&i) = self.by_address.get(&address) {
                    return i;
                }
                let i = self.get(arc);
                // The Arc outlives the table (the series hold it), so its
                // address is not reused meanwhile.
                self.by_address.insert(address, i);
                i
            }
            Text::Borrowed(s) => self.get(s),
        }
    }

    /// (help, unit) refs of a series' metadata.
    fn meta(&mut self, m: &'a Arc<Meta>) -> (u32, u32) {
        let address = Arc::as_ptr(m);
        if let Some((last, help, unit)) = self.last_meta
            && last == address
        {
            return (help, unit);
        }
        let (help, unit) = (self.get(&m.help), self.get(&m.unit));
        self.last_meta = Some((address, help, unit));
        (help, unit)
    }

    /// `labels_refs` (packed uint32) of a label set, through `refs`.
    fn put_refs(
        &mut self,
        labels: &'a [(Text<'a>, Text<'a>)],
        refs: &mut Vec<u32>,
        buf: &mut Vec<u8>,
    ) {
        refs.clear();
        for (n, v) in labels {
            refs.push(self.text(n));
            refs.push(self.text(v));
        }
        if !refs.is_empty() {
            let len = refs.iter().map(|&r| encoded_len_varint(u64::from(r))).sum();
            len_prefix(1, len, buf);
            for &r in refs.iter() {
                encode_varint(u64::from(r), buf);
            }
        }
    }
}

fn v2_request<'a>(series: &[&'a Series<'a>]) -> Vec<u8> {
    let mut symbols = Symbols::new(series.len());
    let mut refs = Vec::new();
    // Request { symbols = 4, timeseries = 5 }: the series are written first
    // (they make the table), then put after it.
    let mut timeseries = Vec::with_capacity(series.len() * 48);
    let mut one = Vec::with_capacity(256);
    let mut part = Vec::with_capacity(64);
    for s in series {
        // TimeSeries { labels_refs = 1, samples = 2, histograms = 3,
        //   exemplars = 4, metadata = 5, created_timestamp = 6 }
        one.clear();
        symbols.put_refs(&s.labels, &mut refs, &mut one);
        match &s.histogram {
            Some(h) => prost::encoding::message::encode(3, h.as_ref(), &mut one),
            None => put_sample(2, s.value, s.timestamp_ms, &mut one),
        }
        for e in &s.exemplars {
            part.clear();
            symbols.put_refs(&e.labels, &mut refs, &mut part);
            put_double(2, e.value, &mut part);
            put_varint(3, e.timestamp_ms as u64, &mut part);
            len_prefix(4, part.len(), &mut one);
            one.extend_from_slice(&part);
        }
        let kind = i64::from(s.meta.kind as i32) as u64;
        let (help, unit) = symbols.meta(&s.meta);
        let (help, unit) = (u64::from(help), u64::from(unit));
        len_prefix(
            5,
            varint_len(1, kind) + varint_len(3, help) + varint_len(4, unit),
            &mut one,
        );
        put_varint(1, kind, &mut one);
        put_varint(3, help, &mut one);
        put_varint(4, unit, &mut one);
        put_varint(6, s.created_ms as u64, &mut one);
        len_prefix(5, one.len(), &mut timeseries);
        timeseries.extend_from_slice(&one);
    }
    let mut buf = Vec::with_capacity(timeseries.len() + symbols.table.len() * 16);
    for s in &symbols.table {
        // A repeated string keeps its empty elements (the leading "").
        len_prefix(4, s.len(), &mut buf);
        buf.extend_from_slice(s.as_bytes());
    }
    buf.extend_from_slice(&timeseries);
    buf
}

/// Splits series into `shards` groups by label hash, so one series always
/// goes through the same shard (its samples stay in order).
pub fn shard<'s, 'a>(series: &'s [Series<'a>], shards: usize) -> Vec<Vec<&'s Series<'a>>> {
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
