//! SNMPv3 messages (RFC 3412) with the User-based Security Model (RFC 3414):
//! key localisation, HMAC-SHA-96 (RFC 3414) and HMAC-SHA-256-192 (RFC 7860)
//! authentication, AES-128/256-CFB privacy (RFC 3826; AES-256 with a
//! SHA-256 key, which needs no key extension).
//!
//! Only authPriv and authNoPriv are offered for real requests; noAuthNoPriv
//! exists solely for engine discovery, whose Report carries no data.

use super::ber::{put_i64, put_tlv, BerError, Reader, INTEGER, OCTET_STRING, SEQUENCE};
use super::Pdu;
use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProtocol {
    /// usmHMACSHAAuthProtocol: HMAC-SHA-1, 12-byte MAC.
    Sha1,
    /// usmHMAC192SHA256AuthProtocol: HMAC-SHA-256, 24-byte MAC.
    Sha256,
}

impl AuthProtocol {
    pub fn mac_len(self) -> usize {
        match self {
            AuthProtocol::Sha1 => 12,
            AuthProtocol::Sha256 => 24,
        }
    }

    fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            AuthProtocol::Sha1 => {
                let mut h = Sha1::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
            AuthProtocol::Sha256 => {
                let mut h = Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
        }
    }

    fn mac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        let full = match self {
            AuthProtocol::Sha1 => {
                let mut m =
                    <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
            AuthProtocol::Sha256 => {
                let mut m =
                    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
        };
        full[..self.mac_len()].to_vec()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivProtocol {
    Aes128,
    Aes256,
}

/// RFC 3414 A.2: the password-to-key algorithm (1 MiB of the repeated
/// password through the hash). Passwords shorter than 8 octets are refused
/// by RFC 3414 §11.2.
pub fn password_to_key(auth: AuthProtocol, password: &[u8]) -> Result<Vec<u8>, UsmError> {
    if password.len() < 8 {
        return Err(UsmError::ShortPassword);
    }
    let mut stream = Vec::with_capacity(1 << 20);
    while stream.len() < 1 << 20 {
        stream.extend_from_slice(password);
    }
    stream.truncate(1 << 20);
    Ok(auth.hash(&[&stream]))
}

/// RFC 3414 A.2: localise Ku to an engine: H(Ku || engineID || Ku).
pub fn localize(auth: AuthProtocol, ku: &[u8], engine_id: &[u8]) -> Vec<u8> {
    auth.hash(&[ku, engine_id, ku])
}

/// A user's localised keys for one engine.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub auth: AuthProtocol,
    auth_key: Vec<u8>,
    privacy: Option<(PrivProtocol, Vec<u8>)>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keys")
            .field("auth", &self.auth)
            .field("privacy", &self.privacy.as_ref().map(|p| p.0))
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Localised keys from passwords (the priv password is localised with the
    /// auth protocol's hash, as RFC 3826 specifies).
    pub fn from_passwords(
        auth: AuthProtocol,
        auth_password: &[u8],
        privacy: Option<(PrivProtocol, &[u8])>,
        engine_id: &[u8],
    ) -> Result<Keys, UsmError> {
        let auth_key = localize(auth, &password_to_key(auth, auth_password)?, engine_id);
        let privacy = match privacy {
            None => None,
            Some((p, pw)) => {
                let key = localize(auth, &password_to_key(auth, pw)?, engine_id);
                let need = match p {
                    PrivProtocol::Aes128 => 16,
                    PrivProtocol::Aes256 => 32,
                };
                if key.len() < need {
                    // SHA-1 keys are 20 octets: AES-256 would need a key
                    // extension, and agents disagree on which (Blumenthal vs Reeder).
                    return Err(UsmError::KeyTooShort);
                }
                Some((p, key[..need].to_vec()))
            }
        };
        Ok(Keys {
            auth,
            auth_key,
            privacy,
        })
    }

    pub fn has_privacy(&self) -> bool {
        self.privacy.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsmError {
    #[error("BER: {0}")]
    Ber(#[from] BerError),
    #[error("password shorter than 8 octets (RFC 3414 §11.2)")]
    ShortPassword,
    #[error("AES-256 needs a SHA-256 (or longer) auth protocol: SHA-1 keys are too short")]
    KeyTooShort,
    #[error("not an SNMPv3 USM message")]
    NotV3,
    #[error("authentication failed: wrong MAC (wrong key, or tampered message)")]
    BadMac,
    #[error("message is encrypted but no privacy key is configured")]
    NoPrivacyKey,
    #[error("privacy parameters are not an 8-octet salt")]
    BadSalt,
}

pub const FLAG_AUTH: u8 = 1;
pub const FLAG_PRIV: u8 = 2;
pub const FLAG_REPORTABLE: u8 = 4;

/// UsmSecurityParameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Security {
    pub engine_id: Vec<u8>,
    pub boots: i64,
    pub time: i64,
    pub user: Vec<u8>,
}

/// A decoded SNMPv3 message (after authentication and decryption).
#[derive(Debug, Clone, PartialEq)]
pub struct V3Message {
    pub msg_id: i64,
    pub flags: u8,
    pub security: Security,
    pub context_engine_id: Vec<u8>,
    pub context_name: Vec<u8>,
    pub pdu: Pdu,
}

fn header_len(content: usize) -> usize {
    match content {
        0..=0x7f => 2,
        0x80..=0xff => 3,
        0x100..=0xffff => 4,
        0x1_0000..=0xff_ffff => 5,
        _ => 6,
    }
}

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 6);
    put_tlv(&mut out, tag, |o| o.extend_from_slice(body));
    out
}

fn int(v: i64) -> Vec<u8> {
    let mut out = Vec::new();
    put_tlv(&mut out, INTEGER, |o| put_i64(o, v));
    out
}

/// Encode (and authenticate / encrypt, as `keys` and `flags` say) a request.
/// `salt` must differ for every encrypted message of an engine (a counter).
pub fn encode(
    msg_id: i64,
    flags: u8,
    security: &Security,
    context_name: &[u8],
    pdu: &Pdu,
    keys: Option<&Keys>,
    salt: u64,
) -> Result<Vec<u8>, UsmError> {
    let mut scoped = Vec::new();
    put_tlv(&mut scoped, SEQUENCE, |o| {
        put_tlv(o, OCTET_STRING, |b| {
            b.extend_from_slice(&security.engine_id)
        });
        put_tlv(o, OCTET_STRING, |b| b.extend_from_slice(context_name));
        pdu.encode(o);
    });
    let (data, priv_params) = if flags & FLAG_PRIV != 0 {
        let (p, key) = keys
            .and_then(|k| k.privacy.as_ref())
            .ok_or(UsmError::NoPrivacyKey)?;
        let salt = salt.to_be_bytes();
        let iv = iv(security, &salt);
        aes_cfb(*p, key, &iv, &mut scoped, true);
        (tlv(OCTET_STRING, &scoped), salt.to_vec())
    } else {
        (scoped, Vec::new())
    };
    let mac_len = if flags & FLAG_AUTH != 0 {
        keys.ok_or(UsmError::BadMac)?.auth.mac_len()
    } else {
        0
    };
    let mut before = Vec::new();
    before.extend(tlv(OCTET_STRING, &security.engine_id));
    before.extend(int(security.boots));
    before.extend(int(security.time));
    before.extend(tlv(OCTET_STRING, &security.user));
    let auth_tlv = tlv(OCTET_STRING, &vec![0u8; mac_len]);
    let priv_tlv = tlv(OCTET_STRING, &priv_params);
    let sp_content = [before.as_slice(), &auth_tlv, &priv_tlv].concat();
    let sp_seq = tlv(SEQUENCE, &sp_content);
    let sp_octets = tlv(OCTET_STRING, &sp_seq);
    let mut global = Vec::new();
    put_tlv(&mut global, SEQUENCE, |o| {
        put_tlv(o, INTEGER, |b| put_i64(b, msg_id));
        put_tlv(o, INTEGER, |b| put_i64(b, 65_507));
        put_tlv(o, OCTET_STRING, |b| b.push(flags));
        put_tlv(o, INTEGER, |b| put_i64(b, 3));
    });
    let version = int(3);
    let body = [version.as_slice(), &global, &sp_octets, &data].concat();
    let mut msg = tlv(SEQUENCE, &body);
    if mac_len > 0 {
        let keys = keys.expect("checked above");
        let at = header_len(body.len())
            + version.len()
            + global.len()
            + header_len(sp_seq.len())
            + header_len(sp_content.len())
            + before.len()
            + 2;
        let mac = keys.auth.mac(&keys.auth_key, &msg);
        msg[at..at + mac_len].copy_from_slice(&mac);
    }
    Ok(msg)
}

fn iv(security: &Security, salt: &[u8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    // Boots and time are 0..2^31-1 (RFC 3414); anything else is truncated
    // deliberately rather than trusted.
    iv[..4].copy_from_slice(
        &u32::try_from(security.boots.clamp(0, i64::from(u32::MAX)))
            .unwrap_or(0)
            .to_be_bytes(),
    );
    iv[4..8].copy_from_slice(
        &u32::try_from(security.time.clamp(0, i64::from(u32::MAX)))
            .unwrap_or(0)
            .to_be_bytes(),
    );
    iv[8..].copy_from_slice(salt);
    iv
}

fn aes_cfb(p: PrivProtocol, key: &[u8], iv: &[u8; 16], data: &mut [u8], encrypt: bool) {
    match p {
        PrivProtocol::Aes128 => {
            if encrypt {
                cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
                    .expect("16-byte key")
                    .encrypt(data);
            } else {
                cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(key, iv)
                    .expect("16-byte key")
                    .decrypt(data);
            }
        }
        PrivProtocol::Aes256 => {
            if encrypt {
                cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
                    .expect("32-byte key")
                    .encrypt(data);
            } else {
                cfb_mode::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
                    .expect("32-byte key")
                    .decrypt(data);
            }
        }
    }
}

/// Decode a message; when its flags say so, check its MAC with `keys` and
/// decrypt it. A message flagged authenticated without keys is refused.
pub fn decode(bytes: &[u8], keys: Option<&Keys>) -> Result<V3Message, UsmError> {
    let mut top = Reader::new(bytes);
    let mut m = top.expect(SEQUENCE)?;
    top.finish()?;
    if m.integer()? != 3 {
        return Err(UsmError::NotV3);
    }
    let mut g = m.expect(SEQUENCE)?;
    let msg_id = g.integer()?;
    let _max_size = g.integer()?;
    let flags = *g.octets()?.first().ok_or(UsmError::NotV3)?;
    if g.integer()? != 3 {
        return Err(UsmError::NotV3);
    }
    let sp_octets = m.expect(OCTET_STRING)?;
    let mut sp = Reader::new(sp_octets.rest()).expect(SEQUENCE)?;
    let engine_id = sp.octets()?.to_vec();
    let boots = sp.integer()?;
    let time = sp.integer()?;
    let user = sp.octets()?.to_vec();
    let auth_params = sp.octets()?;
    let priv_params = sp.octets()?.to_vec();
    let security = Security {
        engine_id,
        boots,
        time,
        user,
    };
    if flags & FLAG_AUTH != 0 {
        let keys = keys.ok_or(UsmError::BadMac)?;
        if auth_params.len() != keys.auth.mac_len() {
            return Err(UsmError::BadMac);
        }
        // Locate the MAC inside `bytes` (auth_params borrows from it).
        let at = auth_params.as_ptr() as usize - bytes.as_ptr() as usize;
        let mut zeroed = bytes.to_vec();
        zeroed[at..at + auth_params.len()].fill(0);
        let want = keys.auth.mac(&keys.auth_key, &zeroed);
        // Constant-time comparison.
        if want
            .iter()
            .zip(auth_params)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return Err(UsmError::BadMac);
        }
    }
    let scoped_bytes = if flags & FLAG_PRIV != 0 {
        let (p, key) = keys
            .and_then(|k| k.privacy.as_ref())
            .ok_or(UsmError::NoPrivacyKey)?;
        let salt: [u8; 8] = priv_params
            .as_slice()
            .try_into()
            .map_err(|_| UsmError::BadSalt)?;
        let mut data = m.octets()?.to_vec();
        aes_cfb(*p, key, &iv(&security, &salt), &mut data, false);
        data
    } else {
        let (tag, r) = m.tlv()?;
        if tag != SEQUENCE {
            return Err(UsmError::NotV3);
        }
        let mut v = Vec::new();
        put_tlv(&mut v, SEQUENCE, |o| o.extend_from_slice(r.rest()));
        v
    };
    m.finish()?;
    // Decrypted data may carry padding after the ScopedPDU: read one TLV.
    let mut outer = Reader::new(&scoped_bytes);
    let mut scoped = outer.expect(SEQUENCE)?;
    let context_engine_id = scoped.octets()?.to_vec();
    let context_name = scoped.octets()?.to_vec();
    let pdu = Pdu::decode(&mut scoped)?;
    Ok(V3Message {
        msg_id,
        flags,
        security,
        context_engine_id,
        context_name,
        pdu,
    })
}

/// usmStats counters a Report may carry (RFC 3414 §5).
pub mod report {
    pub const UNKNOWN_ENGINE_IDS: &str = "1.3.6.1.6.3.15.1.1.4.0";
    pub const NOT_IN_TIME_WINDOWS: &str = "1.3.6.1.6.3.15.1.1.2.0";
    pub const UNKNOWN_USER_NAMES: &str = "1.3.6.1.6.3.15.1.1.3.0";
    pub const WRONG_DIGESTS: &str = "1.3.6.1.6.3.15.1.1.5.0";
    pub const DECRYPTION_ERRORS: &str = "1.3.6.1.6.3.15.1.1.6.0";
    pub const UNSUPPORTED_SEC_LEVELS: &str = "1.3.6.1.6.3.15.1.1.1.0";
}

#[cfg(test)]
mod tests;
