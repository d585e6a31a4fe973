//! Numenta Anomaly Benchmark: `data/<category>/<name>.csv` (`timestamp,value`)
//! and `combined_windows.json` (the labeled anomaly windows per file).

use super::{civil_day, DataError};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// `category/name.csv`, as the windows file names it.
    pub name: String,
    /// Seconds since the Unix epoch.
    pub ts: Vec<i64>,
    pub values: Vec<f32>,
    /// Labeled anomaly windows, (start, end) inclusive, in seconds.
    pub windows: Vec<(i64, i64)>,
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` → seconds since the Unix epoch.
pub fn timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let day = i64::from(civil_day(s.get(..10)?)?);
    let t = s.get(11..19)?;
    let mut it = t.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (it.next()??, it.next()??, it.next()??);
    if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..61).contains(&sec) {
        return None;
    }
    Some(day * 86_400 + h * 3600 + m * 60 + sec)
}

/// Every series under `root/data`, with its windows from
/// `root/combined_windows.json`, in name order.
pub fn load(root: &Path) -> Result<Vec<Series>, DataError> {
    let wpath = root.join("combined_windows.json");
    let text = std::fs::read_to_string(&wpath).map_err(|e| DataError::io(&wpath, e))?;
    let raw: BTreeMap<String, Vec<Vec<String>>> =
        serde_json::from_str(&text).map_err(|e| DataError::Format {
            path: wpath.clone(),
            line: e.line(),
            why: e.to_string(),
        })?;
    let mut out = Vec::new();
    for (name, wins) in raw {
        let path = root.join("data").join(&name);
        if !path.is_file() {
            continue; // the windows file lists the whole corpus; read what is here
        }
        let bad = |line: usize, why: String| DataError::Format {
            path: path.clone(),
            line,
            why,
        };
        let windows = wins
            .iter()
            .map(|w| match w.as_slice() {
                [a, b] => timestamp(a)
                    .zip(timestamp(b))
                    .ok_or_else(|| bad(0, format!("window {w:?}: bad timestamps"))),
                _ => Err(bad(0, format!("window {w:?} is not [start, end]"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
        let (mut ts, mut values) = (Vec::new(), Vec::new());
        for (i, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let (t, v) = line
                .split_once(',')
                .ok_or_else(|| bad(i + 1, "expected timestamp,value".into()))?;
            ts.push(timestamp(t).ok_or_else(|| bad(i + 1, format!("bad timestamp {t:?}")))?);
            values.push(
                v.trim()
                    .parse::<f32>()
                    .map_err(|_| bad(i + 1, format!("bad value {v:?}")))?,
            );
        }
        out.push(Series {
            name,
            ts,
            values,
            windows,
        });
    }
    if out.is_empty() {
        return Err(DataError::Format {
            path: root.to_owned(),
            line: 0,
            why: "no series of combined_windows.json found under data/".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_parse() {
        assert_eq!(super::timestamp("1970-01-02 00:00:01"), Some(86_401));
        assert_eq!(
            super::timestamp("2014-04-10 07:15:00.000000"),
            Some(1_397_114_100)
        );
        assert_eq!(super::timestamp("2014-04-10 25:15:00"), None);
        assert_eq!(super::timestamp("2014-04-10"), None);
    }
}
