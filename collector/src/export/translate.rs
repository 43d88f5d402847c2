//! OTLP metrics → Prometheus series, as Prometheus 3's OTLP receiver
//! translates them: monotonic cumulative sums become counters, gauges and
//! non-monotonic sums gauges, explicit-bucket histograms classic `_bucket` /
//! `_sum` / `_count` series, exponential histograms native histograms (see
//! [`super::native`]), summaries quantile series. Resource attributes
//! give `job` (`service.namespace/service.name`) and `instance`
//! (`service.instance.id`), the rest go to `target_info`; listed attributes
//! are promoted to labels on every series. Exemplars keep `trace_id` and
//! `span_id` as lowercase hex.

use std::collections::BTreeMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Exemplar as OtlpExemplar, ExponentialHistogramDataPoint,
        HistogramDataPoint, NumberDataPoint, metric::Data, number_data_point,
    },
};

use super::names::{NameKind, label_name, metric_name};
use super::native;
use super::proto::{Histogram as NativeHistogram, MetricType};

/// Prometheus' staleness marker, for a point flagged "no recorded value".
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

/// How OTLP becomes Prometheus series (per exporter).
#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// Append unit and `_total` suffixes (the specification's translation);
    /// off keeps names as sent, only replacing invalid characters.
    pub add_suffixes: bool,
    /// Exponential histograms as native histograms; off rejects them.
    pub native_histograms: bool,
    /// Resource attributes copied onto every series as labels.
    pub promote: Vec<String>,
    /// Labels added to every series unless it has them (`cluster`, `replica`).
    pub external_labels: BTreeMap<String, String>,
}

/// One Prometheus series with its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Sorted by name, `__name__` included.
    pub labels: Vec<(String, String)>,
    /// The sample's value (unused by a native histogram series).
    pub value: f64,
    pub timestamp_ms: i64,
    pub created_ms: i64,
    pub exemplars: Vec<Exemplar>,
    pub meta: Arc<Meta>,
    /// A native histogram sample instead of a float one.
    pub histogram: Option<Box<NativeHistogram>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: i64,
}

/// A family's metadata (shared by its series).
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub family: String,
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

/// The series of a request, and what could not be translated.
#[derive(Debug, Default)]
pub struct Translated {
    pub series: Vec<Series>,
    /// Data points Prometheus cannot take (delta temporality, exponential
    /// histograms coarser than schema -4), by reason.
    pub rejected: BTreeMap<&'static str, u64>,
}

impl Translated {
    /// Float samples (native histograms are counted apart, as remote-write does).
    pub fn samples(&self) -> u64 {
        self.series.iter().filter(|s| s.histogram.is_none()).count() as u64
    }

    pub fn histograms(&self) -> u64 {
        self.series.iter().filter(|s| s.histogram.is_some()).count() as u64
    }

    pub fn exemplars(&self) -> u64 {
        self.series.iter().map(|s| s.exemplars.len() as u64).sum()
    }
}

