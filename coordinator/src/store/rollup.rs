//! Downsampled rollups: min/max/sum/count per fixed bucket.

use super::{bits, chunk};
use crate::model::{Quality, Sample};

/// Rollup bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Minute,
    Hour,
}

impl Resolution {
    pub fn millis(self) -> i64 {
        match self {
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Resolution::Minute => 1,
            Resolution::Hour => 2,
        }
    }

    /// The resolution of exactly `ms` milliseconds.
    pub fn from_millis(ms: i64) -> Option<Resolution> {
        [Resolution::Minute, Resolution::Hour]
            .into_iter()
            .find(|r| r.millis() == ms)
    }
}

/// Aggregate of the `Ok`, finite samples in `[start_ms, start_ms + resolution)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start_ms: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
}

impl Bucket {
    pub fn mean(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let n = self.count as f64;
        self.sum / n
    }
}

/// Buckets of `samples` (any order), sorted by start.
pub(crate) fn compute(samples: &[Sample], res: Resolution) -> Vec<Bucket> {
    let mut map: std::collections::BTreeMap<i64, Bucket> = std::collections::BTreeMap::new();
    for s in samples
        .iter()
        .filter(|s| s.quality == Quality::Ok && s.value.is_finite())
    {
        let start = s
            .ts_ms
            .div_euclid(res.millis())
            .saturating_mul(res.millis());
        let b = map.entry(start).or_insert(Bucket {
            start_ms: start,
            min: s.value,
            max: s.value,
            sum: 0.0,
            count: 0,
        });
        b.min = b.min.min(s.value);
        b.max = b.max.max(s.value);
        b.sum += s.value;
        b.count += 1;
    }
    map.into_values().collect()
}

/// Column-wise encoding that reuses the chunk codec, so rollups of regular,
/// decimal-valued series cost a few bits per bucket:
///
/// ```text
/// n:varint  count:varint * n  chunk(start_ms, min)  same:u8  [chunk(max) chunk(sum)]
/// ```
///
/// `same = 1` when every bucket holds one sample (min = max = sum: a series
/// polled at or above the bucket width), which stores one column, not three.
pub fn encode(buckets: &[Bucket]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + buckets.len() * 4);
    bits::varint_put(&mut out, buckets.len() as u64);
    for b in buckets {
        bits::varint_put(&mut out, b.count);
    }
    let column = |f: fn(&Bucket) -> f64| -> Vec<u8> {
        let samples: Vec<Sample> = buckets
            .iter()
            .map(|b| Sample {
                ts_ms: b.start_ms,
                value: f(b),
                quality: Quality::Ok,
            })
            .collect();
        chunk::encode(&samples)
    };
    let put_column = |out: &mut Vec<u8>, col: Vec<u8>| {
        bits::varint_put(out, col.len() as u64);
        out.extend_from_slice(&col);
    };
    put_column(&mut out, column(|b| b.min));
    let same = buckets
        .iter()
        .all(|b| b.min.to_bits() == b.max.to_bits() && b.min.to_bits() == b.sum.to_bits());
    out.push(u8::from(same));
    if !same {
        put_column(&mut out, column(|b| b.max));
        put_column(&mut out, column(|b| b.sum));
    }
    out
}

pub fn decode(buf: &[u8]) -> Option<Vec<Bucket>> {
    let mut pos = 0;
    let n = bits::varint_get(buf, &mut pos)?;
    if n > buf.len() as u64 {
        return None;
    }
    let n = usize::try_from(n).ok()?;
    let mut counts = Vec::with_capacity(n);
    for _ in 0..n {
        counts.push(bits::varint_get(buf, &mut pos)?);
    }
    let column = |pos: &mut usize| -> Option<Vec<Sample>> {
        let len = usize::try_from(bits::varint_get(buf, pos)?).ok()?;
        let body = buf.get(*pos..pos.checked_add(len)?)?;
        *pos += len;
        let col = chunk::decode(body).ok()?;
        (col.len() == n).then_some(col)
    };
    let min = column(&mut pos)?;
    let same = *buf.get(pos)?;
    pos += 1;
    let (max, sum) = match same {
        1 => (min.clone(), min.clone()),
        0 => (column(&mut pos)?, column(&mut pos)?),
        _ => return None,
    };
    if pos != buf.len() {
        return None;
    }
    Some(
        (0..n)
            .map(|i| Bucket {
                start_ms: min[i].ts_ms,
                min: min[i].value,
                max: max[i].value,
                sum: sum[i].value,
                count: counts[i],
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_bucket() -> impl Strategy<Value = Bucket> {
        (
            -1_000_000i64..1_000_000,
            any::<f64>(),
            any::<f64>(),
            any::<f64>(),
            1u64..10_000,
        )
            .prop_map(|(k, min, max, sum, count)| Bucket {
                start_ms: k * 60_000,
                min,
                max,
                sum,
                count,
            })
    }

    fn bits_of(b: &[Bucket]) -> Vec<(i64, u64, u64, u64, u64)> {
        b.iter()
            .map(|b| {
                (
                    b.start_ms,
                    b.min.to_bits(),
                    b.max.to_bits(),
                    b.sum.to_bits(),
                    b.count,
                )
            })
            .collect()
    }

    #[test]
    fn single_sample_buckets_store_one_column() {
        let one: Vec<Bucket> = (0..120)
            .map(|i| {
                let v = f64::from(i % 7) * 0.25 + 40.0;
                Bucket {
                    start_ms: i64::from(i) * 300_000,
                    min: v,
                    max: v,
                    sum: v,
                    count: 1,
                }
            })
            .collect();
        let enc = encode(&one);
        assert_eq!(bits_of(&decode(&enc).unwrap()), bits_of(&one));
        assert!(
            enc.len() < one.len() * 3,
            "{} bytes for {} buckets",
            enc.len(),
            one.len()
        );
    }

    proptest! {
        #[test]
        fn rollups_round_trip_bit_exactly(b in proptest::collection::vec(arb_bucket(), 0..200)) {
            let enc = encode(&b);
            prop_assert_eq!(bits_of(&decode(&enc).unwrap()), bits_of(&b));
        }

        #[test]
        fn garbage_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&buf);
        }
    }
}
