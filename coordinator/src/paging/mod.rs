//! Paging on-call: the lifecycle's pages and resolutions, delivered to each
//! configured receiver, one file per wire format:
//!
//! * [`alertmanager`]: Prometheus Alertmanager's v2 alerts API;
//! * [`pagerduty`]: PagerDuty Events API v2;
//! * [`opsgenie`]: Opsgenie Alert API v2;
//! * [`webhook`]: Umbra's own JSON document, for anything else.
//!
//! A page is deduplicated per protected target (one incident per host, kept
//! up to date as the lifecycle moves) and resolved when the lifecycle ends.
//! Payloads are built by pure functions (tested against each documented
//! schema); [`Pagers::deliver`] does the I/O, with retries and backoff, and
//! reports per receiver what happened so the runtime can audit it.

pub mod alertmanager;
pub mod opsgenie;
pub mod pagerduty;
pub mod webhook;

use crate::actuate::http::{Client, HttpError, Retry};
use crate::shadow::engine::{Ms, Severity};
use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// What on-call is told about one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// Deduplication key: one open incident per target.
    pub key: String,
    pub target: String,
    /// The riskiest component (`disk:WWN`), empty when not known.
    pub component: String,
    pub severity: Severity,
    pub summary: String,
    pub p24h: f64,
    pub p7d: f64,
    /// The failure window the headline probability is for ("24h" or "7d"),
    /// i.e. the lead time on-call has at most.
    pub window: String,
    pub explanation: String,
    /// The lifecycle phase now (`mirroring`, `shifting`, ...).
    pub phase: String,
    /// No action is carried out: the shadow runs in dry-run mode.
    pub dry_run: bool,
    /// `umbractl` commands that show or steer this lifecycle.
    pub commands: Vec<String>,
    pub at_ms: Ms,
}

impl Page {
    pub fn dedup_key(target: &str) -> String {
        format!("umbra/{target}")
    }

    /// The details every format carries, as text.
    fn details(&self) -> Vec<(&'static str, String)> {
        vec![
            ("target", self.target.clone()),
            ("component", self.component.clone()),
            ("p_fail_24h", format!("{:.3}", self.p24h)),
            ("p_fail_7d", format!("{:.3}", self.p7d)),
            ("window", self.window.clone()),
            ("explanation", self.explanation.clone()),
            ("shadow_phase", self.phase.clone()),
            ("dry_run", self.dry_run.to_string()),
            ("commands", self.commands.join("\n")),
        ]
    }
}

/// Open or update an incident, or resolve it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Notice {
    Trigger(Page),
    Resolve(Page),
}

impl Notice {
    pub fn page(&self) -> &Page {
        match self {
            Notice::Trigger(p) | Notice::Resolve(p) => p,
        }
    }
}

/// One HTTP request a receiver wants sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: serde_json::Value,
}

/// `[[paging.receivers]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ReceiverConfig {
    Alertmanager(alertmanager::Config),
    Pagerduty(pagerduty::Config),
    Opsgenie(opsgenie::Config),
    Webhook(webhook::Config),
}

impl ReceiverConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ReceiverConfig::Alertmanager(_) => "alertmanager",
            ReceiverConfig::Pagerduty(_) => "pagerduty",
            ReceiverConfig::Opsgenie(_) => "opsgenie",
            ReceiverConfig::Webhook(_) => "webhook",
        }
    }

    /// The requests that carry `notice` to this receiver.
    pub fn deliveries(&self, notice: &Notice) -> Vec<Delivery> {
        match self {
            ReceiverConfig::Alertmanager(c) => alertmanager::deliveries(c, notice),
            ReceiverConfig::Pagerduty(c) => pagerduty::deliveries(c, notice),
            ReceiverConfig::Opsgenie(c) => opsgenie::deliveries(c, notice),
            ReceiverConfig::Webhook(c) => webhook::deliveries(c, notice),
        }
    }

    /// Alertmanager forgets an alert after its `endsAt`: open pages are
    /// sent again on every risk run to keep them firing.
    pub fn needs_refresh(&self) -> bool {
        matches!(self, ReceiverConfig::Alertmanager(_))
    }

    fn url(&self) -> &str {
        match self {
            ReceiverConfig::Alertmanager(c) => &c.url,
            ReceiverConfig::Pagerduty(c) => &c.url,
            ReceiverConfig::Opsgenie(c) => &c.url,
            ReceiverConfig::Webhook(c) => &c.url,
        }
    }
}

/// `[paging]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagingConfig {
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// CA bundle for https receivers (the system bundle when unset).
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Further tries of a delivery that failed transiently or with 5xx/429.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

