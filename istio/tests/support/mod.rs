//! What the mesh tests check manifests with: the real schemas (Istio 1.30 CRDs, Kubernetes
//! v1.34 strict JSON Schemas), the `kubernetes-validate` tool, `kubectl kustomize` and Envoy.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use jsonschema::{Draft, Resource, Validator};
use serde_json::Value;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in the workspace")
        .to_owned()
}

/// The schema folder: `$TAPEDECK_SCHEMAS`, else `../shared/schemas` beside the workspace.
pub fn schemas_dir() -> PathBuf {
    let dir = std::env::var_os("TAPEDECK_SCHEMAS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/schemas"));
    assert!(
        dir.join("istio-crds.yaml").is_file(),
        "the schemas are not at {} (set TAPEDECK_SCHEMAS)",
        dir.display()
    );
    dir
}

/// The project venv (`./x setup`): `$TAPEDECK_VENV`, else `<workspace>/.venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("TAPEDECK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv"))
}

/// Envoy: `$TAPEDECK_ENVOY`, else the venv's (`./x setup` installs it).
pub fn envoy() -> PathBuf {
    let path = std::env::var_os("TAPEDECK_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| venv().join("bin/envoy"));
    assert!(
        path.is_file(),
        "envoy is not at {} (run ./x setup)",
        path.display()
    );
    path
}

/// `filter.wasm`: `$TAPEDECK_FILTER_WASM`, else the `filter` profile build under
/// `$CARGO_TARGET_DIR` or the workspace's `target/` (`./x setup` builds it).
pub fn filter_wasm() -> PathBuf {
    let relative = "wasm32-wasip1/filter/tapedeck_filter.wasm";
    let path = std::env::var_os("TAPEDECK_FILTER_WASM")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|dir| PathBuf::from(dir).join(relative))
        })
        .unwrap_or_else(|| workspace().join("target").join(relative));
    assert!(
        path.is_file(),
        "filter.wasm is not at {} (run ./x setup)",
        path.display()
    );
    path
}

/// `kubernetes-validate` (PyPI, installed into the venv by `./x setup`).
pub fn kubernetes_validate() -> PathBuf {
    let path = std::env::var_os("TAPEDECK_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| venv().join("bin/kubernetes-validate"));
    assert!(
        path.is_file(),
        "kubernetes-validate is not at {} (run ./x setup)",
        path.display()
    );
    path
}

/// The schemas `kubernetes-validate` ships (the same files ../shared/schemas/k8s-v1.34.0 was
/// copied from), for kinds the shared folder lacks.
fn kubernetes_validate_schemas() -> PathBuf {
    let out = Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import kubernetes_validate, os; print(os.path.dirname(kubernetes_validate.__file__))",
        ])
        .output()
        .expect("the venv's python runs");
    assert!(
        out.status.success(),
        "kubernetes_validate is not installed in the venv (run ./x setup)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        .join("kubernetes-json-schema/v1.34.0-local-strict")
}

