//! Switch-port reconfiguration for a shadow with SNMP SET: enable the
//! spare's port, move it to the failing port's VLAN, give it the
//! description, and disable the failing port. Each step is read first (to
//! undo it), then set and verified by read-back (`set_verified`: a
//! "noError" answer carrying noSuchInstance is a failure). A step that
//! fails undoes the ones before it; [`Switch::undo`] reverses a whole plan
//! on rollback.

use firmware_shims::snmp::ber::Oid;
use firmware_shims::snmp::Value;
use serde::Deserialize;
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
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Undo {
    pub steps: Vec<(Oid, Value)>,
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
}

fn oid(base: &str, index: u32) -> Oid {
    format!("{base}.{index}")
        .parse()
        .expect("constant OID prefix")
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
        let mut s = vec![(oid(IF_ADMIN_STATUS, plan.spare_port), Value::Integer(1))];
        if let Some((bridge_port, vlan)) = plan.vlan {
            s.push((oid(DOT1Q_PVID, bridge_port), Value::Gauge32(vlan)));
        }
        if let Some(d) = &plan.description {
            s.push((
                oid(IF_ALIAS, plan.spare_port),
                Value::OctetString(d.as_bytes().to_vec()),
            ));
        }
        s.push((oid(IF_ADMIN_STATUS, plan.failing_port), Value::Integer(2)));
        s
    }

    /// Carry the plan out; on a failed step, undo what was done and fail.
    pub async fn apply(&mut self, plan: &PortPlan) -> Result<Undo, SwitchError> {
        let mut undo = Undo::default();
        for (o, v) in Self::steps(plan) {
            let step = async {
                let before = self.client.get(std::slice::from_ref(&o)).await?.remove(0).1;
                self.client.set_verified(&o, v).await?;
                Ok::<_, SnmpError>(before)
            }
            .await;
            match step {
                Ok(before) => undo.steps.push((o, before)),
                Err(source) => {
                    let undone = undo.steps.len();
                    if let Err(e) = self.undo(&undo).await {
                        tracing::error!(switch = %self.addr, error = %e, "undoing a partial port plan failed");
                    }
                    return Err(SwitchError::Step {
                        addr: self.addr,
                        oid: o,
                        source,
                        undone,
                    });
                }
            }
        }
        Ok(undo)
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
