//! In-band IPMI: the host's own BMC through the Linux `ipmi_devintf` device
//! (`/dev/ipmi0`), the interface ipmitool calls "open".
//!
//! The kernel driver (`ipmi_si`: KCS, SMIC, BT or SSIF) does the framing; we
//! hand it (netfn, cmd, data) with `IPMICTL_SEND_COMMAND` addressed to the
//! system interface, wait with `poll(2)`, and take the answer with
//! `IPMICTL_RECEIVE_MSG_TRUNC`, matching it by message id. Anything else the
//! driver queues (events, late answers to requests we gave up on) is dropped.
//!
//! This is the only `unsafe` in the agent: three `ioctl(2)`/`poll(2)` calls
//! on `#[repr(C)]` copies of `<linux/ipmi.h>` structures, each with a SAFETY
//! note. The calls are blocking, so each request runs on the blocking pool;
//! one request is in flight at a time (the link is `&mut`).
#![allow(unsafe_code)]

use super::{IpmiError, Link};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `<linux/ipmi.h>`, asm-generic ioctl encoding (x86, arm, riscv).
mod sys {
    use libc::{c_int, c_long, c_short, c_uchar, c_uint, c_ulong, c_ushort};

    pub const IPMI_SYSTEM_INTERFACE_ADDR_TYPE: c_int = 0x0c;
    pub const IPMI_BMC_CHANNEL: c_short = 0x0f;
    pub const IPMI_RESPONSE_RECV_TYPE: c_int = 1;
    /// IPMI_MAX_MSG_LENGTH.
    pub const MAX_MSG: u16 = 272;
    /// IPMI_MAX_ADDR_SIZE.
    pub const MAX_ADDR: c_uint = 32;

    #[repr(C)]
    pub struct SystemInterfaceAddr {
        pub addr_type: c_int,
        pub channel: c_short,
        pub lun: c_uchar,
    }
    #[expect(
        clippy::cast_possible_truncation,
        reason = "an 8-byte struct; its size fits any integer"
    )]
    pub const SYSTEM_INTERFACE_ADDR_LEN: c_uint = size_of::<SystemInterfaceAddr>() as c_uint;

    #[repr(C)]
    pub struct Msg {
        pub netfn: c_uchar,
        pub cmd: c_uchar,
        pub data_len: c_ushort,
        pub data: *mut c_uchar,
    }

    #[repr(C)]
    pub struct Req {
        pub addr: *mut c_uchar,
        pub addr_len: c_uint,
        pub msgid: c_long,
        pub msg: Msg,
    }

    #[repr(C)]
    pub struct Recv {
        pub recv_type: c_int,
        pub addr: *mut c_uchar,
        pub addr_len: c_uint,
        pub msgid: c_long,
        pub msg: Msg,
    }

    const fn ioc(dir: c_ulong, nr: c_ulong, size: usize) -> c_ulong {
        (dir << 30) | ((size as c_ulong) << 16) | ((b'i' as c_ulong) << 8) | nr
    }
    /// `_IOR('i', 13, struct ipmi_req)`.
    pub const IPMICTL_SEND_COMMAND: c_ulong = ioc(2, 13, size_of::<Req>());
    /// `_IOWR('i', 11, struct ipmi_recv)`.
    pub const IPMICTL_RECEIVE_MSG_TRUNC: c_ulong = ioc(3, 11, size_of::<Recv>());
}

/// The local BMC through `ipmi_devintf`.
#[derive(Debug)]
pub struct OpenLink {
    path: PathBuf,
    timeout: Duration,
    /// `None` while a request holds it on the blocking pool, or after a failure.
    file: Option<File>,
    msgid: i64,
}

impl OpenLink {
    /// Open the device now, so a missing driver is reported at start-up.
    pub fn new(path: &Path, timeout: Duration) -> Result<OpenLink, IpmiError> {
        Ok(OpenLink {
            path: path.to_owned(),
            timeout,
            file: Some(open(path)?),
            msgid: 0,
        })
    }
}

fn open(path: &Path) -> Result<File, IpmiError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| {
            IpmiError::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ))
        })
}