impl Translation {
    pub fn translate(&self, req: &ExportMetricsServiceRequest, now_ms: i64) -> Translated {
        let mut out = Translated::default();
        for rm in &req.resource_metrics {
            let attrs = rm
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or_default();
            let target = self.target_labels(attrs);
            let mut latest = 0i64;
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let mut cx = Family {
                        t: self,
                        target: &target,
                        out: &mut out,
                        help: &m.description,
                        unit: &m.unit,
                        now_ms,
                        latest: &mut latest,
                    };
                    match &m.data {
                        Some(Data::Gauge(g)) => {
                            cx.numbers(&m.name, NameKind::Gauge, &g.data_points)
                        }
                        Some(Data::Sum(s)) => {
                            if s.aggregation_temporality == AggregationTemporality::Delta as i32 {
                                cx.reject("delta_temporality", s.data_points.len());
                            } else if s.is_monotonic {
                                cx.numbers(&m.name, NameKind::Counter, &s.data_points);
                            } else {
                                cx.numbers(&m.name, NameKind::Gauge, &s.data_points);
                            }
                        }
                        Some(Data::Histogram(h)) => {
                            if h.aggregation_temporality == AggregationTemporality::Delta as i32 {
                                cx.reject("delta_temporality", h.data_points.len());
                            } else {
                                for p in &h.data_points {
                                    cx.histogram(&m.name, p);
                                }
                            }
                        }
                        Some(Data::Summary(s)) => {
                            for p in &s.data_points {
                                cx.summary(&m.name, p);
                            }
                        }
                        Some(Data::ExponentialHistogram(h)) => {
                            if h.aggregation_temporality == AggregationTemporality::Delta as i32 {
                                cx.reject("delta_temporality", h.data_points.len());
                            } else if !self.native_histograms {
                                cx.reject("exponential_histogram", h.data_points.len());
                            } else {
                                for p in &h.data_points {
                                    cx.exponential(&m.name, p);
                                }
                            }
                        }
                        None => cx.reject("no_data", 1),
                    }
                }
            }
            if let Some(info) =
                self.target_info(attrs, &target, if latest > 0 { latest } else { now_ms })
            {
                out.series.push(info);
            }
        }
        out
    }

    /// `job`, `instance`, promoted attributes and external labels.
    fn target_labels(&self, attrs: &[KeyValue]) -> Vec<(String, String)> {
        let get = |k: &str| {
            attrs
                .iter()
                .find(|a| a.key == k)
                .map(|a| value_string(a.value.as_ref()))
        };
        let mut labels = BTreeMap::new();
        if let Some(name) = get("service.name") {
            let job = match get("service.namespace") {
                Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
                _ => name,
            };
            labels.insert("job".to_owned(), job);
        }
        if let Some(id) = get("service.instance.id") {
            labels.insert("instance".to_owned(), id);
        }
        for key in &self.promote {
            if let Some(v) = get(key) {
                labels.entry(label_name(key)).or_insert(v);
            }
        }
        for (k, v) in &self.external_labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        labels.into_iter().collect()
    }

    /// `target_info`: the resource's other attributes, once per resource.
    fn target_info(
        &self,
        attrs: &[KeyValue],
        target: &[(String, String)],
        ts: i64,
    ) -> Option<Series> {
        const IDENTIFYING: [&str; 3] = ["service.name", "service.namespace", "service.instance.id"];
        let rest: Vec<_> = attrs
            .iter()
            .filter(|a| !IDENTIFYING.contains(&a.key.as_str()))
            .collect();
        if rest.is_empty() {
            return None;
        }
        let mut labels: BTreeMap<String, String> = target.iter().cloned().collect();
        for a in rest {
            labels
                .entry(label_name(&a.key))
                .or_insert_with(|| value_string(a.value.as_ref()));
        }
        labels.insert("__name__".to_owned(), "target_info".to_owned());
        Some(Series {
            labels: labels.into_iter().collect(),
            value: 1.0,
            timestamp_ms: ts,
            created_ms: 0,
            exemplars: Vec::new(),
            histogram: None,
            meta: Arc::new(Meta {
                family: "target_info".to_owned(),
                kind: MetricType::Info,
                help: "Target metadata".to_owned(),
                unit: String::new(),
            }),
        })
    }
}

struct Family<'a> {
    t: &'a Translation,
    target: &'a [(String, String)],
    out: &'a mut Translated,
    help: &'a str,
    unit: &'a str,
    now_ms: i64,
    latest: &'a mut i64,
}

