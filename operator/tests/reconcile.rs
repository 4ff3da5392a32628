//! The reconciler, scenario by scenario, against the in-memory API server (`fake`): the exact
//! calls and objects, owner references and labels, the routing (only the target's and the
//! baseline's `sourceLabels`), status transitions, the Job's parallelism and sharding, cleanup
//! after success, failure, timeout and deletion, idempotent re-reconciles, a restart mid-replay.

use kube::runtime::controller::Action;
use serde_json::{Value, json};
use tapedeck_operator::FINALIZER;

use crate::fake::{Call, Cluster, FakeCollector, clock, reconcile};

const NS: &str = "shop";
const NAME: &str = "orders-v2";
const REPLAYS: &str = "/apis/tapedeck.dev/v1alpha1/namespaces/shop/replays/orders-v2";

fn replay_spec() -> Value {
    json!({
        "target": {"deployment": "orders-v2", "port": 8080},
        "baseline": {"deployment": "orders-v1", "port": 8080},
        "snapshot": {"configMap": "orders-snapshot"},
        "mock": {"hosts": ["payments:8080", "api.stripe.com"]},
        "chaos": ["latency=200ms@0.05"],
        "load": {"copies": 200, "speed": 2},
        "goals": ["p99 +10% @ 95%"],
        "noise": {
            "thresholds": {"maxShare": 0.4},
            "comparators": [{"field": "$.eta", "compare": "timestamp", "skewS": 60.0}],
            "rules": [
                {"endpoint": "GET /orders/{id}", "field": "$.updated_at"},
                {"endpoint": "GET /orders/{id}", "field": "header date",
                 "evidence": {"source": "recording", "compared": 40, "differed": 38}},
            ],
        },
        "timeout": "30m",
    })
}

fn deployment(name: &str, labels: Value, ready: bool) -> Value {
    let n = if ready { 1 } else { 0 };
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "generation": 1, "uid": format!("uid-{name}")},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}},
        "status": {"observedGeneration": 1, "updatedReplicas": n, "readyReplicas": n},
    })
}

/// A cluster with the replay (no finalizer yet), ready target and baseline, the install's
/// redaction Secret.
fn cluster(spec: Value) -> Cluster {
    let mut cluster = Cluster::default();
    cluster.put(
        "replays",
        NS,
        NAME,
        json!({
            "apiVersion": "tapedeck.dev/v1alpha1", "kind": "Replay",
            "metadata": {"name": NAME, "namespace": NS, "uid": "uid-replay", "generation": 1},
            "spec": spec,
        }),
    );
    cluster.put(
        "deployments",
        NS,
        "orders-v2",
        deployment("orders-v2", json!({"app": "orders", "version": "v2"}), true),
    );
    cluster.put(
        "deployments",
        NS,
        "orders-v1",
        deployment("orders-v1", json!({"app": "orders", "version": "v1"}), true),
    );
    // An unrelated workload that must keep its real dependencies.
    cluster.put(
        "deployments",
        NS,
        "billing",
        deployment("billing", json!({"app": "billing"}), true),
    );
    cluster.put(
        "secrets",
        "tapedeck",
        "tapedeck-redaction",
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "tapedeck-redaction", "namespace": "tapedeck"},
            "data": {"hash-key": "c2VjcmV0"},
        }),
    );
    cluster
}

fn status(cluster: &Cluster) -> Value {
    cluster.get("replays", NS, NAME).unwrap()["status"].clone()
}

fn writes(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.is_write())
        .map(Call::line)
        .collect()
}

fn set_ready(cluster: &mut Cluster, name: &str) {
    let d = cluster.get_mut("deployments", NS, name).unwrap();
    d["status"] = json!({"observedGeneration": 1, "updatedReplicas": 1, "readyReplicas": 1});
}

fn finish_job(cluster: &mut Cluster, name: &str, kind: &str, succeeded: u32) {
    let job = cluster.get_mut("jobs", NS, name).unwrap();
    job["status"] =
        json!({"succeeded": succeeded, "conditions": [{"type": kind, "status": "True"}]});
}

fn merge_pod(cluster: &mut Cluster, exit_code: i32, message: &str) {
    cluster.put("pods", NS, "orders-v2-merge-x7k2p", json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orders-v2-merge-x7k2p", "namespace": NS,
                     "labels": {"batch.kubernetes.io/job-name": "orders-v2-merge"}},
        "status": {"containerStatuses": [{"name": "merge", "image": "tapedeck:test", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": exit_code, "message": message}}}]},
    }));
}

const SUMMARY: &str = r#"{"version":1,"shards":4,"verdict":"pass","requests":4000,"errors":2,
"error_rate":0.0005,"rps":400.0,"duration_s":10.0,
"latency":{"p50":1.5,"p90":3.0,"p99":7.25,"max":20.0,"count":4000},"endpoints":{},
"top_diffs":[{"endpoint":"GET /orders/{id}","field":"$.eta","count":3}]}"#;

/// The objects a replay creates, by (plural, name).
fn children(cluster: &Cluster) -> Vec<(String, String)> {
    cluster
        .objects
        .iter()
        .filter(|(_, o)| o["metadata"]["labels"]["replay.tapedeck.dev/name"] == NAME)
        .map(|((p, _, n), _)| (p.clone(), n.clone()))
        .collect()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or(&Value::Null)
}

/// Runs the replay from nothing to Preparing (finalizer, then prepare).
async fn prepared(cluster: &mut Cluster) {
    let (result, calls) = reconcile(cluster, NS, NAME, clock(0)).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(
        writes(&calls),
        [format!("PATCH {REPLAYS}")],
        "first the finalizer, alone"
    );
    assert_eq!(
        cluster.get("replays", NS, NAME).unwrap()["metadata"]["finalizers"],
        json!([FINALIZER])
    );
    let (result, _) = reconcile(cluster, NS, NAME, clock(1)).await;
    result.unwrap();
    assert_eq!(status(cluster)["phase"], "Preparing");
}

