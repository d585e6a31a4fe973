//! IPMI 2.0 over LAN (RMCP+, IPMI 2.0 §13): packet framing, the RAKP
//! session handshake, integrity and confidentiality, and IPMI messages.
//!
//! Only cipher suites 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) and 17
//! (RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128) are offered: suite 0
//! (no authentication), IPMI 1.5 sessions and straight passwords are refused
//! by construction, with [`LanError::InsecureSuite`] for a configuration that
//! asks for them.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

pub const RMCP_HEADER: [u8; 4] = [0x06, 0x00, 0xff, 0x07];
const AUTH_TYPE_RMCP_PLUS: u8 = 0x06;

pub mod payload {
    pub const IPMI: u8 = 0x00;
    pub const OPEN_SESSION_REQUEST: u8 = 0x10;
    pub const OPEN_SESSION_RESPONSE: u8 = 0x11;
    pub const RAKP1: u8 = 0x12;
    pub const RAKP2: u8 = 0x13;
    pub const RAKP3: u8 = 0x14;
    pub const RAKP4: u8 = 0x15;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LanError {
    #[error("cipher suite {0} is not allowed: only 3 and 17 (authenticated, integrity-protected, encrypted)")]
    InsecureSuite(u8),
    #[error("packet truncated or malformed: {0}")]
    Malformed(&'static str),
    #[error("integrity check failed (wrong key, or a tampered packet)")]
    BadIntegrity,
    #[error("BMC refused the session: RMCP+ status 0x{0:02x} ({1})")]
    Refused(u8, &'static str),
    #[error("RAKP key exchange code does not verify: wrong password (or a BMC impersonator)")]
    BadKeyExchange,
    #[error("checksum mismatch in IPMI message")]
    Checksum,
}

/// The two cipher suites offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherSuite {
    Suite3,
    Suite17,
}

impl CipherSuite {
    pub fn from_id(id: u8) -> Result<CipherSuite, LanError> {
        match id {
            3 => Ok(CipherSuite::Suite3),
            17 => Ok(CipherSuite::Suite17),
            other => Err(LanError::InsecureSuite(other)),
        }
    }

    fn algorithms(self) -> (u8, u8, u8) {
        match self {
            CipherSuite::Suite3 => (0x01, 0x01, 0x01), // RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128
            CipherSuite::Suite17 => (0x03, 0x04, 0x01), // RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128
        }
    }

    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            CipherSuite::Suite3 => {
                let mut m = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("any key length");
                parts.iter().for_each(|p| m.update(p));
                m.finalize().into_bytes().to_vec()
            }
            CipherSuite::Suite17 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
                parts.iter().for_each(|p| m.update(p));
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Length of the RAKP4 integrity check value and of packet AuthCodes.
    fn icv_len(self) -> usize {
        match self {
            CipherSuite::Suite3 => 12,
            CipherSuite::Suite17 => 16,
        }
    }

    fn hash_len(self) -> usize {
        match self {
            CipherSuite::Suite3 => 20,
            CipherSuite::Suite17 => 32,
        }
    }
}

/// Privilege levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    User = 2,
    Operator = 3,
    Administrator = 4,
}

fn le32(b: &[u8]) -> Result<u32, LanError> {
    Ok(u32::from_le_bytes(
        b.get(..4)
            .ok_or(LanError::Malformed("short field"))?
            .try_into()
            .expect("4 bytes"),
    ))
}

/// A packet outside a session (session id 0): Open Session and RAKP.
pub fn presession_packet(payload_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = RMCP_HEADER.to_vec();
    p.push(AUTH_TYPE_RMCP_PLUS);
    p.push(payload_type);
    p.extend_from_slice(&[0; 8]); // session id 0, sequence 0
    p.extend_from_slice(
        &u16::try_from(payload.len())
            .expect("small payload")
            .to_le_bytes(),
    );
    p.extend_from_slice(payload);
    p
}

/// (payload type with flags, session id, payload) of an unauthenticated packet.
pub fn parse_presession(packet: &[u8]) -> Result<(u8, &[u8]), LanError> {
    if packet.get(..4) != Some(&RMCP_HEADER[..]) || packet.get(4) != Some(&AUTH_TYPE_RMCP_PLUS) {
        return Err(LanError::Malformed("not an RMCP+ packet"));
    }
    let ptype = *packet
        .get(5)
        .ok_or(LanError::Malformed("no payload type"))?;
    let len = usize::from(u16::from_le_bytes(
        packet
            .get(14..16)
            .ok_or(LanError::Malformed("no length"))?
            .try_into()
            .expect("2 bytes"),
    ));
    let payload = packet
        .get(16..16 + len)
        .ok_or(LanError::Malformed("payload past the end"))?;
    Ok((ptype & 0x3f, payload))
}

pub fn open_session_request(
    tag: u8,
    max_priv: Privilege,
    console_sid: u32,
    suite: CipherSuite,
) -> Vec<u8> {
    let (a, i, c) = suite.algorithms();
    let mut p = vec![tag, max_priv as u8, 0, 0];
    p.extend_from_slice(&console_sid.to_le_bytes());
    p.extend_from_slice(&[0x00, 0, 0, 0x08, a, 0, 0, 0]);
    p.extend_from_slice(&[0x01, 0, 0, 0x08, i, 0, 0, 0]);
    p.extend_from_slice(&[0x02, 0, 0, 0x08, c, 0, 0, 0]);
    p
}

fn status_text(s: u8) -> &'static str {
    match s {
        0x01 => "insufficient resources to create a session",
        0x02 => "invalid session ID",
        0x03 => "invalid payload type",
        0x04 => "invalid authentication algorithm",
        0x05 => "invalid integrity algorithm",
        0x06 => "no matching authentication payload",
        0x07 => "no matching integrity payload",
        0x08 => "inactive session ID",
        0x09 => "invalid role",
        0x0a => "unauthorized role or privilege level requested",
        0x0b => "insufficient resources for the requested role",
        0x0c => "invalid name length",
        0x0d => "unauthorized name",
        0x0e => "unauthorized GUID",
        0x0f => "invalid integrity check value",
        0x10 => "invalid confidentiality algorithm",
        0x11 => "no cipher suite match with proposed security algorithms",
        0x12 => "illegal or unrecognized parameter",
        _ => "unknown status",
    }
}

