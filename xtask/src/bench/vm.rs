//! VictoriaMetrics (Debian's `victoria-metrics`) as the ingest peer, fed through
//! its JSON-lines import API (`/api/v1/import`) over HTTP/1.1 keep-alive.

use super::proc::{wait_for, Peer};
use super::workload::Batch;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub fn start(data: &Path, port: u16, log: &Path) -> Result<Peer> {
    let peer = Peer::spawn(
        "victoria-metrics",
        Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", data.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=100y")
            .arg("-selfScrapeInterval=0"),
        log,
    )?;
    wait_for(
        "victoria-metrics to listen",
        Duration::from_secs(30),
        || get(port, "/health").is_ok(),
    )?;
    Ok(peer)
}

/// One import request body: a JSON line per series of the batch.
pub fn body(b: &Batch) -> String {
    let mut s = String::with_capacity(b.series.len() * 400);
    for series in &b.series {
        let _ = write!(
            s,
            r#"{{"metric":{{"__name__":"{}","host":"{}","component":"{}"}},"values":["#,
            series.metric, b.host, series.component
        );
        for (i, v) in series.values.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{v}");
        }
        s.push_str(r#"],"timestamps":["#);
        for (i, t) in series.ts_ms.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{t}");
        }
        s.push_str("]}\n");
    }
    s
}

/// A keep-alive HTTP/1.1 connection.
pub struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    pub fn open(port: u16) -> Result<Conn> {
        let w = TcpStream::connect(("127.0.0.1", port))?;
        w.set_nodelay(true)?;
        Ok(Conn {
            r: BufReader::new(w.try_clone()?),
            w,
        })
    }

    pub fn request(&mut self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        write!(
            self.w,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        self.w.write_all(body)?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .context("HTTP status line")?
            .parse()?;
        let mut len = 0usize;
        let mut chunked = false;
        loop {
            line.clear();
            self.r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse()?;
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16)?;
                let mut chunk = vec![0; n + 2];
                self.r.read_exact(&mut chunk)?;
                out.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
            }
        } else {
            out.resize(len, 0);
            self.r.read_exact(&mut out)?;
        }
        Ok((status, out))
    }
}

fn get(port: u16, path: &str) -> Result<Vec<u8>> {
    let (status, body) = Conn::open(port)?.request("GET", path, b"")?;
    if status != 200 {
        bail!("GET {path}: HTTP {status}");
    }
    Ok(body)
}

/// Make everything ingested so far durable and searchable.
pub fn force_flush(port: u16) -> Result<()> {
    get(port, "/internal/force_flush").map(drop)
}

/// Samples VictoriaMetrics holds for `metric` (a read-back check).
pub fn count_samples(port: u16, metric: &str) -> Result<u64> {
    let body = get(port, &format!("/api/v1/export?match[]={metric}&start=0"))?;
    let mut n = 0u64;
    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line)?;
        n += v["values"].as_array().map_or(0, Vec::len) as u64;
    }
    Ok(n)
}
