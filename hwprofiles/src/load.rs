//! Parsing profile files and directories.

use crate::{schema::RawProfile, validate, Profile, ProfileError};
use std::path::{Path, PathBuf};

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{origin}: {source}")]
    Toml {
        origin: String,
        source: toml::de::Error,
    },
    #[error("{origin}: {source}")]
    Invalid {
        origin: String,
        source: ProfileError,
    },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile id {id} defined twice ({first} and {second})")]
    Duplicate {
        id: String,
        first: String,
        second: String,
    },
}

/// Parse and validate one profile; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Profile, LoadError> {
    let raw: RawProfile = toml::from_str(text).map_err(|source| LoadError::Toml {
        origin: origin.to_owned(),
        source,
    })?;
    validate::validate(raw).map_err(|source| LoadError::Invalid {
        origin: origin.to_owned(),
        source,
    })
}

/// Load every `*.toml` under `dir` (recursively), sorted by path.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Profile)>, LoadError> {
    let mut files = Vec::new();
    collect_toml(dir, &mut files)?;
    files.sort();
    let mut out: Vec<(PathBuf, Profile)> = Vec::with_capacity(files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        let profile = parse(&text, &path.display().to_string())?;
        if let Some((first, _)) = out.iter().find(|(_, p)| p.id == profile.id) {
            return Err(LoadError::Duplicate {
                id: profile.id,
                first: first.display().to_string(),
                second: path.display().to_string(),
            });
        }
        out.push((path, profile));
    }
    Ok(out)
}

fn collect_toml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect_toml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")
    }

    #[test]
    fn every_shipped_profile_loads_and_validates() {
        let all = load_dir(&profiles_dir()).unwrap();
        assert!(!all.is_empty());
        for (path, p) in &all {
            // The file location must match the id: profiles/<class>/<vendor>/<model>.toml
            let stem = path.file_stem().unwrap().to_str().unwrap();
            let vendor = path
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap();
            assert_eq!(p.id, format!("{vendor}/{stem}"), "{}", path.display());
        }
    }

    #[test]
    fn real_server_families_carry_their_quirks_and_redundancy() {
        let all: Vec<_> = load_dir(&profiles_dir())
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        for (id, quirk, fans) in [
            (
                "dell/poweredge-r610",
                crate::Quirk::IpmiIgnoreScanningDisabled,
                12,
            ),
            (
                "hpe/proliant-dl380-g7",
                crate::Quirk::IpmiDiscreteReading,
                6,
            ),
        ] {
            let p = all.iter().find(|p| p.id == id).expect(id);
            assert_eq!(p.quirks, [quirk], "{id}");
            let psus: Vec<_> = p
                .components
                .iter()
                .filter(|c| c.redundancy_group.as_deref() == Some("psu"))
                .collect();
            assert_eq!(psus.len(), 2, "{id}: PSUs are 1+1");
            let fan_sensors = p
                .sensors
                .iter()
                .filter(|s| s.kind == crate::SensorKind::Fan)
                .count();
            assert_eq!(fan_sensors, fans, "{id}");
            // Every sensor is addressed: an SDR ID string that fits the SDR,
            // or a SMART attribute read from every disk.
            assert!(p.sensors.iter().all(|s| match &s.source {
                Some(crate::Source::Ipmi { sensor }) => sensor.len() <= 16,
                Some(crate::Source::Smart { .. }) => true,
                _ => false,
            }));
        }
    }

    #[test]
    fn unknown_field_is_rejected_with_location() {
        let text = crate::builtin::SIM_1U.replacen("[[sensor]]", "[[sensor]]\nbogus = 1", 1);
        let err = parse(&text, "x.toml").unwrap_err().to_string();
        assert!(err.contains("x.toml") && err.contains("bogus"), "{err}");
    }
}
