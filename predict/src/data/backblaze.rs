//! Backblaze "Hard Drive Data and Stats" daily snapshots: one CSV per day
//! (plain or gzip), one row per drive: `date, serial_number, model,
//! capacity_bytes, failure, smart_N_normalized, smart_N_raw, ...`.
//!
//! Columns are found by name in each file's header, because the set of SMART
//! columns changed over the years (2013 files have fewer than 2024 ones). A
//! missing or empty value is NaN. `failure = 1` marks the drive's last
//! operational day.

use super::{civil_day, DataError};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// SMART attributes read (raw values), in feature order.
pub const ATTRIBUTES: [u16; 15] = [1, 3, 4, 5, 7, 9, 10, 12, 187, 188, 193, 194, 197, 198, 199];

/// The usage covariate: SMART 241 (total LBAs written), raw, read beside
/// [`ATTRIBUTES`] but given to the model as a static covariate.
pub const USAGE_ATTRIBUTE: u16 = 241;

/// Index of an attribute in [`ATTRIBUTES`].
pub fn attribute_index(id: u16) -> Option<usize> {
    ATTRIBUTES.iter().position(|&a| a == id)
}

/// One drive's history, days ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Drive {
    pub serial: String,
    pub model: String,
    /// Empty where unknown (Backblaze's snapshots have no firmware column).
    pub firmware: String,
    pub capacity_bytes: u64,
    /// Days since 1970-01-01.
    pub days: Vec<i32>,
    /// Raw SMART values per day, in [`ATTRIBUTES`] order (NaN = missing).
    pub raw: Vec<[f32; ATTRIBUTES.len()]>,
    /// Raw [`USAGE_ATTRIBUTE`] per day (NaN = missing); empty when never read.
    pub written: Vec<f32>,
    /// Day of the `failure = 1` row.
    pub failed_on: Option<i32>,
}

#[derive(Debug, Clone, Default)]
pub struct Fleet {
    pub drives: Vec<Drive>,
    /// Rows read (drive-days).
    pub rows: usize,
    pub first_day: i32,
    pub last_day: i32,
}

impl Fleet {
    pub fn failures(&self) -> usize {
        self.drives.iter().filter(|d| d.failed_on.is_some()).count()
    }
}

struct Columns {
    date: usize,
    serial: usize,
    model: usize,
    capacity: Option<usize>,
    failure: usize,
    raw: [Option<usize>; ATTRIBUTES.len()],
    written: Option<usize>,
}

impl Columns {
    fn from_header(header: &str) -> Result<Columns, String> {
        let names: Vec<&str> = header.trim().split(',').map(str::trim).collect();
        let find = |n: &str| names.iter().position(|x| *x == n);
        let need = |n: &str| find(n).ok_or_else(|| format!("no column {n:?}"));
        let mut raw = [None; ATTRIBUTES.len()];
        for (i, id) in ATTRIBUTES.iter().enumerate() {
            raw[i] = find(&format!("smart_{id}_raw"));
        }
        Ok(Columns {
            date: need("date")?,
            serial: need("serial_number")?,
            model: need("model")?,
            capacity: find("capacity_bytes"),
            failure: need("failure")?,
            raw,
            written: find(&format!("smart_{USAGE_ATTRIBUTE}_raw")),
        })
    }
}

/// The daily files under `dir` (`*.csv`, `*.csv.gz`), in name (= date) order.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.ends_with(".csv") || n.ends_with(".csv.gz")
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(DataError::Format {
            path: dir.to_owned(),
            line: 0,
            why: "no *.csv or *.csv.gz files".into(),
        });
    }
    Ok(out)
}

fn open(path: &Path) -> Result<Box<dyn BufRead>, DataError> {
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let r: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 16, r)))
}

