//! Safety rails over all lifecycles: which confirmed targets may start a
//! shadow now. Pure: the caller passes the fleet, the active lifecycles and
//! the recent starts.
//!
//! - **Target set sanity**: an evaluation that confirms no target is
//!   normal; one that confirms more than `max_confirmed_fraction` of the
//!   fleet at once (and more than one host) is treated as a data or model
//!   fault: nothing starts and the verdict says why.
//! - **Unhealthy fleet**: when more than `pause_unhealthy_fraction` of a
//!   failure domain is at risk or failed, that domain pauses (page, no
//!   action): shadows there would be placed among failing peers and could
//!   make an outage worse.
//! - **Blast radius**: per failure domain (rack, PDU, ToR, pool), at most
//!   `max_concurrent_per_domain` lifecycles holding a spare, and at most
//!   `max_fraction_per_domain` of the domain's hosts.
//! - **Rate limit**: at most `max_starts_per_window` starts per `window_ms`.

use super::engine::Ms;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rails {
    pub max_concurrent_per_domain: usize,
    pub max_fraction_per_domain: f64,
    pub max_starts_per_window: usize,
    pub window_ms: Ms,
    pub pause_unhealthy_fraction: f64,
    pub max_confirmed_fraction: f64,
}

impl Default for Rails {
    fn default() -> Self {
        Rails {
            max_concurrent_per_domain: 2,
            max_fraction_per_domain: 0.25,
            max_starts_per_window: 5,
            window_ms: 3_600_000,
            pause_unhealthy_fraction: 0.5,
            max_confirmed_fraction: 0.2,
        }
    }
}

/// A host's failure domains, e.g. `["rack:r7", "pdu:p3", "tor:sw12"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub target: String,
    pub domains: Vec<String>,
}

/// Why a start was held back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("{confirmed} of {fleet} hosts confirmed at once (more than {max_percent:.0} %): suspect data or model, acting on none")]
    TargetSetTooLarge {
        confirmed: usize,
        fleet: usize,
        max_percent: f64,
    },
    #[error("domain {domain} is unhealthy ({unhealthy} of {size} at risk or failed): paused")]
    DomainUnhealthy {
        domain: String,
        unhealthy: usize,
        size: usize,
    },
    #[error("domain {domain} already has {active} shadows (budget {max})")]
    DomainBudget {
        domain: String,
        active: usize,
        max: usize,
    },
    #[error("domain {domain}: {active} of {size} hosts shadowed would exceed {max_percent:.0} %")]
    DomainFraction {
        domain: String,
        active: usize,
        size: usize,
        max_percent: f64,
    },
    #[error("{recent} shadows started in the last window (limit {max})")]
    RateLimited { recent: usize, max: usize },
}

/// The fleet as the rails see it.
#[derive(Debug, Clone, Default)]
pub struct View<'a> {
    pub members: &'a [Member],
    /// Targets whose lifecycle holds a spare.
    pub active: BTreeSet<&'a str>,
    /// Targets at risk, confirmed or failed (for domain health).
    pub unhealthy: BTreeSet<&'a str>,
    /// When recent shadows started.
    pub starts: &'a [Ms],
}

/// Decide for each confirmed target, in order (highest risk first), whether
/// it may start now. Admitted ones count against the budgets of the ones
/// after them.
pub fn admit(
    rails: &Rails,
    view: &View<'_>,
    confirmed: &[&str],
    now: Ms,
) -> Vec<(String, Result<(), Refusal>)> {
    let fleet = view.members.len();
    // One target is never "too many" (a small fleet could not be protected).
    #[allow(clippy::cast_precision_loss)]
    if confirmed.len() > 1 && confirmed.len() as f64 > rails.max_confirmed_fraction * fleet as f64 {
        let refusal = Refusal::TargetSetTooLarge {
            confirmed: confirmed.len(),
            fleet,
            max_percent: rails.max_confirmed_fraction * 100.0,
        };
        return confirmed
            .iter()
            .map(|t| ((*t).to_owned(), Err(refusal.clone())))
            .collect();
    }
    let domains_of: BTreeMap<&str, &[String]> = view
        .members
        .iter()
        .map(|m| (m.target.as_str(), m.domains.as_slice()))
        .collect();
    let mut size: BTreeMap<&str, usize> = BTreeMap::new();
    let mut active: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unhealthy: BTreeMap<&str, usize> = BTreeMap::new();
    for m in view.members {
        for d in &m.domains {
            *size.entry(d).or_default() += 1;
            if view.active.contains(m.target.as_str()) {
                *active.entry(d).or_default() += 1;
            }
            if view.unhealthy.contains(m.target.as_str()) {
                *unhealthy.entry(d).or_default() += 1;
            }
        }
    }
    let mut recent = view
        .starts
        .iter()
        .filter(|&&t| now - t < rails.window_ms)
        .count();
    let mut out = Vec::new();
    for &target in confirmed {
        let verdict = check(
            rails,
            domains_of.get(target).copied().unwrap_or_default(),
            &size,
            &active,
            &unhealthy,
            recent,
        );
        if verdict.is_ok() {
            recent += 1;
            for d in domains_of.get(target).copied().unwrap_or_default() {
                *active.entry(d).or_default() += 1;
            }
        }
        out.push((target.to_owned(), verdict));
    }
    out
}

