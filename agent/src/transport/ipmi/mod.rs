//! IPMI to one BMC: the commands the agent uses (SDR repository, sensor
//! readings, SEL, chassis status), over either link:
//!
//! - [`lan`]: IPMI 2.0 RMCP+ over UDP (cipher suites 3 and 17 only);
//! - [`open`]: the host's own BMC through Linux `/dev/ipmi0`
//!   (`ipmi_devintf`, the "open" interface of ipmitool).
//!
//! A link carries one request at a time and returns the response data after
//! a zero completion code; everything above it is the same for both.

pub mod lan;
pub mod open;

pub use lan::{LanConfig, LanLink};
pub use open::OpenLink;

use firmware_shims::ipmi::lan::LanError;
use firmware_shims::ipmi::sdr::{self, Record};
use firmware_shims::ipmi::sel::SelEntry;
use std::future::Future;
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum IpmiError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Lan(#[from] LanError),
    #[error("BMC did not answer after {0} attempts")]
    Timeout(u32),
    #[error("BMC did not answer command 0x{netfn:02x}/0x{cmd:02x} after {attempts} attempts")]
    NoAnswer { netfn: u8, cmd: u8, attempts: u32 },
    #[error("command 0x{netfn:02x}/0x{cmd:02x} failed: completion code 0x{code:02x}")]
    Completion { netfn: u8, cmd: u8, code: u8 },
    #[error("SDR: {0}")]
    Sdr(#[from] sdr::SdrError),
    #[error("unexpected reply: {0}")]
    Protocol(&'static str),
}

/// One path to a BMC: a request in, its data out (completion code checked).
pub trait Link: Send {
    fn request(
        &mut self,
        netfn: u8,
        cmd: u8,
        data: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, IpmiError>> + Send;
    /// Release the path (close the session); best effort.
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// The links the agent can use, for code that picks one from configuration.
#[derive(Debug)]
pub enum AnyLink {
    Lan(Box<LanLink>),
    Open(OpenLink),
}

impl Link for AnyLink {
    async fn request(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
        match self {
            AnyLink::Lan(l) => l.request(netfn, cmd, data).await,
            AnyLink::Open(l) => l.request(netfn, cmd, data).await,
        }
    }

    async fn close(&mut self) {
        match self {
            AnyLink::Lan(l) => l.close().await,
            AnyLink::Open(l) => l.close().await,
        }
    }
}

/// IPMI commands over a [`Link`].
#[derive(Debug)]
pub struct Bmc<L> {
    link: L,
}

/// A BMC reached either way.
pub type BmcClient = Bmc<AnyLink>;

impl BmcClient {
    /// A BMC over RMCP+ LAN.
    pub async fn lan(peer: SocketAddr, cfg: LanConfig) -> Result<BmcClient, IpmiError> {
        Ok(Bmc::over(AnyLink::Lan(Box::new(
            LanLink::new(peer, cfg).await?,
        ))))
    }

    /// The local BMC through an `ipmi_devintf` device such as `/dev/ipmi0`.
    pub fn open(
        path: &std::path::Path,
        timeout: std::time::Duration,
    ) -> Result<BmcClient, IpmiError> {
        Ok(Bmc::over(AnyLink::Open(OpenLink::new(path, timeout)?)))
    }
}

/// What Get SEL Info says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelInfo {
    pub entries: u16,
    /// Most recent erase (BMC seconds); changes when the SEL is cleared.
    pub last_erase: u32,
}

fn u16_at(d: &[u8], i: usize, what: &'static str) -> Result<u16, IpmiError> {
    match d.get(i..i + 2) {
        Some(&[lo, hi]) => Ok(u16::from_le_bytes([lo, hi])),
        _ => Err(IpmiError::Protocol(what)),
    }
}

impl<L: Link> Bmc<L> {
    pub fn over(link: L) -> Bmc<L> {
        Bmc { link }
    }

    /// One raw command (netfn, cmd, data) → response data.
    pub async fn request(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
        self.link
            .request(netfn, cmd, data)
            .await
            .map_err(|e| match e {
                IpmiError::Timeout(attempts) => IpmiError::NoAnswer {
                    netfn,
                    cmd,
                    attempts,
                },
                e => e,
            })
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
        let [r0, r1] = u16_at(&res, 0, "reservation")?.to_le_bytes();
        let mut out = Vec::new();
        let mut id: u16 = 0;
        for _ in 0..4096 {
            let mut bytes = Vec::new();
            let [id_lo, id_hi] = id.to_le_bytes();
            // Header first, then the body in chunks small enough for any BMC.
            let head = self
                .request(0x0a, 0x23, &[r0, r1, id_lo, id_hi, 0, 5])
                .await?;
            let next = u16_at(&head, 0, "Get SDR")?;
            bytes.extend_from_slice(head.get(2..).unwrap_or_default());
            let total = 5 + usize::from(*bytes.get(4).ok_or(IpmiError::Protocol("SDR header"))?);
            while bytes.len() < total {
                let n = (total - bytes.len()).min(16);
                let off =
                    u8::try_from(bytes.len()).map_err(|_| IpmiError::Protocol("SDR too long"))?;
                let n = u8::try_from(n).expect("<= 16");
                let part = self
                    .request(0x0a, 0x23, &[r0, r1, id_lo, id_hi, off, n])
                    .await?;
                match part.get(2..) {
                    Some(b) if !b.is_empty() => bytes.extend_from_slice(b),
                    _ => return Err(IpmiError::Protocol("Get SDR returned no bytes")),
                }
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

    /// Get SEL Info: entry count and the most recent erase time (which
    /// changes when the SEL is cleared and record ids start over).
    pub async fn sel_info(&mut self) -> Result<SelInfo, IpmiError> {
        let info = self.request(0x0a, 0x40, &[]).await?;
        let erase = info
            .get(9..13)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
            .ok_or(IpmiError::Protocol("Get SEL Info"))?;
        Ok(SelInfo {
            entries: u16_at(&info, 1, "Get SEL Info")?,
            last_erase: erase,
        })
    }

    /// Get SEL Time: the BMC's clock that stamps SEL entries (seconds; may
    /// count from BMC initialisation rather than 1970).
    pub async fn sel_time(&mut self) -> Result<u32, IpmiError> {
        let d = self.request(0x0a, 0x48, &[]).await?;
        d.get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4")))
            .ok_or(IpmiError::Protocol("Get SEL Time"))
    }

    /// SEL entries with a record id after `after` (0: all), oldest first.
    pub async fn sel_entries(&mut self, after: u16) -> Result<Vec<SelEntry>, IpmiError> {
        let count = self.sel_info().await?.entries;
        let mut out = Vec::new();
        if count == 0 {
            return Ok(out);
        }
        let mut id: u16 = 0; // first entry
        for _ in 0..=count {
            let [lo, hi] = id.to_le_bytes();
            let d = self.request(0x0a, 0x43, &[0, 0, lo, hi, 0, 0xff]).await?;
            let next = u16_at(&d, 0, "Get SEL Entry")?;
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

    /// Release the link (closes a LAN session); best effort.
    pub async fn close(&mut self) {
        self.link.close().await;
    }
}
