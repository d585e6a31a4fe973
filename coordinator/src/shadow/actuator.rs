//! The real [`Actuator`]: each engine action carried out on the systems of
//! one protected service (`[shadow.execute]`).
//!
//! - `Provision`: choose a spare ([`spare::choose`]: available, outside the
//!   failing host's rack/PDU/ToR unless allowed, cheapest; never one another
//!   lifecycle holds as shadow or standby, nor one that failed for this
//!   target before; a hot standby of the target's first). The choice is
//!   persisted (`'S'` in the store) before anything is done, so a restart
//!   provisions the same spare again (state-based). Then the spare's switch
//!   port is brought up in the service's VLAN with a description (SNMP SET,
//!   read back; the values it replaces persisted first), its BMC brings it
//!   up on the provisioning image (Redfish), the service's shadow servers
//!   in HAProxy (or the comparator) are pointed at it, the host's
//!   Kubernetes node is cordoned, and its dependency map (configured
//!   workloads, and those discovered on the node) is audited.
//! - `Sync`: an rsync snapshot where the service has state; nothing else.
//! - `Mirror`: the share of nginx's request copies HAProxy passes to the
//!   shadow ([`crate::actuate::mirror`], a runtime map entry: no reload).
//!   With `compare`, the mirror backend's server is the comparator
//!   ([`crate::actuate::compare`]), which sends each copy to the shadow
//!   and, for safe methods, to the primary, and compares the answers.
//! - `SetWeight`: the shadow's share in HAProxy. `Promote`: all traffic
//!   to the shadow, the old primary drained, mirroring off, then the
//!   workloads that depend on the host moved: its Kubernetes node drained
//!   through the Eviction API ([`crate::actuate::kubernetes`]; cordoned
//!   already at provisioning, uncordoned on revert) and/or the
//!   orchestrator's hook told to `drain` ([`crate::actuate::hook`]);
//!   last, the old primary is quarantined (HAProxy `maint`, its switch
//!   port shut), kept as a fallback or rebuilt through its BMC
//!   (`after_promotion`).
//! - `Revert`: traffic back to the primary, mirroring off, the spare
//!   released (image ejected, powered off), its switch port put back as it
//!   was, and its assignment dropped.
//!   `Replace` does the same to a failed shadow but keeps the assignment
//!   with the spare listed as failed, so the next attempt picks another.
//!
//! KPIs: while syncing, the replication lag; while mirroring, the
//! comparator's window (shadow errors, share of answers that differ from
//! the primary's, the shadow's p99) or, without one, the shadow's counters
//! in the mirror backend; while shifting, in the live backend (requests
//! and 5xx since the last sample, HAProxy's `rtime`).

use super::engine::{Action, Kpi, Phase};
use super::execute::Actuator;
use super::spare::{self, Spare};
use super::traffic::KpiSampler;
use crate::actuate::compare::{Comparator, CompareConfig};
use crate::actuate::haproxy::{Haproxy, HaproxyConfig};
use crate::actuate::hook::{migrate, HookConfig, Migration};
use crate::actuate::kubernetes::{Kubernetes, KubernetesConfig};
use crate::actuate::mirror::{Mirror, MirrorConfig};
use crate::actuate::redfish::{Redfish, RedfishConfig};
use crate::actuate::rsync::{Rsync, RsyncConfig};
use crate::actuate::switch::{self, Switch, SwitchConfig, Undo};
use crate::model::FailureDomain;
use crate::store::Store;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `[shadow.execute]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteConfig {
    /// How often pending actions, KPIs and dwell times are looked at.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// The provisioning image (virtual media URL).
    pub image: String,
    /// Let a spare share the failing host's rack, PDU or ToR when no other
    /// is available.
    #[serde(default)]
    pub allow_same_domain: bool,
    pub spares: Vec<SpareConfig>,
    pub services: Vec<ServiceConfig>,
    /// Switches that spare and service ports are on, by name
    /// (`[shadow.execute.switches.NAME]`).
    #[serde(default)]
    pub switches: BTreeMap<String, SwitchConfig>,
}

/// The old primary after promotion. In every case it takes no new
/// requests and its Kubernetes node stays cordoned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Out of service for inspection: HAProxy `maint`, its switch port
    /// shut (where `port` is given).
    #[default]
    Quarantine,
    /// Kept as a fallback: HAProxy `drain` (health-checked, no new
    /// requests), powered and connected.
    Standby,
    /// Reinstalled: HAProxy `maint`, and its BMC boots it from the
    /// rebuild image (virtual media, boot once, power cycle).
    Rebuild,
}

/// A host's port on one of `[shadow.execute.switches]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub switch: String,
    /// IF-MIB ifIndex.
    pub if_index: u32,
    /// Q-BRIDGE bridge port number (for the VLAN); absent: VLAN not set.
    pub bridge_port: Option<u32>,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

