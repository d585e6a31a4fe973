//! Misbehaving agents, played by a UDP socket in the test (the real-peer
//! tests against snmpd and snmpsim are in `tests/`).

use super::*;

/// An agent that answers each request with whatever `reply` returns (raw datagrams).
async fn agent(
    mut reply: impl FnMut(CommunityMessage) -> Vec<Vec<u8>> + Send + 'static,
) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let req = CommunityMessage::decode(&buf[..n]).expect("client sends valid BER");
            for d in reply(req) {
                let _ = sock.send_to(&d, from).await;
            }
        }
    });
    addr
}

fn response(req: &CommunityMessage, status: i64, varbinds: Vec<(Oid, Value)>) -> Vec<u8> {
    CommunityMessage {
        version: VERSION_2C,
        community: req.community.clone(),
        pdu: Pdu {
            kind: PduKind::Response,
            request_id: req.pdu.request_id,
            error_status: status,
            error_index: i64::from(status != 0),
            varbinds,
        },
    }
    .encode()
}

fn cfg() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_millis(100),
        retries: 1,
        ..ClientConfig::default()
    }
}

fn oid(s: &str) -> Oid {
    s.parse().unwrap()
}

#[tokio::test]
async fn garbage_and_foreign_replies_are_ignored_not_believed() {
    let addr = agent(|req| {
        let mut stale = req.clone();
        stale.pdu.request_id ^= 0x5555;
        vec![
            b"\x30\x84\xff\xff\xff\xff".to_vec(),
            response(
                &stale,
                0,
                vec![(
                    oid("1.3.6.1.2.1.1.5.0"),
                    Value::OctetString(b"wrong".to_vec()),
                )],
            ),
            response(
                &req,
                0,
                vec![(
                    oid("1.3.6.1.2.1.1.5.0"),
                    Value::OctetString(b"sw1".to_vec()),
                )],
            ),
        ]
    })
    .await;
    let mut c = SnmpClient::new(addr, cfg()).await.unwrap();
    let got = c.get(&[oid("1.3.6.1.2.1.1.5.0")]).await.unwrap();
    assert_eq!(got[0].1, Value::OctetString(b"sw1".to_vec()));
    assert_eq!(c.ignored, 2);
}

#[tokio::test]
async fn a_silent_agent_times_out_after_its_retries() {
    let addr = agent(|_| Vec::new()).await;
    let mut c = SnmpClient::new(addr, cfg()).await.unwrap();
    let started = std::time::Instant::now();
    let e = c.get(&[oid("1.3.6.1.2.1.1.5.0")]).await.unwrap_err();
    assert!(matches!(e, SnmpError::Timeout { attempts: 2, .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_walk_that_goes_backwards_is_an_error_not_a_loop() {
    let addr = agent(|req| {
        vec![response(
            &req,
            0,
            vec![(oid("1.3.6.1.2.1.2.2.1.14.1"), Value::Counter32(1))],
        )]
    })
    .await;
    let mut c = SnmpClient::new(addr, cfg()).await.unwrap();
    let e = c.walk(&oid("1.3.6.1.2.1.2.2.1.14")).await.unwrap_err();
    assert!(matches!(e, SnmpError::NotIncreasing(_)), "{e}");
}

#[tokio::test]
async fn too_big_halves_the_repetitions() {
    // ifInErrors.1..=10, then the next column: a real getnext order.
    let mut table: Vec<(Oid, Value)> = (1..=10)
        .map(|i| (oid("1.3.6.1.2.1.2.2.1.14").child(&[i]), Value::Counter32(i)))
        .collect();
    table.push((oid("1.3.6.1.2.1.2.2.1.15.1"), Value::Counter32(0)));
    let max_seen = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let seen = max_seen.clone();
    let addr = agent(move |req| {
        let reps = req.pdu.error_index;
        seen.fetch_max(reps, std::sync::atomic::Ordering::Relaxed);
        if reps > 4 {
            return vec![response(&req, 1, vec![])]; // tooBig
        }
        let after = req.pdu.varbinds[0].0.clone();
        let next: Vec<_> = table
            .iter()
            .filter(|(o, _)| *o > after)
            .take(usize::try_from(reps).unwrap())
            .cloned()
            .collect();
        vec![response(&req, 0, next)]
    })
    .await;
    let mut c = SnmpClient::new(
        addr,
        ClientConfig {
            max_repetitions: 16,
            ..cfg()
        },
    )
    .await
    .unwrap();
    let rows = c.walk(&oid("1.3.6.1.2.1.2.2.1.14")).await.unwrap();
    assert_eq!(rows.len(), 10);
    assert_eq!(
        rows[9],
        (oid("1.3.6.1.2.1.2.2.1.14.10"), Value::Counter32(10))
    );
    assert_eq!(
        max_seen.load(std::sync::atomic::Ordering::Relaxed),
        16,
        "started at 16, then 8, then 4"
    );
}

#[tokio::test]
async fn a_set_answered_with_an_exception_is_a_failure() {
    let addr = agent(|req| {
        let o = req.pdu.varbinds[0].0.clone();
        vec![response(&req, 0, vec![(o, Value::NoSuchInstance)])]
    })
    .await;
    let mut c = SnmpClient::new(addr, cfg()).await.unwrap();
    let e = c
        .set_verified(&oid("1.3.6.1.2.1.2.2.1.7.5"), Value::Integer(2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            SnmpError::Exception {
                value: Value::NoSuchInstance,
                ..
            }
        ),
        "{e}"
    );
}