#[tokio::test]
async fn a_replay_runs_from_pending_to_passed_and_cleans_up() {
    let mut cluster = cluster(replay_spec());
    let (result, calls) = reconcile(&mut cluster, NS, NAME, clock(0)).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(writes(&calls), [format!("PATCH {REPLAYS}")]);

    // Prepare: exactly these reads and applies, in order.
    let (result, calls) = reconcile(&mut cluster, NS, NAME, clock(1)).await;
    assert_eq!(
        result.unwrap(),
        Action::requeue(std::time::Duration::from_secs(5))
    );
    let lines: Vec<String> = calls.iter().map(Call::line).collect();
    assert_eq!(
        lines,
        [
            "GET /apis/apps/v1/namespaces/shop/deployments/orders-v2",
            "GET /apis/apps/v1/namespaces/shop/deployments/orders-v1",
            "GET /api/v1/namespaces/tapedeck/secrets/tapedeck-redaction",
            "GET /api/v1/namespaces/tapedeck/secrets/tapedeck-collector-token",
            "PATCH /api/v1/namespaces/shop/secrets/orders-v2-secrets",
            "PATCH /api/v1/namespaces/shop/configmaps/orders-v2-config",
            "PATCH /api/v1/namespaces/shop/persistentvolumeclaims/orders-v2-report",
            "PATCH /apis/apps/v1/namespaces/shop/deployments/orders-v2-responder",
            "PATCH /api/v1/namespaces/shop/services/orders-v2-responder",
            "PATCH /apis/networking.istio.io/v1/namespaces/shop/serviceentries/orders-v2-egress",
            "PATCH /apis/networking.istio.io/v1/namespaces/shop/virtualservices/orders-v2-mock-0",
            "PATCH /apis/networking.istio.io/v1/namespaces/shop/virtualservices/orders-v2-mock-1",
            &format!("PATCH {REPLAYS}/status"),
        ]
    );
    for call in calls
        .iter()
        .filter(|c| c.method == "PATCH" && !c.path.contains("replays"))
    {
        assert!(
            call.content_type.contains("apply-patch"),
            "server-side apply: {}",
            call.path
        );
        assert!(
            call.query.contains("fieldManager=tapedeck-operator")
                && call.query.contains("force=true")
        );
        let meta = &call.body["metadata"];
        assert_eq!(
            meta["ownerReferences"],
            json!([{"apiVersion": "tapedeck.dev/v1alpha1", "kind": "Replay",
            "name": NAME, "uid": "uid-replay", "controller": true, "blockOwnerDeletion": true}]),
            "{}",
            call.path
        );
        assert_eq!(meta["labels"]["replay.tapedeck.dev/name"], NAME);
        assert_eq!(
            meta["labels"]["app.kubernetes.io/managed-by"],
            "tapedeck-operator"
        );
    }
    // The copied Secret carries the install's key only.
    assert_eq!(
        cluster.get("secrets", NS, "orders-v2-secrets").unwrap()["data"],
        json!({"hash-key": "c2VjcmV0"})
    );

    // Routing: only the target's and the baseline's pods reach the responder; everyone else
    // (billing) keeps the real host through the second route.
    let vs = cluster
        .get("virtualservices", NS, "orders-v2-mock-0")
        .unwrap();
    assert_eq!(
        vs["spec"],
        json!({
            "hosts": ["payments.shop.svc.cluster.local"],
            "exportTo": ["."],
            "http": [
                {"name": "tapedeck-replay",
                 "match": [{"sourceLabels": {"app": "orders", "version": "v2"}},
                           {"sourceLabels": {"app": "orders", "version": "v1"}}],
                 "route": [{"destination": {"host": "orders-v2-responder.shop.svc.cluster.local", "port": {"number": 8080}}}]},
                {"name": "everyone-else",
                 "route": [{"destination": {"host": "payments.shop.svc.cluster.local", "port": {"number": 8080}}}]},
            ],
        })
    );
    assert!(!vs.to_string().contains("billing"));
    let se = cluster
        .get("serviceentries", NS, "orders-v2-egress")
        .unwrap();
    assert_eq!(
        se["spec"]["hosts"],
        json!(["api.stripe.com"]),
        "only hosts outside the mesh"
    );
    assert_eq!(
        se["spec"]["ports"],
        json!([{"number": 80, "name": "http-80", "protocol": "HTTP"}])
    );
    let responder = cluster
        .get("deployments", NS, "orders-v2-responder")
        .unwrap();
    let args = &responder["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(
        args,
        &json!([
            "respond",
            "--snapshot",
            "/snapshot",
            "--listen",
            "0.0.0.0:8080",
            "--admin-listen",
            "0.0.0.0:9090",
            "--chaos",
            "latency=200ms@0.05"
        ])
    );
    assert_eq!(
        responder["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"],
        "orders-snapshot"
    );

    let s = status(&cluster);
    assert_eq!(s["phase"], "Preparing");
    assert_eq!(s["shards"], 4);
    assert_eq!(s["startTime"], clock(1).to_string());
    assert_eq!(
        s["mockedHosts"],
        json!(["payments.shop.svc.cluster.local:8080", "api.stripe.com:80"])
    );
    assert_eq!(
        s["report"],
        "pvc://orders-v2-report/shop/orders-v2-uid-replay"
    );
    assert_eq!(condition(&s, "Prepared")["status"], "True");

    // The responder is not Ready yet: only reads, no writes.
    let (result, calls) = reconcile(&mut cluster, NS, NAME, clock(5)).await;
    assert_eq!(
        result.unwrap(),
        Action::requeue(std::time::Duration::from_secs(5))
    );
    assert_eq!(writes(&calls), Vec::<String>::new());

    // Ready: the generator Job, 4 pods, each its own shard.
    set_ready(&mut cluster, "orders-v2-responder");
    let (result, calls) = reconcile(&mut cluster, NS, NAME, clock(10)).await;
    result.unwrap();
    assert_eq!(
        writes(&calls),
        [
            "PATCH /apis/batch/v1/namespaces/shop/jobs/orders-v2-run".to_owned(),
            format!("PATCH {REPLAYS}/status"),
        ]
    );
    let job = cluster.get("jobs", NS, "orders-v2-run").unwrap();
    let spec = &job["spec"];
    assert_eq!(
        (spec["parallelism"].clone(), spec["completions"].clone()),
        (json!(4), json!(4))
    );
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["backoffLimitPerIndex"], 0);
    assert_eq!(
        spec["activeDeadlineSeconds"], 1791,
        "what is left of the 30 minutes"
    );
    let container = &spec["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "replay",
            "--snapshot",
            "/snapshot",
            "--target",
            "http://orders-v2.shop.svc.cluster.local:8080",
            "--progress",
            "never",
            "--shard",
            "$(SHARD)/4",
            "--report",
            "/reports/shop/orders-v2-uid-replay/shard-$(SHARD)",
            "--baseline",
            "http://orders-v1.shop.svc.cluster.local:8080",
            "--copies",
            "200",
            "--speed",
            "2",
            "--goal",
            "p99 +10% @ 95%",
            "--noise",
            "/config/noise.json",
        ]
    );
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    );
    assert_eq!(status(&cluster)["phase"], "Running");

    // Running: only reads until the Job ends.
    let (_, calls) = reconcile(&mut cluster, NS, NAME, clock(20)).await;
    assert_eq!(writes(&calls), Vec::<String>::new());
    finish_job(&mut cluster, "orders-v2-run", "Complete", 4);
    let (_, calls) = reconcile(&mut cluster, NS, NAME, clock(30)).await;
    assert_eq!(
        writes(&calls),
        [
            "PATCH /apis/batch/v1/namespaces/shop/jobs/orders-v2-merge".to_owned(),
            format!("PATCH {REPLAYS}/status"),
        ]
    );
    let merge = cluster.get("jobs", NS, "orders-v2-merge").unwrap();
    let args = &merge["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(
        args,
        &json!([
            "replay",
            "merge",
            "/reports/shop/orders-v2-uid-replay/shard-0",
            "/reports/shop/orders-v2-uid-replay/shard-1",
            "/reports/shop/orders-v2-uid-replay/shard-2",
            "/reports/shop/orders-v2-uid-replay/shard-3",
            "--out",
            "/reports/shop/orders-v2-uid-replay/merged",
            "--summary",
            "/dev/termination-log"
        ])
    );
    assert_eq!(status(&cluster)["phase"], "Merging");

    // Merged: the verdict in status and an Event, then everything but the report is deleted.
    finish_job(&mut cluster, "orders-v2-merge", "Complete", 1);
    merge_pod(&mut cluster, 0, SUMMARY);
    let (result, calls) = reconcile(&mut cluster, NS, NAME, clock(40)).await;
    assert_eq!(result.unwrap(), Action::await_change());
    let s = status(&cluster);
    assert_eq!(s["phase"], "Passed");
    assert_eq!(s["completionTime"], clock(40).to_string());
    assert_eq!(
        s["verdict"],
        json!({"result": "pass", "requests": 4000, "p50Ms": 1.5, "p99Ms": 7.25,
        "rps": 400.0, "errorRate": 0.0005, "topDiffs": ["GET /orders/{id} $.eta: 3"]})
    );
    assert_eq!(condition(&s, "CleanedUp")["status"], "True");
    assert_eq!(cluster.events.len(), 1);
    assert_eq!(cluster.events[0]["reason"], "Passed");
    assert_eq!(cluster.events[0]["type"], "Normal");
    assert!(
        cluster.events[0]["note"]
            .as_str()
            .unwrap()
            .contains("p99 7.25 ms")
    );
    assert_eq!(
        children(&cluster),
        [(
            "persistentvolumeclaims".to_owned(),
            "orders-v2-report".to_owned()
        )]
    );
    for call in calls.iter().filter(|c| c.method == "DELETE") {
        assert_eq!(
            call.body["propagationPolicy"], "Background",
            "Jobs go with their pods: {}",
            call.path
        );
    }

    // Done and cleaned up: a re-reconcile makes no call at all.
    let (result, calls) = reconcile(&mut cluster, NS, NAME, clock(50)).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(calls.is_empty(), "{calls:?}");
}

