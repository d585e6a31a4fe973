//! `sim`: replays a hardware profile as a live device.
//!
//! Each profile sensor with a `sim` section produces
//! `nominal + amplitude·sin(2πt/period) + noise·N(0,1) + degradation(t)`,
//! quantised to the profile's `resolution_digits` like a real BMC. `t` is
//! the time since the collector started, multiplied by `speedup`, so a demo
//! can compress hours of wear into minutes. Deterministic for a given seed.

use super::{Collector, Poll, Quality, Reading, SensorFault, SeriesKey};
use hwprofiles::{DegradationKind, Profile, SimBehaviour};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Profile to replay; default: the agent's `hwprofile`.
    pub profile: Option<String>,
    /// Time acceleration of the load pattern and degradation.
    #[serde(default = "default_speedup")]
    pub speedup: f64,
    /// RNG seed; default derived from the host id.
    pub seed: Option<u64>,
    /// Probability that a sensor read fails (reported Unreadable), per poll.
    #[serde(default)]
    pub unreadable_probability: f64,
}

const fn default_interval() -> Duration {
    Duration::from_secs(1)
}
const fn default_speedup() -> f64 {
    1.0
}

impl Config {
    pub(crate) fn validate(&self, profile: &Profile) -> Result<(), String> {
        if !(self.speedup.is_finite() && self.speedup > 0.0) {
            return Err("sim.speedup must be a positive number".into());
        }
        if !(0.0..=1.0).contains(&self.unreadable_probability) {
            return Err("sim.unreadable_probability must be within 0..=1".into());
        }
        if let Some(p) = &self.profile {
            if p != &profile.id {
                return Err(format!(
                    "sim.profile {p:?} differs from the host's hwprofile {:?}",
                    profile.id
                ));
            }
        }
        if !profile.sensors.iter().any(|s| s.sim.is_some()) {
            return Err(format!("profile {} has no simulated sensors", profile.id));
        }
        Ok(())
    }
}

struct SimSensor {
    id: String,
    key: std::sync::Arc<SeriesKey>,
    sim: SimBehaviour,
}

pub struct SimCollector {
    sensors: Vec<SimSensor>,
    rng: fastrand::Rng,
    start_ms: Option<i64>,
    speedup: f64,
    unreadable_probability: f64,
}

/// FNV-1a, for stable per-host seeds and serials.
pub(crate) fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl SimCollector {
    pub fn new(cfg: Config, host_id: &str, profile: &Profile) -> SimCollector {
        let sensors = profile
            .sensors
            .iter()
            .filter_map(|s| {
                s.sim.map(|sim| SimSensor {
                    id: s.id.clone(),
                    key: std::sync::Arc::new(SeriesKey {
                        metric: s.metric.clone(),
                        component: s.component.clone(),
                        unit: s.unit.as_str().to_owned(),
                        labels: [("sensor".to_owned(), s.id.clone())].into(),
                    }),
                    sim,
                })
            })
            .collect();
        SimCollector {
            sensors,
            rng: fastrand::Rng::with_seed(cfg.seed.unwrap_or_else(|| fnv(host_id))),
            start_ms: None,
            speedup: cfg.speedup,
            unreadable_probability: cfg.unreadable_probability,
        }
    }

    fn gauss(&mut self) -> f64 {
        // Box-Muller
        let u1 = self.rng.f64().max(f64::MIN_POSITIVE);
        let u2 = self.rng.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Value of a simulated sensor `t` seconds into the run, before noise.
pub fn model_value(sim: &SimBehaviour, t: f64) -> f64 {
    let mut v =
        sim.nominal + sim.amplitude * (std::f64::consts::TAU * t / sim.period.as_secs_f64()).sin();
    if let Some(d) = sim.degradation {
        let since = t - d.start_after.as_secs_f64();
        if since > 0.0 {
            let hours = since / 3600.0;
            v += match d.kind {
                DegradationKind::Linear => d.rate * hours,
                DegradationKind::Exponential => sim.nominal * ((1.0 + d.rate).powf(hours) - 1.0),
                DegradationKind::Step => d.rate,
            };
        }
    }
    v
}

fn quantise(v: f64, digits: u8) -> f64 {
    let scale = 10f64.powi(i32::from(digits));
    (v * scale).round() / scale
}

impl Collector for SimCollector {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn poll(&mut self, ts_ms: i64) -> Poll {
        let start = *self.start_ms.get_or_insert(ts_ms);
        #[allow(clippy::cast_precision_loss)]
        let t = (ts_ms - start) as f64 / 1000.0 * self.speedup;
        let mut poll = Poll::default();
        for i in 0..self.sensors.len() {
            let noise = self.gauss();
            let fail =
                self.unreadable_probability > 0.0 && self.rng.f64() < self.unreadable_probability;
            let s = &self.sensors[i];
            if fail {
                poll.faults.push(SensorFault {
                    sensor: s.id.clone(),
                    reason: "simulated read timeout".into(),
                });
                poll.readings.push(Reading {
                    series: s.key.clone(),
                    value: f64::NAN,
                    quality: Quality::Unreadable,
                });
                continue;
            }
            let v = quantise(
                model_value(&s.sim, t) + s.sim.noise * noise,
                s.sim.resolution_digits,
            );
            poll.readings.push(Reading {
                series: s.key.clone(),
                value: v,
                quality: Quality::Ok,
            });
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        hwprofiles::parse(hwprofiles::builtin::SIM_1U, "sim").unwrap()
    }

    fn cfg(speedup: f64, p: f64) -> Config {
        Config {
            interval: Duration::from_secs(1),
            profile: None,
            speedup,
            seed: Some(3),
            unreadable_probability: p,
        }
    }

    #[tokio::test]
    async fn every_simulated_sensor_reports_quantised_values() {
        let p = profile();
        let mut c = SimCollector::new(cfg(1.0, 0.0), "h", &p);
        let poll = c.poll(1_000).await;
        assert_eq!(
            poll.readings.len(),
            p.sensors.iter().filter(|s| s.sim.is_some()).count()
        );
        assert!(poll.faults.is_empty());
        for r in &poll.readings {
            let s = p.sensor(&r.series.labels["sensor"]).unwrap();
            let digits = s.sim.unwrap().resolution_digits;
            assert_eq!(quantise(r.value, digits), r.value, "{}", s.id);
        }
    }

    #[tokio::test]
    async fn fan3_degrades_and_fan1_does_not() {
        let p = profile();
        let mut c = SimCollector::new(cfg(3600.0, 0.0), "h", &p);
        let fan = |poll: &Poll, c: &str| {
            poll.readings
                .iter()
                .find(|r| r.series.component == c && r.series.metric == "fan_speed_rpm")
                .unwrap()
                .value
        };
        let early = c.poll(0).await;
        // 24 simulated hours later (speedup 3600: 24 s of wall time)
        let late = c.poll(24_000).await;
        assert!(
            fan(&late, "FAN3") < fan(&early, "FAN3") * 0.7,
            "{} -> {}",
            fan(&early, "FAN3"),
            fan(&late, "FAN3")
        );
        assert!((fan(&late, "FAN1") - fan(&early, "FAN1")).abs() < 1500.0);
    }

    #[tokio::test]
    async fn failures_are_reported_as_unreadable_with_a_reason() {
        let p = profile();
        let mut c = SimCollector::new(cfg(1.0, 1.0), "h", &p);
        let poll = c.poll(0).await;
        assert!(poll
            .readings
            .iter()
            .all(|r| r.quality == Quality::Unreadable && r.value.is_nan()));
        assert_eq!(poll.faults.len(), poll.readings.len());
    }
}
