//! Switch-port reconfiguration for a shadow with SNMP SET: enable the
//! spare's port, move it to the failing port's VLAN, give it the
//! description, and disable the failing port. Each step is read first (to
//! undo it), then set and verified by read-back (`set_verified`: a
//! "noError" answer carrying noSuchInstance is a failure). A step that
//! fails undoes the ones before it; [`Switch::undo`] reverses a whole plan
//! on rollback.
//!
//! The undo record can be kept across restarts: [`Switch::apply_steps`]
//! hands it to a `persist` callback after reading each old value and
//! before the SET (write-ahead), and never overwrites an old value it
//! already holds, so re-running a half-done plan after a crash keeps the
//! values from before the first run.

use firmware_shims::snmp::ber::Oid;
use firmware_shims::snmp::Value;
use serde::{Deserialize, Serialize};
use service::secret::Secret;
use snmp_client::{ClientConfig, SnmpClient, SnmpError, V3Config};
use std::net::SocketAddr;
use std::time::Duration;

/// IF-MIB ifAdminStatus (up 1, down 2), by ifIndex.
pub const IF_ADMIN_STATUS: &str = "1.3.6.1.2.1.2.2.1.7";
/// IF-MIB ifAlias (the port's description), by ifIndex.
pub const IF_ALIAS: &str = "1.3.6.1.2.1.31.1.1.1.18";
/// Q-BRIDGE-MIB dot1qPvid (the port's VLAN), by bridge port number.
pub const DOT1Q_PVID: &str = "1.3.6.1.2.1.17.7.1.4.5.1.1";

/// How to reach one switch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    pub address: SocketAddr,
    /// v2c write community (absent with `v3`).
    pub community: Option<Secret>,
    /// SNMPv3 user, as the agent's `[collector.v3]`.
    pub v3: Option<V3Config>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
const fn default_retries() -> u32 {
    2
}

impl SwitchConfig {
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let v3 = self.v3.as_ref().map(V3Config::user).transpose()?;
        let community = match (&self.community, &v3) {
            (Some(c), None) => c.expose().to_owned(),
            (None, Some(_)) => String::new(),
            _ => return Err("give exactly one of community or v3".into()),
        };
        Ok(ClientConfig {
            community,
            timeout: self.timeout,
            retries: self.retries,
            max_repetitions: 25,
            v3,
        })
    }
}

/// The change a shadow needs on its switch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortPlan {
    /// ifIndex of the spare's port.
    pub spare_port: u32,
    /// ifIndex of the failing host's port.
    pub failing_port: u32,
    /// VLAN for the spare's port, at its bridge port number.
    pub vlan: Option<(u32, u32)>,
    pub description: Option<String>,
}

/// Applied steps with the values they replaced, newest last.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Undo {
    #[serde(with = "saved")]
    pub steps: Vec<(Oid, Value)>,
}

impl Undo {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// The undo record's stored form: the OID as text and the old value by
/// type. Only values an agent can hold in a settable object are stored.
mod saved {
    use super::{Oid, Value};
    use serde::{
        de::Error as _, ser::Error as _, Deserialize, Deserializer, Serialize, Serializer,
    };

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Saved {
        Integer(i64),
        OctetString(Vec<u8>),
        Null,
        Oid(String),
        IpAddress([u8; 4]),
        Counter32(u32),
        Gauge32(u32),
        TimeTicks(u32),
        Counter64(u64),
    }

