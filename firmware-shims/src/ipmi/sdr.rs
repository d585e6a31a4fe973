//! Sensor Data Repository records (IPMI 2.0 §43) and sensor readings
//! (§35.14): full and compact sensor records, MC device locators, ID strings
//! in all four encodings, and conversion of raw readings and thresholds with
//! the record's linearisation: `y = L[(M·x + B·10^Bexp) · 10^Rexp]`.

/// Why a record or reading could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdrError {
    #[error("record at byte {0} is truncated")]
    Truncated(usize),
    #[error("record at byte {at} has SDR version 0x{version:02x}, not 0x51")]
    Version { at: usize, version: u8 },
}

/// A decoded SDR record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Full(Sensor),
    Compact(Sensor),
    /// Management controller device locator (type 0x12).
    McLocator {
        record_id: u16,
        slave_address: u8,
        name: String,
    },
    /// Any other record type, kept by id and type only.
    Other {
        record_id: u16,
        record_type: u8,
    },
}

/// `Analog (numeric) Data Format`, Sensor Units 1 bits 7:6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalogFormat {
    Unsigned,
    OnesComplement,
    TwosComplement,
    /// Not analog: no numeric reading.
    None,
}

/// Threshold values as raw readings (convert with [`Sensor::convert`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    pub unr: Option<u8>,
    pub uc: Option<u8>,
    pub unc: Option<u8>,
    pub lnr: Option<u8>,
    pub lc: Option<u8>,
    pub lnc: Option<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    pub record_id: u16,
    pub owner: u8,
    pub lun: u8,
    pub number: u8,
    pub entity_id: u8,
    pub entity_instance: u8,
    pub sensor_type: u8,
    pub event_reading_type: u8,
    /// IPMI base unit code (Table 43-15): 1 °C, 4 V, 5 A, 6 W, 18 RPM, ...
    pub base_unit: u8,
    pub format: AnalogFormat,
    /// Full records only: linearisation and factors.
    pub linearization: u8,
    pub m: i16,
    pub b: i16,
    pub b_exp: i8,
    pub r_exp: i8,
    pub thresholds: Thresholds,
    pub name: String,
}

impl Sensor {
    /// Threshold-based sensor (event/reading type 0x01).
    pub fn is_threshold(&self) -> bool {
        self.event_reading_type == 0x01
    }

    /// Raw reading → engineering units; `None` for non-analog sensors or a
    /// linearisation outside the domain (log of 0, ...).
    pub fn convert(&self, raw: u8) -> Option<f64> {
        let x = match self.format {
            AnalogFormat::Unsigned => f64::from(raw),
            AnalogFormat::OnesComplement => {
                let v = raw as i8;
                f64::from(if v < 0 { v + 1 } else { v })
            }
            AnalogFormat::TwosComplement => f64::from(raw as i8),
            AnalogFormat::None => return None,
        };
        let lin = (f64::from(self.m) * x + f64::from(self.b) * 10f64.powi(i32::from(self.b_exp)))
            * 10f64.powi(i32::from(self.r_exp));
        // Round away binary noise from the decimal exponents (12.100000000000001).
        let lin = (lin * 1e9).round() / 1e9;
        let y = match self.linearization {
            0 => lin,
            1 => lin.ln(),
            2 => lin.log10(),
            3 => lin.log2(),
            4 => lin.exp(),
            5 => 10f64.powf(lin),
            6 => lin.exp2(),
            7 => 1.0 / lin,
            8 => lin * lin,
            9 => lin * lin * lin,
            10 => lin.sqrt(),
            11 => lin.cbrt(),
            _ => return None, // 0x70..0x7F: OEM non-linear, needs a formula we do not have
        };
        y.is_finite().then_some(y)
    }
}

/// A Get Sensor Reading response (data after the completion code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub raw: u8,
    pub scanning_enabled: bool,
    pub unavailable: bool,
    /// Threshold comparison bits (threshold sensors) or discrete states 0..=7.
    pub states_lo: u8,
    /// Discrete states 8..=14, when present.
    pub states_hi: u8,
}

impl Reading {
    pub fn parse(data: &[u8]) -> Option<Reading> {
        let (&raw, &flags) = (data.first()?, data.get(1)?);
        Some(Reading {
            raw,
            scanning_enabled: flags & 0x40 != 0,
            unavailable: flags & 0x20 != 0,
            states_lo: data.get(2).copied().unwrap_or(0),
            states_hi: data.get(3).copied().unwrap_or(0) & 0x7f,
        })
    }

