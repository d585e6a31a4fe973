//! Workload migration for orchestrators without a built-in driver: a
//! dependency map (host → the workloads that run on it, from the config)
//! and hooks that ask the orchestrator to move them, either a program
//! (`exec`) or an HTTP endpoint (`http`). Both get the same JSON document:
//!
//! ```json
//! {"version": 1, "action": "drain", "target": "node-07",
//!  "shadow": "spare-01", "workloads": ["db-2", "cache-7"]}
//! ```
//!
//! `action` is `drain` (move the workloads to the shadow) or `undrain`
//! (put them back, on rollback). A hook must be idempotent: the coordinator
//! may repeat a call after a restart. Success is exit status 0 or a 2xx.

use super::http::{bearer_auth, Client, HttpError};
use serde::Deserialize;
use serde_json::json;
use service::secret::Secret;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// `[[shadow.workloads]]`: which workloads depend on a host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    pub host: String,
    pub workloads: Vec<String>,
}

/// Host → workloads, from the config.
#[derive(Debug, Clone, Default)]
pub struct DependencyMap(BTreeMap<String, Vec<String>>);

impl DependencyMap {
    /// Refuses a host listed twice (which list would be right?).
    pub fn new(deps: &[Dependency]) -> Result<DependencyMap, String> {
        let mut m = BTreeMap::new();
        for d in deps {
            if m.insert(d.host.clone(), d.workloads.clone()).is_some() {
                return Err(format!("workloads of host {:?} are listed twice", d.host));
            }
        }
        Ok(DependencyMap(m))
    }

