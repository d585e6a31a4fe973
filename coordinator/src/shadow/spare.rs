//! Choosing a spare from the pool for a failing host: available ones only,
//! never sharing a rack, PDU or ToR with the failing host unless the policy
//! allows it (and then only when nothing else is left), cheapest first,
//! ties broken by name so the choice is reproducible.

use crate::model::FailureDomain;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Spare {
    pub id: String,
    /// Relative cost of using it (price, or a pool's preference).
    pub cost: f64,
    pub available: bool,
    pub domain: FailureDomain,
}

/// Which of rack, PDU, ToR the two share (empty names match nothing).
pub fn shared(a: &FailureDomain, b: &FailureDomain) -> Vec<&'static str> {
    [
        ("rack", &a.rack, &b.rack),
        ("pdu", &a.pdu, &b.pdu),
        ("tor", &a.tor, &b.tor),
    ]
    .into_iter()
    .filter(|(_, x, y)| !x.is_empty() && x == y)
    .map(|(name, _, _)| name)
    .collect()
}

/// The spare to provision for a host in `failing`, if any.
pub fn choose<'a>(
    pool: &'a [Spare],
    failing: &FailureDomain,
    allow_same_domain: bool,
    exclude: &[&str],
) -> Option<&'a Spare> {
    pool.iter()
        .filter(|s| s.available && s.cost.is_finite() && !exclude.contains(&s.id.as_str()))
        .filter(|s| allow_same_domain || shared(&s.domain, failing).is_empty())
        .min_by(|a, b| {
            let key = |s: &Spare| shared(&s.domain, failing).len();
            key(a)
                .cmp(&key(b))
                .then(a.cost.total_cmp(&b.cost))
                .then(a.id.cmp(&b.id))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(rack: &str, pdu: &str, tor: &str) -> FailureDomain {
        FailureDomain {
            site: "s1".into(),
            rack: rack.into(),
            pdu: pdu.into(),
            tor: tor.into(),
        }
    }

    fn spare(id: &str, cost: f64, d: FailureDomain) -> Spare {
        Spare {
            id: id.into(),
            cost,
            available: true,
            domain: d,
        }
    }

    #[test]
    fn never_the_failing_hosts_rack_pdu_or_tor_and_cheapest_first() {
        let failing = dom("r1", "p1", "t1");
        let pool = [
            spare("same-rack", 1.0, dom("r1", "p9", "t9")),
            spare("same-pdu", 1.0, dom("r9", "p1", "t9")),
            spare("same-tor", 1.0, dom("r9", "p9", "t1")),
            spare("far-expensive", 5.0, dom("r2", "p2", "t2")),
            spare("far-cheap", 2.0, dom("r3", "p3", "t3")),
            Spare {
                available: false,
                ..spare("busy", 0.1, dom("r4", "p4", "t4"))
            },
        ];
        assert_eq!(choose(&pool, &failing, false, &[]).unwrap().id, "far-cheap");
        assert_eq!(
            choose(&pool, &failing, false, &["far-cheap"]).unwrap().id,
            "far-expensive",
            "a spare that failed to provision is excluded"
        );
        assert!(choose(&pool[..3], &failing, false, &[]).is_none());
        // Allowed: only when nothing independent is left, least shared first.
        let mut near = pool[..3].to_vec();
        near.push(spare("rack-and-pdu", 0.5, dom("r1", "p1", "t9")));
        assert_eq!(choose(&near, &failing, true, &[]).unwrap().id, "same-pdu");
        assert_eq!(choose(&pool, &failing, true, &[]).unwrap().id, "far-cheap");
    }

    #[test]
    fn unknown_domains_do_not_count_as_shared() {
        assert!(shared(&dom("", "", ""), &dom("", "", "")).is_empty());
        assert_eq!(
            shared(&dom("r", "", "t"), &dom("r", "", "t")),
            ["rack", "tor"]
        );
    }
}
