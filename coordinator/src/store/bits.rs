//! MSB-first bit writer/reader and Rice codes with an escape, used by [`super::chunk`].

/// Appends bits to a byte vector, most significant bit first.
#[derive(Default)]
pub(crate) struct BitWriter {
    buf: Vec<u8>,
    /// Pending bits, right-aligned; fewer than 8 between calls.
    acc: u64,
    pending: u32,
}

impl BitWriter {
    pub(crate) fn with_bytes(buf: Vec<u8>) -> Self {
        BitWriter {
            buf,
            acc: 0,
            pending: 0,
        }
    }

    pub(crate) fn bit(&mut self, b: bool) {
        self.bits(u64::from(b), 1);
    }

    /// Writes the low `n` bits of `v`, most significant first (`n <= 64`).
    pub(crate) fn bits(&mut self, v: u64, n: u32) {
        if n > 56 {
            // Keep pending + n within the 64-bit accumulator.
            self.bits(v >> 32, n - 32);
            self.bits(v & 0xffff_ffff, 32);
            return;
        }
        if n == 0 {
            return;
        }
        let v = v & ((1u64 << n) - 1);
        self.acc = (self.acc << n) | v;
        self.pending += n;
        while self.pending >= 8 {
            self.pending -= 8;
            self.buf.push(low_byte(self.acc >> self.pending));
        }
        self.acc &= (1u64 << self.pending) - 1;
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.pending > 0 {
            self.buf.push(low_byte(self.acc << (8 - self.pending)));
        }
        self.buf
    }
}

fn low_byte(v: u64) -> u8 {
    u8::try_from(v & 0xff).expect("masked to 8 bits")
}

/// Reads bits written by [`BitWriter`]; every read is bounds-checked.
pub(crate) struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        BitReader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() * 8 - self.pos
    }

    pub(crate) fn bit(&mut self) -> Option<bool> {
        let byte = *self.buf.get(self.pos / 8)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1 == 1;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn bits(&mut self, n: u32) -> Option<u64> {
        if self.remaining() < n as usize {
            return None;
        }
        // Byte-wise: take what is left of the current byte, then whole bytes.
        let mut v = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = u64::from(self.buf[self.pos / 8]);
            let offset = u32::try_from(self.pos % 8).expect("< 8");
            let avail = 8 - offset;
            let take = avail.min(left);
            let chunk = (byte >> (avail - take)) & ((1u64 << take) - 1);
            v = if take == 64 {
                chunk
            } else {
                (v << take) | chunk
            };
            self.pos += take as usize;
            left -= take;
        }
        Some(v)
    }
}

/// Unary quotients at or above this are escaped to a raw 64-bit value.
const RICE_ESCAPE: u64 = 24;

/// The largest Rice parameter the encoder picks; a decoder refuses larger
/// ones (they come only from corrupt chunks, and `q << k` needs `k < 64`).
pub(crate) const MAX_RICE_K: u32 = 48;

/// Rice code of `z` with parameter `k`.
pub(crate) fn rice_put(w: &mut BitWriter, z: u64, k: u32) {
    let q = z >> k;
    if q >= RICE_ESCAPE {
        w.bits(
            (1 << RICE_ESCAPE) - 1,
            u32::try_from(RICE_ESCAPE).expect("small"),
        );
        w.bits(z, 64);
    } else {
        // q ones and a zero, in one write (q < 24).
        let q32 = u32::try_from(q).expect("< RICE_ESCAPE");
        w.bits(((1u64 << q) - 1) << 1, q32 + 1);
        w.bits(z, k);
    }
}

pub(crate) fn rice_get(r: &mut BitReader<'_>, k: u32) -> Option<u64> {
    if k > MAX_RICE_K {
        return None;
    }
    let mut q = 0u64;
    while r.bit()? {
        q += 1;
        if q == RICE_ESCAPE {
            return r.bits(64);
        }
    }
    let low = r.bits(k)?;
    Some((q << k) | low)
}

