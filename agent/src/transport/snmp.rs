//! SNMP v2c over UDP: one request in flight per agent, retries with fresh
//! request ids, GETBULK walks, and SETs verified by read-back.
//!
//! Hostile or broken agents cost only their own readings: a reply that does
//! not decode, carries another request id or comes from elsewhere is dropped
//! and counted; a walk that stops advancing is an error, not a loop.

use firmware_shims::snmp::ber::Oid;
use firmware_shims::snmp::{CommunityMessage, ErrorStatus, Pdu, PduKind, Value, VERSION_2C};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// Client settings for one agent.
#[derive(Debug, Clone)]
pub struct V2cConfig {
    pub community: String,
    pub timeout: Duration,
    /// Extra attempts after the first.
    pub retries: u32,
    pub max_repetitions: u32,
}

impl Default for V2cConfig {
    fn default() -> Self {
        V2cConfig {
            community: "public".into(),
            timeout: Duration::from_secs(1),
            retries: 2,
            max_repetitions: 25,
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
}

/// One agent's client. `&mut self` on every request: never more than one in flight.
#[derive(Debug)]
pub struct V2cClient {
    sock: UdpSocket,
    peer: SocketAddr,
    cfg: V2cConfig,
    next_id: i32,
    /// Datagrams dropped as unusable (undecodable, foreign, stale).
    pub ignored: u64,
}

impl V2cClient {
    pub async fn new(peer: SocketAddr, cfg: V2cConfig) -> Result<V2cClient, SnmpError> {
        let bind: SocketAddr = if peer.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let sock = UdpSocket::bind(bind).await?;
        Ok(V2cClient {
            sock,
            peer,
            cfg,
            next_id: fastrand::i32(1..i32::MAX / 2),
            ignored: 0,
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
        let mut sent_ids = Vec::new();
        let mut buf = vec![0u8; 65_535];
        for _attempt in 0..=self.cfg.retries {
            let id = self.id();
            sent_ids.push(id);
            let msg = CommunityMessage {
                version: VERSION_2C,
                community: self.cfg.community.as_bytes().to_vec(),
                pdu: Pdu {
                    kind,
                    request_id: id,
                    error_status: a,
                    error_index: b,
                    varbinds: varbinds.clone(),
                },
            };
            self.sock.send_to(&msg.encode(), self.peer).await?;
            let deadline = tokio::time::Instant::now() + self.cfg.timeout;
            loop {
                let recv = tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf)).await;
                let Ok(recv) = recv else { break };
                let (n, from) = recv?;
                if from != self.peer {
                    self.ignored += 1;
                    continue;
                }
                match CommunityMessage::decode(&buf[..n]) {
                    // A late answer to an earlier attempt of this request is as good.
                    Ok(m)
                        if m.pdu.kind == PduKind::Response
                            && sent_ids.contains(&m.pdu.request_id) =>
                    {
                        return Ok(m.pdu);
                    }
                    Ok(_) | Err(_) => self.ignored += 1,
                }
            }
        }
        Err(SnmpError::Timeout {
            attempts: self.cfg.retries + 1,
            timeout: self.cfg.timeout,
            ignored: self.ignored,
        })
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