    pub fn serialize<S: Serializer>(steps: &[(Oid, Value)], s: S) -> Result<S::Ok, S::Error> {
        let mut out = Vec::with_capacity(steps.len());
        for (o, v) in steps {
            let v = match v {
                Value::Integer(i) => Saved::Integer(*i),
                Value::OctetString(b) => Saved::OctetString(b.clone()),
                Value::Null => Saved::Null,
                Value::Oid(o) => Saved::Oid(o.to_string()),
                Value::IpAddress(a) => Saved::IpAddress(*a),
                Value::Counter32(c) => Saved::Counter32(*c),
                Value::Gauge32(g) => Saved::Gauge32(*g),
                Value::TimeTicks(t) => Saved::TimeTicks(*t),
                Value::Counter64(c) => Saved::Counter64(*c),
                other => {
                    return Err(S::Error::custom(format!(
                        "{o}: {other:?} cannot be set back, so it is not an undo value"
                    )))
                }
            };
            out.push((o.to_string(), v));
        }
        out.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(Oid, Value)>, D::Error> {
        let oid = |t: &str| {
            t.parse::<Oid>()
                .map_err(|e| D::Error::custom(format!("OID {t:?}: {e:?}")))
        };
        Vec::<(String, Saved)>::deserialize(d)?
            .into_iter()
            .map(|(o, v)| {
                let v = match v {
                    Saved::Integer(i) => Value::Integer(i),
                    Saved::OctetString(b) => Value::OctetString(b),
                    Saved::Null => Value::Null,
                    Saved::Oid(t) => Value::Oid(oid(&t)?),
                    Saved::IpAddress(a) => Value::IpAddress(a),
                    Saved::Counter32(c) => Value::Counter32(c),
                    Saved::Gauge32(g) => Value::Gauge32(g),
                    Saved::TimeTicks(t) => Value::TimeTicks(t),
                    Saved::Counter64(c) => Value::Counter64(c),
                };
                Ok((oid(&o)?, v))
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("switch {addr}: {source}")]
    Snmp { addr: SocketAddr, source: SnmpError },
    #[error(
        "switch {addr}: setting {oid} failed ({source}); the {undone} steps before it were undone"
    )]
    Step {
        addr: SocketAddr,
        oid: Oid,
        source: SnmpError,
        undone: usize,
    },
    #[error("switch {addr}: {0}", addr = .1)]
    Config(String, SocketAddr),
    /// The undo record could not be kept, so the step was not taken.
    #[error("switch {addr}: keeping the undo record failed: {reason}")]
    Persist { addr: SocketAddr, reason: String },
}

fn oid(base: &str, index: u32) -> Oid {
    format!("{base}.{index}")
        .parse()
        .expect("constant OID prefix")
}

/// Bring a port up: admin status up, then (optionally) its VLAN at its
/// bridge port number and its description.
pub fn port_up(
    if_index: u32,
    vlan: Option<(u32, u32)>,
    description: Option<&str>,
) -> Vec<(Oid, Value)> {
    let mut s = vec![(oid(IF_ADMIN_STATUS, if_index), Value::Integer(1))];
    if let Some((bridge_port, vlan)) = vlan {
        s.push((oid(DOT1Q_PVID, bridge_port), Value::Gauge32(vlan)));
    }
    if let Some(d) = description {
        s.push((
            oid(IF_ALIAS, if_index),
            Value::OctetString(d.as_bytes().to_vec()),
        ));
    }
    s
}

/// Shut a port (admin status down).
pub fn port_down(if_index: u32) -> Vec<(Oid, Value)> {
    vec![(oid(IF_ADMIN_STATUS, if_index), Value::Integer(2))]
}

/// One switch.
#[derive(Debug)]
pub struct Switch {
    addr: SocketAddr,
    client: SnmpClient,
}

impl Switch {
    pub async fn connect(cfg: &SwitchConfig) -> Result<Switch, SwitchError> {
        let cc = cfg
            .client_config()
            .map_err(|m| SwitchError::Config(m, cfg.address))?;
        let client =
            SnmpClient::new(cfg.address, cc)
                .await
                .map_err(|source| SwitchError::Snmp {
                    addr: cfg.address,
                    source,
                })?;
        Ok(Switch {
            addr: cfg.address,
            client,
        })
    }

    /// The plan's SETs, in order.
    pub fn steps(plan: &PortPlan) -> Vec<(Oid, Value)> {
        let mut s = port_up(plan.spare_port, plan.vlan, plan.description.as_deref());
        s.extend(port_down(plan.failing_port));
        s
    }

    /// Carry the plan out; on a failed step, undo what was done and fail.
    pub async fn apply(&mut self, plan: &PortPlan) -> Result<Undo, SwitchError> {
        let mut undo = Undo::default();
        self.apply_steps(Self::steps(plan), &mut undo, |_| Ok(()))
            .await?;
        Ok(undo)
    }

