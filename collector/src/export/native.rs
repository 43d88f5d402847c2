//! OTLP exponential histograms → Prometheus native histograms.
//!
//! Both count observations in exponentially growing buckets of base
//! `2^(2^-scale)`; they differ in where a bucket's index points and in how
//! fine a scale may be:
//!
//! - OTLP bucket `i` holds `(base^i, base^(i+1)]`, Prometheus bucket `j`
//!   holds `(base^(j-1), base^j]`: the same bucket is `j = i + 1`.
//! - OTLP allows scales up to 20, Prometheus schemas only `-4..=8`. A finer
//!   scale is brought down to 8 by merging each run of `2^(scale-8)`
//!   neighbouring buckets into one (bucket `i` becomes `i >> (scale-8)`, a
//!   floor division that holds for negative indices too), as Prometheus'
//!   own OTLP translator does. A scale below -4 cannot be represented.
//!
//! Prometheus stores buckets sparsely: spans of consecutive buckets (the
//! first span's offset is its first index, later ones count the gap since
//! the previous span), and each bucket's count as the delta from the bucket
//! before it. As in client_golang, gaps of up to two empty buckets are
//! filled with zero buckets rather than starting a new span.

use super::proto::{BucketSpan, Histogram};
use super::translate::STALE_NAN;
use super::view::{Buckets, ExponentialHistogramDataPoint};

/// The finest and coarsest exponential schemas Prometheus takes.
pub const SCHEMA_MAX: i32 = 8;
pub const SCHEMA_MIN: i32 = -4;

/// Prometheus' zero bucket width when a point does not give one.
const DEFAULT_ZERO_THRESHOLD: f64 = 1e-128;

/// `RESET_HINT_UNSPECIFIED`: Prometheus detects counter resets itself (a
/// wrong "no reset" hint would corrupt its chunks, so none is given).
const RESET_HINT_UNKNOWN: i32 = 0;

/// Whether a point's scale fits a Prometheus schema (after downscaling).
pub fn representable(scale: i32) -> bool {
    scale >= SCHEMA_MIN
}

/// A cumulative exponential histogram point as a native histogram sample,
/// or `None` when its scale is below what Prometheus can represent.
pub fn from_exponential(
    p: &ExponentialHistogramDataPoint<'_>,
    timestamp_ms: i64,
) -> Option<Histogram> {
    if !representable(p.scale) {
        return None;
    }
    let scale_down = (p.scale - SCHEMA_MAX).max(0) as u32;
    let (positive_spans, positive_deltas) = sparse(p.positive.as_ref(), scale_down);
    let (negative_spans, negative_deltas) = sparse(p.negative.as_ref(), scale_down);
    let stale = p.flags & 1 == 1;
    Some(Histogram {
        count_int: if stale { STALE_NAN.to_bits() } else { p.count },
        sum: if stale {
            STALE_NAN
        } else {
            p.sum.unwrap_or(0.0)
        },
        schema: p.scale.min(SCHEMA_MAX),
        zero_threshold: if p.zero_threshold > 0.0 {
            p.zero_threshold
        } else {
            DEFAULT_ZERO_THRESHOLD
        },
        zero_count_int: p.zero_count,
        negative_spans,
        negative_deltas,
        positive_spans,
        positive_deltas,
        reset_hint: RESET_HINT_UNKNOWN,
        timestamp: timestamp_ms,
    })
}

fn sparse(buckets: Option<&Buckets>, scale_down: u32) -> (Vec<BucketSpan>, Vec<i64>) {
    match buckets {
        Some(b) => spans_and_deltas(b.offset, &b.bucket_counts, scale_down),
        None => (Vec::new(), Vec::new()),
    }
}

