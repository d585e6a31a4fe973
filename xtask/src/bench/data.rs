//! Real series from `../shared/data` (NAB, SKAB): the values every benchmark
//! feeds both peers.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// One real series with its own timestamps.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub ts_ms: Vec<i64>,
    pub values: Vec<f64>,
}

/// NAB's real-world series (the `real*` folders; the artificial ones are
/// left out) and every SKAB column of every run.
pub fn load(root: &Path) -> Result<Vec<Series>> {
    let mut out = Vec::new();
    let nab = root.join("nab/data");
    for dir in sorted_dir(&nab)? {
        let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
        if !folder.starts_with("real") {
            continue;
        }
        for f in sorted_dir(&dir)? {
            if f.extension().is_some_and(|e| e == "csv") {
                out.push(nab_csv(&f, &folder)?);
            }
        }
    }
    let skab = root.join("skab");
    for dir in sorted_dir(&skab)? {
        if !dir.is_dir() {
            continue;
        }
        for f in sorted_dir(&dir)? {
            if f.extension().is_some_and(|e| e == "csv") {
                out.extend(skab_csv(&f)?);
            }
        }
    }
    if out.is_empty() {
        bail!("no NAB/SKAB series under {}", root.display());
    }
    Ok(out)
}

fn sorted_dir(p: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<_> = std::fs::read_dir(p)
        .with_context(|| format!("reading {}", p.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    v.sort();
    Ok(v)
}

/// "YYYY-MM-DD HH:MM:SS" (UTC) to Unix milliseconds.
fn parse_time(s: &str) -> Option<i64> {
    let (d, t) = s.trim().split_once(' ')?;
    let mut dp = d.split('-').map(str::parse::<i64>);
    let (y, m, day) = (dp.next()?.ok()?, dp.next()?.ok()?, dp.next()?.ok()?);
    let mut tp = t.split(':').map(str::parse::<i64>);
    let (hh, mm, ss) = (tp.next()?.ok()?, tp.next()?.ok()?, tp.next()?.ok()?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000)
}

fn nab_csv(path: &Path, folder: &str) -> Result<Series> {
    let text = std::fs::read_to_string(path)?;
    let mut s = Series {
        name: format!("{folder}/{}", path.file_stem().unwrap().to_string_lossy()),
        ts_ms: Vec::new(),
        values: Vec::new(),
    };
    for line in text.lines().skip(1) {
        let Some((t, v)) = line.split_once(',') else {
            continue;
        };
        if let (Some(t), Ok(v)) = (parse_time(t), v.trim().parse::<f64>()) {
            s.ts_ms.push(t);
            s.values.push(v);
        }
    }
    Ok(s)
}

fn skab_csv(path: &Path) -> Result<Vec<Series>> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(';').collect();
    // Columns 1.. are sensors; anomaly/changepoint labels are not series.
    let cols: Vec<usize> = (1..header.len())
        .filter(|&i| !matches!(header[i], "anomaly" | "changepoint"))
        .collect();
    let stem = format!(
        "skab/{}/{}",
        path.parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy(),
        path.file_stem().unwrap().to_string_lossy()
    );
    let mut out: Vec<Series> = cols
        .iter()
        .map(|&i| Series {
            name: format!("{stem}/{}", header[i]),
            ts_ms: Vec::new(),
            values: Vec::new(),
        })
        .collect();
    for line in lines {
        let f: Vec<&str> = line.split(';').collect();
        let Some(t) = f.first().and_then(|t| parse_time(t)) else {
            continue;
        };
        for (k, &i) in cols.iter().enumerate() {
            if let Some(v) = f.get(i).and_then(|v| v.trim().parse::<f64>().ok()) {
                out[k].ts_ms.push(t);
                out[k].values.push(v);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_time_parses_to_unix_ms() {
        assert_eq!(super::parse_time("1970-01-01 00:00:00"), Some(0));
        assert_eq!(
            super::parse_time("2015-02-26 21:42:53"),
            Some(1_424_986_973_000)
        );
        assert_eq!(super::parse_time("garbage"), None);
    }
}
