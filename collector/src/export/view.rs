//! An OTLP metrics request read in place: the messages translation needs,
//! with every string and byte field borrowed from the queued payload
//! instead of copied into a `String` per attribute (what prost's decode
//! does). Field names follow the OTLP messages. Reading validates as the
//! ingest walk does ([`crate::ingest::walk`], prost's rules), and follows
//! prost's merge rules where a message repeats a field: a scalar or string
//! given twice keeps the last, a repeated field appends, a message field
//! merges into the one before it, and a oneof given as another member
//! replaces it.

use crate::ingest::walk::{self, R, WireType, fields};

/// `ExportMetricsServiceRequest`.
#[derive(Debug, Default)]
pub struct Request<'a> {
    pub resource_metrics: Vec<ResourceMetrics<'a>>,
}

#[derive(Debug, Default)]
pub struct ResourceMetrics<'a> {
    pub resource: Option<Resource<'a>>,
    pub scope_metrics: Vec<ScopeMetrics<'a>>,
}

#[derive(Debug, Default)]
pub struct Resource<'a> {
    pub attributes: Vec<KeyValue<'a>>,
}

#[derive(Debug, Default)]
pub struct ScopeMetrics<'a> {
    pub metrics: Vec<Metric<'a>>,
}

#[derive(Debug, Default)]
pub struct Metric<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub unit: &'a str,
    pub data: Option<Data<'a>>,
}

/// The `data` oneof of a metric.
#[derive(Debug)]
pub enum Data<'a> {
    Gauge(Vec<NumberDataPoint<'a>>),
    Sum(Sum<'a>),
    Histogram(Points<HistogramDataPoint<'a>>),
    ExponentialHistogram(Points<ExponentialHistogramDataPoint<'a>>),
    Summary(Vec<SummaryDataPoint<'a>>),
}

#[derive(Debug, Default)]
pub struct Sum<'a> {
    pub data_points: Vec<NumberDataPoint<'a>>,
    pub aggregation_temporality: i32,
    pub is_monotonic: bool,
}

/// A histogram's points and temporality.
#[derive(Debug, Default)]
pub struct Points<P> {
    pub data_points: Vec<P>,
    pub aggregation_temporality: i32,
}

#[derive(Debug, Default)]
pub struct KeyValue<'a> {
    pub key: &'a str,
    pub value: Option<AnyValue<'a>>,
}

#[derive(Debug)]
pub enum AnyValue<'a> {
    /// Given, with no member set.
    Empty,
    String(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Array(Vec<Option<AnyValue<'a>>>),
    Kvlist(Vec<KeyValue<'a>>),
    Bytes(&'a [u8]),
}

/// A number or an exemplar value (`as_double` / `as_int`).
#[derive(Debug, Clone, Copy)]
pub enum Number {
    Double(f64),
    Int(i64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Self::Double(v) => v,
            Self::Int(v) => v as f64,
        }
    }
}

#[derive(Debug, Default)]
pub struct NumberDataPoint<'a> {
    pub attributes: Vec<KeyValue<'a>>,
    pub start_time_unix_nano: u64,
    pub time_unix_nano: u64,
    pub exemplars: Vec<Exemplar<'a>>,
    pub flags: u32,
    pub value: Option<Number>,
}

#[derive(Debug, Default)]
pub struct HistogramDataPoint<'a> {
    pub attributes: Vec<KeyValue<'a>>,
    pub start_time_unix_nano: u64,
    pub time_unix_nano: u64,
    pub count: u64,
    pub sum: Option<f64>,
    pub bucket_counts: Vec<u64>,
    pub explicit_bounds: Vec<f64>,
    pub exemplars: Vec<Exemplar<'a>>,
    pub flags: u32,
}

#[derive(Debug, Default, Clone)]
pub struct Buckets {
    pub offset: i32,
    pub bucket_counts: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct ExponentialHistogramDataPoint<'a> {
    pub attributes: Vec<KeyValue<'a>>,
    pub start_time_unix_nano: u64,
    pub time_unix_nano: u64,
    pub count: u64,
    pub sum: Option<f64>,
    pub scale: i32,
    pub zero_count: u64,
    pub positive: Option<Buckets>,
    pub negative: Option<Buckets>,
    pub flags: u32,
    pub exemplars: Vec<Exemplar<'a>>,
    pub zero_threshold: f64,
}

#[derive(Debug, Default)]
pub struct SummaryDataPoint<'a> {
    pub attributes: Vec<KeyValue<'a>>,
    pub start_time_unix_nano: u64,
    pub time_unix_nano: u64,
    pub count: u64,
    pub sum: f64,
    /// (quantile, value).
    pub quantile_values: Vec<(f64, f64)>,
}

#[derive(Debug, Default)]
pub struct Exemplar<'a> {
    pub filtered_attributes: Vec<KeyValue<'a>>,
    pub time_unix_nano: u64,
    pub span_id: &'a [u8],
    pub trace_id: &'a [u8],
    pub value: Option<Number>,
}

