//! The coordinator's switch-port executor against snmpsim (a writable test
//! switch beside the real dumps): a shadow's port plan is applied step by
//! step with read-back, undone on rollback, and a plan whose last step the
//! switch refuses is undone by itself. And against net-snmp's snmpd in a
//! network namespace of the test's own, whose "ports" are veth links: there
//! the SETs really take a link down and up, as `ip link` reports.

use super::snmp::start_snmpsim;
use crate::Proc;
use anyhow::{ensure, Context, Result};
use coordinator::actuate::switch::{
    port_down, port_up, PortPlan, Switch, SwitchConfig, SwitchError, Undo, DOT1Q_PVID,
    IF_ADMIN_STATUS, IF_ALIAS,
};
use firmware_shims::snmp::Value;
use service::secret::Secret;
use std::net::SocketAddr;
use std::process::Command;
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

/// `ip` with `args`, failing with its stderr.
fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// A switch whose ports are real links: a network namespace holding a veth
/// pair (`port1`, whose far end `peer1` stands for the server's NIC) and
/// snmpd serving IF-MIB over the namespace's interfaces, reached from here
/// over a second veth pair on a link-local /30.
struct LinkSwitch {
    netns: String,
    host_side: String,
    snmpd: Option<Proc>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl LinkSwitch {
    fn start() -> Result<LinkSwitch> {
        let pid = std::process::id();
        let netns = format!("umbra-sw-{pid}");
        let host_side = format!("umbsw{}", pid % 1_000_000);
        // A /30 picked from the process id: .1 here, .2 in the namespace.
        let (a, b) = ((pid >> 6) & 0xff, (pid & 0x3f) * 4);
        let (here, there) = (
            format!("169.254.{a}.{}", b + 1),
            format!("169.254.{a}.{}", b + 2),
        );
        ip(&["netns", "add", &netns])?;
        let mut sw = LinkSwitch {
            netns: netns.clone(),
            host_side: host_side.clone(),
            snmpd: None,
            addr: format!("{there}:161").parse()?,
            _dir: tempfile::tempdir()?,
        };
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &netns, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        ip(&[
            "link", "add", &host_side, "type", "veth", "peer", "name", "uplink", "netns", &netns,
        ])?;
        ip(&["addr", "add", &format!("{here}/30"), "dev", &host_side])?;
        ip(&["link", "set", &host_side, "up"])?;
        inside(&["addr", "add", &format!("{there}/30"), "dev", "uplink"])?;
        inside(&["link", "set", "uplink", "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        inside(&[
            "link", "add", "port1", "type", "veth", "peer", "name", "peer1",
        ])?;
        inside(&["link", "set", "port1", "up"])?;
        inside(&["link", "set", "peer1", "up"])?;

        let dir = sw._dir.path();
        let conf = dir.join("snmpd.conf");
        std::fs::write(
            &conf,
            format!("agentAddress udp:{there}:161\nrwcommunity umbra-rw {here}\n"),
        )?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &netns, "snmpd", "-f", "-Lo", "-C", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(dir.join("snmpd.pid"));
        sw.snmpd = Some(Proc::spawn_cmd("snmpd", cmd, dir.join("snmpd.log"))?);
        Ok(sw)
    }

    fn config(&self) -> SwitchConfig {
        SwitchConfig {
            address: self.addr,
            community: Some(Secret::inline("umbra-rw")),
            v3: None,
            timeout: Duration::from_secs(1),
            retries: 2,
        }
    }

    /// `ip -o link show` of a link in the namespace.
    fn show(&self, link: &str) -> Result<String> {
        ip(&["-netns", &self.netns, "-o", "link", "show", link])
    }

    /// The kernel's ifindex of a link in the namespace (net-snmp's ifIndex).
    fn if_index(&self, link: &str) -> Result<u32> {
        let out = self.show(link)?;
        let (n, _) = out.split_once(':').context("ip link output")?;
        Ok(n.trim().parse()?)
    }

    /// Whether the kernel has the link administratively up (flag `UP`).
    fn admin_up(&self, link: &str) -> Result<bool> {
        let out = self.show(link)?;
        let flags = out
            .split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .context("ip link flags")?
            .0;
        Ok(flags.split(',').any(|f| f == "UP"))
    }
}

impl Drop for LinkSwitch {
    fn drop(&mut self) {
        if let Some(mut p) = self.snmpd.take() {
            p.kill9();
        }
        // The host side's peer lives in the namespace: both go with it.
        let _ = ip(&["link", "del", &self.host_side]);
        let _ = ip(&["netns", "del", &self.netns]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_sets_really_take_a_link_down_and_up_through_snmpd() -> Result<()> {
    let link = LinkSwitch::start()?;
    let port = link.if_index("port1")?;
    ensure!(link.admin_up("port1")?, "port1 starts up");
    let cfg = link.config();
    let mut sw = crate::eventually("snmpd in the namespace", Duration::from_secs(10), || {
        let cfg = cfg.clone();
        async move {
            let Ok(mut sw) = Switch::connect(&cfg).await else {
                return Ok(None);
            };
            Ok(sw
                .get(&oid("1.3.6.1.2.1.2.2.1.2", 1))
                .await
                .ok()
                .map(|_| sw))
        }
    })
    .await?;
    // snmpd's ifIndex is the kernel's: the same link by name.
    assert_eq!(
        sw.get(&oid("1.3.6.1.2.1.2.2.1.2", port)).await?,
        Value::OctetString(b"port1".to_vec())
    );

    // Quarantine: the port is shut, and the kernel says so.
    let mut undo = Undo::default();
    let mut persisted = Vec::new();
    sw.apply_steps(port_down(port), &mut undo, |u| {
        persisted.push(u.clone());
        Ok(())
    })
    .await?;
    assert!(!link.admin_up("port1")?, "the SET took port1 down");
    // Write-ahead: the old value was kept before the SET.
    assert_eq!(
        persisted,
        [Undo {
            steps: vec![(oid(IF_ADMIN_STATUS, port), Value::Integer(1))]
        }]
    );
    // Rollback: up again.
    sw.undo(&undo).await?;
    assert!(link.admin_up("port1")?, "the undo brought port1 back up");

    // A spare's port that is down is brought up and described; the undo
    // puts both back.
    ip(&["-netns", &link.netns, "link", "set", "port1", "down"])?;
    // snmpd caches the interface table for a few seconds.
    crate::eventually("snmpd sees port1 down", Duration::from_secs(15), || {
        let cfg = cfg.clone();
        async move {
            let mut sw = Switch::connect(&cfg).await?;
            Ok((sw.get(&oid(IF_ADMIN_STATUS, port)).await? == Value::Integer(2)).then_some(()))
        }
    })
    .await?;
    let mut undo = Undo::default();
    sw.apply_steps(
        port_up(port, None, Some("umbra shadow of web-01")),
        &mut undo,
        |_| Ok(()),
    )
    .await?;
    assert!(link.admin_up("port1")?, "the SET brought port1 up");
    assert_eq!(
        sw.get(&oid(IF_ALIAS, port)).await?,
        Value::OctetString(b"umbra shadow of web-01".to_vec())
    );
    sw.undo(&undo).await?;
    assert!(!link.admin_up("port1")?, "the undo took port1 down again");
    assert_eq!(
        sw.get(&oid(IF_ALIAS, port)).await?,
        Value::OctetString(Vec::new())
    );
    Ok(())
}