#[tokio::test]
async fn a_failed_goal_ends_failed_with_a_warning_and_cleans_up() {
    let mut cluster = cluster(replay_spec());
    prepared(&mut cluster).await;
    set_ready(&mut cluster, "orders-v2-responder");
    reconcile(&mut cluster, NS, NAME, clock(10))
        .await
        .0
        .unwrap();
    // Two shards failed their goals: the Job fails, the merge still runs.
    finish_job(&mut cluster, "orders-v2-run", "Failed", 2);
    reconcile(&mut cluster, NS, NAME, clock(20))
        .await
        .0
        .unwrap();
    let s = status(&cluster);
    assert_eq!(s["phase"], "Merging");
    assert_eq!(condition(&s, "Ran")["reason"], "ShardsFailed");
    finish_job(&mut cluster, "orders-v2-merge", "Failed", 0);
    merge_pod(&mut cluster, 1, &SUMMARY.replace("\"pass\"", "\"fail\""));
    reconcile(&mut cluster, NS, NAME, clock(30))
        .await
        .0
        .unwrap();
    let s = status(&cluster);
    assert_eq!(s["phase"], "Failed");
    assert_eq!(s["verdict"]["result"], "fail");
    assert_eq!(cluster.events[0]["type"], "Warning");
    assert_eq!(children(&cluster).len(), 1, "only the report claim is left");
}

#[tokio::test]
async fn an_inconclusive_merge_and_a_merge_without_summary() {
    let mut cluster = cluster(replay_spec());
    prepared(&mut cluster).await;
    // Restart mid-replay happens at any point; here the status says Merging.
    let replay = cluster.get_mut("replays", NS, NAME).unwrap();
    replay["status"]["phase"] = json!("Merging");
    cluster.put(
        "jobs",
        NS,
        "orders-v2-merge",
        json!({"metadata": {"name": "orders-v2-merge"},
        "status": {"conditions": [{"type": "Failed", "status": "True"}]}}),
    );
    merge_pod(
        &mut cluster,
        3,
        &SUMMARY.replace("\"pass\"", "\"inconclusive\""),
    );
    reconcile(&mut cluster, NS, NAME, clock(30))
        .await
        .0
        .unwrap();
    assert_eq!(status(&cluster)["phase"], "Inconclusive");

    let mut cluster = self::cluster(replay_spec());
    prepared(&mut cluster).await;
    let replay = cluster.get_mut("replays", NS, NAME).unwrap();
    replay["status"]["phase"] = json!("Merging");
    cluster.put(
        "jobs",
        NS,
        "orders-v2-merge",
        json!({"metadata": {"name": "orders-v2-merge"},
        "status": {"conditions": [{"type": "Failed", "status": "True"}]}}),
    );
    merge_pod(
        &mut cluster,
        2,
        "reading /reports/shard-1/report.json: no such file",
    );
    reconcile(&mut cluster, NS, NAME, clock(30))
        .await
        .0
        .unwrap();
    let s = status(&cluster);
    assert_eq!(s["phase"], "Error");
    assert_eq!(s["verdict"]["result"], "error");
    assert!(s["message"].as_str().unwrap().contains("no such file"));
}