/// Load every daily file under `dir`, calling `progress(done, total)` after
/// each file.
pub fn load(dir: &Path, mut progress: impl FnMut(usize, usize)) -> Result<Fleet, DataError> {
    let files = files(dir)?;
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut fleet = Fleet {
        first_day: i32::MAX,
        last_day: i32::MIN,
        ..Fleet::default()
    };
    for (n, path) in files.iter().enumerate() {
        let mut lines = open(path)?.lines();
        let header = match lines.next() {
            Some(h) => h.map_err(|e| DataError::io(path, e))?,
            None => continue,
        };
        let cols = Columns::from_header(&header).map_err(|why| DataError::Format {
            path: path.clone(),
            line: 1,
            why,
        })?;
        for (i, line) in lines.enumerate() {
            let line = line.map_err(|e| DataError::io(path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: String| DataError::Format {
                path: path.clone(),
                line: i + 2,
                why,
            };
            let f: Vec<&str> = line.split(',').collect();
            let get = |c: usize| f.get(c).copied().unwrap_or("").trim();
            let day = civil_day(get(cols.date))
                .ok_or_else(|| bad(format!("bad date {:?}", get(cols.date))))?;
            let serial = get(cols.serial);
            if serial.is_empty() {
                return Err(bad("empty serial_number".into()));
            }
            let mut raw = [f32::NAN; ATTRIBUTES.len()];
            for (slot, col) in raw.iter_mut().zip(cols.raw) {
                if let Some(c) = col {
                    let v = get(c);
                    if !v.is_empty() {
                        // Raw values exceed f32's exact range only for packed
                        // vendor counters (attributes 1, 7); f64 parse first.
                        #[allow(clippy::cast_possible_truncation)]
                        {
                            *slot = v
                                .parse::<f64>()
                                .map_err(|_| bad(format!("bad value {v:?}")))?
                                as f32;
                        }
                    }
                }
            }
            // Parsed like the attributes; a malformed usage value is missing.
            #[allow(clippy::cast_possible_truncation)]
            let written = cols
                .written
                .and_then(|c| get(c).parse::<f64>().ok())
                .map_or(f32::NAN, |v| v as f32);
            let failed = match get(cols.failure) {
                "1" => true,
                "0" | "" => false,
                other => return Err(bad(format!("bad failure flag {other:?}"))),
            };
            let id = *index.entry(serial.to_owned()).or_insert_with(|| {
                fleet.drives.push(Drive {
                    serial: serial.to_owned(),
                    model: get(cols.model).to_owned(),
                    firmware: String::new(),
                    capacity_bytes: cols.capacity.and_then(|c| get(c).parse().ok()).unwrap_or(0),
                    days: Vec::new(),
                    raw: Vec::new(),
                    written: Vec::new(),
                    failed_on: None,
                });
                fleet.drives.len() - 1
            });
            let d = &mut fleet.drives[id];
            d.days.push(day);
            d.raw.push(raw);
            d.written.push(written);
            if failed {
                d.failed_on = Some(day);
            }
            fleet.rows += 1;
            fleet.first_day = fleet.first_day.min(day);
            fleet.last_day = fleet.last_day.max(day);
        }
        progress(n + 1, files.len());
    }
    // Files are in date order, but be robust to any order.
    for d in &mut fleet.drives {
        if d.days.windows(2).any(|w| w[0] > w[1]) {
            let mut rows: Vec<(i32, ([f32; ATTRIBUTES.len()], f32))> = d
                .days
                .iter()
                .copied()
                .zip(d.raw.iter().copied().zip(d.written.iter().copied()))
                .collect();
            rows.sort_by_key(|r| r.0);
            let (days, rest): (Vec<i32>, Vec<_>) = rows.into_iter().unzip();
            d.days = days;
            (d.raw, d.written) = rest.into_iter().unzip();
        }
    }
    Ok(fleet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_found_by_name_and_values_may_be_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("2013-04-11.csv"),
            "date,serial_number,model,capacity_bytes,failure,smart_5_raw,smart_9_raw,smart_197_raw\n\
             2013-04-11,A1,M,100,0,0,500,\n2013-04-11,B2,M,100,1,8,900,2\n",
        )
        .unwrap();
        // A day with a different column order.
        std::fs::write(
            dir.path().join("2013-04-10.csv"),
            "serial_number,date,failure,model,smart_9_raw,smart_5_raw\nA1,2013-04-10,0,M,499,0\n",
        )
        .unwrap();
        let f = load(dir.path(), |_, _| {}).unwrap();
        assert_eq!((f.rows, f.drives.len(), f.failures()), (3, 2, 1));
        let a = &f.drives[0];
        assert_eq!(a.serial, "A1");
        assert_eq!(a.days, [15805, 15806]);
        let i9 = attribute_index(9).unwrap();
        assert_eq!((a.raw[0][i9], a.raw[1][i9]), (499.0, 500.0));
        assert!(a.raw[1][attribute_index(197).unwrap()].is_nan());
        assert_eq!(f.drives[1].failed_on, Some(15806));
    }

    #[test]
    fn bad_rows_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("x.csv"),
            "date,serial_number,model,failure\n2013-04-11,A1,M,7\n",
        )
        .unwrap();
        let e = load(dir.path(), |_, _| {}).unwrap_err().to_string();
        assert!(e.contains("x.csv:2") && e.contains("failure flag"), "{e}");
        std::fs::write(dir.path().join("x.csv"), "date,model\n").unwrap();
        let e = load(dir.path(), |_, _| {}).unwrap_err().to_string();
        assert!(e.contains("serial_number"), "{e}");
    }
}
