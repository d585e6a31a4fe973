//! SNMP v2c and v3 (USM authNoPriv / authPriv) over UDP: one request in
//! flight per agent, retries with fresh request ids, GETBULK walks, and SETs
//! verified by read-back. v3 discovers the agent's engine (RFC 3414 §4),
//! localises the user's keys to it, and resynchronises on notInTimeWindow.
//!
//! Hostile or broken agents cost only their own readings: a reply that does
//! not decode, carries another request id or comes from elsewhere is dropped
//! and counted; a walk that stops advancing is an error, not a loop.
//!
//! Used by the agent (polling) and the coordinator (switch-port SETs).

use firmware_shims::snmp::ber::Oid;
use firmware_shims::snmp::usm::{
    self, AuthProtocol, Keys, PrivProtocol, Security, FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE,
};
use firmware_shims::snmp::{CommunityMessage, ErrorStatus, Pdu, PduKind, Value, VERSION_2C};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

mod config;
pub use config::V3Config;

/// Client settings for one agent.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub community: String,
    pub timeout: Duration,
    /// Extra attempts after the first.
    pub retries: u32,
    pub max_repetitions: u32,
    /// SNMPv3 instead of the community: user, protocols, passwords, context.
    pub v3: Option<V3User>,
}

/// An SNMPv3 USM user. Authentication is required (no noAuthNoPriv).
#[derive(Clone)]
pub struct V3User {
    pub user: String,
    pub auth: AuthProtocol,
    pub auth_password: String,
    pub privacy: Option<(PrivProtocol, String)>,
    pub context: String,
}

impl std::fmt::Debug for V3User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print passwords.
        f.debug_struct("V3User")
            .field("user", &self.user)
            .field("auth", &self.auth)
            .field("privacy", &self.privacy.as_ref().map(|p| p.0))
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// What discovery learnt about the agent's engine, and the keys localised to it.
#[derive(Debug)]
struct Engine {
    id: Vec<u8>,
    boots: i64,
    time: i64,
    at: tokio::time::Instant,
    keys: Keys,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            community: "public".into(),
            timeout: Duration::from_secs(1),
            retries: 2,
            max_repetitions: 25,
            v3: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnmpError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("no valid reply after {attempts} attempts of {timeout:?} ({ignored} unusable datagrams ignored)")]
    Timeout {
        attempts: u32,
        timeout: Duration,
        ignored: u64,
    },
    #[error("agent answered {status:?} (error-index {index})")]
    Agent { status: ErrorStatus, index: i64 },
    #[error("{oid}: {value:?}")]
    Exception { oid: Oid, value: Value },
    #[error("walk did not advance past {0}: the agent returns OIDs out of order")]
    NotIncreasing(Oid),
    #[error("SET of {oid} reads back {got:?}, expected {want:?}")]
    ReadBack { oid: Oid, want: Value, got: Value },
    #[error("reply has {got} varbinds for {asked} requested")]
    WrongShape { asked: usize, got: usize },
    #[error("SNMPv3: {0}")]
    Usm(String),
}

/// One agent's client. `&mut self` on every request: never more than one in flight.
#[derive(Debug)]
pub struct SnmpClient {
    sock: UdpSocket,
    peer: SocketAddr,
    cfg: ClientConfig,
    next_id: i32,
    /// Datagrams dropped as unusable (undecodable, foreign, stale).
    pub ignored: u64,
    engine: Option<Engine>,
    salt: u64,
}

impl SnmpClient {
    pub async fn new(peer: SocketAddr, cfg: ClientConfig) -> Result<SnmpClient, SnmpError> {
        let bind: SocketAddr = if peer.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let sock = UdpSocket::bind(bind).await?;
        Ok(SnmpClient {
            sock,
            peer,
            cfg,
            next_id: fastrand::i32(1..i32::MAX / 2),
            ignored: 0,
            engine: None,
            salt: fastrand::u64(..),
        })
    }

    fn id(&mut self) -> i32 {
        self.next_id = if self.next_id == i32::MAX {
            1
        } else {
            self.next_id + 1
        };
        self.next_id
    }