    pub fn workloads(&self, host: &str) -> &[String] {
        self.0.get(host).map_or(&[], Vec::as_slice)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HookConfig {
    /// Run a program: the document on stdin, the essentials also in
    /// `UMBRA_ACTION`, `UMBRA_TARGET`, `UMBRA_SHADOW`, `UMBRA_WORKLOADS`.
    Exec {
        program: PathBuf,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
    /// POST the document.
    Http {
        url: String,
        token: Option<Secret>,
        ca_file: Option<PathBuf>,
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
    },
}

fn default_timeout() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    Drain,
    Undrain,
}

impl Migration {
    fn name(self) -> &'static str {
        match self {
            Migration::Drain => "drain",
            Migration::Undrain => "undrain",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hook {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("hook {program} exited with {status}: {stderr}")]
    Exit {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("hook {program} took longer than {timeout:?} (killed)")]
    Timeout { program: String, timeout: Duration },
    #[error("hook: {0}")]
    Http(#[from] HttpError),
    #[error("hook {url} answered HTTP {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
}

/// Ask the orchestrator to move `target`'s workloads; returns what the
/// hook said (stdout or the response body, cut to 1000 characters) for
/// the audit log.
pub async fn migrate(
    hook: &HookConfig,
    action: Migration,
    target: &str,
    shadow: &str,
    workloads: &[String],
) -> Result<String, HookError> {
    let doc = json!({
        "version": 1, "action": action.name(), "target": target,
        "shadow": shadow, "workloads": workloads,
    });
    let cut = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .trim()
            .chars()
            .take(1000)
            .collect::<String>()
    };
    match hook {
        HookConfig::Exec {
            program,
            args,
            timeout,
        } => {
            let name = program.display().to_string();
            let mut child = tokio::process::Command::new(program)
                .args(args)
                .env("UMBRA_ACTION", action.name())
                .env("UMBRA_TARGET", target)
                .env("UMBRA_SHADOW", shadow)
                .env("UMBRA_WORKLOADS", workloads.join(","))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|source| HookError::Spawn {
                    program: name.clone(),
                    source,
                })?;
            let mut stdin = child.stdin.take().expect("piped");
            let body = doc.to_string();
            let run = async {
                // A hook that ignores stdin must not fail the call.
                let _ = stdin.write_all(body.as_bytes()).await;
                drop(stdin);
                child.wait_with_output().await
            };
            let out = tokio::time::timeout(*timeout, run)
                .await
                .map_err(|_| HookError::Timeout {
                    program: name.clone(),
                    timeout: *timeout,
                })?
                .map_err(|source| HookError::Spawn {
                    program: name.clone(),
                    source,
                })?;
            if !out.status.success() {
                return Err(HookError::Exit {
                    program: name,
                    status: out.status.to_string(),
                    stderr: cut(&out.stderr),
                });
            }
            Ok(cut(&out.stdout))
        }
        HookConfig::Http {
            url,
            token,
            ca_file,
            timeout,
        } => {
            let client = Client::new(ca_file.as_deref(), *timeout)?;
            let headers: Vec<_> = bearer_auth(token.as_ref()).into_iter().collect();
            let r = client
                .send(
                    http::Method::POST,
                    url,
                    &headers,
                    Some(doc.to_string().into_bytes()),
                )
                .await?;
            if !r.status.is_success() {
                return Err(HookError::Refused {
                    url: url.clone(),
                    status: r.status.as_u16(),
                    body: cut(&r.body),
                });
            }
            Ok(cut(&r.body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        let p = dir.join("hook.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[tokio::test]
    async fn exec_hooks_get_the_document_and_their_failures_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let ok = HookConfig::Exec {
            program: script(
                dir.path(),
                &format!(
                    "cat >> {0}; echo >> {0}; echo \"$UMBRA_ACTION $UMBRA_TARGET $UMBRA_WORKLOADS\"",
                    log.display()
                ),
            ),
            args: vec![],
            timeout: Duration::from_secs(10),
        };
        let wl = vec!["db-2".to_owned(), "cache-7".to_owned()];
        let said = migrate(&ok, Migration::Drain, "node-07", "spare-01", &wl)
            .await
            .unwrap();
        assert_eq!(said, "drain node-07 db-2,cache-7");
        migrate(&ok, Migration::Undrain, "node-07", "spare-01", &wl)
            .await
            .unwrap();
        let calls: Vec<serde_json::Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["action"], "drain");
        assert_eq!(calls[0]["workloads"][1], "cache-7");
        assert_eq!(calls[1]["action"], "undrain");
        assert_eq!(calls[1]["shadow"], "spare-01");

        let failing = HookConfig::Exec {
            program: script(dir.path(), "echo 'PDB blocks eviction of db-2' >&2; exit 3"),
            args: vec![],
            timeout: Duration::from_secs(10),
        };
        let e = migrate(&failing, Migration::Drain, "n", "s", &wl)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("PDB blocks eviction"), "{e}");

        let slow = HookConfig::Exec {
            program: script(dir.path(), "sleep 30"),
            args: vec![],
            timeout: Duration::from_millis(200),
        };
        let e = migrate(&slow, Migration::Drain, "n", "s", &wl)
            .await
            .unwrap_err();
        assert!(matches!(e, HookError::Timeout { .. }), "{e}");
    }

    #[tokio::test]
    async fn http_hooks_post_the_document() {
        let (base, server) = crate::actuate::http::tests::serve_once(
            b"HTTP/1.1 409 Conflict\r\nContent-Length: 8\r\n\r\nbusy now",
        )
        .await;
        let hook = HookConfig::Http {
            url: format!("{base}/migrate"),
            token: Some(Secret::inline("t")),
            ca_file: None,
            timeout: Duration::from_secs(5),
        };
        let e = migrate(
            &hook,
            Migration::Drain,
            "node-07",
            "spare-01",
            &["db-2".into()],
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string().contains("409") && e.to_string().contains("busy now"),
            "{e}"
        );
        let req = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(req.starts_with("POST /migrate "), "{req}");
        assert!(req.contains("Bearer t"), "{req}");
        assert!(req.contains(r#""workloads":["db-2"]"#), "{req}");
    }

    #[test]
    fn the_dependency_map_refuses_duplicates() {
        let d = |h: &str| Dependency {
            host: h.into(),
            workloads: vec!["w".into()],
        };
        let m = DependencyMap::new(&[d("a"), d("b")]).unwrap();
        assert_eq!(m.workloads("a"), ["w"]);
        assert!(m.workloads("zz").is_empty());
        assert!(DependencyMap::new(&[d("a"), d("a")]).is_err());
    }
}
