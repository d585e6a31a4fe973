//! Execute mode end to end, every executor against a real peer: a host
//! crosses the critical threshold; the runtime confirms and admits it,
//! then the executor provisions a spare on sushy-emulator (Redfish over
//! TLS, outside the host's rack), points HAProxy's shadow servers at it,
//! mirrors 5 % of requests to it through nginx's `mirror` module (KPIs from
//! HAProxy's mirror frontend, whose share the executor sets through the
//! runtime API; KPIs from the mirror backend), shifts 10/25/50/100 % through HAProxy's
//! runtime API and promotes, all with the default policy (10 s dwell per
//! step) while wrk drives load through nginx: 0 failed requests. The
//! spare's switch port (snmpsim) is brought up in the service's VLAN at
//! provisioning and the old primary's shut at promotion. The timeline
//! (crossing → 100 % → promoted) is printed for docs/BENCHMARKS.md.

use super::redfish::{config, serve_image, start_bmc};
use super::traffic::{backend, backend_with, wrk_totals};
use crate::{free_port, Proc};
use anyhow::{ensure, Context, Result};
use coordinator::actuate::compare::CompareConfig;
use coordinator::actuate::haproxy::{Haproxy, HaproxyConfig};
use coordinator::actuate::hook::HookConfig;
use coordinator::actuate::kubernetes::KubernetesConfig;
use coordinator::actuate::mirror::MirrorConfig;
use coordinator::actuate::redfish::AuthMode;
use coordinator::actuate::switch::{Switch, SwitchConfig, DOT1Q_PVID, IF_ADMIN_STATUS, IF_ALIAS};
use coordinator::shadow::actuator::{
    Disposition, ExecuteConfig, FleetActuator, PortConfig, ServiceConfig, SpareConfig,
};
use coordinator::shadow::engine::{Phase, Policy};
use coordinator::shadow::execute::Executor;
use coordinator::shadow::rails::Rails;
use coordinator::shadow::runtime::{self, Mode, Settings, Shadows};
use coordinator::store::{Store, StoreConfig};
use firmware_shims::snmp::Value;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Front {
    _haproxy: Proc,
    _nginx: Proc,
    nginx_port: u16,
    socket: std::path::PathBuf,
    mirror_map: std::path::PathBuf,
}

/// HAProxy (live backend `app`: primary + a shadow placeholder at weight
/// 0; mirror frontend passing the map's share of copies to backend
/// `mirror`, whose server is the comparator at `compare`) behind nginx,
/// which copies every request there.
async fn start_front(dir: &Path, primary: u16, compare: u16) -> Result<Front> {
    let socket = dir.join("admin.sock");
    let (live, mirror) = (free_port(), free_port());
    let mirror_map = dir.join("umbra-mirror.map");
    std::fs::write(&mirror_map, "share 0\n")?;
    // spawn_haproxy puts its admin socket at `socket`.
    let (haproxy, _) = super::traffic::spawn_haproxy(
        dir,
        &format!(
            "frontend fe\n  bind 127.0.0.1:{live}\n  default_backend app\n\
             frontend fe_mirror\n  bind 127.0.0.1:{mirror}\n\
               http-request set-var(txn.pct) str(share),map_str_int({map},0)\n\
               http-request return status 204 if {{ rand(100),sub(txn.pct) ge 0 }}\n\
               default_backend mirror\n\
             backend app\n  balance roundrobin\n  server primary 127.0.0.1:{primary} weight 100\n  server shadow 127.0.0.1:9 weight 0\n\
             backend mirror\n  server shadow 127.0.0.1:{compare} weight 100\n",
            map = mirror_map.display(),
        ),
    )
    .await?;
    let nginx_port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n\
               upstream live {{ server 127.0.0.1:{live}; keepalive 32; }}\n\
               upstream mirror {{ server 127.0.0.1:{mirror_port}; keepalive 32; }}\n\
               server {{\n    listen 127.0.0.1:{nginx_port};\n\
                 location / {{ mirror /_umbra_mirror; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_pass http://live; }}\n\
                 location = /_umbra_mirror {{ internal;\n\
                   proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_pass http://mirror$request_uri; }}\n\
               }}\n}}\n",
            dir = dir.display(),
            mirror_port = mirror,
        ),
    )?;
    let prefix = dir.display().to_string();
    let conf_s = conf.display().to_string();
    let mut cmd = std::process::Command::new("nginx");
    cmd.args(["-p", &prefix, "-c", &conf_s]);
    let mut nginx = Proc::spawn_cmd("nginx", cmd, dir.join("nginx.log"))?;
    nginx.listening(nginx_port, Duration::from_secs(10)).await?;
    Ok(Front {
        _haproxy: haproxy,
        _nginx: nginx,
        nginx_port,
        socket,
        mirror_map,
    })
}

/// A lifecycle under way (`Rig::begin`).
struct Started {
    shadows: Arc<Shadows>,
    runner: tokio::task::JoinHandle<()>,
    wrk: tokio::process::Child,
    t0: Instant,
    timeline: Vec<(Duration, String)>,
}