fn check(
    rails: &Rails,
    domains: &[String],
    size: &BTreeMap<&str, usize>,
    active: &BTreeMap<&str, usize>,
    unhealthy: &BTreeMap<&str, usize>,
    recent: usize,
) -> Result<(), Refusal> {
    for d in domains {
        let n = size.get(d.as_str()).copied().unwrap_or(1);
        let bad = unhealthy.get(d.as_str()).copied().unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        if n > 1 && bad as f64 > rails.pause_unhealthy_fraction * n as f64 {
            return Err(Refusal::DomainUnhealthy {
                domain: d.clone(),
                unhealthy: bad,
                size: n,
            });
        }
    }
    for d in domains {
        let n = size.get(d.as_str()).copied().unwrap_or(1);
        let a = active.get(d.as_str()).copied().unwrap_or(0);
        if a >= rails.max_concurrent_per_domain {
            return Err(Refusal::DomainBudget {
                domain: d.clone(),
                active: a,
                max: rails.max_concurrent_per_domain,
            });
        }
        // One shadow is always allowed in a domain (else small racks could
        // never be protected); beyond that, the fraction applies.
        #[allow(clippy::cast_precision_loss)]
        if a >= 1 && (a + 1) as f64 > rails.max_fraction_per_domain * n as f64 {
            return Err(Refusal::DomainFraction {
                domain: d.clone(),
                active: a + 1,
                size: n,
                max_percent: rails.max_fraction_per_domain * 100.0,
            });
        }
    }
    if recent >= rails.max_starts_per_window {
        return Err(Refusal::RateLimited {
            recent,
            max: rails.max_starts_per_window,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(racks: usize, per_rack: usize) -> Vec<Member> {
        (0..racks * per_rack)
            .map(|i| Member {
                target: format!("h{i}"),
                domains: vec![
                    format!("rack:r{}", i / per_rack),
                    format!("pdu:p{}", i / per_rack),
                ],
            })
            .collect()
    }

    fn loose() -> Rails {
        Rails {
            max_concurrent_per_domain: 100,
            max_fraction_per_domain: 1.0,
            max_starts_per_window: 100,
            pause_unhealthy_fraction: 1.0,
            max_confirmed_fraction: 1.0,
            ..Rails::default()
        }
    }

    #[test]
    fn the_domain_budget_counts_running_and_newly_admitted_shadows() {
        let m = fleet(2, 10);
        let rails = Rails {
            max_concurrent_per_domain: 2,
            ..loose()
        };
        let view = View {
            members: &m,
            active: ["h0"].into(),
            ..View::default()
        };
        let v = admit(&rails, &view, &["h1", "h2", "h10"], 0);
        assert!(v[0].1.is_ok());
        assert!(
            matches!(&v[1].1, Err(Refusal::DomainBudget { domain, active: 2, .. }) if domain == "rack:r0"),
            "{v:?}"
        );
        assert!(v[2].1.is_ok(), "another rack");
    }

    #[test]
    fn the_fraction_of_a_domain_is_capped_but_one_shadow_is_always_allowed() {
        let m = fleet(1, 3);
        let rails = Rails {
            max_fraction_per_domain: 0.25,
            ..loose()
        };
        let view = View {
            members: &m,
            ..View::default()
        };
        let v = admit(&rails, &view, &["h0", "h1"], 0);
        assert!(v[0].1.is_ok());
        assert!(
            matches!(v[1].1, Err(Refusal::DomainFraction { .. })),
            "{v:?}"
        );
    }

    #[test]
    fn starts_are_rate_limited_over_the_window() {
        let m = fleet(10, 10);
        let rails = Rails {
            max_starts_per_window: 2,
            window_ms: 1000,
            ..loose()
        };
        let starts = [100, 5_000];
        let view = View {
            members: &m,
            starts: &starts,
            ..View::default()
        };
        // At 5500 the start at 100 has left the window.
        let v = admit(&rails, &view, &["h0", "h10"], 5_500);
        assert!(v[0].1.is_ok());
        assert!(
            matches!(v[1].1, Err(Refusal::RateLimited { recent: 2, max: 2 })),
            "{v:?}"
        );
    }

    #[test]
    fn an_unexpectedly_large_target_set_acts_on_none() {
        let m = fleet(2, 10);
        let rails = Rails {
            max_confirmed_fraction: 0.2,
            ..loose()
        };
        let view = View {
            members: &m,
            ..View::default()
        };
        let many: Vec<String> = (0..5).map(|i| format!("h{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let v = admit(&rails, &view, &many, 0);
        assert!(v.iter().all(|(_, r)| matches!(
            r,
            Err(Refusal::TargetSetTooLarge {
                confirmed: 5,
                fleet: 20,
                ..
            })
        )));
        assert!(admit(&rails, &view, &many[..4], 0)
            .iter()
            .all(|(_, r)| r.is_ok()));
        assert!(admit(&rails, &view, &[], 0).is_empty());
    }

    #[test]
    fn an_unhealthy_domain_pauses_instead_of_acting() {
        let m = fleet(2, 4);
        let rails = Rails {
            pause_unhealthy_fraction: 0.5,
            ..loose()
        };
        let view = View {
            members: &m,
            unhealthy: ["h0", "h1", "h2"].into(),
            ..View::default()
        };
        let v = admit(&rails, &view, &["h0", "h4"], 0);
        assert!(
            matches!(&v[0].1, Err(Refusal::DomainUnhealthy { domain, unhealthy: 3, size: 4 }) if domain == "rack:r0"),
            "{v:?}"
        );
        assert!(v[1].1.is_ok());
    }
}
