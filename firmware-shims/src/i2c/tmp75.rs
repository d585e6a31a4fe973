//! TI TMP75 (and LM75-compatible) temperature sensor: register 0x00 holds the
//! temperature left-justified in two bytes, MSB first; the TMP75 resolution
//! (9..=12 bits) is set by configuration bits R1:R0 (register 0x01, bits 6:5).

use super::Error;
use embedded_hal::i2c::I2c;

pub const TEMPERATURE: u8 = 0x00;
pub const CONFIGURATION: u8 = 0x01;

/// Temperature register value → °C (any resolution: unused low bits are 0).
pub fn celsius(raw: [u8; 2]) -> f32 {
    // 12-bit two's complement in bits 15:4, 0.0625 °C per LSB.
    f32::from(i16::from_be_bytes(raw) >> 4) * 0.0625
}

pub struct Tmp75<I> {
    i2c: I,
    addr: u8,
}

impl<I: I2c> Tmp75<I> {
    pub fn new(i2c: I, addr: u8) -> Self {
        Tmp75 { i2c, addr }
    }

    pub fn release(self) -> I {
        self.i2c
    }

    /// Select 12-bit resolution (R1:R0 = 11), keeping continuous conversion.
    pub fn set_12_bit(&mut self) -> Result<(), Error<I::Error>> {
        self.i2c.write(self.addr, &[CONFIGURATION, 0b0110_0000])?;
        Ok(())
    }

    pub fn read_celsius(&mut self) -> Result<f32, Error<I::Error>> {
        let mut b = [0u8; 2];
        self.i2c.write_read(self.addr, &[TEMPERATURE], &mut b)?;
        Ok(celsius(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};

    #[test]
    fn datasheet_temperature_codes() {
        // Codes of the TMP75 datasheet's 12-bit temperature data format table,
        // plus 25.0625 °C (one LSB above 25 °C).
        assert_eq!(celsius([0x7F, 0xF0]), 127.9375);
        assert_eq!(celsius([0x64, 0x00]), 100.0);
        assert_eq!(celsius([0x19, 0x10]), 25.0625);
        assert_eq!(celsius([0x00, 0x40]), 0.25);
        assert_eq!(celsius([0x00, 0x00]), 0.0);
        assert_eq!(celsius([0xFF, 0xC0]), -0.25);
        assert_eq!(celsius([0xE7, 0x00]), -25.0);
        assert_eq!(celsius([0xC9, 0x00]), -55.0);
        // LM75 9-bit code 0x19 0x80 = 25.5 °C reads the same way.
        assert_eq!(celsius([0x19, 0x80]), 25.5);
    }

    #[test]
    fn configures_then_reads() {
        let a = 0x48;
        let expect = [
            T::write(a, vec![CONFIGURATION, 0x60]),
            T::write_read(a, vec![TEMPERATURE], vec![0x19, 0x10]),
        ];
        let mut t = Tmp75::new(Mock::new(&expect), a);
        t.set_12_bit().unwrap();
        assert_eq!(t.read_celsius().unwrap(), 25.0625);
        t.release().done();
    }
}
