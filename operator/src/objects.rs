//! The objects the operator creates for one replay, built as plain manifests (server-side applied,
//! so creating them twice is a no-op): the responder Deployment and Service, the routing (one
//! `VirtualService` per mocked host whose first route matches only the target's and the
//! baseline's pods by `sourceLabels`, and a `ServiceEntry` for hosts outside the mesh), a
//! Secret with the install's redaction key and collector token, the noise ConfigMap, the report
//! PersistentVolumeClaim, and the generator and merge Jobs.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::crd::{Noise, NoiseEvidence, Replay, Workload};
use crate::{Error, names};

/// The port the responder serves the mocked hosts on.
pub const RESPONDER_PORT: u16 = 8080;
/// The responder's admin port (`/readyz`, `/healthz`, `/metrics`).
pub const RESPONDER_ADMIN_PORT: u16 = 9090;
/// Where the snapshot is mounted in the responder and generator pods.
pub const SNAPSHOT_DIR: &str = "/snapshot";
/// Where a snapshot pulled from the collector by id is written (inside the emptyDir mounted at
/// [`SNAPSHOT_DIR`], so the pull's temporary folder is renamed within one filesystem).
pub const SNAPSHOT_PULLED: &str = "/snapshot/pulled";
/// Where the cut Job writes a snapshot cut from a query before pushing it.
pub const CUT_DIR: &str = "/work/snapshot";
/// Where the report volume is mounted.
pub const REPORTS_DIR: &str = "/reports";
/// The noise file format version `spec.noise` is rendered in (`docs/noise-v1.schema.json`).
pub const NOISE_VERSION: u32 = 1;
/// The key of the noise file in the config ConfigMap (and the file name under `/config`).
pub const NOISE_KEY: &str = "noise.json";

/// One kind of object the operator manages: (apiVersion, kind, plural).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// `group/version` or `version`.
    pub api_version: &'static str,
    /// The kind.
    pub kind: &'static str,
    /// The resource's plural.
    pub plural: &'static str,
}

/// Deployments.
pub const DEPLOYMENT: Kind = Kind {
    api_version: "apps/v1",
    kind: "Deployment",
    plural: "deployments",
};
/// Services.
pub const SERVICE: Kind = Kind {
    api_version: "v1",
    kind: "Service",
    plural: "services",
};
/// ConfigMaps.
pub const CONFIG_MAP: Kind = Kind {
    api_version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
};
/// Secrets.
pub const SECRET: Kind = Kind {
    api_version: "v1",
    kind: "Secret",
    plural: "secrets",
};
/// PersistentVolumeClaims.
pub const PVC: Kind = Kind {
    api_version: "v1",
    kind: "PersistentVolumeClaim",
    plural: "persistentvolumeclaims",
};
/// Jobs.
pub const JOB: Kind = Kind {
    api_version: "batch/v1",
    kind: "Job",
    plural: "jobs",
};
/// Istio ServiceEntries.
pub const SERVICE_ENTRY: Kind = Kind {
    api_version: "networking.istio.io/v1",
    kind: "ServiceEntry",
    plural: "serviceentries",
};
/// Istio VirtualServices.
pub const VIRTUAL_SERVICE: Kind = Kind {
    api_version: "networking.istio.io/v1",
    kind: "VirtualService",
    plural: "virtualservices",
};

/// The names of a replay's objects.
#[derive(Debug, Clone)]
pub struct Names {
    /// The Replay.
    pub replay: String,
    /// Its namespace.
    pub namespace: String,
}

