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

use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;

use super::labels::{exemplar, exemplar_value, le_string, value_string, value_text};
use super::names::{NameKind, label_name, metric_name};
use super::native;
use super::proto::{Histogram as NativeHistogram, MetricType};
use super::text::{Labels, Text};
use super::view::{
    Data, Exemplar as OtlpExemplar, ExponentialHistogramDataPoint, HistogramDataPoint, KeyValue,
    NumberDataPoint, Request, SummaryDataPoint,
};

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

/// One Prometheus series with its sample; its labels borrow from the
/// request it was translated from.
#[derive(Debug, Clone, PartialEq)]
pub struct Series<'a> {
    /// Sorted by name, `__name__` included.
    pub labels: Labels<'a>,
    /// The sample's value (unused by a native histogram series).
    pub value: f64,
    pub timestamp_ms: i64,
    pub created_ms: i64,
    pub exemplars: Vec<Exemplar<'a>>,
    pub meta: Arc<Meta>,
    /// A native histogram sample instead of a float one.
    pub histogram: Option<Box<NativeHistogram>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar<'a> {
    pub labels: Labels<'a>,
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
pub struct Translated<'a> {
    pub series: Vec<Series<'a>>,
    /// Data points Prometheus cannot take (delta temporality, exponential
    /// histograms coarser than schema -4), by reason.
    pub rejected: BTreeMap<&'static str, u64>,
}

