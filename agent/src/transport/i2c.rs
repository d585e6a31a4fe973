//! An embedded-hal I2C bus over Linux i2c-dev that also works on SMBus-only
//! adapters.
//!
//! Many server buses are SMBus controllers without plain I2C transfers
//! (Intel PCH `i2c-i801`, the `i2c-stub` test adapter): `I2C_RDWR` fails
//! there with `EOPNOTSUPP`. The drivers in `firmware_shims::i2c` only ever
//! do register reads and writes, which map one-to-one onto SMBus commands,
//! so on such an adapter [`LinuxBus`] replays the same transaction as
//! SMBus calls instead:
//!
//! | transaction                         | SMBus command            |
//! |-------------------------------------|--------------------------|
//! | write `[reg]`, read 1 byte          | read byte data           |
//! | write `[reg]`, read 2 bytes         | read word data           |
//! | write `[reg]`, read 3..=32 bytes    | read I2C block data      |
//! | write `[reg]`                       | send byte                |
//! | write `[reg, b]`                    | write byte data          |
//! | write `[reg, lo, hi]`               | write word data          |
//! | write `[reg, ..]` (up to 32 bytes)  | write I2C block data     |
//! | read 1 byte                         | receive byte             |
//!
//! SMBus words are little-endian on the wire, so a word is returned as
//! `[low, high]`: the same bytes, in the same order, as the I2C transfer.

use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};
use i2cdev::core::I2CDevice;
use i2cdev::linux::{LinuxI2CDevice, LinuxI2CError};
use std::path::{Path, PathBuf};

/// How the adapter is driven: decided on the first transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Try `I2C_RDWR`; fall back to SMBus on `EOPNOTSUPP`.
    Auto,
    I2c,
    Smbus,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BusError(std::io::Error);

impl From<LinuxI2CError> for BusError {
    fn from(e: LinuxI2CError) -> BusError {
        BusError(e.into())
    }
}

fn unsupported(what: &str) -> BusError {
    BusError(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!("SMBus adapter: {what}"),
    ))
}

impl embedded_hal::i2c::Error for BusError {
    fn kind(&self) -> ErrorKind {
        // https://www.kernel.org/doc/html/latest/i2c/fault-codes.html
        match self.0.raw_os_error() {
            Some(libc::EBUSY | libc::EINVAL | libc::EIO) => ErrorKind::Bus,
            Some(libc::EAGAIN) => ErrorKind::ArbitrationLoss,
            Some(libc::ENODEV) => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data),
            Some(libc::ENXIO) => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            _ => ErrorKind::Other,
        }
    }
}

/// One i2c-dev bus, driven as I2C or SMBus.
pub struct LinuxBus {
    path: PathBuf,
    mode: Mode,
    i2c: Option<linux_embedded_hal::I2cdev>,
    smbus: Option<(u8, LinuxI2CDevice)>,
}

impl std::fmt::Debug for LinuxBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxBus")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl LinuxBus {
    pub fn open(path: &Path, mode: Mode) -> Result<LinuxBus, BusError> {
        // Open now so a missing bus is reported as such.
        let i2c = match mode {
            Mode::Smbus => None,
            Mode::Auto | Mode::I2c => Some(linux_embedded_hal::I2cdev::new(path)?),
        };
        if mode == Mode::Smbus {
            std::fs::metadata(path).map_err(BusError)?;
        }
        Ok(LinuxBus {
            path: path.to_owned(),
            mode,
            i2c,
            smbus: None,
        })
    }

    /// The mode in use: `Auto` until the first transaction decides.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn smbus(&mut self, address: u8) -> Result<&mut LinuxI2CDevice, BusError> {
        if self.smbus.as_ref().is_none_or(|(a, _)| *a != address) {
            self.smbus = Some((
                address,
                LinuxI2CDevice::new(&self.path, u16::from(address))?,
            ));
        }
        Ok(&mut self.smbus.as_mut().expect("set above").1)
    }

    fn smbus_transaction(
        &mut self,
        address: u8,
        ops: &mut [Operation<'_>],
    ) -> Result<(), BusError> {
        let dev = self.smbus(address)?;
        match ops {
            [Operation::Write(w), Operation::Read(r)] => {
                let &[reg] = &w[..] else {
                    return Err(unsupported("a read after a write of more than one byte"));
                };
                match r.len() {
                    1 => r[0] = dev.smbus_read_byte_data(reg)?,
                    2 => r.copy_from_slice(&dev.smbus_read_word_data(reg)?.to_le_bytes()),
                    3..=32 => {
                        let n = u8::try_from(r.len()).expect("<= 32");
                        let got = dev.smbus_read_i2c_block_data(reg, n)?;
                        if got.len() != r.len() {
                            return Err(unsupported("short I2C block read"));
                        }
                        r.copy_from_slice(&got);
                    }
                    _ => return Err(unsupported("a read of 0 or more than 32 bytes")),
                }
            }
            [Operation::Write(w)] => match &w[..] {
                [reg] => dev.smbus_write_byte(*reg)?,
                [reg, b] => dev.smbus_write_byte_data(*reg, *b)?,
                [reg, lo, hi] => dev.smbus_write_word_data(*reg, u16::from_le_bytes([*lo, *hi]))?,
                [reg, rest @ ..] if rest.len() <= 32 => {
                    dev.smbus_write_i2c_block_data(*reg, rest)?;
                }
                _ => return Err(unsupported("a write of 0 or more than 33 bytes")),
            },
            [Operation::Read(r)] if r.len() == 1 => r[0] = dev.smbus_read_byte()?,
            _ => return Err(unsupported("a transaction with no SMBus equivalent")),
        }
        Ok(())
    }
}

impl ErrorType for LinuxBus {
    type Error = BusError;
}

impl I2c for LinuxBus {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), BusError> {
        if self.mode != Mode::Smbus {
            let bus = self.i2c.as_mut().expect("open in I2C and auto modes");
            match bus.transaction(address, operations) {
                Ok(()) => {
                    self.mode = Mode::I2c;
                    return Ok(());
                }
                Err(e) => {
                    let errno = match e.inner() {
                        LinuxI2CError::Errno(n) => Some(*n),
                        LinuxI2CError::Io(io) => io.raw_os_error(),
                    };
                    let e = BusError(errno.map_or_else(
                        || std::io::Error::other(e.to_string()),
                        std::io::Error::from_raw_os_error,
                    ));
                    let plain_i2c_unsupported = errno == Some(libc::EOPNOTSUPP);
                    if self.mode == Mode::I2c || !plain_i2c_unsupported {
                        return Err(e);
                    }
                    self.mode = Mode::Smbus;
                    self.i2c = None;
                }
            }
        }
        self.smbus_transaction(address, operations)
    }
}
