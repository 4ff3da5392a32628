//! The generated CRD is the checked-in one and a valid CustomResourceDefinition; sample Replays
//! validate against its openAPIV3Schema (and a wrong one does not); every object the operator
//! renders and every shipped manifest validates against the Kubernetes 1.34 and Istio 1.30
//! schemas in `../shared/schemas` (and `tests/schemas`).

use std::path::PathBuf;

use jsonschema::{Draft, Validator};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};
use tapedeck_operator::crd::{self, Replay};
use tapedeck_operator::{annotations, objects};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared() -> PathBuf {
    manifest_dir().join("../../shared/schemas")
}

fn read_json(path: &PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The validator of a Kubernetes kind: shared standalone-strict, else tests/schemas.
fn k8s(file: &str) -> Validator {
    let shared = shared().join("k8s-v1.34.0/standalone-strict").join(file);
    let path = if shared.is_file() {
        shared
    } else {
        manifest_dir().join("tests/schemas").join(file)
    };
    jsonschema::draft202012::new(&read_json(&path)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn file_of(object: &Value) -> &'static str {
    match (
        object["apiVersion"].as_str().unwrap_or_default(),
        object["kind"].as_str().unwrap_or_default(),
    ) {
        ("apps/v1", "Deployment") => "deployment-apps-v1.json",
        ("v1", "Service") => "service-v1.json",
        ("v1", "ConfigMap") => "configmap-v1.json",
        ("v1", "Secret") => "secret-v1.json",
        ("v1", "ServiceAccount") => "serviceaccount-v1.json",
        ("v1", "PersistentVolumeClaim") => "persistentvolumeclaim-v1.json",
        ("batch/v1", "Job") => "job-batch-v1.json",
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => "clusterrole-rbac-v1.json",
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => "clusterrolebinding-rbac-v1.json",
        ("rbac.authorization.k8s.io/v1", "Role") => "role-rbac-v1.json",
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => "rolebinding-rbac-v1.json",
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            "customresourcedefinition-apiextensions-v1.json"
        }
        other => panic!("no schema for {other:?}"),
    }
}

fn errors(validator: &Validator, object: &Value) -> Vec<String> {
    validator
        .iter_errors(object)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

fn assert_valid_k8s(object: &Value) {
    let errors = errors(&k8s(file_of(object)), object);
    assert!(
        errors.is_empty(),
        "{} {}: {errors:#?}",
        object["kind"],
        object["metadata"]["name"]
    );
}

/// The openAPIV3Schema of (apiVersion, kind) in a list of CRDs.
fn crd_schema(crds: &[Value], api_version: &str, kind: &str) -> Validator {
    for crd in crds {
        if crd["spec"]["names"]["kind"] != kind {
            continue;
        }
        for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
            if format!(
                "{}/{}",
                crd["spec"]["group"].as_str().unwrap(),
                version["name"].as_str().unwrap()
            ) == api_version
            {
                return jsonschema::options()
                    .with_draft(Draft::Draft4)
                    .build(&version["schema"]["openAPIV3Schema"])
                    .unwrap_or_else(|e| panic!("{kind}: {e}"));
            }
        }
    }
    panic!("no CRD for {api_version} {kind}")
}

fn checked_in_crd() -> String {
    std::fs::read_to_string(manifest_dir().join("manifests/replay-crd.yaml"))
        .expect("replay-crd.yaml")
}

#[test]
fn checked_in_crd_is_what_crdgen_prints() {
    assert!(
        checked_in_crd() == crd::crd_yaml(),
        "operator/manifests/replay-crd.yaml is stale: run \
         `cargo run -p tapedeck-operator --bin crdgen > operator/manifests/replay-crd.yaml`"
    );
}

#[test]
fn generated_crd_is_a_valid_custom_resource_definition() {
    let crd = yaml_documents(&checked_in_crd());
    assert_eq!(crd.len(), 1);
    assert_valid_k8s(&crd[0]);
    assert_eq!(crd[0]["metadata"]["name"], "replays.tapedeck.dev");
    assert_eq!(
        crd[0]["spec"]["versions"][0]["subresources"]["status"],
        json!({})
    );
    // The strict schema catches a mistake.
    let mut wrong = crd[0].clone();
    wrong["spec"]["scope"] = json!(7);
    assert!(!errors(&k8s(file_of(&wrong)), &wrong).is_empty());
}

#[test]
fn sample_replays_validate_against_the_crd_and_wrong_ones_do_not() {
    let crds = yaml_documents(&checked_in_crd());
    let schema = crd_schema(&crds, "tapedeck.dev/v1alpha1", "Replay");
    let sample =
        std::fs::read_to_string(manifest_dir().join("manifests/sample-replay.yaml")).unwrap();
    let sample = &yaml_documents(&sample)[0];
    assert_eq!(errors(&schema, sample), Vec::<String>::new());
    // It parses as the Rust type too.
    let replay: Replay = serde_json::from_value(sample.clone()).expect("the sample parses");
    assert_eq!(objects::shards(&replay), 4, "200 copies at 64 per pod");

    // A replay made from Deployment annotations.
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "orders-v2", "namespace": "shop", "generation": 3, "annotations": {
            "replay.tapedeck.dev/snapshot": "pvc/snapshots/orders/2026-11-27",
            "replay.tapedeck.dev/hosts": "payments:8080, api.stripe.com",
            "replay.tapedeck.dev/copies": "8",
            "replay.tapedeck.dev/goals": "p99<250ms; errors<1%",
        }},
    }))
    .unwrap();
    let replay = annotations::replay_for(&deployment).unwrap().unwrap();
    assert_eq!(replay.metadata.name.as_deref(), Some("orders-v2-g3"));
    assert_eq!(replay.spec.mock.hosts, ["payments:8080", "api.stripe.com"]);
    assert_eq!(replay.spec.goals, ["p99<250ms", "errors<1%"]);
    assert_eq!(replay.spec.load.copies, Some(8));
    let volume = replay.spec.snapshot.volume.clone().unwrap();
    assert_eq!(
        (volume.claim_name.as_str(), volume.path.as_deref()),
        ("snapshots", Some("orders/2026-11-27"))
    );
    let value = serde_json::to_value(&replay).unwrap();
    assert_eq!(errors(&schema, &value), Vec::<String>::new());

    // Wrong types and a missing target are rejected.
    let mut wrong = sample.clone();
    wrong["spec"]["load"]["copies"] = json!("many");
    assert!(!errors(&schema, &wrong).is_empty());
    let mut wrong = sample.clone();
    wrong["spec"].as_object_mut().unwrap().remove("target");
    assert!(!errors(&schema, &wrong).is_empty());
    // Noise as the old one-rule-a-line list, a rule without its endpoint, a field the noise
    // file does not spell, an unknown comparator, a threshold that is not a fraction.
    for (path, value) in [
        ("", json!(["$.updated_at"])),
        ("rules", json!([{"field": "$.updated_at"}])),
        (
            "rules",
            json!([{"endpoint": "GET /orders/{id}", "field": "updated_at"}]),
        ),
        ("rules", json!([{"endpoint": "/orders", "field": "$.a"}])),
        (
            "comparators",
            json!([{"field": "$.eta", "compare": "fuzzy"}]),
        ),
        ("thresholds", json!({"maxShare": 1.5})),
    ] {
        let mut wrong = sample.clone();
        if path.is_empty() {
            wrong["spec"]["noise"] = value.clone();
        } else {
            wrong["spec"]["noise"][path] = value.clone();
        }
        assert!(!errors(&schema, &wrong).is_empty(), "{path}: {value}");
    }
    // A bad annotation is an error, not a Replay.
    let mut bad = deployment.clone();
    bad.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("replay.tapedeck.dev/copies".into(), "lots".into());
    assert!(annotations::replay_for(&bad).unwrap().is_err());
}

