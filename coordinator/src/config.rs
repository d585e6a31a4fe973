//! Coordinator configuration: TOML wire form ([`RawConfig`], `deny_unknown_fields`,
//! named defaults) validated into [`Config`], which is always usable.

use crate::store::StoreConfig;
use serde::Deserialize;
use service::secret::KeyFile;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/umbra/coordinator";
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 16;
pub const DEFAULT_MAX_SAMPLES_PER_SECOND_PER_AGENT: u32 = 200_000;
pub const DEFAULT_MAX_SAMPLES_PER_BATCH: u32 = 200_000;
pub const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(60);

/// Invalid configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Secret(#[from] service::secret::SecretError),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub risk: RawRisk,
    #[serde(default)]
    pub shadow: RawShadow,
    #[serde(default)]
    pub learn: RawLearn,
    #[serde(default)]
    pub readiness: RawReadiness,
    /// `[paging]`: where pages go (none by default).
    #[serde(default)]
    pub paging: crate::paging::PagingConfig,
}

/// `[shadow]`: the shadow lifecycle (engine policy and safety rails).
/// `execute` acts, and needs `[shadow.execute]` (spares, services).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShadow {
    #[serde(default = "default_shadow_mode")]
    pub mode: crate::shadow::runtime::Mode,
    /// P(fail within 7 d) at which a host is at risk.
    pub enter: Option<f64>,
    /// P(7 d) under which it is healthy again.
    pub exit: Option<f64>,
    /// Risk runs in a row at or above `enter` that confirm it.
    pub confirm: Option<u32>,
    /// P(fail within 24 h) that confirms at once.
    pub critical: Option<f64>,
    pub mirror_percent: Option<u8>,
    /// Traffic steps, percent, ending at 100.
    pub ramp: Option<Vec<u8>>,
    #[serde(default, with = "humantime_serde")]
    pub min_dwell: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub action_timeout: Option<Duration>,
    pub max_concurrent_per_domain: Option<usize>,
    pub max_fraction_per_domain: Option<f64>,
    pub max_starts_per_hour: Option<usize>,
    pub pause_unhealthy_fraction: Option<f64>,
    pub max_confirmed_fraction: Option<f64>,
    /// Wait for `umbractl approve HOST` before a confirmed host starts.
    pub manual_approval: Option<bool>,
    /// Other spares tried in a lifecycle after one fails (self-healing).
    pub spare_retries: Option<u32>,
    /// `[[shadow.standby]]`: hot standby spares by P(fail 24 h).
    pub standby: Option<Vec<crate::shadow::engine::StandbyTier>>,
    /// What execute mode acts on: spares and protected services.
    pub execute: Option<crate::shadow::actuator::ExecuteConfig>,
    /// An agent silent this long means its host failed (default 2m).
    #[serde(default, with = "humantime_serde")]
    pub unreachable_after: Option<Duration>,
}

impl Default for RawShadow {
    fn default() -> Self {
        toml::from_str("").expect("all shadow fields have defaults")
    }
}

const fn default_shadow_mode() -> crate::shadow::runtime::Mode {
    crate::shadow::runtime::Mode::DryRun
}

