//! The Kubernetes and Istio objects of a capture install, as JSON values (printed as YAML).
//!
//! Two consumers: `tapedeck mesh render capture` fills in the per-install values (a random or
//! given redaction key and collector token, the target namespace and selector, the module URL),
//! and `tapedeck mesh render kustomize` writes the checked-in `istio/manifests/` folder, where
//! kustomize fills the same two secrets in from files the user creates.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::names::{
    self, CAPTURE_PLUGIN, COLLECTOR_FLIGHT_PORT, COLLECTOR_FLIGHT_PORT_NAME, COLLECTOR_GRPC_PORT,
    COLLECTOR_GRPC_PORT_NAME, COLLECTOR_METRICS_PORT, COLLECTOR_METRICS_PORT_NAME,
    COLLECTOR_SERVICE, COLLECTOR_TOKEN_SECRET, COLLECTOR_TOKEN_SECRET_KEY, NAMESPACE,
    REDACTION_SECRET, REDACTION_SECRET_KEY,
};

/// The `root_id` / `pluginName` the filter is loaded under.
pub const PLUGIN_ROOT_ID: &str = "tapedeck";
/// The type URL of Envoy's Wasm HTTP filter.
pub const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// The HTTP connection manager, the network filter the `EnvoyFilter` patches.
pub const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";
/// The router, the HTTP filter the `EnvoyFilter` inserts the capture filter before.
pub const ROUTER_FILTER: &str = "envoy.filters.http.router";
/// The directory the collector keeps its write-ahead log (and, without S3, its Parquet) in.
pub const COLLECTOR_DATA_DIR: &str = "/var/lib/tapedeck";
/// The Secret (created by the user) whose keys become the collector's `AWS_*` environment.
pub const S3_SECRET: &str = "tapedeck-s3";

/// Where the filter module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmSource {
    /// `oci://…`, `https://…` or `file://…`, as Istio's `WasmPlugin.url` takes it.
    pub url: String,
    /// For an OCI image the manifest digest, for a URL the module's sha256 (hex, no prefix).
    pub sha256: Option<String>,
}

/// Everything one rendered install depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Install {
    /// The namespace of the captured workloads.
    pub namespace: String,
    /// The labels that pick the captured pods.
    pub selector: BTreeMap<String, String>,
    /// The share of exchanges captured, 0 to 1.
    pub sample: f64,
    /// The filter module.
    pub wasm: WasmSource,
    /// `redaction.hash_key`, also stored in the `tapedeck-redaction` Secret.
    pub hash_key: String,
    /// The collector's bearer token, also stored in the `tapedeck-collector-token` Secret.
    pub token: String,
    /// The image that runs `tapedeck collector`.
    pub collector_image: String,
    /// The size of the collector's volume (write-ahead log, and Parquet without S3).
    pub storage_size: String,
    /// The volume's storage class; the cluster default when `None`.
    pub storage_class: Option<String>,
    /// `s3://bucket/prefix` for the Parquet files, with credentials from the `tapedeck-s3` Secret.
    pub s3_store: Option<String>,
}

fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": component,
        names::PART_OF_LABEL.0: names::PART_OF_LABEL.1,
    })
}

fn collector_pod_labels() -> Value {
    json!({
        "app": COLLECTOR_SERVICE,
        "app.kubernetes.io/name": COLLECTOR_SERVICE,
        names::PART_OF_LABEL.0: names::PART_OF_LABEL.1,
    })
}

/// The `tapedeck` namespace, with sidecar injection on so the filters reach the collector over
/// the mesh's mTLS.
pub fn namespace() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                "istio-injection": "enabled",
                names::PART_OF_LABEL.0: names::PART_OF_LABEL.1,
            },
        },
    })
}

/// The collector's ServiceAccount (no token mounted: it calls no Kubernetes API).
pub fn collector_service_account() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": COLLECTOR_SERVICE, "namespace": NAMESPACE, "labels": labels(COLLECTOR_SERVICE)},
        "automountServiceAccountToken": false,
    })
}