/// Reads a metrics request from its protobuf bytes.
pub fn read(body: &[u8]) -> R<Request<'_>> {
    let mut req = Request::default();
    fields(body, walk::DEPTH, |tag, wt, b, ctx| match tag {
        1 => walk::message(wt, b, ctx, |m, ctx| {
            req.resource_metrics.push(resource_metrics(m, ctx)?);
            Ok(())
        }),
        _ => walk::unknown(tag, wt, b, ctx),
    })?;
    Ok(req)
}

fn resource_metrics(b: &[u8], ctx: u32) -> R<ResourceMetrics<'_>> {
    let mut rm = ResourceMetrics::default();
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        1 => walk::message(wt, b, ctx, |m, ctx| {
            let resource = rm.resource.get_or_insert_default();
            fields(m, ctx, |tag, wt, b, ctx| match tag {
                1 => walk::message(wt, b, ctx, |m, ctx| {
                    resource.attributes.push(key_value(m, ctx)?);
                    Ok(())
                }),
                2 => walk::varint(wt, b).map(|_| ()),
                3 => walk::message(wt, b, ctx, walk::entity_ref),
                _ => walk::unknown(tag, wt, b, ctx),
            })
        }),
        2 => walk::message(wt, b, ctx, |m, ctx| {
            let mut sm = ScopeMetrics::default();
            fields(m, ctx, |tag, wt, b, ctx| match tag {
                1 => walk::message(wt, b, ctx, walk::scope),
                2 => walk::message(wt, b, ctx, |m, ctx| {
                    sm.metrics.push(metric(m, ctx)?);
                    Ok(())
                }),
                3 => walk::string(wt, b).map(|_| ()),
                _ => walk::unknown(tag, wt, b, ctx),
            })?;
            rm.scope_metrics.push(sm);
            Ok(())
        }),
        3 => walk::string(wt, b).map(|_| ()),
        _ => walk::unknown(tag, wt, b, ctx),
    })?;
    Ok(rm)
}

fn key_value(b: &[u8], ctx: u32) -> R<KeyValue<'_>> {
    let mut kv = KeyValue::default();
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        1 => {
            kv.key = walk::string(wt, b)?;
            Ok(())
        }
        2 => walk::message(wt, b, ctx, |m, ctx| any_value(m, ctx, &mut kv.value)),
        _ => walk::unknown(tag, wt, b, ctx),
    })?;
    Ok(kv)
}

