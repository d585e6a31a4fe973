//! The `/metrics` listener: HTTP/1.1 over hyper (already in the tree through
//! tonic), GET or HEAD only, a bounded header-read time so an idle scraper
//! holds nothing, and one task per connection.

use crate::metrics::CONTENT_TYPE;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE as CT};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Renders the exposition at scrape time.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serve `GET /metrics` on `listener` until `shutdown` resolves. Accept
/// errors (e.g. EMFILE) are logged and retried after a pause; they never end
/// the daemon.
pub async fn serve_metrics(
    listener: TcpListener,
    render: Render,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let render = render.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let render = render.clone();
                async move { Ok::<_, Infallible>(respond(&req, &render)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}

fn respond(req: &Request<Incoming>, render: &Render) -> Response<String> {
    let plain = |status: StatusCode, body: &str| {
        let mut r = Response::new(body.to_owned());
        *r.status_mut() = status;
        r.headers_mut().insert(
            CT,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = Response::new(render());
            r.headers_mut()
                .insert(CT, hyper::header::HeaderValue::from_static(CONTENT_TYPE));
            r
        }
        "/" => plain(StatusCode::OK, "Umbra: metrics at /metrics\n"),
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_refuses_other_methods_and_survives_garbage() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let render: Render = Arc::new(|| "# HELP up U.\n# TYPE up gauge\nup 1\n".to_owned());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_metrics(listener, render, async {
            let _ = rx.await;
        }));

        let ok = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("content-type: text/plain; version=0.0.4; charset=utf-8"));
        assert!(ok.ends_with("up 1\n"), "{ok}");

        let post = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(post.contains("allow: GET, HEAD"));

        let missing = exchange(
            addr,
            b"GET /secrets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

        // Not HTTP at all: the connection gets a 400 (or is closed), and
        // the listener keeps serving.
        let garbage = exchange(addr, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\r\n\r\n").await;
        assert!(
            garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
            "{garbage}"
        );
        let again = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(again.starts_with("HTTP/1.1 200 OK\r\n"));

        tx.send(()).unwrap();
        server.await.unwrap();
    }
}
