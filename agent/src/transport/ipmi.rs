//! IPMI 2.0 over LAN (RMCP+) to one BMC: opens a session with an explicit
//! privilege level (RAKP, cipher suite 3 or 17 only), keeps it for reuse,
//! never has more than one request in flight, and reopens it when the BMC
//! drops it. Packet and key handling: `firmware_shims::ipmi::lan`.

use firmware_shims::ipmi::lan::{
    self, payload, CipherSuite, Handshake, LanError, Privilege, Response, Session,
};
use firmware_shims::ipmi::sdr::{self, Record};
use firmware_shims::ipmi::sel::SelEntry;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

#[derive(Debug, Clone)]
pub struct LanConfig {
    pub user: String,
    pub password: String,
    pub privilege: Privilege,
    /// 3 or 17; anything else is refused before a packet is sent.
    pub cipher_suite: u8,
    pub timeout: Duration,
    pub retries: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum IpmiError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Lan(#[from] LanError),
    #[error("BMC did not answer after {0} attempts")]
    Timeout(u32),
    #[error("command 0x{netfn:02x}/0x{cmd:02x} failed: completion code 0x{code:02x}")]
    Completion { netfn: u8, cmd: u8, code: u8 },
    #[error("SDR: {0}")]
    Sdr(#[from] sdr::SdrError),
    #[error("unexpected reply: {0}")]
    Protocol(&'static str),
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("OS random source");
    b
}

#[derive(Debug)]
pub struct BmcClient {
    sock: UdpSocket,
    peer: SocketAddr,
    cfg: LanConfig,
    suite: CipherSuite,
    session: Option<Session>,
    rq_seq: u8,
    tag: u8,
}

impl BmcClient {
    pub async fn new(peer: SocketAddr, cfg: LanConfig) -> Result<BmcClient, IpmiError> {
        let suite = CipherSuite::from_id(cfg.cipher_suite)?;
        let bind: SocketAddr = if peer.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("literal");
        Ok(BmcClient {
            sock: UdpSocket::bind(bind).await?,
            peer,
            cfg,
            suite,
            session: None,
            rq_seq: 0,
            tag: 0,
        })
    }

    /// Send and wait for a datagram that `accept` takes, with retries.
    async fn exchange<T>(
        &mut self,
        packet: &[u8],
        mut accept: impl FnMut(&[u8]) -> Option<T>,
    ) -> Result<T, IpmiError> {
        let mut buf = vec![0u8; 2048];
        for _ in 0..=self.cfg.retries {
            self.sock.send_to(packet, self.peer).await?;
            let deadline = tokio::time::Instant::now() + self.cfg.timeout;
            while let Ok(r) = tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf)).await
            {
                let (n, from) = r?;
                if from == self.peer {
                    if let Some(v) = accept(&buf[..n]) {
                        return Ok(v);
                    }
                }
            }
        }
        Err(IpmiError::Timeout(self.cfg.retries + 1))
    }

    async fn presession(&mut self, ptype: u8, body: &[u8], want: u8) -> Result<Vec<u8>, IpmiError> {
        let packet = lan::presession_packet(ptype, body);
        let tag = body[0];
        self.exchange(&packet, |b| match lan::parse_presession(b) {
            Ok((t, p)) if t == want && p.first() == Some(&tag) => Some(p.to_vec()),
            _ => None,
        })
        .await
    }

    /// Open Session, RAKP 1–4, Set Session Privilege Level.
    async fn open(&mut self) -> Result<(), IpmiError> {
        let console_sid = u32::from_le_bytes(random::<4>()) | 1;
        self.tag = self.tag.wrapping_add(1);
        let req = lan::open_session_request(self.tag, self.cfg.privilege, console_sid, self.suite);
        let resp = self
            .presession(
                payload::OPEN_SESSION_REQUEST,
                &req,
                payload::OPEN_SESSION_RESPONSE,
            )
            .await?;
        let bmc_sid = lan::parse_open_session_response(&resp, self.tag, console_sid)?;
        let hs = Handshake::new(
            self.suite,
            console_sid,
            bmc_sid,
            random::<16>(),
            self.cfg.privilege,
            self.cfg.user.as_bytes(),
            self.cfg.password.as_bytes(),
        )?;
        self.tag = self.tag.wrapping_add(1);
        let rakp2 = self
            .presession(payload::RAKP1, &hs.rakp1(self.tag), payload::RAKP2)
            .await?;
        let (rc, guid) = hs.verify_rakp2(&rakp2, self.tag)?;
        self.tag = self.tag.wrapping_add(1);
        let rakp4 = self
            .presession(payload::RAKP3, &hs.rakp3(self.tag, &rc), payload::RAKP4)
            .await?;
        self.session = Some(hs.finish(&rakp4, self.tag, &rc, &guid)?);
        // Set Session Privilege Level (App 0x3B) to the level asked for.
        let r = self.send(0x06, 0x3b, &[self.cfg.privilege as u8]).await?;
        if r.completion != 0 {
            self.session = None;
            return Err(IpmiError::Completion {
                netfn: 0x06,
                cmd: 0x3b,
                code: r.completion,
            });
        }
        Ok(())
    }

    async fn send(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Response, IpmiError> {
        self.rq_seq = (self.rq_seq + 1) & 0x3f;
        let seq = self.rq_seq;
        let msg = lan::ipmi_request(seq, netfn, cmd, data);
        let session = self
            .session
            .as_mut()
            .ok_or(IpmiError::Protocol("no session"))?;
        let packet = session.wrap(&msg, random::<16>());
        let rx = session.clone();
        self.exchange(&packet, |b| {
            let m = rx.unwrap(b).ok()?;
            let r = lan::parse_ipmi_response(&m).ok()?;
            (r.rq_seq == seq && r.cmd == cmd && r.netfn == netfn + 1).then_some(r)
        })
        .await
    }

    /// One command in the session, opening (or reopening) it as needed.
    pub async fn request(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
        if self.session.is_none() {
            self.open().await?;
        }
        let r = match self.send(netfn, cmd, data).await {
            Ok(r) => r,
            Err(IpmiError::Timeout(_)) => {
                // The BMC may have dropped the session (reset, idle timeout): one reopen.
                self.session = None;
                self.open().await?;
                self.send(netfn, cmd, data).await?
            }
            Err(e) => return Err(e),
        };
        if r.completion != 0 {
            return Err(IpmiError::Completion {
                netfn,
                cmd,
                code: r.completion,
            });
        }
        Ok(r.data)
    }

    /// Get Sensor Reading (S/E 0x2D).
    pub async fn sensor_reading(&mut self, number: u8) -> Result<sdr::Reading, IpmiError> {
        let d = self.request(0x04, 0x2d, &[number]).await?;
        sdr::Reading::parse(&d).ok_or(IpmiError::Protocol("short sensor reading"))
    }

    /// SDR repository change stamp: (most recent addition, most recent erase).
    pub async fn sdr_stamp(&mut self) -> Result<(u32, u32), IpmiError> {
        let d = self.request(0x0a, 0x20, &[]).await?;
        let w = |i: usize| {
            d.get(i..i + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
        };
        Ok((
            w(5).ok_or(IpmiError::Protocol("SDR info"))?,
            w(9).ok_or(IpmiError::Protocol("SDR info"))?,
        ))
    }

    /// Every SDR record: Reserve SDR Repository, then Get SDR in chunks.
    pub async fn sdr_repository(&mut self) -> Result<Vec<Record>, IpmiError> {
        let res = self.request(0x0a, 0x22, &[]).await?;
        let reservation = [
            *res.first().ok_or(IpmiError::Protocol("reservation"))?,
            *res.get(1).ok_or(IpmiError::Protocol("reservation"))?,
        ];
        let mut out = Vec::new();
        let mut id: u16 = 0;
        for _ in 0..4096 {
            let mut bytes = Vec::new();
            let [id_lo, id_hi] = id.to_le_bytes();
            // Header first, then the body in chunks small enough for any BMC.
            let head = self
                .request(
                    0x0a,
                    0x23,
                    &[reservation[0], reservation[1], id_lo, id_hi, 0, 5],
                )
                .await?;
            let next = u16::from_le_bytes([
                *head.first().ok_or(IpmiError::Protocol("Get SDR"))?,
                *head.get(1).ok_or(IpmiError::Protocol("Get SDR"))?,
            ]);
            bytes.extend_from_slice(head.get(2..).ok_or(IpmiError::Protocol("Get SDR"))?);
            let total = 5 + usize::from(*bytes.get(4).ok_or(IpmiError::Protocol("SDR header"))?);
            while bytes.len() < total {
                let n = (total - bytes.len()).min(16);
                let off =
                    u8::try_from(bytes.len()).map_err(|_| IpmiError::Protocol("SDR too long"))?;
                let part = self
                    .request(
                        0x0a,
                        0x23,
                        &[
                            reservation[0],
                            reservation[1],
                            id_lo,
                            id_hi,
                            off,
                            u8::try_from(n).expect("<= 16"),
                        ],
                    )
                    .await?;
                bytes.extend_from_slice(part.get(2..).ok_or(IpmiError::Protocol("Get SDR"))?);
            }
            bytes.truncate(total);
            out.push(sdr::parse_record(&bytes)?);
            if next == 0xffff {
                return Ok(out);
            }
            id = next;
        }
        Err(IpmiError::Protocol("SDR repository does not end"))
    }

    /// Chassis power state (Get Chassis Status, bit 0 of byte 1).
    pub async fn power_on(&mut self) -> Result<bool, IpmiError> {
        let d = self.request(0x00, 0x01, &[]).await?;
        Ok(d.first().ok_or(IpmiError::Protocol("chassis status"))? & 1 == 1)
    }

    /// SEL entries with a record id after `after` (0: all), oldest first.
    pub async fn sel_entries(&mut self, after: u16) -> Result<Vec<SelEntry>, IpmiError> {
        let info = self.request(0x0a, 0x40, &[]).await?;
        let count = u16::from_le_bytes([*info.get(1).unwrap_or(&0), *info.get(2).unwrap_or(&0)]);
        let mut out = Vec::new();
        if count == 0 {
            return Ok(out);
        }
        let mut id: u16 = 0; // first entry
        for _ in 0..=count {
            let [lo, hi] = id.to_le_bytes();
            let d = self.request(0x0a, 0x43, &[0, 0, lo, hi, 0, 0xff]).await?;
            let next = u16::from_le_bytes([
                *d.first().ok_or(IpmiError::Protocol("Get SEL Entry"))?,
                *d.get(1).ok_or(IpmiError::Protocol("Get SEL Entry"))?,
            ]);
            let e = SelEntry::parse(d.get(2..).unwrap_or_default())
                .ok_or(IpmiError::Protocol("short SEL entry"))?;
            if e.record_id > after || after == 0 {
                out.push(e);
            }
            if next == 0xffff {
                break;
            }
            id = next;
        }
        Ok(out)
    }

    /// Close the session (App 0x3C), best effort.
    pub async fn close(&mut self) {
        if let Some(s) = &self.session {
            let sid = s.bmc_sid.to_le_bytes();
            let _ = self.send(0x06, 0x3c, &sid).await;
        }
        self.session = None;
    }
}