    async fn request(
        &mut self,
        kind: PduKind,
        a: i64,
        b: i64,
        varbinds: Vec<(Oid, Value)>,
    ) -> Result<Pdu, SnmpError> {
        if self.cfg.v3.is_none() {
            return self.request_v2c(kind, a, b, varbinds).await;
        }
        // One resynchronisation (engine rebooted, clock moved) per request.
        for _ in 0..2 {
            if self.engine.is_none() {
                self.discover().await?;
            }
            let pdu = self.request_v3(kind, a, b, varbinds.clone()).await?;
            if pdu.kind != PduKind::Report {
                return Ok(pdu);
            }
            let oid = pdu
                .varbinds
                .first()
                .map(|(o, _)| o.to_string())
                .unwrap_or_default();
            let reason = match oid.as_str() {
                usm::report::NOT_IN_TIME_WINDOWS | usm::report::UNKNOWN_ENGINE_IDS => {
                    self.engine = None;
                    continue;
                }
                usm::report::WRONG_DIGESTS => "wrong digest: check the auth password and protocol",
                usm::report::UNKNOWN_USER_NAMES => "unknown user name",
                usm::report::DECRYPTION_ERRORS => {
                    "decryption error: check the privacy password and protocol"
                }
                usm::report::UNSUPPORTED_SEC_LEVELS => "security level not supported for this user",
                _ => "unexpected report",
            };
            return Err(SnmpError::Usm(format!("{reason} ({oid})")));
        }
        Err(SnmpError::Usm(
            "the agent keeps reporting time-window or engine-id errors".into(),
        ))
    }

    /// RFC 3414 §4: an unauthenticated, reportable request with an empty
    /// engine id; the Report carries the engine id, boots and time.
    async fn discover(&mut self) -> Result<(), SnmpError> {
        let user = self.cfg.v3.clone().expect("v3 configured");
        let pdu = Pdu {
            kind: PduKind::Get,
            request_id: self.id(),
            error_status: 0,
            error_index: 0,
            varbinds: Vec::new(),
        };
        let msg_id = i64::from(pdu.request_id);
        let bytes = usm::encode(
            msg_id,
            FLAG_REPORTABLE,
            &Security::default(),
            b"",
            &pdu,
            None,
            0,
        )
        .map_err(|e| SnmpError::Usm(e.to_string()))?;
        let reply = self
            .exchange(&[bytes], |b| {
                usm::decode(b, None).ok().filter(|m| m.msg_id == msg_id)
            })
            .await?;
        if reply.security.engine_id.is_empty() {
            return Err(SnmpError::Usm("discovery reply has no engine id".into()));
        }
        let keys = Keys::from_passwords(
            user.auth,
            user.auth_password.as_bytes(),
            user.privacy.as_ref().map(|(p, pw)| (*p, pw.as_bytes())),
            &reply.security.engine_id,
        )
        .map_err(|e| SnmpError::Usm(e.to_string()))?;
        self.engine = Some(Engine {
            id: reply.security.engine_id,
            boots: reply.security.boots,
            time: reply.security.time,
            at: tokio::time::Instant::now(),
            keys,
        });
        Ok(())
    }

    async fn request_v3(
        &mut self,
        kind: PduKind,
        a: i64,
        b: i64,
        varbinds: Vec<(Oid, Value)>,
    ) -> Result<Pdu, SnmpError> {
        let user = self.cfg.v3.clone().expect("v3 configured");
        let pdu = Pdu {
            kind,
            request_id: self.id(),
            error_status: a,
            error_index: b,
            varbinds,
        };
        let msg_id = i64::from(pdu.request_id);
        self.salt = self.salt.wrapping_add(1);
        let engine = self.engine.as_ref().expect("discovered");
        let elapsed = i64::try_from(engine.at.elapsed().as_secs()).unwrap_or(i64::MAX);
        let security = Security {
            engine_id: engine.id.clone(),
            boots: engine.boots,
            time: engine.time.saturating_add(elapsed),
            user: user.user.as_bytes().to_vec(),
        };
        let privacy = if engine.keys.has_privacy() {
            FLAG_PRIV
        } else {
            0
        };
        let flags = FLAG_AUTH | FLAG_REPORTABLE | privacy;
        let keys = engine.keys.clone();
        let bytes = usm::encode(
            msg_id,
            flags,
            &security,
            user.context.as_bytes(),
            &pdu,
            Some(&keys),
            self.salt,
        )
        .map_err(|e| SnmpError::Usm(e.to_string()))?;
        let reply = self
            .exchange(&[bytes], |b| {
                // Everything must authenticate, except Reports about our own
                // keys or clock, which an agent cannot authenticate.
                usm::decode(b, Some(&keys))
                    .ok()
                    .or_else(|| {
                        usm::decode(b, None)
                            .ok()
                            .filter(|m| m.pdu.kind == PduKind::Report)
                    })
                    .filter(|m| m.msg_id == msg_id)
            })
            .await?;
        Ok(reply.pdu)
    }