/// `[[shadow.execute.spares]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpareConfig {
    pub id: String,
    /// The system on its BMC (Id, Name or UUID).
    pub system: String,
    pub bmc: RedfishConfig,
    #[serde(default = "default_cost")]
    pub cost: f64,
    #[serde(default)]
    pub rack: String,
    #[serde(default)]
    pub pdu: String,
    #[serde(default)]
    pub tor: String,
    /// Where the service answers on this spare once provisioned.
    pub address: SocketAddr,
    /// Brought up (in the service's `vlan`) when this spare is provisioned,
    /// put back on revert.
    pub port: Option<PortConfig>,
    /// false: in maintenance, never chosen.
    #[serde(default = "available")]
    pub available: bool,
}

fn available() -> bool {
    true
}

fn default_cost() -> f64 {
    1.0
}

/// `[[shadow.execute.services]]`: one protected host's service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub host: String,
    pub haproxy: HaproxyConfig,
    /// Mirroring: nginx copies requests to a HAProxy frontend that passes
    /// a share (this map entry) to `mirror_backend`, whose server is named
    /// as the live backend's shadow server.
    pub mirror: Option<MirrorConfig>,
    pub mirror_backend: Option<String>,
    /// Validate mirrored answers against the primary's: the mirror
    /// backend's server is then this comparator's `listen` address.
    pub compare: Option<CompareConfig>,
    /// State to replicate to the shadow.
    pub rsync: Option<RsyncConfig>,
    /// Workloads that depend on the host, moved at promotion by `hook`.
    #[serde(default)]
    pub workloads: Vec<String>,
    pub hook: Option<HookConfig>,
    /// The host is a Kubernetes node: cordoned when its shadow is
    /// provisioned, drained at promotion, uncordoned on rollback.
    pub kubernetes: Option<KubernetesConfig>,
    /// The host's port: shut when its shadow is promoted (quarantine).
    pub port: Option<PortConfig>,
    /// What becomes of the old primary once its shadow is promoted.
    #[serde(default)]
    pub after_promotion: Disposition,
    /// The host's own BMC and system (for `rebuild`).
    pub bmc: Option<RedfishConfig>,
    pub system: Option<String>,
    /// The image a rebuild installs (default: `[shadow.execute] image`).
    pub rebuild_image: Option<String>,
    /// The service's access VLAN, given to a spare's port.
    pub vlan: Option<u32>,
}

impl ExecuteConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.spares.is_empty() || self.services.is_empty() {
            return Err("execute needs at least one spare and one service".into());
        }
        let mut hosts = std::collections::BTreeSet::new();
        for s in &self.services {
            if !hosts.insert(&s.host) {
                return Err(format!("service host {:?} listed twice", s.host));
            }
            if !s.workloads.is_empty() && s.hook.is_none() {
                return Err(format!(
                    "service {}: workloads need a hook to move them",
                    s.host
                ));
            }
            if s.mirror.is_some() != s.mirror_backend.is_some() {
                return Err(format!(
                    "service {}: mirror and mirror_backend go together",
                    s.host
                ));
            }
            if s.compare.is_some() && s.mirror.is_none() {
                return Err(format!(
                    "service {}: compare validates mirrored requests; it needs mirror",
                    s.host
                ));
            }
            Haproxy::new(s.haproxy.clone()).map_err(|e| format!("service {}: {e}", s.host))?;
            self.check_port(&format!("service {}", s.host), s.port.as_ref())?;
            if s.after_promotion == Disposition::Rebuild && (s.bmc.is_none() || s.system.is_none())
            {
                return Err(format!(
                    "service {}: after_promotion = \"rebuild\" needs the host's bmc and system",
                    s.host
                ));
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for s in &self.spares {
            if !ids.insert(&s.id) {
                return Err(format!("spare {:?} listed twice", s.id));
            }
            if !s.cost.is_finite() || s.cost < 0.0 {
                return Err(format!("spare {}: cost must be finite and >= 0", s.id));
            }
            self.check_port(&format!("spare {}", s.id), s.port.as_ref())?;
        }
        for (name, sw) in &self.switches {
            sw.client_config()
                .map_err(|e| format!("switch {name}: {e}"))?;
        }
        if self.interval.is_zero() {
            return Err("execute.interval must be positive".into());
        }
        Ok(())
    }

    fn check_port(&self, whose: &str, port: Option<&PortConfig>) -> Result<(), String> {
        match port {
            Some(p) if !self.switches.contains_key(&p.switch) => Err(format!(
                "{whose}: port on switch {:?}, which is not in [shadow.execute.switches]",
                p.switch
            )),
            _ => Ok(()),
        }
    }
}

