//! Loaders for the public datasets the evaluation harness reads. Each takes
//! a path and returns plain Rust data; a malformed file is an error naming
//! the file and line, never a panic.

pub mod backblaze;
pub mod nab;
pub mod skab;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {why}")]
    Format {
        path: PathBuf,
        line: usize,
        why: String,
    },
}

impl DataError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> DataError {
        DataError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian).
pub fn civil_day(s: &str) -> Option<i32> {
    let mut it = s.get(..10)?.split('-');
    let y: i32 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = i32::try_from((153 * mp + 2) / 5 + d - 1).ok()?;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_days() {
        assert_eq!(super::civil_day("1970-01-01"), Some(0));
        assert_eq!(super::civil_day("2013-04-10"), Some(15805));
        assert_eq!(super::civil_day("2000-03-01"), Some(11017));
        assert_eq!(super::civil_day("2013-13-01"), None);
        assert_eq!(super::civil_day("x"), None);
    }
}
