//! `no_std` embedded-hal 1.0 drivers for the chips a server's I2C/SMBus
//! buses carry: PMBus power supplies, an accelerometer for vibration, a
//! temperature sensor and a fan controller. Each takes any
//! `embedded_hal::i2c::I2c` (Linux i2c-dev through `linux-embedded-hal` in
//! the agent, recorded transactions in tests) and a 7-bit address.

pub mod adxl345;
pub mod max31790;
pub mod pmbus;
pub mod tmp75;

/// A driver error: the bus failed, or the chip answered something impossible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    Bus(E),
    /// The chip's identity register does not match (wrong address or chip).
    WrongDevice {
        expected: u8,
        found: u8,
    },
    /// A reading the chip documents as invalid (e.g. a stopped-fan marker).
    Invalid,
}

impl<E> From<E> for Error<E> {
    fn from(e: E) -> Self {
        Error::Bus(e)
    }
}

/// Square root by Newton's method (no `std`, no libm); exact enough for RMS.
pub(crate) fn sqrt(x: f32) -> f32 {
    if x <= 0.0 || !x.is_finite() {
        return if x == 0.0 || x.is_infinite() { x } else { 0.0 };
    }
    let mut g = if x > 1.0 { x / 2.0 } else { 1.0 };
    for _ in 0..30 {
        let next = 0.5 * (g + x / g);
        if (next - g).abs() <= f32::EPSILON * next {
            return next;
        }
        g = next;
    }
    g
}
