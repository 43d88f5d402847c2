//! Validates and counts an OTLP metrics request without decoding it into
//! owned messages: one pass over the wire format with prost's primitives
//! (`decode_key`, `decode_varint`, `check_wire_type`, `skip_field`), no
//! allocation. It accepts exactly what `ExportMetricsServiceRequest::decode`
//! accepts — every known field must have its declared wire type, strings
//! must be UTF-8, lengths must fit, packed fields must end on their
//! boundary, nesting stops at prost's recursion limit — and counts what
//! [`super::count_metrics`] counts on the decoded request, including
//! prost's merge rules (a metric's data given twice: the same kind merges,
//! another kind replaces it). Its primitives also serve the exporters'
//! in-place reading of queued requests (`export::view`).

use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
pub use prost::encoding::WireType;
use prost::encoding::{check_wire_type, decode_key, decode_varint, skip_field};

use super::Counts;
use crate::export::native;

/// Why a body is not a valid metrics request.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error(transparent)]
    Wire(#[from] prost::DecodeError),
    #[error("a length-delimited field runs past the end of its message")]
    Truncated,
    #[error("a packed field or nested message does not end on its boundary")]
    LengthExceeded,
    #[error("a string field is not UTF-8")]
    NotUtf8,
    #[error("messages nested too deep")]
    TooDeep,
}

pub type R<T> = Result<T, WalkError>;

/// prost's nesting limit (`prost::RECURSION_LIMIT`).
pub const DEPTH: u32 = 100;

const DELTA: i32 = AggregationTemporality::Delta as i32;

/// Validates `body` as `ExportMetricsServiceRequest` and counts it.
pub fn metrics(body: &[u8]) -> R<Counts> {
    let mut counts = Counts::default();
    fields(body, DEPTH, |tag, wt, b, ctx| match tag {
        1 => message(wt, b, ctx, |m, ctx| resource_metrics(m, ctx, &mut counts)),
        _ => unknown(tag, wt, b, ctx),
    })?;
    Ok(counts)
}

/// Calls `f` for every field of a message body.
pub fn fields<'a>(
    mut b: &'a [u8],
    ctx: u32,
    mut f: impl FnMut(u32, WireType, &mut &'a [u8], u32) -> R<()>,
) -> R<()> {
    while !b.is_empty() {
        let (tag, wt) = decode_key(&mut b)?;
        f(tag, wt, &mut b, ctx)?;
    }
    Ok(())
}

pub fn unknown(tag: u32, wt: WireType, b: &mut &[u8], ctx: u32) -> R<()> {
    if ctx == 0 {
        return Err(WalkError::TooDeep);
    }
    Ok(skip_field(wt, tag, b, Default::default())?)
}

/// A length-delimited field's bytes.
pub fn delimited<'a>(wt: WireType, b: &mut &'a [u8]) -> R<&'a [u8]> {
    check_wire_type(WireType::LengthDelimited, wt)?;
    let len = decode_varint(b)?;
    if len > b.len() as u64 {
        return Err(WalkError::Truncated);
    }
    let (body, rest) = b.split_at(len as usize);
    *b = rest;
    Ok(body)
}

/// A nested message: `f` walks its body one level deeper.
pub fn message<'a>(
    wt: WireType,
    b: &mut &'a [u8],
    ctx: u32,
    f: impl FnOnce(&'a [u8], u32) -> R<()>,
) -> R<()> {
    check_wire_type(WireType::LengthDelimited, wt)?;
    if ctx == 0 {
        return Err(WalkError::TooDeep);
    }
    f(delimited(wt, b)?, ctx - 1)
}

pub fn string<'a>(wt: WireType, b: &mut &'a [u8]) -> R<&'a str> {
    std::str::from_utf8(delimited(wt, b)?).map_err(|_| WalkError::NotUtf8)
}

fn bytes(wt: WireType, b: &mut &[u8]) -> R<()> {
    delimited(wt, b).map(|_| ())
}

pub fn varint(wt: WireType, b: &mut &[u8]) -> R<u64> {
    check_wire_type(WireType::Varint, wt)?;
    Ok(decode_varint(b)?)
}

pub fn fixed64(wt: WireType, b: &mut &[u8]) -> R<u64> {
    check_wire_type(WireType::SixtyFourBit, wt)?;
    let Some((v, rest)) = b.split_first_chunk::<8>() else {
        return Err(WalkError::Truncated);
    };
    *b = rest;
    Ok(u64::from_le_bytes(*v))
}