impl Translated<'_> {
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
    pub fn translate<'a>(&self, req: &'a Request<'a>, now_ms: i64) -> Translated<'a> {
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
                        help: m.description,
                        unit: m.unit,
                        now_ms,
                        latest: &mut latest,
                    };
                    match &m.data {
                        Some(Data::Gauge(points)) => cx.numbers(m.name, NameKind::Gauge, points),
                        Some(Data::Sum(s)) => {
                            if s.aggregation_temporality == AggregationTemporality::Delta as i32 {
                                cx.reject("delta_temporality", s.data_points.len());
                            } else if s.is_monotonic {
                                cx.numbers(m.name, NameKind::Counter, &s.data_points);
                            } else {
                                cx.numbers(m.name, NameKind::Gauge, &s.data_points);
                            }
                        }
                        Some(Data::Histogram(h)) => {
                            if h.aggregation_temporality == AggregationTemporality::Delta as i32 {
                                cx.reject("delta_temporality", h.data_points.len());
                            } else {
                                for p in &h.data_points {
                                    cx.histogram(m.name, p);
                                }
                            }
                        }
                        Some(Data::Summary(points)) => {
                            for p in points {
                                cx.summary(m.name, p);
                            }
                        }
                        Some(Data::ExponentialHistogram(h)) => {
                            if h.aggregation_temporality == AggregationTemporality::Delta as i32 {
                                cx.reject("delta_temporality", h.data_points.len());
                            } else if !self.native_histograms {
                                cx.reject("exponential_histogram", h.data_points.len());
                            } else {
                                for p in &h.data_points {
                                    cx.exponential(m.name, p);
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
    fn target_labels(&self, attrs: &[KeyValue<'_>]) -> Labels<'static> {
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
                labels.entry(label_name(key).into_owned()).or_insert(v);
            }
        }
        for (k, v) in &self.external_labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        // Made once per resource, shared by its series.
        labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    }

    /// `target_info`: the resource's other attributes, once per resource.
    fn target_info<'a>(
        &self,
        attrs: &'a [KeyValue<'a>],
        target: &[(Text<'static>, Text<'static>)],
        ts: i64,
    ) -> Option<Series<'a>> {
        const IDENTIFYING: [&str; 3] = ["service.name", "service.namespace", "service.instance.id"];
        let rest: Vec<_> = attrs
            .iter()
            .filter(|a| !IDENTIFYING.contains(&a.key))
            .collect();
        if rest.is_empty() {
            return None;
        }
        let mut labels: BTreeMap<Text<'a>, Text<'a>> = target.iter().cloned().collect();
        for a in rest {
            labels
                .entry(label_name(a.key).into())
                .or_insert_with(|| value_text(a.value.as_ref()));
        }
        labels.insert("__name__".into(), "target_info".into());
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

/// One metric's translation: `'f` borrows the translation's state, `'a`
/// the request.
struct Family<'f, 'a> {
    t: &'f Translation,
    target: &'f [(Text<'static>, Text<'static>)],
    out: &'f mut Translated<'a>,
    help: &'a str,
    unit: &'a str,
    now_ms: i64,
    latest: &'f mut i64,
}

impl<'a> Family<'_, 'a> {
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

    /// A series' labels: the point's attributes (borrowed), the target's
    /// (shared), `extra` (`le`, `quantile`) and `__name__`. Where names
    /// repeat, `__name__` wins over `extra`, `extra` over attributes, a
    /// later attribute over an earlier one, attributes over the target's.
    fn labels(
        &self,
        name: &Text<'a>,
        attrs: &'a [KeyValue<'a>],
        extra: Option<(&'static str, Text<'a>)>,
    ) -> Labels<'a> {
        // Pushed from weakest to strongest; a stable sort keeps that order
        // among equal names, and the last of each run is kept.
        let mut labels: Labels<'a> = Vec::with_capacity(attrs.len() + self.target.len() + 2);
        labels.extend(self.target.iter().cloned());
        for a in attrs {
            labels.push((label_name(a.key).into(), value_text(a.value.as_ref())));
        }
        if let Some((k, v)) = extra {
            labels.push((k.into(), v));
        }
        labels.push(("__name__".into(), name.clone()));
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept = 0;
        for i in 0..labels.len() {
            if i + 1 < labels.len() && labels[i].0 == labels[i + 1].0 {
                continue;
            }
            labels.swap(kept, i);
            kept += 1;
        }
        labels.truncate(kept);
        labels
    }

    fn numbers(&mut self, name: &str, kind: NameKind, points: &'a [NumberDataPoint<'a>]) {
        let family = metric_name(name, self.unit, kind, self.t.add_suffixes);
        let name = Text::from(family.clone());
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
                p.value.map_or(STALE_NAN, |v| v.as_f64())
            };
            let series = Series {
                labels: self.labels(&name, &p.attributes, None),
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

    fn histogram(&mut self, name: &str, p: &'a HistogramDataPoint<'a>) {
        let family = metric_name(name, self.unit, NameKind::Other, self.t.add_suffixes);
        let ts = self.ts(p.time_unix_nano);
        let created = created(p.start_time_unix_nano, true);
        let meta = self.meta(&family, MetricType::Histogram);
        let stale = p.flags & 1 == 1;
        let mut exemplars: Vec<Option<&OtlpExemplar>> = p.exemplars.iter().map(Some).collect();
        let bucket = Text::from(format!("{family}_bucket"));
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
            self.out.series.push(Series {
                labels: self.labels(&bucket, &p.attributes, Some(("le", le_string(le).into()))),
                value: if stale { STALE_NAN } else { count as f64 },
                timestamp_ms: ts,
                created_ms: created,
                exemplars: mine,
                meta: meta.clone(),
                histogram: None,
            });
        }
        if let Some(sum) = p.sum {
            self.push_plain(
                format!("{family}_sum").into(),
                &p.attributes,
                if stale { STALE_NAN } else { sum },
                ts,
                created,
                &meta,
            );
        }
        self.push_plain(
            format!("{family}_count").into(),
            &p.attributes,
            if stale { STALE_NAN } else { p.count as f64 },
            ts,
            created,
            &meta,
        );
    }

    /// One native histogram series (no `_bucket` suffix), exemplars on it.
    fn exponential(&mut self, name: &str, p: &'a ExponentialHistogramDataPoint<'a>) {
        let ts = self.ts(p.time_unix_nano);
        let Some(h) = native::from_exponential(p, ts) else {
            self.reject("exponential_histogram_scale", 1);
            return;
        };
        let family = metric_name(name, self.unit, NameKind::Other, self.t.add_suffixes);
        let meta = self.meta(&family, MetricType::Histogram);
        self.out.series.push(Series {
            labels: self.labels(&family.clone().into(), &p.attributes, None),
            value: 0.0,
            timestamp_ms: ts,
            created_ms: created(p.start_time_unix_nano, true),
            exemplars: p.exemplars.iter().map(exemplar).collect(),
            meta,
            histogram: Some(Box::new(h)),
        });
    }

    fn summary(&mut self, name: &str, p: &'a SummaryDataPoint<'a>) {
        let family = metric_name(name, self.unit, NameKind::Other, self.t.add_suffixes);
        let name = Text::from(family.clone());
        let ts = self.ts(p.time_unix_nano);
        let created = created(p.start_time_unix_nano, true);
        let meta = self.meta(&family, MetricType::Summary);
        for &(quantile, value) in &p.quantile_values {
            let labels = self.labels(
                &name,
                &p.attributes,
                Some(("quantile", le_string(quantile).into())),
            );
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
        self.push_plain(
            format!("{family}_sum").into(),
            &p.attributes,
            p.sum,
            ts,
            created,
            &meta,
        );
        self.push_plain(
            format!("{family}_count").into(),
            &p.attributes,
            p.count as f64,
            ts,
            created,
            &meta,
        );
    }

    fn push_plain(
        &mut self,
        name: Text<'a>,
        attrs: &'a [KeyValue<'a>],
        value: f64,
        ts: i64,
        created: i64,
        meta: &Arc<Meta>,
    ) {
        let labels = self.labels(&name, attrs, None);
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
