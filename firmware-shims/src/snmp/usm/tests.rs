use super::*;
use crate::snmp::ber::Oid;
use crate::snmp::{PduKind, Value};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// RFC 3414 A.3.2: "maplesyrup", engine 00..02, SHA.
#[test]
fn sha1_key_localisation_matches_rfc_3414() {
    let ku = password_to_key(AuthProtocol::Sha1, b"maplesyrup").unwrap();
    assert_eq!(ku, hex("9fb5cc0381497b3793528939ff788d5d79145211"));
    let kul = localize(AuthProtocol::Sha1, &ku, &hex("000000000000000000000002"));
    assert_eq!(kul, hex("6695febc9288e36282235fc7151f128497b38f3f"));
}

fn pdu() -> Pdu {
    Pdu {
        kind: PduKind::Get,
        request_id: 42,
        error_status: 0,
        error_index: 0,
        varbinds: vec![("1.3.6.1.2.1.1.5.0".parse::<Oid>().unwrap(), Value::Null)],
    }
}

fn security() -> Security {
    Security {
        engine_id: hex("8000000001020304"),
        boots: 3,
        time: 1234,
        user: b"telemetry".to_vec(),
    }
}

#[test]
fn auth_priv_round_trips_and_tampering_is_caught() {
    for (auth, privacy) in [
        (AuthProtocol::Sha1, PrivProtocol::Aes128),
        (AuthProtocol::Sha256, PrivProtocol::Aes256),
    ] {
        let keys = Keys::from_passwords(
            auth,
            b"authpass123",
            Some((privacy, b"privpass123")),
            &hex("8000000001020304"),
        )
        .unwrap();
        let flags = FLAG_AUTH | FLAG_PRIV | FLAG_REPORTABLE;
        let bytes = encode(
            7,
            flags,
            &security(),
            b"cisco-n5000",
            &pdu(),
            Some(&keys),
            99,
        )
        .unwrap();
        // The PDU is not visible in the clear.
        assert!(!bytes
            .windows(9)
            .any(|w| w == b"\x2b\x06\x01\x02\x01\x01\x05\x00\x05"));
        let m = decode(&bytes, Some(&keys)).unwrap();
        assert_eq!(
            (m.msg_id, m.flags, m.context_name.as_slice()),
            (7, flags, &b"cisco-n5000"[..])
        );
        assert_eq!(m.pdu, pdu());
        assert_eq!(m.security, security());
        // One flipped bit anywhere after the header fails the MAC.
        for i in [bytes.len() / 2, bytes.len() - 1] {
            let mut t = bytes.clone();
            t[i] ^= 1;
            assert!(decode(&t, Some(&keys)).is_err(), "{auth:?} byte {i}");
        }
        let other = Keys::from_passwords(
            auth,
            b"wrongpass1",
            Some((privacy, b"privpass123")),
            &hex("8000000001020304"),
        )
        .unwrap();
        assert_eq!(decode(&bytes, Some(&other)), Err(UsmError::BadMac));
        assert_eq!(decode(&bytes, None), Err(UsmError::BadMac));
    }
}

#[test]
fn discovery_message_is_plain_and_unauthenticated() {
    let bytes = encode(
        1,
        FLAG_REPORTABLE,
        &Security::default(),
        b"",
        &pdu(),
        None,
        0,
    )
    .unwrap();
    let m = decode(&bytes, None).unwrap();
    assert_eq!(m.pdu, pdu());
    assert!(m.security.engine_id.is_empty());
}

#[test]
fn weak_configurations_are_refused() {
    assert_eq!(
        password_to_key(AuthProtocol::Sha1, b"short"),
        Err(UsmError::ShortPassword)
    );
    assert_eq!(
        Keys::from_passwords(
            AuthProtocol::Sha1,
            b"authpass123",
            Some((PrivProtocol::Aes256, b"privpass123")),
            b"e"
        ),
        Err(UsmError::KeyTooShort)
    );
    let keys = Keys::from_passwords(AuthProtocol::Sha1, b"authpass123", None, b"e").unwrap();
    assert_eq!(
        encode(
            1,
            FLAG_AUTH | FLAG_PRIV,
            &security(),
            b"",
            &pdu(),
            Some(&keys),
            1
        ),
        Err(UsmError::NoPrivacyKey)
    );
    assert!(
        !format!("{keys:?}").contains("auth_key"),
        "keys are not printed"
    );
}

static KEYS: std::sync::LazyLock<Keys> = std::sync::LazyLock::new(|| {
    Keys::from_passwords(
        AuthProtocol::Sha1,
        b"authpass123",
        Some((PrivProtocol::Aes128, b"privpass123")),
        b"e",
    )
    .unwrap()
});

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let _ = decode(&b, Some(&KEYS));
        let _ = decode(&b, None);
    }
}