impl RawShadow {
    fn settings(self) -> Result<crate::shadow::runtime::Settings, ConfigError> {
        use crate::shadow::{engine::Policy, rails::Rails};
        let d = Policy::default();
        let ms = |v: Option<Duration>, def: i64| {
            v.map_or(def, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        };
        let policy = Policy {
            enter: self.enter.unwrap_or(d.enter),
            exit: self.exit.unwrap_or(d.exit),
            confirm: self.confirm.unwrap_or(d.confirm),
            critical: self.critical.unwrap_or(d.critical),
            mirror_percent: self.mirror_percent.unwrap_or(d.mirror_percent),
            ramp: self.ramp.unwrap_or(d.ramp),
            min_dwell_ms: ms(self.min_dwell, d.min_dwell_ms),
            action_timeout_ms: ms(self.action_timeout, d.action_timeout_ms),
            manual_approval: self.manual_approval.unwrap_or(d.manual_approval),
            spare_retries: self.spare_retries.unwrap_or(d.spare_retries),
            standby: self.standby.unwrap_or(d.standby),
            ..d
        };
        policy
            .validate()
            .map_err(|m| ConfigError::Invalid(format!("shadow: {m}")))?;
        let r = Rails::default();
        let rails = Rails {
            max_concurrent_per_domain: self
                .max_concurrent_per_domain
                .unwrap_or(r.max_concurrent_per_domain),
            max_fraction_per_domain: self
                .max_fraction_per_domain
                .unwrap_or(r.max_fraction_per_domain),
            max_starts_per_window: self.max_starts_per_hour.unwrap_or(r.max_starts_per_window),
            window_ms: 3_600_000,
            pause_unhealthy_fraction: self
                .pause_unhealthy_fraction
                .unwrap_or(r.pause_unhealthy_fraction),
            max_confirmed_fraction: self
                .max_confirmed_fraction
                .unwrap_or(r.max_confirmed_fraction),
        };
        for (name, f) in [
            ("max_fraction_per_domain", rails.max_fraction_per_domain),
            ("pause_unhealthy_fraction", rails.pause_unhealthy_fraction),
            ("max_confirmed_fraction", rails.max_confirmed_fraction),
        ] {
            if f.is_nan() || f <= 0.0 || f > 1.0 {
                return Err(ConfigError::Invalid(format!(
                    "shadow.{name} = {f}: want (0, 1]"
                )));
            }
        }
        Ok(crate::shadow::runtime::Settings {
            mode: self.mode,
            policy,
            rails,
            holdout_percent: 0, // `[learn]`'s, set by the caller
            unreachable_after_ms: ms(
                self.unreachable_after,
                crate::shadow::runtime::DEFAULT_UNREACHABLE_AFTER_MS,
            ),
        })
    }
}

/// `[risk]`: failure-risk inference over the stored series.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRisk {
    /// How often every disk is scored with the active `failure/disk` model
    /// (a newly activated model is used from the next run on).
    #[serde(default = "default_risk_interval", with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for RawRisk {
    fn default() -> Self {
        RawRisk {
            interval: default_risk_interval(),
        }
    }
}

const fn default_risk_interval() -> Duration {
    Duration::from_secs(600)
}

/// `[learn]`: the feedback loop (see [`crate::learn`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLearn {
    /// Retrain this often ("0s": only on `umbractl retrain`). Default 7 days.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Hosts never mitigated by shadows, percent (0..=20). Default 2.
    pub holdout_percent: Option<u8>,
    /// Labelled failures needed to train. Default 5.
    pub min_failures: Option<usize>,
    /// Precision the tuned threshold must reach (0..1]. Default 0.5.
    pub target_precision: Option<f64>,
    /// Use the active model's tuned threshold as `[shadow] enter`. Default false.
    pub apply_threshold: Option<bool>,
    /// `if_better` (default), `always` or `never`.
    pub activate: Option<crate::learn::Activate>,
    /// Days of history per disk (14..=3650). Default 180.
    pub max_days: Option<usize>,
    pub seed: Option<u64>,
}

impl RawLearn {
    fn settings(self) -> Result<crate::learn::Settings, ConfigError> {
        let d = crate::learn::Settings::default();
        let s = crate::learn::Settings {
            interval: match self.interval {
                Some(i) if i.is_zero() => None,
                Some(i) => Some(i),
                None => d.interval,
            },
            holdout_percent: self.holdout_percent.unwrap_or(d.holdout_percent),
            min_failures: self.min_failures.unwrap_or(d.min_failures),
            target_precision: self.target_precision.unwrap_or(d.target_precision),
            apply_threshold: self.apply_threshold.unwrap_or(d.apply_threshold),
            activate: self.activate.unwrap_or(d.activate),
            max_days: self.max_days.unwrap_or(d.max_days),
            seed: self.seed.unwrap_or(d.seed),
        };
        let bad = |m: &str| Err(ConfigError::Invalid(format!("learn: {m}")));
        if s.holdout_percent > 20 {
            return bad("holdout_percent must be 0..=20 (a holdout is a small control group)");
        }
        if !(s.target_precision > 0.0 && s.target_precision <= 1.0) {
            return bad("target_precision must be in (0, 1]");
        }
        if !(14..=3650).contains(&s.max_days) {
            return bad("max_days must be 14..=3650");
        }
        if s.min_failures == 0 {
            return bad("min_failures must be >= 1");
        }
        if s.interval.is_some_and(|i| i < Duration::from_secs(3600)) {
            return bad("interval must be at least 1h (or \"0s\": on request only)");
        }
        Ok(s)
    }
}

