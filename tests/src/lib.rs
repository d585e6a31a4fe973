//! End-to-end test harness: real `umbra-coordinator` / `umbra-agent`
//! processes on loopback, in-process servers for protocol-level tests, test
//! PKI, and raw gRPC clients that can send malformed bytes.
//!
//! All tests live in `src/tests/` and compile into this crate's single unit
//! test binary. The process tests need the binaries built first
//! (`cargo build --bins`, which `scripts/test` does).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `target/<profile>/` of the running test binary.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/tests-<hash> -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir layout")
        .to_path_buf()
}

/// Path to a workspace binary, with a clear message when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} not found: run `cargo build --bins` first (scripts/test does)",
        p.display()
    );
    p
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// A free loopback UDP port (bound then released).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Retry `f` every 50 ms until it returns `Ok(Some(_))` or `timeout` passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process that is killed on drop; its output goes to a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    name: String,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str], log: PathBuf) -> Result<Proc> {
        let mut cmd = Command::new(bin(name));
        cmd.args(args).env("UMBRA_LOG", "info");
        Proc::spawn_cmd(name, cmd, log)
    }

    /// Any program (a protocol peer), output appended to `log`.
    pub fn spawn_cmd(name: &str, mut cmd: Command, log: PathBuf) -> Result<Proc> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        Ok(Proc {
            child,
            log,
            name: name.to_owned(),
        })
    }

    /// Fails with the peer's log if it has exited (a bad option, a port in use).
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(st) = self.child.try_wait()? {
            bail!("{} exited ({st}); log:\n{}", self.name, self.log_text());
        }
        Ok(())
    }

    /// Wait until the peer accepts TCP connections on loopback `port`,
    /// failing with its log if it exits first.
    pub async fn listening(&mut self, port: u16, timeout: Duration) -> Result<()> {
        let what = format!("{} listening on {port}", self.name);
        eventually(&what, timeout, || {
            let alive = self.ensure_running();
            async move {
                alive?;
                Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(drop))
            }
        })
        .await
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if std::time::Instant::now() > deadline {
                self.kill9();
                bail!(
                    "{} did not exit within {timeout:?} after SIGTERM; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill9();
        }
    }
}

/// A throwaway CA with server and client certificates, written as PEM files.
pub struct TestPki {
    pub dir: tempfile::TempDir,
}

impl TestPki {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Files: ca.crt, server.crt/key (SAN localhost), client.crt/key (from ca),
    /// rogue-client.crt/key (from another CA).
    pub fn generate() -> Result<TestPki> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        let dir = tempfile::tempdir()?;
        let ca = |cn: &str| -> Result<(rcgen::Certificate, KeyPair)> {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, cn);
            Ok((p.self_signed(&key)?, key))
        };
        let leaf = |sans: Vec<String>,
                    usage: ExtendedKeyUsagePurpose,
                    ca: &rcgen::Certificate,
                    ca_key: &KeyPair|
         -> Result<(String, String)> {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(sans)?;
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, ca, ca_key)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (ca_cert, ca_key) = ca("umbra test CA")?;
        let (rogue_ca, rogue_key) = ca("rogue CA")?;
        // Private keys 0600: the daemons refuse world-readable keys.
        let write = |name: &str, body: &str| -> std::io::Result<()> {
            use std::os::unix::fs::PermissionsExt as _;
            let p = dir.path().join(name);
            std::fs::write(&p, body)?;
            let mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
        };
        write("ca.crt", &ca_cert.pem())?;
        let (c, k) = leaf(
            vec!["localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca_cert,
            &ca_key,
        )?;
        write("server.crt", &c)?;
        write("server.key", &k)?;
        let (c, k) = leaf(
            vec!["agent-1".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
            &ca_cert,
            &ca_key,
        )?;
        write("client.crt", &c)?;
        write("client.key", &k)?;
        let (c, k) = leaf(
            vec!["agent-1".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
            &rogue_ca,
            &rogue_key,
        )?;
        write("rogue-client.crt", &c)?;
        write("rogue-client.key", &k)?;
        Ok(TestPki { dir })
    }
}

/// A coordinator served in-process on an ephemeral port.
pub struct InProcessCoordinator {
    pub addr: std::net::SocketAddr,
    pub data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), coordinator::RunError>>>,
}

impl InProcessCoordinator {
    /// `extra` is appended to a minimal TOML config (e.g. a `[tls]` or `[limits]` table).
    pub async fn start(tls_toml: &str, extra: &str) -> Result<InProcessCoordinator> {
        let data = tempfile::tempdir()?;
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{tls_toml}\n[storage]\ndata_dir = {:?}\nsync_writes = false\n{extra}",
            data.path().display().to_string()
        );
        let cfg = coordinator::config::RawConfig::parse(&text, "test")?.validate()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(coordinator::serve(cfg, listener, async {
            let _ = rx.await;
        }));
        Ok(InProcessCoordinator {
            addr,
            data,
            stop: Some(tx),
            task: Some(task),
        })
    }

    pub fn plaintext_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await??;
        }
        Ok(())
    }
}

impl Drop for InProcessCoordinator {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// gRPC codec that sends and receives raw bytes, to put malformed messages on the wire.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

#[derive(Debug, Clone, Default)]
pub struct RawCoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = bytes::Bytes;
    type Encoder = RawCoder;
    type Decoder = RawCoder;
    fn encoder(&mut self) -> RawCoder {
        RawCoder
    }
    fn decoder(&mut self) -> RawCoder {
        RawCoder
    }
}

impl tonic::codec::Encoder for RawCoder {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCoder {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use bytes::Buf;
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// Open a raw `Telemetry/Stream` call sending `messages` (each one gRPC frame).
pub async fn raw_stream(
    channel: tonic::transport::Channel,
    messages: Vec<bytes::Bytes>,
) -> Result<Vec<Result<bytes::Bytes, tonic::Status>>> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let path = http::uri::PathAndQuery::from_static("/umbra.telemetry.v1.Telemetry/Stream");
    let req = tonic::Request::new(tokio_stream::iter(messages));
    let mut out = Vec::new();
    match grpc.streaming(req, path, RawCodec).await {
        Ok(resp) => {
            let mut s = resp.into_inner();
            loop {
                match s.message().await {
                    Ok(Some(m)) => out.push(Ok(m)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        break;
                    }
                }
            }
        }
        Err(e) => out.push(Err(e)),
    }
    Ok(out)
}

#[cfg(test)]
pub mod kube_api;
#[cfg(test)]
mod tests;
