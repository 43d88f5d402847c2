//! The registry, rendered as OTLP metrics.
//!
//! The same registry that `/metrics` encodes as OpenMetrics is encoded here
//! through prometheus-client's structured (protobuf data model) encoder and
//! converted to OTLP: one snapshot, no second copy of any family. Counters
//! become cumulative monotonic sums, gauges gauges, histograms explicit-bucket
//! histograms; exemplars keep their value and timestamp, and their `trace_id`
//! / `span_id` labels become the exemplar's trace and span ids.
//!
//! Metric names are the exposition's full names (`_total` and unit suffixes
//! included), so a Prometheus-compatible translation back (the collector's
//! remote-write) yields the names dashboards query, unchanged. Units are the
//! catalogue's (`catalogue::unit_of`) for families registered without one.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Exemplar, Gauge, Histogram, HistogramDataPoint, Metric,
        NumberDataPoint, Sum, exemplar, metric, number_data_point,
    },
};
use prometheus_client::{
    encoding::prometheus_protobuf::{self, prometheus_data_model as pb},
    registry::Registry,
};

use crate::catalogue;

/// Why a registry could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("encoding the registry: {0}")]
    Encode(#[from] std::fmt::Error),
    #[error("metric family {family}: unsupported type {kind}")]
    Unsupported { family: String, kind: i32 },
}

/// Renders every family of `registry` as OTLP metrics at `now`, cumulative
/// since `start` (the process's start: when its counters began).
pub fn render(
    registry: &Registry,
    start: SystemTime,
    now: SystemTime,
) -> Result<Vec<Metric>, RenderError> {
    let times = Times {
        start: unix_nanos(start),
        now: unix_nanos(now),
    };
    prometheus_protobuf::encode(registry)?
        .into_iter()
        .map(|family| convert(family, times))
        .collect()
}

