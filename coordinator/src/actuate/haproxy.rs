//! Traffic through HAProxy's runtime API (the admin socket, `stats socket
//! ... level admin`): the shadow's share of a backend's traffic as server
//! weights, server states (ready, drain, maint), and the per-server counters
//! the KPI gates read (`show stat`). Weight changes apply to new requests at
//! once and never cut a connection, which is what makes a shift free of
//! failed requests.
//!
//! Commands are state-based: `set_share(25)` sets both weights absolutely
//! and reads them back, so repeating it after a restart is harmless.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// `[[shadow.traffic]]`-style settings for one protected service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyConfig {
    /// The admin socket (`stats socket /run/haproxy/admin.sock level admin`).
    pub socket: PathBuf,
    pub backend: String,
    /// The server now carrying the traffic.
    pub primary: String,
    /// The shadow's server in the same backend (weight 0 until shifted).
    pub shadow: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    #[error("HAProxy admin socket {socket}: {source}")]
    Socket {
        socket: String,
        source: std::io::Error,
    },
    #[error("HAProxy admin socket {socket}: no answer to {command:?} within {timeout:?}")]
    Timeout {
        socket: String,
        command: String,
        timeout: Duration,
    },
    #[error("HAProxy refused {command:?}: {answer}")]
    Refused { command: String, answer: String },
    #[error("HAProxy: {0}")]
    Unexpected(String),
}

/// A server's counters from `show stat`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ServerStats {
    /// HTTP responses (1xx–5xx and other), cumulative.
    pub responses: u64,
    /// 5xx responses, cumulative.
    pub errors_5xx: u64,
    /// Connection and response errors HAProxy counted (`econ` + `eresp`).
    pub failures: u64,
    /// Average response time over the last 1024 requests, ms (`rtime`).
    pub rtime_ms: f64,
    /// Largest response time seen, ms (`rtime_max`, 0 on older versions).
    pub rtime_max_ms: f64,
    pub weight: u32,
    /// Requests being served now (`scur`) and queued (`qcur`).
    pub in_flight: u64,
}

#[derive(Debug, Clone)]
pub struct Haproxy {
    cfg: HaproxyConfig,
}

/// Characters HAProxy's CLI treats specially; names (backends, servers,
/// map files and keys) with them are refused rather than escaped.
pub(crate) fn checked(name: &str) -> Result<&str, HaproxyError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == ';' || c == '\\')
    {
        return Err(HaproxyError::Unexpected(format!(
            "name {name:?} for HAProxy's CLI is empty or has whitespace, ';' or '\\'"
        )));
    }
    Ok(name)
}

impl Haproxy {
    pub fn new(cfg: HaproxyConfig) -> Result<Haproxy, HaproxyError> {
        for n in [&cfg.backend, &cfg.primary, &cfg.shadow] {
            checked(n)?;
        }
        Ok(Haproxy { cfg })
    }