struct Service {
    cfg: ServiceConfig,
    lb: Haproxy,
    /// The host's own BMC (for a rebuild).
    bmc: Option<Redfish>,
    kube: Option<Kubernetes>,
    mirror: Option<(Mirror, String)>,
    compare: Option<Arc<Comparator>>,
    rsync: Option<Rsync>,
}

/// Which spare a target uses, persisted. Between a replaced shadow and
/// the next attempt's choice, `spare` is empty.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Assignment {
    spare: String,
    attempt: u32,
    /// Spares that failed for this target in this lifecycle.
    failed: Vec<String>,
    /// What the spare's switch port held before it was brought up.
    #[serde(default, skip_serializing_if = "Undo::is_empty")]
    spare_port: Undo,
    /// What the old primary's port held before it was shut.
    #[serde(default, skip_serializing_if = "Undo::is_empty")]
    host_port: Undo,
    /// Hot standby spares, provisioned beside the shadow; the first takes
    /// over from a failed shadow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    standby: Vec<String>,
}

pub struct FleetActuator {
    store: Arc<Store>,
    cfg: ExecuteConfig,
    bmcs: BTreeMap<String, Redfish>,
    services: BTreeMap<String, Service>,
    /// KPI samplers per (target, live or mirror).
    samplers: Mutex<BTreeMap<(String, &'static str), KpiSampler>>,
    /// The comparators' servers (stopped with the actuator).
    servers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for FleetActuator {
    fn drop(&mut self) {
        for t in self.servers.get_mut().expect("poisoned").drain(..) {
            t.abort();
        }
    }
}

impl FleetActuator {
    pub fn new(store: Arc<Store>, cfg: ExecuteConfig) -> Result<FleetActuator, String> {
        cfg.validate()?;
        let mut bmcs = BTreeMap::new();
        for s in &cfg.spares {
            let r = Redfish::new(&s.bmc).map_err(|e| format!("spare {}: {e}", s.id))?;
            bmcs.insert(s.id.clone(), r);
        }
        let mut services = BTreeMap::new();
        for s in &cfg.services {
            let lb = Haproxy::new(s.haproxy.clone()).map_err(|e| e.to_string())?;
            let mirror = match (&s.mirror, &s.mirror_backend) {
                (Some(m), Some(b)) => Some((Mirror::new(lb.clone(), m.clone())?, b.clone())),
                _ => None,
            };
            services.insert(
                s.host.clone(),
                Service {
                    cfg: s.clone(),
                    lb,
                    bmc: s
                        .bmc
                        .as_ref()
                        .map(Redfish::new)
                        .transpose()
                        .map_err(|e| format!("service {}: {e}", s.host))?,
                    kube: s
                        .kubernetes
                        .clone()
                        .map(Kubernetes::new)
                        .transpose()
                        .map_err(|e| format!("service {}: {e}", s.host))?,
                    mirror,
                    compare: s.compare.clone().map(Comparator::new),
                    rsync: s.rsync.clone().map(Rsync::new),
                },
            );
        }
        Ok(FleetActuator {
            store,
            cfg,
            bmcs,
            services,
            samplers: Mutex::default(),
            servers: Mutex::default(),
        })
    }

    /// Start the comparators' servers, each pointed at the shadow its
    /// target holds (after a restart, the persisted assignment's).
    pub async fn start(&self) -> Result<(), String> {
        for (target, svc) in &self.services {
            let Some(c) = &svc.compare else { continue };
            let addr = c.config().listen;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("service {target}: comparator on {addr}: {e}"))?;
            let shadow = self
                .assignment(target)?
                .filter(|a| !a.spare.is_empty())
                .map(|a| self.spare(&a.spare).map(|s| s.address))
                .transpose()?;
            c.set_shadow(shadow);
            let task = tokio::spawn(c.clone().serve(listener));
            self.servers.lock().expect("poisoned").push(task);
        }
        Ok(())
    }

    fn service(&self, target: &str) -> Result<&Service, String> {
        self.services
            .get(target)
            .ok_or_else(|| format!("no [[shadow.execute.services]] entry for host {target}"))
    }

    fn spare(&self, id: &str) -> Result<&SpareConfig, String> {
        self.cfg
            .spares
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| format!("spare {id} is not (or no longer) configured"))
    }