/// The collector Service: `grpc` (9090, the filters' pushes, HTTP/2), `http-flight` (9091, SQL)
/// and `http-metrics` (9464, `/metrics`, `/healthz`, `/readyz`).
pub fn collector_service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": COLLECTOR_SERVICE, "namespace": NAMESPACE, "labels": labels(COLLECTOR_SERVICE)},
        "spec": {
            "selector": {"app": COLLECTOR_SERVICE},
            "ports": [
                {"name": COLLECTOR_GRPC_PORT_NAME, "port": COLLECTOR_GRPC_PORT, "targetPort": COLLECTOR_GRPC_PORT_NAME, "protocol": "TCP", "appProtocol": "grpc"},
                {"name": COLLECTOR_FLIGHT_PORT_NAME, "port": COLLECTOR_FLIGHT_PORT, "targetPort": COLLECTOR_FLIGHT_PORT_NAME, "protocol": "TCP", "appProtocol": "grpc"},
                {"name": COLLECTOR_METRICS_PORT_NAME, "port": COLLECTOR_METRICS_PORT, "targetPort": COLLECTOR_METRICS_PORT_NAME, "protocol": "TCP", "appProtocol": "http"},
            ],
        },
    })
}

/// An Opaque Secret in the `tapedeck` namespace holding one `key` (rendered installs; the
/// kustomize folder makes its Secrets with `secretGenerator`s from files instead).
pub fn secret(name: &str, key: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(name)},
        "type": "Opaque",
        "stringData": {key: value},
    })
}

/// The collector: one replica with a volume for its write-ahead log (and Parquet store, unless
/// `s3_store` sends the Parquet files to S3).
pub fn collector_statefulset(install: &Install) -> Value {
    let mut env = vec![
        json!({"name": "TAPEDECK_DATA", "value": COLLECTOR_DATA_DIR}),
        json!({"name": "TAPEDECK_GRPC_LISTEN", "value": format!("0.0.0.0:{COLLECTOR_GRPC_PORT}")}),
        json!({"name": "TAPEDECK_FLIGHT_LISTEN", "value": format!("0.0.0.0:{COLLECTOR_FLIGHT_PORT}")}),
        json!({"name": "TAPEDECK_HTTP_LISTEN", "value": format!("0.0.0.0:{COLLECTOR_METRICS_PORT}")}),
        json!({"name": "TAPEDECK_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": COLLECTOR_TOKEN_SECRET, "key": COLLECTOR_TOKEN_SECRET_KEY,
        }}}),
    ];
    let mut container = json!({
        "name": "collector",
        "image": install.collector_image,
        "args": ["collector"],
        "ports": [
            {"name": COLLECTOR_GRPC_PORT_NAME, "containerPort": COLLECTOR_GRPC_PORT, "protocol": "TCP"},
            {"name": COLLECTOR_FLIGHT_PORT_NAME, "containerPort": COLLECTOR_FLIGHT_PORT, "protocol": "TCP"},
            {"name": COLLECTOR_METRICS_PORT_NAME, "containerPort": COLLECTOR_METRICS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": COLLECTOR_METRICS_PORT_NAME}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": COLLECTOR_METRICS_PORT_NAME}, "periodSeconds": 10, "failureThreshold": 6},
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"memory": "4Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "data", "mountPath": COLLECTOR_DATA_DIR}],
    });
    if let Some(store) = &install.s3_store {
        env.push(json!({"name": "TAPEDECK_STORE", "value": store}));
        container["envFrom"] = json!([{"secretRef": {"name": S3_SECRET}}]);
    }
    container["env"] = Value::Array(env);
    let mut claim_spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": install.storage_size}},
    });
    if let Some(class) = &install.storage_class {
        claim_spec["storageClassName"] = json!(class);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": COLLECTOR_SERVICE, "namespace": NAMESPACE, "labels": labels(COLLECTOR_SERVICE)},
        "spec": {
            "serviceName": COLLECTOR_SERVICE,
            "replicas": 1,
            "selector": {"matchLabels": {"app": COLLECTOR_SERVICE}},
            "template": {
                "metadata": {
                    "labels": collector_pod_labels(),
                    // SIGTERM flushes the buffer to Parquet; give it time.
                    "annotations": {"proxy.istio.io/config": "{\"terminationDrainDuration\": \"20s\"}"},
                },
                "spec": {
                    "serviceAccountName": COLLECTOR_SERVICE,
                    "automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": 60,
                    "securityContext": {"fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data", "labels": labels(COLLECTOR_SERVICE)},
                "spec": claim_spec,
            }],
        },
    })
}

