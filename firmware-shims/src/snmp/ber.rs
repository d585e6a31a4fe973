//! The subset of ASN.1 BER that SNMP uses (X.690 §8): definite lengths only,
//! primitive INTEGER / OCTET STRING / NULL / OBJECT IDENTIFIER, constructed
//! SEQUENCE and context/application tags. Every read is bounds-checked;
//! hostile input (truncated TLVs, lengths past the buffer or beyond 4 length
//! octets, over-long integers, indefinite lengths) is an error, never a panic.

use core::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BerError {
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("length at byte {0} is indefinite or longer than 4 octets")]
    BadLength(usize),
    #[error("expected tag 0x{expected:02x} at byte {at}, found 0x{found:02x}")]
    UnexpectedTag { at: usize, expected: u8, found: u8 },
    #[error("integer of {0} octets does not fit")]
    IntegerTooLong(usize),
    #[error("malformed object identifier")]
    BadOid,
    #[error("{0} trailing bytes")]
    Trailing(usize),
    #[error("unknown value tag 0x{0:02x}")]
    UnknownTag(u8),
}

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;

/// A cursor over one level of TLVs.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the whole message, for error positions.
    base: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn finish(&self) -> Result<(), BerError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(BerError::Trailing(n)),
        }
    }

    fn byte(&mut self) -> Result<u8, BerError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(BerError::Truncated(self.base + self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    pub fn peek_tag(&self) -> Result<u8, BerError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(BerError::Truncated(self.base + self.pos))
    }

    /// Next TLV: (tag, contents as a reader positioned on them).
    pub fn tlv(&mut self) -> Result<(u8, Reader<'a>), BerError> {
        let tag = self.byte()?;
        if tag & 0x1f == 0x1f {
            // Multi-byte tag numbers never occur in SNMP.
            return Err(BerError::UnknownTag(tag));
        }
        let at = self.base + self.pos;
        let first = self.byte()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(BerError::BadLength(at));
            }
            let mut len = 0usize;
            for _ in 0..n {
                len = (len << 8) | usize::from(self.byte()?);
            }
            len
        };
        let start = self.pos;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or(BerError::Truncated(self.base + self.buf.len()))?;
        self.pos = end;
        Ok((
            tag,
            Reader {
                buf: &self.buf[start..end],
                pos: 0,
                base: self.base + start,
            },
        ))
    }

    /// Next TLV, which must carry `tag`.
    pub fn expect(&mut self, tag: u8) -> Result<Reader<'a>, BerError> {
        let at = self.base + self.pos;
        let (found, r) = self.tlv()?;
        if found != tag {
            return Err(BerError::UnexpectedTag {
                at,
                expected: tag,
                found,
            });
        }
        Ok(r)
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn integer(&mut self) -> Result<i64, BerError> {
        decode_i64(self.expect(INTEGER)?.rest())
    }

    pub fn octets(&mut self) -> Result<&'a [u8], BerError> {
        Ok(self.expect(OCTET_STRING)?.rest())
    }
}

/// Two's-complement integer of 1..=8 octets.
pub fn decode_i64(b: &[u8]) -> Result<i64, BerError> {
    if b.is_empty() || b.len() > 8 {
        return Err(BerError::IntegerTooLong(b.len()));
    }
    let mut v: i64 = if b[0] & 0x80 != 0 { -1 } else { 0 };
    for &x in b {
        v = (v << 8) | i64::from(x);
    }
    Ok(v)
}

