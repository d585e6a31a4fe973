//! The mirror comparator between real sockets: a primary and a shadow on
//! loopback that log what reaches them. Safe requests are compared (status
//! and body digest), writes reach the shadow only, a primary's 5xx is not
//! held against the shadow, and each window is read once.

use anyhow::Result;
use coordinator::actuate::compare::{Comparator, CompareConfig, Sample};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

type Log = Arc<Mutex<Vec<String>>>;

/// An HTTP/1.1 server answering `answer(path)` = (status, body), logging
/// "METHOD PATH BODY" of every request (keep-alive, Content-Length bodies).
async fn upstream(answer: fn(&str) -> (u16, &'static str)) -> Result<(u16, Log)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    let log = Log::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(s);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let mut words = line.split_whitespace();
                    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                    seen.lock().unwrap().push(format!(
                        "{method} {path} {}",
                        String::from_utf8_lossy(&body)
                    ));
                    let (status, text) = answer(path);
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if r.get_mut().write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((port, log))
}

/// One request to the comparator; its status code.
async fn send(port: u16, method: &str, path: &str, body: &str) -> Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no status in {out:?}"))?
        .parse()?)
}

async fn comparator(primary: u16, body: bool) -> Result<(Arc<Comparator>, u16)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    let c = Comparator::new(CompareConfig {
        listen: l.local_addr()?,
        primary: format!("127.0.0.1:{primary}").parse()?,
        body,
        timeout: Duration::from_secs(2),
    });
    tokio::spawn(c.clone().serve(l));
    Ok((c, port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_requests_are_compared_with_the_primary_and_writes_are_not_replayed() -> Result<()>
{
    let (primary, primary_log) = upstream(|path| match path {
        "/busy" => (503, "later"),
        _ => (200, "ok"),
    })
    .await?;
    let (shadow, shadow_log) = upstream(|path| match path {
        "/boom" => (500, "oops"),
        "/diff" => (200, "no"),
        _ => (200, "ok"),
    })
    .await?;
    let (c, port) = comparator(primary, true).await?;
    // No shadow yet: refused, nothing counted.
    assert_eq!(send(port, "GET", "/", "").await?, 503);
    assert_eq!(c.take(), Sample::default());
    c.set_shadow(Some(format!("127.0.0.1:{shadow}").parse()?));

    assert_eq!(send(port, "GET", "/same?q=1", "").await?, 200);
    assert_eq!(send(port, "POST", "/orders", "one widget").await?, 200);
    assert_eq!(send(port, "GET", "/diff", "").await?, 200);
    assert_eq!(send(port, "GET", "/boom", "").await?, 500);
    assert_eq!(send(port, "GET", "/busy", "").await?, 200);
    let s = c.take();
    assert_eq!(
        (s.requests, s.compared, s.mismatched, s.errors),
        (5, 3, 2, 1),
        "{s:?}"
    );
    assert!(s.shadow_p99_ms > 0.0 && s.primary_p99_ms > 0.0, "{s:?}");
    assert!(
        s.last_mismatch
            .as_deref()
            .is_some_and(|m| m.contains("/boom") && m.contains("500")),
        "{s:?}"
    );
    // The write reached the shadow once and the primary never.
    let shadow_saw = shadow_log.lock().unwrap().clone();
    let primary_saw = primary_log.lock().unwrap().clone();
    assert!(
        shadow_saw.contains(&"POST /orders one widget".to_owned()),
        "{shadow_saw:?}"
    );
    assert!(
        primary_saw.iter().all(|l| !l.starts_with("POST")),
        "{primary_saw:?}"
    );
    assert_eq!(primary_saw.len(), 4, "{primary_saw:?}");
    assert!(
        primary_saw.contains(&"GET /same?q=1 ".to_owned()),
        "{primary_saw:?}"
    );
    // The window was read: the next one starts empty.
    assert_eq!(c.take().requests, 0);

    // Without body comparison, only status counts.
    let (c, port) = comparator(primary, false).await?;
    c.set_shadow(Some(format!("127.0.0.1:{shadow}").parse()?));
    assert_eq!(send(port, "GET", "/diff", "").await?, 200);
    let s = c.take();
    assert_eq!((s.compared, s.mismatched), (1, 0), "{s:?}");

    // A shadow that does not answer is an error, not a mismatch.
    c.set_shadow(Some("127.0.0.1:9".parse()?));
    assert_eq!(send(port, "GET", "/", "").await?, 502);
    let s = c.take();
    assert_eq!((s.requests, s.compared, s.errors), (1, 0, 1), "{s:?}");
    Ok(())
}
