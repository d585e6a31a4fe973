//! Mirrored requests validated against the primary: the comparator is the
//! server of HAProxy's mirror backend (it receives the share of nginx's
//! request copies that the mirror map lets through), sends each request
//! to the shadow and, for safe methods (GET, HEAD, OPTIONS), the same
//! request to the primary, and compares the answers: status code, and the
//! SHA-256 of the body where `body` is on. Latency is measured on both.
//! A request with another method goes to the shadow only: replaying a
//! write on the primary would apply it twice.
//!
//! [`Comparator::take`] returns what was seen since the previous call; the
//! actuator turns it into the mirroring phase's KPIs (shadow errors,
//! share of compared responses that differ, the shadow's p99 latency).
//! The answer to the caller (which discards it) carries the shadow's
//! status and no body.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// Largest request or response body taken in (bigger ones are errors).
pub const MAX_BODY: usize = 1 << 20;
/// Idle connections kept per upstream.
const POOL: usize = 64;
/// Latency samples kept per window (later ones in the window are dropped
/// from the quantile, not from the counts).
const MAX_SAMPLES: usize = 100_000;

/// `[shadow.execute.services.compare]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    /// Where the comparator listens: the mirror backend's server.
    pub listen: SocketAddr,
    /// The primary's service, reached directly (not through HAProxy).
    pub primary: SocketAddr,
    /// Compare body digests too (off for services whose answers carry
    /// timestamps or request ids).
    #[serde(default = "yes")]
    pub body: bool,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// What the comparator saw in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Requests sent to the shadow.
    pub requests: u64,
    /// Of those, also answered by the primary and compared.
    pub compared: u64,
    /// Compared answers that differ (status, or body digest).
    pub mismatched: u64,
    /// Shadow answers that are 5xx, or none at all.
    pub errors: u64,
    pub shadow_p99_ms: f64,
    pub primary_p99_ms: f64,
    /// The latest difference, for the audit log.
    pub last_mismatch: Option<String>,
}

#[derive(Default)]
struct Window {
    sample: Sample,
    shadow_ms: Vec<f64>,
    primary_ms: Vec<f64>,
}

/// One answer: status, body digest, milliseconds to the last body byte.
struct Answer {
    status: StatusCode,
    digest: [u8; 32],
    ms: f64,
}

pub struct Comparator {
    cfg: CompareConfig,
    shadow: Mutex<Option<SocketAddr>>,
    window: Mutex<Window>,
    pools: Mutex<HashMap<SocketAddr, Vec<SendRequest<Full<Bytes>>>>>,
}

/// The `q` quantile (nearest rank) of `v`, 0 when empty.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    *v.select_nth_unstable_by(rank, f64::total_cmp).1
}

fn safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded.
fn end_to_end(h: &HeaderMap) -> HeaderMap {
    let mut out = h.clone();
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ] {
        out.remove(name);
    }
    out
}

impl Comparator {
    pub fn new(cfg: CompareConfig) -> Arc<Comparator> {
        Arc::new(Comparator {
            cfg,
            shadow: Mutex::default(),
            window: Mutex::default(),
            pools: Mutex::default(),
        })
    }

    pub fn config(&self) -> &CompareConfig {
        &self.cfg
    }

    /// Where the shadow answers (`None`: no shadow, requests get 503).
    pub fn set_shadow(&self, addr: Option<SocketAddr>) {
        *self.shadow.lock().expect("poisoned") = addr;
    }

    /// What was seen since the previous call.
    pub fn take(&self) -> Sample {
        let mut w = std::mem::take(&mut *self.window.lock().expect("poisoned"));
        w.sample.shadow_p99_ms = quantile(&mut w.shadow_ms, 0.99);
        w.sample.primary_p99_ms = quantile(&mut w.primary_ms, 0.99);
        w.sample
    }