    /// `target`'s assignment; one that does not read is an error, not
    /// none (its undo records and standbys would be lost).
    fn assignment(&self, target: &str) -> Result<Option<Assignment>, String> {
        self.store
            .assignment(target)
            .map_err(|e| e.to_string())?
            .map(|v| {
                serde_json::from_value(v).map_err(|e| format!("spare assignment of {target}: {e}"))
            })
            .transpose()
    }

    fn save(&self, target: &str, a: Option<&Assignment>) -> Result<(), String> {
        let v = a.map(|a| serde_json::to_value(a).expect("serialisable"));
        self.store
            .put_assignment(target, v.as_ref())
            .map_err(|e| e.to_string())
    }

    /// The assigned spare (already put back) counts as failed for the
    /// rest of the lifecycle and is no longer assigned.
    fn set_aside(&self, target: &str) -> Result<(), String> {
        let Some(mut a) = self.assignment(target)? else {
            return Ok(());
        };
        let spare = std::mem::take(&mut a.spare);
        if !spare.is_empty() && !a.failed.contains(&spare) {
            a.failed.push(spare);
        }
        self.save(target, Some(&a))
    }

    /// The spare for `target`'s attempt: the persisted one for the same
    /// attempt, else a new choice outside those that failed.
    /// A hot standby, where the target has one, becomes the shadow.
    fn choose(&self, target: &str, attempt: u32) -> Result<&SpareConfig, String> {
        let mut a = self.assignment(target)?.unwrap_or_default();
        if a.attempt == attempt && !a.spare.is_empty() {
            return self.spare(&a.spare);
        }
        let chosen = if a.standby.is_empty() {
            self.pick(target, &a)?
        } else {
            let id = a.standby.remove(0);
            let record = json!({"target": target, "event": "standby_taken", "spare": id, "attempt": attempt});
            self.store
                .append_audit(crate::now_ms(), &record)
                .map_err(|e| e.to_string())?;
            id
        };
        a.spare = chosen;
        a.attempt = attempt;
        self.save(target, Some(&a))?;
        self.spare(&a.spare)
    }