/// `[readiness]`: the migration-readiness weights (see [`crate::readiness`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReadiness {
    pub risk_weight: Option<f64>,
    pub utilisation_weight: Option<f64>,
    pub history_weight: Option<f64>,
    pub max_failure_rate: Option<f64>,
}

impl RawReadiness {
    fn weights(self) -> Result<crate::readiness::Weights, ConfigError> {
        let d = crate::readiness::Weights::default();
        let w = crate::readiness::Weights {
            risk: self.risk_weight.unwrap_or(d.risk),
            utilisation: self.utilisation_weight.unwrap_or(d.utilisation),
            history: self.history_weight.unwrap_or(d.history),
            max_failure_rate: self.max_failure_rate.unwrap_or(d.max_failure_rate),
        };
        w.validate()
            .map_err(|m| ConfigError::Invalid(format!("readiness: {m}")))?;
        Ok(w)
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Serve `/metrics` here (e.g. `127.0.0.1:9648`); absent: no listener.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address of the gRPC listener (telemetry ingest and fleet API).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Name reported to agents in `Welcome`.
    #[serde(default)]
    pub id: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            id: None,
        }
    }
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM server certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key: a path (not readable by every user) or
    /// `{ credential = "coordinator.key" }` (systemd LoadCredential=).
    pub key: Option<KeyFile>,
    /// PEM CA bundle for client certificates: when set, every client must
    /// present a certificate signed by it (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// Serve without TLS. Only allowed on a loopback address, for demos.
    #[serde(default)]
    pub insecure_plaintext: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_window", with = "humantime_serde")]
    pub chunk_window: Duration,
    #[serde(default = "default_seal_grace", with = "humantime_serde")]
    pub seal_grace: Duration,
    /// fsync the RocksDB WAL before acknowledging a batch.
    #[serde(default = "default_true")]
    pub sync_writes: bool,
    #[serde(default = "default_raw_retention", with = "humantime_serde")]
    pub raw_retention: Duration,
    #[serde(default = "default_rollup_1m_retention", with = "humantime_serde")]
    pub rollup_1m_retention: Duration,
    #[serde(default = "default_rollup_1h_retention", with = "humantime_serde")]
    pub rollup_1h_retention: Duration,
    #[serde(default = "default_compaction_interval", with = "humantime_serde")]
    pub compaction_interval: Duration,
}

impl Default for RawStorage {
    fn default() -> Self {
        toml::from_str("").expect("all storage fields have defaults")
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}
fn default_window() -> Duration {
    StoreConfig::default().window
}
fn default_seal_grace() -> Duration {
    StoreConfig::default().seal_grace
}
const fn default_true() -> bool {
    true
}
fn default_raw_retention() -> Duration {
    StoreConfig::default().raw_retention
}
fn default_rollup_1m_retention() -> Duration {
    StoreConfig::default().rollup_1m_retention
}
fn default_rollup_1h_retention() -> Duration {
    StoreConfig::default().rollup_1h_retention
}
const fn default_compaction_interval() -> Duration {
    DEFAULT_COMPACTION_INTERVAL
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest accepted gRPC message, bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// HTTP/2 concurrent streams per connection.
    #[serde(default = "default_max_streams")]
    pub max_concurrent_streams_per_connection: u32,
    /// Token-bucket rate per agent; faster agents are slowed down (back-pressure), not dropped.
    #[serde(default = "default_rate")]
    pub max_samples_per_second_per_agent: u32,
    /// Larger batches are refused as malformed.
    #[serde(default = "default_batch")]
    pub max_samples_per_batch: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        toml::from_str("").expect("all limit fields have defaults")
    }
}

const fn default_max_message_bytes() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}
const fn default_max_streams() -> u32 {
    DEFAULT_MAX_STREAMS_PER_CONNECTION
}
const fn default_rate() -> u32 {
    DEFAULT_MAX_SAMPLES_PER_SECOND_PER_AGENT
}
const fn default_batch() -> u32 {
    DEFAULT_MAX_SAMPLES_PER_BATCH
}

/// TLS mode of the listener.
#[derive(Debug, Clone)]
pub enum Tls {
    /// Loopback only; logged loudly at start.
    InsecurePlaintext,
    Server {
        cert: PathBuf,
        key: KeyFile,
        client_ca: Option<PathBuf>,
    },
}