    /// Threshold status (threshold sensors): at or beyond which threshold.
    pub fn threshold_status(self) -> ThresholdStatus {
        let s = self.states_lo;
        if s & 0x24 != 0 {
            ThresholdStatus::NonRecoverable
        } else if s & 0x12 != 0 {
            ThresholdStatus::Critical
        } else if s & 0x09 != 0 {
            ThresholdStatus::NonCritical
        } else {
            ThresholdStatus::Ok
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ThresholdStatus {
    Ok,
    NonCritical,
    Critical,
    NonRecoverable,
}

/// Decode an ID string (type/length byte and the bytes after it).
pub fn id_string(type_length: u8, bytes: &[u8]) -> String {
    let len = usize::from(type_length & 0x1f).min(bytes.len());
    let b = &bytes[..len];
    match type_length >> 6 {
        0b11 => b
            .iter()
            .map(|&c| char::from(c))
            .collect::<String>()
            .trim_end_matches('\0')
            .to_owned(),
        0b10 => {
            // 6-bit packed ASCII: four characters per three bytes, LSB first.
            let mut out = String::new();
            for chunk in b.chunks(3) {
                let v = chunk
                    .iter()
                    .rev()
                    .fold(0u32, |acc, &x| (acc << 8) | u32::from(x));
                for i in 0..(chunk.len() * 8 / 6) {
                    let c = u8::try_from((v >> (6 * i)) & 0x3f).expect("6 bits");
                    out.push(char::from(c + 0x20));
                }
            }
            out.trim_end().to_owned()
        }
        0b01 => b
            .iter()
            .flat_map(|&x| [x >> 4, x & 0x0f])
            .map(|n| match n {
                0..=9 => char::from(b'0' + n),
                0xA => ' ',
                0xB => '-',
                0xC => '.',
                0xD => ':',
                0xE => ',',
                _ => '_',
            })
            .collect(),
        // "Unicode" in the spec; in practice vendors put Latin-1 here too.
        _ => b.iter().map(|&c| char::from(c)).collect(),
    }
}

fn signed(v: u16, bits: u32) -> i16 {
    let shift = 16 - bits;
    ((v << shift) as i16) >> shift
}

/// Parse a repository dump: records back to back (what Get SDR returns).
pub fn parse_repository(bytes: &[u8]) -> Result<Vec<Record>, SdrError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = bytes.get(at..at + 5).ok_or(SdrError::Truncated(at))?;
        let len = usize::from(header[4]);
        let rec = bytes.get(at..at + 5 + len).ok_or(SdrError::Truncated(at))?;
        out.push(parse_record(rec).map_err(|e| match e {
            SdrError::Truncated(_) => SdrError::Truncated(at),
            SdrError::Version { version, .. } => SdrError::Version { at, version },
        })?);
        at += 5 + len;
    }
    Ok(out)
}

/// Parse one record (header included).
pub fn parse_record(r: &[u8]) -> Result<Record, SdrError> {
    let g = |i: usize| r.get(i - 1).copied().ok_or(SdrError::Truncated(0)); // 1-based, as the spec tables
    let record_id = u16::from_le_bytes([g(1)?, g(2)?]);
    if g(3)? != 0x51 {
        return Err(SdrError::Version {
            at: 0,
            version: g(3)?,
        });
    }
    let record_type = g(4)?;
    match record_type {
        0x01 | 0x02 => {
            let full = record_type == 0x01;
            let units1 = g(21)?;
            let format = match units1 >> 6 {
                0 => AnalogFormat::Unsigned,
                1 => AnalogFormat::OnesComplement,
                2 => AnalogFormat::TwosComplement,
                _ => AnalogFormat::None,
            };
            let mut s = Sensor {
                record_id,
                owner: g(6)?,
                lun: g(7)? & 0x03,
                number: g(8)?,
                entity_id: g(9)?,
                entity_instance: g(10)?,
                sensor_type: g(13)?,
                event_reading_type: g(14)?,
                base_unit: g(22)?,
                format: if full { format } else { AnalogFormat::None },
                linearization: 0,
                m: 1,
                b: 0,
                b_exp: 0,
                r_exp: 0,
                thresholds: Thresholds::default(),
                name: String::new(),
            };
            let id_at = if full {
                s.linearization = g(24)? & 0x7f;
                s.m = signed(u16::from(g(25)?) | (u16::from(g(26)? >> 6) << 8), 10);
                s.b = signed(u16::from(g(27)?) | (u16::from(g(28)? >> 6) << 8), 10);
                let exps = g(30)?;
                s.r_exp = i8::try_from(signed(u16::from(exps >> 4), 4)).expect("4 bits");
                s.b_exp = i8::try_from(signed(u16::from(exps & 0x0f), 4)).expect("4 bits");
                if s.is_threshold() {
                    // Readable-threshold mask: byte 19, bits 5:0 = UNR UC UNC LNR LC LNC.
                    let readable = g(19)?;
                    let t = |bit: u8, at: usize| -> Result<Option<u8>, SdrError> {
                        if readable & (1 << bit) == 0 {
                            return Ok(None);
                        }
                        Ok(Some(g(at)?))
                    };
                    s.thresholds = Thresholds {
                        unr: t(5, 37)?,
                        uc: t(4, 38)?,
                        unc: t(3, 39)?,
                        lnr: t(2, 40)?,
                        lc: t(1, 41)?,
                        lnc: t(0, 42)?,
                    };
                }
                48
            } else {
                32
            };
            let tl = g(id_at)?;
            s.name = id_string(tl, r.get(id_at..).unwrap_or_default());
            Ok(if full {
                Record::Full(s)
            } else {
                Record::Compact(s)
            })
        }
        0x12 => Ok(Record::McLocator {
            record_id,
            slave_address: g(6)?,
            name: id_string(g(16)?, r.get(16..).unwrap_or_default()),
        }),
        _ => Ok(Record::Other {
            record_id,
            record_type,
        }),
    }
}

#[cfg(test)]
mod tests;