impl Names {
    /// The names for a Replay.
    pub fn of(replay: &Replay) -> Result<Names, Error> {
        Ok(Names {
            replay: replay
                .metadata
                .name
                .clone()
                .ok_or_else(|| Error::Invalid("the replay has no name".to_owned()))?,
            namespace: replay
                .metadata
                .namespace
                .clone()
                .ok_or_else(|| Error::Invalid("the replay has no namespace".to_owned()))?,
        })
    }
    /// The responder Deployment and Service.
    pub fn responder(&self) -> String {
        format!("{}-responder", self.replay)
    }
    /// The responder Service's fully qualified name.
    pub fn responder_fqdn(&self) -> String {
        format!(
            "{}.{}.svc.{}",
            self.responder(),
            self.namespace,
            names::CLUSTER_DOMAIN
        )
    }
    /// The ServiceEntry of the hosts outside the mesh.
    pub fn egress(&self) -> String {
        format!("{}-egress", self.replay)
    }
    /// The VirtualService of the `index`-th mocked host.
    pub fn mock(&self, index: usize) -> String {
        format!("{}-mock-{index}", self.replay)
    }
    /// The Secret with the redaction key and the collector token.
    pub fn secrets(&self) -> String {
        format!("{}-secrets", self.replay)
    }
    /// The ConfigMap with the noise rules.
    pub fn config(&self) -> String {
        format!("{}-config", self.replay)
    }
    /// The report PersistentVolumeClaim the operator creates when the spec names none.
    pub fn report(&self) -> String {
        format!("{}-report", self.replay)
    }
    /// The generator Job.
    pub fn run(&self) -> String {
        format!("{}-run", self.replay)
    }
    /// The merge Job.
    pub fn merge(&self) -> String {
        format!("{}-merge", self.replay)
    }
    /// The Job that pushes a `volume` or `query` snapshot to the collector.
    pub fn cut(&self) -> String {
        format!("{}-snapshot", self.replay)
    }
}

/// A mocked host: its name as written, its fully qualified name, its port, and whether it is a
/// Kubernetes Service (in the mesh) or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The fully qualified name routed (`payments.shop.svc.cluster.local`, `api.stripe.com`).
    pub fqdn: String,
    /// The port.
    pub port: u16,
    /// A Kubernetes Service (`NAME`, `NAME.NS.svc`, `NAME.NS.svc.cluster.local`).
    pub in_mesh: bool,
}

/// Parses `HOST[:PORT]` as seen from `namespace`.
pub fn parse_host(text: &str, namespace: &str) -> Result<Host, Error> {
    let text = text.trim().to_ascii_lowercase();
    let (name, port) = match text.rsplit_once(':') {
        Some((name, port)) => (
            name.to_owned(),
            port.parse()
                .map_err(|_| Error::Invalid(format!("mock host {text:?}: bad port")))?,
        ),
        None => (text.clone(), 80),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(Error::Invalid(format!(
            "mock host {text:?}: not a host name"
        )));
    }
    let cluster = format!(".svc.{}", names::CLUSTER_DOMAIN);
    let (fqdn, in_mesh) = if !name.contains('.') {
        (format!("{name}.{namespace}{cluster}"), true)
    } else if name.ends_with(".svc") {
        (format!("{name}.{}", names::CLUSTER_DOMAIN), true)
    } else if name.ends_with(&cluster) {
        (name, true)
    } else {
        (name, false)
    };
    Ok(Host {
        fqdn,
        port,
        in_mesh,
    })
}

/// The owner reference that ties an object to its Replay (garbage-collected with it).
pub fn owner_reference(replay: &Replay) -> Value {
    json!({
        "apiVersion": "tapedeck.dev/v1alpha1",
        "kind": "Replay",
        "name": replay.metadata.name,
        "uid": replay.metadata.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn metadata(replay: &Replay, names: &Names, name: &str, component: &str) -> Value {
    let mut labels = crate::crd::child_labels(&names.replay);
    labels.insert(
        "app.kubernetes.io/component".to_owned(),
        component.to_owned(),
    );
    json!({
        "name": name,
        "namespace": names.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(replay)],
    })
}

fn object(kind: Kind, meta: Value, rest: Value) -> Value {
    let mut out = json!({"apiVersion": kind.api_version, "kind": kind.kind, "metadata": meta});
    if let (Some(out), Some(rest)) = (out.as_object_mut(), rest.as_object()) {
        out.extend(rest.clone());
    }
    out
}

fn pod_labels(names: &Names, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (crate::LABEL_REPLAY.to_owned(), names.replay.clone()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.to_owned(),
        ),
    ])
}

