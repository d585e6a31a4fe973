//! A hostile BMC: any datagram or SDR bytes are decoded or refused, never a
//! panic (SDR records and conversions, RMCP+ framing, RAKP replies, IPMI
//! responses).
#![no_main]

use firmware_shims::ipmi::lan::{self, CipherSuite, Handshake, Privilege};
use firmware_shims::ipmi::sdr::{self, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = sdr::parse_repository(data) {
        for r in records {
            if let Record::Full(s) | Record::Compact(s) = r {
                for x in [0u8, 1, 0x7f, 0x80, 0xff] {
                    let _ = s.convert(x);
                }
            }
        }
    }
    let _ = sdr::Reading::parse(data);
    let _ = lan::parse_presession(data);
    let _ = lan::parse_ipmi_response(data);
    let _ = lan::parse_open_session_response(data, 1, 2);
    for suite in [CipherSuite::Suite3, CipherSuite::Suite17] {
        let hs = Handshake::new(suite, 2, 3, [7; 16], Privilege::User, b"admin", b"password").expect("valid");
        if let Ok((rc, guid)) = hs.verify_rakp2(data, 1) {
            let _ = hs.finish(data, 1, &rc, &guid);
        }
        let _ = hs.finish(data, 1, &[0; 16], &[0; 16]);
    }
});