/// Every object a replay creates, rendered for the sample replay.
fn rendered() -> Vec<Value> {
    let sample =
        std::fs::read_to_string(manifest_dir().join("manifests/sample-replay.yaml")).unwrap();
    let mut replay: Replay = serde_json::from_value(yaml_documents(&sample)[0].clone()).unwrap();
    replay.metadata.uid = Some("0d4f".into());
    let names = objects::Names::of(&replay).unwrap();
    let hosts: Vec<objects::Host> = replay
        .spec
        .mock
        .hosts
        .iter()
        .map(|h| objects::parse_host(h, "shop").unwrap())
        .collect();
    let sources = vec![std::collections::BTreeMap::from([(
        "app".to_owned(),
        "orders".to_owned(),
    )])];
    let mut all = vec![
        objects::secrets(&replay, &names, &Default::default()),
        objects::config(&replay, &names),
        objects::report_claim(&replay, &names, 4),
        objects::responder_deployment(&replay, &names, "tapedeck:test"),
        objects::responder_service(&replay, &names),
        objects::service_entry(&replay, &names, &hosts).expect("api.stripe.com is outside"),
        objects::run_job(&replay, &names, "tapedeck:test", 4, 1800),
        objects::merge_job(&replay, &names, "tapedeck:test", 4, 1800),
    ];
    for (i, host) in hosts.iter().enumerate() {
        all.push(objects::virtual_service(&replay, &names, i, host, &sources));
    }
    // The query source adds an init container.
    replay.spec.snapshot = serde_json::from_value(json!({"query": {
        "service": "orders", "from": "2026-11-27T13:00:00Z", "to": "2026-11-27T14:00:00Z",
        "where": "status < 500"}}))
    .unwrap();
    all.push(objects::responder_deployment(
        &replay,
        &names,
        "tapedeck:test",
    ));
    // The cut Job that pushes it to the collector, and the pods once it has an id.
    all.push(objects::cut_job(&replay, &names, "tapedeck:test", 1800).expect("a query is cut"));
    replay.status = Some(tapedeck_operator::ReplayStatus {
        snapshot_id: Some("orders-20261127T130000Z-0bb47efda65d".to_owned()),
        ..Default::default()
    });
    all.push(objects::responder_deployment(
        &replay,
        &names,
        "tapedeck:test",
    ));
    all.push(objects::run_job(&replay, &names, "tapedeck:test", 4, 1800));
    all
}

