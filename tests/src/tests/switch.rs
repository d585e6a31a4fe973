//! The coordinator's switch-port executor against snmpsim (a writable test
//! switch beside the real dumps): a shadow's port plan is applied step by
//! step with read-back, undone on rollback, and a plan whose last step the
//! switch refuses is undone by itself.

use super::snmp::start_snmpsim;
use anyhow::Result;
use coordinator::actuate::switch::{
    PortPlan, Switch, SwitchConfig, SwitchError, DOT1Q_PVID, IF_ADMIN_STATUS, IF_ALIAS,
};
use firmware_shims::snmp::Value;
use service::secret::Secret;
use std::time::Duration;

fn oid(base: &str, i: u32) -> firmware_shims::snmp::ber::Oid {
    format!("{base}.{i}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_plans_apply_with_read_back_and_undo_on_snmpsim() -> Result<()> {
    let (_peer, addr, _logs) = start_snmpsim().await?;
    let cfg = SwitchConfig {
        address: addr,
        community: Some(Secret::inline("umbra-sw")),
        v3: None,
        timeout: Duration::from_secs(2),
        retries: 2,
    };
    let mut sw = Switch::connect(&cfg).await?;
    let status = |i| oid(IF_ADMIN_STATUS, i);
    // Both ports start up in the fixture. First a plan the other way
    // round (6 takes over from 5) leaves the spare's port 5 down.
    assert_eq!(sw.get(&status(5)).await?, Value::Integer(1));
    let first = sw
        .apply(&PortPlan {
            spare_port: 6,
            failing_port: 5,
            vlan: None,
            description: None,
        })
        .await?;
    assert_eq!(first.steps.len(), 2);
    let before5 = sw.get(&status(5)).await?;
    assert_eq!(before5, Value::Integer(2));

    let plan = PortPlan {
        spare_port: 5,
        failing_port: 6,
        vlan: Some((5, 120)),
        description: Some("shadow of node-07".into()),
    };
    let undo = sw.apply(&plan).await?;
    assert_eq!(undo.steps.len(), 4);
    assert_eq!(sw.get(&status(5)).await?, Value::Integer(1));
    assert_eq!(sw.get(&status(6)).await?, Value::Integer(2));
    assert_eq!(sw.get(&oid(DOT1Q_PVID, 5)).await?, Value::Gauge32(120));
    assert_eq!(
        sw.get(&oid(IF_ALIAS, 5)).await?,
        Value::OctetString(b"shadow of node-07".to_vec())
    );

    // Rollback: everything as it was.
    sw.undo(&undo).await?;
    assert_eq!(sw.get(&status(5)).await?, Value::Integer(2));
    assert_eq!(sw.get(&status(6)).await?, Value::Integer(1));
    assert_eq!(sw.get(&oid(DOT1Q_PVID, 5)).await?, Value::Gauge32(1));
    assert_eq!(
        sw.get(&oid(IF_ALIAS, 5)).await?,
        Value::OctetString(b"spare".to_vec())
    );

    // The failing port has no writable ifAdminStatus on this switch: the
    // last step is refused and the three before it are undone.
    let e = sw
        .apply(&PortPlan {
            failing_port: 7,
            ..plan
        })
        .await
        .unwrap_err();
    assert!(matches!(e, SwitchError::Step { undone: 3, .. }), "{e}");
    assert_eq!(sw.get(&status(5)).await?, Value::Integer(2));
    assert_eq!(sw.get(&oid(DOT1Q_PVID, 5)).await?, Value::Gauge32(1));
    assert_eq!(
        sw.get(&oid(IF_ALIAS, 5)).await?,
        Value::OctetString(b"spare".to_vec())
    );
    Ok(())
}