/// Validated coordinator configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub id: String,
    pub tls: Tls,
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub compaction_interval: Duration,
    pub max_message_bytes: usize,
    pub max_streams_per_connection: u32,
    pub max_samples_per_second_per_agent: u32,
    pub max_samples_per_batch: u32,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    pub risk_interval: Duration,
    pub shadow: crate::shadow::runtime::Settings,
    /// `[shadow.execute]`, present exactly when the mode is `execute`.
    pub shadow_execute: Option<crate::shadow::actuator::ExecuteConfig>,
    pub learn: crate::learn::Settings,
    pub readiness: crate::readiness::Weights,
    pub paging: crate::paging::PagingConfig,
}

impl RawConfig {
    pub fn parse(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_owned(),
            source,
        })
    }

    pub fn validate(self) -> Result<Config, ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let listen: SocketAddr = match self.server.listen.parse() {
            Ok(a) => a,
            Err(e) => return bad(format!("server.listen {:?}: {e}", self.server.listen)),
        };
        let tls = match (self.tls.insecure_plaintext, self.tls.cert, self.tls.key) {
            (true, None, None) => {
                if !listen.ip().is_loopback() {
                    return bad(format!(
                        "tls.insecure_plaintext is only allowed on a loopback address, not {listen}"
                    ));
                }
                Tls::InsecurePlaintext
            }
            (true, _, _) => {
                return bad("tls.insecure_plaintext conflicts with tls.cert/tls.key".into())
            }
            (false, Some(cert), Some(key)) => {
                for p in [Some(&cert), self.tls.client_ca.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    if !p.is_file() {
                        return bad(format!("TLS file {} does not exist", p.display()));
                    }
                }
                key.check()?;
                Tls::Server {
                    cert,
                    key,
                    client_ca: self.tls.client_ca,
                }
            }
            (false, _, _) => {
                return bad(
                    "set tls.cert and tls.key (or tls.insecure_plaintext = true on loopback)"
                        .into(),
                )
            }
        };
        let s = self.storage;
        for (name, d) in [
            ("storage.chunk_window", s.chunk_window),
            ("storage.raw_retention", s.raw_retention),
            ("storage.compaction_interval", s.compaction_interval),
            ("risk.interval", self.risk.interval),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be > 0"));
            }
        }
        if s.raw_retention < s.chunk_window {
            return bad("storage.raw_retention must be at least one chunk_window".into());
        }
        let l = self.limits;
        if l.max_message_bytes < 1024 || l.max_concurrent_streams_per_connection == 0 {
            return bad(
                "limits: max_message_bytes >= 1024 and max_concurrent_streams_per_connection >= 1"
                    .into(),
            );
        }
        if l.max_samples_per_second_per_agent == 0 || l.max_samples_per_batch == 0 {
            return bad("limits: sample rates and batch sizes must be >= 1".into());
        }
        let learn = self.learn.settings()?;
        let mut raw_shadow = self.shadow;
        let shadow_execute = raw_shadow.execute.take();
        let mut shadow = raw_shadow.settings()?;
        shadow.holdout_percent = learn.holdout_percent;
        match (shadow.mode, &shadow_execute) {
            (crate::shadow::runtime::Mode::Execute, None) => {
                return bad(
                    "shadow.mode = \"execute\" needs [shadow.execute] (spares and services)".into(),
                );
            }
            (crate::shadow::runtime::Mode::Execute, Some(e)) => {
                e.validate()
                    .map_err(|m| ConfigError::Invalid(format!("shadow.execute: {m}")))?;
            }
            (_, Some(_)) => {
                return bad("[shadow.execute] is only read in mode \"execute\"".into());
            }
            (_, None) => {}
        }
        Ok(Config {
            listen,
            id: self
                .server
                .id
                .unwrap_or_else(|| format!("umbra-coordinator@{listen}")),
            tls,
            data_dir: s.data_dir,
            store: StoreConfig {
                window: s.chunk_window,
                seal_grace: s.seal_grace,
                sync_writes: s.sync_writes,
                raw_retention: s.raw_retention,
                rollup_1m_retention: s.rollup_1m_retention,
                rollup_1h_retention: s.rollup_1h_retention,
            },
            compaction_interval: s.compaction_interval,
            max_message_bytes: l.max_message_bytes,
            max_streams_per_connection: l.max_concurrent_streams_per_connection,
            max_samples_per_second_per_agent: l.max_samples_per_second_per_agent,
            max_samples_per_batch: l.max_samples_per_batch,
            metrics_listen: self.metrics.listen,
            risk_interval: self.risk.interval,
            shadow,
            shadow_execute,
            learn,
            readiness: self.readiness.weights()?,
            paging: {
                self.paging.validate().map_err(ConfigError::Invalid)?;
                self.paging
            },
        })
    }
}