/// Unsigned integer (Counter32/64, Gauge32, TimeTicks) that fits `bits`.
/// Leading zero octets are skipped (a 0x00 pad is standard; some agents send
/// more), and a value without the pad whose top bit is set is read unsigned,
/// as agents that encode counters as raw 4-octet values mean it.
pub fn decode_unsigned(b: &[u8], bits: u32) -> Result<u64, BerError> {
    if b.is_empty() {
        return Err(BerError::IntegerTooLong(0));
    }
    let skip = b.iter().take_while(|&&x| x == 0).count().min(b.len() - 1);
    let digits = &b[skip..];
    if digits.len() * 8 > bits as usize {
        return Err(BerError::IntegerTooLong(b.len()));
    }
    Ok(digits.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
}

/// An object identifier.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Oid(pub Vec<u32>);

/// At most this many sub-identifiers (RFC 2578 §3.5).
pub const MAX_OID_LEN: usize = 128;

impl Oid {
    pub fn starts_with(&self, prefix: &Oid) -> bool {
        self.0.starts_with(&prefix.0)
    }

    pub fn child(&self, sub: &[u32]) -> Oid {
        let mut v = self.0.clone();
        v.extend_from_slice(sub);
        Oid(v)
    }

    pub fn decode(b: &[u8]) -> Result<Oid, BerError> {
        let mut out = Vec::new();
        let mut cur: u64 = 0;
        let mut in_progress = false;
        for &x in b {
            if !in_progress && x == 0x80 {
                return Err(BerError::BadOid); // non-minimal encoding
            }
            cur = (cur << 7) | u64::from(x & 0x7f);
            if cur > u64::from(u32::MAX) + 80 {
                return Err(BerError::BadOid);
            }
            in_progress = x & 0x80 != 0;
            if !in_progress {
                if out.is_empty() {
                    let (a, b) = match cur {
                        0..=39 => (0, cur),
                        40..=79 => (1, cur - 40),
                        _ => (2, cur - 80),
                    };
                    out.push(a);
                    out.push(u32::try_from(b).map_err(|_| BerError::BadOid)?);
                } else {
                    out.push(u32::try_from(cur).map_err(|_| BerError::BadOid)?);
                }
                if out.len() > MAX_OID_LEN {
                    return Err(BerError::BadOid);
                }
                cur = 0;
            }
        }
        if in_progress || out.len() < 2 {
            return Err(BerError::BadOid);
        }
        Ok(Oid(out))
    }

    pub fn encode_body(&self, out: &mut Vec<u8>) {
        let s = &self.0;
        let first = u64::from(s.first().copied().unwrap_or(0)) * 40
            + u64::from(s.get(1).copied().unwrap_or(0));
        put_base128(out, first);
        for &sub in s.iter().skip(2) {
            put_base128(out, u64::from(sub));
        }
    }
}

fn put_base128(out: &mut Vec<u8>, v: u64) {
    let mut groups = [0u8; 10];
    let mut n = 0;
    let mut v = v;
    loop {
        groups[n] = u8::try_from(v & 0x7f).expect("7 bits");
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(groups[i] | if i > 0 { 0x80 } else { 0 });
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

impl core::str::FromStr for Oid {
    type Err = BerError;
    fn from_str(s: &str) -> Result<Oid, BerError> {
        let v: Result<Vec<u32>, _> = s
            .trim_start_matches('.')
            .split('.')
            .map(str::parse)
            .collect();
        match v {
            Ok(v)
                if v.len() >= 2
                    && v.len() <= MAX_OID_LEN
                    && v[0] <= 2
                    && (v[0] == 2 || v[1] < 40) =>
            {
                Ok(Oid(v))
            }
            _ => Err(BerError::BadOid),
        }
    }
}

/// Writes a TLV whose contents `body` writes.
pub fn put_tlv(out: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    body(&mut inner);
    out.push(tag);
    put_len(out, inner.len());
    out.extend_from_slice(&inner);
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(u8::try_from(len).expect("< 128"));
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | u8::try_from(8 - skip).expect("<= 8"));
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Minimal two's-complement body of `v`.
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    let bytes = v.to_be_bytes();
    let mut i = 0;
    while i < 7
        && ((bytes[i] == 0 && bytes[i + 1] & 0x80 == 0)
            || (bytes[i] == 0xff && bytes[i + 1] & 0x80 != 0))
    {
        i += 1;
    }
    out.extend_from_slice(&bytes[i..]);
}

/// Minimal unsigned body of `v` (with a 0x00 pad when the top bit is set).
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    if bytes[skip] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(&bytes[skip..]);
}