fn check_status(s: u8) -> Result<(), LanError> {
    if s == 0 {
        Ok(())
    } else {
        Err(LanError::Refused(s, status_text(s)))
    }
}

/// Returns the BMC's session id.
pub fn parse_open_session_response(p: &[u8], tag: u8, console_sid: u32) -> Result<u32, LanError> {
    check_status(
        *p.get(1)
            .ok_or(LanError::Malformed("open session response"))?,
    )?;
    if p.len() < 12 || p[0] != tag || le32(&p[4..])? != console_sid {
        return Err(LanError::Malformed(
            "open session response for another request",
        ));
    }
    le32(&p[8..])
}

/// Everything the handshake needs and produces.
#[derive(Clone)]
pub struct Handshake {
    pub suite: CipherSuite,
    pub console_sid: u32,
    pub bmc_sid: u32,
    pub rm: [u8; 16],
    pub role: u8,
    pub user: Vec<u8>,
    /// Kuid: the password, zero-padded to 20 octets.
    kuid: [u8; 20],
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("suite", &self.suite)
            .field("bmc_sid", &self.bmc_sid)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// `role`: the requested maximum privilege, looked up by name only.
    pub fn new(
        suite: CipherSuite,
        console_sid: u32,
        bmc_sid: u32,
        rm: [u8; 16],
        privilege: Privilege,
        user: &[u8],
        password: &[u8],
    ) -> Result<Handshake, LanError> {
        if password.len() > 20 || user.len() > 16 {
            return Err(LanError::Malformed(
                "user name over 16 or password over 20 octets",
            ));
        }
        let mut kuid = [0u8; 20];
        kuid[..password.len()].copy_from_slice(password);
        Ok(Handshake {
            suite,
            console_sid,
            bmc_sid,
            rm,
            role: 0x10 | privilege as u8,
            user: user.to_vec(),
            kuid,
        })
    }

    pub fn rakp1(&self, tag: u8) -> Vec<u8> {
        let mut p = vec![tag, 0, 0, 0];
        p.extend_from_slice(&self.bmc_sid.to_le_bytes());
        p.extend_from_slice(&self.rm);
        p.extend_from_slice(&[
            self.role,
            0,
            0,
            u8::try_from(self.user.len()).expect("<= 16"),
        ]);
        p.extend_from_slice(&self.user);
        p
    }