/// The filter's configuration (`pluginConfig`): the collector cluster as Istio names it in
/// every sidecar, the token, the sample rate and the install's redaction key.
pub fn plugin_config(sample: f64, token: &str, hash_key: &str) -> Value {
    json!({
        "version": 1,
        "collector": {"cluster": names::collector_cluster(), "token": token},
        "sampling": {"rate": sample},
        "redaction": {"hash_key": hash_key},
    })
}

/// The filter as an Istio `WasmPlugin` on the selected pods, both directions.
///
/// Phase `STATS`: Istio inserts the plugin after its authentication and authorization filters and
/// before its stats filter. So the filter records what the application is actually served:
/// requests the mesh rejects (mTLS, `RequestAuthentication`, `AuthorizationPolicy`) never reach
/// the application and would only test the mesh on replay, and identity headers the authn
/// filters add are already there. On the outbound side the same position is just before the
/// router, so the recorded request is the one sent upstream.
///
/// `failStrategy: FAIL_OPEN`, decided (docs/soak.md, "The choice"): in Istio the same field also
/// decides what a failed module fetch does, and istio-agent (`pkg/wasm/convert.go`,
/// `httpWasmFailOpen`) replaces a module it cannot fetch with an allow-all RBAC filter only
/// under `FAIL_OPEN`; under `FAIL_RELOAD` (as under `FAIL_CLOSE`) with a deny-all one, so a
/// registry outage would refuse every request of the captured workloads. A filter VM that dies
/// under `FAIL_OPEN` is not silent: the collector's last-push gauge for the workload stops.
pub fn wasm_plugin(
    namespace: &str,
    selector: &BTreeMap<String, String>,
    wasm: &WasmSource,
    config: Value,
) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": selector},
        "url": wasm.url,
    });
    if let Some(sha) = &wasm.sha256 {
        spec["sha256"] = json!(sha);
    }
    let rest = json!({
        "imagePullPolicy": "IfNotPresent",
        "pluginName": PLUGIN_ROOT_ID,
        "type": "HTTP",
        "phase": "STATS",
        "failStrategy": "FAIL_OPEN",
        "match": [{"mode": "CLIENT_AND_SERVER"}],
        "pluginConfig": config,
    });
    if let (Some(spec), Value::Object(rest)) = (spec.as_object_mut(), rest) {
        spec.extend(rest);
    }
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": CAPTURE_PLUGIN, "namespace": namespace, "labels": labels(CAPTURE_PLUGIN)},
        "spec": spec,
    })
}

/// The Envoy Wasm filter config the `EnvoyFilter` ships (its `EXTENSION_CONFIG` patch): the
/// module from `wasm` (istio-agent downloads it and hands Envoy a local file) and the plugin
/// configuration as a JSON string, failing open like the `WasmPlugin`, for the same reason (this
/// config also reaches Envoy over ECDS through istio-agent's fetch, which turns a failed fetch
/// into a deny-all filter under any `failure_policy` but `FAIL_OPEN`).
pub fn envoy_wasm_config(wasm: &WasmSource, config_json: &str) -> Value {
    let mut remote = json!({"http_uri": {"uri": wasm.url, "timeout": "30s"}});
    if let Some(sha) = &wasm.sha256 {
        remote["sha256"] = json!(sha);
    }
    json!({
        "@type": WASM_FILTER_TYPE,
        "config": {
            "name": PLUGIN_ROOT_ID,
            "root_id": PLUGIN_ROOT_ID,
            "vm_config": {
                "vm_id": PLUGIN_ROOT_ID,
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"remote": remote},
            },
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": config_json,
            },
            "failure_policy": "FAIL_OPEN",
        },
    })
}