    /// Send until `accept` takes a reply: attempt `i` sends `packets[i]`, or
    /// the last packet once they run out (v3 resends the same bytes; v2c
    /// uses a fresh request id per attempt).
    async fn exchange<T>(
        &mut self,
        packets: &[Vec<u8>],
        mut accept: impl FnMut(&[u8]) -> Option<T>,
    ) -> Result<T, SnmpError> {
        let mut buf = vec![0u8; 65_535];
        for attempt in 0..=self.cfg.retries as usize {
            let packet = packets
                .get(attempt)
                .or(packets.last())
                .expect("at least one packet");
            self.sock.send_to(packet, self.peer).await?;
            let deadline = tokio::time::Instant::now() + self.cfg.timeout;
            loop {
                let Ok(recv) =
                    tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf)).await
                else {
                    break;
                };
                let (n, from) = recv?;
                match (from == self.peer).then(|| accept(&buf[..n])).flatten() {
                    Some(v) => return Ok(v),
                    None => self.ignored += 1,
                }
            }
        }
        Err(SnmpError::Timeout {
            attempts: self.cfg.retries + 1,
            timeout: self.cfg.timeout,
            ignored: self.ignored,
        })
    }

    async fn request_v2c(
        &mut self,
        kind: PduKind,
        a: i64,
        b: i64,
        varbinds: Vec<(Oid, Value)>,
    ) -> Result<Pdu, SnmpError> {
        let ids: Vec<i32> = (0..=self.cfg.retries).map(|_| self.id()).collect();
        let packets: Vec<Vec<u8>> = ids
            .iter()
            .map(|&id| {
                CommunityMessage {
                    version: VERSION_2C,
                    community: self.cfg.community.as_bytes().to_vec(),
                    pdu: Pdu {
                        kind,
                        request_id: id,
                        error_status: a,
                        error_index: b,
                        varbinds: varbinds.clone(),
                    },
                }
                .encode()
            })
            .collect();
        self.exchange(&packets, |b| {
            // A late answer to an earlier attempt of this request is as good.
            CommunityMessage::decode(b)
                .ok()
                .filter(|m| m.pdu.kind == PduKind::Response && ids.contains(&m.pdu.request_id))
                .map(|m| m.pdu)
        })
        .await
    }

    fn check(pdu: &Pdu) -> Result<(), SnmpError> {
        match pdu.error() {
            Some(status) => Err(SnmpError::Agent {
                status,
                index: pdu.error_index,
            }),
            None => Ok(()),
        }
    }

    /// GET: one value per OID, exceptions (noSuchObject, ...) passed through.
    pub async fn get(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, Value)>, SnmpError> {
        let vbs = oids.iter().map(|o| (o.clone(), Value::Null)).collect();
        let pdu = self.request(PduKind::Get, 0, 0, vbs).await?;
        Self::check(&pdu)?;
        if pdu.varbinds.len() != oids.len() {
            return Err(SnmpError::WrongShape {
                asked: oids.len(),
                got: pdu.varbinds.len(),
            });
        }
        Ok(pdu.varbinds)
    }

    /// Every varbind under `root`, by GETBULK. A `tooBig` answer halves
    /// max-repetitions and retries.
    pub async fn walk(&mut self, root: &Oid) -> Result<Vec<(Oid, Value)>, SnmpError> {
        let mut out = Vec::new();
        let mut cursor = root.clone();
        let mut reps = self.cfg.max_repetitions.max(1);
        loop {
            let pdu = self
                .request(
                    PduKind::GetBulk,
                    0,
                    i64::from(reps),
                    vec![(cursor.clone(), Value::Null)],
                )
                .await?;
            if pdu.error() == Some(ErrorStatus::TooBig) && reps > 1 {
                reps /= 2;
                continue;
            }
            Self::check(&pdu)?;
            if pdu.varbinds.is_empty() {
                return Ok(out);
            }
            for (oid, value) in pdu.varbinds {
                if !oid.starts_with(root) || value == Value::EndOfMibView {
                    return Ok(out);
                }
                if oid <= cursor {
                    return Err(SnmpError::NotIncreasing(oid));
                }
                cursor = oid.clone();
                out.push((oid, value));
            }
        }
    }

    /// SET one object, then read it back. A reply of noError whose varbind is
    /// an exception (snmpsim answers noSuchInstance for read-only objects) is
    /// a failure, as is a read-back that differs.
    pub async fn set_verified(&mut self, oid: &Oid, value: Value) -> Result<(), SnmpError> {
        let pdu = self
            .request(PduKind::Set, 0, 0, vec![(oid.clone(), value.clone())])
            .await?;
        Self::check(&pdu)?;
        match pdu.varbinds.first() {
            Some((o, v)) if v.is_exception() => {
                return Err(SnmpError::Exception {
                    oid: o.clone(),
                    value: v.clone(),
                })
            }
            None => return Err(SnmpError::WrongShape { asked: 1, got: 0 }),
            Some(_) => {}
        }
        let got = self.get(std::slice::from_ref(oid)).await?.remove(0).1;
        if got != value {
            return Err(SnmpError::ReadBack {
                oid: oid.clone(),
                want: value,
                got,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
