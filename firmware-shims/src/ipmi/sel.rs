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

impl SelEntry {
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
        let what = match (self.event_type, self.sensor_type) {
            (0x01, _) => THRESHOLD
                .get(usize::from(self.offset))
                .map(|s| (*s).to_owned()),
            (0x6f, 0x08) => PSU.get(usize::from(self.offset)).map(|s| (*s).to_owned()),
            _ => None,
        }
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
}