#[test]
fn rendered_kubernetes_objects_validate() {
    let mut seen = 0;
    for object in rendered() {
        if object["apiVersion"].as_str().unwrap().contains("istio.io") {
            continue;
        }
        assert_valid_k8s(&object);
        seen += 1;
    }
    assert_eq!(
        seen, 11,
        "Secret, ConfigMap, claim, 3 responder Deployments, Service, 4 Jobs"
    );
}

#[test]
fn rendered_istio_objects_validate_against_istio_crds() {
    let crds = yaml_documents(&std::fs::read_to_string(shared().join("istio-crds.yaml")).unwrap());
    let mut seen = 0;
    for object in rendered() {
        let api_version = object["apiVersion"].as_str().unwrap();
        if !api_version.contains("istio.io") {
            continue;
        }
        let schema = crd_schema(&crds, api_version, object["kind"].as_str().unwrap());
        assert_eq!(errors(&schema, &object), Vec::<String>::new(), "{object:#}");
        // And the schema catches a mistake.
        let mut wrong = object.clone();
        wrong["spec"]["hosts"] = json!("not-a-list");
        assert!(!errors(&schema, &wrong).is_empty());
        seen += 1;
    }
    assert_eq!(seen, 4, "a ServiceEntry and three VirtualServices");
}

#[test]
fn shipped_manifests_validate() {
    let dir = manifest_dir().join("manifests");
    let mut kinds = Vec::new();
    for file in ["rbac.yaml", "deployment.yaml"] {
        for object in yaml_documents(&std::fs::read_to_string(dir.join(file)).unwrap()) {
            assert_valid_k8s(&object);
            kinds.push(object["kind"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment"
        ]
    );
    // Least privilege: nothing reads Secrets cluster-wide, no wildcards.
    let rbac = yaml_documents(&std::fs::read_to_string(dir.join("rbac.yaml")).unwrap());
    for rule in rbac[1]["rules"].as_array().unwrap() {
        let text = rule.to_string();
        assert!(!text.contains("\"*\""), "{text}");
        if rule["resources"]
            .as_array()
            .unwrap()
            .contains(&json!("secrets"))
        {
            assert!(
                !rule["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v == "get" || v == "list" || v == "watch")
            );
        }
    }
    assert_eq!(
        rbac[3]["rules"][0]["resourceNames"],
        json!(["tapedeck-redaction", "tapedeck-collector-token"])
    );
}
