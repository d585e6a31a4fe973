//! Maxim MAX31790 six-channel fan controller: tachometer counts and faults.
//!
//! TACH COUNT n (0x18 + 2n, MSB first) holds an 11-bit count in bits 15:5 of
//! the tach period; RPM = 60 × SR × 8192 / (NP × count), with SR the speed
//! range from FAN DYNAMICS n (0x08 + n) bits 7:5 (1, 2, 4, 8, 16, 32) and NP
//! the fan's tach pulses per revolution. A count of 0x7FF (register 0xFFE0)
//! means no pulses: the fan is stopped. FAN FAULT STATUS 1 (0x11) bits 5:0
//! flag channels 1–6.

use super::Error;
use embedded_hal::i2c::I2c;

pub const FAN_DYNAMICS: u8 = 0x08;
pub const FAN_FAULT_STATUS_1: u8 = 0x11;
pub const TACH_COUNT: u8 = 0x18;

const SPEED_RANGE: [u32; 8] = [1, 2, 4, 8, 16, 32, 32, 32];
const STOPPED: u16 = 0xFFE0;

/// RPM from a TACH COUNT register and FAN DYNAMICS register.
pub fn rpm(tach_reg: u16, dynamics: u8, pulses_per_rev: u8) -> Option<f32> {
    let count = u32::from(tach_reg >> 5);
    if tach_reg & 0xFFE0 == STOPPED {
        return Some(0.0);
    }
    if count == 0 || pulses_per_rev == 0 {
        return None;
    }
    let sr = SPEED_RANGE[usize::from(dynamics >> 5)];
    let num = 60 * sr * 8192;
    Some(num as f32 / (u32::from(pulses_per_rev) * count) as f32)
}

/// One channel's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fan {
    pub rpm: f32,
    pub fault: bool,
}

pub struct Max31790<I> {
    i2c: I,
    addr: u8,
    pulses_per_rev: u8,
}

impl<I: I2c> Max31790<I> {
    pub fn new(i2c: I, addr: u8, pulses_per_rev: u8) -> Self {
        Max31790 {
            i2c,
            addr,
            pulses_per_rev,
        }
    }

    pub fn release(self) -> I {
        self.i2c
    }

    fn read(&mut self, reg: u8, buf: &mut [u8]) -> Result<(), Error<I::Error>> {
        self.i2c.write_read(self.addr, &[reg], buf)?;
        Ok(())
    }

    /// Channel `ch` (0..6).
    pub fn fan(&mut self, ch: u8) -> Result<Fan, Error<I::Error>> {
        if ch > 5 {
            return Err(Error::Invalid);
        }
        let mut dynamics = [0u8; 1];
        self.read(FAN_DYNAMICS + ch, &mut dynamics)?;
        let mut tach = [0u8; 2];
        self.read(TACH_COUNT + 2 * ch, &mut tach)?;
        let mut fault = [0u8; 1];
        self.read(FAN_FAULT_STATUS_1, &mut fault)?;
        let rpm = rpm(u16::from_be_bytes(tach), dynamics[0], self.pulses_per_rev)
            .ok_or(Error::Invalid)?;
        Ok(Fan {
            rpm,
            fault: fault[0] & (1 << ch) != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};

    #[test]
    fn rpm_formula_and_stopped_marker() {
        // SR = 4 (dynamics 0x4C, the power-on default), NP = 2, count 1000:
        // 60 * 4 * 8192 / (2 * 1000) = 983.04 RPM.
        assert_eq!(rpm(1000 << 5, 0x4C, 2), Some(983.04));
        assert_eq!(rpm(0xFFE0, 0x4C, 2), Some(0.0), "no tach pulses");
        assert_eq!(rpm(0, 0x4C, 2), None);
        // SR = 32 with the faster count: 60 * 32 * 8192 / (2 * 512) = 15360.
        assert_eq!(rpm(512 << 5, 0b1010_0000, 2), Some(15360.0));
    }

    #[test]
    fn reads_a_channel_and_its_fault_bit() {
        let a = 0x20;
        let expect = [
            T::write_read(a, vec![FAN_DYNAMICS + 2], vec![0x4C]),
            T::write_read(
                a,
                vec![TACH_COUNT + 4],
                (1000u16 << 5).to_be_bytes().to_vec(),
            ),
            T::write_read(a, vec![FAN_FAULT_STATUS_1], vec![0b0000_0100]),
        ];
        let mut m = Max31790::new(Mock::new(&expect), a, 2);
        assert_eq!(
            m.fan(2).unwrap(),
            Fan {
                rpm: 983.04,
                fault: true
            }
        );
        m.release().done();
    }
}
