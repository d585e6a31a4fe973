//! The coordinator's Redfish executor against sushy-emulator (sushy-tools,
//! fake driver) over TLS verified with a test CA, with Basic auth and with
//! sessions (tests/testbed/redfish/umbra_sushy.py adds the SessionService
//! the stock emulator lacks). The provisioning image is served by a real
//! loopback HTTP server, which the emulator downloads as a BMC would.

use crate::{free_port, repo_root, Proc, TestPki};
use anyhow::{ensure, Context, Result};
use coordinator::actuate::http::HttpError;
use coordinator::actuate::redfish::{AuthMode, Redfish, RedfishConfig, RedfishError};
use service::secret::Secret;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub struct Bmc {
    pub proc: Proc,
    pub url: String,
    pub pki: TestPki,
}

/// sushy-emulator on an ephemeral port with four fake systems (node-01 on;
/// spare-01..03 off), its certificate signed by a fresh test CA.
pub async fn start_bmc() -> Result<Bmc> {
    let root = repo_root();
    let python = root.join(".testbed/venv/bin/python");
    ensure!(
        python.exists(),
        "{} missing: run scripts/deps",
        python.display()
    );
    let pki = TestPki::generate()?;
    let dir = pki.dir.path();
    std::fs::create_dir_all(dir.join("state"))?;
    std::fs::create_dir_all(dir.join("tmp"))?;
    // The emulator accepts bcrypt entries only.
    let out = Command::new(&python)
        .args([
            "-c",
            "import bcrypt;print('admin:'+bcrypt.hashpw(b'password',bcrypt.gensalt(rounds=4)).decode())",
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "bcrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join("htpasswd"), &out.stdout)?;
    let port = free_port();
    let conf = std::fs::read_to_string(root.join("tests/testbed/redfish/emulator.conf.in"))?
        .replace("@DIR@", &dir.display().to_string())
        .replace("@PORT@", &port.to_string());
    std::fs::write(dir.join("emulator.conf"), conf)?;
    let mut cmd = Command::new(&python);
    cmd.arg(root.join("tests/testbed/redfish/umbra_sushy.py"))
        .arg("--config")
        .arg(dir.join("emulator.conf"))
        .env("TMPDIR", dir.join("tmp"));
    let mut proc = Proc::spawn_cmd("sushy-emulator", cmd, dir.join("sushy.log"))?;
    // The certificate names localhost.
    let url = format!("https://localhost:{port}");
    let probe = Redfish::new(&config(&url, &pki.path("ca.crt"), AuthMode::Basic))?;
    crate::eventually("sushy-emulator", Duration::from_secs(30), || {
        let alive = proc.ensure_running();
        let probe = probe.clone();
        async move {
            alive?;
            let c = probe.open().await?;
            Ok(probe.systems(&c).await.ok().filter(|s| s.len() == 4))
        }
    })
    .await
    .with_context(|| proc.log_text())?;
    Ok(Bmc { proc, url, pki })
}

pub fn config(url: &str, ca: &Path, auth: AuthMode) -> RedfishConfig {
    RedfishConfig {
        url: url.into(),
        username: "admin".into(),
        password: Secret::inline("password"),
        auth,
        ca_file: Some(ca.to_owned()),
        timeout: Duration::from_secs(10),
        retries: 2,
        // The fake driver applies a power change 1 to 11 s after the request.
        settle_timeout: Duration::from_secs(40),
        poll_interval: Duration::from_millis(250),
    }
}

/// A loopback HTTP server with the provisioning image, listening when this
/// returns (the BMC fetches the image as soon as it is told to insert it).
pub async fn serve_image(dir: &Path) -> Result<(Proc, String)> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(www.join("provision.iso"), vec![0x55u8; 64 * 1024])?;
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .arg("--directory")
        .arg(&www);
    let mut proc = Proc::spawn_cmd("image server", cmd, dir.join("www.log"))?;
    proc.listening(port, Duration::from_secs(10)).await?;
    Ok((proc, format!("http://127.0.0.1:{port}")))
}

/// (open, created) sessions on the BMC.
async fn sessions(bmc: &Bmc, redfish: &Redfish) -> Result<(u64, u64)> {
    let c = redfish.open().await?;
    // The wrapper's test-control endpoint, outside the Redfish tree.
    let v = c.get("/_test/sessions").await;
    redfish.close(c).await;
    let v = v?;
    let n = |k: &str| v[k].as_u64().context(bmc.url.clone());
    Ok((n("open")?, n("created")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisions_and_releases_a_spare_on_sushy_emulator() -> Result<()> {
    let mut bmc = start_bmc().await?;
    let (_www, www_url) = serve_image(bmc.pki.dir.path()).await?;
    let image = format!("{www_url}/provision.iso");
    let ca = bmc.pki.path("ca.crt");

    // Basic auth: discovery.
    let basic = Redfish::new(&config(&bmc.url, &ca, AuthMode::Basic))?;
    let c = basic.open().await?;
    let mut names: Vec<String> = basic
        .systems(&c)
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    assert_eq!(names, ["node-01", "spare-01", "spare-02", "spare-03"]);
    let node = basic.system(&c, "node-01").await?;
    assert_eq!(node.power_state, "On");
    // Health and the chassis' thermal readings (the emulator serves
    // Thermal, not Power): nothing that would refuse the system.
    let r = basic.readings("node-01").await?;
    let temp = |name: &str| {
        r.temperatures
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.value)
    };
    assert_eq!(temp("CPU Temp"), Some(41.0), "{r:?}");
    assert_eq!(temp("Chassis Intake Temp"), Some(25.0), "{r:?}");
    assert!(
        r.fans
            .iter()
            .any(|f| f.name == "BaseBoard System Fan" && f.value == 2100.0),
        "{r:?}"
    );
    assert!(r.power.is_empty(), "{r:?}");
    assert_eq!(r.refusal(), None);
    assert!(matches!(
        basic.system(&c, "spare-99").await,
        Err(RedfishError::NoSystem(_))
    ));
    basic.close(c).await;

    // Wrong password: 401 from the BMC, not retried into success.
    let mut wrong = config(&bmc.url, &ca, AuthMode::Basic);
    wrong.password = Secret::inline("nope");
    let wrong = Redfish::new(&wrong)?;
    let c = wrong.open().await?;
    let e = wrong.systems(&c).await.unwrap_err();
    assert!(
        matches!(&e, RedfishError::Status { status, .. } if status.as_u16() == 401),
        "{e}"
    );
    // A certificate from another CA is refused.
    let rogue = TestPki::generate()?;
    let untrusted = Redfish::new(&config(&bmc.url, &rogue.path("ca.crt"), AuthMode::Basic))?;
    let c = untrusted.open().await?;
    let e = untrusted.systems(&c).await.unwrap_err();
    assert!(
        matches!(&e, RedfishError::Http(HttpError::Tls { .. })),
        "{e}"
    );
    // So is a session login with a wrong password.
    let mut bad_login = config(&bmc.url, &ca, AuthMode::Session);
    bad_login.password = Secret::inline("nope");
    let e = Redfish::new(&bad_login)?.open().await.unwrap_err();
    assert!(
        matches!(&e, RedfishError::Status { status, .. } if status.as_u16() == 401),
        "{e}"
    );

    // Session auth: provision spare-01 (off) onto the image.
    let session = Redfish::new(&config(&bmc.url, &ca, AuthMode::Session))?;
    let up = session.provision("spare-01", &image).await?;
    assert_eq!(up.power_state, "On");
    let c = session.open().await?;
    let sys = c.get(&up.path).await?;
    assert_eq!(sys["Boot"]["BootSourceOverrideTarget"], "Cd");
    let media = c.get(&format!("{}/VirtualMedia/Cd", up.path)).await?;
    assert_eq!(media["Inserted"], true, "{media}");
    assert_eq!(media["Image"], image.as_str(), "{media}");
    session.close(c).await;
    // Sessions were used, and every one was deleted.
    let (open, created) = sessions(&bmc, &basic).await?;
    assert_eq!(open, 0);
    assert!(
        created >= 2,
        "provision and the check above log in: {created}"
    );

    // Repeating it (a coordinator restarted mid-step) changes nothing.
    let again = session.provision("spare-01", &image).await?;
    assert_eq!(again.power_state, "On");

    // An image the BMC cannot download: the BMC's own message comes back.
    let e = session
        .provision("spare-02", &format!("{www_url}/missing.iso"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RedfishError::Status { status, .. } if status.as_u16() == 400),
        "{e}"
    );
    assert!(e.to_string().contains("download"), "{e}");
    assert_eq!(
        sessions(&bmc, &basic).await?.0,
        0,
        "sessions deleted on failure too"
    );

    // Release: image ejected, powered off.
    session.release("spare-01").await?;
    let c = basic.open().await?;
    let spare = basic.system(&c, "spare-01").await?;
    assert_eq!(spare.power_state, "Off");
    let media = c.get(&format!("{}/VirtualMedia/Cd", spare.path)).await?;
    assert_eq!(media["Inserted"], false, "{media}");
    basic.close(c).await;
    bmc.proc.ensure_running()?;
    Ok(())
}
