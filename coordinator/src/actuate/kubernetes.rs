//! Workload migration on Kubernetes, through kube-rs: cordon the failing
//! host's node, drain it through the Eviction API, uncordon on rollback;
//! and discovery of what depends on the node ([`Kubernetes::workloads`]:
//! the controllers of the pods a drain would move, a ReplicaSet followed
//! to its Deployment).
//!
//! The Eviction API is what makes a drain safe: the API server refuses an
//! eviction that would break a PodDisruptionBudget with `429 Too Many
//! Requests`, and the drain retries it every `retry_interval` until the
//! budget allows it (another replica became ready elsewhere) or
//! `drain_timeout` passes. As `kubectl drain --ignore-daemonsets` does,
//! DaemonSet pods and mirror (static) pods stay, and finished pods are
//! ignored. Every step is state-based: cordoning a cordoned node or
//! draining an empty one changes nothing, so a retry after a restart is
//! harmless.
//!
//! No API server runs on this machine: the tests (`tests::kubernetes`,
//! `tests::execute`) run it against a loopback server that answers in the
//! API's real wire format (paths, verbs, content types, the `Status` of a
//! budget refusal) and checks every request.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube_client::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use kube_client::Client;
use serde::Deserialize;
use serde_json::json;
use service::secret::Secret;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `hook = { kind = "kubernetes", ... }`-style settings of one cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The API server, e.g. `https://10.0.0.1:6443`.
    pub api_url: String,
    /// A service account's bearer token.
    pub token: Option<Secret>,
    /// The API server's CA (PEM); the system roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Node names of hosts whose node is not named like the host.
    #[serde(default)]
    pub nodes: BTreeMap<String, String>,
    /// A drain that has not emptied the node in this long has failed.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Between rounds of evictions (a budget-refused one is retried).
    #[serde(default = "default_retry", with = "humantime_serde")]
    pub retry_interval: Duration,
    /// Per API request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_retry() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubernetes config: {0}")]
    Config(String),
    #[error("kubernetes API: {0}")]
    Api(#[from] kube_client::Error),
    #[error("node {node}: spec.unschedulable is {got:?} after setting {want}")]
    ReadBack {
        node: String,
        got: Option<bool>,
        want: bool,
    },
    #[error("draining node {node}: {} pods still there after {waited:?} ({blocked} evictions refused by disruption budgets): {}", left.len(), left.join(", "))]
    Deadline {
        node: String,
        waited: Duration,
        blocked: u32,
        left: Vec<String>,
    },
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// `namespace/name` of the pods evicted.
    pub evicted: Vec<String>,
    /// DaemonSet and mirror pods left on the node.
    pub kept: Vec<String>,
    /// Evictions a PodDisruptionBudget refused (and that were retried).
    pub budget_refusals: u32,
}

#[derive(Clone)]
pub struct Kubernetes {
    client: Client,
    cfg: KubernetesConfig,
}

impl std::fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubernetes")
            .field("api_url", &self.cfg.api_url)
            .finish_non_exhaustive()
    }
}

fn key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or("default"),
        p.metadata.name.as_deref().unwrap_or("?")
    )
}

/// A pod a drain leaves: owned by a DaemonSet (its controller would put
/// it straight back) or a mirror of a static pod (the kubelet's own).
fn kept(p: &Pod) -> bool {
    let daemon = p
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet" && o.controller == Some(true));
    let mirror = p
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    daemon || mirror
}

/// The controller named in `owners`, as (kind, name).
fn controller(
    owners: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
) -> Option<(String, String)> {
    owners?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.clone(), o.name.clone()))
}

