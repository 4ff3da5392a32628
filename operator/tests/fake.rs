//! A small in-memory API server behind kube's client (tower-test's `mock::pair`): it stores
//! objects by (plural, namespace, name), answers GET / server-side apply / JSON and merge
//! patches / DELETE / pod lists / event creation as the real one does for what the operator
//! sends, and records every call, so a test reads as: this cluster, reconcile, these calls,
//! this cluster after.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use tapedeck_operator::controller::{self, Context};
use tapedeck_operator::metrics::Metrics;
use tapedeck_operator::{Error, Replay};

/// One request the operator made.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) method: String,
    /// The path without the query.
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) content_type: String,
    pub(crate) body: Value,
}

impl Call {
    /// `METHOD path`, for asserting sequences.
    pub(crate) fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
    pub(crate) fn is_write(&self) -> bool {
        self.method != "GET"
    }
}

/// (plural, namespace, name).
type Key = (String, String, String);

#[derive(Debug, Default)]
pub(crate) struct Cluster {
    pub(crate) objects: BTreeMap<Key, Value>,
    pub(crate) events: Vec<Value>,
    /// The collector's HTTP URL the operator is given (default: a port nothing listens on).
    pub(crate) collector: String,
}

/// A stand-in for the collector's snapshot API (the API itself is tested against a real
/// collector in `tapedeck-collector`'s tests): answers `GET /v1/snapshots/{id}/snapshot.json`
/// with the `snapshot.json` of the directories it is given, 404 for any other id, and records
/// each request's path and `authorization` header.
pub(crate) struct FakeCollector {
    pub(crate) url: String,
    pub(crate) requests: Arc<Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeCollector {
    pub(crate) async fn start(snapshots: Vec<(String, std::path::PathBuf)>) -> FakeCollector {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        break;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .starts_with("authorization:")
                            .then(|| l["authorization:".len()..].trim().to_owned())
                    })
                    .unwrap_or_default();
                seen.lock().unwrap().push((path.clone(), auth));
                let found = snapshots.iter().find_map(|(id, dir)| {
                    (path == format!("/v1/snapshots/{id}/snapshot.json"))
                        .then(|| std::fs::read(dir.join("snapshot.json")).unwrap())
                });
                let (status, body) = match found {
                    Some(body) => ("200 OK", body),
                    None => ("404 Not Found", b"no snapshot\n".to_vec()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            }
        });
        FakeCollector {
            url,
            requests,
            task,
        }
    }
}

fn parse_path(path: &str) -> Option<(String, String, Option<String>, Option<String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let at = parts.iter().position(|p| *p == "namespaces")?;
    let ns = parts.get(at + 1)?.to_string();
    let plural = parts.get(at + 2)?.to_string();
    let name = parts.get(at + 3).map(|s| s.to_string());
    let sub = parts.get(at + 4).map(|s| s.to_string());
    Some((plural, ns, name, sub))
}

fn not_found(plural: &str, name: &str) -> (u16, Value) {
    (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("{plural} \"{name}\" not found"), "reason": "NotFound", "code": 404}),
    )
}

/// RFC 7386 merge.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

