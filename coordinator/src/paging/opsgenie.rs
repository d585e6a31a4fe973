//! Opsgenie Alert API v2: `POST /v2/alerts` with `Authorization: GenieKey`,
//! the target's dedup key as `alias` (Opsgenie folds repeats into the open
//! alert); closing is `POST /v2/alerts/{alias}/close?identifierType=alias`.

use super::{Delivery, Notice};
use crate::shadow::engine::Severity;
use http::header::{HeaderValue, AUTHORIZATION};
use http::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use service::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API base (`https://api.eu.opsgenie.com` for the EU instance).
    #[serde(default = "default_url")]
    pub url: String,
    pub api_key: Secret,
    /// Opsgenie team names to route to.
    #[serde(default)]
    pub teams: Vec<String>,
}

fn default_url() -> String {
    "https://api.opsgenie.com".into()
}

/// Field limits from the API documentation.
const MESSAGE_MAX: usize = 130;
const ALIAS_MAX: usize = 512;
const DESCRIPTION_MAX: usize = 15_000;
const DETAIL_VALUE_MAX: usize = 8_000;

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Aliases go into the close URL's path: percent-encode everything but
/// unreserved characters.
fn path_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn deliveries(c: &Config, notice: &Notice) -> Vec<Delivery> {
    let p = notice.page();
    let base = c.url.trim_end_matches('/');
    let mut key = HeaderValue::from_str(&format!("GenieKey {}", c.api_key.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("GenieKey invalid"));
    key.set_sensitive(true);
    let headers = vec![(AUTHORIZATION, key)];
    let alias = cut(&p.key, ALIAS_MAX);
    match notice {
        Notice::Trigger(_) => {
            let details: Map<String, Value> = p
                .details()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), json!(cut(&v, DETAIL_VALUE_MAX))))
                .collect();
            let description = format!(
                "{}\n\n{}\n\nShadow: {}{}\n\n{}",
                p.summary,
                p.explanation,
                p.phase,
                if p.dry_run {
                    " (dry run: nothing is executed)"
                } else {
                    ""
                },
                p.commands.join("\n")
            );
            let body = json!({
                "message": cut(&p.summary, MESSAGE_MAX),
                "alias": alias,
                "description": cut(&description, DESCRIPTION_MAX),
                "responders": c.teams.iter().map(|t| json!({"name": t, "type": "team"})).collect::<Vec<_>>(),
                "tags": ["umbra", "predicted-failure"],
                "details": Value::Object(details),
                "entity": p.target,
                "source": "umbra-coordinator",
                "priority": match p.severity {
                    Severity::Critical => "P1",
                    Severity::Warning => "P3",
                    Severity::Info => "P5",
                },
            });
            vec![Delivery {
                method: Method::POST,
                url: format!("{base}/v2/alerts"),
                headers,
                body,
            }]
        }
        Notice::Resolve(_) => vec![Delivery {
            method: Method::POST,
            url: format!(
                "{base}/v2/alerts/{}/close?identifierType=alias",
                path_escape(&alias)
            ),
            headers,
            body: json!({ "source": "umbra-coordinator", "note": cut(&p.summary, DESCRIPTION_MAX) }),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::tests::page;

    #[test]
    fn alerts_and_closes_follow_the_v2_schema() {
        let c: Config = toml::from_str(
            "api_key = \"eb243592-faa2-4ba2-a551q-1afdf565c889\"\nteams = [\"storage\"]",
        )
        .unwrap();
        let d = &deliveries(&c, &Notice::Trigger(page()))[0];
        assert_eq!(d.url, "https://api.opsgenie.com/v2/alerts");
        assert_eq!(d.headers[0].0, AUTHORIZATION);
        assert_eq!(
            d.headers[0].1.to_str().unwrap(),
            "GenieKey eb243592-faa2-4ba2-a551q-1afdf565c889"
        );
        let b = &d.body;
        assert_eq!(b["alias"], "umbra/node-07");
        assert_eq!(b["priority"], "P1");
        assert_eq!(
            b["responders"][0],
            json!({"name": "storage", "type": "team"})
        );
        assert!(b["details"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string));
        assert!(b["description"]
            .as_str()
            .unwrap()
            .contains("umbractl approve node-07"));
        let mut long = page();
        long.summary = "y".repeat(400);
        let d = &deliveries(&c, &Notice::Trigger(long))[0];
        assert_eq!(d.body["message"].as_str().unwrap().len(), MESSAGE_MAX);
        let r = &deliveries(&c, &Notice::Resolve(page()))[0];
        assert_eq!(
            r.url,
            "https://api.opsgenie.com/v2/alerts/umbra%2Fnode-07/close?identifierType=alias"
        );
        assert_eq!(r.body["source"], "umbra-coordinator");
    }
}