#[tokio::test]
async fn a_timeout_ends_in_error_and_cleans_up() {
    let mut cluster = cluster(replay_spec());
    prepared(&mut cluster).await;
    // The responder never gets Ready; 30 minutes after the start:
    let (result, _) = reconcile(&mut cluster, NS, NAME, clock(1 + 1799)).await;
    assert_eq!(
        result.unwrap(),
        Action::requeue(std::time::Duration::from_secs(5))
    );
    assert_eq!(status(&cluster)["phase"], "Preparing");
    let (result, calls) = reconcile(&mut cluster, NS, NAME, clock(1 + 1800)).await;
    assert_eq!(result.unwrap(), Action::await_change());
    let s = status(&cluster);
    assert_eq!(s["phase"], "Error");
    assert_eq!(condition(&s, "Finished")["reason"], "Timeout");
    assert_eq!(cluster.events[0]["reason"], "Timeout");
    assert_eq!(children(&cluster).len(), 1);
    let deleted: Vec<String> = calls
        .iter()
        .filter(|c| c.method == "DELETE")
        .map(Call::line)
        .collect();
    assert_eq!(
        deleted,
        [
            "DELETE /apis/batch/v1/namespaces/shop/jobs/orders-v2-merge",
            "DELETE /apis/batch/v1/namespaces/shop/jobs/orders-v2-run",
            "DELETE /apis/batch/v1/namespaces/shop/jobs/orders-v2-snapshot",
            "DELETE /apis/networking.istio.io/v1/namespaces/shop/virtualservices/orders-v2-mock-0",
            "DELETE /apis/networking.istio.io/v1/namespaces/shop/virtualservices/orders-v2-mock-1",
            "DELETE /apis/networking.istio.io/v1/namespaces/shop/serviceentries/orders-v2-egress",
            "DELETE /api/v1/namespaces/shop/services/orders-v2-responder",
            "DELETE /apis/apps/v1/namespaces/shop/deployments/orders-v2-responder",
            "DELETE /api/v1/namespaces/shop/configmaps/orders-v2-config",
            "DELETE /api/v1/namespaces/shop/secrets/orders-v2-secrets",
        ]
    );
}

#[tokio::test]
async fn deleting_a_running_replay_removes_everything_and_the_finalizer() {
    let mut cluster = cluster(replay_spec());
    prepared(&mut cluster).await;
    set_ready(&mut cluster, "orders-v2-responder");
    reconcile(&mut cluster, NS, NAME, clock(10))
        .await
        .0
        .unwrap();
    assert_eq!(status(&cluster)["phase"], "Running");
    assert_eq!(children(&cluster).len(), 9);
    // `kubectl delete replay`: the API server sets deletionTimestamp and keeps the object.
    let replay = cluster.get_mut("replays", NS, NAME).unwrap();
    replay["metadata"]["deletionTimestamp"] = json!(clock(15).to_string());
    let (result, calls) = reconcile(&mut cluster, NS, NAME, clock(15)).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(
        children(&cluster),
        [(
            "persistentvolumeclaims".to_owned(),
            "orders-v2-report".to_owned()
        )],
        "the report claim goes with the Replay, by its owner reference"
    );
    assert_eq!(
        cluster.get("replays", NS, NAME).unwrap()["metadata"]["finalizers"],
        json!([])
    );
    assert_eq!(calls.last().unwrap().line(), format!("PATCH {REPLAYS}"));
    assert!(
        calls
            .iter()
            .all(|c| c.method == "DELETE" || c.path == REPLAYS)
    );
}

#[tokio::test]
async fn a_restarted_operator_carries_on_from_the_cluster_state() {
    // What a previous operator left: status Running, the run Job finished. The new one (a fresh
    // context, nothing in memory) must go on to the merge without re-creating anything.
    let mut cluster = cluster(replay_spec());
    let replay = cluster.get_mut("replays", NS, NAME).unwrap();
    replay["metadata"]["finalizers"] = json!([FINALIZER]);
    replay["status"] = json!({"phase": "Running", "startTime": clock(0).to_string(), "shards": 4,
        "mockedHosts": ["payments.shop.svc.cluster.local:8080", "api.stripe.com:80"]});
    cluster.put(
        "jobs",
        NS,
        "orders-v2-run",
        json!({"metadata": {"name": "orders-v2-run"}}),
    );
    finish_job(&mut cluster, "orders-v2-run", "Complete", 4);
    let (result, calls) = reconcile(&mut cluster, NS, NAME, clock(100)).await;
    result.unwrap();
    assert_eq!(
        calls.iter().map(Call::line).collect::<Vec<_>>(),
        [
            "GET /apis/batch/v1/namespaces/shop/jobs/orders-v2-run".to_owned(),
            "PATCH /apis/batch/v1/namespaces/shop/jobs/orders-v2-merge".to_owned(),
            format!("PATCH {REPLAYS}/status"),
        ]
    );
    assert_eq!(status(&cluster)["phase"], "Merging");
    assert_eq!(
        cluster.get("jobs", NS, "orders-v2-merge").unwrap()["spec"]["activeDeadlineSeconds"],
        1700
    );

    // And a run Job lost while Running (deleted by hand) is applied again.
    let mut cluster = self::cluster(replay_spec());
    let replay = cluster.get_mut("replays", NS, NAME).unwrap();
    replay["metadata"]["finalizers"] = json!([FINALIZER]);
    replay["status"] = json!({"phase": "Running", "startTime": clock(0).to_string(), "shards": 4});
    let (_, calls) = reconcile(&mut cluster, NS, NAME, clock(100)).await;
    assert_eq!(
        writes(&calls),
        ["PATCH /apis/batch/v1/namespaces/shop/jobs/orders-v2-run"]
    );
    assert_eq!(status(&cluster)["phase"], "Running");
}