    /// Set each of `steps`, verified by read-back. Before a SET, the old
    /// value joins `undo` (unless it holds one for that object already)
    /// and `persist` keeps it. On a failed step, everything in `undo` is
    /// put back, `undo` emptied (and persisted so), and the step's error
    /// returned.
    pub async fn apply_steps(
        &mut self,
        steps: Vec<(Oid, Value)>,
        undo: &mut Undo,
        mut persist: impl FnMut(&Undo) -> Result<(), String>,
    ) -> Result<(), SwitchError> {
        let addr = self.addr;
        for (o, v) in steps {
            let step = async {
                if !undo.steps.iter().any(|(u, _)| *u == o) {
                    let before = self.client.get(std::slice::from_ref(&o)).await?.remove(0).1;
                    // An object that is not there cannot be set back.
                    if before.is_exception() {
                        return Err(SnmpError::Exception {
                            oid: o.clone(),
                            value: before,
                        });
                    }
                    undo.steps.push((o.clone(), before));
                    if let Err(reason) = persist(undo) {
                        undo.steps.pop();
                        return Ok(Some(reason));
                    }
                }
                self.client.set_verified(&o, v).await.map(|()| None)
            }
            .await;
            let source = match step {
                Ok(None) => continue,
                Ok(Some(reason)) => return Err(SwitchError::Persist { addr, reason }),
                Err(source) => source,
            };
            // Steps applied before this one (its own old value is in the
            // record already, write-ahead; setting it back is harmless).
            let undone = undo.steps.iter().filter(|(u, _)| *u != o).count();
            if let Err(e) = self.undo(undo).await {
                tracing::error!(switch = %addr, error = %e, "undoing a partial port plan failed");
            } else {
                undo.steps.clear();
                if let Err(reason) = persist(undo) {
                    tracing::error!(switch = %addr, %reason, "keeping the emptied undo record failed");
                }
            }
            return Err(SwitchError::Step {
                addr,
                oid: o,
                source,
                undone,
            });
        }
        Ok(())
    }

    /// Put back what `apply` changed, newest first; every step is tried
    /// even when one fails (the first error is returned).
    pub async fn undo(&mut self, undo: &Undo) -> Result<(), SwitchError> {
        let mut first = None;
        for (o, v) in undo.steps.iter().rev() {
            if let Err(source) = self.client.set_verified(o, v.clone()).await {
                first.get_or_insert(SwitchError::Snmp {
                    addr: self.addr,
                    source,
                });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Read one object (for checks and tests).
    pub async fn get(&mut self, o: &Oid) -> Result<Value, SwitchError> {
        let addr = self.addr;
        Ok(self
            .client
            .get(std::slice::from_ref(o))
            .await
            .map_err(|source| SwitchError::Snmp { addr, source })?
            .remove(0)
            .1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_become_ordered_sets_ending_with_the_failing_port() {
        let plan = PortPlan {
            spare_port: 5,
            failing_port: 1,
            vlan: Some((5, 120)),
            description: Some("shadow of node-07".into()),
        };
        let s = Switch::steps(&plan);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0], (oid(IF_ADMIN_STATUS, 5), Value::Integer(1)));
        assert_eq!(s[1], (oid(DOT1Q_PVID, 5), Value::Gauge32(120)));
        assert_eq!(s[3], (oid(IF_ADMIN_STATUS, 1), Value::Integer(2)));
    }

    #[test]
    fn undo_records_survive_serialisation_and_refuse_exceptions() {
        let undo = Undo {
            steps: vec![
                (oid(IF_ADMIN_STATUS, 5), Value::Integer(2)),
                (oid(DOT1Q_PVID, 5), Value::Gauge32(1)),
                (oid(IF_ALIAS, 5), Value::OctetString(b"spare \xff".to_vec())),
            ],
        };
        let text = serde_json::to_string(&undo).unwrap();
        assert_eq!(serde_json::from_str::<Undo>(&text).unwrap(), undo);
        let odd = Undo {
            steps: vec![(oid(IF_ALIAS, 9), Value::NoSuchInstance)],
        };
        assert!(serde_json::to_string(&odd)
            .unwrap_err()
            .to_string()
            .contains("cannot be set back"));
        assert!(serde_json::from_str::<Undo>(r#"{"steps":[["1.3.x",{"integer":1}]]}"#).is_err());
    }

    #[test]
    fn credentials_are_one_of_community_or_v3() {
        let c: SwitchConfig =
            toml::from_str("address = \"127.0.0.1:161\"\ncommunity = \"private\"").unwrap();
        assert_eq!(c.client_config().unwrap().community, "private");
        let none: SwitchConfig = toml::from_str("address = \"127.0.0.1:161\"").unwrap();
        assert!(none.client_config().is_err());
        let v3: SwitchConfig = toml::from_str(
            "address = \"127.0.0.1:161\"\n[v3]\nuser = \"u\"\nauth = \"md5\"\nauth_password = \"authpass123\"",
        )
        .unwrap();
        assert!(v3.client_config().unwrap_err().contains("md5"));
    }
}