    /// Serve mirrored requests on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "comparator: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let me = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, Infallible>(me.handle(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "comparator connection ended with an error");
                }
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode| {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = status;
            r
        };
        let Some(shadow) = *self.shadow.lock().expect("poisoned") else {
            return reply(StatusCode::SERVICE_UNAVAILABLE);
        };
        let (parts, body) = req.into_parts();
        let Ok(body) = Limited::new(body, MAX_BODY).collect().await else {
            return reply(StatusCode::PAYLOAD_TOO_LARGE);
        };
        let body = body.to_bytes();
        let (s, p) = if safe(&parts.method) {
            let (s, p) = tokio::join!(
                self.exchange(shadow, &parts, body.clone()),
                self.exchange(self.cfg.primary, &parts, body)
            );
            (s, Some(p))
        } else {
            (self.exchange(shadow, &parts, body).await, None)
        };
        let mut w = self.window.lock().expect("poisoned");
        w.sample.requests += 1;
        let status = match &s {
            Ok(a) => {
                if a.status.is_server_error() {
                    w.sample.errors += 1;
                }
                if w.shadow_ms.len() < MAX_SAMPLES {
                    w.shadow_ms.push(a.ms);
                }
                a.status
            }
            Err(_) => {
                w.sample.errors += 1;
                StatusCode::BAD_GATEWAY
            }
        };
        // The primary's failures (no answer, 5xx) are not the shadow's
        // (the primary is the host at risk): not compared.
        let p = p.filter(|p| p.as_ref().is_ok_and(|a| !a.status.is_server_error()));
        if let (Ok(s), Some(Ok(p))) = (&s, &p) {
            w.sample.compared += 1;
            if w.primary_ms.len() < MAX_SAMPLES {
                w.primary_ms.push(p.ms);
            }
            let differs = if s.status != p.status {
                Some(format!("status {} (primary {})", s.status, p.status))
            } else if self.cfg.body && s.digest != p.digest {
                Some("body differs from the primary's".to_owned())
            } else {
                None
            };
            if let Some(d) = differs {
                w.sample.mismatched += 1;
                w.sample.last_mismatch = Some(format!("{} {}: {d}", parts.method, parts.uri));
            }
        }
        reply(status)
    }

    /// One request to `addr` over a pooled connection, the body read
    /// whole and digested.
    async fn exchange(
        &self,
        addr: SocketAddr,
        parts: &http::request::Parts,
        body: Bytes,
    ) -> Result<Answer, String> {
        let t0 = Instant::now();
        let run = async {
            let mut sender = self.connection(addr).await?;
            let mut req = Request::new(Full::new(body));
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse()
                .map_err(|e| format!("{e}"))?;
            *req.headers_mut() = end_to_end(&parts.headers);
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            self.give_back(addr, sender);
            Ok(Answer {
                status,
                digest: Sha256::digest(&bytes).into(),
                ms: t0.elapsed().as_secs_f64() * 1000.0,
            })
        };
        tokio::time::timeout(self.cfg.timeout, run)
            .await
            .map_err(|_| format!("{addr}: no answer within {:?}", self.cfg.timeout))?
    }

    async fn connection(&self, addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
        loop {
            let idle = self
                .pools
                .lock()
                .expect("poisoned")
                .get_mut(&addr)
                .and_then(Vec::pop);
            let Some(mut s) = idle else { break };
            if s.ready().await.is_ok() {
                return Ok(s);
            }
        }
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        stream.set_nodelay(true).ok();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "comparator upstream connection ended");
            }
        });
        Ok(sender)
    }

    fn give_back(&self, addr: SocketAddr, s: SendRequest<Full<Bytes>>) {
        if s.is_closed() {
            return;
        }
        let mut pools = self.pools.lock().expect("poisoned");
        let pool = pools.entry(addr).or_default();
        if pool.len() < POOL {
            pool.push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.99), 99.0);
        assert_eq!(quantile(&mut v, 1.0), 100.0);
        assert_eq!(quantile(&mut [], 0.99), 0.0);
        assert_eq!(quantile(&mut [7.0], 0.99), 7.0);
    }

    #[test]
    fn only_safe_methods_reach_the_primary_and_hop_headers_stay() {
        assert!(safe(&Method::GET) && safe(&Method::HEAD));
        assert!(!safe(&Method::POST) && !safe(&Method::DELETE));
        let mut h = HeaderMap::new();
        h.insert("connection", "close".parse().unwrap());
        h.insert("x-request-id", "42".parse().unwrap());
        let out = end_to_end(&h);
        assert!(out.get("connection").is_none());
        assert_eq!(out["x-request-id"], "42");
    }
}