#[tokio::test]
async fn preparing_twice_applies_the_same_objects() {
    // The status write after the applies is lost (a crash, a conflict): the next reconcile
    // applies the same objects again, and nothing is duplicated.
    let mut cluster = cluster(replay_spec());
    prepared(&mut cluster).await;
    let first: Vec<(String, Value)> = children(&cluster)
        .into_iter()
        .map(|(p, n)| (format!("{p}/{n}"), cluster.get(&p, NS, &n).unwrap().clone()))
        .collect();
    cluster
        .get_mut("replays", NS, NAME)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("status");
    reconcile(&mut cluster, NS, NAME, clock(2)).await.0.unwrap();
    let second: Vec<(String, Value)> = children(&cluster)
        .into_iter()
        .map(|(p, n)| (format!("{p}/{n}"), cluster.get(&p, NS, &n).unwrap().clone()))
        .collect();
    assert_eq!(first, second);
    assert_eq!(first.len(), 8);
}

#[tokio::test]
async fn small_loads_run_one_pod_and_rates_split_across_pods() {
    let mut spec = replay_spec();
    spec["load"] = json!({"copies": 10});
    spec.as_object_mut().unwrap().remove("baseline");
    let mut cluster = cluster(spec);
    prepared(&mut cluster).await;
    set_ready(&mut cluster, "orders-v2-responder");
    reconcile(&mut cluster, NS, NAME, clock(10))
        .await
        .0
        .unwrap();
    let job = cluster.get("jobs", NS, "orders-v2-run").unwrap();
    assert_eq!(job["spec"]["parallelism"], 1);
    assert!(!job.to_string().contains("--baseline"));
    let vs = cluster
        .get("virtualservices", NS, "orders-v2-mock-0")
        .unwrap();
    assert_eq!(
        vs["spec"]["http"][0]["match"],
        json!([{"sourceLabels": {"app": "orders", "version": "v2"}}])
    );
    assert_eq!(
        cluster
            .get("persistentvolumeclaims", NS, "orders-v2-report")
            .unwrap()["spec"]["accessModes"],
        json!(["ReadWriteOnce"])
    );

    let mut spec = replay_spec();
    spec["load"] = json!({"rate": 5000.0, "ratePerPod": 2000.0});
    let mut cluster = self::cluster(spec);
    prepared(&mut cluster).await;
    set_ready(&mut cluster, "orders-v2-responder");
    reconcile(&mut cluster, NS, NAME, clock(10))
        .await
        .0
        .unwrap();
    let job = cluster.get("jobs", NS, "orders-v2-run").unwrap();
    assert_eq!(job["spec"]["parallelism"], 3);
    let args: Vec<String> =
        serde_json::from_value(job["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap();
    let at = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
    assert_eq!(at("--copies"), "3", "one copy per shard at least");
    assert_eq!(at("--rate").parse::<f64>().unwrap(), 5000.0 / 3.0);
}

#[tokio::test]
async fn invalid_replays_end_in_error_without_creating_anything() {
    for (spec_change, reason, needle) in [
        (
            json!({"snapshot": {"id": "orders-20261127T130000Z-0bb47efda65d",
                "configMap": "orders-snapshot"}}),
            "InvalidSpec",
            "exactly one of id, configMap, volume, query (2 given)",
        ),
        (
            json!({"mock": {}}),
            "SnapshotNotFound",
            "shop/orders-snapshot is not found",
        ),
        (json!({"snapshot": {}}), "InvalidSpec", "exactly one of"),
        (
            json!({"target": {"deployment": "nope"}}),
            "TargetNotFound",
            "shop/nope",
        ),
        (json!({"timeout": "soon"}), "InvalidSpec", "timeout"),
    ] {
        let mut spec = replay_spec();
        for (k, v) in spec_change.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let mut cluster = cluster(spec);
        reconcile(&mut cluster, NS, NAME, clock(0)).await.0.unwrap();
        let (result, calls) = reconcile(&mut cluster, NS, NAME, clock(1)).await;
        assert_eq!(result.unwrap(), Action::await_change());
        let s = status(&cluster);
        assert_eq!(s["phase"], "Error", "{spec_change}");
        assert_eq!(condition(&s, "Finished")["reason"], reason);
        assert!(s["message"].as_str().unwrap().contains(needle), "{s}");
        assert!(children(&cluster).is_empty());
        assert!(
            calls
                .iter()
                .all(|c| !c.content_type.contains("apply-patch")),
            "nothing applied"
        );
        assert_eq!(cluster.events.len(), 1);
    }
}

/// The golden shop snapshot's files, as a snapshot ConfigMap holds them.
fn snapshot_config_map(name: &str, edit: impl Fn(&mut Value)) -> Value {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../analyzer/tests/golden/shop");
    let mut data = serde_json::Map::new();
    for file in ["snapshot.json", "inbound.jsonl", "outbound.jsonl"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("the golden snapshot");
        data.insert(file.to_owned(), json!(text));
    }
    let mut map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": data,
    });
    edit(&mut map);
    map
}

