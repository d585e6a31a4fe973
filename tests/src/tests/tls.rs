//! TLS and mutual TLS on the agent ↔ coordinator link, through the agent's own
//! uplink code path.

use crate::*;
use agent::config::{UplinkConfig, UplinkTls};
use proto::telemetry::v1::{self as pb, telemetry_client::TelemetryClient};
use std::time::Duration;

fn uplink(url: String, pki: &TestPki, identity: Option<(&str, &str)>) -> UplinkConfig {
    UplinkConfig {
        url,
        tls: UplinkTls::Tls {
            ca: Some(pki.path("ca.crt")),
            identity: identity.map(|(c, k)| (pki.path(c), pki.path(k).into())),
            server_name: Some("localhost".into()),
        },
        max_in_flight: 8,
        backoff_max: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(1),
    }
}

/// Open a telemetry stream and return the coordinator's Welcome (or the error).
async fn welcome(cfg: &UplinkConfig) -> Result<pb::Welcome> {
    let ch = agent::uplink::channel(cfg).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Hello(pb::Hello {
            host_id: "tls-host".into(),
            spool_epoch: 1,
            ..Default::default()
        })),
    })
    .await?;
    let mut inbound = TelemetryClient::new(ch)
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    match inbound.message().await?.and_then(|m| m.msg) {
        Some(pb::coordinator_message::Msg::Welcome(w)) => Ok(w),
        other => anyhow::bail!("expected Welcome, got {other:?}"),
    }
}

fn mtls_toml(pki: &TestPki) -> String {
    format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
        pki.path("server.crt").display().to_string(),
        pki.path("server.key").display().to_string(),
        pki.path("ca.crt").display().to_string()
    )
}

#[tokio::test]
async fn mutual_tls_admits_only_certificates_from_the_configured_ca() -> Result<()> {
    let pki = TestPki::generate()?;
    let c = InProcessCoordinator::start(&mtls_toml(&pki), "").await?;
    let url = format!("https://{}", c.addr);

    welcome(&uplink(
        url.clone(),
        &pki,
        Some(("client.crt", "client.key")),
    ))
    .await
    .expect("a CA-signed client is admitted");

    let no_cert = welcome(&uplink(url.clone(), &pki, None)).await;
    assert!(
        no_cert.is_err(),
        "a client without a certificate must be refused"
    );

    let rogue = welcome(&uplink(
        url.clone(),
        &pki,
        Some(("rogue-client.crt", "rogue-client.key")),
    ))
    .await;
    assert!(
        rogue.is_err(),
        "a certificate from another CA must be refused"
    );

    // Plaintext against a TLS listener fails too.
    let plain = UplinkConfig {
        url: format!("http://{}", c.addr),
        tls: UplinkTls::InsecurePlaintext,
        ..uplink(url.clone(), &pki, None)
    };
    assert!(welcome(&plain).await.is_err());

    // The server certificate is verified by the agent: a wrong name fails.
    let mut wrong_name = uplink(url, &pki, Some(("client.crt", "client.key")));
    if let UplinkTls::Tls { server_name, .. } = &mut wrong_name.tls {
        *server_name = Some("not-the-coordinator".into());
    }
    assert!(welcome(&wrong_name).await.is_err());
    c.stop().await
}
