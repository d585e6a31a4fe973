//! Skoltech Anomaly Benchmark: semicolon-separated CSVs of a pump testbed
//! (`datetime; Accelerometer1RMS; ...; anomaly; changepoint`), one file per
//! experiment, plus `anomaly-free/anomaly-free.csv` without labels.

use super::DataError;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub path: PathBuf,
    /// Sensor channel names, in column order.
    pub channels: Vec<String>,
    /// Values per step, `channels.len()` each.
    pub rows: Vec<Vec<f32>>,
    /// Per step; empty for the anomaly-free file.
    pub anomaly: Vec<bool>,
    pub changepoint: Vec<bool>,
}

pub fn load_file(path: &Path) -> Result<Run, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .split(';')
        .map(str::trim)
        .collect();
    let bad = |line: usize, why: String| DataError::Format {
        path: path.to_owned(),
        line,
        why,
    };
    if header.first() != Some(&"datetime") {
        return Err(bad(1, "first column is not datetime".into()));
    }
    let a = header.iter().position(|h| *h == "anomaly");
    let c = header.iter().position(|h| *h == "changepoint");
    let channels: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, _)| Some(*i) != a && Some(*i) != c)
        .map(|(i, h)| (i, (*h).to_owned()))
        .collect();
    let mut run = Run {
        path: path.to_owned(),
        channels: channels.iter().map(|c| c.1.clone()).collect(),
        rows: Vec::new(),
        anomaly: Vec::new(),
        changepoint: Vec::new(),
    };
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(';').collect();
        let num = |i: usize| -> Result<f32, DataError> {
            let v = f.get(i).copied().unwrap_or("").trim();
            v.parse::<f32>()
                .map_err(|_| bad(n + 2, format!("bad value {v:?} in column {i}")))
        };
        run.rows.push(
            channels
                .iter()
                .map(|(i, _)| num(*i))
                .collect::<Result<_, _>>()?,
        );
        if let Some(i) = a {
            run.anomaly.push(num(i)? > 0.5);
        }
        if let Some(i) = c {
            run.changepoint.push(num(i)? > 0.5);
        }
    }
    Ok(run)
}

/// Labeled runs (every `*.csv` under `root` except `anomaly-free/`) and the
/// anomaly-free run, if present.
pub fn load(root: &Path) -> Result<(Vec<Run>, Option<Run>), DataError> {
    let mut labeled = Vec::new();
    let mut free = None;
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)
            .map_err(|e| DataError::io(&d, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "csv") {
                let run = load_file(&p)?;
                if p.parent()
                    .and_then(Path::file_name)
                    .is_some_and(|n| n == "anomaly-free")
                {
                    free = Some(run);
                } else if !run.anomaly.is_empty() {
                    labeled.push(run);
                }
            }
        }
    }
    labeled.sort_by(|a, b| a.path.cmp(&b.path));
    if labeled.is_empty() {
        return Err(DataError::Format {
            path: root.to_owned(),
            line: 0,
            why: "no labeled SKAB runs (*.csv with an anomaly column)".into(),
        });
    }
    Ok((labeled, free))
}