#[tokio::test]
async fn without_mock_hosts_a_config_map_snapshot_mocks_all_its_outbound_hosts() {
    let mut spec = replay_spec();
    spec["mock"] = json!({});
    let mut cluster = cluster(spec);
    cluster.put(
        "configmaps",
        NS,
        "orders-snapshot",
        snapshot_config_map("orders-snapshot", |_| {}),
    );
    reconcile(&mut cluster, NS, NAME, clock(0)).await.0.unwrap();
    let (result, calls) = reconcile(&mut cluster, NS, NAME, clock(1)).await;
    assert_eq!(
        result.unwrap(),
        Action::requeue(std::time::Duration::from_secs(5))
    );
    assert_eq!(
        calls[0].line(),
        "GET /api/v1/namespaces/shop/configmaps/orders-snapshot",
        "the snapshot is read before anything else"
    );
    let s = status(&cluster);
    assert_eq!(s["phase"], "Preparing", "{s}");
    // The golden snapshot calls one host, `payments.shop.svc:8080`, 8 times.
    assert_eq!(
        s["mockedHosts"],
        json!(["payments.shop.svc.cluster.local:8080"])
    );
    let vs = cluster
        .get("virtualservices", NS, "orders-v2-mock-0")
        .unwrap();
    assert_eq!(
        vs["spec"]["hosts"],
        json!(["payments.shop.svc.cluster.local"])
    );
    assert!(
        cluster
            .get("virtualservices", NS, "orders-v2-mock-1")
            .is_none()
    );
    assert!(
        cluster
            .get("serviceentries", NS, "orders-v2-egress")
            .is_none(),
        "an in-mesh host needs no ServiceEntry"
    );

    // A ConfigMap that is not a valid snapshot: Error, nothing created, the analyzer's reason.
    let mut spec = replay_spec();
    spec["mock"] = json!({});
    let mut cluster = self::cluster(spec);
    cluster.put(
        "configmaps",
        NS,
        "orders-snapshot",
        snapshot_config_map("orders-snapshot", |map| {
            map["data"]["outbound.jsonl"] = json!("{\"id\": 1}\n");
        }),
    );
    reconcile(&mut cluster, NS, NAME, clock(0)).await.0.unwrap();
    reconcile(&mut cluster, NS, NAME, clock(1)).await.0.unwrap();
    let s = status(&cluster);
    assert_eq!(s["phase"], "Error");
    assert_eq!(condition(&s, "Finished")["reason"], "SnapshotUnreadable");
    let message = s["message"].as_str().unwrap();
    assert!(message.contains("outbound.jsonl:1"), "{message}");
    assert!(children(&cluster).is_empty());

    // A ConfigMap without the snapshot's files.
    let mut spec = replay_spec();
    spec["mock"] = json!({});
    let mut cluster = self::cluster(spec);
    cluster.put(
        "configmaps",
        NS,
        "orders-snapshot",
        snapshot_config_map("orders-snapshot", |map| {
            map["data"]
                .as_object_mut()
                .unwrap()
                .remove("outbound.jsonl");
        }),
    );
    reconcile(&mut cluster, NS, NAME, clock(0)).await.0.unwrap();
    reconcile(&mut cluster, NS, NAME, clock(1)).await.0.unwrap();
    let s = status(&cluster);
    assert_eq!(condition(&s, "Finished")["reason"], "SnapshotUnreadable");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("no key outbound.jsonl"),
        "{s}"
    );
}

#[tokio::test]
async fn the_noise_config_map_is_a_noise_file_the_generator_reads() {
    use std::collections::BTreeMap;
    use tapedeck_generator::noise::{self, CompareKind, Source};

    let mut cluster = cluster(replay_spec());
    prepared(&mut cluster).await;
    let map = cluster.get("configmaps", NS, "orders-v2-config").unwrap();
    let text = map["data"]["noise.json"].as_str().expect("noise.json");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.json");
    std::fs::write(&path, text).unwrap();
    // The endpoint the rules are anchored to, with 10 fields (0.4 of them may be silenced).
    let fields = BTreeMap::from([("GET /orders/{id}".to_owned(), 10)]);
    let file = noise::read(&path, &fields).expect("the generator reads the rendered file");
    assert_eq!(file.version, noise::NOISE_VERSION);
    assert_eq!(file.thresholds.max_share, 0.4);
    assert_eq!(
        file.thresholds.relative, 0.2,
        "absent thresholds keep the defaults"
    );
    assert_eq!(file.comparators.len(), 1);
    assert_eq!(file.comparators[0].field, "$.eta");
    assert_eq!(file.comparators[0].compare, CompareKind::Timestamp);
    assert_eq!(file.comparators[0].skew_s, Some(60.0));
    assert_eq!(file.comparators[0].endpoint, None);
    let rules: Vec<(&str, &str)> = file
        .rules
        .iter()
        .map(|r| (r.endpoint.as_str(), r.field.as_str()))
        .collect();
    assert_eq!(
        rules,
        [
            ("GET /orders/{id}", "$.updated_at"),
            ("GET /orders/{id}", "header date")
        ]
    );
    assert_eq!(file.rules[0].evidence, None);
    let evidence = file.rules[1].evidence.as_ref().unwrap();
    assert_eq!(
        (evidence.source, evidence.compared, evidence.differed),
        (Source::Recording, 40, 38)
    );

    // The reader is not lenient: a rule of an endpoint the snapshot lacks is refused, so the
    // check above would catch a rendering that anchored rules wrongly.
    let other = BTreeMap::from([("GET /users/{id}".to_owned(), 10)]);
    assert!(noise::read(&path, &other).is_err());
}

const GOLDEN_ID: &str = "orders-20261127T130000Z-0bb47efda65d";
const COLLECTOR_HTTP: &str = "http://tapedeck-collector.tapedeck.svc.cluster.local:9464";

fn golden_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../analyzer/tests/golden/shop")
}

fn token_secret(cluster: &mut Cluster) {
    cluster.put(
        "secrets",
        "tapedeck",
        "tapedeck-collector-token",
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "tapedeck-collector-token", "namespace": "tapedeck"},
            "data": {"token": "czNjcmV0LXRva2Vu"},
        }),
    );
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

/// The pull init container of a pod template, and the main container's --snapshot.
fn assert_pulls(pod: &Value, id: &str) {
    let init = &pod["initContainers"][0];
    assert_eq!(
        strings(&init["args"]),
        [
            "snapshot",
            "pull",
            id,
            "--collector",
            COLLECTOR_HTTP,
            "--out",
            "/snapshot/pulled",
            "--force"
        ]
    );
    assert_eq!(
        init["env"][0]["valueFrom"]["secretKeyRef"],
        json!({"name": "orders-v2-secrets", "key": "token", "optional": true})
    );
    assert_eq!(
        init["volumeMounts"],
        json!([{"name": "snapshot", "mountPath": "/snapshot"}])
    );
    assert_eq!(
        pod["volumes"][0],
        json!({"name": "snapshot", "emptyDir": {}})
    );
    let args = strings(&pod["containers"][0]["args"]);
    let at = args.iter().position(|a| *a == "--snapshot").unwrap();
    assert_eq!(args[at + 1], "/snapshot/pulled");
}