/// A `sint32` as prost reads it: the varint's low 32 bits, zigzag.
pub fn sint32(v: u64) -> i32 {
    let v = v as u32;
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// `repeated fixed64` / `repeated double`: packed or one value, each
/// value to `each`.
pub fn repeated_fixed64(wt: WireType, b: &mut &[u8], mut each: impl FnMut(u64)) -> R<()> {
    if wt == WireType::LengthDelimited {
        let body = delimited(wt, b)?;
        if body.len() % 8 != 0 {
            return Err(WalkError::LengthExceeded);
        }
        for v in body.chunks_exact(8) {
            each(u64::from_le_bytes(v.try_into().expect("8 bytes")));
        }
        Ok(())
    } else {
        fixed64(wt, b).map(each)
    }
}

/// `repeated uint64`: packed or one value, each value to `each`.
pub fn repeated_varint(wt: WireType, b: &mut &[u8], mut each: impl FnMut(u64)) -> R<()> {
    if wt == WireType::LengthDelimited {
        let mut body = delimited(wt, b)?;
        while !body.is_empty() {
            each(decode_varint(&mut body).map_err(|_| WalkError::LengthExceeded)?);
        }
        Ok(())
    } else {
        varint(wt, b).map(each)
    }
}

fn resource_metrics(b: &[u8], ctx: u32, counts: &mut Counts) -> R<()> {
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        1 => message(wt, b, ctx, resource),
        2 => message(wt, b, ctx, |m, ctx| scope_metrics(m, ctx, counts)),
        3 => string(wt, b).map(|_| ()),
        _ => unknown(tag, wt, b, ctx),
    })
}

fn resource(b: &[u8], ctx: u32) -> R<()> {
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        1 => message(wt, b, ctx, key_value),
        2 => varint(wt, b).map(|_| ()),
        3 => message(wt, b, ctx, entity_ref),
        _ => unknown(tag, wt, b, ctx),
    })
}

pub fn entity_ref(b: &[u8], ctx: u32) -> R<()> {
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        1..=4 => string(wt, b).map(|_| ()),
        _ => unknown(tag, wt, b, ctx),
    })
}

fn scope_metrics(b: &[u8], ctx: u32, counts: &mut Counts) -> R<()> {
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        1 => message(wt, b, ctx, scope),
        2 => message(wt, b, ctx, |m, ctx| metric(m, ctx, counts)),
        3 => string(wt, b).map(|_| ()),
        _ => unknown(tag, wt, b, ctx),
    })
}

pub fn scope(b: &[u8], ctx: u32) -> R<()> {
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        1 | 2 => string(wt, b).map(|_| ()),
        3 => message(wt, b, ctx, key_value),
        4 => varint(wt, b).map(|_| ()),
        _ => unknown(tag, wt, b, ctx),
    })
}

pub fn key_value(b: &[u8], ctx: u32) -> R<()> {
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        1 => string(wt, b).map(|_| ()),
        2 => message(wt, b, ctx, any_value),
        _ => unknown(tag, wt, b, ctx),
    })
}

fn any_value(b: &[u8], ctx: u32) -> R<()> {
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        1 => string(wt, b).map(|_| ()),
        2 | 3 => varint(wt, b).map(|_| ()),
        4 => fixed64(wt, b).map(|_| ()),
        5 => message(wt, b, ctx, |m, ctx| {
            fields(m, ctx, |tag, wt, b, ctx| match tag {
                1 => message(wt, b, ctx, any_value),
                _ => unknown(tag, wt, b, ctx),
            })
        }),
        6 => message(wt, b, ctx, |m, ctx| {
            fields(m, ctx, |tag, wt, b, ctx| match tag {
                1 => message(wt, b, ctx, key_value),
                _ => unknown(tag, wt, b, ctx),
            })
        }),
        7 => bytes(wt, b),
        _ => unknown(tag, wt, b, ctx),
    })
}

/// One metric's data as far as it has been read (the `data` oneof).
#[derive(Default)]
struct Data {
    /// The oneof's field number: 5 gauge, 7 sum, 9 histogram,
    /// 10 exponential histogram, 11 summary.
    kind: u32,
    points: u64,
    exemplars: u64,
    temporality: i32,
    /// Exponential histogram points whose scale Prometheus can represent.
    representable: u64,
}

