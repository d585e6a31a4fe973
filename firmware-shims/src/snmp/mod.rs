//! SNMP messages (RFC 3416 PDUs in RFC 1901 v2c / RFC 3412 v3 envelopes) over
//! the BER subset in [`ber`]. Encoding and decoding only: the agent's UDP
//! transport, retries and walks live in `agent/src/transport/snmp.rs`.

pub mod ber;
pub mod mib;
pub mod usm;

use ber::{
    put_i64, put_tlv, put_u64, BerError, Oid, Reader, INTEGER, NULL, OCTET_STRING, OID, SEQUENCE,
};

/// A varbind value (RFC 2578 / RFC 3416 types).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    OctetString(Vec<u8>),
    Null,
    Oid(Oid),
    IpAddress([u8; 4]),
    Counter32(u32),
    Gauge32(u32),
    TimeTicks(u32),
    Opaque(Vec<u8>),
    Counter64(u64),
    /// Exceptions (RFC 3416 §3): the agent has no such object/instance, or
    /// the walk ran off the end of its MIB.
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
}

impl Value {
    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView
        )
    }

    /// Numeric view for telemetry (None for strings, OIDs, exceptions).
    pub fn as_f64(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        match *self {
            Value::Integer(v) => Some(v as f64),
            Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => Some(f64::from(v)),
            Value::Counter64(v) => Some(v as f64),
            _ => None,
        }
    }

    fn decode(tag: u8, body: &[u8]) -> Result<Value, BerError> {
        Ok(match tag {
            INTEGER => Value::Integer(ber::decode_i64(body)?),
            OCTET_STRING => Value::OctetString(body.to_vec()),
            NULL => Value::Null,
            OID => Value::Oid(Oid::decode(body)?),
            0x40 => Value::IpAddress(
                body.try_into()
                    .map_err(|_| BerError::IntegerTooLong(body.len()))?,
            ),
            0x41 => Value::Counter32(u32_of(body)?),
            0x42 => Value::Gauge32(u32_of(body)?),
            0x43 => Value::TimeTicks(u32_of(body)?),
            0x44 => Value::Opaque(body.to_vec()),
            0x46 => Value::Counter64(ber::decode_unsigned(body, 64)?),
            0x80 => Value::NoSuchObject,
            0x81 => Value::NoSuchInstance,
            0x82 => Value::EndOfMibView,
            other => return Err(BerError::UnknownTag(other)),
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Integer(v) => put_tlv(out, INTEGER, |o| put_i64(o, *v)),
            Value::OctetString(b) => put_tlv(out, OCTET_STRING, |o| o.extend_from_slice(b)),
            Value::Null => put_tlv(out, NULL, |_| {}),
            Value::Oid(oid) => put_tlv(out, OID, |o| oid.encode_body(o)),
            Value::IpAddress(a) => put_tlv(out, 0x40, |o| o.extend_from_slice(a)),
            Value::Counter32(v) => put_tlv(out, 0x41, |o| put_u64(o, u64::from(*v))),
            Value::Gauge32(v) => put_tlv(out, 0x42, |o| put_u64(o, u64::from(*v))),
            Value::TimeTicks(v) => put_tlv(out, 0x43, |o| put_u64(o, u64::from(*v))),
            Value::Opaque(b) => put_tlv(out, 0x44, |o| o.extend_from_slice(b)),
            Value::Counter64(v) => put_tlv(out, 0x46, |o| put_u64(o, *v)),
            Value::NoSuchObject => put_tlv(out, 0x80, |_| {}),
            Value::NoSuchInstance => put_tlv(out, 0x81, |_| {}),
            Value::EndOfMibView => put_tlv(out, 0x82, |_| {}),
        }
    }
}

fn u32_of(body: &[u8]) -> Result<u32, BerError> {
    u32::try_from(ber::decode_unsigned(body, 32)?).map_err(|_| BerError::IntegerTooLong(body.len()))
}

/// PDU types (RFC 3416 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PduKind {
    Get,
    GetNext,
    Response,
    Set,
    GetBulk,
    Inform,
    TrapV2,
    Report,
}

impl PduKind {
    pub fn tag(self) -> u8 {
        match self {
            PduKind::Get => 0xa0,
            PduKind::GetNext => 0xa1,
            PduKind::Response => 0xa2,
            PduKind::Set => 0xa3,
            PduKind::GetBulk => 0xa5,
            PduKind::Inform => 0xa6,
            PduKind::TrapV2 => 0xa7,
            PduKind::Report => 0xa8,
        }
    }

    fn from_tag(t: u8) -> Option<PduKind> {
        Some(match t {
            0xa0 => PduKind::Get,
            0xa1 => PduKind::GetNext,
            0xa2 => PduKind::Response,
            0xa3 => PduKind::Set,
            0xa5 => PduKind::GetBulk,
            0xa6 => PduKind::Inform,
            0xa7 => PduKind::TrapV2,
            0xa8 => PduKind::Report,
            _ => return None,
        })
    }
}

