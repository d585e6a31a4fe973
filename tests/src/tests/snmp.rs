//! The agent's SNMP client against real peers: net-snmp `snmpd` serving this
//! machine's own IF-MIB, and `snmpsim` serving real switch dumps from
//! `snmpsim-data` (installed in .testbed/venv by scripts/deps). Results are
//! compared with net-snmp's own `snmpbulkwalk` against the same peer.

use crate::{free_udp_port, repo_root, Proc};
use agent::transport::snmp::{ClientConfig, SnmpClient, SnmpError, V3User};
use anyhow::{Context, Result};
use firmware_shims::snmp::ber::Oid;
use firmware_shims::snmp::usm::{AuthProtocol, PrivProtocol};
use firmware_shims::snmp::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

fn oid(s: &str) -> Oid {
    s.parse().unwrap()
}

fn client_cfg(community: &str) -> ClientConfig {
    ClientConfig {
        community: community.into(),
        timeout: Duration::from_secs(2),
        retries: 2,
        max_repetitions: 25,
        v3: None,
    }
}

async fn ready(addr: SocketAddr, community: &str, peer: &mut Proc) -> Result<()> {
    let mut c = SnmpClient::new(
        addr,
        ClientConfig {
            timeout: Duration::from_millis(300),
            retries: 0,
            ..client_cfg(community)
        },
    )
    .await?;
    let started = std::time::Instant::now();
    loop {
        peer.ensure_running()?;
        if c.get(&[oid("1.3.6.1.2.1.1.1.0")]).await.is_ok() {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(90),
            "peer not ready:\n{}",
            peer.log_text()
        );
    }
}

/// `snmpbulkwalk -v2c -On -Oe -Ot` as (OID, numeric value if the type is numeric).
fn reference_walk(
    addr: SocketAddr,
    community: &str,
    root: &str,
) -> Result<BTreeMap<Oid, Option<f64>>> {
    let out = Command::new("snmpbulkwalk")
        .args([
            "-v2c", "-c", community, "-On", "-Oe", "-Ot", "-t", "5", "-r", "2", "-Cr25",
        ])
        .arg(addr.to_string())
        .arg(root)
        .output()
        .context("snmpbulkwalk (package snmp; scripts/deps installs it)")?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((o, v)) = line.split_once(" = ") else {
            continue;
        };
        let Ok(o) = o.parse::<Oid>() else { continue };
        let numeric = [
            "INTEGER: ",
            "Counter32: ",
            "Gauge32: ",
            "Counter64: ",
            "Timeticks: ",
        ]
        .iter()
        .find_map(|p| v.strip_prefix(p))
        .and_then(|n| n.trim().parse::<f64>().ok());
        rows.insert(o, numeric);
    }
    Ok(rows)
}

fn compare(ours: &[(Oid, Value)], reference: &BTreeMap<Oid, Option<f64>>, counters_move: bool) {
    let our_oids: Vec<&Oid> = ours.iter().map(|(o, _)| o).collect();
    let ref_oids: Vec<&Oid> = reference.keys().collect();
    assert_eq!(our_oids, ref_oids, "same objects, same order");
    for (o, v) in ours {
        let moving = counters_move
            && matches!(
                v,
                Value::Counter32(_) | Value::Counter64(_) | Value::TimeTicks(_)
            );
        if let (Some(want), false) = (reference[o], moving) {
            assert_eq!(v.as_f64(), Some(want), "{o}");
        }
    }
}