    /// Check RAKP2 and return (managed system random, GUID).
    pub fn verify_rakp2(&self, p: &[u8], tag: u8) -> Result<([u8; 16], [u8; 16]), LanError> {
        check_status(*p.get(1).ok_or(LanError::Malformed("RAKP2"))?)?;
        if p.len() < 40 + self.suite.hash_len() || p[0] != tag || le32(&p[4..])? != self.console_sid
        {
            return Err(LanError::Malformed("RAKP2 for another session"));
        }
        let rc: [u8; 16] = p[8..24].try_into().expect("16");
        let guid: [u8; 16] = p[24..40].try_into().expect("16");
        let code = &p[40..40 + self.suite.hash_len()];
        let want = self.suite.hmac(
            &self.kuid,
            &[
                &self.console_sid.to_le_bytes(),
                &self.bmc_sid.to_le_bytes(),
                &self.rm,
                &rc,
                &guid,
                &[self.role, u8::try_from(self.user.len()).expect("<= 16")],
                &self.user,
            ],
        );
        if !ct_eq(&want, code) {
            return Err(LanError::BadKeyExchange);
        }
        Ok((rc, guid))
    }

    pub fn rakp3(&self, tag: u8, rc: &[u8; 16]) -> Vec<u8> {
        let code = self.suite.hmac(
            &self.kuid,
            &[
                rc,
                &self.console_sid.to_le_bytes(),
                &[self.role, u8::try_from(self.user.len()).expect("<= 16")],
                &self.user,
            ],
        );
        let mut p = vec![tag, 0, 0, 0];
        p.extend_from_slice(&self.bmc_sid.to_le_bytes());
        p.extend_from_slice(&code);
        p
    }

    /// Session integrity key.
    pub fn sik(&self, rc: &[u8; 16]) -> Vec<u8> {
        self.suite.hmac(
            &self.kuid,
            &[
                &self.rm,
                rc,
                &[self.role, u8::try_from(self.user.len()).expect("<= 16")],
                &self.user,
            ],
        )
    }