/// Read, parse and validate a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let cfg = RawConfig::parse(&text, &path.display().to_string())?.validate()?;
    // A routing key or token written into the config makes it a secret.
    if cfg.paging.has_inline_secret() {
        service::secret::check_private(path)?;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packaged_config_parses_and_validates_except_tls_files() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packaging/config/coordinator.toml"
        );
        use std::os::unix::fs::PermissionsExt as _;
        // The key is a systemd credential (LoadCredential= in the unit).
        let creds = tempfile::tempdir().unwrap();
        let key = creds.path().join("coordinator.key");
        std::fs::write(&key, "KEY").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        std::env::set_var(service::secret::CREDENTIALS_DIRECTORY, creds.path());
        let raw = RawConfig::parse(&std::fs::read_to_string(path).unwrap(), path).unwrap();
        std::env::remove_var(service::secret::CREDENTIALS_DIRECTORY);
        assert_eq!(raw.metrics.listen, Some("0.0.0.0:9648".parse().unwrap()));
        // The packaged file points at /etc/umbra/tls/*, absent here: exactly that must be the complaint.
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains("/etc/umbra/tls/"), "{err}");
    }

    /// The commented `[shadow.execute]` example, uncommented, is a valid
    /// execute configuration (spares, services, switch ports).
    #[test]
    fn the_packaged_execute_example_parses_and_validates() {
        let text = include_str!("../../packaging/config/coordinator.toml");
        let example: String = text
            .lines()
            .skip_while(|l| *l != "# [shadow.execute]")
            .skip(1)
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        assert!(example.contains("[[shadow.execute.spares]]"), "{example}");
        let creds = tempfile::tempdir().unwrap();
        for name in ["bmc-spare-r9-01", "snmp-write-tor-9", "snmp-write-tor-1"] {
            std::fs::write(creds.path().join(name), "s3cret").unwrap();
        }
        std::env::set_var(service::secret::CREDENTIALS_DIRECTORY, creds.path());
        let wrapped = format!("[shadow.execute]\n{example}");
        let table: toml::Table = toml::from_str(&wrapped).unwrap();
        let exec: crate::shadow::actuator::ExecuteConfig =
            table["shadow"]["execute"].clone().try_into().unwrap();
        std::env::remove_var(service::secret::CREDENTIALS_DIRECTORY);
        exec.validate().unwrap();
        assert_eq!(exec.switches.len(), 2);
        assert_eq!(exec.spares[0].port.as_ref().unwrap().if_index, 17);
        assert_eq!(exec.services[0].vlan, Some(120));
        // A port on a switch that is not configured is refused.
        let mut broken = exec.clone();
        broken.switches.remove("tor-1");
        let e = broken.validate().unwrap_err();
        assert!(e.contains("tor-1"), "{e}");
    }

    #[test]
    fn the_packaged_shadow_section_states_the_defaults_and_bad_ones_are_refused() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packaging/config/coordinator.toml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let table = toml::from_str::<toml::Table>(&text).unwrap();
        let section = |name: &str| table[name].clone();
        let packaged: RawShadow = section("shadow").try_into().unwrap();
        let (p, d) = (
            packaged.settings().unwrap(),
            RawShadow::default().settings().unwrap(),
        );
        assert_eq!((p.mode, &p.policy, &p.rails), (d.mode, &d.policy, &d.rails));
        // [paging] states its defaults and pages no one until told to.
        let paging: crate::paging::PagingConfig = section("paging").try_into().unwrap();
        let learn: RawLearn = section("learn").try_into().unwrap();
        assert_eq!(learn.settings().unwrap(), crate::learn::Settings::default());
        for bad in [
            "holdout_percent = 50",
            "target_precision = 0.0",
            "max_days = 3",
            "min_failures = 0",
            "interval = \"10m\"",
            "activate = \"sometimes\"",
        ] {
            let r = toml::from_str::<RawLearn>(bad)
                .map_err(|e| e.to_string())
                .and_then(|r| r.settings().map_err(|e| e.to_string()));
            assert!(r.is_err(), "{bad}");
        }
        let readiness: RawReadiness = section("readiness").try_into().unwrap();
        assert_eq!(
            readiness.weights().unwrap(),
            crate::readiness::Weights::default()
        );
        assert!(toml::from_str::<RawReadiness>("risk_weight = -1.0")
            .unwrap()
            .weights()
            .is_err());
        let on_request: RawLearn = toml::from_str("interval = \"0s\"").unwrap();
        assert_eq!(on_request.settings().unwrap().interval, None);
        let default = crate::paging::PagingConfig::default();
        assert!(paging.receivers.is_empty());
        assert_eq!(
            (paging.timeout, paging.retries, &paging.ca_file),
            (default.timeout, default.retries, &default.ca_file)
        );
        for bad in [
            "exit = 0.6",
            "ramp = [50, 10, 100]",
            "mode = \"auto\"",
            "max_fraction_per_domain = 0.0",
            "max_confirmed_fraction = nan",
        ] {
            let r = toml::from_str::<RawShadow>(bad)
                .map_err(|e| e.to_string())
                .and_then(|r| r.settings().map_err(|e| e.to_string()));
            assert!(r.is_err(), "{bad}");
        }
    }

    #[test]
    fn execute_mode_needs_its_section_and_the_section_needs_the_mode() {
        let base = "[server]\nlisten = \"127.0.0.1:7443\"\n[tls]\ninsecure_plaintext = true\n";
        let execute = "[shadow.execute]\nimage = \"http://img/p.iso\"\n\
            [[shadow.execute.spares]]\nid = \"spare-02\"\nsystem = \"spare-02\"\nrack = \"r9\"\naddress = \"10.0.9.2:8080\"\n\
            [shadow.execute.spares.bmc]\nurl = \"https://bmc-spare-02\"\nusername = \"umbra\"\npassword = \"not-a-real-password\"\n\
            [[shadow.execute.services]]\nhost = \"web-01\"\nmirror_backend = \"mirror\"\n\
            haproxy = { socket = \"/run/haproxy/admin.sock\", backend = \"app\", primary = \"web01\", shadow = \"shadow\" }\n\
            mirror = { map = \"/etc/haproxy/umbra-mirror.map\" }\n";
        let parse = |text: &str| RawConfig::parse(text, "t").and_then(RawConfig::validate);
        let ok = parse(&format!("{base}[shadow]\nmode = \"execute\"\n{execute}")).unwrap();
        let e = ok.shadow_execute.expect("kept");
        assert_eq!(e.spares[0].address.port(), 8080);
        assert_eq!(e.services[0].mirror_backend.as_deref(), Some("mirror"));
        assert_eq!(ok.shadow.mode, crate::shadow::runtime::Mode::Execute);
        let missing = parse(&format!("{base}[shadow]\nmode = \"execute\"\n")).unwrap_err();
        assert!(
            missing.to_string().contains("needs [shadow.execute]"),
            "{missing}"
        );
        let idle = parse(&format!("{base}[shadow]\nmode = \"dry-run\"\n{execute}")).unwrap_err();
        assert!(idle.to_string().contains("only read in mode"), "{idle}");
        let half = execute.replace("mirror_backend = \"mirror\"\n", "");
        let half = parse(&format!("{base}[shadow]\nmode = \"execute\"\n{half}")).unwrap_err();
        assert!(half.to_string().contains("go together"), "{half}");
    }

    #[test]
    fn demo_config_validates() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packaging/config/coordinator-demo.toml"
        );
        let cfg = load(Path::new(path)).unwrap();
        assert!(matches!(cfg.tls, Tls::InsecurePlaintext));
    }

    #[test]
    fn plaintext_refused_off_loopback() {
        let raw = RawConfig::parse(
            "[server]\nlisten = \"0.0.0.0:7443\"\n[tls]\ninsecure_plaintext = true\n",
            "t",
        )
        .unwrap();
        assert!(raw.validate().unwrap_err().to_string().contains("loopback"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = RawConfig::parse("[storage]\nretention = \"1d\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention"), "{err}");
    }

    #[test]
    fn missing_tls_is_an_error_not_a_silent_plaintext() {
        let raw = RawConfig::parse("", "t").unwrap();
        assert!(raw.validate().unwrap_err().to_string().contains("tls.cert"));
    }
}
