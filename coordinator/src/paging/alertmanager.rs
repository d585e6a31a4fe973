//! Prometheus Alertmanager, v2 API: `POST /api/v2/alerts` with a list of
//! postable alerts. The alert's identity is its label set (one per target),
//! so re-sending updates it; a resolution is the same labels with `endsAt`
//! now. Alertmanager drops an alert after `endsAt`, so a firing page is
//! sent with `endsAt` = now + `ttl` and refreshed on every risk run.

use super::{rfc3339, Delivery, Notice};
use crate::shadow::engine::Severity;
use http::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Alertmanager's base URL, e.g. `http://alertmanager:9093`.
    pub url: String,
    /// How long a sent page stays firing without a refresh; longer than
    /// the risk interval.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Labels added to every alert (e.g. `team = "storage"`) for routing.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_ttl() -> Duration {
    Duration::from_secs(3600)
}

pub const ALERTNAME: &str = "UmbraFailureRisk";

pub fn deliveries(c: &Config, notice: &Notice) -> Vec<Delivery> {
    let p = notice.page();
    let mut labels = Map::new();
    for (k, v) in &c.labels {
        labels.insert(k.clone(), json!(v));
    }
    labels.insert("alertname".into(), json!(ALERTNAME));
    labels.insert("target".into(), json!(p.target));
    labels.insert("source".into(), json!("umbra"));
    // Severity is a label in Prometheus conventions, but it changes as the
    // lifecycle moves; a label change would make a second alert. It lives
    // in the annotations instead, next to the rest of the page.
    let mut annotations = Map::new();
    annotations.insert("summary".into(), json!(p.summary));
    annotations.insert(
        "severity".into(),
        json!(match p.severity {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }),
    );
    for (k, v) in p.details() {
        annotations.insert(k.into(), json!(v));
    }
    let ttl_ms = i64::try_from(c.ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let ends = match notice {
        Notice::Trigger(_) => p.at_ms.saturating_add(ttl_ms),
        Notice::Resolve(_) => p.at_ms,
    };
    let alert = json!({
        "labels": Value::Object(labels),
        "annotations": Value::Object(annotations),
        "startsAt": rfc3339(p.at_ms),
        "endsAt": rfc3339(ends),
    });
    vec![Delivery {
        method: Method::POST,
        url: format!("{}/api/v2/alerts", c.url.trim_end_matches('/')),
        headers: vec![],
        body: json!([alert]),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::tests::page;

    #[test]
    fn postable_alerts_have_the_v2_shape() {
        let c: Config =
            toml::from_str("url = \"http://am:9093/\"\n[labels]\nteam = \"storage\"").unwrap();
        let d = &deliveries(&c, &Notice::Trigger(page()))[0];
        assert_eq!(d.url, "http://am:9093/api/v2/alerts");
        let a = &d.body.as_array().unwrap()[0];
        assert_eq!(a["labels"]["alertname"], ALERTNAME);
        assert_eq!(a["labels"]["target"], "node-07");
        assert_eq!(a["labels"]["team"], "storage");
        // Every label and annotation value is a string (the API's LabelSet).
        for k in ["labels", "annotations"] {
            assert!(
                a[k].as_object().unwrap().values().all(Value::is_string),
                "{a}"
            );
        }
        assert_eq!(a["annotations"]["p_fail_7d"], "0.910");
        assert_eq!(a["annotations"]["severity"], "critical");
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.123Z");
        assert_eq!(a["endsAt"], "2023-11-14T23:13:20.123Z");
        let r = &deliveries(&c, &Notice::Resolve(page()))[0].body[0];
        assert_eq!(r["labels"], a["labels"], "same identity");
        assert_eq!(r["endsAt"], r["startsAt"]);
    }
}
