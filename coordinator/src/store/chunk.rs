//! Compressed sample chunks: the unit the store writes to RocksDB.
//!
//! Layout (all multi-byte integers LEB128 varints, `z` = zigzag):
//!
//! ```text
//! flags:u8  count  z(first_ts)  k_ts:u8  [mode header]  bitstream
//! flags: bit0 = value mode (0 decimal, 1 xor), bit1 = has special samples
//! decimal header: scale:u8  k_val:u8
//! bitstream, per sample i:
//!   ts    (i >= 1): rice_{k_ts}(z(delta_i - delta_{i-1}))   (delta_0 = 0)
//!   flag  (if has specials): 1 = special
//!   special: quality:2  raw f64 bits:64
//!   decimal: rice_{k_val}(z(m_i - m_prev))   value = m / 10^scale
//!   xor:     Gorilla XOR against the previous normal value
//! ```
//!
//! Timestamps may repeat and may go backwards (out-of-order arrivals): every
//! delta is a wrapping i64, so any sequence round-trips. A sample is *special*
//! when its quality is not `Ok` or its value cannot be represented in the
//! chunk's value mode (NaN, ±inf, -0.0 and non-decimal values in decimal mode);
//! specials keep their exact 64-bit pattern. The encoder tries both value modes
//! and keeps the smaller. Decimal mode is what makes real sensor data small:
//! devices report quantised decimals (45 °C, 12.10 V), whose mantissa deltas
//! Rice-code to a few bits, where XOR of binary fractions costs tens.

use super::bits::{self, BitReader, BitWriter};
use crate::model::{Quality, Sample};

/// A chunk could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk truncated or corrupt at {0}")]
    Corrupt(&'static str),
}

const MODE_XOR: u8 = 1;
const HAS_SPECIALS: u8 = 2;
const MAX_SCALE: u8 = 15;

const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// 2^53: beyond this an integer mantissa is not exact in an f64.
const MANTISSA_LIMIT: f64 = 9_007_199_254_740_992.0;

fn decimal_value(m: i64, scale: u8) -> f64 {
    #[allow(clippy::cast_precision_loss)] // |m| <= 2^53 by construction
    let mf = m as f64;
    if scale == 0 {
        mf
    } else {
        mf / POW10[usize::from(scale)]
    }
}

/// The mantissa of `v` at `scale` if `v` is exactly `m / 10^scale`.
fn decimal_mantissa(v: f64, scale: u8) -> Option<i64> {
    let m = (v * POW10[usize::from(scale)]).round();
    if !m.is_finite() || m.abs() > MANTISSA_LIMIT {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)] // checked against 2^53 above
    let m = m as i64;
    (decimal_value(m, scale).to_bits() == v.to_bits()).then_some(m)
}

/// Smallest scale at which `v` is an exact decimal, if any.
fn min_scale(v: f64) -> Option<u8> {
    (0..=MAX_SCALE).find(|&s| decimal_mantissa(v, s).is_some())
}

/// Encode samples, in the given order, as small as the codec can: tries the
/// decimal mode and the XOR mode and keeps the smaller (sealed chunks, rollups).
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let decimal = encode_decimal(samples);
    let xor = encode_mode(samples, Mode::Xor);
    match decimal {
        Some(d) if d.len() <= xor.len() => d,
        _ => xor,
    }
}

/// Encode in one pass, XOR mode only: for the ingest hot path, whose partial
/// chunks live only until their window is sealed (then re-encoded by [`encode`]).
pub fn encode_fast(samples: &[Sample]) -> Vec<u8> {
    encode_mode(samples, Mode::Xor)
}

fn encode_decimal(samples: &[Sample]) -> Option<Vec<u8>> {
    // The scale that covers every Ok value that is a decimal at all; values
    // that are not become specials. Give up if that makes most samples special.
    let mut scale = 0u8;
    let mut non_decimal = 0usize;
    for s in samples.iter().filter(|s| s.quality == Quality::Ok) {
        // Most values share a scale: one check at the scale found so far.
        if decimal_mantissa(s.value, scale).is_some() {
            continue;
        }
        match min_scale(s.value) {
            Some(d) => scale = scale.max(d),
            None => non_decimal += 1,
        }
    }
    if non_decimal * 4 > samples.len() {
        return None;
    }
    Some(encode_mode(samples, Mode::Decimal(scale)))
}

