//! Agent configuration: TOML wire form ([`RawConfig`], `deny_unknown_fields`,
//! named defaults) validated into [`Config`].

use crate::collect::CollectorConfig;
use crate::spool::SpoolConfig;
use serde::Deserialize;
use service::secret::KeyFile;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/umbra/agent";
pub const DEFAULT_HWPROFILES_DIR: &str = "/usr/share/umbra/hwprofiles";
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);

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
    #[error("hardware profile: {0}")]
    Profile(#[from] hwprofiles::LoadError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Secret(#[from] service::secret::SecretError),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Stable host identity; defaults to the hostname.
    pub host_id: Option<String>,
    /// Hardware profile id (`<vendor>/<model>`) of this host.
    pub hwprofile: String,
    /// Extra profile directory (the built-in profiles are always available).
    #[serde(default = "default_hwprofiles_dir")]
    pub hwprofiles_dir: PathBuf,
    /// Agent state: spool and series catalog.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub failure_domain: RawFailureDomain,
    pub coordinator: RawCoordinator,
    #[serde(default)]
    pub spool: RawSpool,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(rename = "collector")]
    pub collectors: Vec<CollectorConfig>,
}

fn default_hwprofiles_dir() -> PathBuf {
    PathBuf::from(DEFAULT_HWPROFILES_DIR)
}
fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailureDomain {
    #[serde(default)]
    pub site: String,
    #[serde(default)]
    pub rack: String,
    #[serde(default)]
    pub pdu: String,
    #[serde(default)]
    pub tor: String,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Serve `/metrics` here (e.g. `127.0.0.1:9647`); absent: no listener.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoordinator {
    /// `https://host:7443`, or `http://127.0.0.1:7443` with `insecure_plaintext`.
    pub url: String,
    /// CA bundle that signed the coordinator certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub cert: Option<PathBuf>,
    /// A path, or `{ credential = "agent.key" }` (systemd LoadCredential=).
    pub key: Option<KeyFile>,
    /// Name to verify in the coordinator's certificate (default: URL host).
    pub server_name: Option<String>,
    /// Allow `http://` (loopback only).
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// Batches sent but not yet acknowledged.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Upper bound of the reconnect backoff.
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// On shutdown, keep delivering the backlog this long.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

const fn default_in_flight() -> usize {
    DEFAULT_MAX_IN_FLIGHT
}
const fn default_backoff_max() -> Duration {
    DEFAULT_BACKOFF_MAX
}
const fn default_drain() -> Duration {
    DEFAULT_DRAIN_TIMEOUT
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    /// Disk budget; when full the oldest batches are dropped (and counted).
    #[serde(default = "default_spool_max")]
    pub max_bytes: u64,
    #[serde(default = "default_segment")]
    pub segment_bytes: u64,
    /// Make batches survive power loss. Process crashes are safe either way.
    #[serde(default = "default_true")]
    pub fsync: bool,
    /// A batch the coordinator acknowledges within this long is never
    /// fsynced (the coordinator holds it durably); otherwise it is fsynced
    /// this long after it was written. "0s" fsyncs every batch.
    #[serde(default = "default_fsync_delay", with = "humantime_serde")]
    pub fsync_delay: Duration,
}

impl Default for RawSpool {
    fn default() -> Self {
        RawSpool {
            max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: true,
            fsync_delay: default_fsync_delay(),
        }
    }
}

const fn default_spool_max() -> u64 {
    DEFAULT_SPOOL_MAX_BYTES
}
const fn default_segment() -> u64 {
    DEFAULT_SEGMENT_BYTES
}
const fn default_fsync_delay() -> Duration {
    Duration::from_secs(1)
}
const fn default_true() -> bool {
    true
}

/// TLS settings of the uplink.
#[derive(Debug, Clone)]
pub enum UplinkTls {
    InsecurePlaintext,
    Tls {
        ca: Option<PathBuf>,
        identity: Option<(PathBuf, KeyFile)>,
        server_name: Option<String>,
    },
}

/// Validated uplink settings.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub url: String,
    pub tls: UplinkTls,
    pub max_in_flight: usize,
    pub backoff_max: Duration,
    pub drain_timeout: Duration,
}

/// Validated agent configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub host_id: String,
    pub profile: hwprofiles::Profile,
    pub state_dir: PathBuf,
    pub failure_domain: RawFailureDomain,
    pub uplink: UplinkConfig,
    pub spool: SpoolConfig,
    pub collectors: Vec<CollectorConfig>,
    /// Where `/metrics` is served, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Config {
    pub fn spool_dir(&self) -> PathBuf {
        self.state_dir.join("spool")
    }
}