impl Family<'_> {
    fn reject(&mut self, reason: &'static str, points: usize) {
        *self.out.rejected.entry(reason).or_default() += points as u64;
    }

    fn meta(&self, family: &str, kind: MetricType) -> Arc<Meta> {
        Arc::new(Meta {
            family: family.to_owned(),
            kind,
            help: self.help.to_owned(),
            unit: self.unit.to_owned(),
        })
    }

    fn ts(&mut self, nanos: u64) -> i64 {
        let ms = if nanos == 0 {
            self.now_ms
        } else {
            (nanos / 1_000_000) as i64
        };
        *self.latest = (*self.latest).max(ms);
        ms
    }

    fn labels(
        &self,
        name: &str,
        attrs: &[KeyValue],
        extra: Option<(&str, String)>,
    ) -> Vec<(String, String)> {
        // A few labels each: a vector and linear lookups beat a map.
        let mut labels: Vec<(String, String)> =
            Vec::with_capacity(attrs.len() + self.target.len() + 2);
        let set = |labels: &mut Vec<(String, String)>, k: String, v: String| match labels
            .iter_mut()
            .find(|(n, _)| *n == k)
        {
            Some(slot) => slot.1 = v,
            None => labels.push((k, v)),
        };
        for a in attrs {
            set(
                &mut labels,
                label_name(&a.key),
                value_string(a.value.as_ref()),
            );
        }
        for (k, v) in self.target {
            if !labels.iter().any(|(n, _)| n == k) {
                labels.push((k.clone(), v.clone()));
            }
        }
        if let Some((k, v)) = extra {
            set(&mut labels, k.to_owned(), v);
        }
        set(&mut labels, "__name__".to_owned(), name.to_owned());
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        labels
    }

    fn numbers(&mut self, name: &str, kind: NameKind, points: &[NumberDataPoint]) {
        let family = metric_name(name, self.unit, kind, self.t.add_suffixes);
        let mtype = if kind == NameKind::Counter {
            MetricType::Counter
        } else {
            MetricType::Gauge
        };
        let meta = self.meta(&family, mtype);
        for p in points {
            let value = if p.flags & 1 == 1 {
                STALE_NAN
            } else {
                match p.value {
                    Some(number_data_point::Value::AsDouble(v)) => v,
                    Some(number_data_point::Value::AsInt(v)) => v as f64,
                    None => STALE_NAN,
                }
            };
            let series = Series {
                labels: self.labels(&family, &p.attributes, None),
                value,
                timestamp_ms: self.ts(p.time_unix_nano),
                created_ms: created(p.start_time_unix_nano, kind == NameKind::Counter),
                exemplars: p.exemplars.iter().map(exemplar).collect(),
                meta: meta.clone(),
                histogram: None,
            };
            self.out.series.push(series);
        }
    }

    fn histogram(&mut self, name: &str, p: &HistogramDataPoint) {
        let family = metric_name(name, self.unit, NameKind::Other, self.t.add_suffixes);
        let ts = self.ts(p.time_unix_nano);
        let created = created(p.start_time_unix_nano, true);
        let meta = self.meta(&family, MetricType::Histogram);
        let stale = p.flags & 1 == 1;
        let mut exemplars: Vec<Option<&OtlpExemplar>> = p.exemplars.iter().map(Some).collect();
        let mut cumulative = 0u64;
        let bounds = p
            .explicit_bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY));
        for (i, le) in bounds.enumerate() {
            cumulative += p.bucket_counts.get(i).copied().unwrap_or(0);
            let count = if i == p.explicit_bounds.len() {
                p.count
            } else {
                cumulative
            };
            // Each exemplar goes to the first bucket whose bound holds it.
            let mine = exemplars
                .iter_mut()
                .filter_map(|e| {
                    let v = exemplar_value(e.as_ref()?);
                    (v <= le).then(|| e.take()).flatten()
                })
                .map(exemplar)
                .collect();
            let bucket = format!("{family}_bucket");
            self.out.series.push(Series {
                labels: self.labels(&bucket, &p.attributes, Some(("le", le_string(le)))),
                value: if stale { STALE_NAN } else { count as f64 },
                timestamp_ms: ts,
                created_ms: created,
                exemplars: mine,
                meta: meta.clone(),
                histogram: None,
            });
        }
        if let Some(sum) = p.sum {
            let name = format!("{family}_sum");
            self.push_plain(
                &name,
                &p.attributes,
                if stale { STALE_NAN } else { sum },
                ts,
                created,
                &meta,
            );
        }
        let name = format!("{family}_count");
        self.push_plain(
            &name,
            &p.attributes,
            if stale { STALE_NAN } else { p.count as f64 },
            ts,
            created,
            &meta,
        );
    }

    /// One native histogram series (no `_bucket` suffix), exemplars on it.
    fn exponential(&mut self, name: &str, p: &ExponentialHistogramDataPoint) {
        let ts = self.ts(p.time_unix_nano);
        let Some(h) = native::from_exponential(p, ts) else {
            self.reject("exponential_histogram_scale", 1);
            return;
        };
        let family = metric_name(name, self.unit, NameKind::Other, self.t.add_suffixes);
        let meta = self.meta(&family, MetricType::Histogram);
        self.out.series.push(Series {
            labels: self.labels(&family, &p.attributes, None),
            value: 0.0,
            timestamp_ms: ts,
            created_ms: created(p.start_time_unix_nano, true),
            exemplars: p.exemplars.iter().map(exemplar).collect(),
            meta,
            histogram: Some(Box::new(h)),
        });
    }

    fn summary(
        &mut self,
        name: &str,
        p: &opentelemetry_proto::tonic::metrics::v1::SummaryDataPoint,
    ) {
        let family = metric_name(name, self.unit, NameKind::Other, self.t.add_suffixes);
        let ts = self.ts(p.time_unix_nano);
        let created = created(p.start_time_unix_nano, true);
        let meta = self.meta(&family, MetricType::Summary);
        for q in &p.quantile_values {
            let labels = self.labels(
                &family,
                &p.attributes,
                Some(("quantile", le_string(q.quantile))),
            );
            self.out.series.push(Series {
                labels,
                value: q.value,
                timestamp_ms: ts,
                created_ms: created,
                exemplars: Vec::new(),
                meta: meta.clone(),
                histogram: None,
            });
        }
        self.push_plain(
            &format!("{family}_sum"),
            &p.attributes,
            p.sum,
            ts,
            created,
            &meta,
        );
        self.push_plain(
            &format!("{family}_count"),
            &p.attributes,
            p.count as f64,
            ts,
            created,
            &meta,
        );
    }

    fn push_plain(
        &mut self,
        name: &str,
        attrs: &[KeyValue],
        value: f64,
        ts: i64,
        created: i64,
        meta: &Arc<Meta>,
    ) {
        let labels = self.labels(name, attrs, None);
        self.out.series.push(Series {
            labels,
            value,
            timestamp_ms: ts,
            created_ms: created,
            exemplars: Vec::new(),
            meta: meta.clone(),
            histogram: None,
        });
    }
}

