//! IPMI 2.0 over LAN (RMCP+) to one BMC: opens a session with an explicit
//! privilege level (RAKP, cipher suite 3 or 17 only), keeps it for reuse,
//! never has more than one request in flight, and reopens it when the BMC
//! drops it. Packet and key handling: `firmware_shims::ipmi::lan`.

use super::{IpmiError, Link};
use firmware_shims::ipmi::lan::{
    self, payload, CipherSuite, Handshake, Privilege, Response, Session,
};
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

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("OS random source");
    b
}

#[derive(Debug)]
pub struct LanLink {
    sock: UdpSocket,
    peer: SocketAddr,
    cfg: LanConfig,
    suite: CipherSuite,
    session: Option<Session>,
    rq_seq: u8,
    tag: u8,
}

impl LanLink {
    pub async fn new(peer: SocketAddr, cfg: LanConfig) -> Result<LanLink, IpmiError> {
        let suite = CipherSuite::from_id(cfg.cipher_suite)?;
        let bind: SocketAddr = if peer.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("literal");
        Ok(LanLink {
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
    async fn command(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
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

    /// Close the session (App 0x3C), best effort.
    async fn close_session(&mut self) {
        if let Some(s) = &self.session {
            let sid = s.bmc_sid.to_le_bytes();
            let _ = self.send(0x06, 0x3c, &sid).await;
        }
        self.session = None;
    }
}

impl Link for LanLink {
    async fn request(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
        self.command(netfn, cmd, data).await
    }

    async fn close(&mut self) {
        self.close_session().await;
    }
}
