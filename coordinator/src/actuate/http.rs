//! A small outbound HTTP/1.1 client for the executors and pagers: one
//! connection per request (they are rare: a lifecycle step, a page), TLS
//! through rustls with the certificate always verified against a configured
//! CA bundle, a deadline over the whole exchange, and a cap on the response
//! body so a hostile peer cannot make the coordinator buffer without end.
//!
//! hyper's client and tokio-rustls are already built for tonic; this adds
//! no crate to the build.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName};
use tokio_rustls::TlsConnector;

/// Where Debian keeps the system's trusted CAs.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Largest response body read (Redfish collections of a big chassis fit).
pub const MAX_BODY: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("reading CA bundle {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("connecting to {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    #[error("TLS with {authority}: {source}")]
    Tls {
        authority: String,
        source: std::io::Error,
    },
    #[error("{method} {url}: {source}")]
    Exchange {
        method: Method,
        url: String,
        source: hyper::Error,
    },
    #[error("{method} {url}: response body over {MAX_BODY} bytes or unreadable")]
    Body { method: Method, url: String },
    #[error("{method} {url}: no answer within {timeout:?}")]
    Timeout {
        method: Method,
        url: String,
        timeout: Duration,
    },
}

impl HttpError {
    /// Worth another try: the peer may answer next time.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HttpError::Connect { .. } | HttpError::Exchange { .. } | HttpError::Timeout { .. }
        )
    }
}

/// How often and how patiently to repeat a request.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Further tries after the first.
    pub retries: u32,
    /// The first wait; it doubles each time.
    pub backoff: Duration,
}

/// An answer, body fully read.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON; `None` when it is not JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// The client: a TLS configuration (for `https` URLs) and a deadline.
#[derive(Clone)]
pub struct Client {
    tls: Option<TlsConnector>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tls", &self.tls.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Client {
    /// A client trusting the CAs in `ca_file` (PEM), or the system bundle
    /// when `None`. Plain `http` URLs need no CA; a missing system bundle
    /// only fails `https` requests.
    pub fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<Client, HttpError> {
        let path: PathBuf = ca_file.map_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE), Path::to_owned);
        let tls = match load_roots(&path) {
            Ok(roots) => Some(roots),
            Err(e) if ca_file.is_some() => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "no system CA bundle: https needs a configured ca_file");
                None
            }
        }
        .map(|roots| {
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            TlsConnector::from(Arc::new(config))
        });
        Ok(Client { tls, timeout })
    }

    /// One request; `headers` are added to Host, User-Agent and, with a
    /// body, `Content-Type: application/json`.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<Vec<u8>>,
    ) -> Result<Response, HttpError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.exchange(method.clone(), url, headers, body))
            .await
            .unwrap_or_else(|_| {
                Err(HttpError::Timeout {
                    method,
                    url: url.to_owned(),
                    timeout,
                })
            })
    }

    /// [`send`](Self::send), tried again up to `retry.retries` times
    /// (waiting `retry.backoff`, then twice that, ...) after a transient
    /// failure or an answer `retry_status` says is worth repeating. The
    /// last outcome is returned, whatever its status.
    pub async fn send_retrying(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<&[u8]>,
        retry: Retry,
        retry_status: impl Fn(StatusCode) -> bool,
    ) -> Result<Response, HttpError> {
        let Retry { retries, backoff } = retry;
        let mut attempt = 0;
        loop {
            let outcome = self
                .send(method.clone(), url, headers, body.map(<[u8]>::to_vec))
                .await;
            let retry = match &outcome {
                Ok(r) => retry_status(r.status),
                Err(e) => e.is_transient(),
            };
            if !retry || attempt >= retries {
                return outcome;
            }
            let wait = backoff * 2u32.saturating_pow(attempt);
            tracing::debug!(%url, attempt, ?wait, "request failed transiently; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn exchange(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<Vec<u8>>,
    ) -> Result<Response, HttpError> {
        let bad = |reason: &str| HttpError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("want an http or https URL")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .map_or_else(|| host.to_owned(), |a| a.as_str().to_owned());
        // IPv6 literals come bracketed in URLs.
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((bare_host, port))
            .await
            .map_err(|source| HttpError::Connect {
                authority: authority.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);

        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = hyper::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, authority.as_str())
            .header(
                USER_AGENT,
                concat!("umbra-coordinator/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            req = req.header(CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| bad(&e.to_string()))?;

        let exchange_err = |source| HttpError::Exchange {
            method: method.clone(),
            url: url.to_owned(),
            source,
        };
        let resp = if https {
            let tls = self.tls.as_ref().ok_or_else(|| HttpError::Ca {
                path: SYSTEM_CA_BUNDLE.to_owned(),
                reason: "no CA bundle to verify the server with; set ca_file".into(),
            })?;
            let name = ServerName::try_from(bare_host.to_owned())
                .map_err(|e| bad(&format!("host is not a TLS server name: {e}")))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|source| HttpError::Tls {
                    authority: authority.clone(),
                    source,
                })?;
            round_trip(TokioIo::new(stream), req)
                .await
                .map_err(exchange_err)?
        } else {
            round_trip(TokioIo::new(tcp), req)
                .await
                .map_err(exchange_err)?
        };
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|_| HttpError::Body {
                method: method.clone(),
                url: url.to_owned(),
            })?
            .to_bytes();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

async fn round_trip<T>(
    io: TokioIo<T>,
    req: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    // The connection task ends when the response body is read or dropped.
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "http connection closed with an error");
        }
    });
    sender.send_request(req).await
}

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, HttpError> {
    let err = |reason: String| HttpError::Ca {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no certificate in it".into()));
    }
    Ok(roots)
}

