//! The Kubernetes workload driver (kube-rs) against the recorded API
//! (`crate::kube_api`): cordon, drain through the Eviction API with a
//! PodDisruptionBudget refusing twice, DaemonSet, mirror and finished pods
//! left alone; uncordon; a budget that never allows the drain.

use crate::kube_api::{node7, serve};
use coordinator::actuate::kubernetes::{KubeError, Kubernetes, KubernetesConfig};
use serde_json::json;
use service::secret::Secret;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn config(url: &str) -> KubernetesConfig {
    KubernetesConfig {
        api_url: url.to_owned(),
        token: Some(Secret::inline("sa-token")),
        ca_file: None,
        nodes: [("web-07".to_owned(), "node-7".to_owned())]
            .into_iter()
            .collect(),
        drain_timeout: Duration::from_secs(10),
        retry_interval: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn drain_cordons_evicts_through_the_api_and_retries_budget_refusals() {
    let state = Arc::new(Mutex::new(node7()));
    let url = serve(state.clone()).await;
    let k = Kubernetes::new(config(&url)).unwrap();
    assert_eq!(k.node_of("web-07"), "node-7");
    assert_eq!(k.node_of("db-01"), "db-01");
    let report = k.drain("node-7").await.unwrap();
    let mut evicted = report.evicted.clone();
    evicted.sort();
    assert_eq!(evicted, ["shop/api-7d9f-x2x", "shop/web-0"]);
    assert_eq!(report.budget_refusals, 2, "{report:?}");
    assert_eq!(
        report.kept,
        [
            "kube-system/kube-proxy-node-7",
            "kube-system/node-exporter-abc"
        ]
    );
    let c = state.lock().unwrap();
    assert_eq!(c.node["spec"]["unschedulable"], true);
    // The wire: a merge patch first, then lists and evictions; never a
    // DELETE of a pod (that would bypass the budgets), nothing for the
    // DaemonSet, mirror or finished pods.
    let (m, p, ct, body) = &c.seen[0];
    assert_eq!(
        (m.as_str(), p.as_str(), ct.as_str()),
        (
            "PATCH",
            "/api/v1/nodes/node-7?",
            "application/merge-patch+json"
        )
    );
    assert_eq!(body, &json!({"spec": {"unschedulable": true}}));
    assert!(c.seen.iter().all(|(m, ..)| m != "DELETE"));
    let evictions: Vec<&str> = c
        .seen
        .iter()
        .filter(|(m, p, ..)| m == "POST" && p.contains("/eviction"))
        .map(|(_, p, ..)| p.as_str())
        .collect();
    assert_eq!(
        evictions.iter().filter(|p| p.contains("/web-0/")).count(),
        3,
        "two refusals, then allowed: {evictions:?}"
    );
    assert!(evictions.iter().all(|p| !p.contains("node-exporter")
        && !p.contains("kube-proxy")
        && !p.contains("report-29")));
}

#[tokio::test]
async fn uncordon_and_a_budget_that_never_allows_the_drain() {
    let mut c = node7();
    c.refusals.insert("web-0".into(), u32::MAX);
    let state = Arc::new(Mutex::new(c));
    let url = serve(state.clone()).await;
    let k = Kubernetes::new(KubernetesConfig {
        drain_timeout: Duration::from_millis(200),
        ..config(&url)
    })
    .unwrap();
    let err = k.drain("node-7").await.unwrap_err();
    match &err {
        KubeError::Deadline { left, blocked, .. } => {
            assert_eq!(left, &["shop/web-0"]);
            assert!(*blocked >= 2, "{err}");
        }
        other => panic!("{other}"),
    }
    // Rollback: schedulable again, verified.
    k.cordon("node-7", false).await.unwrap();
    assert_eq!(state.lock().unwrap().node["spec"]["unschedulable"], false);
    // A node the API does not know is an API error, not a success.
    assert!(matches!(
        k.cordon("node-404", true).await,
        Err(KubeError::Api(_))
    ));
    // A bad URL or CA file is a clear config error.
    assert!(matches!(
        Kubernetes::new(KubernetesConfig {
            api_url: "not a url".into(),
            ..config(&url)
        }),
        Err(KubeError::Config(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "no certificate here").unwrap();
    assert!(matches!(
        Kubernetes::new(KubernetesConfig {
            ca_file: Some(bad),
            ..config(&url)
        }),
        Err(KubeError::Config(_))
    ));
}

/// Discovery: the workloads on node-7 that a drain would move, by their
/// controllers, a ReplicaSet followed to its Deployment through the API;
/// DaemonSet, mirror and finished pods are not dependencies. Nothing is
/// changed on the cluster.
#[tokio::test]
async fn workloads_on_a_node_are_discovered_through_their_controllers() {
    let state = Arc::new(Mutex::new(node7()));
    let url = serve(state.clone()).await;
    let k = Kubernetes::new(config(&url)).unwrap();
    let found = k.workloads("node-7").await.unwrap();
    assert_eq!(found, ["shop/Deployment/api", "shop/StatefulSet/web"]);
    let c = state.lock().unwrap();
    let calls: Vec<(&str, &str)> = c
        .seen
        .iter()
        .map(|(m, p, ..)| (m.as_str(), p.split('?').next().unwrap_or_default()))
        .collect();
    assert_eq!(
        calls,
        [
            ("GET", "/api/v1/pods"),
            ("GET", "/apis/apps/v1/namespaces/shop/replicasets/api-7d9f"),
        ]
    );
    assert!(c.node["spec"]["unschedulable"].is_null());
    assert_eq!(c.pods.len(), 5);
}