impl Cluster {
    pub(crate) fn put(&mut self, plural: &str, ns: &str, name: &str, object: Value) {
        self.objects
            .insert((plural.into(), ns.into(), name.into()), object);
    }
    pub(crate) fn get(&self, plural: &str, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(plural.into(), ns.into(), name.into()))
    }
    pub(crate) fn get_mut(&mut self, plural: &str, ns: &str, name: &str) -> Option<&mut Value> {
        self.objects
            .get_mut(&(plural.into(), ns.into(), name.into()))
    }
    /// The stored replay, as the controller would hand it to the next reconcile.
    pub(crate) fn replay(&self, ns: &str, name: &str) -> Replay {
        serde_json::from_value(
            self.get("replays", ns, name)
                .expect("replay stored")
                .clone(),
        )
        .expect("a stored replay parses")
    }

    fn answer(&mut self, call: &Call) -> (u16, Value) {
        if call.path == "/api/v1/namespaces/shop/pods" || call.path.ends_with("/pods") {
            let selector = call
                .query
                .split('&')
                .find_map(|p| p.strip_prefix("labelSelector="))
                .map(|s| s.replace("%3D", "=").replace("%2F", "/"))
                .unwrap_or_default();
            let (key, value) = selector.split_once('=').unwrap_or(("", ""));
            let items: Vec<Value> = self
                .objects
                .iter()
                .filter(|((p, _, _), o)| p == "pods" && o["metadata"]["labels"][key] == value)
                .map(|(_, o)| o.clone())
                .collect();
            return (
                200,
                json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}),
            );
        }
        let Some((plural, ns, name, sub)) = parse_path(&call.path) else {
            return (
                400,
                json!({"kind": "Status", "code": 400, "message": "bad path"}),
            );
        };
        if plural == "events" && call.method == "POST" {
            self.events.push(call.body.clone());
            return (201, call.body.clone());
        }
        let name = name.unwrap_or_default();
        let key = (plural.clone(), ns.clone(), name.clone());
        match call.method.as_str() {
            "GET" => match self.objects.get(&key) {
                Some(o) => (200, o.clone()),
                None => not_found(&plural, &name),
            },
            "DELETE" => match self.objects.remove(&key) {
                Some(o) => (200, o),
                None => not_found(&plural, &name),
            },
            "PATCH" if call.content_type.contains("apply-patch") => {
                let mut object = call.body.clone();
                if let Some(old) = self.objects.get(&key) {
                    // Keep what the cluster owns (status, uid) across re-applies.
                    if let Some(status) = old.get("status") {
                        object["status"] = status.clone();
                    }
                }
                object["metadata"]["uid"] = json!(format!("uid-{name}"));
                object["metadata"]["generation"] = json!(1);
                self.objects.insert(key, object.clone());
                (200, object)
            }
            "PATCH" => {
                let Some(object) = self.objects.get_mut(&key) else {
                    return not_found(&plural, &name);
                };
                if call.content_type.contains("json-patch") {
                    for op in call.body.as_array().into_iter().flatten() {
                        let path = op["path"].as_str().unwrap_or_default();
                        match (op["op"].as_str().unwrap_or_default(), path) {
                            ("add", "/metadata/finalizers") => {
                                object["metadata"]["finalizers"] = op["value"].clone()
                            }
                            ("add", "/metadata/finalizers/-") => {
                                if let Some(list) = object["metadata"]["finalizers"].as_array_mut()
                                {
                                    list.push(op["value"].clone());
                                }
                            }
                            ("remove", p) if p.starts_with("/metadata/finalizers/") => {
                                let i: usize = p.rsplit('/').next().unwrap().parse().unwrap();
                                if let Some(list) = object["metadata"]["finalizers"].as_array_mut()
                                {
                                    list.remove(i);
                                }
                            }
                            ("test", _) => {}
                            other => panic!("unexpected json patch {other:?}"),
                        }
                    }
                } else {
                    assert_eq!(
                        sub.as_deref(),
                        Some("status"),
                        "merge patches are status only"
                    );
                    merge(object, &call.body);
                }
                (200, object.clone())
            }
            other => panic!("unexpected {other} {}", call.path),
        }
    }
}

/// The fixed clock of the tests: 2026-11-29T12:00:00Z plus `offset_s`.
pub(crate) fn clock(offset_s: i64) -> Timestamp {
    let base: Timestamp = "2026-11-29T12:00:00Z".parse().unwrap();
    base.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(offset_s))
        .unwrap()
}

/// Runs one reconcile of the stored replay `ns/name` against `cluster` at `now`.
pub(crate) async fn reconcile(
    cluster: &mut Cluster,
    ns: &str,
    name: &str,
    now: Timestamp,
) -> (Result<Action, Error>, Vec<Call>) {
    let replay = cluster.replay(ns, name);
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let metrics = Arc::new(Metrics {
        ready: AtomicBool::new(true),
        ..Default::default()
    });
    let reporter = Reporter {
        controller: "tapedeck-operator".to_owned(),
        instance: None,
    };
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        image: "tapedeck:test".to_owned(),
        now: Box::new(move || now),
        metrics,
        collector: if cluster.collector.is_empty() {
            "http://127.0.0.1:9".to_owned()
        } else {
            cluster.collector.clone()
        },
    });
    let run = controller::reconcile(Arc::new(replay), context);
    tokio::pin!(run);
    let mut calls = Vec::new();
    loop {
        tokio::select! {
            result = &mut run => return (result, calls),
            next = handle.next_request() => {
                let (request, send) = next.expect("the client is alive");
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.expect("a request body");
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    content_type: parts
                        .headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    body: if bytes.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
                    },
                };
                let (status, body) = cluster.answer(&call);
                calls.push(call);
                let response = Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
        }
    }
}