#[tokio::test]
async fn a_snapshot_by_id_is_pulled_by_the_pods_and_its_hosts_come_from_the_collector() {
    let collector = FakeCollector::start(vec![(GOLDEN_ID.to_owned(), golden_dir())]).await;
    let mut spec = replay_spec();
    spec["snapshot"] = json!({"id": GOLDEN_ID});
    spec["mock"] = json!({});
    let mut cluster = cluster(spec);
    cluster.collector = collector.url.clone();
    token_secret(&mut cluster);
    reconcile(&mut cluster, NS, NAME, clock(0)).await.0.unwrap();
    let (result, _) = reconcile(&mut cluster, NS, NAME, clock(1)).await;
    assert_eq!(
        result.unwrap(),
        Action::requeue(std::time::Duration::from_secs(5))
    );
    // The operator asked the collector for snapshot.json, with the install's token.
    assert_eq!(
        collector.requests.lock().unwrap().clone(),
        [(
            format!("/v1/snapshots/{GOLDEN_ID}/snapshot.json"),
            "Bearer s3cret-token".to_owned()
        )]
    );
    let s = status(&cluster);
    assert_eq!(s["phase"], "Preparing", "{s}");
    assert_eq!(s["snapshotId"], GOLDEN_ID);
    assert_eq!(
        s["mockedHosts"],
        json!(["payments.shop.svc.cluster.local:8080"])
    );
    let responder = cluster
        .get("deployments", NS, "orders-v2-responder")
        .unwrap();
    assert_pulls(&responder["spec"]["template"]["spec"], GOLDEN_ID);
    // The token the pull presents is the install's, copied next to the pods.
    assert_eq!(
        cluster.get("secrets", NS, "orders-v2-secrets").unwrap()["data"]["token"],
        "czNjcmV0LXRva2Vu"
    );
    set_ready(&mut cluster, "orders-v2-responder");
    reconcile(&mut cluster, NS, NAME, clock(10))
        .await
        .0
        .unwrap();
    let job = cluster.get("jobs", NS, "orders-v2-run").unwrap();
    assert_pulls(&job["spec"]["template"]["spec"], GOLDEN_ID);

    // An id the collector does not have: Error, nothing created.
    let mut spec = replay_spec();
    spec["snapshot"] = json!({"id": "orders-20261127T130000Z-000000000000"});
    spec["mock"] = json!({});
    let mut cluster = self::cluster(spec);
    cluster.collector = collector.url.clone();
    reconcile(&mut cluster, NS, NAME, clock(0)).await.0.unwrap();
    reconcile(&mut cluster, NS, NAME, clock(1)).await.0.unwrap();
    let s = status(&cluster);
    assert_eq!(s["phase"], "Error");
    assert_eq!(condition(&s, "Finished")["reason"], "SnapshotNotFound");
    assert!(
        s["message"].as_str().unwrap().contains("has no snapshot"),
        "{s}"
    );
    assert!(children(&cluster).is_empty());

    // No collector answering: the reconcile fails (and is retried), the phase stays.
    let mut spec = replay_spec();
    spec["snapshot"] = json!({"id": GOLDEN_ID});
    spec["mock"] = json!({});
    let mut cluster = self::cluster(spec);
    reconcile(&mut cluster, NS, NAME, clock(0)).await.0.unwrap();
    let (result, _) = reconcile(&mut cluster, NS, NAME, clock(1)).await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("collector"), "{error}");
    assert!(
        status(&cluster).get("phase").is_none_or(|p| p.is_null()),
        "{}",
        status(&cluster)
    );
    assert!(children(&cluster).is_empty());
}

fn cut_pod(cluster: &mut Cluster, init_message: Option<&str>, push_message: &str) {
    let terminated = |name: &str, code: i32, message: &str| {
        json!({"name": name, "image": "tapedeck:test", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": code, "message": message}}})
    };
    let mut status = json!({"containerStatuses": [terminated("push", 0, push_message)]});
    if let Some(message) = init_message {
        status = json!({"initContainerStatuses": [terminated("cut", 1, message)]});
    }
    cluster.put(
        "pods",
        NS,
        "orders-v2-snapshot-q8z2x",
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "orders-v2-snapshot-q8z2x", "namespace": NS,
                         "labels": {"batch.kubernetes.io/job-name": "orders-v2-snapshot"}},
            "status": status,
        }),
    );
}

