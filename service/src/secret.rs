//! Secrets in configuration: BMC and SNMP credentials, TLS private keys.
//!
//! A secret is written in a TOML config as one of
//!
//! ```toml
//! password = { credential = "bmc-node7" }     # systemd LoadCredential= (preferred)
//! password = { file = "/etc/umbra/secrets/node7" }
//! password = "inline"                          # only in a config no other user can read
//! ```
//!
//! Files and credentials are read when the config is loaded; a trailing
//! newline (as `echo` writes) is dropped. Neither a secret file nor a config
//! holding an inline secret may be readable by every user: the daemon
//! refuses to start and says which file and which `chmod` fixes it, the way
//! ssh treats private keys. Credentials live in systemd's private
//! `$CREDENTIALS_DIRECTORY` (mode 0400, owned by the service user), so the
//! config can stay world-readable.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Environment variable systemd sets for `LoadCredential=`/`SetCredential=`.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("{path} is readable by every user (mode {mode:04o}); run `chmod o-r {path}` or move the secret into a systemd credential")]
    WorldReadable { path: String, mode: u32 },
    #[error("credential {name:?}: ${CREDENTIALS_DIRECTORY} is not set (add LoadCredential={name}:/path to the unit, or use {{ file = \"/path\" }})")]
    NoCredentialsDirectory { name: String },
    #[error("credential name {0:?} must be a plain file name")]
    BadCredentialName(String),
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("a secret is a string or a table with exactly one of `file` or `credential`")]
    Shape,
    #[error("secret {path} is not valid UTF-8")]
    NotUtf8 { path: String },
}

/// Where a secret came from.
#[derive(Clone, PartialEq, Eq)]
pub enum Origin {
    /// The program's own default (e.g. community "public"): not a secret
    /// the operator wrote down.
    Default,
    Inline,
    File(PathBuf),
    Credential(String),
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::Inline => f.write_str("inline"),
            Origin::File(p) => write!(f, "file {}", p.display()),
            Origin::Credential(n) => write!(f, "credential {n}"),
        }
    }
}

/// A secret value. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    origin: Origin,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<redacted>, {:?})", self.origin)
    }
}

impl Secret {
    /// A built-in default value.
    pub fn default_value(v: &str) -> Secret {
        Secret {
            value: v.to_owned(),
            origin: Origin::Default,
        }
    }

    /// An inline value (tests and command-line tools).
    pub fn inline(v: impl Into<String>) -> Secret {
        Secret {
            value: v.into(),
            origin: Origin::Inline,
        }
    }

    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Written into the config itself (which then must be private).
    pub fn is_inline(&self) -> bool {
        self.origin == Origin::Inline
    }

    fn from_source(src: Source) -> Result<Secret, SecretError> {
        let (path, origin) = match src {
            Source::Inline(v) => {
                return Ok(Secret {
                    value: v,
                    origin: Origin::Inline,
                })
            }
            Source::File(p) => {
                check_private(&p)?;
                (p.clone(), Origin::File(p))
            }
            Source::Credential(name) => (credential_path(&name)?, Origin::Credential(name)),
        };
        let bytes = std::fs::read(&path).map_err(|e| SecretError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut value = String::from_utf8(bytes).map_err(|_| SecretError::NotUtf8 {
            path: path.display().to_string(),
        })?;
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        Ok(Secret { value, origin })
    }
}

/// A private key file: a path (`key = "/etc/umbra/tls/agent.key"`) or a
/// systemd credential (`key = { credential = "agent.key" }`). Only the
/// path is resolved at load; the daemon reads the key when it starts TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    path: PathBuf,
    credential: bool,
}

impl KeyFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For validation: the key must exist and, unless it is a systemd
    /// credential, must not be readable by every user.
    pub fn check(&self) -> Result<(), SecretError> {
        if !self.path.is_file() {
            return Err(SecretError::Read {
                path: self.path.display().to_string(),
                reason: "not a file".into(),
            });
        }
        if self.credential {
            Ok(())
        } else {
            check_private(&self.path)
        }
    }
}

impl From<PathBuf> for KeyFile {
    fn from(path: PathBuf) -> KeyFile {
        KeyFile {
            path,
            credential: false,
        }
    }
}