/// Everything a lifecycle acts on, and the coordinator side (store,
/// lifecycles, executor settings) in process.
struct Rig {
    bmc: super::redfish::Bmc,
    _www: Proc,
    front: Front,
    dir: tempfile::TempDir,
    /// The service on spare-02 / spare-03 answers after this many ms.
    spare_delay: Arc<AtomicU64>,
    spare3_delay: Arc<AtomicU64>,
    /// spare-02's service answers "no" where the primary says "ok".
    spare_wrong: Arc<AtomicBool>,
    _snmp: (Proc, tempfile::TempDir),
    kube: Arc<std::sync::Mutex<crate::kube_api::Cluster>>,
    store: Arc<Store>,
    cfg: ExecuteConfig,
    settings: Settings,
}

impl Rig {
    async fn start(policy: Policy) -> Result<Rig> {
        let bmc = start_bmc().await?;
        let dir = tempfile::tempdir()?;
        let (www, www_url) = serve_image(dir.path()).await?;
        let primary = backend(Arc::new(AtomicU64::new(0))).await?;
        let spare_delay = Arc::new(AtomicU64::new(0));
        let spare_wrong = Arc::new(AtomicBool::new(false));
        let spare_service = backend_with(spare_delay.clone(), spare_wrong.clone()).await?;
        let spare3_delay = Arc::new(AtomicU64::new(0));
        let spare3_service = backend(spare3_delay.clone()).await?;
        let (snmp, switch_addr, snmp_logs) = super::snmp::start_snmpsim().await?;
        let compare = free_port();
        let front = start_front(dir.path(), primary, compare).await?;
        // The orchestrator's hook: keeps the document it was given.
        let hook = dir.path().join("migrate.sh");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\ncat > {}/migrated.json\necho moved\n",
                dir.path().display()
            ),
        )?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
        // The host is Kubernetes node-7 (the recorded API).
        let kube = Arc::new(std::sync::Mutex::new(crate::kube_api::node7()));
        let kube_url = crate::kube_api::serve(kube.clone()).await;
        let store = Arc::new(Store::open(
            &dir.path().join("store"),
            StoreConfig {
                sync_writes: false,
                ..StoreConfig::default()
            },
        )?);
        for (host, rack) in [
            ("web-01", "r1"),
            ("web-02", "r1"),
            ("web-03", "r2"),
            ("db-01", "r3"),
        ] {
            let mut h = coordinator::model::HostRecord {
                host_id: host.into(),
                ..Default::default()
            };
            h.failure_domain.rack = rack.into();
            store.put_host(&h)?;
        }
        let bmc_cfg = config(&bmc.url, &bmc.pki.path("ca.crt"), AuthMode::Session);
        let port = |if_index| PortConfig {
            switch: "tor".into(),
            if_index,
            bridge_port: Some(if_index),
        };
        let spare = |id: &str, rack: &str, cost: f64, service: u16, port| SpareConfig {
            id: id.into(),
            system: id.into(),
            bmc: bmc_cfg.clone(),
            cost,
            rack: rack.into(),
            pdu: String::new(),
            tor: String::new(),
            address: format!("127.0.0.1:{service}").parse().unwrap(),
            port,
            available: true,
        };
        let cfg = ExecuteConfig {
            interval: Duration::from_millis(250),
            image: format!("{www_url}/provision.iso"),
            allow_same_domain: false,
            // spare-01 is cheaper but in the failing host's rack: never
            // chosen. spare-03 costs most: only when spare-02 failed.
            spares: vec![
                spare("spare-01", "r1", 0.5, spare_service, None),
                spare("spare-02", "r9", 1.0, spare_service, Some(port(8))),
                spare("spare-03", "r8", 2.0, spare3_service, Some(port(9))),
            ],
            switches: [(
                "tor".to_owned(),
                SwitchConfig {
                    address: switch_addr,
                    community: Some(service::secret::Secret::inline("umbra-sw")),
                    v3: None,
                    timeout: Duration::from_secs(2),
                    retries: 2,
                },
            )]
            .into_iter()
            .collect(),
            services: vec![ServiceConfig {
                host: "web-01".into(),
                haproxy: HaproxyConfig {
                    socket: front.socket.clone(),
                    backend: "app".into(),
                    primary: "primary".into(),
                    shadow: "shadow".into(),
                    timeout: Duration::from_secs(2),
                },
                mirror: Some(MirrorConfig {
                    map: front.mirror_map.clone(),
                    key: "share".into(),
                }),
                mirror_backend: Some("mirror".into()),
                compare: Some(CompareConfig {
                    listen: format!("127.0.0.1:{compare}").parse()?,
                    primary: format!("127.0.0.1:{primary}").parse()?,
                    body: true,
                    timeout: Duration::from_secs(5),
                }),
                rsync: None,
                workloads: vec!["checkout-api".into(), "search-indexer".into()],
                hook: Some(HookConfig::Exec {
                    program: hook.clone(),
                    args: Vec::new(),
                    timeout: Duration::from_secs(10),
                }),
                kubernetes: Some(KubernetesConfig {
                    api_url: kube_url.clone(),
                    token: Some(service::secret::Secret::inline("sa-token")),
                    ca_file: None,
                    nodes: [("web-01".to_owned(), "node-7".to_owned())]
                        .into_iter()
                        .collect(),
                    drain_timeout: Duration::from_secs(30),
                    retry_interval: Duration::from_millis(200),
                    timeout: Duration::from_secs(5),
                }),
                port: Some(PortConfig {
                    switch: "tor".into(),
                    if_index: 6,
                    bridge_port: None,
                }),
                vlan: Some(120),
                after_promotion: Disposition::Quarantine,
                bmc: None,
                system: None,
                rebuild_image: None,
            }],
        };
        let settings = Settings {
            mode: Mode::Execute,
            policy,
            rails: Rails {
                max_confirmed_fraction: 1.0,
                ..Rails::default()
            },
            holdout_percent: 0,
            unreachable_after_ms: runtime::DEFAULT_UNREACHABLE_AFTER_MS,
        };
        Ok(Rig {
            bmc,
            _www: www,
            front,
            dir,
            spare_delay,
            spare3_delay,
            spare_wrong,
            _snmp: (snmp, snmp_logs),
            kube,
            store,
            cfg,
            settings,
        })
    }

    /// A coordinator process's side: lifecycles resumed from the store, a
    /// fresh actuator, the executor running.
    async fn coordinator(&self) -> Result<(Arc<Shadows>, tokio::task::JoinHandle<()>)> {
        let shadows = Arc::new(Shadows::load(&self.store, Mode::Execute)?);
        let pagers = Arc::new(coordinator::paging::Pagers::new(
            &coordinator::paging::PagingConfig::default(),
        )?);
        let actuator = Arc::new(
            FleetActuator::new(self.store.clone(), self.cfg.clone()).map_err(anyhow::Error::msg)?,
        );
        actuator.start().await.map_err(anyhow::Error::msg)?;
        let ex = Executor::new(
            self.store.clone(),
            shadows.clone(),
            self.settings.clone(),
            actuator,
            pagers,
        );
        Ok((shadows, tokio::spawn(ex.run(self.cfg.interval))))
    }

    /// The critical crossing: P(fail 24 h) over `critical` confirms at once;
    /// the rails admit it and execute mode starts it.
    fn cross(&self, shadows: &Shadows) -> Result<()> {
        let risk = coordinator::risk::Risk {
            host: "web-01".into(),
            component: "disk:wwn-0x5000c500499602d2".into(),
            probability: [0.8, 0.95],
            explanation: "SMART 5 +12.0%/day".into(),
            model_version: 1,
            evaluated_ms: coordinator::now_ms(),
            history_days: 14,
            holdout: false,
        };
        runtime::step(
            &self.store,
            shadows,
            &self.settings,
            std::slice::from_ref(&risk),
            coordinator::now_ms(),
        )?;
        let lc = &shadows.snapshot().lifecycles["web-01"];
        ensure!(lc.phase == Phase::Provisioning { attempt: 1 }, "{lc:?}");
        Ok(())
    }

    /// A coordinator running, wrk loading the front, and web-01 crossed:
    /// its lifecycle provisioning from `t0`.
    async fn begin(&self) -> Result<Started> {
        let (shadows, runner) = self.coordinator().await?;
        let wrk = start_wrk(self.front.nginx_port)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = Instant::now();
        self.cross(&shadows)?;
        Ok(Started {
            shadows,
            runner,
            wrk,
            t0,
            timeline: vec![(Duration::ZERO, "provisioning".to_owned())],
        })
    }

    /// A Basic-auth client of the rig's BMC (to check what the lifecycle did).
    /// The lifecycle's path so far (`story`), for failure messages.
    fn story(&self) -> Vec<String> {
        match self.store.audit(0, 100_000) {
            Ok(log) => story(&log),
            Err(e) => vec![format!("audit log unreadable: {e}")],
        }
    }

    fn redfish(&self) -> Result<coordinator::actuate::redfish::Redfish> {
        Ok(coordinator::actuate::redfish::Redfish::new(&config(
            &self.bmc.url,
            &self.bmc.pki.path("ca.crt"),
            AuthMode::Basic,
        ))?)
    }

    /// A system on the rig's BMC, as it reports itself now.
    async fn system(&self, name: &str) -> Result<coordinator::actuate::redfish::System> {
        let redfish = self.redfish()?;
        let c = redfish.open().await?;
        let sys = redfish.system(&c, name).await;
        redfish.close(c).await;
        Ok(sys?)
    }

    fn haproxy(&self, backend: &str) -> Result<Haproxy> {
        Ok(Haproxy::new(HaproxyConfig {
            socket: self.front.socket.clone(),
            backend: backend.into(),
            primary: "primary".into(),
            shadow: "shadow".into(),
            timeout: Duration::from_secs(2),
        })?)
    }

    /// A switch port as (ifAdminStatus, dot1qPvid, ifAlias) read back
    /// from snmpsim; the PVID is read at the port's own bridge number.
    async fn port(&self, if_index: u32) -> Result<(Value, Value, Value)> {
        let mut sw = Switch::connect(&self.cfg.switches["tor"]).await?;
        let oid = |base: &str| format!("{base}.{if_index}").parse().unwrap();
        Ok((
            sw.get(&oid(IF_ADMIN_STATUS)).await?,
            sw.get(&oid(DOT1Q_PVID)).await?,
            sw.get(&oid(IF_ALIAS)).await?,
        ))
    }

    /// The `status` column of `server` in the live backend (`show stat`).
    async fn server_status(&self, server: &str) -> Result<String> {
        let stat = self.haproxy("app")?.command("show stat").await?;
        let header = stat.lines().next().context("show stat header")?;
        let col = header
            .trim_start_matches("# ")
            .split(',')
            .position(|c| c == "status")
            .context("no status column")?;
        stat.lines()
            .find(|l| l.starts_with(&format!("app,{server},")))
            .and_then(|l| l.split(',').nth(col))
            .map(str::to_owned)
            .with_context(|| format!("no {server} in {stat}"))
    }

    async fn mirror_share(&self) -> Result<Option<String>> {
        let map = self
            .haproxy("mirror")?
            .command(&format!("show map {}", self.front.mirror_map.display()))
            .await?;
        Ok(coordinator::actuate::mirror::parse_map_value(&map, "share"))
    }
}