/// The Rice parameter that minimises the encoded size of `values`.
pub(crate) fn best_rice_k(values: &[u64]) -> u32 {
    // One pass into per-bit-length buckets (count, sum); the cost of every k
    // then follows from the 65 buckets instead of another pass per k. Within a
    // bucket `sum >> k` is within `count` of the exact sum of quotients, which
    // only matters for picking k, never for decoding.
    let mut count = [0u64; 65];
    let mut sum = [0u128; 65];
    for &z in values {
        let b = (64 - z.leading_zeros()) as usize;
        count[b] += 1;
        sum[b] += u128::from(z);
    }
    let used: Vec<usize> = (0..65).filter(|&b| count[b] > 0).collect();
    // Beyond the widest value's bit length a larger k only adds bits.
    let max_k = used.last().map_or(0, |&b| {
        u32::try_from(b).unwrap_or(MAX_RICE_K).min(MAX_RICE_K)
    });
    (0..=max_k)
        .map(|k| {
            let mut cost = 0u128;
            for &b in &used {
                let smallest = if b == 0 { 0 } else { 1u128 << (b - 1) };
                let n = u128::from(count[b]);
                cost += if (smallest >> k) >= u128::from(RICE_ESCAPE) {
                    n * u128::from(RICE_ESCAPE + 64)
                } else {
                    (sum[b] >> k) + n * u128::from(k + 1)
                };
            }
            (k, cost)
        })
        .min_by_key(|&(k, cost)| (cost, k))
        .map_or(0, |(k, _)| k)
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)).cast_unsigned()
}

pub(crate) fn unzigzag(z: u64) -> i64 {
    (z >> 1).cast_signed() ^ -(z & 1).cast_signed()
}

/// LEB128 varint.
pub(crate) fn varint_put(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(low7(v) | 0x80);
        v >>= 7;
    }
    buf.push(low7(v));
}

fn low7(v: u64) -> u8 {
    u8::try_from(v & 0x7f).expect("masked to 7 bits")
}

pub(crate) fn varint_get(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn rice_round_trips(zs in proptest::collection::vec(any::<u64>(), 0..64), k in 0u32..=48) {
            let mut w = BitWriter::default();
            for &z in &zs { rice_put(&mut w, z, k); }
            let buf = w.finish();
            let mut r = BitReader::new(&buf);
            for &z in &zs { prop_assert_eq!(rice_get(&mut r, k), Some(z)); }
        }

        #[test]
        fn zigzag_round_trips(v in any::<i64>()) {
            prop_assert_eq!(unzigzag(zigzag(v)), v);
        }

        #[test]
        fn varint_round_trips(v in any::<u64>()) {
            let mut b = Vec::new();
            varint_put(&mut b, v);
            let mut pos = 0;
            prop_assert_eq!(varint_get(&b, &mut pos), Some(v));
            prop_assert_eq!(pos, b.len());
        }
    }

    #[test]
    fn reader_reports_end_instead_of_panicking() {
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.bits(8), Some(0xff));
        assert_eq!(r.bit(), None);
        assert_eq!(rice_get(&mut BitReader::new(&[0xff, 0xff]), 3), None);
    }
}

#[cfg(test)]
mod rice_k_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bits_are_written_most_significant_first() {
        let mut w = BitWriter::with_bytes(vec![0xAA]);
        w.bit(true);
        w.bits(0b011, 3);
        w.bits(0xF0F, 12);
        assert_eq!(w.finish(), [0xAA, 0b1011_1111, 0b0000_1111]);
    }

    proptest! {
        #[test]
        fn reader_returns_what_the_writer_wrote(
            fields in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..100)
        ) {
            let mut w = BitWriter::with_bytes(Vec::new());
            for &(v, n) in &fields {
                w.bits(v, n);
            }
            let buf = w.finish();
            let mut r = BitReader::new(&buf);
            for &(v, n) in &fields {
                let want = if n == 64 { v } else { v & ((1u64 << n) - 1) };
                prop_assert_eq!(r.bits(n), Some(want));
            }
            prop_assert!(r.remaining() < 8);
        }
    }

    /// Exact bits of one Rice-coded value (the cost `best_rice_k` estimates).
    fn rice_len(z: u64, k: u32) -> u64 {
        let q = z >> k;
        if q >= RICE_ESCAPE {
            RICE_ESCAPE + 64
        } else {
            q + 1 + u64::from(k)
        }
    }

    proptest! {
        /// The estimate-and-check choice of k costs at most a few percent more
        /// than an exhaustive search, on geometric-like data with outliers.
        #[test]
        fn estimated_k_is_near_optimal(
            base in 0u32..40,
            v in proptest::collection::vec((0u64..1000, 0u8..100), 1..300),
        ) {
            let values: Vec<u64> = v
                .iter()
                .map(|&(x, o)| if o == 0 { x << 40 } else { x << base.min(20) })
                .collect();
            let cost = |k| values.iter().map(|&z| rice_len(z, k)).sum::<u64>();
            let exhaustive = (0..=48).map(cost).min().unwrap();
            let chosen = cost(best_rice_k(&values));
            prop_assert!(chosen * 100 <= exhaustive * 105 + 64,
                "chosen {chosen} bits vs optimal {exhaustive}");
        }
    }
}