/// The id of the snapshot the pods pull from the collector: `spec.snapshot.id`, or, for a
/// `volume` or `query` snapshot, the id its cut Job pushed (`status.snapshotId`).
pub fn snapshot_id(replay: &Replay) -> Option<&str> {
    let source = &replay.spec.snapshot;
    if source.config_map.is_some() {
        return None;
    }
    source.id.as_deref().or_else(|| {
        replay
            .status
            .as_ref()
            .and_then(|s| s.snapshot_id.as_deref())
    })
}

/// The snapshot directory the responder and the generator read.
pub fn snapshot_path(replay: &Replay) -> &'static str {
    if snapshot_id(replay).is_some() {
        SNAPSHOT_PULLED
    } else {
        SNAPSHOT_DIR
    }
}

fn token_env(names: &Names) -> Value {
    json!([{"name": "TAPEDECK_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": names.secrets(), "key": names::COLLECTOR_TOKEN_SECRET_KEY, "optional": true}}}])
}

fn query_args(query: &crate::crd::Query, out: &str) -> Vec<String> {
    let mut args = vec![
        "snapshot".to_owned(),
        "create".to_owned(),
        "--service".to_owned(),
        query.service.clone(),
        "--from".to_owned(),
        query.from.clone(),
        "--to".to_owned(),
        query.to.clone(),
        "--out".to_owned(),
        out.to_owned(),
        "--force".to_owned(),
        "--collector".to_owned(),
        names::collector_flight_url(),
    ];
    if let Some(predicate) = &query.predicate {
        args.extend(["--where".to_owned(), predicate.clone()]);
    }
    args
}

/// The snapshot volume, and the init container that fills it: `tapedeck snapshot pull` for a
/// snapshot by id; a query not pushed yet is cut in the pod (the reconciler always pushes it
/// first, through [`cut_job`]).
fn snapshot_volume(replay: &Replay, names: &Names, image: &str) -> (Value, Option<Value>) {
    let source = &replay.spec.snapshot;
    if let Some(config_map) = &source.config_map {
        return (
            json!({"name": "snapshot", "configMap": {"name": config_map}}),
            None,
        );
    }
    let volume = json!({"name": "snapshot", "emptyDir": {}});
    if let Some(id) = snapshot_id(replay) {
        let init = json!({
            "name": "snapshot",
            "image": image,
            "args": ["snapshot", "pull", id, "--collector", names::collector_http_url(),
                     "--out", SNAPSHOT_PULLED, "--force"],
            "env": token_env(names),
            "volumeMounts": [{"name": "snapshot", "mountPath": SNAPSHOT_DIR}],
        });
        return (volume, Some(init));
    }
    if let Some(volume) = &source.volume {
        return (
            json!({"name": "snapshot", "persistentVolumeClaim": {"claimName": volume.claim_name, "readOnly": true}}),
            None,
        );
    }
    let init = source.query.as_ref().map(|query| {
        json!({
            "name": "snapshot",
            "image": image,
            "args": query_args(query, SNAPSHOT_DIR),
            "env": token_env(names),
            "volumeMounts": [{"name": "snapshot", "mountPath": SNAPSHOT_DIR}],
        })
    });
    (volume, init)
}

fn snapshot_mount(replay: &Replay) -> Value {
    let mut mount = json!({"name": "snapshot", "mountPath": SNAPSHOT_DIR, "readOnly": true});
    if snapshot_id(replay).is_none()
        && let Some(path) = replay
            .spec
            .snapshot
            .volume
            .as_ref()
            .and_then(|v| v.path.as_ref())
    {
        mount["subPath"] = json!(path.trim_start_matches('/'));
    }
    mount
}