/// Validators for every kind the install uses.
pub struct Schemas {
    validators: HashMap<(String, String), Validator>,
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Schemas {
    pub fn load() -> Self {
        let dir = schemas_dir();
        let mut validators = HashMap::new();
        // Istio: each CRD's openAPIV3Schema for its (group/version, kind).
        let crds = std::fs::read_to_string(dir.join("istio-crds.yaml")).expect("istio-crds.yaml");
        for document in serde_yaml::Deserializer::from_str(&crds) {
            let crd: Value = match serde::Deserialize::deserialize(document) {
                Ok(Value::Null) => continue,
                Ok(crd) => crd,
                Err(e) => panic!("istio-crds.yaml: {e}"),
            };
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap_or_default();
            if !matches!(kind, "WasmPlugin" | "EnvoyFilter") {
                continue;
            }
            let group = crd["spec"]["group"].as_str().unwrap_or_default().to_owned();
            for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
                let schema = &version["schema"]["openAPIV3Schema"];
                let validator = jsonschema::options()
                    .with_draft(Draft::Draft4)
                    .build(schema)
                    .unwrap_or_else(|e| panic!("{kind} schema: {e}"));
                let api_version =
                    format!("{group}/{}", version["name"].as_str().unwrap_or_default());
                validators.insert((api_version, kind.to_owned()), validator);
            }
        }
        // Kubernetes core: the shared standalone-strict schemas where there is one, else the
        // same release's local-strict schemas that kubernetes-validate ships.
        let standalone = dir.join("k8s-v1.34.0/standalone-strict");
        let shipped = kubernetes_validate_schemas();
        let definitions = read_json(&shipped.join("_definitions.json"));
        for (api_version, kind, file) in [
            ("v1", "Service", "service-v1.json"),
            ("apps/v1", "Deployment", "deployment-apps-v1.json"),
            ("v1", "ConfigMap", "configmap-v1.json"),
            ("v1", "Namespace", "namespace-v1.json"),
            ("v1", "ServiceAccount", "serviceaccount-v1.json"),
            ("v1", "Secret", "secret-v1.json"),
            ("apps/v1", "StatefulSet", "statefulset-apps-v1.json"),
        ] {
            let validator = if standalone.join(file).is_file() {
                jsonschema::draft202012::new(&read_json(&standalone.join(file)))
                    .unwrap_or_else(|e| panic!("{file}: {e}"))
            } else {
                let resource = Resource::from_contents(definitions.clone()).expect("a resource");
                jsonschema::options()
                    .with_draft(Draft::Draft202012)
                    .with_resource("https://kubernetes.io/api/_definitions.json", resource)
                    .build(&read_json(&shipped.join(file)))
                    .unwrap_or_else(|e| panic!("{file}: {e}"))
            };
            validators.insert((api_version.to_owned(), kind.to_owned()), validator);
        }
        Self { validators }
    }

    /// Every schema error of `doc`, one line each; panics on a kind without a schema.
    pub fn errors(&self, doc: &Value) -> Vec<String> {
        let key = (
            doc["apiVersion"].as_str().unwrap_or_default().to_owned(),
            doc["kind"].as_str().unwrap_or_default().to_owned(),
        );
        let validator = self
            .validators
            .get(&key)
            .unwrap_or_else(|| panic!("no schema for {key:?}"));
        validator
            .iter_errors(doc)
            .map(|e| {
                format!(
                    "{}/{} at {}: {}",
                    key.1, doc["metadata"]["name"], e.instance_path, e
                )
            })
            .collect()
    }

    /// Asserts that every document validates.
    pub fn assert_valid(&self, docs: &[Value], what: &str) {
        let errors: Vec<String> = docs.iter().flat_map(|d| self.errors(d)).collect();
        assert!(
            errors.is_empty(),
            "{what}: schema errors:\n{}",
            errors.join("\n")
        );
    }
}

/// The documents of a multi-document YAML text (empty ones skipped).
pub fn parse_yaml(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|document| {
            let value: Value = serde::Deserialize::deserialize(document).expect("valid YAML");
            (!value.is_null()).then_some(value)
        })
        .collect()
}

/// Whether the kind is a Kubernetes core kind (what kubernetes-validate checks).
pub fn is_core(doc: &Value) -> bool {
    !doc["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .contains("istio.io")
}

/// Runs `kubernetes-validate --strict` for Kubernetes 1.34 on `docs` (written to one file);
/// returns its exit status success and output.
pub fn run_kubernetes_validate(docs: &[Value], dir: &Path) -> (bool, String) {
    let path = dir.join("core.yaml");
    let text: String = docs
        .iter()
        .map(|d| format!("---\n{}", serde_yaml::to_string(d).expect("yaml")))
        .collect();
    std::fs::write(&path, text).expect("write core.yaml");
    let out = Command::new(kubernetes_validate())
        .args(["--strict", "-k", "1.34.0"])
        .arg(&path)
        .output()
        .expect("kubernetes-validate runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `kubectl` (its built-in kustomize): `$TAPEDECK_KUBECTL`, else on `PATH`.
pub fn kubectl() -> PathBuf {
    std::env::var_os("TAPEDECK_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// `kubectl kustomize DIR`: the built documents, or kustomize's error.
pub fn kustomize_build(dir: &Path) -> Result<Vec<Value>, String> {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "kubectl ({}) runs (./x setup installs it): {e}",
                kubectl().display()
            )
        });
    if out.status.success() {
        Ok(parse_yaml(&String::from_utf8_lossy(&out.stdout)))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Every file under `dir`, as relative paths with `/`.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}
