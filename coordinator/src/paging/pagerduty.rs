//! PagerDuty Events API v2 (`POST /v2/enqueue`): `trigger` with the routing
//! key, a `dedup_key` per target (PagerDuty folds repeated triggers into the
//! open incident) and the payload's required `summary`, `source` and
//! `severity`; `resolve` with the same dedup key.

use super::{rfc3339, Delivery, Notice};
use crate::shadow::engine::Severity;
use http::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use service::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Events API v2 endpoint.
    #[serde(default = "default_url")]
    pub url: String,
    /// The service integration's routing key (32 characters).
    pub routing_key: Secret,
    /// `client_url` and link target, e.g. the Grafana dashboard.
    pub dashboard_url: Option<String>,
}

fn default_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".into()
}

/// The payload `summary` limit.
const SUMMARY_MAX: usize = 1024;

pub fn deliveries(c: &Config, notice: &Notice) -> Vec<Delivery> {
    let p = notice.page();
    let body = match notice {
        Notice::Trigger(_) => {
            let details: Map<String, Value> = p
                .details()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), json!(v)))
                .collect();
            let mut b = json!({
                "routing_key": c.routing_key.expose(),
                "event_action": "trigger",
                "dedup_key": p.key,
                "payload": {
                    "summary": p.summary.chars().take(SUMMARY_MAX).collect::<String>(),
                    "source": p.target,
                    "severity": match p.severity {
                        Severity::Critical => "critical",
                        Severity::Warning => "warning",
                        Severity::Info => "info",
                    },
                    "timestamp": rfc3339(p.at_ms),
                    "component": p.component,
                    "class": "predicted hardware failure",
                    "custom_details": Value::Object(details),
                },
                "client": "Umbra",
            });
            if let Some(url) = &c.dashboard_url {
                b["client_url"] = json!(url);
                b["links"] = json!([{ "href": url, "text": "Umbra dashboard" }]);
            }
            b
        }
        Notice::Resolve(_) => json!({
            "routing_key": c.routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": p.key,
        }),
    };
    vec![Delivery {
        method: Method::POST,
        url: c.url.clone(),
        headers: vec![],
        body,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::tests::page;

    #[test]
    fn events_follow_the_v2_schema() {
        let c: Config = toml::from_str("routing_key = \"R0UTINGKEY0123456789012345678901\"\ndashboard_url = \"https://grafana/d/umbra\"").unwrap();
        let d = &deliveries(&c, &Notice::Trigger(page()))[0];
        assert_eq!(d.url, "https://events.pagerduty.com/v2/enqueue");
        let b = &d.body;
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["routing_key"], "R0UTINGKEY0123456789012345678901");
        assert_eq!(b["dedup_key"], "umbra/node-07");
        for required in ["summary", "source", "severity"] {
            assert!(b["payload"][required].is_string(), "{required}: {b}");
        }
        assert_eq!(b["payload"]["severity"], "critical");
        assert_eq!(b["payload"]["custom_details"]["shadow_phase"], "confirmed");
        assert_eq!(b["links"][0]["href"], "https://grafana/d/umbra");
        let mut long = page();
        long.summary = "x".repeat(5000);
        let d = &deliveries(&c, &Notice::Trigger(long))[0];
        assert_eq!(
            d.body["payload"]["summary"].as_str().unwrap().len(),
            SUMMARY_MAX
        );
        let r = &deliveries(&c, &Notice::Resolve(page()))[0].body;
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(r["dedup_key"], "umbra/node-07");
        assert!(r.get("payload").is_none());
    }
}