/// The Job that pushes a `volume` or `query` snapshot to the collector, so every pod then pulls
/// the same snapshot by id and the operator reads its hosts: for a query, an init container cuts
/// it (`tapedeck snapshot create`) into an emptyDir; the `push` container sends it
/// (`tapedeck snapshot push`) and writes its id to its termination message, which the operator
/// reads. None for the sources that need no push.
pub fn cut_job(replay: &Replay, names: &Names, image: &str, deadline_s: u64) -> Option<Value> {
    let source = &replay.spec.snapshot;
    if source.config_map.is_some() || source.id.is_some() {
        return None;
    }
    let push = |dir: &str, mounts: Value| {
        json!({
            "name": "push",
            "image": image,
            "args": ["snapshot", "push", dir, "--collector", names::collector_http_url(),
                     "--id-file", "/dev/termination-log"],
            "env": token_env(names),
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "volumeMounts": mounts,
        })
    };
    let pod = if let Some(volume) = &source.volume {
        let mut mount = json!({"name": "snapshot", "mountPath": SNAPSHOT_DIR, "readOnly": true});
        if let Some(path) = &volume.path {
            mount["subPath"] = json!(path.trim_start_matches('/'));
        }
        json!({
            "restartPolicy": "Never",
            "containers": [push(SNAPSHOT_DIR, json!([mount]))],
            "volumes": [{"name": "snapshot", "persistentVolumeClaim": {
                "claimName": volume.claim_name, "readOnly": true}}],
        })
    } else {
        let query = source.query.as_ref()?;
        let mounts = json!([{"name": "work", "mountPath": "/work"}]);
        json!({
            "restartPolicy": "Never",
            "initContainers": [{
                "name": "cut",
                "image": image,
                "args": query_args(query, CUT_DIR),
                "env": token_env(names),
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": mounts,
            }],
            "containers": [push(CUT_DIR, mounts.clone())],
            "volumes": [{"name": "work", "emptyDir": {}}],
        })
    };
    let labels = pod_labels(names, "snapshot");
    Some(object(
        JOB,
        metadata(replay, names, &names.cut(), "snapshot"),
        json!({"spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_s.max(1),
            "template": {"metadata": {"labels": labels}, "spec": pod},
        }}),
    ))
}

/// The Secret with the install's redaction key and collector token, copied from the
/// `tapedeck` namespace (pods read Secrets of their own namespace only).
pub fn secrets(replay: &Replay, names: &Names, data: &BTreeMap<String, String>) -> Value {
    object(
        SECRET,
        metadata(replay, names, &names.secrets(), "secrets"),
        json!({"type": "Opaque", "data": data}),
    )
}

fn evidence(evidence: &NoiseEvidence) -> Value {
    json!({
        "source": evidence.source,
        "compared": evidence.compared,
        "differed": evidence.differed,
    })
}

/// The noise file (format version 1, what `tapedeck replay --noise` reads) of `spec.noise`:
/// the resource's camelCase fields in the file's spelling, absent fields left to the file's
/// defaults.
pub fn noise_file(noise: &Noise) -> Value {
    let mut file = json!({"version": NOISE_VERSION});
    if let Some(t) = &noise.thresholds {
        let mut thresholds = serde_json::Map::new();
        for (key, value) in [
            ("relative", t.relative),
            ("absolute", t.absolute),
            ("max_share", t.max_share),
        ] {
            if let Some(value) = value {
                thresholds.insert(key.to_owned(), json!(value));
            }
        }
        file["thresholds"] = Value::Object(thresholds);
    }
    if !noise.comparators.is_empty() {
        let comparators: Vec<Value> = noise
            .comparators
            .iter()
            .map(|c| {
                let mut out = json!({"field": c.field, "compare": c.compare});
                let optional = [
                    ("endpoint", c.endpoint.as_ref().map(|e| json!(e))),
                    ("absolute", c.absolute.map(|v| json!(v))),
                    ("relative", c.relative.map(|v| json!(v))),
                    ("skew_s", c.skew_s.map(|v| json!(v))),
                    ("key", c.key.as_ref().map(|k| json!(k))),
                    ("evidence", c.evidence.as_ref().map(evidence)),
                ];
                for (key, value) in optional {
                    if let Some(value) = value {
                        out[key] = value;
                    }
                }
                out
            })
            .collect();
        file["comparators"] = json!(comparators);
    }
    if !noise.rules.is_empty() {
        let rules: Vec<Value> = noise
            .rules
            .iter()
            .map(|r| {
                let mut out = json!({"endpoint": r.endpoint, "field": r.field});
                if let Some(e) = &r.evidence {
                    out["evidence"] = evidence(e);
                }
                out
            })
            .collect();
        file["rules"] = json!(rules);
    }
    file
}