/// `Err` if every user may read `path` (mode `o+r`).
pub fn check_private(path: &Path) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|e| SecretError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o004 != 0 {
        return Err(SecretError::WorldReadable {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

fn credential_path(name: &str) -> Result<PathBuf, SecretError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(SecretError::BadCredentialName(name.to_owned()));
    }
    let dir = std::env::var_os(CREDENTIALS_DIRECTORY).ok_or_else(|| {
        SecretError::NoCredentialsDirectory {
            name: name.to_owned(),
        }
    })?;
    Ok(PathBuf::from(dir).join(name))
}

enum Source {
    Inline(String),
    File(PathBuf),
    Credential(String),
}

/// Reads a string (what the string means is the caller's: a value or a
/// path) or `{ file = ".." }` / `{ credential = ".." }`.
struct SourceVisitor;

impl<'de> Visitor<'de> for SourceVisitor {
    type Value = (Option<String>, Option<Source>);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(r#"a string, { file = "/path" } or { credential = "name" }"#)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok((Some(v.to_owned()), None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            let value: String = map.next_value()?;
            let src = match key.as_str() {
                "file" => Source::File(PathBuf::from(value)),
                "credential" => Source::Credential(value),
                other => return Err(de::Error::unknown_field(other, &["file", "credential"])),
            };
            if found.replace(src).is_some() {
                return Err(de::Error::custom(SecretError::Shape));
            }
        }
        found
            .map(|s| (None, Some(s)))
            .ok_or_else(|| de::Error::custom(SecretError::Shape))
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        let src = match d.deserialize_any(SourceVisitor)? {
            (Some(inline), _) => Source::Inline(inline),
            (None, Some(src)) => src,
            (None, None) => return Err(de::Error::custom(SecretError::Shape)),
        };
        Secret::from_source(src).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for KeyFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyFile, D::Error> {
        match d.deserialize_any(SourceVisitor)? {
            (Some(path), _) => Ok(KeyFile::from(PathBuf::from(path))),
            (None, Some(Source::File(path))) => Ok(KeyFile::from(path)),
            (None, Some(Source::Credential(name))) => Ok(KeyFile {
                path: credential_path(&name).map_err(de::Error::custom)?,
                credential: true,
            }),
            (None, Some(Source::Inline(_)) | None) => Err(de::Error::custom(SecretError::Shape)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[derive(Debug, Deserialize)]
    struct Cfg {
        password: Secret,
        key: Option<KeyFile>,
    }

    fn write(dir: &Path, name: &str, body: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn inline_file_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let c: Cfg = toml::from_str("password = \"s3cret\"").unwrap();
        assert_eq!(c.password.expose(), "s3cret");
        assert!(c.password.is_inline());
        assert!(!format!("{c:?}").contains("s3cret"), "Debug leaks: {c:?}");

        let private = write(dir.path(), "pw", "from-file\n", 0o640);
        let c: Cfg = toml::from_str(&format!("password = {{ file = {:?} }}", private)).unwrap();
        assert_eq!(c.password.expose(), "from-file");
        assert_eq!(c.password.origin(), &Origin::File(private.clone()));

        let open = write(dir.path(), "open", "x", 0o644);
        let e = toml::from_str::<Cfg>(&format!("password = {{ file = {:?} }}", open))
            .unwrap_err()
            .to_string();
        assert!(e.contains("readable by every user (mode 0644)"), "{e}");
        assert!(e.contains("chmod o-r"), "{e}");

        for bad in [
            "password = {}",
            "password = { file = \"/a\", credential = \"b\" }",
            "password = { path = \"/a\" }",
            "password = 7",
        ] {
            assert!(toml::from_str::<Cfg>(bad).is_err(), "{bad} was accepted");
        }
        let e = toml::from_str::<Cfg>("password = { file = \"/nonexistent/pw\" }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/pw"), "{e}");
    }

    /// One test owns $CREDENTIALS_DIRECTORY (tests share the environment).
    #[test]
    fn systemd_credentials() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "bmc", "cred-pw\r\n", 0o400);
        write(dir.path(), "agent.key", "KEY", 0o400);
        std::env::remove_var(CREDENTIALS_DIRECTORY);
        let e = toml::from_str::<Cfg>("password = { credential = \"bmc\" }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("CREDENTIALS_DIRECTORY is not set"), "{e}");
        std::env::set_var(CREDENTIALS_DIRECTORY, dir.path());
        let c: Cfg = toml::from_str(
            "password = { credential = \"bmc\" }\nkey = { credential = \"agent.key\" }",
        )
        .unwrap();
        assert_eq!(c.password.expose(), "cred-pw");
        let key = c.key.unwrap();
        assert_eq!(key.path(), dir.path().join("agent.key"));
        key.check().unwrap();
        let e = toml::from_str::<Cfg>("password = { credential = \"../etc/shadow\" }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("plain file name"), "{e}");
        std::env::remove_var(CREDENTIALS_DIRECTORY);
    }

    #[test]
    fn key_files_must_be_private_unless_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let open = write(dir.path(), "k", "KEY", 0o644);
        let k = KeyFile::from(open.clone());
        assert_eq!(
            k.check(),
            Err(SecretError::WorldReadable {
                path: open.display().to_string(),
                mode: 0o644
            })
        );
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o600)).unwrap();
        k.check().unwrap();
        assert!(KeyFile::from(dir.path().join("missing")).check().is_err());
    }
}
