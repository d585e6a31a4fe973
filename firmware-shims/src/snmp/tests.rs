use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn oid(s: &str) -> Oid {
    s.parse().unwrap()
}

/// `snmpbulkget -v2c -c public -Cn0 -Cr5 ... 1.3.6.1.2.1.2.2.1.14` as net-snmp 5.9.3 sent it.
const NETSNMP_BULK: &str =
    "302a02010104067075626c6963a51d020421b141c4020100020105300f300d06092b060102010202010e0500";
/// `snmpset -v2c -c private ... 1.3.6.1.2.1.2.2.1.7.5 i 2` as net-snmp 5.9.3 sent it.
const NETSNMP_SET: &str = "302d020101040770726976617465a31f02040d2b3da30201000201003011300f060a2b060102010202010705020102";
/// snmpd 5.9.3's answer to a GETBULK of ifInOctets (Counter32 with a 0x00 pad).
const SNMPD_COUNTER32: &str = "305202010104067075626c6963a245020421b141c402010002010030373013060a2b060102010202010a01410500b9ef5fea300f060a2b060102010202010a02410100300f060a2b060102010202010a03410100";
/// snmpd 5.9.3's answer to a GETBULK of ifHCInOctets (Counter64).
const SNMPD_COUNTER64: &str = "304302010104067075626c6963a236020421b141c502010002010030283014060b2b060102011f0101010601460500b9ef5fea3010060b2b060102011f0101010602460100";

#[test]
fn net_snmp_requests_decode_and_re_encode_byte_for_byte() {
    let bulk = CommunityMessage::decode(&hex(NETSNMP_BULK)).unwrap();
    assert_eq!(
        (bulk.version, bulk.community.as_slice()),
        (VERSION_2C, &b"public"[..])
    );
    assert_eq!(bulk.pdu.kind, PduKind::GetBulk);
    assert_eq!(
        (bulk.pdu.error_status, bulk.pdu.error_index),
        (0, 5),
        "non-repeaters, max-repetitions"
    );
    assert_eq!(
        bulk.pdu.varbinds,
        vec![(oid("1.3.6.1.2.1.2.2.1.14"), Value::Null)]
    );
    assert_eq!(bulk.encode(), hex(NETSNMP_BULK));

    let set = CommunityMessage::decode(&hex(NETSNMP_SET)).unwrap();
    assert_eq!(set.pdu.kind, PduKind::Set);
    assert_eq!(
        set.pdu.varbinds,
        vec![(oid("1.3.6.1.2.1.2.2.1.7.5"), Value::Integer(2))]
    );
    assert_eq!(set.encode(), hex(NETSNMP_SET));
}

#[test]
fn snmpd_responses_decode_counters() {
    let r = CommunityMessage::decode(&hex(SNMPD_COUNTER32)).unwrap();
    assert_eq!(r.pdu.kind, PduKind::Response);
    assert_eq!(r.pdu.error(), None);
    assert_eq!(
        r.pdu.varbinds,
        vec![
            (
                oid("1.3.6.1.2.1.2.2.1.10.1"),
                Value::Counter32(3_119_472_618)
            ),
            (oid("1.3.6.1.2.1.2.2.1.10.2"), Value::Counter32(0)),
            (oid("1.3.6.1.2.1.2.2.1.10.3"), Value::Counter32(0)),
        ]
    );
    assert_eq!(r.encode(), hex(SNMPD_COUNTER32));
    let r = CommunityMessage::decode(&hex(SNMPD_COUNTER64)).unwrap();
    assert_eq!(r.pdu.varbinds[0].1, Value::Counter64(3_119_472_618));
    assert_eq!(r.encode(), hex(SNMPD_COUNTER64));
}

