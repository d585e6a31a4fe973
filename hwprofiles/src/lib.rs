//! Hardware profiles: per-model knowledge as data.
//!
//! A profile (`profiles/{servers,switches}/<vendor>/<model>.toml`) names a
//! model's sensors: canonical metric, unit, component, vendor thresholds, and
//! for the `sim` collector how the simulated device behaves (nominal value,
//! noise, scripted degradation). This crate owns the schema ([`schema`]), the
//! parser ([`load`]) and semantic validation ([`validate`]); the raw serde
//! types never leave it: callers only ever see a [`Profile`] that passed
//! validation.
//!
//! ```
//! let p = hwprofiles::parse(hwprofiles::builtin::SIM_1U, "sim-1u.toml").unwrap();
//! assert_eq!(p.id, "umbra/sim-1u");
//! assert!(p.sensors.iter().any(|s| s.component == "FAN3"));
//! ```

#![forbid(unsafe_code)]

pub mod builtin;
pub mod load;
pub mod schema;
pub mod validate;

pub use load::{load_dir, parse, LoadError};
pub use schema::{
    Component, Degradation, DegradationKind, Enclosure, Profile, Quirk, Sensor, SensorKind,
    SimBehaviour, Source, Thresholds, Unit,
};
pub use validate::ProfileError;