fn finished(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Kubernetes {
    pub fn new(cfg: KubernetesConfig) -> Result<Kubernetes, KubeError> {
        let uri: http::Uri = cfg
            .api_url
            .parse()
            .map_err(|e| KubeError::Config(format!("api_url {:?}: {e}", cfg.api_url)))?;
        let mut kc = kube_client::Config::new(uri);
        kc.connect_timeout = Some(cfg.timeout);
        kc.read_timeout = Some(cfg.timeout);
        kc.write_timeout = Some(cfg.timeout);
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| KubeError::Config(format!("ca_file {}: {e}", ca.display())))?;
            let ders: Vec<Vec<u8>> = rustls_pemfile::certs(&mut pem.as_slice())
                .map(|c| c.map(|c| c.to_vec()))
                .collect::<Result<_, _>>()
                .map_err(|e| KubeError::Config(format!("ca_file {}: {e}", ca.display())))?;
            if ders.is_empty() {
                return Err(KubeError::Config(format!(
                    "ca_file {}: no certificate",
                    ca.display()
                )));
            }
            kc.root_cert = Some(ders);
        }
        if let Some(t) = &cfg.token {
            kc.auth_info.token = Some(secrecy::SecretString::from(t.expose().to_owned()));
        }
        let client = Client::try_from(kc).map_err(|e| KubeError::Config(e.to_string()))?;
        Ok(Kubernetes { client, cfg })
    }

    /// The node a host runs as.
    pub fn node_of<'a>(&'a self, host: &'a str) -> &'a str {
        self.cfg.nodes.get(host).map_or(host, String::as_str)
    }

    /// Mark the node (un)schedulable; verified on the node the API returns.
    pub async fn cordon(&self, node: &str, on: bool) -> Result<(), KubeError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = json!({ "spec": { "unschedulable": on } });
        let n = nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let got = n.spec.as_ref().and_then(|s| s.unschedulable);
        if got.unwrap_or(false) != on {
            return Err(KubeError::ReadBack {
                node: node.to_owned(),
                got,
                want: on,
            });
        }
        Ok(())
    }

    /// The workloads on `node` that a drain would move, as
    /// "namespace/Kind/name", sorted, each once: a pod's controller (a
    /// ReplicaSet's own controller, its Deployment, where it has one), or
    /// the pod itself when nothing controls it.
    pub async fn workloads(&self, node: &str) -> Result<Vec<String>, KubeError> {
        let all: Api<Pod> = Api::all(self.client.clone());
        let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
        let mut out = std::collections::BTreeSet::new();
        for p in all.list(&on_node).await?.items {
            if kept(&p) || finished(&p) {
                continue;
            }
            let ns = p.metadata.namespace.as_deref().unwrap_or("default");
            let (mut kind, mut name) = controller(p.metadata.owner_references.as_ref())
                .unwrap_or_else(|| ("Pod".into(), p.metadata.name.clone().unwrap_or_default()));
            if kind == "ReplicaSet" {
                let sets: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
                if let Some(rs) = sets.get_opt(&name).await? {
                    if let Some(owner) = controller(rs.metadata.owner_references.as_ref()) {
                        (kind, name) = owner;
                    }
                }
            }
            out.insert(format!("{ns}/{kind}/{name}"));
        }
        Ok(out.into_iter().collect())
    }

    /// Cordon and evict every pod a drain moves, retrying budget refusals,
    /// until only kept pods remain.
    pub async fn drain(&self, node: &str) -> Result<DrainReport, KubeError> {
        self.cordon(node, true).await?;
        let start = tokio::time::Instant::now();
        let all: Api<Pod> = Api::all(self.client.clone());
        let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
        let mut report = DrainReport::default();
        loop {
            let pods = all.list(&on_node).await?;
            let mut left = Vec::new();
            report.kept.clear();
            for p in &pods.items {
                if kept(p) {
                    report.kept.push(key(p));
                    continue;
                }
                if finished(p) {
                    continue;
                }
                left.push(key(p));
                if p.metadata.deletion_timestamp.is_some() {
                    continue; // evicted, terminating: wait for it
                }
                let ns = p.metadata.namespace.as_deref().unwrap_or("default");
                let name = p.metadata.name.as_deref().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
                match api.evict(name, &EvictParams::default()).await {
                    Ok(_) => {
                        if !report.evicted.contains(&key(p)) {
                            report.evicted.push(key(p));
                        }
                    }
                    // A PodDisruptionBudget forbids it now: retry later.
                    Err(kube_client::Error::Api(e)) if e.code == 429 => {
                        report.budget_refusals += 1;
                    }
                    // Already gone.
                    Err(kube_client::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if left.is_empty() {
                report.kept.sort();
                return Ok(report);
            }
            if start.elapsed() >= self.cfg.drain_timeout {
                return Err(KubeError::Deadline {
                    node: node.to_owned(),
                    waited: start.elapsed(),
                    blocked: report.budget_refusals,
                    left,
                });
            }
            tokio::time::sleep(self.cfg.retry_interval).await;
        }
    }
}