/// A PDU. For `GetBulk`, `error_status` and `error_index` carry
/// non-repeaters and max-repetitions (same wire positions).
#[derive(Debug, Clone, PartialEq)]
pub struct Pdu {
    pub kind: PduKind,
    pub request_id: i32,
    pub error_status: i64,
    pub error_index: i64,
    pub varbinds: Vec<(Oid, Value)>,
}

/// Most varbinds decoded from one PDU (a 64 KiB datagram holds fewer).
pub const MAX_VARBINDS: usize = 8192;

impl Pdu {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_tlv(out, self.kind.tag(), |o| {
            put_tlv(o, INTEGER, |b| put_i64(b, i64::from(self.request_id)));
            put_tlv(o, INTEGER, |b| put_i64(b, self.error_status));
            put_tlv(o, INTEGER, |b| put_i64(b, self.error_index));
            put_tlv(o, SEQUENCE, |list| {
                for (oid, v) in &self.varbinds {
                    put_tlv(list, SEQUENCE, |vb| {
                        put_tlv(vb, OID, |b| oid.encode_body(b));
                        v.encode(vb);
                    });
                }
            });
        });
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Pdu, BerError> {
        let tag = r.peek_tag()?;
        let kind = PduKind::from_tag(tag).ok_or(BerError::UnknownTag(tag))?;
        let mut p = r.expect(tag)?;
        let request_id = i32::try_from(p.integer()?).map_err(|_| BerError::IntegerTooLong(8))?;
        let error_status = p.integer()?;
        let error_index = p.integer()?;
        let mut list = p.expect(SEQUENCE)?;
        p.finish()?;
        let mut varbinds = Vec::new();
        while !list.is_empty() {
            if varbinds.len() == MAX_VARBINDS {
                return Err(BerError::Trailing(list.rest().len()));
            }
            let mut vb = list.expect(SEQUENCE)?;
            let oid = Oid::decode(vb.expect(OID)?.rest())?;
            let (vt, body) = vb.tlv()?;
            vb.finish()?;
            varbinds.push((oid, Value::decode(vt, body.rest())?));
        }
        Ok(Pdu {
            kind,
            request_id,
            error_status,
            error_index,
            varbinds,
        })
    }

    pub fn error(&self) -> Option<ErrorStatus> {
        (self.kind != PduKind::GetBulk && self.error_status != 0)
            .then(|| ErrorStatus::from_code(self.error_status))
    }
}

/// error-status values (RFC 3416 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStatus {
    TooBig,
    NoSuchName,
    BadValue,
    ReadOnly,
    GenErr,
    NoAccess,
    WrongType,
    WrongLength,
    WrongEncoding,
    WrongValue,
    NoCreation,
    InconsistentValue,
    ResourceUnavailable,
    CommitFailed,
    UndoFailed,
    AuthorizationError,
    NotWritable,
    InconsistentName,
    Other(i64),
}

impl ErrorStatus {
    pub fn from_code(c: i64) -> ErrorStatus {
        use ErrorStatus::*;
        match c {
            1 => TooBig,
            2 => NoSuchName,
            3 => BadValue,
            4 => ReadOnly,
            5 => GenErr,
            6 => NoAccess,
            7 => WrongType,
            8 => WrongLength,
            9 => WrongEncoding,
            10 => WrongValue,
            11 => NoCreation,
            12 => InconsistentValue,
            13 => ResourceUnavailable,
            14 => CommitFailed,
            15 => UndoFailed,
            16 => AuthorizationError,
            17 => NotWritable,
            18 => InconsistentName,
            other => Other(other),
        }
    }
}

/// Community-based message (v1 = 0, v2c = 1).
#[derive(Debug, Clone, PartialEq)]
pub struct CommunityMessage {
    pub version: i64,
    pub community: Vec<u8>,
    pub pdu: Pdu,
}

pub const VERSION_2C: i64 = 1;

impl CommunityMessage {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.pdu.varbinds.len() * 24);
        put_tlv(&mut out, SEQUENCE, |o| {
            put_tlv(o, INTEGER, |b| put_i64(b, self.version));
            put_tlv(o, OCTET_STRING, |b| b.extend_from_slice(&self.community));
            self.pdu.encode(o);
        });
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<CommunityMessage, BerError> {
        let mut top = Reader::new(bytes);
        let mut m = top.expect(SEQUENCE)?;
        top.finish()?;
        let version = m.integer()?;
        let community = m.octets()?.to_vec();
        let pdu = Pdu::decode(&mut m)?;
        m.finish()?;
        Ok(CommunityMessage {
            version,
            community,
            pdu,
        })
    }
}

#[cfg(test)]
mod tests;
