//! `cargo xtask bench`: durable ingest throughput per CPU-second and on-disk
//! bytes per sample, Umbra side by side with VictoriaMetrics in the same run,
//! on the same machine, with the same samples in the same batch shape.
//!
//! Both servers are separate processes measured from the outside (/proc CPU
//! time and peak RSS); the load generators' own CPU is not counted for either.

mod agent;
mod data;
mod ipmi;
mod predict;
mod proc;
mod snmp;
mod umbra;
pub(crate) mod vm;
mod workload;

use anyhow::{bail, Context, Result};
use coordinator::model::{HostRecord, Quality, Sample, SeriesId};
use coordinator::store::{IngestWrite, Store, StoreConfig};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Long enough for both servers' periodic flushes (VictoriaMetrics writes
/// in-memory parts on a few-second timer; the coordinator compacts every 1 s).
const TIMERS: Duration = Duration::from_secs(6);

#[derive(Debug)]
pub struct Options {
    pub samples: u64,
    pub hosts: usize,
    pub series: usize,
    pub per_batch: usize,
    pub window: usize,
    pub sync_writes: bool,
    pub data: PathBuf,
}

impl Options {
    pub fn parse(root: &Path, args: &[String]) -> Result<Options> {
        let mut o = Options {
            samples: 4_000_000,
            hosts: 4,
            series: 100,
            per_batch: 10,
            window: 16,
            sync_writes: false,
            data: root.join("../shared/data"),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().context(format!("{a} needs a value"));
            match a.as_str() {
                "--samples" => o.samples = val()?.parse()?,
                "--hosts" => o.hosts = val()?.parse()?,
                "--series" => o.series = val()?.parse()?,
                "--per-batch" => o.per_batch = val()?.parse()?,
                "--window" => o.window = val()?.parse()?,
                "--sync-writes" => o.sync_writes = true,
                "--data" => o.data = PathBuf::from(val()?),
                other => bail!(
                    "unknown option {other}\nusage: cargo xtask bench [--samples N] [--hosts N] \
                     [--series N] [--per-batch N] [--window N] [--sync-writes] [--data DIR]"
                ),
            }
        }
        Ok(o)
    }
}

#[derive(Debug)]
struct Measured {
    samples: u64,
    cpu_s: f64,
    wall_s: f64,
    peak_rss: u64,
}

impl Measured {
    #[allow(clippy::cast_precision_loss)]
    fn per_cpu_s(&self) -> f64 {
        self.samples as f64 / self.cpu_s
    }
}

/// `cargo xtask bench agent [SECONDS]`.
pub fn run_agent(root: &Path, args: &[String]) -> Result<()> {
    // `--no-fsync`: the spool without its per-batch fsync, to measure that
    // share of the agent's CPU (the default, and what ships, is fsync on).
    let fsync = !args.iter().any(|a| a == "--no-fsync");
    let args: Vec<String> = args
        .iter()
        .filter(|a| *a != "--no-fsync")
        .cloned()
        .collect();
    save_report(
        root,
        "agent.md",
        &agent::run(root, count_arg(&args, 60)?, fsync)?,
    )
}

/// `cargo xtask bench ipmi [ROUNDS]`.
pub fn run_ipmi(root: &Path, args: &[String]) -> Result<()> {
    save_report(root, "ipmi.md", &ipmi::run(root, count_arg(args, 15)?)?)
}

/// `cargo xtask bench predict [SERIES]`.
pub fn run_predict(root: &Path, args: &[String]) -> Result<()> {
    save_report(
        root,
        "predict.md",
        &predict::run(root, count_arg(args, 20_000)?)?,
    )
}

/// `cargo xtask bench snmp [ROUNDS]`.
pub fn run_snmp(root: &Path, args: &[String]) -> Result<()> {
    save_report(root, "snmp.md", &snmp::run(root, count_arg(args, 15)?)?)
}

fn count_arg<T: std::str::FromStr>(args: &[String], default: T) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(args
        .first()
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(default))
}

/// Print a report and keep it under target/bench/.
fn save_report(root: &Path, name: &str, report: &str) -> Result<()> {
    println!("\n{report}");
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join(name), report)?;
    println!("written to {}", out.join(name).display());
    Ok(())
}

/// `cargo build --release` with these arguments, from the workspace root.
fn build_release(root: &Path, args: &[&str]) -> Result<()> {
    build_profile(root, "release", args)
}

/// `cargo build --profile PROFILE` with these arguments.
fn build_profile(root: &Path, profile: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--profile", profile])
        .args(args)
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("cargo build --release {} failed", args.join(" "));
    }
    Ok(())
}