#[derive(Clone, Copy)]
enum Mode {
    Decimal(u8),
    Xor,
}

fn encode_mode(samples: &[Sample], mode: Mode) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + samples.len());
    // Classify values first: decimal mantissas or specials.
    let mantissas: Vec<Option<i64>> = samples
        .iter()
        .map(|s| {
            if s.quality != Quality::Ok {
                return None;
            }
            match mode {
                Mode::Decimal(scale) => decimal_mantissa(s.value, scale),
                Mode::Xor => Some(0),
            }
        })
        .collect();
    let has_specials = mantissas.iter().any(Option::is_none);
    let mut flags = if has_specials { HAS_SPECIALS } else { 0 };
    if matches!(mode, Mode::Xor) {
        flags |= MODE_XOR;
    }
    out.push(flags);
    bits::varint_put(&mut out, samples.len() as u64);
    let Some(first) = samples.first() else {
        return out;
    };
    bits::varint_put(&mut out, bits::zigzag(first.ts_ms));

    let mut prev_ts = first.ts_ms;
    let mut prev_delta = 0i64;
    let dods: Vec<u64> = samples[1..]
        .iter()
        .map(|s| {
            let delta = s.ts_ms.wrapping_sub(prev_ts);
            let dod = delta.wrapping_sub(prev_delta);
            prev_ts = s.ts_ms;
            prev_delta = delta;
            bits::zigzag(dod)
        })
        .collect();
    let k_ts = bits::best_rice_k(&dods);
    out.push(u8::try_from(k_ts).expect("rice k <= 48"));

    let mut value_deltas = Vec::new();
    let k_val = if let Mode::Decimal(scale) = mode {
        let mut prev = 0i64;
        for m in mantissas.iter().flatten() {
            value_deltas.push(bits::zigzag(m.wrapping_sub(prev)));
            prev = *m;
        }
        let k = bits::best_rice_k(&value_deltas);
        out.push(scale);
        out.push(u8::try_from(k).expect("rice k <= 48"));
        k
    } else {
        0
    };

    let mut w = BitWriter::with_bytes(out);
    let mut deltas = value_deltas.into_iter();
    let mut xor = XorState::default();
    for (i, (s, m)) in samples.iter().zip(&mantissas).enumerate() {
        if i > 0 {
            bits::rice_put(&mut w, dods[i - 1], k_ts);
        }
        if has_specials {
            w.bit(m.is_none());
        }
        match (m, mode) {
            (None, _) => {
                w.bits(u64::from(s.quality as u8), 2);
                w.bits(s.value.to_bits(), 64);
            }
            (Some(_), Mode::Decimal(_)) => {
                bits::rice_put(
                    &mut w,
                    deltas.next().expect("one delta per mantissa"),
                    k_val,
                );
            }
            (Some(_), Mode::Xor) => xor.put(&mut w, s.value.to_bits()),
        }
    }
    w.finish()
}

/// Gorilla XOR state: previous value and the previous meaningful-bit window.
#[derive(Default)]
struct XorState {
    prev: u64,
    window: Option<(u32, u32)>, // (leading zeros, meaningful length)
}

impl XorState {
    fn put(&mut self, w: &mut BitWriter, v: u64) {
        let x = v ^ self.prev;
        self.prev = v;
        if x == 0 {
            w.bit(false);
            return;
        }
        w.bit(true);
        let lead = x.leading_zeros();
        let trail = x.trailing_zeros();
        if let Some((pl, plen)) = self.window {
            if lead >= pl && trail >= 64 - pl - plen {
                w.bit(false);
                w.bits(x >> (64 - pl - plen), plen);
                return;
            }
        }
        let len = 64 - lead - trail;
        w.bit(true);
        w.bits(u64::from(lead), 6);
        w.bits(u64::from(len - 1), 6);
        w.bits(x >> trail, len);
        self.window = Some((lead, len));
    }

    fn get(&mut self, r: &mut BitReader<'_>) -> Option<u64> {
        if !r.bit()? {
            return Some(self.prev);
        }
        let x = if r.bit()? {
            let lead = u32::try_from(r.bits(6)?).ok()?;
            let len = u32::try_from(r.bits(6)?).ok()? + 1;
            if lead + len > 64 {
                return None;
            }
            self.window = Some((lead, len));
            r.bits(len)? << (64 - lead - len)
        } else {
            let (pl, plen) = self.window?;
            r.bits(plen)? << (64 - pl - plen)
        };
        self.prev ^= x;
        Some(self.prev)
    }
}