#[tokio::test]
async fn a_query_snapshot_is_cut_once_by_a_job_then_replayed_by_id() {
    let collector = FakeCollector::start(vec![(GOLDEN_ID.to_owned(), golden_dir())]).await;
    let query = json!({"query": {"service": "orders", "from": "2026-11-27T13:00:00Z",
        "to": "2026-11-27T14:00:00Z", "where": "status < 500"}});
    let mut spec = replay_spec();
    spec["snapshot"] = query.clone();
    spec["mock"] = json!({});
    let mut cluster = cluster(spec);
    cluster.collector = collector.url.clone();
    token_secret(&mut cluster);
    reconcile(&mut cluster, NS, NAME, clock(0)).await.0.unwrap();

    // Pending → Cutting: the Secret, then the cut Job.
    let (result, calls) = reconcile(&mut cluster, NS, NAME, clock(1)).await;
    assert_eq!(
        result.unwrap(),
        Action::requeue(std::time::Duration::from_secs(5))
    );
    assert_eq!(
        writes(&calls),
        [
            "PATCH /api/v1/namespaces/shop/secrets/orders-v2-secrets".to_owned(),
            "PATCH /apis/batch/v1/namespaces/shop/jobs/orders-v2-snapshot".to_owned(),
            format!("PATCH {REPLAYS}/status"),
        ]
    );
    let s = status(&cluster);
    assert_eq!(s["phase"], "Cutting");
    assert_eq!(s["startTime"], clock(1).to_string());
    let job = cluster.get("jobs", NS, "orders-v2-snapshot").unwrap();
    assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "uid-replay");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 1800);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        strings(&pod["initContainers"][0]["args"]),
        [
            "snapshot",
            "create",
            "--service",
            "orders",
            "--from",
            "2026-11-27T13:00:00Z",
            "--to",
            "2026-11-27T14:00:00Z",
            "--out",
            "/work/snapshot",
            "--force",
            "--collector",
            "http://tapedeck-collector.tapedeck.svc.cluster.local:9091",
            "--where",
            "status < 500",
        ]
    );
    let push = &pod["containers"][0];
    assert_eq!(
        strings(&push["args"]),
        [
            "snapshot",
            "push",
            "/work/snapshot",
            "--collector",
            COLLECTOR_HTTP,
            "--id-file",
            "/dev/termination-log",
        ]
    );
    assert_eq!(push["terminationMessagePolicy"], "FallbackToLogsOnError");
    assert_eq!(pod["volumes"], json!([{"name": "work", "emptyDir": {}}]));
    assert!(
        collector.requests.lock().unwrap().is_empty(),
        "nothing read yet"
    );

    // The Job runs: only reads.
    let (_, calls) = reconcile(&mut cluster, NS, NAME, clock(5)).await;
    assert_eq!(writes(&calls), Vec::<String>::new());
    // A restarted operator that finds the Job gone applies it again.
    cluster
        .objects
        .remove(&("jobs".into(), NS.into(), "orders-v2-snapshot".into()));
    let (_, calls) = reconcile(&mut cluster, NS, NAME, clock(6)).await;
    assert_eq!(
        writes(&calls),
        ["PATCH /apis/batch/v1/namespaces/shop/jobs/orders-v2-snapshot"]
    );

    // Pushed: the id from the push container's termination message goes to the status.
    finish_job(&mut cluster, "orders-v2-snapshot", "Complete", 1);
    cut_pod(&mut cluster, None, &format!("{GOLDEN_ID}\n"));
    let (result, calls) = reconcile(&mut cluster, NS, NAME, clock(20)).await;
    assert_eq!(result.unwrap(), Action::requeue(std::time::Duration::ZERO));
    assert_eq!(writes(&calls), [format!("PATCH {REPLAYS}/status")]);
    let s = status(&cluster);
    assert_eq!(
        (s["phase"].as_str(), s["snapshotId"].as_str()),
        (Some("Cutting"), Some(GOLDEN_ID))
    );
    assert_eq!(condition(&s, "SnapshotPushed")["status"], "True");

    // Then as for an id: hosts from the collector, pods pulling it; the start time is kept.
    reconcile(&mut cluster, NS, NAME, clock(21))
        .await
        .0
        .unwrap();
    let s = status(&cluster);
    assert_eq!(s["phase"], "Preparing", "{s}");
    assert_eq!(s["startTime"], clock(1).to_string());
    assert_eq!(
        s["mockedHosts"],
        json!(["payments.shop.svc.cluster.local:8080"])
    );
    assert_eq!(collector.requests.lock().unwrap().len(), 1);
    let responder = cluster
        .get("deployments", NS, "orders-v2-responder")
        .unwrap();
    assert_pulls(&responder["spec"]["template"]["spec"], GOLDEN_ID);

    // Deleting the replay removes the cut Job with the rest.
    let replay = cluster.get_mut("replays", NS, NAME).unwrap();
    replay["metadata"]["deletionTimestamp"] = json!(clock(30).to_string());
    reconcile(&mut cluster, NS, NAME, clock(30))
        .await
        .0
        .unwrap();
    assert!(cluster.get("jobs", NS, "orders-v2-snapshot").is_none());
    assert_eq!(
        children(&cluster),
        [(
            "persistentvolumeclaims".to_owned(),
            "orders-v2-report".to_owned()
        )]
    );

    // A cut that fails: Error with the cut's own words, everything removed.
    let mut spec = replay_spec();
    spec["snapshot"] = query;
    spec["mock"] = json!({});
    let mut cluster = self::cluster(spec);
    cluster.collector = collector.url.clone();
    reconcile(&mut cluster, NS, NAME, clock(0)).await.0.unwrap();
    reconcile(&mut cluster, NS, NAME, clock(1)).await.0.unwrap();
    finish_job(&mut cluster, "orders-v2-snapshot", "Failed", 0);
    cut_pod(
        &mut cluster,
        Some("error: no exchanges of service \"orders\" match"),
        "",
    );
    reconcile(&mut cluster, NS, NAME, clock(20))
        .await
        .0
        .unwrap();
    let s = status(&cluster);
    assert_eq!(s["phase"], "Error");
    assert_eq!(condition(&s, "Finished")["reason"], "SnapshotCutFailed");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("no exchanges of service"),
        "{s}"
    );
    assert!(children(&cluster).is_empty(), "{:?}", children(&cluster));
}

#[test]
fn a_volume_snapshot_is_pushed_from_the_claim() {
    let mut replay: tapedeck_operator::Replay = serde_json::from_value(json!({
        "apiVersion": "tapedeck.dev/v1alpha1", "kind": "Replay",
        "metadata": {"name": NAME, "namespace": NS, "uid": "uid-replay"},
        "spec": replay_spec(),
    }))
    .unwrap();
    replay.spec.snapshot =
        serde_json::from_value(json!({"volume": {"claimName": "snaps", "path": "/orders"}}))
            .unwrap();
    let names = tapedeck_operator::objects::Names::of(&replay).unwrap();
    let job = tapedeck_operator::objects::cut_job(&replay, &names, "tapedeck:test", 60).unwrap();
    let pod = &job["spec"]["template"]["spec"];
    assert!(pod.get("initContainers").is_none());
    assert_eq!(
        strings(&pod["containers"][0]["args"]),
        [
            "snapshot",
            "push",
            "/snapshot",
            "--collector",
            COLLECTOR_HTTP,
            "--id-file",
            "/dev/termination-log"
        ]
    );
    assert_eq!(
        pod["containers"][0]["volumeMounts"],
        json!([{"name": "snapshot", "mountPath": "/snapshot", "readOnly": true, "subPath": "orders"}])
    );
    assert_eq!(
        pod["volumes"],
        json!([{"name": "snapshot", "persistentVolumeClaim": {"claimName": "snaps", "readOnly": true}}])
    );
    // Once pushed, the pods pull it by id rather than mount the claim.
    replay.status = Some(tapedeck_operator::ReplayStatus {
        snapshot_id: Some(GOLDEN_ID.to_owned()),
        ..Default::default()
    });
    let responder =
        tapedeck_operator::objects::responder_deployment(&replay, &names, "tapedeck:test");
    assert_pulls(&responder["spec"]["template"]["spec"], GOLDEN_ID);
    assert_eq!(
        responder["spec"]["template"]["spec"]["containers"][0]["volumeMounts"],
        json!([{"name": "snapshot", "mountPath": "/snapshot", "readOnly": true}])
    );
    // The sources that need no push get no Job.
    replay.spec.snapshot = serde_json::from_value(json!({"id": GOLDEN_ID})).unwrap();
    assert!(tapedeck_operator::objects::cut_job(&replay, &names, "t", 60).is_none());
}

#[test]
fn the_operators_collector_is_the_installs_by_default() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: tapedeck_operator::OperatorArgs,
    }
    let cli = <Cli as clap::Parser>::try_parse_from(["operator"]).unwrap();
    assert_eq!(
        cli.args.collector,
        tapedeck_operator::names::collector_http_url()
    );
    assert_eq!(cli.args.collector, COLLECTOR_HTTP);
}