/// OTLP's dense buckets (`counts[k]` is bucket `offset + k`) at a scale
/// `scale_down` steps finer than the target schema → Prometheus spans and
/// deltas at the target schema. Empty buckets are left out (gaps of up to
/// two are filled with zeros).
pub fn spans_and_deltas(
    offset: i32,
    counts: &[u64],
    scale_down: u32,
) -> (Vec<BucketSpan>, Vec<i64>) {
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut deltas = Vec::new();
    // The Prometheus index and the count of the bucket being merged.
    let mut merging: Option<(i32, u64)> = None;
    // The last bucket written and its count.
    let mut last: Option<(i32, i64)> = None;
    let mut emit = |index: i32, count: u64| {
        let count = count as i64;
        match last {
            Some((prev, _)) if index - prev <= 3 => {
                // Same span: zero buckets for a gap of up to two.
                let span = spans.last_mut().expect("a span was started");
                let mut prev_count = last.map_or(0, |(_, c)| c);
                for _ in prev + 1..index {
                    deltas.push(-prev_count);
                    prev_count = 0;
                    span.length += 1;
                }
                deltas.push(count - prev_count);
                span.length += 1;
            }
            Some((prev, prev_count)) => {
                spans.push(BucketSpan {
                    offset: index - prev - 1,
                    length: 1,
                });
                deltas.push(count - prev_count);
            }
            None => {
                spans.push(BucketSpan {
                    offset: index,
                    length: 1,
                });
                deltas.push(count);
            }
        }
        last = Some((index, count));
    };
    for (k, &count) in counts.iter().enumerate() {
        // OTLP index at the target scale, then Prometheus' (+1).
        let index = ((offset as i64 + k as i64) >> scale_down) as i32 + 1;
        merging = match merging {
            Some((at, sum)) if at == index => Some((at, sum + count)),
            Some((at, sum)) => {
                if sum > 0 {
                    emit(at, sum);
                }
                Some((index, count))
            }
            None => Some((index, count)),
        };
    }
    if let Some((at, sum)) = merging
        && sum > 0
    {
        emit(at, sum);
    }
    (spans, deltas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(offset: i32, length: u32) -> BucketSpan {
        BucketSpan { offset, length }
    }

    /// Expands spans and deltas back into (index, count) pairs.
    fn buckets(spans: &[BucketSpan], deltas: &[i64]) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        let (mut index, mut count, mut d) = (0i32, 0i64, deltas.iter());
        for (n, s) in spans.iter().enumerate() {
            index += s.offset + if n == 0 { 0 } else { 1 };
            for k in 0..s.length {
                if k > 0 {
                    index += 1;
                }
                count += d.next().unwrap();
                out.push((index, count));
            }
        }
        assert!(d.next().is_none(), "deltas left over");
        out
    }

    #[test]
    fn same_scale_shifts_each_index_by_one() {
        // OTLP buckets 2, 3, 4 with 1, 2, 4 observations.
        let (s, d) = spans_and_deltas(2, &[1, 2, 4], 0);
        assert_eq!(s, [span(3, 3)]);
        assert_eq!(d, [1, 1, 2]);
    }

    #[test]
    fn two_empty_buckets_are_filled_three_start_a_new_span() {
        // OTLP 0: 5, 1..=2 empty, 3: 7, 4..=6 empty, 7: 1.
        let (s, d) = spans_and_deltas(0, &[5, 0, 0, 7, 0, 0, 0, 1], 0);
        // Prometheus 1..=4 (two zero buckets inside), then a gap of 3 to 8.
        assert_eq!(s, [span(1, 4), span(3, 1)]);
        assert_eq!(buckets(&s, &d), [(1, 5), (2, 0), (3, 0), (4, 7), (8, 1)]);
        assert_eq!(d, [5, -5, 0, 7, -6]);
    }

    #[test]
    fn downscaling_by_one_merges_pairs() {
        // Scale 9 → 8: OTLP 9-buckets 4,5 → 8-bucket 2; 6,7 → 3; 8 → 4.
        // Counts 1+2, 3+4, 5 at Prometheus indices 3, 4, 5.
        let (s, d) = spans_and_deltas(4, &[1, 2, 3, 4, 5], 1);
        assert_eq!(buckets(&s, &d), [(3, 3), (4, 7), (5, 5)]);
    }

    #[test]
    fn downscaling_floors_negative_indices() {
        // Scale 10 → 8 merges runs of four: OTLP -5 → -2 (floor(-5/4)),
        // -4..=-1 → -1, 0..=3 → 0. Counts: 1 | 2+3+4+5 | 6+7.
        let (s, d) = spans_and_deltas(-5, &[1, 2, 3, 4, 5, 6, 7], 2);
        assert_eq!(buckets(&s, &d), [(-1, 1), (0, 14), (1, 13)]);
        assert_eq!(s, [span(-1, 3)]);
    }

    #[test]
    fn a_merge_group_after_empty_buckets_keeps_its_index() {
        // Scale 9 → 8, OTLP 0..=3 with 0, 0, 2, 3: the pair 2,3 is
        // 8-bucket 1 (Prometheus 2) holding 5; the empty pair 0,1 is left out.
        let (s, d) = spans_and_deltas(0, &[0, 0, 2, 3], 1);
        assert_eq!(s, [span(2, 1)]);
        assert_eq!(d, [5]);
    }

    #[test]
    fn no_buckets_no_spans() {
        assert_eq!(spans_and_deltas(3, &[], 2), (vec![], vec![]));
        assert_eq!(spans_and_deltas(3, &[0, 0], 0), (vec![], vec![]));
    }

    #[test]
    fn a_point_becomes_a_native_histogram() {
        let p = ExponentialHistogramDataPoint {
            count: 10,
            sum: Some(42.5),
            scale: 12,
            zero_count: 2,
            positive: Some(Buckets {
                offset: 16,
                bucket_counts: vec![3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5],
            }),
            negative: None,
            ..Default::default()
        };
        let h = from_exponential(&p, 7).unwrap();
        // Scale 12 → 8 merges 16 buckets: OTLP 16 → 1, 32 → 2.
        assert_eq!(
            (h.schema, h.count_int, h.sum, h.zero_count_int),
            (8, 10, 42.5, 2)
        );
        assert_eq!(
            buckets(&h.positive_spans, &h.positive_deltas),
            [(2, 3), (3, 5)]
        );
        assert_eq!(h.zero_threshold, DEFAULT_ZERO_THRESHOLD);
        assert!(h.negative_spans.is_empty());
        assert_eq!(h.timestamp, 7);
        let coarse = ExponentialHistogramDataPoint {
            scale: -5,
            ..Default::default()
        };
        assert!(from_exponential(&coarse, 7).is_none());
        let stale = ExponentialHistogramDataPoint { flags: 1, ..p };
        let h = from_exponential(&stale, 7).unwrap();
        assert_eq!(h.sum.to_bits(), STALE_NAN.to_bits());
    }
}
