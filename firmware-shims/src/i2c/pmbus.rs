//! PMBus power supply (PMBus 1.2 part II): input/output voltage, current and
//! power, temperature, fan speed, and STATUS_WORD, over SMBus Read Word.
//!
//! Values use LINEAR11 (5-bit signed exponent, 11-bit signed mantissa) except
//! READ_VOUT, which uses LINEAR16 with the exponent from VOUT_MODE (§8.3).
//! PEC is not used (most PSUs make it optional; the kernel's pmbus core
//! enables it only when the device advertises it).

use super::Error;
use embedded_hal::i2c::I2c;

pub const VOUT_MODE: u8 = 0x20;
pub const STATUS_WORD: u8 = 0x79;
pub const READ_VIN: u8 = 0x88;
pub const READ_IIN: u8 = 0x89;
pub const READ_VOUT: u8 = 0x8B;
pub const READ_IOUT: u8 = 0x8C;
pub const READ_TEMPERATURE_1: u8 = 0x8D;
pub const READ_FAN_SPEED_1: u8 = 0x90;
pub const READ_POUT: u8 = 0x96;
pub const READ_PIN: u8 = 0x97;

/// LINEAR11: `mantissa × 2^exponent`, both two's complement.
pub fn linear11(raw: u16) -> f32 {
    let exp = (raw as i16) >> 11; // sign-extended 5 bits
    let mant = ((raw << 5) as i16) >> 5; // sign-extended 11 bits
    f32::from(mant) * pow2(i32::from(exp))
}

/// LINEAR16: unsigned mantissa, exponent from VOUT_MODE bits 4:0 (signed).
/// `None` if VOUT_MODE is not in linear mode (bits 7:5 = 000).
pub fn linear16(raw: u16, vout_mode: u8) -> Option<f32> {
    if vout_mode >> 5 != 0 {
        return None; // VID or direct mode: needs per-device coefficients
    }
    let exp = ((vout_mode << 3) as i8) >> 3;
    Some(f32::from(raw) * pow2(i32::from(exp)))
}

fn pow2(e: i32) -> f32 {
    let mut v = 1.0f32;
    if e >= 0 {
        for _ in 0..e {
            v *= 2.0;
        }
    } else {
        for _ in 0..-e {
            v /= 2.0;
        }
    }
    v
}

/// STATUS_WORD (PMBus part II §17.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    pub fn vout_fault(self) -> bool {
        self.0 & (1 << 15) != 0
    }
    pub fn iout_pout_fault(self) -> bool {
        self.0 & (1 << 14) != 0
    }
    pub fn input_fault(self) -> bool {
        self.0 & (1 << 13) != 0
    }
    /// POWER_GOOD# is set when power is *not* good.
    pub fn power_not_good(self) -> bool {
        self.0 & (1 << 11) != 0
    }
    pub fn fan_fault(self) -> bool {
        self.0 & (1 << 10) != 0
    }
    pub fn off(self) -> bool {
        self.0 & (1 << 6) != 0
    }
    pub fn vout_ov(self) -> bool {
        self.0 & (1 << 5) != 0
    }
    pub fn iout_oc(self) -> bool {
        self.0 & (1 << 4) != 0
    }
    pub fn vin_uv(self) -> bool {
        self.0 & (1 << 3) != 0
    }
    pub fn temperature(self) -> bool {
        self.0 & (1 << 2) != 0
    }
    pub fn cml(self) -> bool {
        self.0 & (1 << 1) != 0
    }
}

/// One PSU's readings, in volts, amps, watts, °C and RPM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Readings {
    pub vin: f32,
    pub iin: f32,
    pub pin: f32,
    pub vout: Option<f32>,
    pub iout: f32,
    pub pout: f32,
    pub temperature: f32,
    pub fan_rpm: f32,
    pub status: Status,
}

pub struct Psu<I> {
    i2c: I,
    addr: u8,
}

impl<I: I2c> Psu<I> {
    pub fn new(i2c: I, addr: u8) -> Self {
        Psu { i2c, addr }
    }