/// `Authorization: Basic …` for `user:password`.
pub fn basic_auth(user: &str, password: &str) -> HeaderValue {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut v = HeaderValue::from_str(&format!("Basic {token}")).expect("base64 is a valid header");
    v.set_sensitive(true);
    v
}

/// `Authorization: Bearer …` for an optional token, marked sensitive; none
/// when there is no token or it cannot be a header value.
pub fn bearer_auth(token: Option<&service::secret::Secret>) -> Option<(HeaderName, HeaderValue)> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token?.expose())).ok()?;
    v.set_sensitive(true);
    Some((http::header::AUTHORIZATION, v))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-shot loopback server that answers `reply` and hands back the
    /// request it read (the other executors' tests use it too).
    pub(crate) async fn serve_once(
        reply: &'static [u8],
    ) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(reply).await.unwrap();
            s.shutdown().await.unwrap();
            buf.truncate(n);
            buf
        });
        (url, h)
    }

    #[tokio::test]
    async fn request_carries_host_auth_and_json_body() {
        let (url, server) = serve_once(
            b"HTTP/1.1 201 Created\r\nContent-Length: 11\r\nX-Auth-Token: t\r\n\r\n{\"ok\":true}",
        )
        .await;
        let c = Client::new(None, Duration::from_secs(5)).unwrap();
        let r = c
            .send(
                Method::POST,
                &format!("{url}/redfish/v1/x?y=1"),
                &[(http::header::AUTHORIZATION, basic_auth("admin", "pw"))],
                Some(b"{\"a\":1}".to_vec()),
            )
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.header("x-auth-token"), Some("t"));
        assert_eq!(r.json().unwrap()["ok"], true);
        let req = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(
            req.starts_with("POST /redfish/v1/x?y=1 HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(
            req.to_ascii_lowercase()
                .contains("authorization: basic ywrtaw46chc="),
            "{req}"
        );
        assert!(
            req.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{req}"
        );
        assert!(req.ends_with("{\"a\":1}"), "{req}");
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_and_is_transient() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        let _hold = tokio::spawn(async move {
            let (_s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let c = Client::new(None, Duration::from_millis(200)).unwrap();
        let e = c.send(Method::GET, &url, &[], None).await.unwrap_err();
        assert!(matches!(e, HttpError::Timeout { .. }), "{e}");
        assert!(e.is_transient());
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_off() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let chunk = format!("{:x}\r\n{}\r\n", 65536, "x".repeat(65536));
            for _ in 0..(MAX_BODY / 65536 + 2) {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        let c = Client::new(None, Duration::from_secs(10)).unwrap();
        let e = c.send(Method::GET, &url, &[], None).await.unwrap_err();
        assert!(matches!(e, HttpError::Body { .. }), "{e}");
    }

    #[test]
    fn bad_urls_and_cas_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = Client::new(Some(&empty), Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = Client::new(None, Duration::from_secs(1)).unwrap();
        for url in ["ftp://x/", "not a url", "http:///nohost"] {
            let e = rt
                .block_on(c.send(Method::GET, url, &[], None))
                .unwrap_err();
            assert!(matches!(e, HttpError::Url { .. }), "{url}: {e}");
        }
    }
}
