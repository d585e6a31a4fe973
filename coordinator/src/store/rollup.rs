//! Downsampled rollups: min/max/sum/count per fixed bucket.

use super::bits;
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

pub(crate) fn encode(buckets: &[Bucket]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + buckets.len() * 34);
    bits::varint_put(&mut out, buckets.len() as u64);
    for b in buckets {
        bits::varint_put(&mut out, bits::zigzag(b.start_ms));
        for v in [b.min, b.max, b.sum] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        bits::varint_put(&mut out, b.count);
    }
    out
}

pub(crate) fn decode(buf: &[u8]) -> Option<Vec<Bucket>> {
    let mut pos = 0;
    let n = bits::varint_get(buf, &mut pos)?;
    if n > buf.len() as u64 {
        return None;
    }
    let mut out = Vec::with_capacity(usize::try_from(n).ok()?);
    let f = |pos: &mut usize| -> Option<f64> {
        let v = f64::from_le_bytes(buf.get(*pos..*pos + 8)?.try_into().ok()?);
        *pos += 8;
        Some(v)
    };
    for _ in 0..n {
        let start_ms = bits::unzigzag(bits::varint_get(buf, &mut pos)?);
        let (min, max, sum) = (f(&mut pos)?, f(&mut pos)?, f(&mut pos)?);
        let count = bits::varint_get(buf, &mut pos)?;
        out.push(Bucket {
            start_ms,
            min,
            max,
            sum,
            count,
        });
    }
    Some(out)
}