    /// One command on a fresh connection (non-interactive mode: HAProxy
    /// answers and closes).
    pub async fn command(&self, command: &str) -> Result<String, HaproxyError> {
        let socket = self.cfg.socket.display().to_string();
        let io = async {
            let mut s = UnixStream::connect(&self.cfg.socket).await?;
            s.write_all(format!("{command}\n").as_bytes()).await?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        match tokio::time::timeout(self.cfg.timeout, io).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(source)) => Err(HaproxyError::Socket { socket, source }),
            Err(_) => Err(HaproxyError::Timeout {
                socket,
                command: command.to_owned(),
                timeout: self.cfg.timeout,
            }),
        }
    }

    /// A command that answers nothing on success.
    async fn set(&self, command: &str) -> Result<(), HaproxyError> {
        let answer = self.command(command).await?;
        if answer.trim().is_empty() {
            Ok(())
        } else {
            Err(HaproxyError::Refused {
                command: command.to_owned(),
                answer: answer.trim().to_owned(),
            })
        }
    }

    async fn weight(&self, server: &str) -> Result<u32, HaproxyError> {
        let command = format!("get weight {}/{server}", self.cfg.backend);
        let answer = self.command(&command).await?;
        // "25 (initial 100)"
        answer
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or(HaproxyError::Refused {
                command,
                answer: answer.trim().to_owned(),
            })
    }

    /// Give the shadow `percent` of new requests and the primary the rest,
    /// both servers ready; verified by reading the weights back.
    pub async fn set_share(&self, percent: u8) -> Result<(), HaproxyError> {
        let p = u32::from(percent.min(100));
        let b = &self.cfg.backend;
        let (primary, shadow) = (&self.cfg.primary, &self.cfg.shadow);
        // Raise the receiving side first so the backend never has no weight.
        let order = if p >= 50 {
            [(shadow, p), (primary, 100 - p)]
        } else {
            [(primary, 100 - p), (shadow, p)]
        };
        for (server, w) in order {
            if w > 0 {
                self.set(&format!("set server {b}/{server} state ready"))
                    .await?;
            }
            self.set(&format!("set weight {b}/{server} {w}")).await?;
        }
        for (server, w) in order {
            let got = self.weight(server).await?;
            if got != w {
                return Err(HaproxyError::Unexpected(format!(
                    "{b}/{server}: weight {got} after setting {w}"
                )));
            }
        }
        Ok(())
    }

    pub fn primary(&self) -> &str {
        &self.cfg.primary
    }

    /// Take a server out of rotation for new requests while its open ones
    /// finish (`drain`), or entirely (`maint`), or back (`ready`).
    pub async fn set_state(&self, server: &str, state: &str) -> Result<(), HaproxyError> {
        checked(server)?;
        if !["ready", "drain", "maint"].contains(&state) {
            return Err(HaproxyError::Unexpected(format!(
                "state {state:?}: want ready, drain or maint"
            )));
        }
        self.set(&format!(
            "set server {}/{server} state {state}",
            self.cfg.backend
        ))
        .await
    }

    /// The shadow server's counters.
    pub async fn shadow_stats(&self) -> Result<ServerStats, HaproxyError> {
        self.stats_of(&self.cfg.backend, &self.cfg.shadow).await
    }

    /// Any server's counters (e.g. the shadow in the mirror backend).
    pub async fn stats_of(&self, backend: &str, server: &str) -> Result<ServerStats, HaproxyError> {
        let text = self.command("show stat").await?;
        parse_stat(&text, checked(backend)?, checked(server)?)
    }

    /// Point `backend/server` at `addr` (where a provisioned spare serves),
    /// verified by reading the server state back. State-based.
    pub async fn set_addr(
        &self,
        backend: &str,
        server: &str,
        addr: std::net::SocketAddr,
    ) -> Result<(), HaproxyError> {
        let (b, sv) = (checked(backend)?, checked(server)?);
        let command = format!(
            "set server {b}/{sv} addr {} port {}",
            addr.ip(),
            addr.port()
        );
        let answer = self.command(&command).await?;
        // HAProxy answers with what changed, or that nothing did.
        if !answer.contains("changed") && !answer.contains("no need to change") {
            return Err(HaproxyError::Refused {
                command,
                answer: answer.trim().to_owned(),
            });
        }
        let state = self.command(&format!("show servers state {b}")).await?;
        match parse_server_addr(&state, sv) {
            Some(got) if got == addr => Ok(()),
            got => Err(HaproxyError::Unexpected(format!(
                "{b}/{sv}: address {got:?} after setting {addr}"
            ))),
        }
    }
}

/// A server's address from `show servers state BACKEND` (columns by the
/// `#` header's names: `srv_name`, `srv_addr`, `srv_port`).
pub fn parse_server_addr(text: &str, server: &str) -> Option<std::net::SocketAddr> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.find_map(|l| l.strip_prefix("# "))?;
    let cols: Vec<&str> = header.split_whitespace().collect();
    let col = |n: &str| cols.iter().position(|c| *c == n);
    let (name, addr, port) = (col("srv_name")?, col("srv_addr")?, col("srv_port")?);
    lines.find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.get(name) != Some(&server) {
            return None;
        }
        let ip: std::net::IpAddr = f.get(addr)?.parse().ok()?;
        Some(std::net::SocketAddr::new(ip, f.get(port)?.parse().ok()?))
    })
}