/// The same filter as an `EnvoyFilter`: the Wasm config as an extension config (delivered over
/// ECDS, which is how istio-agent fetches remote modules), and an HTTP filter that loads it,
/// inserted before the router of every HTTP connection manager, inbound and outbound.
///
/// Unlike the `WasmPlugin`'s `STATS` phase this sits after Istio's stats filter (which only
/// counts) — inserting before `istio.stats` would silently apply nowhere when telemetry is off.
pub fn envoy_filter(
    namespace: &str,
    selector: &BTreeMap<String, String>,
    wasm: &WasmSource,
    config_json: &str,
) -> Value {
    let http_filter = |context: &str| {
        json!({
            "applyTo": "HTTP_FILTER",
            "match": {
                "context": context,
                "listener": {"filterChain": {"filter": {
                    "name": HCM_FILTER,
                    "subFilter": {"name": ROUTER_FILTER},
                }}},
            },
            "patch": {
                "operation": "INSERT_BEFORE",
                "value": {
                    "name": CAPTURE_PLUGIN,
                    "config_discovery": {
                        "config_source": {"ads": {}, "initial_fetch_timeout": "0s"},
                        "type_urls": [WASM_FILTER_TYPE],
                    },
                },
            },
        })
    };
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": CAPTURE_PLUGIN, "namespace": namespace, "labels": labels(CAPTURE_PLUGIN)},
        "spec": {
            "workloadSelector": {"labels": selector},
            "configPatches": [
                {
                    "applyTo": "EXTENSION_CONFIG",
                    "patch": {
                        "operation": "ADD",
                        "value": {"name": CAPTURE_PLUGIN, "typed_config": envoy_wasm_config(wasm, config_json)},
                    },
                },
                http_filter("SIDECAR_INBOUND"),
                http_filter("SIDECAR_OUTBOUND"),
            ],
        },
    })
}

/// Which form the filter is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterForm {
    /// An Istio `WasmPlugin` (preferred).
    WasmPlugin,
    /// An `EnvoyFilter`, for meshes that prefer it.
    EnvoyFilter,
}

/// What `render capture` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// The namespace, the collector and its two Secrets.
    pub collector: bool,
    /// The filter, in this form.
    pub filter: FilterForm,
}

/// Every object of a rendered install, in apply order.
pub fn capture_install(install: &Install, parts: Parts) -> Vec<Value> {
    let mut docs = Vec::new();
    if parts.collector {
        docs.push(namespace());
        docs.push(collector_service_account());
        docs.push(secret(
            COLLECTOR_TOKEN_SECRET,
            COLLECTOR_TOKEN_SECRET_KEY,
            &install.token,
        ));
        docs.push(secret(
            REDACTION_SECRET,
            REDACTION_SECRET_KEY,
            &install.hash_key,
        ));
        docs.push(collector_service());
        docs.push(collector_statefulset(install));
    }
    let config = plugin_config(install.sample, &install.token, &install.hash_key);
    docs.push(match parts.filter {
        FilterForm::WasmPlugin => {
            wasm_plugin(&install.namespace, &install.selector, &install.wasm, config)
        }
        FilterForm::EnvoyFilter => envoy_filter(
            &install.namespace,
            &install.selector,
            &install.wasm,
            &config.to_string(),
        ),
    });
    docs
}

/// Multi-document YAML, `---` between documents.
pub fn to_yaml(docs: &[Value]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(doc)?);
    }
    Ok(out)
}