#[derive(Clone, Copy)]
struct Times {
    start: u64,
    now: u64,
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A family's OTel (UCUM) unit: its registered Prometheus unit translated,
/// or else the catalogue's (families register without a unit, so the
/// exposition keeps its names), or none.
fn ucum(unit: &str, name: &str) -> String {
    match unit {
        "seconds" => "s",
        "bytes" => "By",
        "ratio" => "1",
        "" => catalogue::unit_of(name).unwrap_or_default(),
        other => other,
    }
    .to_owned()
}

fn convert(family: pb::MetricFamily, t: Times) -> Result<Metric, RenderError> {
    let kind = pb::MetricType::try_from(family.r#type).ok();
    let data = match kind {
        Some(pb::MetricType::Counter) => metric::Data::Sum(Sum {
            data_points: family
                .metric
                .iter()
                .map(|m| number_point(m, m.counter.as_ref().map_or(0.0, |c| c.value), t))
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        Some(pb::MetricType::Gauge | pb::MetricType::Untyped) => metric::Data::Gauge(Gauge {
            data_points: family
                .metric
                .iter()
                .map(|m| {
                    let v = m
                        .gauge
                        .as_ref()
                        .map(|g| g.value)
                        .or(m.untyped.as_ref().map(|u| u.value))
                        .unwrap_or(0.0);
                    number_point(m, v, t)
                })
                .collect(),
        }),
        Some(pb::MetricType::Histogram) => metric::Data::Histogram(Histogram {
            data_points: family
                .metric
                .iter()
                .filter_map(|m| m.histogram.as_ref().map(|h| histogram_point(m, h, t)))
                .collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
        _ => {
            return Err(RenderError::Unsupported {
                family: family.name,
                kind: family.r#type,
            });
        }
    };
    Ok(Metric {
        unit: ucum(&family.unit, &family.name),
        name: family.name,
        description: family.help,
        metadata: Vec::new(),
        data: Some(data),
    })
}

fn attributes(labels: &[pb::LabelPair]) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|l| KeyValue {
            key: l.name.clone(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(l.value.clone())),
            }),
        })
        .collect()
}

fn number_point(m: &pb::Metric, value: f64, t: Times) -> NumberDataPoint {
    let exemplars = m
        .counter
        .as_ref()
        .and_then(|c| c.exemplar.as_ref())
        .map(exemplar)
        .into_iter()
        .collect();
    NumberDataPoint {
        attributes: attributes(&m.label),
        start_time_unix_nano: t.start,
        time_unix_nano: t.now,
        exemplars,
        flags: 0,
        value: Some(if value.fract() == 0.0 && value.abs() < 9.0e15 {
            number_data_point::Value::AsInt(value as i64)
        } else {
            number_data_point::Value::AsDouble(value)
        }),
    }
}

fn histogram_point(m: &pb::Metric, h: &pb::Histogram, t: Times) -> HistogramDataPoint {
    let mut explicit_bounds = Vec::with_capacity(h.bucket.len());
    let mut bucket_counts = Vec::with_capacity(h.bucket.len() + 1);
    let mut below = 0u64;
    let mut exemplars = Vec::new();
    for b in &h.bucket {
        if b.upper_bound.is_finite() {
            explicit_bounds.push(b.upper_bound);
            bucket_counts.push(b.cumulative_count.saturating_sub(below));
            below = b.cumulative_count;
        }
        exemplars.extend(b.exemplar.as_ref().map(exemplar));
    }
    // The +Inf bucket: everything above the last bound.
    bucket_counts.push(h.sample_count.saturating_sub(below));
    HistogramDataPoint {
        attributes: attributes(&m.label),
        start_time_unix_nano: t.start,
        time_unix_nano: t.now,
        count: h.sample_count,
        sum: Some(h.sample_sum),
        bucket_counts,
        explicit_bounds,
        exemplars,
        flags: 0,
        min: None,
        max: None,
    }
}

/// Hex of `len` bytes (a W3C trace or span id), or None.
fn hex_id(s: &str, len: usize) -> Option<Vec<u8>> {
    if s.len() != len * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..len)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

fn exemplar(e: &pb::Exemplar) -> Exemplar {
    let mut trace_id = Vec::new();
    let mut span_id = Vec::new();
    let mut rest = Vec::new();
    for l in &e.label {
        match (l.name.as_str(), hex_id(&l.value, 16), hex_id(&l.value, 8)) {
            ("trace_id" | "traceID", Some(id), _) => trace_id = id,
            ("span_id", _, Some(id)) => span_id = id,
            _ => rest.push(l.clone()),
        }
    }
    Exemplar {
        filtered_attributes: attributes(&rest),
        time_unix_nano: e.timestamp.as_ref().map_or(0, |ts| {
            (ts.seconds.max(0) as u64) * 1_000_000_000 + ts.nanos.max(0) as u64
        }),
        span_id,
        trace_id,
        value: Some(exemplar::Value::AsDouble(e.value)),
    }
}

/// Data points of a rendered metric (what a receiver counts).
pub fn data_points(m: &Metric) -> u64 {
    (match &m.data {
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::{
        encoding::EncodeLabelSet,
        metrics::{
            counter::Counter,
            exemplar::{CounterWithExemplar, HistogramWithExemplars},
            family::Family,
            gauge::Gauge as PGauge,
        },
        registry::Unit,
    };
    use std::time::Duration;

    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    struct Route {
        route: String,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    struct Trace {
        trace_id: String,
        span_id: String,
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    fn trace() -> Trace {
        Trace {
            trace_id: TRACE.into(),
            span_id: SPAN.into(),
        }
    }

    /// One registry, both renderings: the values, bucket counts and exemplars
    /// of the OTLP form are those the text form shows.
    #[test]
    fn renders_counters_gauges_histograms_and_exemplars() {
        let mut registry = Registry::default();
        let requests = Family::<Route, Counter>::default();
        registry.register("requests", "Requests", requests.clone());
        let inflight = PGauge::<i64>::default();
        registry.register("inflight", "In flight", inflight.clone());
        let errors = CounterWithExemplar::<Trace>::default();
        registry.register("errors", "Errors", errors.clone());
        let latency = Family::<Route, HistogramWithExemplars<Trace>>::new_with_constructor(|| {
            HistogramWithExemplars::new([0.01, 0.1, 1.0].into_iter())
        });
        registry.register_with_unit("latency", "Latency", Unit::Seconds, latency.clone());

        let route = Route { route: "/a".into() };
        requests.get_or_create(&route).inc_by(3);
        inflight.set(-2);
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        errors.inc_by(5, Some(trace()), Some(at));
        let h = latency.get_or_create(&route);
        h.observe(0.005, None, None);
        h.observe(0.05, Some(trace()), Some(at));
        h.observe(0.05, None, None);
        h.observe(7.0, None, None);

        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let now = start + Duration::from_secs(60);
        let metrics = render(&registry, start, now).unwrap();
        let by_name = |n: &str| {
            metrics
                .iter()
                .find(|m| m.name == n)
                .unwrap_or_else(|| panic!("{n} in {metrics:?}"))
        };

        let Some(metric::Data::Sum(sum)) = &by_name("requests_total").data else {
            panic!()
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.data_points.len(), 1);
        let p = &sum.data_points[0];
        assert_eq!(p.value, Some(number_data_point::Value::AsInt(3)));
        assert_eq!(p.attributes[0].key, "route");
        assert_eq!(p.start_time_unix_nano, 1_700_000_000 * 1_000_000_000);
        assert_eq!(p.time_unix_nano, 1_700_000_060 * 1_000_000_000);

        let Some(metric::Data::Gauge(g)) = &by_name("inflight").data else {
            panic!()
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsInt(-2))
        );

        let Some(metric::Data::Sum(errs)) = &by_name("errors_total").data else {
            panic!()
        };
        let e = &errs.data_points[0].exemplars[0];
        assert_eq!(e.trace_id.len(), 16);
        assert_eq!(e.trace_id[0], 0x4b);
        assert_eq!(e.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(e.time_unix_nano, 1_700_000_000_123_000_000);
        assert_eq!(e.value, Some(exemplar::Value::AsDouble(5.0)));

        let m = by_name("latency_seconds");
        assert_eq!(m.unit, "s");
        let Some(metric::Data::Histogram(hist)) = &m.data else {
            panic!()
        };
        let p = &hist.data_points[0];
        assert_eq!(p.explicit_bounds, [0.01, 0.1, 1.0]);
        assert_eq!(p.bucket_counts, [1, 2, 0, 1]);
        assert_eq!(p.count, 4);
        assert_eq!(p.sum, Some(7.105));
        assert_eq!(p.exemplars.len(), 1);
        assert_eq!(p.exemplars[0].value, Some(exemplar::Value::AsDouble(0.05)));

        // The text rendering of the same registry shows the same figures.
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("requests_total{route=\"/a\"} 3"), "{text}");
        assert!(
            text.contains("latency_seconds_count{route=\"/a\"} 4"),
            "{text}"
        );
        assert!(
            text.contains(&format!("latency_seconds_bucket{{le=\"0.1\",route=\"/a\"}} 3 # {{trace_id=\"{TRACE}\",span_id=\"{SPAN}\"}} 0.05")),
            "{text}"
        );
    }

    /// Units come from the catalogue, for OTLP only: the exposition is
    /// unchanged. Node and cgroup families have theirs, and a generated
    /// node-exporter name its pattern's.
    #[test]
    fn catalogue_families_carry_their_units() {
        use crate::catalogue::{
            CONTAINER_MEMORY_RSS, NODE_CPU_SECONDS, NODE_MEMORY, NODE_NETSTAT, OSPREY_FLOW_BYTES,
            OSPREY_TCP_RTT_SECONDS,
        };
        let mut registry = Registry::default();
        OSPREY_FLOW_BYTES.register(&mut registry, Counter::<u64>::default());
        let rtt = prometheus_client::metrics::histogram::Histogram::new([0.1]);
        OSPREY_TCP_RTT_SECONDS.register(&mut registry, rtt);
        NODE_CPU_SECONDS.register(&mut registry, Counter::<u64>::default());
        CONTAINER_MEMORY_RSS.register(&mut registry, PGauge::<i64>::default());
        let memory = ["MemTotal"];
        registry.register(
            NODE_MEMORY.name(&memory),
            NODE_MEMORY.help(&memory),
            PGauge::<i64>::default(),
        );
        let netstat = ["Tcp", "ActiveOpens"];
        registry.register(
            NODE_NETSTAT.name(&netstat),
            NODE_NETSTAT.help(&netstat),
            PGauge::<i64>::default(),
        );
        registry.register("requests", "Requests", Counter::<u64>::default());
        let metrics = render(&registry, UNIX_EPOCH, UNIX_EPOCH).unwrap();
        let units: Vec<_> = metrics.iter().map(|m| (&*m.name, &*m.unit)).collect();
        assert_eq!(
            units,
            [
                ("osprey_flow_bytes_total", "By"),
                ("osprey_tcp_rtt_seconds", "s"),
                ("node_cpu_seconds_total", "s"),
                ("container_memory_rss", ""),
                ("node_memory_MemTotal_bytes", "By"),
                // A pattern without a unit: none.
                ("node_netstat_Tcp_ActiveOpens", ""),
                ("requests_total", "")
            ]
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(!text.contains("# UNIT"), "{text}");
        assert!(
            text.contains("# HELP node_netstat_Tcp_ActiveOpens Statistic TcpActiveOpens."),
            "{text}"
        );
    }

    #[test]
    fn ids_that_are_not_hex_of_the_right_length_stay_attributes() {
        assert_eq!(hex_id("zz", 1), None);
        assert_eq!(hex_id("0a0b", 2), Some(vec![10, 11]));
        let e = exemplar(&pb::Exemplar {
            label: vec![pb::LabelPair {
                name: "trace_id".into(),
                value: "not-a-trace".into(),
            }],
            value: 1.0,
            timestamp: None,
        });
        assert!(e.trace_id.is_empty());
        assert_eq!(e.filtered_attributes[0].key, "trace_id");
    }
}
