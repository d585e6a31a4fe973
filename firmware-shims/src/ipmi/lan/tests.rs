use super::*;

#[test]
fn only_suites_3_and_17_are_accepted() {
    for bad in [0u8, 1, 2, 6, 8, 12, 15, 16] {
        assert_eq!(CipherSuite::from_id(bad), Err(LanError::InsecureSuite(bad)));
    }
    assert_eq!(CipherSuite::from_id(3), Ok(CipherSuite::Suite3));
    assert_eq!(CipherSuite::from_id(17), Ok(CipherSuite::Suite17));
}

#[test]
fn ipmi_request_framing_and_checksums() {
    // Get Device ID (App 0x06, cmd 0x01), rqSeq 1, framed as IPMI 2.0 §13.8 says.
    assert_eq!(
        ipmi_request(1, 0x06, 0x01, &[]),
        vec![0x20, 0x18, 0xc8, 0x81, 0x04, 0x01, 0x7a]
    );
    let resp = [0x81, 0x1c, 0x63, 0x20, 0x04, 0x01, 0x00, 0x23, 0xb8];
    let r = parse_ipmi_response(&resp).unwrap();
    assert_eq!(
        (r.netfn, r.rq_seq, r.cmd, r.completion, r.data.as_slice()),
        (0x07, 1, 0x01, 0x00, &[0x23][..])
    );
    let mut bad = resp;
    bad[7] ^= 1;
    assert_eq!(parse_ipmi_response(&bad), Err(LanError::Checksum));
}

fn session(suite: CipherSuite) -> Session {
    Session {
        suite,
        bmc_sid: 0x1122_3344,
        console_sid: 0x5566_7788,
        k1: vec![7; 20],
        aes_key: [9; 16],
        seq: 0,
    }
}

#[test]
fn wrapped_packets_verify_decrypt_and_catch_tampering() {
    for suite in [CipherSuite::Suite3, CipherSuite::Suite17] {
        let mut tx = session(suite);
        // The BMC's view: packets to us carry our console session id.
        let rx = Session {
            bmc_sid: tx.console_sid,
            console_sid: tx.bmc_sid,
            ..session(suite)
        };
        for len in [0usize, 1, 7, 15, 16, 40] {
            let msg: Vec<u8> = (0..len).map(|i| u8::try_from(i).unwrap()).collect();
            let p = tx.wrap(&msg, [3; 16]);
            assert_eq!((p.len() - 4 - suite.icv_len()) % 4, 0, "integrity pad");
            assert_eq!(rx.unwrap(&p).unwrap(), msg);
            let mut t = p.clone();
            t[20] ^= 0x80;
            assert_eq!(rx.unwrap(&t), Err(LanError::BadIntegrity));
        }
        assert_eq!(tx.seq, 6, "one sequence number per packet");
    }
}

#[test]
fn rakp_refusals_are_named() {
    assert_eq!(
        parse_open_session_response(&[1, 0x11, 0, 0], 1, 5),
        Err(LanError::Refused(
            0x11,
            "no cipher suite match with proposed security algorithms"
        ))
    );
}