/// Decode a chunk, appending to `out` in encoded order.
pub fn decode_into(buf: &[u8], out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    let corrupt = ChunkError::Corrupt;
    let flags = *buf.first().ok_or(corrupt("flags"))?;
    if flags & !(MODE_XOR | HAS_SPECIALS) != 0 {
        return Err(corrupt("flags"));
    }
    let mut pos = 1;
    let count = bits::varint_get(buf, &mut pos).ok_or(corrupt("count"))?;
    if count == 0 {
        return Ok(());
    }
    // Every sample costs at least one bit; refuse absurd counts before allocating.
    if count > (buf.len() as u64) * 8 {
        return Err(corrupt("count"));
    }
    let first_ts = bits::unzigzag(bits::varint_get(buf, &mut pos).ok_or(corrupt("first ts"))?);
    let k_ts = u32::from(*buf.get(pos).ok_or(corrupt("k_ts"))?);
    pos += 1;
    if k_ts > bits::MAX_RICE_K {
        return Err(corrupt("k_ts"));
    }
    let decimal = if flags & MODE_XOR == 0 {
        let scale = *buf.get(pos).ok_or(corrupt("scale"))?;
        let k_val = u32::from(*buf.get(pos + 1).ok_or(corrupt("k_val"))?);
        pos += 2;
        if scale > MAX_SCALE {
            return Err(corrupt("scale"));
        }
        if k_val > bits::MAX_RICE_K {
            return Err(corrupt("k_val"));
        }
        Some((scale, k_val))
    } else {
        None
    };
    if k_ts > 64 {
        return Err(corrupt("k_ts"));
    }
    let has_specials = flags & HAS_SPECIALS != 0;
    let mut r = BitReader::new(&buf[pos..]);
    let mut ts = first_ts;
    let mut delta = 0i64;
    let mut m = 0i64;
    let mut xor = XorState::default();
    out.reserve(usize::try_from(count).map_err(|_| corrupt("count"))?);
    for i in 0..count {
        if i > 0 {
            let dod = bits::unzigzag(bits::rice_get(&mut r, k_ts).ok_or(corrupt("timestamp"))?);
            delta = delta.wrapping_add(dod);
            ts = ts.wrapping_add(delta);
        }
        let special = has_specials && r.bit().ok_or(corrupt("flag"))?;
        let sample = if special {
            let q = r.bits(2).ok_or(corrupt("quality"))?;
            let v = f64::from_bits(r.bits(64).ok_or(corrupt("raw value"))?);
            Sample {
                ts_ms: ts,
                value: v,
                quality: Quality::from_u8(u8::try_from(q).unwrap_or(u8::MAX)),
            }
        } else if let Some((scale, k_val)) = decimal {
            let d = bits::unzigzag(bits::rice_get(&mut r, k_val).ok_or(corrupt("value"))?);
            m = m.wrapping_add(d);
            if (m as f64).abs() > MANTISSA_LIMIT {
                return Err(corrupt("mantissa"));
            }
            Sample {
                ts_ms: ts,
                value: decimal_value(m, scale),
                quality: Quality::Ok,
            }
        } else {
            let v = xor.get(&mut r).ok_or(corrupt("xor value"))?;
            Sample {
                ts_ms: ts,
                value: f64::from_bits(v),
                quality: Quality::Ok,
            }
        };
        out.push(sample);
    }
    Ok(())
}