/// The ConfigMap with the noise file (`noise.json`).
pub fn config(replay: &Replay, names: &Names) -> Value {
    let mut text = serde_json::to_string_pretty(&noise_file(&replay.spec.noise))
        .unwrap_or_else(|e| unreachable!("a JSON value always serializes: {e}"));
    text.push('\n');
    object(
        CONFIG_MAP,
        metadata(replay, names, &names.config(), "config"),
        json!({"data": {NOISE_KEY: text}}),
    )
}

/// The responder Deployment.
pub fn responder_deployment(replay: &Replay, names: &Names, image: &str) -> Value {
    let labels = pod_labels(names, "responder");
    let (volume, init) = snapshot_volume(replay, names, image);
    let mut args = vec![
        "respond".to_owned(),
        "--snapshot".to_owned(),
        snapshot_path(replay).to_owned(),
        "--listen".to_owned(),
        format!("0.0.0.0:{RESPONDER_PORT}"),
        "--admin-listen".to_owned(),
        format!("0.0.0.0:{RESPONDER_ADMIN_PORT}"),
    ];
    for rule in &replay.spec.chaos {
        args.extend(["--chaos".to_owned(), rule.clone()]);
    }
    let container = json!({
        "name": "responder",
        "image": image,
        "args": args,
        "env": [{"name": "TAPEDECK_RESPOND_REDACTION_KEY", "valueFrom": {"secretKeyRef": {
            "name": names.secrets(), "key": names::REDACTION_SECRET_KEY, "optional": true}}}],
        "ports": [
            {"name": "http", "containerPort": RESPONDER_PORT},
            {"name": "http-admin", "containerPort": RESPONDER_ADMIN_PORT},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": RESPONDER_ADMIN_PORT}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": RESPONDER_ADMIN_PORT}, "periodSeconds": 10},
        "volumeMounts": [snapshot_mount(replay)],
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true},
    });
    let mut pod = json!({"containers": [container], "volumes": [volume]});
    if let Some(init) = init {
        pod["initContainers"] = json!([init]);
    }
    object(
        DEPLOYMENT,
        metadata(replay, names, &names.responder(), "responder"),
        json!({"spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        }}),
    )
}

/// The responder Service.
pub fn responder_service(replay: &Replay, names: &Names) -> Value {
    object(
        SERVICE,
        metadata(replay, names, &names.responder(), "responder"),
        json!({"spec": {
            "selector": pod_labels(names, "responder"),
            "ports": [
                {"name": "http", "port": RESPONDER_PORT, "targetPort": RESPONDER_PORT, "appProtocol": "http"},
                {"name": "http-admin", "port": RESPONDER_ADMIN_PORT, "targetPort": RESPONDER_ADMIN_PORT},
            ],
        }}),
    )
}

/// The ServiceEntry making the hosts outside the mesh known to it (so the VirtualServices
/// apply to them), or None when every mocked host is a Kubernetes Service.
pub fn service_entry(replay: &Replay, names: &Names, hosts: &[Host]) -> Option<Value> {
    let outside: Vec<&Host> = hosts.iter().filter(|h| !h.in_mesh).collect();
    if outside.is_empty() {
        return None;
    }
    let mut fqdns: Vec<&str> = outside.iter().map(|h| h.fqdn.as_str()).collect();
    fqdns.sort_unstable();
    fqdns.dedup();
    let mut ports: Vec<u16> = outside.iter().map(|h| h.port).collect();
    ports.sort_unstable();
    ports.dedup();
    let ports: Vec<Value> = ports
        .iter()
        .map(|p| json!({"number": p, "name": format!("http-{p}"), "protocol": "HTTP"}))
        .collect();
    Some(object(
        SERVICE_ENTRY,
        metadata(replay, names, &names.egress(), "routing"),
        json!({"spec": {
            "hosts": fqdns,
            "exportTo": ["."],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
            "ports": ports,
        }}),
    ))
}

/// The VirtualService of one mocked host: requests from the target's (and the baseline's) pods,
/// matched by `sourceLabels`, go to the responder; every other workload keeps the real host.
pub fn virtual_service(
    replay: &Replay,
    names: &Names,
    index: usize,
    host: &Host,
    sources: &[BTreeMap<String, String>],
) -> Value {
    let matches: Vec<Value> = sources
        .iter()
        .map(|labels| json!({"sourceLabels": labels}))
        .collect();
    object(
        VIRTUAL_SERVICE,
        metadata(replay, names, &names.mock(index), "routing"),
        json!({"spec": {
            "hosts": [host.fqdn],
            "exportTo": ["."],
            "http": [
                {
                    "name": "tapedeck-replay",
                    "match": matches,
                    "route": [{"destination": {"host": names.responder_fqdn(), "port": {"number": RESPONDER_PORT}}}],
                },
                {
                    "name": "everyone-else",
                    "route": [{"destination": {"host": host.fqdn, "port": {"number": host.port}}}],
                },
            ],
        }}),
    )
}

/// The report PersistentVolumeClaim the operator creates when the spec names none.
pub fn report_claim(replay: &Replay, names: &Names, shards: u32) -> Value {
    let mode = if shards > 1 {
        "ReadWriteMany"
    } else {
        "ReadWriteOnce"
    };
    object(
        PVC,
        metadata(replay, names, &names.report(), "report"),
        json!({"spec": {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
}

/// The claim and the folder in it the replay's reports go to.
pub fn report_location(replay: &Replay, names: &Names) -> (String, String) {
    let uid = replay.metadata.uid.as_deref().unwrap_or("no-uid");
    let dir = format!("{}/{}-{uid}", names.namespace, names.replay);
    match &replay.spec.report {
        Some(report) => {
            let base = report
                .path
                .as_deref()
                .unwrap_or("")
                .trim_matches('/')
                .to_owned();
            let path = if base.is_empty() {
                dir
            } else {
                format!("{base}/{dir}")
            };
            (report.claim_name.clone(), path)
        }
        None => (names.report(), dir),
    }
}

fn service_url(workload: &Workload, namespace: &str) -> String {
    format!(
        "http://{}.{namespace}.svc.{}:{}",
        workload.service.as_deref().unwrap_or(&workload.deployment),
        names::CLUSTER_DOMAIN,
        workload.port.unwrap_or(80)
    )
}

/// How many generator pods the load needs.
pub fn shards(replay: &Replay) -> u32 {
    let load = &replay.spec.load;
    if let Some(n) = load.parallelism {
        return n.max(1);
    }
    let copies = load.copies.unwrap_or(1).max(1);
    let by_copies = copies.div_ceil(load.copies_per_pod.unwrap_or(64).max(1));
    let by_rate = load
        .rate
        .map(|rate| (rate / load.rate_per_pod.unwrap_or(2000.0).max(1.0)).ceil() as u32)
        .unwrap_or(1);
    by_copies.max(by_rate).max(1)
}

/// The generator Job: `shards` pods (an Indexed Job), pod K replaying `--shard K/N` into
/// `<report dir>/shard-K`.
pub fn run_job(replay: &Replay, names: &Names, image: &str, shards: u32, deadline_s: u64) -> Value {
    let spec = &replay.spec;
    let (claim, dir) = report_location(replay, names);
    let mut args = vec![
        "replay".to_owned(),
        "--snapshot".to_owned(),
        snapshot_path(replay).to_owned(),
        "--target".to_owned(),
        service_url(&spec.target, &names.namespace),
        "--progress".to_owned(),
        "never".to_owned(),
        "--shard".to_owned(),
        format!("$(SHARD)/{shards}"),
        "--report".to_owned(),
        format!("{REPORTS_DIR}/{dir}/shard-$(SHARD)"),
    ];
    if let Some(baseline) = &spec.baseline {
        args.extend([
            "--baseline".to_owned(),
            service_url(baseline, &names.namespace),
        ]);
    }
    // Every copy once over all shards: at least one copy per shard.
    let copies = spec.load.copies.unwrap_or(1).max(shards);
    args.extend(["--copies".to_owned(), copies.to_string()]);
    if let Some(speed) = spec.load.speed {
        args.extend(["--speed".to_owned(), speed.to_string()]);
    }
    if let Some(rate) = spec.load.rate {
        // Each shard sends its share of the rate.
        args.extend(["--rate".to_owned(), (rate / f64::from(shards)).to_string()]);
    }
    if let Some(duration) = &spec.load.duration {
        args.extend(["--duration".to_owned(), duration.clone()]);
    }
    for goal in &spec.goals {
        args.extend(["--goal".to_owned(), goal.clone()]);
    }
    let (volume, init) = snapshot_volume(replay, names, image);
    let mut mounts = vec![
        snapshot_mount(replay),
        json!({"name": "reports", "mountPath": REPORTS_DIR}),
    ];
    let mut volumes = vec![
        volume,
        json!({"name": "reports", "persistentVolumeClaim": {"claimName": claim}}),
    ];
    if !spec.noise.is_empty() {
        args.extend(["--noise".to_owned(), format!("/config/{NOISE_KEY}")]);
        mounts.push(json!({"name": "config", "mountPath": "/config", "readOnly": true}));
        volumes.push(json!({"name": "config", "configMap": {"name": names.config()}}));
    }
    let container = json!({
        "name": "generator",
        "image": image,
        "args": args,
        "env": [{"name": "SHARD", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}],
        "volumeMounts": mounts,
    });
    let mut pod = json!({"restartPolicy": "Never", "containers": [container], "volumes": volumes});
    if let Some(init) = init {
        pod["initContainers"] = json!([init]);
    }
    let labels = pod_labels(names, "generator");
    object(
        JOB,
        metadata(replay, names, &names.run(), "generator"),
        json!({"spec": {
            "completionMode": "Indexed",
            "completions": shards,
            "parallelism": shards,
            // Each shard runs once; a shard that fails (a goal, or a run that could not be
            // done) does not stop the others, so the merge sees every report there is.
            "backoffLimitPerIndex": 0,
            "maxFailedIndexes": shards,
            "activeDeadlineSeconds": deadline_s.max(1),
            "template": {"metadata": {"labels": labels}, "spec": pod},
        }}),
    )
}

/// The merge Job: `tapedeck replay merge` of every shard's report, its summary written where
/// Kubernetes keeps a finished container's message, which the operator reads into the status.
pub fn merge_job(
    replay: &Replay,
    names: &Names,
    image: &str,
    shards: u32,
    deadline_s: u64,
) -> Value {
    let (claim, dir) = report_location(replay, names);
    let mut args = vec!["replay".to_owned(), "merge".to_owned()];
    args.extend((0..shards).map(|k| format!("{REPORTS_DIR}/{dir}/shard-{k}")));
    args.extend([
        "--out".to_owned(),
        format!("{REPORTS_DIR}/{dir}/merged"),
        "--summary".to_owned(),
        "/dev/termination-log".to_owned(),
    ]);
    let labels = pod_labels(names, "merge");
    object(
        JOB,
        metadata(replay, names, &names.merge(), "merge"),
        json!({"spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_s.max(1),
            "template": {"metadata": {"labels": labels}, "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "merge",
                    "image": image,
                    "args": args,
                    "terminationMessagePolicy": "File",
                    "volumeMounts": [{"name": "reports", "mountPath": REPORTS_DIR}],
                }],
                "volumes": [{"name": "reports", "persistentVolumeClaim": {"claimName": claim}}],
            }},
        }}),
    )
}