    /// A spare for `target` by the pool rules, outside every spare another
    /// target holds (shadow or standby) and those `a` holds or saw fail.
    fn pick(&self, target: &str, a: &Assignment) -> Result<String, String> {
        let held: Vec<String> = self
            .store
            .assignments()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|(t, _)| t != target)
            .filter_map(|(_, v)| serde_json::from_value::<Assignment>(v).ok())
            .flat_map(|o| std::iter::once(o.spare).chain(o.standby))
            .filter(|s| !s.is_empty())
            .collect();
        let domain = self
            .store
            .host(target)
            .map_err(|e| e.to_string())?
            .map(|h| h.failure_domain)
            .unwrap_or_default();
        let pool: Vec<Spare> = self
            .cfg
            .spares
            .iter()
            .map(|s| Spare {
                id: s.id.clone(),
                cost: s.cost,
                available: s.available,
                domain: FailureDomain {
                    site: String::new(),
                    rack: s.rack.clone(),
                    pdu: s.pdu.clone(),
                    tor: s.tor.clone(),
                },
            })
            .collect();
        let exclude: Vec<&str> = held
            .iter()
            .chain(&a.failed)
            .chain(&a.standby)
            .chain(std::iter::once(&a.spare))
            .map(String::as_str)
            .collect();
        spare::choose(&pool, &domain, self.cfg.allow_same_domain, &exclude)
            .map(|s| s.id.clone())
            .ok_or_else(|| {
                format!(
                    "no spare available outside {target}'s failure domain ({} held by others, {} failed)",
                    held.len(),
                    a.failed.len()
                )
            })
    }

    /// Hot standbys: provision spares beside the shadow up to `want`,
    /// release those beyond it. Each is written to the assignment before
    /// its BMC is told (a restart re-provisions it: state-based); one that
    /// fails is released and set aside as failed. Standbys are powered on
    /// the image; their switch port is set when one becomes the shadow.
    async fn reconcile_standby(&self, target: &str, want: u8) -> Result<bool, String> {
        let Some(mut a) = self.assignment(target)? else {
            return Ok(want == 0);
        };
        if a.spare.is_empty() && want > 0 {
            return Ok(false); // between a replaced shadow and the next
        }
        let want = usize::from(want);
        while a.standby.len() > want {
            let id = a.standby.pop().expect("longer than want");
            let spare = self.spare(&id)?;
            self.bmcs[&id]
                .release(&spare.system)
                .await
                .map_err(|e| format!("releasing standby {id}: {e}"))?;
            self.save(target, Some(&a))?;
            let record = json!({"target": target, "event": "standby_released", "spare": id});
            self.store
                .append_audit(crate::now_ms(), &record)
                .map_err(|e| e.to_string())?;
        }
        while a.standby.len() < want {
            // Best effort: a pool without a spare to stand by is audited
            // and tried again after the lifecycle's next action.
            let id = match self.pick(target, &a) {
                Ok(id) => id,
                Err(why) => {
                    let record = json!({"target": target, "event": "standby_unavailable", "want": want, "have": a.standby.len(), "why": why});
                    self.store
                        .append_audit(crate::now_ms(), &record)
                        .map_err(|e| e.to_string())?;
                    break;
                }
            };
            a.standby.push(id);
            self.save(target, Some(&a))?;
        }
        for id in a.standby.clone() {
            let spare = self.spare(&id)?;
            if let Err(e) = self.bmcs[&id]
                .provision(&spare.system, &self.cfg.image)
                .await
            {
                let why = format!("standby {id}: {e}");
                if let Err(e) = self.bmcs[&id].release(&spare.system).await {
                    tracing::warn!(%target, spare = %id, error = %e, "releasing a failed standby");
                }
                a.standby.retain(|s| *s != id);
                a.failed.push(id);
                self.save(target, Some(&a))?;
                return Err(why);
            }
            let record = json!({"target": target, "event": "standby_ready", "spare": id});
            self.store
                .append_audit(crate::now_ms(), &record)
                .map_err(|e| e.to_string())?;
        }
        Ok(true)
    }

    async fn provision(&self, target: &str, attempt: u32) -> Result<(), String> {
        let svc = self.service(target)?;
        // An earlier attempt's spare that failed to provision is put back
        // before another is chosen.
        if let Some(a) = self.assignment(target)? {
            if a.attempt != attempt && !a.spare.is_empty() {
                self.put_back(target, &a.spare, false).await?;
                self.set_aside(target)?;
            }
        }
        let spare = self.choose(target, attempt)?;
        if let Some(port) = &spare.port {
            let vlan = svc.cfg.vlan.zip(port.bridge_port).map(|(v, b)| (b, v));
            let why = format!("umbra shadow of {target}");
            let steps = switch::port_up(port.if_index, vlan, Some(&why));
            self.set_port(target, port, steps, |a| &mut a.spare_port)
                .await?;
        }
        let bmc = &self.bmcs[&spare.id];
        bmc.provision(&spare.system, &self.cfg.image)
            .await
            .map_err(|e| format!("spare {}: {e}", spare.id))?;
        let h = &svc.cfg.haproxy;
        svc.lb
            .set_addr(&h.backend, &h.shadow, spare.address)
            .await
            .map_err(|e| e.to_string())?;
        match (&svc.compare, &svc.mirror) {
            (Some(c), _) => c.set_shadow(Some(spare.address)),
            (None, Some((_, backend))) => svc
                .lb
                .set_addr(backend, &h.shadow, spare.address)
                .await
                .map_err(|e| e.to_string())?,
            (None, None) => {}
        }
        // No new pods on a node that is about to be replaced.
        if let Some(k) = &svc.kube {
            k.cordon(k.node_of(target), true)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.record_dependencies(target, svc).await
    }

    /// The dependency map of `target`, audited when its shadow is
    /// provisioned: the workloads configured for it and those discovered
    /// on its Kubernetes node (which the drain at promotion moves).
    async fn record_dependencies(&self, target: &str, svc: &Service) -> Result<(), String> {
        let discovered = match &svc.kube {
            Some(k) => k
                .workloads(k.node_of(target))
                .await
                .map_err(|e| format!("discovering workloads: {e}"))?,
            None => Vec::new(),
        };
        let record = json!({
            "target": target, "event": "dependencies",
            "configured": svc.cfg.workloads, "discovered": discovered,
        });
        self.store
            .append_audit(crate::now_ms(), &record)
            .map_err(|e| e.to_string())
    }

    /// Apply `steps` on `port`'s switch, the undo record kept in the
    /// field `record` picks of `target`'s assignment (write-ahead).
    async fn set_port(
        &self,
        target: &str,
        port: &PortConfig,
        steps: Vec<(firmware_shims::snmp::ber::Oid, firmware_shims::snmp::Value)>,
        record: fn(&mut Assignment) -> &mut Undo,
    ) -> Result<(), String> {
        let mut sw = self.switch(port).await?;
        let mut a = self.assignment(target)?.unwrap_or_default();
        let mut undo = std::mem::take(record(&mut a));
        sw.apply_steps(steps, &mut undo, |u| {
            *record(&mut a) = u.clone();
            self.save(target, Some(&a))
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// Put back what `record` says was changed on `port`, then forget it.
    async fn restore_port(
        &self,
        target: &str,
        port: &PortConfig,
        record: fn(&mut Assignment) -> &mut Undo,
    ) -> Result<(), String> {
        let Some(mut a) = self.assignment(target)? else {
            return Ok(());
        };
        if record(&mut a).is_empty() {
            return Ok(());
        }
        let mut sw = self.switch(port).await?;
        sw.undo(record(&mut a)).await.map_err(|e| e.to_string())?;
        *record(&mut a) = Undo::default();
        self.save(target, Some(&a))
    }

    async fn switch(&self, port: &PortConfig) -> Result<Switch, String> {
        let cfg = self
            .cfg
            .switches
            .get(&port.switch)
            .ok_or_else(|| format!("switch {} is not configured", port.switch))?;
        Switch::connect(cfg).await.map_err(|e| e.to_string())
    }

    async fn mirror(&self, svc: &Service, percent: u8) -> Result<(), String> {
        match &svc.mirror {
            Some((m, _)) => m.set_percent(percent).await.map_err(|e| e.to_string()),
            None if percent == 0 => Ok(()),
            None => Err("no mirror configured for this service".into()),
        }
    }

    /// Release `spare` (image ejected, powered off) and put its switch
    /// port back. With `strict` false (a spare that failed to provision,
    /// whose BMC may well be the reason), a failed release is audited and
    /// passed over; the port is always put back, or its undo record would
    /// be mixed with the next spare's.
    async fn put_back(&self, target: &str, spare: &str, strict: bool) -> Result<(), String> {
        let spare = self.spare(spare)?;
        if let Err(e) = self.bmcs[&spare.id].release(&spare.system).await {
            let why = format!("releasing spare {}: {e}", spare.id);
            if strict {
                return Err(why);
            }
            let record = json!({"target": target, "event": "release_failed", "spare": spare.id, "error": why});
            self.store
                .append_audit(crate::now_ms(), &record)
                .map_err(|e| e.to_string())?;
        }
        match &spare.port {
            Some(port) => self.restore_port(target, port, |a| &mut a.spare_port).await,
            None => Ok(()),
        }
    }

    /// The old primary after promotion (`after_promotion`); audited.
    async fn dispose(&self, target: &str, svc: &Service) -> Result<(), String> {
        let how = svc.cfg.after_promotion;
        let primary = svc.lb.primary();
        match how {
            Disposition::Standby => {}
            Disposition::Quarantine | Disposition::Rebuild => svc
                .lb
                .set_state(primary, "maint")
                .await
                .map_err(|e| e.to_string())?,
        }
        match (how, &svc.cfg.port, &svc.bmc, &svc.cfg.system) {
            (Disposition::Quarantine, Some(port), ..) => {
                let steps = switch::port_down(port.if_index);
                self.set_port(target, port, steps, |a| &mut a.host_port)
                    .await?;
            }
            (Disposition::Rebuild, _, Some(bmc), Some(system)) => {
                let image = svc.cfg.rebuild_image.as_deref().unwrap_or(&self.cfg.image);
                bmc.provision(system, image)
                    .await
                    .map_err(|e| format!("rebuilding {target}: {e}"))?;
            }
            _ => {}
        }
        let record = json!({"target": target, "event": "old_primary", "disposition": format!("{how:?}").to_lowercase()});
        self.store
            .append_audit(crate::now_ms(), &record)
            .map_err(|e| e.to_string())
    }

    /// Take the shadow out of service and release its spare; `failed`
    /// sets the spare aside for the rest of the lifecycle (`Replace`).
    async fn revert(&self, target: &str, failed: bool) -> Result<(), String> {
        let svc = self.service(target)?;
        svc.lb.set_share(0).await.map_err(|e| e.to_string())?;
        self.mirror(svc, 0).await?;
        if let Some(c) = &svc.compare {
            c.set_shadow(None);
        }
        if let Some(k) = &svc.kube {
            k.cordon(k.node_of(target), false)
                .await
                .map_err(|e| e.to_string())?;
        }
        let Some(a) = self.assignment(target)? else {
            return Ok(());
        };
        if !a.spare.is_empty() {
            self.put_back(target, &a.spare, true).await?;
        }
        if !failed {
            // The lifecycle ends: its standbys go too.
            self.reconcile_standby(target, 0).await?;
        }
        if failed {
            self.set_aside(target)
        } else {
            self.save(target, None)
        }
    }

    /// The orchestrator moves the host's workloads (to the shadow it is
    /// told of); what the hook said goes to the audit log.
    async fn move_workloads(&self, target: &str) -> Result<(), String> {
        let svc = self.service(target)?;
        let cfg = &svc.cfg;
        let shadow = self
            .assignment(target)?
            .map(|a| a.spare)
            .unwrap_or_default();
        if let Some(k) = &svc.kube {
            let node = k.node_of(target);
            let report = k.drain(node).await.map_err(|e| e.to_string())?;
            let record = json!({
                "target": target, "event": "node_drained", "node": node,
                "evicted": report.evicted, "kept": report.kept,
                "budget_refusals": report.budget_refusals,
            });
            self.store
                .append_audit(crate::now_ms(), &record)
                .map_err(|e| e.to_string())?;
        }
        let Some(hook) = &cfg.hook else {
            return Ok(());
        };
        let said = migrate(hook, Migration::Drain, target, &shadow, &cfg.workloads)
            .await
            .map_err(|e| format!("moving workloads: {e}"))?;
        let record = json!({
            "target": target, "event": "workloads_moved", "shadow": shadow,
            "workloads": cfg.workloads, "hook_said": said,
        });
        self.store
            .append_audit(crate::now_ms(), &record)
            .map_err(|e| e.to_string())
    }

    /// The comparator's window as KPIs; a difference is audited.
    fn compared(&self, target: &str, c: &Comparator) -> Result<Kpi, String> {
        let s = c.take();
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let rate = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
        if let Some(last) = &s.last_mismatch {
            let record = json!({
                "target": target, "event": "mirror_mismatch", "compared": s.compared,
                "mismatched": s.mismatched, "last": last,
            });
            self.store
                .append_audit(crate::now_ms(), &record)
                .map_err(|e| e.to_string())?;
        }
        Ok(Kpi {
            requests: s.requests,
            error_rate: rate(s.errors, s.requests),
            p99_ms: s.shadow_p99_ms,
            lag_ms: 0.0,
            mismatch_rate: rate(s.mismatched, s.compared),
            primary_p99_ms: s.primary_p99_ms,
        })
    }

    /// Counters of the shadow in `backend` since the previous sample of
    /// the same kind; the first sample only sets the baseline.
    async fn delta(
        &self,
        target: &str,
        kind: &'static str,
        lb: &Haproxy,
        backend: &str,
        server: &str,
    ) -> Result<Option<Kpi>, String> {
        let now = lb
            .stats_of(backend, server)
            .await
            .map_err(|e| e.to_string())?;
        let mut samplers = self.samplers.lock().expect("poisoned");
        Ok(samplers
            .entry((target.to_owned(), kind))
            .or_default()
            .sample(now, std::time::Instant::now()))
    }
}

impl Actuator for FleetActuator {
    async fn act(&self, target: &str, action: Action, attempt: u32) -> Result<(), String> {
        let audit = json!({"target": target, "event": "executing", "action": format!("{action:?}"), "attempt": attempt});
        if let Err(e) = self.store.append_audit(crate::now_ms(), &audit) {
            tracing::error!(error = %e, "audit log");
        }
        match action {
            Action::Provision => self.provision(target, attempt).await,
            Action::Sync => match &self.service(target)?.rsync {
                Some(r) => r.snapshot().await.map(drop).map_err(|e| e.to_string()),
                None => Ok(()),
            },
            Action::Mirror { percent } => {
                let svc = self.service(target)?;
                if let Some(c) = &svc.compare {
                    c.take(); // the window starts with the mirroring
                }
                self.mirror(svc, percent).await
            }
            Action::SetWeight { percent } => {
                let svc = self.service(target)?;
                svc.lb.set_share(percent).await.map_err(|e| e.to_string())
            }
            Action::Promote => {
                let svc = self.service(target)?;
                svc.lb.set_share(100).await.map_err(|e| e.to_string())?;
                svc.lb
                    .set_state(svc.lb.primary(), "drain")
                    .await
                    .map_err(|e| e.to_string())?;
                self.mirror(svc, 0).await?;
                self.move_workloads(target).await?;
                self.dispose(target, svc).await
            }
            Action::Revert => self.revert(target, false).await,
            Action::Replace => self.revert(target, true).await,
        }
    }

    async fn standby(&self, target: &str, count: u8) -> Result<bool, String> {
        if !self.services.contains_key(target) {
            return Ok(true); // nothing is executed for it
        }
        self.reconcile_standby(target, count).await
    }

    async fn kpi(&self, target: &str, phase: &Phase) -> Result<Option<Kpi>, String> {
        let svc = self.service(target)?;
        let h = &svc.cfg.haproxy;
        match phase {
            Phase::Syncing { .. } => match &svc.rsync {
                Some(r) => {
                    r.sync_once().await.map_err(|e| e.to_string())?;
                    let lag = r.lag().await.map_err(|e| e.to_string())?;
                    Ok(Some(Kpi {
                        requests: 0,
                        error_rate: 0.0,
                        p99_ms: 0.0,
                        lag_ms: lag.lag_ms,
                        mismatch_rate: 0.0,
                        primary_p99_ms: 0.0,
                    }))
                }
                None => Ok(Some(Kpi {
                    requests: 0,
                    error_rate: 0.0,
                    p99_ms: 0.0,
                    lag_ms: 0.0,
                    mismatch_rate: 0.0,
                    primary_p99_ms: 0.0,
                })),
            },
            Phase::Mirroring => match (&svc.compare, &svc.mirror) {
                (Some(c), _) => Ok(Some(self.compared(target, c)?)),
                (None, Some((_, backend))) => {
                    self.delta(target, "mirror", &svc.lb, backend, &h.shadow)
                        .await
                }
                (None, None) => Ok(None),
            },
            Phase::Shifting { .. } => {
                let mut k = self
                    .delta(target, "live", &svc.lb, &h.backend, &h.shadow)
                    .await?;
                if let (Some(k), Some(r)) = (k.as_mut(), &svc.rsync) {
                    r.sync_once().await.map_err(|e| e.to_string())?;
                    k.lag_ms = r.lag().await.map_err(|e| e.to_string())?.lag_ms;
                }
                Ok(k)
            }
            _ => Ok(None),
        }
    }
}