/// A spare's port as the fixture has it: down, VLAN 1, "spare".
fn spare_port_down() -> (Value, Value, Value) {
    (
        Value::Integer(2),
        Value::Gauge32(1),
        Value::OctetString(b"spare".to_vec()),
    )
}

fn phase_label(phase: &Phase, policy: &Policy) -> String {
    match phase {
        Phase::Shifting { step, .. } => format!("shifting {}%", policy.ramp[*step]),
        p => p.name().to_owned(),
    }
}

/// Follow web-01's lifecycle until `until` holds for its label (or it
/// ends), recording when each label began.
async fn follow(
    shadows: &Shadows,
    policy: &Policy,
    t0: Instant,
    timeline: &mut Vec<(Duration, String)>,
    until: impl Fn(&str) -> bool,
) -> Result<Phase> {
    let deadline = Duration::from_secs(240);
    loop {
        let lc = shadows.snapshot().lifecycles["web-01"].clone();
        let name = phase_label(&lc.phase, policy);
        if timeline.last().is_none_or(|(_, n)| *n != name) {
            timeline.push((t0.elapsed(), name.clone()));
        }
        if until(&name) || lc.phase.ended() {
            return Ok(lc.phase);
        }
        ensure!(t0.elapsed() < deadline, "stuck in {name}: {timeline:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start_wrk(port: u16) -> Result<tokio::process::Child> {
    Ok(tokio::process::Command::new("wrk")
        .args(["-t2", "-c16", "-d300s", "--timeout", "5s"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?)
}

/// Stop wrk (SIGINT: it prints its report); (requests, failed, report).
async fn stop_wrk(wrk: tokio::process::Child) -> Result<(u64, u64, String)> {
    let pid = wrk.id().context("wrk pid")?;
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()?;
    let out = wrk.wait_with_output().await?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (requests, failed) = wrk_totals(&text)?;
    Ok((requests, failed, text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_at_risk_is_shadowed_end_to_end_with_no_failed_requests() -> Result<()> {
    let rig = Rig::start(Policy::default()).await?;
    let Started {
        shadows,
        runner,
        wrk,
        t0,
        mut timeline,
    } = rig.begin().await?;
    let policy = rig.settings.policy.clone();
    let end = follow(&shadows, &policy, t0, &mut timeline, |_| false).await;
    runner.abort();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (requests, failed, text) = stop_wrk(wrk).await?;
    eprintln!("{text}\ntimeline: {timeline:?}");
    let log = rig.store.audit(0, 100_000)?;
    promoted_as_planned(&rig, &log, end?, requests, failed, &text)
        .await
        .with_context(|| format!("timeline {timeline:?}; lifecycle {:?}", story(&log)))?;
    let at = |n: &str| timeline.iter().find(|(_, x)| x == n).map(|(t, _)| *t);
    eprintln!(
        "critical crossing → 100 %: {:?}; → promoted: {:?}; {requests} requests, {failed} failed",
        at("shifting 100%"),
        at("promoted")
    );
    Ok(())
}

/// The lifecycle's path in the audit log, for failure messages: its
/// transitions (and what caused each) and the actions that failed.
fn story(log: &[(i64, serde_json::Value)]) -> Vec<String> {
    log.iter()
        .filter_map(|(_, r)| match r["event"].as_str() {
            Some("transition") => Some(format!(
                "{} → {} ({})",
                r["from"],
                r["to"],
                r.get("reason").or(r.get("after")).unwrap_or(&r["kpi"])
            )),
            Some("action_result") if r["ok"] == false => {
                Some(format!("{} failed: {}", r["action"], r["error"]))
            }
            _ => None,
        })
        .collect()
}

/// What `a_host_at_risk_is_shadowed_end_to_end_with_no_failed_requests`
/// expects once the lifecycle ended.
async fn promoted_as_planned(
    rig: &Rig,
    log: &[(i64, serde_json::Value)],
    end: Phase,
    requests: u64,
    failed: u64,
    text: &str,
) -> Result<()> {
    ensure!(end == Phase::Promoted, "ended {end:?}");
    ensure!(requests > 10_000, "wrk ran: {requests}");
    ensure!(failed == 0, "{failed} failed of {requests}:\n{text}");
    // The spare outside the rack was used.
    let assigned = rig.store.assignments()?;
    ensure!(
        assigned.len() == 1 && assigned[0].1["spare"] == "spare-02",
        "{assigned:?}"
    );
    // Its port is up in the service's VLAN; the old primary's is shut.
    let up = (
        Value::Integer(1),
        Value::Gauge32(120),
        Value::OctetString(b"umbra shadow of web-01".to_vec()),
    );
    ensure!(rig.port(8).await? == up, "{:?}", rig.port(8).await?);
    // The old primary is quarantined: out of HAProxy, its port shut.
    ensure!(rig.port(6).await?.0 == Value::Integer(2), "primary's port");
    ensure!(
        rig.server_status("primary").await?.starts_with("MAINT"),
        "{}",
        rig.server_status("primary").await?
    );
    // Mirroring ran (5 %), reached the shadow, and is off after promotion.
    let mirrored = log.iter().any(|(_, r)| {
        r["event"] == "action_result" && r["action"] == "Mirror { percent: 5 }" && r["ok"] == true
    });
    ensure!(mirrored, "no mirror action in the audit log");
    ensure!(rig.mirror_share().await?.as_deref() == Some("0"));
    let mirrored_requests = rig
        .haproxy("mirror")?
        .stats_of("mirror", "shadow")
        .await?
        .responses;
    ensure!(
        mirrored_requests > 100,
        "the shadow saw {mirrored_requests} mirrored requests"
    );
    // The comparator passed the mirroring on answers compared with the
    // primary's: enough of them, none different.
    let passed = log.iter().find(|(_, r)| {
        r["event"] == "transition" && r["from"] == "mirroring" && r["to"] == "shifting"
    });
    ensure!(
        passed
            .is_some_and(|(_, r)| r["kpi"]["requests"].as_u64() >= Some(100)
                && r["kpi"]["mismatch_rate"] == 0.0),
        "{passed:?}"
    );
    // The dependent workloads were moved to the shadow by the hook.
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rig.dir.path().join("migrated.json"))?)?;
    ensure!(
        doc["action"] == "drain"
            && doc["target"] == "web-01"
            && doc["shadow"] == "spare-02"
            && doc["workloads"] == serde_json::json!(["checkout-api", "search-indexer"]),
        "{doc}"
    );
    ensure!(
        log.iter()
            .any(|(_, r)| r["event"] == "workloads_moved" && r["hook_said"] == "moved"),
        "no workloads_moved record"
    );
    // The dependency map: configured, and discovered on the node.
    ensure!(
        log.iter().any(|(_, r)| r["event"] == "dependencies"
            && r["configured"] == serde_json::json!(["checkout-api", "search-indexer"])
            && r["discovered"]
                == serde_json::json!(["shop/Deployment/api", "shop/StatefulSet/web"])),
        "no dependencies record"
    );
    // The node was cordoned at provisioning and drained at promotion; the
    // budget refused web-0 twice before it moved.
    {
        let k = rig.kube.lock().unwrap();
        ensure!(k.node["spec"]["unschedulable"] == true, "{}", k.node);
        ensure!(
            k.pods.iter().all(|p| p["metadata"]["namespace"] != "shop"),
            "left: {:?}",
            k.pods
        );
    }
    ensure!(
        log.iter().any(|(_, r)| r["event"] == "node_drained"
            && r["node"] == "node-7"
            && r["budget_refusals"] == 2),
        "no drain of node-7 with two budget refusals"
    );
    Ok(())
}

/// A coordinator restart in the middle of the shift resumes the lifecycle
/// from the store; a latency regression on the shadow then rolls it back
/// (no other spare may be tried): traffic back on the primary, mirroring
/// off, the spare powered off, its switch port as it was and its
/// assignment dropped, 0 failed requests throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_and_a_regression_rolls_back_with_no_failed_requests() -> Result<()> {
    let policy = Policy {
        min_dwell_ms: 2_000,
        spare_retries: 0,
        ..Policy::default()
    };
    let rig = Rig::start(policy.clone()).await?;
    let Started {
        shadows,
        runner,
        wrk,
        t0,
        mut timeline,
    } = rig.begin().await?;
    follow(&shadows, &policy, t0, &mut timeline, |n| {
        n == "shifting 25%"
    })
    .await?;
    // The coordinator dies (its executor and in-memory state gone) ...
    runner.abort();
    drop(shadows);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // ... and a new one resumes from the store.
    let (shadows, runner) = rig.coordinator().await?;
    timeline.push((t0.elapsed(), "restarted".to_owned()));
    let resumed = shadows.snapshot().lifecycles["web-01"].phase.clone();
    ensure!(matches!(resumed, Phase::Shifting { .. }), "{resumed:?}");
    // The shadow regresses: 2 s per response, far over the 500 ms limit.
    follow(&shadows, &policy, t0, &mut timeline, |n| {
        n == "shifting 50%"
    })
    .await?;
    rig.spare_delay
        .store(700, std::sync::atomic::Ordering::Relaxed);
    timeline.push((t0.elapsed(), "shadow slowed".to_owned()));
    let end = follow(&shadows, &policy, t0, &mut timeline, |_| false).await;
    runner.abort();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (requests, failed, text) = stop_wrk(wrk).await?;
    eprintln!("{text}\ntimeline: {timeline:?}");
    let end = end?;
    for (t, r) in rig.store.audit(0, 100_000)? {
        if r["event"] == "transition" && r["to"] == "rolling_back" {
            eprintln!("rollback at {t}: {r}");
        }
    }
    ensure!(
        matches!(end, Phase::RolledBack { .. }),
        "{end:?}; {timeline:?}; lifecycle {:?}",
        rig.story()
    );
    ensure!(failed == 0, "{failed} failed of {requests}:\n{text}");
    let live = rig.haproxy("app")?;
    ensure!(
        live.shadow_stats().await?.weight == 0,
        "shadow weight after rollback"
    );
    ensure!(rig.mirror_share().await?.as_deref() == Some("0"));
    ensure!(rig.store.assignments()?.is_empty(), "the spare is released");
    ensure!(
        rig.port(8).await? == spare_port_down(),
        "{:?}",
        rig.port(8).await?
    );
    ensure!(
        rig.port(6).await?.0 == Value::Integer(1),
        "primary's port untouched"
    );
    // Cordoned at provisioning, uncordoned by the rollback, never drained.
    {
        let k = rig.kube.lock().unwrap();
        ensure!(k.node["spec"]["unschedulable"] == false, "{}", k.node);
        ensure!(k.pods.len() == 5, "nothing evicted: {:?}", k.pods);
        let patches = k.seen.iter().filter(|(m, ..)| m == "PATCH").count();
        ensure!(patches >= 2, "cordon and uncordon: {:?}", k.seen);
    }
    let spare = rig.system("spare-02").await?;
    ensure!(spare.power_state == "Off", "{spare:?}");
    let reason = match &end {
        Phase::RolledBack { reason } => reason.clone(),
        _ => String::new(),
    };
    ensure!(reason.contains("p99"), "{reason}");
    let _ = &rig.dir;
    Ok(())
}

/// Self-healing: the shadow on spare-02 regresses (latency) at 25 %; the
/// lifecycle takes traffic off it, releases it (powered off, its port put
/// back) and provisions spare-03 in its place, which walks the ramp again
/// to promotion. 0 failed requests throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_regresses_is_replaced_by_another_spare_with_no_failed_requests() -> Result<()>
{
    let policy = Policy {
        min_dwell_ms: 2_000,
        ..Policy::default()
    };
    let rig = Rig::start(policy.clone()).await?;
    let Started {
        shadows,
        runner,
        wrk,
        t0,
        mut timeline,
    } = rig.begin().await?;
    follow(&shadows, &policy, t0, &mut timeline, |n| {
        n == "shifting 25%"
    })
    .await?;
    rig.spare_delay
        .store(700, std::sync::atomic::Ordering::Relaxed);
    timeline.push((t0.elapsed(), "spare-02 slowed".to_owned()));
    let end = follow(&shadows, &policy, t0, &mut timeline, |_| false).await;
    runner.abort();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (requests, failed, text) = stop_wrk(wrk).await?;
    eprintln!("{text}\ntimeline: {timeline:?}");
    if !matches!(end, Ok(Phase::Promoted)) {
        for (t, r) in rig.store.audit(0, 100_000)? {
            eprintln!("audit {t}: {r}");
        }
    }
    let end = end?;
    ensure!(
        end == Phase::Promoted,
        "{end:?}; {timeline:?}; lifecycle {:?}",
        rig.story()
    );
    ensure!(
        timeline.iter().any(|(_, n)| n == "replacing"),
        "{timeline:?}"
    );
    ensure!(failed == 0, "{failed} failed of {requests}:\n{text}");
    let log = rig.store.audit(0, 100_000)?;
    ensure!(
        log.iter().any(|(_, r)| r["event"] == "transition"
            && r["to"] == "replacing"
            && r["reason"].as_str().is_some_and(|w| w.contains("p99"))),
        "no replacing transition with the regression in the audit log"
    );
    let assigned = rig.store.assignments()?;
    ensure!(
        assigned.len() == 1
            && assigned[0].1["spare"] == "spare-03"
            && assigned[0].1["failed"] == serde_json::json!(["spare-02"]),
        "{assigned:?}"
    );
    ensure!(
        rig.port(8).await? == spare_port_down(),
        "{:?}",
        rig.port(8).await?
    );
    ensure!(
        rig.port(9).await?
            == (
                Value::Integer(1),
                Value::Gauge32(120),
                Value::OctetString(b"umbra shadow of web-01".to_vec())
            ),
        "{:?}",
        rig.port(9).await?
    );
    ensure!(
        rig.port(6).await?.0 == Value::Integer(2),
        "primary's port shut"
    );
    let (failed_spare, shadow) = (rig.system("spare-02").await?, rig.system("spare-03").await?);
    ensure!(failed_spare.power_state == "Off", "{failed_spare:?}");
    ensure!(shadow.power_state == "On", "{shadow:?}");
    let _ = (&rig.dir, &rig.spare3_delay);
    Ok(())
}

/// Mirroring validates the shadow against the primary: spare-02 answers
/// 200, fast, but "no" where the primary says "ok". The comparator sees
/// the bodies differ and the lifecycle rolls back from mirroring (no other
/// spare may be tried): the shadow never gets live traffic, 0 failed
/// requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_whose_answers_differ_from_the_primary_never_gets_live_traffic() -> Result<()> {
    let policy = Policy {
        min_dwell_ms: 2_000,
        spare_retries: 0,
        ..Policy::default()
    };
    let rig = Rig::start(policy.clone()).await?;
    rig.spare_wrong
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let Started {
        shadows,
        runner,
        wrk,
        t0,
        mut timeline,
    } = rig.begin().await?;
    let end = follow(&shadows, &policy, t0, &mut timeline, |_| false).await;
    runner.abort();
    let (requests, failed, text) = stop_wrk(wrk).await?;
    eprintln!("{text}\ntimeline: {timeline:?}");
    let end = end?;
    let reason = match &end {
        Phase::RolledBack { reason } => reason.clone(),
        other => anyhow::bail!("{other:?}; {timeline:?}; lifecycle {:?}", rig.story()),
    };
    ensure!(reason.contains("differ from the primary"), "{reason}");
    ensure!(
        !timeline.iter().any(|(_, n)| n.starts_with("shifting")),
        "{timeline:?}"
    );
    ensure!(failed == 0, "{failed} failed of {requests}:\n{text}");
    let live = rig.haproxy("app")?.shadow_stats().await?;
    ensure!(
        live.weight == 0 && live.responses == 0,
        "live traffic reached the shadow: {live:?}"
    );
    let log = rig.store.audit(0, 100_000)?;
    ensure!(
        log.iter().any(|(_, r)| r["event"] == "mirror_mismatch"
            && r["last"]
                .as_str()
                .is_some_and(|l| l.contains("body differs"))),
        "no mirror_mismatch record"
    );
    Ok(())
}

/// Shadow count by risk: at P(24 h) 0.8 the policy keeps one hot standby
/// beside the shadow, so spare-03 is powered on the image while spare-02
/// serves. When spare-02 regresses at 25 %, the standby takes over as
/// the shadow (no second power-on) and walks the ramp to promotion; 0
/// failed requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_standby_takes_over_from_a_failed_shadow_with_no_failed_requests() -> Result<()> {
    let policy = Policy {
        min_dwell_ms: 2_000,
        standby: vec![coordinator::shadow::engine::StandbyTier {
            p24h: 0.5,
            spares: 1,
        }],
        ..Policy::default()
    };
    let rig = Rig::start(policy.clone()).await?;
    let Started {
        shadows,
        runner,
        wrk,
        t0,
        mut timeline,
    } = rig.begin().await?;
    // The standby is up before the shadow fails.
    let standby_ready = |store: &Store| -> Result<bool> {
        Ok(store
            .audit(0, 100_000)?
            .iter()
            .any(|(_, r)| r["event"] == "standby_ready" && r["spare"] == "spare-03"))
    };
    follow(&shadows, &policy, t0, &mut timeline, |n| {
        n == "shifting 25%"
    })
    .await?;
    crate::eventually("the standby", Duration::from_secs(60), || {
        let ready = standby_ready(&rig.store);
        async move { Ok(ready?.then_some(())) }
    })
    .await?;
    timeline.push((t0.elapsed(), "standby ready".to_owned()));
    rig.spare_delay
        .store(700, std::sync::atomic::Ordering::Relaxed);
    timeline.push((t0.elapsed(), "spare-02 slowed".to_owned()));
    let end = follow(&shadows, &policy, t0, &mut timeline, |_| false).await;
    runner.abort();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (requests, failed, text) = stop_wrk(wrk).await?;
    eprintln!("{text}\ntimeline: {timeline:?}");
    let log = rig.store.audit(0, 100_000)?;
    if !matches!(end, Ok(Phase::Promoted)) {
        for (t, r) in &log {
            eprintln!("audit {t}: {r}");
        }
    }
    ensure!(
        end? == Phase::Promoted,
        "{timeline:?}; lifecycle {:?}",
        rig.story()
    );
    ensure!(failed == 0, "{failed} failed of {requests}:\n{text}");
    ensure!(
        log.iter().any(|(_, r)| r["event"] == "standby_taken"
            && r["spare"] == "spare-03"
            && r["attempt"] == 2),
        "the standby did not take over"
    );
    let assigned = rig.store.assignments()?;
    ensure!(
        assigned.len() == 1
            && assigned[0].1["spare"] == "spare-03"
            && assigned[0].1["failed"] == serde_json::json!(["spare-02"])
            && assigned[0].1.get("standby").is_none(),
        "{assigned:?}"
    );
    ensure!(
        rig.port(9).await?.0 == Value::Integer(1),
        "the new shadow's port"
    );
    ensure!(
        rig.port(8).await? == spare_port_down(),
        "the failed shadow's port"
    );
    let _ = (&rig.dir, &rig.spare3_delay);
    Ok(())
}

/// Execute mode through the whole coordinator (`coordinator::serve`, the
/// binary's code path, configured by TOML): a real agent streams the
/// SMART data of web-01's disks, `umbractl train` activates the disk
/// model, the risk loop scores them over `enter`, and the configured
/// executor provisions spare-02 (Redfish), brings its switch port up,
/// validates mirroring against the primary, shifts and promotes under wrk
/// load, as `umbractl shadows` and `umbractl audit` show: 0 failed
/// requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_shadows_a_host_its_risk_loop_flags_with_no_failed_requests() -> Result<()>
{
    use super::ctl::ctl_out;
    use coordinator::ctl::Command;
    let rig = Rig::start(Policy::default()).await?;
    let svc = &rig.cfg.services[0];
    let compare = svc.compare.as_ref().context("the rig compares")?;
    let mirror = svc.mirror.as_ref().context("the rig mirrors")?;
    let spare = |i: usize| {
        let s = &rig.cfg.spares[i];
        let port = s.port.as_ref().map_or(String::new(), |p| {
            format!(
                "port = {{ switch = \"tor\", if_index = {0}, bridge_port = {0} }}\n",
                p.if_index
            )
        });
        format!(
            "[[shadow.execute.spares]]\nid = \"{id}\"\nsystem = \"{id}\"\nrack = \"{rack}\"\ncost = {cost:?}\naddress = \"{addr}\"\n{port}\
             [shadow.execute.spares.bmc]\nurl = \"{url}\"\nusername = \"admin\"\npassword = \"password\"\nauth = \"session\"\nca_file = {ca:?}\nsettle_timeout = \"40s\"\npoll_interval = \"250ms\"\n",
            id = s.id,
            rack = s.rack,
            cost = s.cost,
            addr = s.address,
            url = rig.bmc.url,
            ca = rig.bmc.pki.path("ca.crt").display().to_string(),
        )
    };
    let toml = format!(
        "[risk]\ninterval = \"300ms\"\n[learn]\nholdout_percent = 0\n\
         [shadow]\nmode = \"execute\"\nenter = 0.2\nexit = 0.1\nconfirm = 1\nmin_dwell = \"2s\"\nmax_confirmed_fraction = 1.0\n\
         [shadow.execute]\ninterval = \"250ms\"\nimage = \"{image}\"\n{s1}{s2}{s3}\
         [[shadow.execute.services]]\nhost = \"web-01\"\n\
         haproxy = {{ socket = {socket:?}, backend = \"app\", primary = \"primary\", shadow = \"shadow\" }}\n\
         mirror = {{ map = {map:?}, key = \"share\" }}\nmirror_backend = \"mirror\"\n\
         compare = {{ listen = \"{listen}\", primary = \"{primary}\" }}\n\
         port = {{ switch = \"tor\", if_index = 6 }}\nvlan = 120\n\
         after_promotion = \"rebuild\"\nsystem = \"node-01\"\nrebuild_image = \"{image}\"\n\
         [shadow.execute.services.bmc]\nurl = \"{url}\"\nusername = \"admin\"\npassword = \"password\"\nca_file = {ca:?}\nsettle_timeout = \"40s\"\n\
         [shadow.execute.switches.tor]\naddress = \"{switch}\"\ncommunity = \"umbra-sw\"\n",
        image = rig.cfg.image,
        s1 = spare(0),
        s2 = spare(1),
        s3 = spare(2),
        socket = rig.front.socket.display().to_string(),
        map = mirror.map.display().to_string(),
        listen = compare.listen,
        primary = compare.primary,
        switch = rig.cfg.switches["tor"].address,
        url = rig.bmc.url,
        ca = rig.bmc.pki.path("ca.crt").display().to_string(),
    );
    let c = crate::InProcessCoordinator::start("[tls]\ninsecure_plaintext = true", &toml).await?;
    let url = c.plaintext_url();
    let agent = super::risk::SmartAgent::start(&url, "web-01", "r1").await?;
    let wrk = start_wrk(rig.front.nginx_port)?;
    let out = ctl_out(&url, super::risk::train(false)).await?;
    ensure!(out.contains("active"), "{out}");
    // Follow the lifecycle as an operator would: `umbractl shadows`.
    let t0 = Instant::now();
    let mut timeline: Vec<(Duration, String)> = Vec::new();
    let end = loop {
        let out = ctl_out(
            &url,
            Command::Shadows {
                host: Some("web-01".into()),
                json: true,
            },
        )
        .await?;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let phase = v[0]["phase"].as_str().unwrap_or("none").to_owned();
        if timeline.last().is_none_or(|(_, p)| *p != phase) {
            timeline.push((t0.elapsed(), phase.clone()));
        }
        if ["promoted", "rolled_back", "cancelled"].contains(&phase.as_str())
            || t0.elapsed() > Duration::from_secs(240)
        {
            break phase;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (requests, failed, text) = stop_wrk(wrk).await?;
    eprintln!("{text}");
    let audit = ctl_out(
        &url,
        Command::Audit {
            since: Duration::from_secs(3600),
            limit: 10_000,
            target: Some("web-01".into()),
        },
    )
    .await?;
    eprintln!("timeline: {timeline:?}");
    ensure!(end == "promoted", "{end}: {timeline:?}\n{audit}");
    ensure!(failed == 0, "{failed} failed of {requests}:\n{text}");
    for want in [
        "\"event\":\"admission\"",
        "\"action\":\"Provision\",\"attempt\":1,\"event\":\"executing\"",
        "\"event\":\"dependencies\"",
        "\"from\":\"mirroring\"",
        "\"to\":\"promoted\"",
    ] {
        ensure!(
            audit.contains(want),
            "{want} missing from the audit:\n{audit}"
        );
    }
    ensure!(rig.port(8).await?.0 == Value::Integer(1), "spare-02's port");
    // The old primary was rebuilt (not quarantined): out of HAProxy, its
    // port left up, its BMC booted it from the image.
    ensure!(
        rig.port(6).await?.0 == Value::Integer(1),
        "the old primary's port"
    );
    ensure!(rig.server_status("primary").await?.starts_with("MAINT"));
    ensure!(audit.contains("\"disposition\":\"rebuild\""), "{audit}");
    let redfish = rig.redfish()?;
    let c = redfish.open().await?;
    let node = redfish.system(&c, "node-01").await?;
    let sys = c.get(&node.path).await?;
    let media = c.get(&format!("{}/VirtualMedia/Cd", node.path)).await?;
    redfish.close(c).await;
    ensure!(node.power_state == "On", "{node:?}");
    ensure!(sys["Boot"]["BootSourceOverrideTarget"] == "Cd", "{sys}");
    ensure!(media["Image"] == rig.cfg.image.as_str(), "{media}");
    let live = rig.haproxy("app")?.shadow_stats().await?;
    ensure!(live.weight > 0 && live.responses > 0, "{live:?}");
    agent.stop().await?;
    let _ = &rig.dir;
    Ok(())
}