/// net-snmp `snmpd` on a free loopback port: v2c community `public` and the
/// v3 user `telemetry` (SHA/AES-128), read-only, MIB loading off.
async fn start_snmpd() -> Result<(Proc, SocketAddr, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let port = free_udp_port();
    std::fs::write(
        dir.path().join("snmpd.conf"),
        format!(
            "[snmp] persistentDir {}\nagentAddress udp:127.0.0.1:{port}\nrocommunity public 127.0.0.1\n\
             createUser telemetry SHA authpass123 AES privpass123\nrouser telemetry priv\n",
            dir.path().join("persist").display()
        ),
    )?;
    let mut cmd = Command::new("snmpd");
    cmd.args([
        "-f",
        "-Lo",
        "-C",
        "-m",
        "",
        "-M",
        "/nonexistent",
        "-I",
        "-smux",
        "-c",
    ])
    .arg(dir.path().join("snmpd.conf"))
    .arg("-p")
    .arg(dir.path().join("snmpd.pid"));
    let mut peer = Proc::spawn_cmd("snmpd", cmd, dir.path().join("snmpd.log"))?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    ready(addr, "public", &mut peer).await?;
    Ok((peer, addr, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_snmpd_like_snmpbulkwalk() -> Result<()> {
    let (_peer, addr, _dir) = start_snmpd().await?;

    let mut c = SnmpClient::new(addr, client_cfg("public")).await?;
    let ours = c.walk(&oid("1.3.6.1.2.1.2.2")).await?;
    assert!(
        ours.len() > 20,
        "ifTable of this machine: {} rows",
        ours.len()
    );
    compare(
        &ours,
        &reference_walk(addr, "public", "1.3.6.1.2.1.2.2")?,
        true,
    );
    // A wrong community gets no answer at all (snmpd drops it): a timeout, not a hang.
    let mut wrong = SnmpClient::new(
        addr,
        ClientConfig {
            timeout: Duration::from_millis(200),
            retries: 1,
            ..client_cfg("nope")
        },
    )
    .await?;
    assert!(matches!(
        wrong.get(&[oid("1.3.6.1.2.1.1.5.0")]).await,
        Err(SnmpError::Timeout { .. })
    ));
    Ok(())
}

/// snmpsim on a free port serving the real Cisco Nexus 5000 and Arista
/// 7150S dumps, plus `umbra-sw`: a writable port, a read-only name, and an
/// interface whose Counter32 ifInErrors grows 1000/s and wraps ~8 s after start.
pub(crate) async fn start_snmpsim() -> Result<(Proc, SocketAddr, tempfile::TempDir)> {
    let root = repo_root().join(".testbed");
    let responder = root.join("venv/bin/snmpsim-command-responder");
    anyhow::ensure!(
        responder.exists(),
        "{} missing: run scripts/deps",
        responder.display()
    );
    let dumps = {
        let out = Command::new(root.join("venv/bin/python"))
            .args([
                "-c",
                "import snmpsim_data,os;print(os.path.dirname(snmpsim_data.__file__))",
            ])
            .output()?;
        std::path::PathBuf::from(String::from_utf8(out.stdout)?.trim()).join("data")
    };
    let data = root.join("snmp/data");
    std::fs::create_dir_all(&data)?;
    for (name, rel) in [
        ("cisco-n5000", "network/switch/cisco-n5000.snmprec.bz2"),
        ("arista-7150s", "cloud/arista-dcs-7150s-52-cl.snmprec.bz2"),
    ] {
        let link = data.join(format!("{name}.snmprec.bz2"));
        if !link.exists() {
            // A copy, not a symlink: snmpsim names a community after the
            // resolved path, which must lie under --data-dir.
            std::fs::copy(dumps.join(rel), &link)?;
        }
    }
    // A writable port for the shadow lifecycle's SETs, and a read-only name.
    std::fs::write(
        data.join("umbra-sw.snmprec"),
        concat!(
            "1.3.6.1.2.1.1.1.0|4|umbra test switch\n",
            "1.3.6.1.2.1.1.3.0|67:numeric|initial=0,rate=100\n",
            "1.3.6.1.2.1.1.5.0|4|umbra-sw1\n",
            "1.3.6.1.2.1.2.2.1.1.1|2|1\n",
            "1.3.6.1.2.1.2.2.1.2.1|4|Ethernet1\n",
            "1.3.6.1.2.1.2.2.1.7.1|2|1\n",
            "1.3.6.1.2.1.2.2.1.7.5|2:writecache|value=1\n",
            "1.3.6.1.2.1.2.2.1.7.6|2:writecache|value=1\n",
            "1.3.6.1.2.1.2.2.1.8.1|2|1\n",
            "1.3.6.1.2.1.2.2.1.14.1|65:numeric|initial=4294959295,rate=1000,wrap=1\n",
            // Q-BRIDGE dot1qPvid and IF-MIB ifAlias of port 5, for port moves.
            "1.3.6.1.2.1.17.7.1.4.5.1.1.5|66:writecache|value=1\n",
            "1.3.6.1.2.1.31.1.1.1.18.5|4:writecache|value=spare\n",
            // Two spare ports, down, for the execute-mode lifecycle.
            "1.3.6.1.2.1.2.2.1.7.8|2:writecache|value=2\n",
            "1.3.6.1.2.1.2.2.1.7.9|2:writecache|value=2\n",
            "1.3.6.1.2.1.17.7.1.4.5.1.1.8|66:writecache|value=1\n",
            "1.3.6.1.2.1.17.7.1.4.5.1.1.9|66:writecache|value=1\n",
            "1.3.6.1.2.1.31.1.1.1.18.8|4:writecache|value=spare\n",
            "1.3.6.1.2.1.31.1.1.1.18.9|4:writecache|value=spare\n",
        ),
    )?;
    let port = free_udp_port();
    let mut cmd = Command::new(&responder);
    cmd.env("SNMPSIM_ALLOW_ROOT", "true")
        .arg(format!("--cache-dir={}", root.join("snmp/cache").display()))
        .arg("--log-level=error")
        // v3 options must follow --v3-engine-id and precede --data-dir.
        .args([
            "--v3-engine-id=8000000001020304",
            "--v3-user=telemetry",
            "--v3-auth-key=authpass123",
            "--v3-auth-proto=SHA",
            "--v3-priv-key=privpass123",
            "--v3-priv-proto=AES",
            "--v3-user=telemetry256",
            "--v3-auth-key=authpass256",
            "--v3-auth-proto=SHA256",
            "--v3-priv-key=privpass256",
            "--v3-priv-proto=AES256",
        ])
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--agent-udpv4-endpoint=127.0.0.1:{port}"));
    let logdir = tempfile::tempdir()?;
    let mut peer = Proc::spawn_cmd("snmpsim", cmd, logdir.path().join("snmpsim.log"))?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    ready(addr, "cisco-n5000", &mut peer).await?;
    Ok((peer, addr, logdir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_real_switch_dumps_and_verifies_sets_on_snmpsim() -> Result<()> {
    let (_peer, addr, _logs) = start_snmpsim().await?;

    // Cisco Nexus 5000: IF-MIB error counters (non-zero on several ports) and HC octets.
    let mut cisco = SnmpClient::new(addr, client_cfg("cisco-n5000")).await?;
    for column in [
        "1.3.6.1.2.1.2.2.1.14",
        "1.3.6.1.2.1.2.2.1.20",
        "1.3.6.1.2.1.31.1.1.1.6",
    ] {
        let ours = cisco.walk(&oid(column)).await?;
        assert!(!ours.is_empty(), "{column}");
        compare(&ours, &reference_walk(addr, "cisco-n5000", column)?, false);
    }
    let in_errors = cisco.walk(&oid("1.3.6.1.2.1.2.2.1.14")).await?;
    assert!(
        in_errors
            .iter()
            .filter(|(_, v)| v.as_f64() > Some(0.0))
            .count()
            >= 5,
        "ifInErrors non-zero on several ports"
    );

    // Arista 7150S: the whole ENTITY-SENSOR-MIB table.
    let mut arista = SnmpClient::new(addr, client_cfg("arista-7150s")).await?;
    let sensors = arista.walk(&oid("1.3.6.1.2.1.99.1.1")).await?;
    compare(
        &sensors,
        &reference_walk(addr, "arista-7150s", "1.3.6.1.2.1.99.1.1")?,
        false,
    );
    assert!(sensors.len() > 400, "{} sensor values", sensors.len());

    // SET ifAdminStatus down, verified by read-back; a SET of a read-only
    // object that snmpsim answers "noError + noSuchInstance" is a failure.
    let mut sw = SnmpClient::new(addr, client_cfg("umbra-sw")).await?;
    sw.set_verified(&oid("1.3.6.1.2.1.2.2.1.7.5"), Value::Integer(2))
        .await?;
    sw.set_verified(&oid("1.3.6.1.2.1.2.2.1.7.5"), Value::Integer(1))
        .await?;
    let e = sw
        .set_verified(
            &oid("1.3.6.1.2.1.1.5.0"),
            Value::OctetString(b"hijacked".to_vec()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            SnmpError::Exception {
                value: Value::NoSuchInstance,
                ..
            } | SnmpError::Agent { .. }
        ),
        "{e}"
    );
    let name = sw.get(&[oid("1.3.6.1.2.1.1.5.0")]).await?;
    assert_eq!(name[0].1, Value::OctetString(b"umbra-sw1".to_vec()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snmp_collector_reads_ports_sensors_and_wrapping_counters() -> Result<()> {
    use agent::collect::snmp::{Config, SnmpCollector};
    use agent::collect::{Collector, Quality};
    let (peer, addr, _logs) = start_snmpsim().await?;
    let cfg = |device: &str, community: &str| Config {
        interval: Duration::from_secs(1),
        device: device.into(),
        target: addr.to_string(),
        community: service::secret::Secret::inline(community),
        timeout: Duration::from_secs(2),
        retries: 2,
        max_repetitions: 25,
        v3: None,
        hwprofile: None,
        hwprofiles_dir: repo_root().join("hwprofiles/profiles"),
    };
    let find = |p: &agent::collect::Poll, metric: &str, component: &str| {
        p.readings
            .iter()
            .find(|r| r.series.metric == metric && r.series.component == component)
            .map(|r| (r.value, r.quality))
    };

    // Arista: ENTITY-SENSOR-MIB with scale/precision; its fans report
    // operStatus unavailable at 0 RPM (a failed-fan case in a real dump).
    let mut arista = SnmpCollector::new(cfg("leaf1", "arista-7150s"));
    let p = arista.poll(0).await;
    let temp = p
        .readings
        .iter()
        .find(|r| {
            r.series.metric == "temperature_celsius" && r.series.labels["entity"] == "100006001"
        })
        .expect("sensor 100006001");
    assert_eq!(
        (temp.value, temp.quality),
        (28.2, Quality::Ok),
        "282 with precision 1"
    );
    let fans: Vec<_> = p
        .readings
        .iter()
        .filter(|r| r.series.metric == "fan_speed_rpm")
        .collect();
    assert_eq!(fans.len(), 6);
    assert!(fans.iter().all(|r| r.quality == Quality::Unreadable));
    assert_eq!(
        p.faults
            .iter()
            .filter(|f| f.reason.contains("Unavailable"))
            .count(),
        6
    );

    // The device's hwprofile names its sensors; one it lacks is reported.
    let profiles = tempfile::tempdir()?;
    let shipped = std::fs::read_to_string(
        repo_root().join("hwprofiles/profiles/switches/arista/dcs-7150s.toml"),
    )?;
    std::fs::create_dir_all(profiles.path().join("switches/arista"))?;
    std::fs::write(
        profiles.path().join("switches/arista/dcs-7150s.toml"),
        format!(
            "{shipped}\n[[sensor]]\nid = \"psu9_temp\"\nmetric = \"psu_temperature_celsius\"\nkind = \"temperature\"\n\
             unit = \"celsius\"\ncomponent = \"CHASSIS\"\nsource = {{ protocol = \"snmp\", oid = \"1.3.6.1.2.1.99.1.1.1.4.999\" }}\n"
        ),
    )?;
    let profiled = Config {
        hwprofile: Some("arista/dcs-7150s".into()),
        hwprofiles_dir: profiles.path().to_path_buf(),
        ..cfg("leaf1", "arista-7150s")
    };
    profiled.validate().map_err(anyhow::Error::msg)?;
    let mut arista = SnmpCollector::new(profiled);
    let p = arista.poll(0).await;
    let named: Vec<_> = p
        .readings
        .iter()
        .filter(|r| {
            r.series.metric == "switch_temperature_celsius" && r.series.component == "leaf1/CHASSIS"
        })
        .map(|r| r.value)
        .collect();
    assert_eq!(
        named,
        vec![28.2, 25.8],
        "entPhySensorValue 282 and 258 with decimals = 1"
    );
    let missing: Vec<_> = p
        .faults
        .iter()
        .filter(|f| f.reason.contains("psu9_temp"))
        .collect();
    assert_eq!(missing.len(), 1, "{:?}", p.faults);

    // Cisco: ifName-keyed ports with error counters.
    let mut cisco = SnmpCollector::new(cfg("spine1", "cisco-n5000"));
    let p = cisco.poll(0).await;
    assert!(p.faults.is_empty(), "{:?}", p.faults);
    let errs: Vec<_> = p
        .readings
        .iter()
        .filter(|r| r.series.metric == "if_in_errors_total" && r.value > 0.0)
        .collect();
    assert!(errs.len() >= 5, "non-zero ifInErrors on several ports");
    assert!(errs
        .iter()
        .all(|r| r.series.component.starts_with("spine1/port:")));

    // A Counter32 that wraps: the rate stays ~1000/s across the wrap.
    let mut sw = SnmpCollector::new(cfg("tor1", "umbra-sw"));
    let (mut last, mut wrapped_rate) = (None::<f64>, None);
    let started = std::time::Instant::now();
    while wrapped_rate.is_none() && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis(),
        )?;
        let p = sw.poll(now).await;
        let (total, _) = find(&p, "if_in_errors_total", "tor1/port:Ethernet1").expect("counter");
        if let (Some(prev), Some((rate, _))) = (
            last,
            find(&p, "if_in_errors_per_second", "tor1/port:Ethernet1"),
        ) {
            if total < prev {
                wrapped_rate = Some(rate);
            } else {
                assert!((rate - 1000.0).abs() < 400.0, "rate {rate}");
            }
        }
        last = Some(total);
    }
    let rate = wrapped_rate.expect("the counter wrapped within 30 s");
    assert!(
        (rate - 1000.0).abs() < 400.0,
        "rate across the wrap: {rate}"
    );

    // The device disappears: its series turn unreadable, with a reason.
    drop(peer);
    let p = sw.poll(0).await;
    assert!(!p.readings.is_empty() && p.readings.iter().all(|r| r.quality == Quality::Unreadable));
    assert!(
        p.faults[0].reason.contains("no valid reply"),
        "{:?}",
        p.faults
    );
    Ok(())
}

fn v3(
    user: &str,
    auth: AuthProtocol,
    auth_pw: &str,
    privacy: PrivProtocol,
    priv_pw: &str,
    context: &str,
) -> ClientConfig {
    ClientConfig {
        v3: Some(V3User {
            user: user.into(),
            auth,
            auth_password: auth_pw.into(),
            privacy: Some((privacy, priv_pw.into())),
            context: context.into(),
        }),
        ..client_cfg("unused")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmpv3_auth_priv_against_snmpsim_and_snmpd() -> Result<()> {
    use AuthProtocol::{Sha1, Sha256};
    use PrivProtocol::{Aes128, Aes256};
    // snmpsim (pysnmp): SHA/AES-128 and SHA-256/AES-256, context = data file.
    let (_sim, addr, _logs) = start_snmpsim().await?;
    for cfg in [
        v3(
            "telemetry",
            Sha1,
            "authpass123",
            Aes128,
            "privpass123",
            "cisco-n5000",
        ),
        v3(
            "telemetry256",
            Sha256,
            "authpass256",
            Aes256,
            "privpass256",
            "cisco-n5000",
        ),
    ] {
        let mut c = SnmpClient::new(addr, cfg).await?;
        let ours = c.walk(&oid("1.3.6.1.2.1.2.2.1.14")).await?;
        compare(
            &ours,
            &reference_walk(addr, "cisco-n5000", "1.3.6.1.2.1.2.2.1.14")?,
            false,
        );
    }
    // A wrong password gets no data; the client fails cleanly.
    let wrong = v3(
        "telemetry",
        Sha1,
        "wrongpass1",
        Aes128,
        "privpass123",
        "cisco-n5000",
    );
    let e = SnmpClient::new(addr, wrong)
        .await?
        .get(&[oid("1.3.6.1.2.1.1.5.0")])
        .await
        .unwrap_err();
    assert!(
        matches!(e, SnmpError::Usm(_) | SnmpError::Timeout { .. }),
        "{e}"
    );

    // net-snmp snmpd: a SHA/AES-128 user sees what v2c sees.
    let (_peer, addr, _dir) = start_snmpd().await?;
    let user = v3("telemetry", Sha1, "authpass123", Aes128, "privpass123", "");
    let mut c = SnmpClient::new(addr, user).await?;
    let name_v3 = c.get(&[oid("1.3.6.1.2.1.1.5.0")]).await?;
    let mut v2 = SnmpClient::new(addr, client_cfg("public")).await?;
    assert_eq!(name_v3, v2.get(&[oid("1.3.6.1.2.1.1.5.0")]).await?);
    assert_eq!(
        c.walk(&oid("1.3.6.1.2.1.2.2.1.2")).await?,
        v2.walk(&oid("1.3.6.1.2.1.2.2.1.2")).await?
    );
    let wrong = v3("telemetry", Sha1, "wrongpass1", Aes128, "privpass123", "");
    let e = SnmpClient::new(addr, wrong)
        .await?
        .get(&[oid("1.3.6.1.2.1.1.5.0")])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("wrong digest"), "{e}");
    Ok(())
}