fn created(start_nanos: u64, cumulative: bool) -> i64 {
    if cumulative && start_nanos > 0 {
        (start_nanos / 1_000_000) as i64
    } else {
        0
    }
}

fn le_string(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        let s = format!("{v}");
        if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
            s
        } else {
            format!("{s}.0")
        }
    }
}

fn exemplar_value(e: &OtlpExemplar) -> f64 {
    use opentelemetry_proto::tonic::metrics::v1::exemplar::Value;
    match e.value {
        Some(Value::AsDouble(v)) => v,
        Some(Value::AsInt(v)) => v as f64,
        None => 0.0,
    }
}

fn exemplar(e: &OtlpExemplar) -> Exemplar {
    let mut labels: BTreeMap<String, String> = e
        .filtered_attributes
        .iter()
        .map(|a| (label_name(&a.key), value_string(a.value.as_ref())))
        .collect();
    if !e.trace_id.is_empty() {
        labels.insert("trace_id".to_owned(), hex(&e.trace_id));
    }
    if !e.span_id.is_empty() {
        labels.insert("span_id".to_owned(), hex(&e.span_id));
    }
    Exemplar {
        labels: labels.into_iter().collect(),
        value: exemplar_value(e),
        timestamp_ms: (e.time_unix_nano / 1_000_000) as i64,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// An attribute value as a label value (arrays and maps as JSON-ish text).
pub fn value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<_> = a.values.iter().map(|v| value_string(Some(v))).collect();
            format!("[{}]", items.join(","))
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let items: Vec<_> = kv
                .values
                .iter()
                .map(|a| format!("{}:{}", a.key, value_string(a.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        None => String::new(),
    }
}