/// Merges an `AnyValue` body into `value`.
fn any_value<'a>(b: &'a [u8], ctx: u32, value: &mut Option<AnyValue<'a>>) -> R<()> {
    if value.is_none() {
        *value = Some(AnyValue::Empty);
    }
    fields(b, ctx, |tag, wt, b, ctx| {
        match tag {
            1 => *value = Some(AnyValue::String(walk::string(wt, b)?)),
            2 => *value = Some(AnyValue::Bool(walk::varint(wt, b)? != 0)),
            3 => *value = Some(AnyValue::Int(walk::varint(wt, b)? as i64)),
            4 => *value = Some(AnyValue::Double(f64::from_bits(walk::fixed64(wt, b)?))),
            5 => {
                if !matches!(value, Some(AnyValue::Array(_))) {
                    *value = Some(AnyValue::Array(Vec::new()));
                }
                let Some(AnyValue::Array(items)) = value else {
                    unreachable!("set above")
                };
                walk::message(wt, b, ctx, |m, ctx| {
                    fields(m, ctx, |tag, wt, b, ctx| match tag {
                        1 => walk::message(wt, b, ctx, |m, ctx| {
                            let mut item = None;
                            any_value(m, ctx, &mut item)?;
                            items.push(item);
                            Ok(())
                        }),
                        _ => walk::unknown(tag, wt, b, ctx),
                    })
                })?;
            }
            6 => {
                if !matches!(value, Some(AnyValue::Kvlist(_))) {
                    *value = Some(AnyValue::Kvlist(Vec::new()));
                }
                let Some(AnyValue::Kvlist(items)) = value else {
                    unreachable!("set above")
                };
                walk::message(wt, b, ctx, |m, ctx| {
                    fields(m, ctx, |tag, wt, b, ctx| match tag {
                        1 => walk::message(wt, b, ctx, |m, ctx| {
                            items.push(key_value(m, ctx)?);
                            Ok(())
                        }),
                        _ => walk::unknown(tag, wt, b, ctx),
                    })
                })?;
            }
            7 => *value = Some(AnyValue::Bytes(walk::delimited(wt, b)?)),
            _ => walk::unknown(tag, wt, b, ctx)?,
        }
        Ok(())
    })
}

fn metric(b: &[u8], ctx: u32) -> R<Metric<'_>> {
    let mut m = Metric::default();
    fields(b, ctx, |tag, wt, b, ctx| {
        match tag {
            1 => m.name = walk::string(wt, b)?,
            2 => m.description = walk::string(wt, b)?,
            3 => m.unit = walk::string(wt, b)?,
            12 => walk::message(wt, b, ctx, walk::key_value)?,
            5 | 7 | 9 | 10 | 11 => {
                // The same member merges into what is there; another replaces it.
                let same = matches!(
                    (&m.data, tag),
                    (Some(Data::Gauge(_)), 5)
                        | (Some(Data::Sum(_)), 7)
                        | (Some(Data::Histogram(_)), 9)
                        | (Some(Data::ExponentialHistogram(_)), 10)
                        | (Some(Data::Summary(_)), 11)
                );
                if !same {
                    m.data = Some(match tag {
                        5 => Data::Gauge(Vec::new()),
                        7 => Data::Sum(Sum::default()),
                        9 => Data::Histogram(Points::default()),
                        10 => Data::ExponentialHistogram(Points::default()),
                        _ => Data::Summary(Vec::new()),
                    });
                }
                let data = m.data.as_mut().expect("set above");
                walk::message(wt, b, ctx, |body, ctx| data_message(body, ctx, data))?;
            }
            _ => walk::unknown(tag, wt, b, ctx)?,
        }
        Ok(())
    })?;
    Ok(m)
}

