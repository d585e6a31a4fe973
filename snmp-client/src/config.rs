//! The SNMPv3 user as daemons configure it, checked into a [`V3User`].

use crate::V3User;
use firmware_shims::snmp::usm::{AuthProtocol, PrivProtocol};
use serde::Deserialize;
use service::secret::Secret;

/// An SNMPv3 user as written in a config (`[collector.v3]` in the agent,
/// `[...switch.v3]` in the coordinator): authNoPriv or authPriv.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V3Config {
    pub user: String,
    /// `sha` (HMAC-SHA-96) or `sha256` (HMAC-SHA-256-192).
    pub auth: String,
    /// A secret: string, `{ file = ".." }` or `{ credential = ".." }`.
    pub auth_password: Secret,
    /// `aes128` or `aes256` (the latter with `auth = "sha256"`); absent: authNoPriv.
    #[serde(default)]
    pub privacy: Option<String>,
    #[serde(default)]
    pub privacy_password: Option<Secret>,
    /// contextName (snmpsim: the data file's community name).
    #[serde(default)]
    pub context: String,
}

impl V3Config {
    pub fn user(&self) -> Result<V3User, String> {
        let auth = match self.auth.as_str() {
            "sha" | "sha1" => AuthProtocol::Sha1,
            "sha256" => AuthProtocol::Sha256,
            other => {
                return Err(format!(
                    "snmp v3: auth {other:?} is not sha or sha256 (MD5 is not offered)"
                ))
            }
        };
        let privacy = match (self.privacy.as_deref(), &self.privacy_password) {
            (None, None) => None,
            (Some("aes128" | "aes"), Some(pw)) => {
                Some((PrivProtocol::Aes128, pw.expose().to_owned()))
            }
            (Some("aes256"), Some(pw)) if auth == AuthProtocol::Sha256 => {
                Some((PrivProtocol::Aes256, pw.expose().to_owned()))
            }
            (Some("aes256"), Some(_)) => {
                return Err("snmp v3: aes256 needs auth = \"sha256\"".into())
            }
            (Some(p), Some(_)) => {
                return Err(format!(
                    "snmp v3: privacy {p:?} is not aes128 or aes256 (DES is not offered)"
                ))
            }
            _ => return Err("snmp v3: privacy and privacy_password go together".into()),
        };
        for pw in std::iter::once(self.auth_password.expose())
            .chain(privacy.as_ref().map(|p| p.1.as_str()))
        {
            if pw.len() < 8 {
                return Err("snmp v3: passwords must be at least 8 characters (RFC 3414)".into());
            }
        }
        Ok(V3User {
            user: self.user.clone(),
            auth,
            auth_password: self.auth_password.expose().to_owned(),
            privacy,
            context: self.context.clone(),
        })
    }
}