/// Decode a whole chunk.
pub fn decode(buf: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    let mut out = Vec::new();
    decode_into(buf, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn same(a: &[Sample], b: &[Sample]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.ts_ms == y.ts_ms
                    && x.value.to_bits() == y.value.to_bits()
                    && x.quality == y.quality
            })
    }

    fn s(ts_ms: i64, value: f64) -> Sample {
        Sample {
            ts_ms,
            value,
            quality: Quality::Ok,
        }
    }

    fn arb_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(0.0),
            (-100_000i64..100_000).prop_map(|m| m as f64 / 100.0),
            (0i64..20_000).prop_map(|m| m as f64),
        ]
    }

    fn arb_quality() -> impl Strategy<Value = Quality> {
        prop_oneof![
            8 => Just(Quality::Ok),
            1 => Just(Quality::Nan),
            1 => Just(Quality::Stale),
            1 => Just(Quality::Unreadable),
        ]
    }

    fn arb_ts() -> impl Strategy<Value = Vec<i64>> {
        prop_oneof![
            // regular with jitter, possibly repeated / out of order
            (
                any::<i32>(),
                proptest::collection::vec(-3i64..1_500, 0..200)
            )
                .prop_map(|(start, steps)| {
                    let mut t = i64::from(start);
                    steps
                        .into_iter()
                        .map(|d| {
                            t += d;
                            t
                        })
                        .collect()
                }),
            proptest::collection::vec(any::<i64>(), 0..50),
        ]
    }

    proptest! {
        #[test]
        fn round_trips_any_samples(
            ts in arb_ts(),
            vals in proptest::collection::vec((arb_value(), arb_quality()), 200),
        ) {
            let samples: Vec<Sample> = ts.iter().zip(vals).map(|(&t, (v, q))| Sample { ts_ms: t, value: v, quality: q }).collect();
            let enc = encode(&samples);
            let dec = decode(&enc).unwrap();
            prop_assert!(same(&samples, &dec), "{samples:?} != {dec:?}");
        }

        #[test]
        fn decoder_never_panics_on_garbage(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&buf);
        }

        #[test]
        fn truncation_is_detected_or_harmless(
            vals in proptest::collection::vec(-1000i64..1000, 1..100), cut in 0usize..64,
        ) {
            let samples: Vec<Sample> = vals.iter().enumerate().map(|(i, &v)| s(i as i64 * 1000, v as f64 / 10.0)).collect();
            let enc = encode(&samples);
            let cut = cut.min(enc.len());
            // A truncated chunk must never decode to the full, original set.
            if cut > 0 {
                match decode(&enc[..enc.len() - cut]) {
                    Err(_) => {}
                    Ok(d) => prop_assert!(!same(&d, &samples)),
                }
            }
        }
    }

    /// A Rice parameter the encoder never writes (>= 64 made `q << k`
    /// overflow) is corruption, not a panic. Found by the garbage property.
    #[test]
    fn rice_parameters_out_of_range_are_corrupt() {
        for k in [49u8, 64, 255] {
            // flags (decimal), count 2, first ts 0, k_ts, scale 0, k_val, payload
            let bad_ts = [0x00, 0x02, 0x00, k, 0x00, 0x00, 0x00, 0xff, 0xff];
            assert!(matches!(decode(&bad_ts), Err(ChunkError::Corrupt("k_ts"))));
            let bad_val = [0x00, 0x02, 0x00, 0x00, 0x00, k, 0x00, 0xff, 0xff];
            assert!(matches!(
                decode(&bad_val),
                Err(ChunkError::Corrupt("k_val"))
            ));
        }
    }

    #[test]
    fn special_values_round_trip() {
        let samples = vec![
            s(0, f64::NAN),
            s(0, f64::INFINITY),
            s(-5, f64::NEG_INFINITY),
            s(10, -0.0),
            Sample {
                ts_ms: 10,
                value: f64::NAN,
                quality: Quality::Unreadable,
            },
            Sample {
                ts_ms: 9,
                value: 4.5,
                quality: Quality::Stale,
            },
            s(i64::MIN, 1.0),
            s(i64::MAX, f64::MIN_POSITIVE),
        ];
        assert!(same(&samples, &decode(&encode(&samples)).unwrap()));
    }

    #[test]
    fn quantised_sensor_data_is_small() {
        // 1 Hz fan RPM reported in whole RPM with small wobble: a few bits/sample.
        let samples: Vec<Sample> = (0..3600)
            .map(|i| {
                s(
                    1_700_000_000_000 + i * 1000,
                    9200.0 + ((i * 7919) % 41 - 20) as f64,
                )
            })
            .collect();
        let enc = encode(&samples);
        let bytes_per_sample = enc.len() as f64 / samples.len() as f64;
        assert!(bytes_per_sample < 1.0, "{bytes_per_sample} bytes/sample");
        assert!(same(&samples, &decode(&enc).unwrap()));
    }

    #[test]
    fn empty_chunk_round_trips() {
        assert!(decode(&encode(&[])).unwrap().is_empty());
    }
}