    /// Check RAKP4 and derive the session keys.
    pub fn finish(
        &self,
        p: &[u8],
        tag: u8,
        rc: &[u8; 16],
        guid: &[u8; 16],
    ) -> Result<Session, LanError> {
        check_status(*p.get(1).ok_or(LanError::Malformed("RAKP4"))?)?;
        let n = self.suite.icv_len();
        if p.len() < 8 + n || p[0] != tag || le32(&p[4..])? != self.console_sid {
            return Err(LanError::Malformed("RAKP4 for another session"));
        }
        let sik = self.sik(rc);
        let want = self
            .suite
            .hmac(&sik, &[&self.rm, &self.bmc_sid.to_le_bytes(), guid]);
        if !ct_eq(&want[..n], &p[8..8 + n]) {
            return Err(LanError::BadKeyExchange);
        }
        let len = self.suite.hash_len();
        let k1 = self.suite.hmac(&sik, &[&vec![0x01; len]]);
        let k2 = self.suite.hmac(&sik, &[&vec![0x02; len]]);
        Ok(Session {
            suite: self.suite,
            bmc_sid: self.bmc_sid,
            console_sid: self.console_sid,
            k1,
            aes_key: k2[..16].try_into().expect("16"),
            seq: 0,
        })
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An active session: authenticated and encrypted packets.
#[derive(Clone)]
pub struct Session {
    pub suite: CipherSuite,
    pub bmc_sid: u32,
    pub console_sid: u32,
    k1: Vec<u8>,
    aes_key: [u8; 16],
    seq: u32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("suite", &self.suite)
            .field("bmc_sid", &self.bmc_sid)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;
type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

impl Session {
    /// An encrypted, authenticated IPMI-message packet. `iv` must be fresh.
    pub fn wrap(&mut self, payload: &[u8], iv: [u8; 16]) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1).max(1);
        // Confidentiality trailer: pad bytes 1, 2, .. then the pad length.
        let mut plain = payload.to_vec();
        let pad = (16 - (plain.len() + 1) % 16) % 16;
        plain.extend((1..=pad).map(|i| u8::try_from(i).expect("< 16")));
        plain.push(u8::try_from(pad).expect("< 16"));
        let n = plain.len();
        let enc = Aes128CbcEnc::new(&self.aes_key.into(), &iv.into())
            .encrypt_padded_mut::<aes::cipher::block_padding::NoPadding>(&mut plain, n)
            .expect("block-aligned")
            .to_vec();
        let mut body = iv.to_vec();
        body.extend_from_slice(&enc);
        let mut p = RMCP_HEADER.to_vec();
        p.push(AUTH_TYPE_RMCP_PLUS);
        p.push(0xC0 | payload::IPMI); // encrypted + authenticated
        p.extend_from_slice(&self.bmc_sid.to_le_bytes());
        p.extend_from_slice(&self.seq.to_le_bytes());
        p.extend_from_slice(&u16::try_from(body.len()).expect("small").to_le_bytes());
        p.extend_from_slice(&body);
        // Integrity pad: auth type .. next header a multiple of 4.
        let covered = p.len() - 4 + 2;
        let ipad = (4 - covered % 4) % 4;
        p.extend(std::iter::repeat_n(0xFF, ipad));
        p.push(u8::try_from(ipad).expect("< 4"));
        p.push(0x07);
        let code = self.suite.hmac(&self.k1, &[&p[4..]]);
        p.extend_from_slice(&code[..self.suite.icv_len()]);
        p
    }

    /// Verify and decrypt a packet of this session; returns the IPMI message.
    pub fn unwrap(&self, packet: &[u8]) -> Result<Vec<u8>, LanError> {
        if packet.get(..5) != Some(&[0x06, 0x00, 0xff, 0x07, AUTH_TYPE_RMCP_PLUS][..]) {
            return Err(LanError::Malformed("not an RMCP+ packet"));
        }
        let ptype = packet[5];
        if ptype != 0xC0 {
            return Err(LanError::Malformed(
                "session packet not encrypted and authenticated",
            ));
        }
        if le32(&packet[6..])? != self.console_sid {
            return Err(LanError::Malformed("packet for another session"));
        }
        let len = usize::from(u16::from_le_bytes(
            packet
                .get(14..16)
                .ok_or(LanError::Malformed("length"))?
                .try_into()
                .expect("2"),
        ));
        let n = self.suite.icv_len();
        if packet.len() < 16 + len + 2 + n {
            return Err(LanError::Malformed("packet shorter than its length"));
        }
        let (covered, code) = packet[4..].split_at(packet.len() - 4 - n);
        if !ct_eq(&self.suite.hmac(&self.k1, &[covered])[..n], code) {
            return Err(LanError::BadIntegrity);
        }
        let body = &packet[16..16 + len];
        if body.len() < 32 || !body.len().is_multiple_of(16) {
            return Err(LanError::Malformed("encrypted payload size"));
        }
        let iv: [u8; 16] = body[..16].try_into().expect("16");
        let mut data = body[16..].to_vec();
        let plain = Aes128CbcDec::new(&self.aes_key.into(), &iv.into())
            .decrypt_padded_mut::<aes::cipher::block_padding::NoPadding>(&mut data)
            .map_err(|_| LanError::Malformed("ciphertext"))?;
        let pad = usize::from(*plain.last().ok_or(LanError::Malformed("empty payload"))?);
        if pad + 1 > plain.len() {
            return Err(LanError::Malformed("confidentiality pad"));
        }
        Ok(plain[..plain.len() - pad - 1].to_vec())
    }
}

/// An IPMI request message from the remote console (SWID 0x81) to the BMC (0x20).
pub fn ipmi_request(rq_seq: u8, netfn: u8, cmd: u8, data: &[u8]) -> Vec<u8> {
    let mut m = vec![0x20, netfn << 2];
    m.push(checksum(&m));
    let start = m.len();
    m.extend_from_slice(&[0x81, (rq_seq & 0x3f) << 2, cmd]);
    m.extend_from_slice(data);
    let c = checksum(&m[start..]);
    m.push(c);
    m
}

fn checksum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x)).wrapping_neg()
}

/// A response: (rq_seq, netfn, cmd, completion code, data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub rq_seq: u8,
    pub netfn: u8,
    pub cmd: u8,
    pub completion: u8,
    pub data: Vec<u8>,
}

pub fn parse_ipmi_response(m: &[u8]) -> Result<Response, LanError> {
    if m.len() < 8 {
        return Err(LanError::Malformed("IPMI response too short"));
    }
    if checksum(&m[..2]) != m[2] || checksum(&m[3..m.len() - 1]) != m[m.len() - 1] {
        return Err(LanError::Checksum);
    }
    Ok(Response {
        netfn: m[1] >> 2,
        rq_seq: m[4] >> 2,
        cmd: m[5],
        completion: m[6],
        data: m[7..m.len() - 1].to_vec(),
    })
}

#[cfg(test)]
mod tests;
