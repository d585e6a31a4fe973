//! A hostile switch's SNMP reply: any datagram decodes or errors, and what
//! decodes re-encodes to bytes that decode to the same message.
#![no_main]

use firmware_shims::snmp::CommunityMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = CommunityMessage::decode(data) {
        let again = CommunityMessage::decode(&m.encode()).expect("re-encoded message decodes");
        assert_eq!(again, m);
    }
});
