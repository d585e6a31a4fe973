//! System Event Log records (IPMI 2.0 §32): the 16-byte SEL entries that Get
//! SEL Entry returns, decoded into the sensor, direction and event offset.

/// One SEL record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelEntry {
    pub record_id: u16,
    /// 0x02 system event; 0xC0–0xDF OEM timestamped; 0xE0–0xFF OEM.
    pub record_type: u8,
    /// Seconds since 1970 (BMC clock); 0 for OEM non-timestamped records.
    pub timestamp: u32,
    pub generator: u16,
    pub sensor_type: u8,
    pub sensor_number: u8,
    /// false = assertion, true = deassertion.
    pub deassertion: bool,
    /// Event/reading type code (0x01 threshold, 0x6F sensor-specific, ...).
    pub event_type: u8,
    /// Event offset (event data 1, bits 3:0).
    pub offset: u8,
    pub data: [u8; 3],
}

/// How much a SEL entry matters to an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl SelEntry {
    /// Severity of the event: deassertions are informational; threshold
    /// crossings by level; the sensor-specific offsets of PSUs, processors,
    /// memory and drive slots (IPMI 2.0 Table 42-3) by what they mean for
    /// the component; anything else (OEM, unknown) is a warning, since it
    /// was logged for a reason.
    pub fn severity(&self) -> Severity {
        if self.deassertion {
            return Severity::Info;
        }
        match (self.event_type, self.sensor_type, self.offset) {
            // Non-critical crossings.
            (0x01, _, 0 | 1 | 6 | 7) => Severity::Warning,
            // Critical and non-recoverable crossings.
            (0x01, _, 2..=5 | 8..=11) => Severity::Critical,
            // PSU: presence; failure; predictive; input lost (x2); out of range; config.
            (0x6f, 0x08, 0) => Severity::Info,
            (0x6f, 0x08, 1 | 3 | 4) => Severity::Critical,
            // Processor: IERR, thermal trip, FRB failures.
            (0x6f, 0x07, 0..=4) => Severity::Critical,
            // Memory: correctable ECC is a warning; uncorrectable, parity, disabled are not.
            (0x6f, 0x0c, 0 | 5) => Severity::Warning,
            (0x6f, 0x0c, 1..=4) => Severity::Critical,
            // Drive slot: presence; fault; predictive failure.
            (0x6f, 0x0d, 0) => Severity::Info,
            (0x6f, 0x0d, 1) => Severity::Critical,
            _ => Severity::Warning,
        }
    }

    /// Device time in ms since the Unix epoch, when the record has one. IPMI
    /// timestamps up to 0x20000000 count from BMC initialisation, not 1970
    /// (IPMI 2.0 §37), and are not absolute times.
    pub fn unix_ms(&self) -> Option<i64> {
        (self.timestamp > 0x2000_0000).then(|| i64::from(self.timestamp) * 1000)
    }

    pub fn parse(b: &[u8]) -> Option<SelEntry> {
        let b: &[u8; 16] = b.get(..16)?.try_into().ok()?;
        let system = b[2] == 0x02;
        Some(SelEntry {
            record_id: u16::from_le_bytes([b[0], b[1]]),
            record_type: b[2],
            timestamp: if b[2] < 0xE0 {
                u32::from_le_bytes([b[3], b[4], b[5], b[6]])
            } else {
                0
            },
            generator: if system {
                u16::from_le_bytes([b[7], b[8]])
            } else {
                0
            },
            sensor_type: if system { b[10] } else { 0 },
            sensor_number: if system { b[11] } else { 0 },
            deassertion: system && b[12] & 0x80 != 0,
            event_type: if system { b[12] & 0x7f } else { 0 },
            offset: if system { b[13] & 0x0f } else { 0 },
            data: [b[13], b[14], b[15]],
        })
    }

    /// A human description for the common cases (threshold crossings and
    /// power-supply states), else the raw codes.
    pub fn describe(&self) -> String {
        const THRESHOLD: [&str; 12] = [
            "lower non-critical going low",
            "lower non-critical going high",
            "lower critical going low",
            "lower critical going high",
            "lower non-recoverable going low",
            "lower non-recoverable going high",
            "upper non-critical going low",
            "upper non-critical going high",
            "upper critical going low",
            "upper critical going high",
            "upper non-recoverable going low",
            "upper non-recoverable going high",
        ];
        const PSU: [&str; 7] = [
            "presence detected",
            "power supply failure detected",
            "predictive failure",
            "input lost (AC/DC)",
            "input lost or out of range",
            "input out of range but present",
            "configuration error",
        ];
        const PROCESSOR: [&str; 6] = [
            "IERR",
            "thermal trip",
            "FRB1/BIST failure",
            "FRB2/hang in POST failure",
            "FRB3/processor startup failure",
            "configuration error",
        ];
        const MEMORY: [&str; 6] = [
            "correctable ECC",
            "uncorrectable ECC",
            "parity",
            "memory scrub failed",
            "memory device disabled",
            "correctable ECC logging limit reached",
        ];
        const DRIVE: [&str; 3] = ["drive presence", "drive fault", "predictive failure"];
        let table: &[&str] = match (self.event_type, self.sensor_type) {
            (0x01, _) => &THRESHOLD,
            (0x6f, 0x08) => &PSU,
            (0x6f, 0x07) => &PROCESSOR,
            (0x6f, 0x0c) => &MEMORY,
            (0x6f, 0x0d) => &DRIVE,
            _ => &[],
        };
        let what = table
            .get(usize::from(self.offset))
            .map(|s| (*s).to_owned())
            .unwrap_or_else(|| {
                format!(
                    "event type 0x{:02x} offset {}",
                    self.event_type, self.offset
                )
            });
        let dir = if self.deassertion {
            "deasserted"
        } else {
            "asserted"
        };
        format!(
            "sensor {} (type 0x{:02x}): {what} {dir}",
            self.sensor_number, self.sensor_type
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_and_psu_events_decode() {
        // Upper critical going high on sensor 1 (temperature), from the BMC at 0x20.
        let rec = [
            0x05, 0x00, 0x02, 0x10, 0x20, 0x30, 0x40, 0x20, 0x00, 0x04, 0x01, 0x01, 0x01, 0x59,
            0x61, 0x5f,
        ];
        let e = SelEntry::parse(&rec).unwrap();
        assert_eq!(
            (e.record_id, e.timestamp, e.sensor_number, e.offset),
            (5, 0x4030_2010, 1, 9)
        );
        assert_eq!(
            e.describe(),
            "sensor 1 (type 0x01): upper critical going high asserted"
        );
        let psu = [
            0x06, 0x00, 0x02, 0, 0, 0, 0, 0x20, 0x00, 0x04, 0x08, 0x08, 0x6f, 0x01, 0xff, 0xff,
        ];
        assert_eq!(
            SelEntry::parse(&psu).unwrap().describe(),
            "sensor 8 (type 0x08): power supply failure detected asserted"
        );
        assert_eq!(SelEntry::parse(&rec[..15]), None);
    }

    #[test]
    fn severity_follows_the_event_meaning() {
        let entry = |event_type, sensor_type, offset, deassertion| SelEntry {
            record_id: 1,
            record_type: 2,
            timestamp: 0x6000_0000,
            generator: 0x20,
            sensor_type,
            sensor_number: 1,
            deassertion,
            event_type,
            offset,
            data: [offset, 0xff, 0xff],
        };
        assert_eq!(entry(0x01, 0x01, 9, false).severity(), Severity::Critical);
        assert_eq!(entry(0x01, 0x01, 7, false).severity(), Severity::Warning);
        assert_eq!(entry(0x01, 0x01, 9, true).severity(), Severity::Info);
        assert_eq!(entry(0x6f, 0x08, 0, false).severity(), Severity::Info);
        assert_eq!(entry(0x6f, 0x08, 1, false).severity(), Severity::Critical);
        assert_eq!(entry(0x6f, 0x08, 2, false).severity(), Severity::Warning);
        assert_eq!(entry(0x6f, 0x0c, 0, false).severity(), Severity::Warning);
        assert_eq!(entry(0x6f, 0x0c, 1, false).severity(), Severity::Critical);
        assert_eq!(entry(0x6f, 0x0d, 1, false).severity(), Severity::Critical);
        assert_eq!(
            entry(0x6f, 0x0c, 1, false).describe(),
            "sensor 1 (type 0x0c): uncorrectable ECC asserted"
        );
        assert_eq!(entry(0x70, 0xc0, 3, false).severity(), Severity::Warning);
        assert_eq!(
            entry(0x01, 0x01, 9, false).unix_ms(),
            Some(0x6000_0000 * 1000)
        );
        let relative = SelEntry {
            timestamp: 0x100,
            ..entry(0x01, 0x01, 9, false)
        };
        assert_eq!(relative.unix_ms(), None);
    }
}