fn metric(b: &[u8], ctx: u32, counts: &mut Counts) -> R<()> {
    let mut data = Data::default();
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        1..=3 => string(wt, b).map(|_| ()),
        12 => message(wt, b, ctx, key_value),
        5 | 7 | 9 | 10 | 11 => {
            // prost: the same kind merges into what is there, another replaces it.
            if data.kind != tag {
                data = Data {
                    kind: tag,
                    ..Data::default()
                };
            }
            message(wt, b, ctx, |m, ctx| data_message(m, ctx, &mut data))
        }
        _ => unknown(tag, wt, b, ctx),
    })?;
    let delta = data.temporality == DELTA;
    let (odd, exponential) = match data.kind {
        7 | 9 if delta => (data.points, 0),
        10 if delta => (data.points, 0),
        10 => (data.points - data.representable, data.representable),
        _ => (0, 0),
    };
    counts.items += data.points;
    counts.exemplars += data.exemplars;
    counts.not_for_prometheus += odd;
    counts.exponential += exponential;
    Ok(())
}

/// Gauge, Sum, Histogram, ExponentialHistogram or Summary (`data.kind`).
fn data_message(b: &[u8], ctx: u32, data: &mut Data) -> R<()> {
    let kind = data.kind;
    fields(b, ctx, |tag, wt, b, ctx| match (kind, tag) {
        (_, 1) => {
            data.points += 1;
            message(wt, b, ctx, |m, ctx| match kind {
                5 | 7 => number_point(m, ctx, data),
                9 => histogram_point(m, ctx, data),
                10 => exponential_point(m, ctx, data),
                _ => summary_point(m, ctx),
            })
        }
        (7 | 9 | 10, 2) => {
            data.temporality = varint(wt, b)? as i32;
            Ok(())
        }
        (7, 3) => varint(wt, b).map(|_| ()),
        _ => unknown(tag, wt, b, ctx),
    })
}

fn exemplar(b: &[u8], ctx: u32) -> R<()> {
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        7 => message(wt, b, ctx, key_value),
        2 | 3 | 6 => fixed64(wt, b).map(|_| ()),
        4 | 5 => bytes(wt, b),
        _ => unknown(tag, wt, b, ctx),
    })
}

fn number_point(b: &[u8], ctx: u32, data: &mut Data) -> R<()> {
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        7 => message(wt, b, ctx, key_value),
        2 | 3 | 4 | 6 => fixed64(wt, b).map(|_| ()),
        5 => {
            data.exemplars += 1;
            message(wt, b, ctx, exemplar)
        }
        8 => varint(wt, b).map(|_| ()),
        _ => unknown(tag, wt, b, ctx),
    })
}

fn histogram_point(b: &[u8], ctx: u32, data: &mut Data) -> R<()> {
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        9 => message(wt, b, ctx, key_value),
        2..=5 | 11 | 12 => fixed64(wt, b).map(|_| ()),
        6 | 7 => repeated_fixed64(wt, b, |_| ()),
        8 => {
            data.exemplars += 1;
            message(wt, b, ctx, exemplar)
        }
        10 => varint(wt, b).map(|_| ()),
        _ => unknown(tag, wt, b, ctx),
    })
}

fn exponential_point(b: &[u8], ctx: u32, data: &mut Data) -> R<()> {
    let mut scale = 0i32;
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        1 => message(wt, b, ctx, key_value),
        2..=5 | 7 | 12..=14 => fixed64(wt, b).map(|_| ()),
        6 => {
            // sint32, as prost reads it: the low 32 bits, zigzag.
            scale = sint32(varint(wt, b)?);
            Ok(())
        }
        8 | 9 => message(wt, b, ctx, |m, ctx| {
            fields(m, ctx, |tag, wt, b, ctx| match tag {
                1 => varint(wt, b).map(|_| ()),
                2 => repeated_varint(wt, b, |_| ()),
                _ => unknown(tag, wt, b, ctx),
            })
        }),
        10 => varint(wt, b).map(|_| ()),
        11 => {
            data.exemplars += 1;
            message(wt, b, ctx, exemplar)
        }
        _ => unknown(tag, wt, b, ctx),
    })?;
    if native::representable(scale) {
        data.representable += 1;
    }
    Ok(())
}

fn summary_point(b: &[u8], ctx: u32) -> R<()> {
    fields(b, ctx, |tag, wt, b, ctx| match tag {
        7 => message(wt, b, ctx, key_value),
        2..=5 => fixed64(wt, b).map(|_| ()),
        6 => message(wt, b, ctx, |m, ctx| {
            fields(m, ctx, |tag, wt, b, ctx| match tag {
                1 | 2 => fixed64(wt, b).map(|_| ()),
                _ => unknown(tag, wt, b, ctx),
            })
        }),
        8 => varint(wt, b).map(|_| ()),
        _ => unknown(tag, wt, b, ctx),
    })
}
