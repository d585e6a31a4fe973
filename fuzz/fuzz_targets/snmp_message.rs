//! A hostile switch's SNMP reply: any datagram decodes or errors (v2c, and
//! v3 with and without keys), and what decodes as v2c re-encodes to bytes
//! that decode to the same message.
#![no_main]

use firmware_shims::snmp::usm::{self, AuthProtocol, Keys, PrivProtocol};
use firmware_shims::snmp::CommunityMessage;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    Keys::from_passwords(AuthProtocol::Sha256, b"authpass256", Some((PrivProtocol::Aes256, b"privpass256")), b"\x80\0\0\0\x01\x02\x03\x04")
        .expect("valid test keys")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = CommunityMessage::decode(data) {
        let again = CommunityMessage::decode(&m.encode()).expect("re-encoded message decodes");
        assert_eq!(again, m);
    }
    let _ = usm::decode(data, None);
    let _ = usm::decode(data, Some(&KEYS));
});