/// Find a profile by id among the built-ins and `dir` (if it exists).
pub fn find_profile(id: &str, dir: &Path) -> Result<hwprofiles::Profile, ConfigError> {
    let builtin = hwprofiles::parse(hwprofiles::builtin::SIM_1U, "builtin:sim-1u")?;
    if builtin.id == id {
        return Ok(builtin);
    }
    if dir.is_dir() {
        for (_, p) in hwprofiles::load_dir(dir)? {
            if p.id == id {
                return Ok(p);
            }
        }
    }
    Err(ConfigError::Invalid(format!(
        "hardware profile {id:?} not found (built-in or under {})",
        dir.display()
    )))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
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
        let host_id = self.host_id.unwrap_or_else(hostname);
        if host_id.is_empty() || host_id.len() > 253 || host_id.contains('\0') {
            return bad("host_id must be 1..=253 bytes (or the hostname must be set)".into());
        }
        let profile = find_profile(&self.hwprofile, &self.hwprofiles_dir)?;
        if self.collectors.is_empty() {
            return bad("at least one [[collector]] is required".into());
        }
        for c in &self.collectors {
            c.validate(&profile).map_err(ConfigError::Invalid)?;
        }
        let c = self.coordinator;
        let tls = if c.insecure_plaintext {
            let loopback = ["http://127.", "http://localhost:", "http://[::1]:"]
                .iter()
                .any(|p| c.url.starts_with(p));
            if !loopback {
                return bad(format!(
                    "coordinator.insecure_plaintext needs an http:// loopback URL, not {:?}",
                    c.url
                ));
            }
            UplinkTls::InsecurePlaintext
        } else {
            if !c.url.starts_with("https://") {
                return bad(format!(
                    "coordinator.url {:?} must be https:// (or set insecure_plaintext = true on loopback)",
                    c.url
                ));
            }
            let identity = match (c.cert, c.key) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => return bad("coordinator.cert and coordinator.key go together".into()),
            };
            for p in c.ca.iter().chain(identity.iter().map(|(cert, _)| cert)) {
                if !p.is_file() {
                    return bad(format!("TLS file {} does not exist", p.display()));
                }
            }
            if let Some((_, key)) = &identity {
                key.check()?;
            }
            UplinkTls::Tls {
                ca: c.ca,
                identity,
                server_name: c.server_name,
            }
        };
        if c.max_in_flight == 0 || c.backoff_max.is_zero() {
            return bad("coordinator.max_in_flight and backoff_max must be > 0".into());
        }
        let s = self.spool;
        if s.segment_bytes < 4096 || s.max_bytes < 2 * s.segment_bytes {
            return bad("spool: segment_bytes >= 4096 and max_bytes >= 2 * segment_bytes".into());
        }
        Ok(Config {
            host_id,
            profile,
            state_dir: self.state_dir,
            failure_domain: self.failure_domain,
            uplink: UplinkConfig {
                url: c.url,
                tls,
                max_in_flight: c.max_in_flight,
                backoff_max: c.backoff_max,
                drain_timeout: c.drain_timeout,
            },
            spool: SpoolConfig {
                max_bytes: s.max_bytes,
                segment_bytes: s.segment_bytes,
                fsync: s.fsync,
                fsync_delay: s.fsync_delay,
            },
            collectors: self.collectors,
            metrics_listen: self.metrics.listen,
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
    // A password written into the config makes the config a secret.
    if cfg
        .collectors
        .iter()
        .any(CollectorConfig::has_inline_secret)
    {
        service::secret::check_private(path)?;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packaged(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/config")
            .join(name)
    }

    #[test]
    fn demo_config_validates() {
        let cfg = load(&packaged("agent-demo.toml")).unwrap();
        assert_eq!(cfg.profile.id, "umbra/sim-1u");
        assert!(matches!(cfg.uplink.tls, UplinkTls::InsecurePlaintext));
        assert_eq!(cfg.collectors.len(), 2);
    }

    #[test]
    fn packaged_config_parses_and_only_lacks_tls_files() {
        use std::os::unix::fs::PermissionsExt as _;
        // The packaged key is a systemd credential: without the unit's
        // $CREDENTIALS_DIRECTORY that is the complaint...
        std::env::remove_var(service::secret::CREDENTIALS_DIRECTORY);
        let text = std::fs::read_to_string(packaged("agent.toml")).unwrap();
        let err = RawConfig::parse(&text, "agent.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("CREDENTIALS_DIRECTORY is not set"), "{err}");
        // ...and with it, only the certificates under /etc/umbra/tls are missing.
        let creds = tempfile::tempdir().unwrap();
        let key = creds.path().join("agent.key");
        std::fs::write(&key, "KEY").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        std::env::set_var(service::secret::CREDENTIALS_DIRECTORY, creds.path());
        let raw = RawConfig::parse(&text, "agent.toml").unwrap();
        std::env::remove_var(service::secret::CREDENTIALS_DIRECTORY);
        assert_eq!(raw.metrics.listen, Some("0.0.0.0:9647".parse().unwrap()));
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains("/etc/umbra/tls/"), "{err}");
    }

    #[test]
    fn an_inline_password_needs_a_private_config() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        let text = format!(
            "hwprofile = \"umbra/sim-1u\"\nstate_dir = {:?}\n[coordinator]\nurl = \"http://127.0.0.1:1\"\ninsecure_plaintext = true\n[[collector]]\nprotocol = \"ipmi\"\ndevice = \"bmc\"\ntarget = \"127.0.0.1:623\"\nuser = \"u\"\npassword = \"inline-secret\"\n",
            dir.path()
        );
        std::fs::write(&path, &text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("readable by every user"), "{err}");
        assert!(
            !err.contains("inline-secret"),
            "the error leaks the secret: {err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        load(&path).unwrap();
        // The same password from a private file: the config may be public.
        let pw = dir.path().join("bmc.pw");
        std::fs::write(&pw, "from-file\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            &path,
            text.replace("\"inline-secret\"", &format!("{{ file = {pw:?} }}")),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = load(&path).unwrap();
        let CollectorConfig::Ipmi(c) = &cfg.collectors[0] else {
            panic!("not ipmi")
        };
        assert_eq!(c.password.expose(), "from-file");
    }

    #[test]
    fn unknown_collector_field_is_rejected() {
        let text = "hwprofile = \"umbra/sim-1u\"\n[coordinator]\nurl = \"http://127.0.0.1:1\"\ninsecure_plaintext = true\n[[collector]]\nprotocol = \"sim\"\nintervall = \"1s\"\n";
        let err = RawConfig::parse(text, "t").unwrap_err().to_string();
        assert!(err.contains("intervall"), "{err}");
    }

    #[test]
    fn plaintext_only_on_loopback() {
        let text = "hwprofile = \"umbra/sim-1u\"\n[coordinator]\nurl = \"http://10.0.0.1:7443\"\ninsecure_plaintext = true\n[[collector]]\nprotocol = \"sim\"\n";
        let err = RawConfig::parse(text, "t")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("loopback"), "{err}");
    }

    #[test]
    fn unknown_profile_is_reported() {
        let text = "hwprofile = \"acme/nope\"\nhwprofiles_dir = \"/nonexistent\"\n[coordinator]\nurl = \"http://127.0.0.1:1\"\ninsecure_plaintext = true\n[[collector]]\nprotocol = \"sim\"\n";
        let err = RawConfig::parse(text, "t")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("acme/nope"), "{err}");
    }
}