fn data_message<'a>(b: &'a [u8], ctx: u32, data: &mut Data<'a>) -> R<()> {
    fields(b, ctx, |tag, wt, b, ctx| {
        match (&mut *data, tag) {
            (Data::Gauge(points), 1) => walk::message(wt, b, ctx, |m, ctx| {
                points.push(number_point(m, ctx)?);
                Ok(())
            })?,
            (Data::Sum(s), 1) => walk::message(wt, b, ctx, |m, ctx| {
                s.data_points.push(number_point(m, ctx)?);
                Ok(())
            })?,
            (Data::Sum(s), 2) => s.aggregation_temporality = walk::varint(wt, b)? as i32,
            (Data::Sum(s), 3) => s.is_monotonic = walk::varint(wt, b)? != 0,
            (Data::Histogram(h), 1) => walk::message(wt, b, ctx, |m, ctx| {
                h.data_points.push(histogram_point(m, ctx)?);
                Ok(())
            })?,
            (Data::Histogram(h), 2) => h.aggregation_temporality = walk::varint(wt, b)? as i32,
            (Data::ExponentialHistogram(h), 1) => walk::message(wt, b, ctx, |m, ctx| {
                h.data_points.push(exponential_point(m, ctx)?);
                Ok(())
            })?,
            (Data::ExponentialHistogram(h), 2) => {
                h.aggregation_temporality = walk::varint(wt, b)? as i32
            }
            (Data::Summary(points), 1) => walk::message(wt, b, ctx, |m, ctx| {
                points.push(summary_point(m, ctx)?);
                Ok(())
            })?,
            _ => walk::unknown(tag, wt, b, ctx)?,
        }
        Ok(())
    })
}

fn number(wt: WireType, b: &mut &[u8], int: bool) -> R<Number> {
    let bits = walk::fixed64(wt, b)?;
    Ok(if int {
        Number::Int(bits as i64)
    } else {
        Number::Double(f64::from_bits(bits))
    })
}

fn exemplar(b: &[u8], ctx: u32) -> R<Exemplar<'_>> {
    let mut e = Exemplar::default();
    fields(b, ctx, |tag, wt, b, ctx| {
        match tag {
            7 => walk::message(wt, b, ctx, |m, ctx| {
                e.filtered_attributes.push(key_value(m, ctx)?);
                Ok(())
            })?,
            2 => e.time_unix_nano = walk::fixed64(wt, b)?,
            3 | 6 => e.value = Some(number(wt, b, tag == 6)?),
            4 => e.span_id = walk::delimited(wt, b)?,
            5 => e.trace_id = walk::delimited(wt, b)?,
            _ => walk::unknown(tag, wt, b, ctx)?,
        }
        Ok(())
    })?;
    Ok(e)
}

fn number_point(b: &[u8], ctx: u32) -> R<NumberDataPoint<'_>> {
    let mut p = NumberDataPoint::default();
    fields(b, ctx, |tag, wt, b, ctx| {
        match tag {
            7 => walk::message(wt, b, ctx, |m, ctx| {
                p.attributes.push(key_value(m, ctx)?);
                Ok(())
            })?,
            2 => p.start_time_unix_nano = walk::fixed64(wt, b)?,
            3 => p.time_unix_nano = walk::fixed64(wt, b)?,
            4 | 6 => p.value = Some(number(wt, b, tag == 6)?),
            5 => walk::message(wt, b, ctx, |m, ctx| {
                p.exemplars.push(exemplar(m, ctx)?);
                Ok(())
            })?,
            8 => p.flags = walk::varint(wt, b)? as u32,
            _ => walk::unknown(tag, wt, b, ctx)?,
        }
        Ok(())
    })?;
    Ok(p)
}

fn histogram_point(b: &[u8], ctx: u32) -> R<HistogramDataPoint<'_>> {
    let mut p = HistogramDataPoint::default();
    fields(b, ctx, |tag, wt, b, ctx| {
        match tag {
            9 => walk::message(wt, b, ctx, |m, ctx| {
                p.attributes.push(key_value(m, ctx)?);
                Ok(())
            })?,
            2 => p.start_time_unix_nano = walk::fixed64(wt, b)?,
            3 => p.time_unix_nano = walk::fixed64(wt, b)?,
            4 => p.count = walk::fixed64(wt, b)?,
            5 => p.sum = Some(f64::from_bits(walk::fixed64(wt, b)?)),
            6 => walk::repeated_fixed64(wt, b, |v| p.bucket_counts.push(v))?,
            7 => walk::repeated_fixed64(wt, b, |v| p.explicit_bounds.push(f64::from_bits(v)))?,
            8 => walk::message(wt, b, ctx, |m, ctx| {
                p.exemplars.push(exemplar(m, ctx)?);
                Ok(())
            })?,
            10 => p.flags = walk::varint(wt, b)? as u32,
            11 | 12 => walk::fixed64(wt, b).map(|_| ())?,
            _ => walk::unknown(tag, wt, b, ctx)?,
        }
        Ok(())
    })?;
    Ok(p)
}