#[test]
fn hostile_replies_are_errors() {
    let good = hex(SNMPD_COUNTER32);
    // Truncated anywhere.
    for cut in 0..good.len() {
        assert!(
            CommunityMessage::decode(&good[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    // A length claiming 4 GiB.
    let mut huge = good.clone();
    huge.splice(1..2, [0x84, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        CommunityMessage::decode(&huge),
        Err(BerError::Truncated(_))
    ));
    // Indefinite length.
    let mut indef = good.clone();
    indef[1] = 0x80;
    assert!(matches!(
        CommunityMessage::decode(&indef),
        Err(BerError::BadLength(1))
    ));
    // Wrong type where the version INTEGER belongs.
    let mut wrong = good.clone();
    wrong[2] = 0x04;
    assert!(matches!(
        CommunityMessage::decode(&wrong),
        Err(BerError::UnexpectedTag { .. })
    ));
    // A Counter32 of 5 significant octets.
    assert!(decode_counter32(&[0x01, 0, 0, 0, 0]).is_err());
    // Trailing garbage after the message.
    let mut trailing = good;
    trailing.push(0);
    assert_eq!(
        CommunityMessage::decode(&trailing),
        Err(BerError::Trailing(1))
    );
}

fn decode_counter32(body: &[u8]) -> Result<Value, BerError> {
    Value::decode(0x41, body)
}

#[test]
fn unsigned_values_tolerate_pads_and_unpadded_top_bits() {
    assert_eq!(
        decode_counter32(&[0xff, 0xff, 0xff, 0xff]),
        Ok(Value::Counter32(u32::MAX))
    );
    assert_eq!(
        decode_counter32(&[0, 0, 0xff, 0xff, 0xff, 0xff]),
        Ok(Value::Counter32(u32::MAX))
    );
    assert_eq!(Value::decode(0x46, &[0]), Ok(Value::Counter64(0)));
}

#[test]
fn oids_parse_print_and_refuse_nonsense() {
    let o = oid("1.3.6.1.4.1.9.9.13.1.3.1.3.1005");
    assert_eq!(o.to_string(), "1.3.6.1.4.1.9.9.13.1.3.1.3.1005");
    assert!(".1.3.6".parse::<Oid>().is_ok());
    for bad in ["", "1", "3.1", "1.40", "1.3.x", "1..3"] {
        assert!(bad.parse::<Oid>().is_err(), "{bad}");
    }
    assert_eq!(
        Oid::decode(&[0x2b, 0x80, 0x01]),
        Err(BerError::BadOid),
        "non-minimal sub-identifier"
    );
    assert_eq!(
        Oid::decode(&[0x2b, 0x86]),
        Err(BerError::BadOid),
        "unterminated"
    );
    assert_eq!(
        Oid::decode(&[0x88, 0x37, 0x03]),
        Ok(Oid(vec![2, 999, 3])),
        "X.690 example"
    );
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::OctetString),
        Just(Value::Null),
        arb_oid().prop_map(Value::Oid),
        any::<[u8; 4]>().prop_map(Value::IpAddress),
        any::<u32>().prop_map(Value::Counter32),
        any::<u32>().prop_map(Value::Gauge32),
        any::<u32>().prop_map(Value::TimeTicks),
        any::<u64>().prop_map(Value::Counter64),
        Just(Value::NoSuchObject),
        Just(Value::NoSuchInstance),
        Just(Value::EndOfMibView),
    ]
}

fn arb_oid() -> impl Strategy<Value = Oid> {
    (
        0u32..3,
        0u32..40,
        proptest::collection::vec(any::<u32>(), 0..20),
    )
        .prop_map(|(a, b, rest)| {
            let mut v = vec![a, if a == 2 { b * 1000 } else { b }];
            v.extend(rest);
            Oid(v)
        })
}

proptest! {
    #[test]
    fn messages_round_trip(
        request_id in any::<i32>(),
        status in 0i64..20,
        index in 0i64..100,
        community in proptest::collection::vec(any::<u8>(), 0..300),
        varbinds in proptest::collection::vec((arb_oid(), arb_value()), 0..30),
    ) {
        let m = CommunityMessage {
            version: VERSION_2C,
            community,
            pdu: Pdu { kind: PduKind::Response, request_id, error_status: status, error_index: index, varbinds },
        };
        prop_assert_eq!(CommunityMessage::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = CommunityMessage::decode(&b);
    }

    /// Single-byte corruption of a real reply: an error or a message, never a panic.
    #[test]
    fn corrupted_real_reply_never_panics(at in 0usize..84, byte in any::<u8>()) {
        let mut b = hex(SNMPD_COUNTER32);
        let i = at % b.len();
        b[i] = byte;
        let _ = CommunityMessage::decode(&b);
    }
}
