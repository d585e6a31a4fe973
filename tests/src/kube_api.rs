//! A loopback server that answers as the Kubernetes API does (paths, verbs,
//! content types, `PodList`, `Node`, and the `Status` documents of
//! evictions, including a PodDisruptionBudget's 429), checks every request
//! it gets and keeps them for the test to inspect. One node, `node-7`.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Cluster {
    pub node: Value,
    pub pods: Vec<Value>,
    /// ReplicaSets by "namespace/name" (each owned by a Deployment).
    pub replicasets: BTreeMap<String, Value>,
    /// Budget refusals left per pod name before its eviction is allowed.
    pub refusals: BTreeMap<String, u32>,
    /// (method, path and query, content type, body) of every request.
    pub seen: Vec<(String, String, String, Value)>,
}

fn pod(
    ns: &str,
    name: &str,
    owner: Option<(&str, &str)>,
    annotations: Value,
    phase: &str,
) -> Value {
    let mut p = json!({
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
        "spec": {"nodeName": "node-7", "containers": [{"name": "app", "image": "registry.example/app:1"}]},
        "status": {"phase": phase},
    });
    if let Some((kind, owner)) = owner {
        p["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": kind, "name": owner,
            "uid": "owner-uid", "controller": true, "blockOwnerDeletion": true,
        }]);
    }
    if !annotations.is_null() {
        p["metadata"]["annotations"] = annotations;
    }
    p
}

/// node-7 with a StatefulSet pod (its budget refuses two evictions), a
/// ReplicaSet pod, a DaemonSet pod, a mirror pod and a finished Job pod.
pub fn node7() -> Cluster {
    Cluster {
        node: json!({"kind": "Node", "apiVersion": "v1",
                     "metadata": {"name": "node-7", "labels": {"kubernetes.io/hostname": "node-7"}},
                     "spec": {"podCIDR": "10.244.7.0/24"}}),
        pods: vec![
            pod(
                "shop",
                "web-0",
                Some(("StatefulSet", "web")),
                Value::Null,
                "Running",
            ),
            pod(
                "shop",
                "api-7d9f-x2x",
                Some(("ReplicaSet", "api-7d9f")),
                Value::Null,
                "Running",
            ),
            pod(
                "kube-system",
                "node-exporter-abc",
                Some(("DaemonSet", "node-exporter")),
                Value::Null,
                "Running",
            ),
            pod(
                "kube-system",
                "kube-proxy-node-7",
                None,
                json!({"kubernetes.io/config.mirror": "c0ffee"}),
                "Running",
            ),
            pod(
                "batch",
                "report-29",
                Some(("Job", "report")),
                Value::Null,
                "Succeeded",
            ),
        ],
        replicasets: [(
            "shop/api-7d9f".to_owned(),
            json!({"kind": "ReplicaSet", "apiVersion": "apps/v1",
                   "metadata": {"name": "api-7d9f", "namespace": "shop", "uid": "rs-uid",
                                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                  "name": "api", "uid": "deploy-uid", "controller": true}]},
                   "spec": {"selector": {"matchLabels": {"app": "api"}}}}),
        )]
        .into_iter()
        .collect(),
        refusals: [("web-0".to_owned(), 2)].into_iter().collect(),
        ..Cluster::default()
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    if code < 300 {
        return json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code});
    }
    let mut s = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    if code == 429 {
        s["details"] = json!({"causes": [{"reason": "DisruptionBudget",
            "message": "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"}]});
    }
    s
}

fn answer(c: &mut Cluster, method: &str, path: &str, ctype: &str, body: &Value) -> (u16, Value) {
    let (p, query) = path.split_once('?').unwrap_or((path, ""));
    match (method, p) {
        ("PATCH", "/api/v1/nodes/node-7") => {
            if ctype != "application/merge-patch+json" {
                return (415, status(415, "UnsupportedMediaType", ctype));
            }
            if let Some(u) = body["spec"]["unschedulable"].as_bool() {
                c.node["spec"]["unschedulable"] = json!(u);
            }
            (200, c.node.clone())
        }
        ("PATCH", n) if n.starts_with("/api/v1/nodes/") => (
            404,
            status(404, "NotFound", &format!("nodes {n:?} not found")),
        ),
        ("GET", "/api/v1/pods") => {
            if !query.contains("fieldSelector=spec.nodeName%3Dnode-7") {
                return (400, status(400, "BadRequest", query));
            }
            // Pods evicted in the previous round have terminated since.
            c.pods
                .retain(|p| p["metadata"]["deletionTimestamp"].is_null());
            (
                200,
                json!({"kind": "PodList", "apiVersion": "v1",
                       "metadata": {"resourceVersion": "4711"}, "items": c.pods}),
            )
        }
        ("GET", p) if p.starts_with("/apis/apps/v1/namespaces/") => {
            // /apis/apps/v1/namespaces/{ns}/replicasets/{name}
            let parts: Vec<&str> = p.split('/').collect();
            match (parts.get(6), parts.get(7), parts.len()) {
                (Some(&"replicasets"), Some(name), 8) => {
                    match c.replicasets.get(&format!("{}/{name}", parts[5])) {
                        Some(rs) => (200, rs.clone()),
                        None => (404, status(404, "NotFound", "replicasets not found")),
                    }
                }
                _ => (404, status(404, "NotFound", p)),
            }
        }
        ("POST", p) if p.starts_with("/api/v1/namespaces/") && p.ends_with("/eviction") => {
            let parts: Vec<&str> = p.split('/').collect();
            let (ns, name) = (parts[4], parts[6]);
            // The API server takes an Eviction naming the pod; kind and
            // apiVersion may be left out (kube-rs does), and if given must
            // be policy/v1's.
            let typed_ok = (body["kind"].is_null() || body["kind"] == "Eviction")
                && (body["apiVersion"].is_null() || body["apiVersion"] == "policy/v1");
            if !typed_ok || body["metadata"]["name"] != name || ctype != "application/json" {
                return (400, status(400, "BadRequest", "not an Eviction"));
            }
            let left = c.refusals.entry(name.to_owned()).or_default();
            if *left > 0 {
                *left -= 1;
                return (
                    429,
                    status(
                        429,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                    ),
                );
            }
            match c
                .pods
                .iter_mut()
                .find(|p| p["metadata"]["name"] == name && p["metadata"]["namespace"] == ns)
            {
                Some(p) => {
                    p["metadata"]["deletionTimestamp"] = json!("2026-11-23T08:00:00Z");
                    (201, status(201, "", ""))
                }
                None => (404, status(404, "NotFound", "pods not found")),
            }
        }
        _ => (404, status(404, "NotFound", path)),
    }
}

/// Serve `cluster` on an ephemeral loopback port; its URL.
pub async fn serve(cluster: Arc<Mutex<Cluster>>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let cluster = cluster.clone();
                    async move {
                        let method = req.method().to_string();
                        let path = req
                            .uri()
                            .path_and_query()
                            .map(ToString::to_string)
                            .unwrap_or_default();
                        let ctype = req
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let bytes = req.into_body().collect().await?.to_bytes();
                        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        let (code, reply) = {
                            let mut c = cluster.lock().expect("poisoned");
                            c.seen.push((
                                method.clone(),
                                path.clone(),
                                ctype.clone(),
                                body.clone(),
                            ));
                            answer(&mut c, &method, &path, &ctype, &body)
                        };
                        let status =
                            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                        let mut resp = Response::new(Full::new(Bytes::from(reply.to_string())));
                        *resp.status_mut() = status;
                        resp.headers_mut().insert(
                            "content-type",
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    url
}