/// Merges a `Buckets` body into `into`.
fn buckets(b: &[u8], ctx: u32, into: &mut Buckets) -> R<()> {
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        1 => {
            into.offset = walk::sint32(walk::varint(wt, b)?);
            Ok(())
        }
        2 => walk::repeated_varint(wt, b, |v| into.bucket_counts.push(v)),
        _ => walk::unknown(tag, wt, b, ctx),
    })
}

fn exponential_point(b: &[u8], ctx: u32) -> R<ExponentialHistogramDataPoint<'_>> {
    let mut p = ExponentialHistogramDataPoint::default();
    fields(b, ctx, |tag, wt, b, ctx| {
        match tag {
            1 => walk::message(wt, b, ctx, |m, ctx| {
                p.attributes.push(key_value(m, ctx)?);
                Ok(())
            })?,
            2 => p.start_time_unix_nano = walk::fixed64(wt, b)?,
            3 => p.time_unix_nano = walk::fixed64(wt, b)?,
            4 => p.count = walk::fixed64(wt, b)?,
            5 => p.sum = Some(f64::from_bits(walk::fixed64(wt, b)?)),
            6 => p.scale = walk::sint32(walk::varint(wt, b)?),
            7 => p.zero_count = walk::fixed64(wt, b)?,
            8 => walk::message(wt, b, ctx, |m, ctx| {
                buckets(m, ctx, p.positive.get_or_insert_default())
            })?,
            9 => walk::message(wt, b, ctx, |m, ctx| {
                buckets(m, ctx, p.negative.get_or_insert_default())
            })?,
            10 => p.flags = walk::varint(wt, b)? as u32,
            11 => walk::message(wt, b, ctx, |m, ctx| {
                p.exemplars.push(exemplar(m, ctx)?);
                Ok(())
            })?,
            12 | 13 => walk::fixed64(wt, b).map(|_| ())?,
            14 => p.zero_threshold = f64::from_bits(walk::fixed64(wt, b)?),
            _ => walk::unknown(tag, wt, b, ctx)?,
        }
        Ok(())
    })?;
    Ok(p)
}

fn summary_point(b: &[u8], ctx: u32) -> R<SummaryDataPoint<'_>> {
    let mut p = SummaryDataPoint::default();
    fields(b, ctx, |tag, wt, b, ctx| {
        match tag {
            7 => walk::message(wt, b, ctx, |m, ctx| {
                p.attributes.push(key_value(m, ctx)?);
                Ok(())
            })?,
            2 => p.start_time_unix_nano = walk::fixed64(wt, b)?,
            3 => p.time_unix_nano = walk::fixed64(wt, b)?,
            4 => p.count = walk::fixed64(wt, b)?,
            5 => p.sum = f64::from_bits(walk::fixed64(wt, b)?),
            6 => walk::message(wt, b, ctx, |m, ctx| {
                let (mut q, mut v) = (0.0, 0.0);
                fields(m, ctx, |tag, wt, b, ctx| {
                    match tag {
                        1 => q = f64::from_bits(walk::fixed64(wt, b)?),
                        2 => v = f64::from_bits(walk::fixed64(wt, b)?),
                        _ => walk::unknown(tag, wt, b, ctx)?,
                    }
                    Ok(())
                })?;
                p.quantile_values.push((q, v));
                Ok(())
            })?,
            8 => walk::varint(wt, b).map(|_| ())?,
            _ => walk::unknown(tag, wt, b, ctx)?,
        }
        Ok(())
    })?;
    Ok(p)
}