/// One request/response on the device, blocking for at most `timeout`.
fn exchange(
    file: &File,
    msgid: i64,
    netfn: u8,
    cmd: u8,
    data: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, IpmiError> {
    let fd = file.as_raw_fd();
    let mut addr = sys::SystemInterfaceAddr {
        addr_type: sys::IPMI_SYSTEM_INTERFACE_ADDR_TYPE,
        channel: sys::IPMI_BMC_CHANNEL,
        lun: 0,
    };
    let mut body = data.to_vec();
    let data_len = u16::try_from(body.len())
        .ok()
        .filter(|&n| n <= sys::MAX_MSG)
        .ok_or(IpmiError::Protocol(
            "request longer than IPMI_MAX_MSG_LENGTH",
        ))?;
    let mut req = sys::Req {
        addr: (&raw mut addr).cast(),
        addr_len: sys::SYSTEM_INTERFACE_ADDR_LEN,
        msgid,
        msg: sys::Msg {
            netfn,
            cmd,
            data_len,
            data: body.as_mut_ptr(),
        },
    };
    // SAFETY: `fd` is an open descriptor owned by `file`, which outlives the
    // call. `req` is a `#[repr(C)]` `struct ipmi_req` whose pointers point at
    // `addr` (with its exact size in `addr_len`) and at `body` (`data_len`
    // bytes); both live until the call returns and the kernel only reads them.
    let rc = unsafe { libc::ioctl(fd, sys::IPMICTL_SEND_COMMAND as _, &raw mut req) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(IpmiError::Timeout(1));
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid `pollfd` and a count of 1.
        let n = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        if n == 0 {
            continue; // the deadline check above ends the wait
        }
        let mut raddr = [0u8; sys::MAX_ADDR as usize];
        let mut rbody = [0u8; sys::MAX_MSG as usize];
        let mut recv = sys::Recv {
            recv_type: 0,
            addr: raddr.as_mut_ptr(),
            addr_len: sys::MAX_ADDR,
            msgid: 0,
            msg: sys::Msg {
                netfn: 0,
                cmd: 0,
                data_len: sys::MAX_MSG,
                data: rbody.as_mut_ptr(),
            },
        };
        // SAFETY: `recv` is a `#[repr(C)]` `struct ipmi_recv`; its pointers
        // point at `raddr` and `rbody`, whose sizes are in `addr_len` and
        // `data_len`. The kernel writes at most those many bytes (the TRUNC
        // variant truncates instead of failing) and updates the lengths.
        let rc = unsafe { libc::ioctl(fd, sys::IPMICTL_RECEIVE_MSG_TRUNC as _, &raw mut recv) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                continue;
            }
            return Err(e.into());
        }
        if recv.recv_type != sys::IPMI_RESPONSE_RECV_TYPE
            || recv.msgid != msgid
            || recv.msg.cmd != cmd
        {
            continue; // an event or a late answer to an abandoned request
        }
        let len = usize::from(recv.msg.data_len.min(sys::MAX_MSG));
        let (&code, rest) = rbody[..len]
            .split_first()
            .ok_or(IpmiError::Protocol("response without completion code"))?;
        if code != 0 {
            return Err(IpmiError::Completion { netfn, cmd, code });
        }
        return Ok(rest.to_vec());
    }
}

impl Link for OpenLink {
    async fn request(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
        let file = match self.file.take() {
            Some(f) => f,
            None => open(&self.path)?,
        };
        self.msgid = self.msgid.wrapping_add(1);
        let (msgid, timeout, data) = (self.msgid, self.timeout, data.to_vec());
        let (file, r) = tokio::task::spawn_blocking(move || {
            let r = exchange(&file, msgid, netfn, cmd, &data, timeout);
            (file, r)
        })
        .await
        .map_err(|_| IpmiError::Protocol("in-band request task failed"))?;
        self.file = Some(file);
        r
    }

    async fn close(&mut self) {
        self.file = None;
    }
}

#[cfg(test)]
mod tests {
    use super::sys;

    /// The numbers `<linux/ipmi.h>` gives on 64-bit asm-generic targets
    /// (as seen in `strace ipmitool -I open`).
    #[test]
    #[cfg(all(target_os = "linux", target_pointer_width = "64"))]
    fn ioctl_numbers_match_the_kernel_header() {
        assert_eq!(size_of::<sys::Req>(), 40);
        assert_eq!(size_of::<sys::Recv>(), 48);
        assert_eq!(sys::IPMICTL_SEND_COMMAND, 0x8028_690d);
        assert_eq!(sys::IPMICTL_RECEIVE_MSG_TRUNC, 0xc030_690b);
    }

    #[test]
    fn a_missing_device_is_a_clear_error() {
        let e = super::OpenLink::new(
            std::path::Path::new("/nonexistent/ipmi0"),
            std::time::Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ipmi0"), "{e}");
    }
}
