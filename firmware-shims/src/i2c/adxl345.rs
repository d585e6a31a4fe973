//! Analog Devices ADXL345 accelerometer, for vibration: full-resolution mode
//! (3.9 mg/LSB at every range), six data bytes DATAX0..DATAZ1 (0x32..0x37,
//! little-endian, read in one multi-byte transfer so the axes are from the
//! same sample), and a window summary: RMS and peak of the AC part (the
//! per-axis mean removed, which takes out gravity and mounting tilt).

use super::{sqrt, Error};
use embedded_hal::i2c::I2c;

pub const DEVID: u8 = 0x00;
pub const BW_RATE: u8 = 0x2C;
pub const POWER_CTL: u8 = 0x2D;
pub const DATA_FORMAT: u8 = 0x31;
pub const DATAX0: u8 = 0x32;
/// DEVID reads 0xE5 (datasheet register 0x00).
pub const DEVICE_ID: u8 = 0xE5;
/// Full resolution: 3.9 mg per LSB.
pub const G_PER_LSB: f32 = 0.0039;

/// Vibration over a window of samples, in g.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vibration {
    pub rms_g: f32,
    pub peak_g: f32,
    pub samples: usize,
}

/// Summarise raw samples (x, y, z counts).
pub fn vibration(samples: &[[i16; 3]]) -> Option<Vibration> {
    if samples.is_empty() {
        return None;
    }
    let n = samples.len() as f32;
    // Integer sums: the mean of identical samples is exactly that sample.
    let mut sum = [0i64; 3];
    for s in samples {
        for a in 0..3 {
            sum[a] += i64::from(s[a]);
        }
    }
    let mean = sum.map(|v| v as f32 / n);
    let (mut sum_sq, mut peak) = (0f32, 0f32);
    for s in samples {
        let mut m2 = 0f32;
        for a in 0..3 {
            let d = (f32::from(s[a]) - mean[a]) * G_PER_LSB;
            m2 += d * d;
        }
        sum_sq += m2;
        peak = peak.max(sqrt(m2));
    }
    Some(Vibration {
        rms_g: sqrt(sum_sq / n),
        peak_g: peak,
        samples: samples.len(),
    })
}

pub struct Adxl345<I> {
    i2c: I,
    addr: u8,
}

impl<I: I2c> Adxl345<I> {
    /// Check DEVID, then configure: 100 Hz output rate, full resolution
    /// ±16 g, measurement mode.
    pub fn init(mut i2c: I, addr: u8) -> Result<Self, Error<I::Error>> {
        let mut id = [0u8; 1];
        i2c.write_read(addr, &[DEVID], &mut id)?;
        if id[0] != DEVICE_ID {
            return Err(Error::WrongDevice {
                expected: DEVICE_ID,
                found: id[0],
            });
        }
        i2c.write(addr, &[BW_RATE, 0x0A])?;
        i2c.write(addr, &[DATA_FORMAT, 0x0B])?;
        i2c.write(addr, &[POWER_CTL, 0x08])?;
        Ok(Adxl345 { i2c, addr })
    }

    pub fn release(self) -> I {
        self.i2c
    }

    /// One (x, y, z) sample in counts.
    pub fn sample(&mut self) -> Result<[i16; 3], Error<I::Error>> {
        let mut b = [0u8; 6];
        self.i2c.write_read(self.addr, &[DATAX0], &mut b)?;
        Ok([
            i16::from_le_bytes([b[0], b[1]]),
            i16::from_le_bytes([b[2], b[3]]),
            i16::from_le_bytes([b[4], b[5]]),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};

    #[test]
    fn init_checks_identity_and_configures() {
        let a = 0x53;
        let expect = [
            T::write_read(a, vec![DEVID], vec![0xE5]),
            T::write(a, vec![BW_RATE, 0x0A]),
            T::write(a, vec![DATA_FORMAT, 0x0B]),
            T::write(a, vec![POWER_CTL, 0x08]),
            // x = +1 g (256 counts), y = -2, z = 0x0100
            T::write_read(a, vec![DATAX0], vec![0x00, 0x01, 0xFE, 0xFF, 0x00, 0x01]),
        ];
        let mut acc = Adxl345::init(Mock::new(&expect), a).unwrap();
        assert_eq!(acc.sample().unwrap(), [256, -2, 256]);
        acc.release().done();

        let wrong = [T::write_read(a, vec![DEVID], vec![0x00])];
        let mut m = Mock::new(&wrong);
        let e = Adxl345::init(m.clone(), a).err().unwrap();
        assert_eq!(
            e,
            Error::WrongDevice {
                expected: 0xE5,
                found: 0x00
            }
        );
        m.done();
    }

    #[test]
    fn vibration_removes_gravity_and_measures_rms_and_peak() {
        // z carries 1 g of gravity; x oscillates ±100 counts (±0.39 g).
        let samples: Vec<[i16; 3]> = (0..100)
            .map(|i| [if i % 2 == 0 { 100 } else { -100 }, 0, 256])
            .collect();
        let v = vibration(&samples).unwrap();
        assert!((v.rms_g - 0.39).abs() < 1e-5, "{v:?}");
        assert!((v.peak_g - 0.39).abs() < 1e-5, "{v:?}");
        let still = vibration(&[[0, 0, 256]; 10]).unwrap();
        assert_eq!((still.rms_g, still.peak_g), (0.0, 0.0));
        assert_eq!(vibration(&[]), None);
    }

    #[test]
    fn newton_sqrt_is_accurate() {
        for x in [0.0f32, 1e-6, 0.1521, 2.0, 1e6] {
            assert!(
                (sqrt(x) - x.sqrt()).abs() <= 1e-6 * x.sqrt().max(1.0),
                "{x}"
            );
        }
    }
}