impl Default for PagingConfig {
    fn default() -> Self {
        toml::from_str("").expect("all paging fields have defaults")
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
const fn default_retries() -> u32 {
    3
}

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{receiver}: {source}")]
    Http {
        receiver: &'static str,
        source: HttpError,
    },
    #[error("{receiver}: {url} answered HTTP {status}: {body}")]
    Refused {
        receiver: &'static str,
        url: String,
        status: u16,
        body: String,
    },
}

impl PagingConfig {
    /// A secret written into the config itself (which must then be private).
    pub fn has_inline_secret(&self) -> bool {
        self.receivers.iter().any(|r| match r {
            ReceiverConfig::Alertmanager(_) => false,
            ReceiverConfig::Pagerduty(c) => c.routing_key.is_inline(),
            ReceiverConfig::Opsgenie(c) => c.api_key.is_inline(),
            ReceiverConfig::Webhook(c) => c.token.as_ref().is_some_and(|t| t.is_inline()),
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        for r in &self.receivers {
            let url = r.url();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "paging receiver {}: url {url:?} is not http(s)",
                    r.kind()
                ));
            }
            // Keys travel in headers: refuse ones that cannot (a pasted
            // newline) instead of sending a broken page later.
            let header_secret = match r {
                ReceiverConfig::Opsgenie(c) => Some(("api_key", &c.api_key)),
                ReceiverConfig::Webhook(c) => c.token.as_ref().map(|t| ("token", t)),
                ReceiverConfig::Alertmanager(_) | ReceiverConfig::Pagerduty(_) => None,
            };
            if let Some((name, secret)) = header_secret {
                if secret.expose().is_empty() || HeaderValue::from_str(secret.expose()).is_err() {
                    return Err(format!(
                        "paging receiver {}: {name} is empty or has characters a header cannot carry",
                        r.kind()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The configured receivers and the client that reaches them.
#[derive(Debug, Clone)]
pub struct Pagers {
    receivers: Vec<ReceiverConfig>,
    client: Client,
    retries: u32,
}

/// What became of one notice at one receiver.
#[derive(Debug)]
pub struct Outcome {
    pub receiver: &'static str,
    pub result: Result<(), PageError>,
}

/// First wait between retries; doubles each time.
const BACKOFF: Duration = Duration::from_millis(500);

impl Pagers {
    pub fn new(cfg: &PagingConfig) -> Result<Pagers, HttpError> {
        Ok(Pagers {
            receivers: cfg.receivers.clone(),
            client: Client::new(cfg.ca_file.as_deref(), cfg.timeout)?,
            retries: cfg.retries,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.receivers.is_empty()
    }

    /// Send `notice` to every receiver (or only those that need a refresh).
    pub async fn deliver(&self, notice: &Notice, refresh_only: bool) -> Vec<Outcome> {
        let mut out = Vec::new();
        for r in &self.receivers {
            if refresh_only && !r.needs_refresh() {
                continue;
            }
            let mut result = Ok(());
            for d in r.deliveries(notice) {
                result = self.send(r.kind(), &d).await;
                if result.is_err() {
                    break;
                }
            }
            out.push(Outcome {
                receiver: r.kind(),
                result,
            });
        }
        out
    }

    async fn send(&self, receiver: &'static str, d: &Delivery) -> Result<(), PageError> {
        let body = serde_json::to_vec(&d.body).expect("JSON values serialise");
        let resp = self
            .client
            .send_retrying(
                d.method.clone(),
                &d.url,
                &d.headers,
                Some(&body),
                Retry {
                    retries: self.retries,
                    backoff: BACKOFF,
                },
                |s| s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS,
            )
            .await
            .map_err(|source| PageError::Http { receiver, source })?;
        if !resp.status.is_success() {
            return Err(PageError::Refused {
                receiver,
                url: d.url.clone(),
                status: resp.status.as_u16(),
                body: String::from_utf8_lossy(&resp.body)
                    .chars()
                    .take(300)
                    .collect(),
            });
        }
        Ok(())
    }
}

/// RFC 3339 UTC with milliseconds, as the paging APIs want timestamps.
pub fn rfc3339(ms: Ms) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn page() -> Page {
        Page {
            key: Page::dedup_key("node-07"),
            target: "node-07".into(),
            component: "disk:5000c500a1b2c3d4".into(),
            severity: Severity::Critical,
            summary: "node-07: risk confirmed (P(fail 7d)=0.91)".into(),
            p24h: 0.42,
            p7d: 0.91,
            window: "7d".into(),
            explanation: "SMART 188 command timeouts rising".into(),
            phase: "confirmed".into(),
            dry_run: false,
            commands: vec![
                "umbractl shadows --host node-07".into(),
                "umbractl approve node-07".into(),
            ],
            at_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn receivers_parse_by_kind_and_bad_urls_are_refused() {
        let cfg: PagingConfig = toml::from_str(
            r#"
            [[receivers]]
            kind = "alertmanager"
            url = "http://127.0.0.1:9093"
            [[receivers]]
            kind = "pagerduty"
            routing_key = "R0UTINGKEY0123456789012345678901"
            [[receivers]]
            kind = "opsgenie"
            api_key = "k"
            [[receivers]]
            kind = "webhook"
            url = "https://hooks.example/umbra"
            "#,
        )
        .unwrap();
        let kinds: Vec<_> = cfg.receivers.iter().map(ReceiverConfig::kind).collect();
        assert_eq!(kinds, ["alertmanager", "pagerduty", "opsgenie", "webhook"]);
        cfg.validate().unwrap();
        let bad: PagingConfig =
            toml::from_str("[[receivers]]\nkind = \"webhook\"\nurl = \"ftp://x\"").unwrap();
        assert!(bad.validate().unwrap_err().contains("ftp://x"));
        let bad: PagingConfig =
            toml::from_str("[[receivers]]\nkind = \"opsgenie\"\napi_key = \"abc\\ndef\"").unwrap();
        let e = bad.validate().unwrap_err();
        assert!(e.contains("api_key") && !e.contains("abc"), "{e}");
        assert!(toml::from_str::<PagingConfig>("[[receivers]]\nkind = \"sms\"").is_err());
    }
}