/// Non-empty lines a successful run of `c` prints.
fn output_lines(mut c: Command) -> Result<usize> {
    let out = c.output()?;
    if !out.status.success() {
        bail!("{c:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count())
}

/// Wall time of one successful run of `c`, output discarded.
fn wall_time(mut c: Command) -> Result<f64> {
    let t = Instant::now();
    let st = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running {c:?}"))?;
    if !st.success() {
        bail!("{c:?} failed");
    }
    Ok(t.elapsed().as_secs_f64())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(root: &Path, o: &Options) -> Result<()> {
    build_release(root, &["-p", "coordinator", "--bin", "umbra-coordinator"])?;
    let coordinator_bin = root.join("target/release/umbra-coordinator");
    if Command::new("victoria-metrics")
        .arg("-help")
        .output()
        .is_err()
    {
        bail!("victoria-metrics not found (scripts/deps installs it)");
    }
    // Debian's build prints an empty -version; the package version is the truth.
    let vm_version = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "victoria-metrics"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let real = data::load(&o.data)?;
    let real_samples: usize = real.iter().map(|s| s.values.len()).sum();
    let work = tempfile::tempdir()?;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "machine: {} CPUs, {}\nvictoria-metrics: {vm_version}\nreal data: {} series, {real_samples} samples (NAB real*, SKAB)\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model(),
        real.len()
    );

    // 1. Ingest throughput.
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let batches = workload::throughput(&real, o.hosts, o.series, o.per_batch, o.samples, now);
    let total: u64 = batches.iter().flatten().map(workload::Batch::samples).sum();
    let bodies: Vec<Vec<String>> = batches
        .iter()
        .map(|h| h.iter().map(vm::body).collect())
        .collect();
    let _ = writeln!(
        report,
        "ingest workload: {total} samples; {} hosts x {} batches; batch = {} series x {} samples \
         ({} B protobuf, {} B JSON); {} batches in flight per host (Umbra), one keep-alive \
         connection per host (VictoriaMetrics); sync_writes = {}\n",
        o.hosts,
        batches[0].len(),
        o.series,
        o.per_batch,
        umbra::encoded_len(&batches[0][0]),
        bodies[0][0].len(),
        o.window,
        o.sync_writes
    );
    let u = ingest_umbra(&coordinator_bin, work.path(), o, &batches, total)?;
    let v = ingest_vm(work.path(), &bodies, total)?;
    let _ = writeln!(
        report,
        "| ingest | samples/CPU-s | CPU s | wall s | peak RSS MiB |"
    );
    let _ = writeln!(report, "|---|---:|---:|---:|---:|");
    for (name, m) in [("umbra-coordinator", &u), ("victoria-metrics", &v)] {
        let _ = writeln!(
            report,
            "| {name} | {:.0} | {:.2} | {:.2} | {:.1} |",
            m.per_cpu_s(),
            m.cpu_s,
            m.wall_s,
            mib(m.peak_rss)
        );
    }
    let _ = writeln!(
        report,
        "\nratio (Umbra / VictoriaMetrics, samples per CPU-second): **{:.2}x**\n",
        u.per_cpu_s() / v.per_cpu_s()
    );

    // 2. Bytes per sample on real series.
    let real_batches = workload::real(&real, 500);
    let cfs = disk_umbra(&work.path().join("umbra-real"), &real_batches)?;
    let umbra_total: u64 = cfs.iter().map(|c| c.1).sum();
    let vm_bytes = disk_vm(
        &work.path().join("vm-real"),
        &real_batches,
        real_samples as u64,
    )?;
    #[allow(clippy::cast_precision_loss)]
    let per = |b: u64| b as f64 / real_samples as f64;
    let _ = writeln!(report, "| on disk, real series | bytes | bytes/sample |");
    let _ = writeln!(report, "|---|---:|---:|");
    for (cf, bytes) in cfs {
        let _ = writeln!(
            report,
            "| Umbra `{cf}` column family (SST) | {bytes} | {:.3} |",
            per(bytes)
        );
    }
    let _ = writeln!(
        report,
        "| **Umbra whole store** (all column families, SST) | {umbra_total} | {:.3} |",
        per(umbra_total)
    );
    let _ = writeln!(
        report,
        "| **VictoriaMetrics** storageDataPath (after a clean stop) | {vm_bytes} | {:.3} |",
        per(vm_bytes)
    );
    let _ = writeln!(
        report,
        "\nratio (Umbra whole store / VictoriaMetrics storageDataPath): **{:.2}x** the bytes; \
         raw samples alone (`samples`): {:.2}x",
        per(umbra_total) / per(vm_bytes),
        per(cfs[1].1) / per(vm_bytes)
    );

    save_report(root, "report.md", &report)
}

fn mib(b: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let f = b as f64;
    f / (1024.0 * 1024.0)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default()
}

fn ingest_umbra(
    bin: &Path,
    work: &Path,
    o: &Options,
    batches: &[Vec<workload::Batch>],
    total: u64,
) -> Result<Measured> {
    let dir = work.join("umbra");
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let peer = umbra::start(bin, &dir, port, o.sync_writes)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cpu0 = peer.cpu_s()?;
    let t0 = Instant::now();
    let stored: u64 = rt.block_on(async {
        let tasks: Vec<_> = batches
            .iter()
            .enumerate()
            .map(|(h, b)| {
                let b = b.clone();
                let window = o.window;
                tokio::spawn(
                    async move { umbra::stream_host(port, h as u64 + 1, &b, window).await },
                )
            })
            .collect();
        let mut sum = 0;
        for t in tasks {
            sum += t.await??;
        }
        anyhow::Ok(sum)
    })?;
    let wall_s = t0.elapsed().as_secs_f64();
    // Background work (sealing closed windows, rollups) counts too.
    peer.settle_all(Duration::from_secs(120), TIMERS)?;
    let cpu_s = peer.cpu_s()? - cpu0;
    if stored != total {
        bail!("umbra acknowledged {stored} of {total} samples as stored");
    }
    Ok(Measured {
        samples: total,
        cpu_s,
        wall_s,
        peak_rss: peer.peak_rss()?,
    })
}

fn ingest_vm(work: &Path, bodies: &[Vec<String>], total: u64) -> Result<Measured> {
    let dir = work.join("vm");
    let port = free_port()?;
    std::fs::create_dir_all(&dir)?;
    let peer = vm::start(&dir.join("data"), port, &dir.join("vm.log"))?;
    let cpu0 = peer.cpu_s()?;
    let t0 = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = bodies
            .iter()
            .map(|host| {
                s.spawn(move || -> Result<()> {
                    let mut c = vm::Conn::open(port)?;
                    for b in host {
                        let (status, resp) = c.request("POST", "/api/v1/import", b.as_bytes())?;
                        if status != 204 {
                            bail!("import: HTTP {status}: {}", String::from_utf8_lossy(&resp));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        }
        Ok(())
    })?;
    vm::force_flush(port)?;
    let wall_s = t0.elapsed().as_secs_f64();
    peer.settle_all(Duration::from_secs(120), TIMERS)?;
    let cpu_s = peer.cpu_s()? - cpu0;
    let got = vm::count_samples(port, "bench_value")?;
    if got != total {
        bail!("victoria-metrics holds {got} of {total} samples");
    }
    Ok(Measured {
        samples: total,
        cpu_s,
        wall_s,
        peak_rss: peer.peak_rss()?,
    })
}

/// Real series through the store's own write path (one write per batch),
/// then sealed and compacted: SST bytes per column family.
fn disk_umbra(dir: &Path, batches: &[workload::Batch]) -> Result<[(&'static str, u64); 4]> {
    let store = Store::open(
        dir,
        StoreConfig {
            sync_writes: false,
            raw_retention: Duration::from_secs(100 * 365 * 86_400),
            rollup_1m_retention: Duration::from_secs(100 * 365 * 86_400),
            rollup_1h_retention: Duration::from_secs(100 * 365 * 86_400),
            ..StoreConfig::default()
        },
    )?;
    let mut keys = std::collections::HashMap::new();
    let mut record = HostRecord::default();
    for (i, b) in batches.iter().enumerate() {
        let mut series = Vec::new();
        for s in &b.series {
            let key = match keys.get(&s.index) {
                Some(k) => *k,
                None => {
                    let id = SeriesId {
                        host: b.host.clone(),
                        metric: s.metric.into(),
                        component: s.component.clone(),
                        labels: Default::default(),
                    };
                    let (k, _) = store.resolve_series(&id, "")?;
                    keys.insert(s.index, k);
                    k
                }
            };
            let samples = s
                .ts_ms
                .iter()
                .zip(&s.values)
                .map(|(&ts_ms, &value)| Sample {
                    ts_ms,
                    value,
                    quality: Quality::Ok,
                })
                .collect();
            series.push((key, samples));
        }
        store.ingest(IngestWrite {
            host: &b.host,
            epoch: 1,
            sequence: i as u64 + 1,
            series,
            host_record: record.clone(),
            events: Vec::new(),
        })?;
        record.stored_samples += b.samples();
    }
    // Every window of the (years-old) real data is closed: seal them all.
    store.compact(i64::MAX / 2)?;
    store.flush_and_compact()?;
    Ok(store.column_family_bytes()?)
}

fn disk_vm(dir: &Path, batches: &[workload::Batch], total: u64) -> Result<u64> {
    let port = free_port()?;
    std::fs::create_dir_all(dir)?;
    let data = dir.join("data");
    let peer = vm::start(&data, port, &dir.join("vm.log"))?;
    let mut c = vm::Conn::open(port)?;
    for b in batches {
        let (status, resp) = c.request("POST", "/api/v1/import", vm::body(b).as_bytes())?;
        if status != 204 {
            bail!("import: HTTP {status}: {}", String::from_utf8_lossy(&resp));
        }
    }
    vm::force_flush(port)?;
    peer.settle_all(Duration::from_secs(60), TIMERS)?;
    let got = vm::count_samples(port, "real_value")?;
    if got != total {
        bail!("victoria-metrics holds {got} of {total} real samples");
    }
    // A clean stop writes every in-memory part; then the directory is final.
    peer.stop()?;
    proc::dir_bytes(&data)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
