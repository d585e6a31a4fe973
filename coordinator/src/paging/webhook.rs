//! A generic webhook: Umbra's own JSON document (`version` 1), the whole
//! page plus `status` ("firing" or "resolved"), POSTed to a URL, with an
//! optional bearer token.

use super::{Delivery, Notice};
use crate::actuate::http::bearer_auth;
use http::Method;
use serde::Deserialize;
use serde_json::json;
use service::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<Secret>,
}

pub fn deliveries(c: &Config, notice: &Notice) -> Vec<Delivery> {
    let (status, p) = match notice {
        Notice::Trigger(p) => ("firing", p),
        Notice::Resolve(p) => ("resolved", p),
    };
    let headers = bearer_auth(c.token.as_ref()).into_iter().collect();
    vec![Delivery {
        method: Method::POST,
        url: c.url.clone(),
        headers,
        body: json!({ "version": 1, "status": status, "page": p }),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::tests::page;

    #[test]
    fn the_document_carries_the_whole_page() {
        let c: Config = toml::from_str("url = \"http://hook\"\ntoken = \"t0k\"").unwrap();
        let d = &deliveries(&c, &Notice::Trigger(page()))[0];
        assert_eq!(d.body["status"], "firing");
        assert_eq!(d.body["page"]["p7d"], 0.91);
        assert_eq!(d.body["page"]["commands"][1], "umbractl approve node-07");
        assert_eq!(d.headers[0].1.to_str().unwrap(), "Bearer t0k");
        let r = &deliveries(&c, &Notice::Resolve(page()))[0];
        assert_eq!(r.body["status"], "resolved");
    }
}