/// One server's row of `show stat` CSV (columns by the header's names).
pub fn parse_stat(text: &str, backend: &str, server: &str) -> Result<ServerStats, HaproxyError> {
    let mut lines = text.lines();
    let header = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .ok_or_else(|| HaproxyError::Unexpected("show stat: no CSV header".into()))?;
    let cols: Vec<&str> = header.split(',').collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.first() != Some(&backend) || f.get(1) != Some(&server) {
            continue;
        }
        let num = |name: &str| -> u64 {
            col(name)
                .and_then(|i| f.get(i))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let responses = [
            "hrsp_1xx",
            "hrsp_2xx",
            "hrsp_3xx",
            "hrsp_4xx",
            "hrsp_5xx",
            "hrsp_other",
        ]
        .iter()
        .map(|c| num(c))
        .sum();
        #[allow(clippy::cast_precision_loss)] // milliseconds, far below 2^52
        return Ok(ServerStats {
            responses,
            errors_5xx: num("hrsp_5xx"),
            failures: num("econ") + num("eresp"),
            rtime_ms: num("rtime") as f64,
            rtime_max_ms: num("rtime_max") as f64,
            weight: u32::try_from(num("weight")).unwrap_or(u32::MAX),
            in_flight: num("scur") + num("qcur"),
        });
    }
    Err(HaproxyError::Unexpected(format!(
        "show stat has no server {backend}/{server}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,\n\
fe,FRONTEND,,,1,2,262120,10,1000,2000,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,5,,,,0,100,0,0,0,0,,0,5,100,,,0,0,0,0,,,,,,,,,\n\
app,primary,0,0,0,1,,75,500,1000,,0,,0,0,0,0,UP,75,1,0,,0,10,0,,1,3,1,,75,,2,0,,3,,,,0,75,0,0,0,0,,,,,0,0,,,,,2,,,0,0,1,1,\n\
app,shadow,0,0,0,1,,25,200,400,,0,,1,2,0,0,UP,25,1,0,,0,10,0,,1,3,2,,25,,2,0,,3,,,,0,22,0,0,3,0,,,,,0,0,,,,,2,,,0,0,7,8,\n";

    #[test]
    fn show_stat_rows_are_read_by_column_name() {
        let s = parse_stat(STAT, "app", "shadow").unwrap();
        assert_eq!(s.responses, 25);
        assert_eq!(s.errors_5xx, 3);
        assert_eq!(s.failures, 3);
        assert_eq!(s.rtime_ms, 7.0);
        assert_eq!(s.weight, 25);
        assert!(parse_stat(STAT, "app", "nope").is_err());
        assert!(parse_stat("garbage", "app", "shadow").is_err());
    }

    #[test]
    fn server_addresses_are_read_from_the_servers_state() {
        let text = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord\n\
3 app 1 primary 127.0.0.1 2 0 100 100 12 1 0 0 0 0 0 0 - 18080 -\n\
3 app 2 shadow 127.0.0.2 2 0 0 100 12 1 0 0 0 0 0 0 - 18081 -\n";
        assert_eq!(
            parse_server_addr(text, "shadow"),
            Some("127.0.0.2:18081".parse().unwrap())
        );
        assert_eq!(parse_server_addr(text, "nope"), None);
        assert_eq!(parse_server_addr("garbage", "shadow"), None);
    }

    #[test]
    fn names_that_would_inject_commands_are_refused() {
        let cfg = |shadow: &str| HaproxyConfig {
            socket: "/nonexistent".into(),
            backend: "app".into(),
            primary: "p".into(),
            shadow: shadow.into(),
            timeout: Duration::from_secs(1),
        };
        assert!(Haproxy::new(cfg("s")).is_ok());
        for bad in ["s; shutdown frontend fe", "a b", "", "x\\y"] {
            assert!(Haproxy::new(cfg(bad)).is_err(), "{bad:?}");
        }
    }
}