    pub fn release(self) -> I {
        self.i2c
    }

    /// SMBus Read Word: command, repeated start, two bytes, low byte first.
    pub fn read_word(&mut self, command: u8) -> Result<u16, Error<I::Error>> {
        let mut b = [0u8; 2];
        self.i2c.write_read(self.addr, &[command], &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    pub fn read_byte(&mut self, command: u8) -> Result<u8, Error<I::Error>> {
        let mut b = [0u8; 1];
        self.i2c.write_read(self.addr, &[command], &mut b)?;
        Ok(b[0])
    }

    pub fn read_all(&mut self) -> Result<Readings, Error<I::Error>> {
        let vout_mode = self.read_byte(VOUT_MODE)?;
        Ok(Readings {
            vin: linear11(self.read_word(READ_VIN)?),
            iin: linear11(self.read_word(READ_IIN)?),
            pin: linear11(self.read_word(READ_PIN)?),
            vout: linear16(self.read_word(READ_VOUT)?, vout_mode),
            iout: linear11(self.read_word(READ_IOUT)?),
            pout: linear11(self.read_word(READ_POUT)?),
            temperature: linear11(self.read_word(READ_TEMPERATURE_1)?),
            fan_rpm: linear11(self.read_word(READ_FAN_SPEED_1)?),
            status: Status(self.read_word(STATUS_WORD)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};

    #[test]
    fn linear11_and_linear16_follow_the_spec() {
        // Worked examples: exponent -2 (0b11110), mantissa 481 -> 120.25.
        assert_eq!(linear11(0xF1E1), 120.25);
        // Negative mantissa: exponent 0, mantissa -1.
        assert_eq!(linear11(0x07FF), -1.0);
        // Exponent +3, mantissa 2 -> 16 (a fan speed of 16 RPM units).
        assert_eq!(linear11(0x1802), 16.0);
        // VOUT_MODE 0x17: linear, exponent -9; 12.0 V = 6144.
        assert_eq!(linear16(6144, 0x17), Some(12.0));
        assert_eq!(linear16(6144, 0x40), None, "direct mode needs coefficients");
    }

    #[test]
    fn read_all_issues_smbus_read_words_in_order() {
        let a = 0x58;
        let w = |cmd: u8, v: u16| T::write_read(a, vec![cmd], v.to_le_bytes().to_vec());
        let expect = [
            T::write_read(a, vec![VOUT_MODE], vec![0x17]),
            w(READ_VIN, 0xF1E1),           // 120.25 V
            w(READ_IIN, 0xD240),           // 0x240 * 2^-6 = 9.0 A
            w(READ_PIN, 0x0AD8),           // 0x2D8 * 2^1 = 1456 W
            w(READ_VOUT, 6144),            // 12.0 V
            w(READ_IOUT, 0xE2C0),          // 0x2C0 * 2^-4 = 44.0 A
            w(READ_POUT, 0x0A10),          // 0x210 * 2^1 = 1056 W
            w(READ_TEMPERATURE_1, 0xE230), // 0x230 * 2^-4 = 35.0 °C
            w(READ_FAN_SPEED_1, 0x1A58),   // 0x258 * 2^3 = 4800 RPM
            w(STATUS_WORD, 0x0C04),        // POWER_GOOD#, FANS, TEMPERATURE
        ];
        let mut psu = Psu::new(Mock::new(&expect), a);
        let r = psu.read_all().unwrap();
        assert_eq!((r.vin, r.iin, r.pin), (120.25, 9.0, 1456.0));
        assert_eq!((r.vout, r.iout, r.pout), (Some(12.0), 44.0, 1056.0));
        assert_eq!((r.temperature, r.fan_rpm), (35.0, 4800.0));
        assert!(r.status.power_not_good() && r.status.fan_fault() && r.status.temperature());
        assert!(!r.status.vout_fault() && !r.status.input_fault());
        psu.release().done();
    }
}
