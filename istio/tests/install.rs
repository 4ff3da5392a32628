//! The capture install, checked without a cluster: every manifest (the checked-in kustomize
//! folder as kustomize builds it, and `render capture` in each form) against the real Istio and
//! Kubernetes schemas and `kubernetes-validate`, the filter's own config check on every
//! `pluginConfig`, and the secrets where they must be.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::{Schemas, is_core, kustomize_build, parse_yaml, run_kubernetes_validate};
use tapedeck_filter::config::Config;
use tapedeck_mesh::names::{self, NAMESPACE, REDACTION_SECRET, REDACTION_SECRET_KEY};
use tapedeck_mesh::{
    CaptureArgs, KustomizeArgs, WasmArgs, kustomize, render_capture, write_kustomize,
};

fn manifests_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

fn capture_args() -> CaptureArgs {
    CaptureArgs {
        namespace: "shop".into(),
        selector: vec!["app=orders".into(), "tier=api".into()],
        sample: 0.1,
        wasm: WasmArgs {
            wasm_url: None,
            sha256: None,
            wasm_image: Some("registry.example.com/tapedeck/filter:1.2.3".into()),
        },
        redaction_key_file: None,
        token_file: None,
        envoy_filter: false,
        capture_only: false,
        collector_image: None,
        storage_size: "50Gi".into(),
        storage_class: Some("fast".into()),
        s3_store: None,
    }
}

fn kustomize_args(out: &Path) -> KustomizeArgs {
    KustomizeArgs {
        out: out.to_owned(),
        namespace: None,
        selector: Vec::new(),
        wasm: WasmArgs {
            wasm_url: None,
            sha256: None,
            wasm_image: None,
        },
        collector_image: None,
    }
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| {
        panic!(
            "no {kind} among {:?}",
            docs.iter().map(|d| &d["kind"]).collect::<Vec<_>>()
        )
    })
}

/// The filter's configuration of a WasmPlugin or EnvoyFilter, parsed by the filter's own parser.
fn filter_config(doc: &Value) -> Config {
    let json = match doc["kind"].as_str() {
        Some("WasmPlugin") => doc["spec"]["pluginConfig"].to_string(),
        Some("EnvoyFilter") => {
            let patch = doc["spec"]["configPatches"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["applyTo"] == "EXTENSION_CONFIG"))
                .expect("an EXTENSION_CONFIG patch");
            let config = &patch["patch"]["value"]["typed_config"]["config"];
            // Not FAIL_RELOAD: istio-agent turns a module it cannot fetch into a deny-all
            // filter under any policy but FAIL_OPEN (docs/soak.md, "The choice").
            assert_eq!(config["failure_policy"], "FAIL_OPEN");
            config["configuration"]["value"]
                .as_str()
                .expect("a string")
                .to_owned()
        }
        other => panic!("not a filter: {other:?}"),
    };
    Config::parse(json.as_bytes()).unwrap_or_else(|e| panic!("the filter refuses {json}: {e}"))
}

fn secret_value(doc: &Value, key: &str) -> String {
    if let Some(value) = doc["stringData"][key].as_str() {
        return value.to_owned();
    }
    let encoded = doc["data"][key].as_str().expect("data or stringData");
    let bytes = base64_decode(encoded);
    String::from_utf8(bytes).expect("utf-8")
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
    {
        let value = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

/// The checks every install, however produced, must pass.
fn check_install(docs: &[Value], schemas: &Schemas, tmp: &Path, what: &str) -> (String, String) {
    schemas.assert_valid(docs, what);
    let core: Vec<Value> = docs.iter().filter(|d| is_core(d)).cloned().collect();
    let (ok, output) = run_kubernetes_validate(&core, tmp);
    assert!(ok, "{what}: kubernetes-validate refused:\n{output}");
    // One filter, in one form, failing open, configured with the install's secrets.
    let filters: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "WasmPlugin" || d["kind"] == "EnvoyFilter")
        .collect();
    assert_eq!(filters.len(), 1, "{what}: exactly one filter object");
    let config = filter_config(filters[0]);
    assert_eq!(config.collector.cluster, names::collector_cluster());
    let key = config
        .redaction
        .hash_key
        .clone()
        .expect("a redaction key, never the built-in one");
    let token = config.collector.token.clone().expect("a token");
    let redaction = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == REDACTION_SECRET)
        .expect("the redaction Secret");
    assert_eq!(redaction["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        secret_value(redaction, REDACTION_SECRET_KEY),
        key,
        "{what}: the Secret holds the filter's key"
    );
    let token_secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == names::COLLECTOR_TOKEN_SECRET)
        .expect("the token Secret");
    assert_eq!(
        secret_value(token_secret, names::COLLECTOR_TOKEN_SECRET_KEY),
        token
    );
    // The collector reads the token from that Secret and listens where the Service points.
    let statefulset = find(docs, "StatefulSet");
    let container = &statefulset["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().expect("env");
    assert!(env.contains(&json!({"name": "TAPEDECK_TOKEN", "valueFrom": {"secretKeyRef": {"name": names::COLLECTOR_TOKEN_SECRET, "key": names::COLLECTOR_TOKEN_SECRET_KEY}}})));
    assert!(env.contains(&json!({"name": "TAPEDECK_GRPC_LISTEN", "value": "0.0.0.0:9090"})));
    let service = find(docs, "Service");
    assert_eq!(service["metadata"]["name"], names::COLLECTOR_SERVICE);
    assert_eq!(
        service["spec"]["ports"][0],
        json!({"name": "grpc", "port": 9090, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"})
    );
    assert_eq!(
        service["spec"]["selector"]["app"],
        statefulset["spec"]["template"]["metadata"]["labels"]["app"]
    );
    assert_eq!(
        statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        container["volumeMounts"][0]["name"]
    );
    (key, token)
}

#[test]
fn rendered_wasmplugin_install_validates_and_carries_a_fresh_key() {
    let schemas = Schemas::load();
    let tmp = tempfile::tempdir().unwrap();
    let args = capture_args();
    let docs = parse_yaml(&render_capture(&args).unwrap());
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "ServiceAccount",
            "Secret",
            "Secret",
            "Service",
            "StatefulSet",
            "WasmPlugin"
        ]
    );
    let (key, token) = check_install(&docs, &schemas, tmp.path(), "render capture");
    assert_eq!(key.len(), 64, "32 random bytes as hex");
    assert_ne!(key, token);

    let plugin = find(&docs, "WasmPlugin");
    assert_eq!(plugin["metadata"]["namespace"], "shop");
    let spec = &plugin["spec"];
    assert_eq!(
        spec["selector"]["matchLabels"],
        json!({"app": "orders", "tier": "api"})
    );
    assert_eq!(
        spec["url"],
        "oci://registry.example.com/tapedeck/filter:1.2.3"
    );
    // FAIL_OPEN, not FAIL_RELOAD: in Istio the strategy also decides what a failed module fetch
    // does, and only FAIL_OPEN lets traffic pass then (docs/soak.md, "The choice").
    assert_eq!(
        (&spec["failStrategy"], &spec["type"], &spec["phase"]),
        (&json!("FAIL_OPEN"), &json!("HTTP"), &json!("STATS"))
    );
    assert_eq!(spec["match"], json!([{"mode": "CLIENT_AND_SERVER"}]));
    assert_eq!(spec["pluginConfig"]["sampling"]["rate"], 0.1);
    let claim = &find(&docs, "StatefulSet")["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(claim["resources"]["requests"]["storage"], "50Gi");
    assert_eq!(claim["storageClassName"], "fast");

    // Every install gets its own key.
    let again = parse_yaml(&render_capture(&args).unwrap());
    let (key_again, _) = check_install(&again, &schemas, tmp.path(), "second render");
    assert_ne!(key, key_again);
}

#[test]
fn rendered_envoyfilter_install_with_s3_and_given_secrets_validates() {
    let schemas = Schemas::load();
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("key");
    let token_file = tmp.path().join("token");
    // A key that looks like a number to YAML must stay a string.
    std::fs::write(&key_file, "1234567890123456789012345678901234e5\n").unwrap();
    std::fs::write(&token_file, "t0ken-t0ken-t0ken-t0ken-t0ken-t0ken").unwrap();
    let mut args = capture_args();
    args.envoy_filter = true;
    args.redaction_key_file = Some(key_file.clone());
    args.token_file = Some(token_file.clone());
    args.s3_store = Some("s3://captures/prod".into());
    args.wasm = WasmArgs {
        wasm_url: Some("https://example.com/filter.wasm".into()),
        sha256: Some("AB".repeat(32)),
        wasm_image: None,
    };
    let docs = parse_yaml(&render_capture(&args).unwrap());
    let (key, token) = check_install(&docs, &schemas, tmp.path(), "render capture --envoy-filter");
    assert_eq!(key, "1234567890123456789012345678901234e5");
    assert_eq!(token, "t0ken-t0ken-t0ken-t0ken-t0ken-t0ken");
    let filter = find(&docs, "EnvoyFilter");
    assert_eq!(
        filter["spec"]["workloadSelector"]["labels"],
        json!({"app": "orders", "tier": "api"})
    );
    let patches = filter["spec"]["configPatches"].as_array().unwrap();
    let contexts: Vec<&Value> = patches.iter().map(|p| &p["match"]["context"]).collect();
    assert_eq!(
        contexts,
        [
            &Value::Null,
            &json!("SIDECAR_INBOUND"),
            &json!("SIDECAR_OUTBOUND")
        ]
    );
    let code =
        &patches[0]["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"]["remote"];
    assert_eq!(code["http_uri"]["uri"], "https://example.com/filter.wasm");
    assert_eq!(code["sha256"], "ab".repeat(32));
    let container = &find(&docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0];
    assert!(
        container["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "TAPEDECK_STORE", "value": "s3://captures/prod"}))
    );
    assert_eq!(
        container["envFrom"],
        json!([{"secretRef": {"name": "tapedeck-s3"}}])
    );

    // --capture-only: the filter alone, for a further namespace of the same install.
    args.capture_only = true;
    args.envoy_filter = false;
    let only = parse_yaml(&render_capture(&args).unwrap());
    assert_eq!(only.len(), 1);
    schemas.assert_valid(&only, "--capture-only");
    assert_eq!(
        filter_config(&only[0]).redaction.hash_key.as_deref(),
        Some(key.as_str())
    );
}

type Change<'a> = Box<dyn Fn(&mut CaptureArgs) + 'a>;

#[test]
fn bad_flags_are_refused_with_the_flag_named() {
    let tmp = tempfile::tempdir().unwrap();
    let short = tmp.path().join("short");
    std::fs::write(&short, "too-short").unwrap();
    let spaced = tmp.path().join("spaced");
    std::fs::write(&spaced, "a key with spaces that is long enough to pass").unwrap();
    let cases: Vec<(Change<'_>, &str)> = vec![
        (
            Box::new(|a| a.sample = 1.5),
            "--sample: must be within [0, 1], got 1.5",
        ),
        (
            Box::new(|a| a.selector = vec!["app".into()]),
            "--selector: expected key=value",
        ),
        (
            Box::new(|a| a.redaction_key_file = Some(short.clone())),
            "at least 32 characters",
        ),
        (
            Box::new(|a| a.redaction_key_file = Some(spaced.clone())),
            "' ' is not allowed",
        ),
        (
            Box::new(|a| a.wasm.sha256 = Some("xyz".into())),
            "--sha256: expected 64 hex digits",
        ),
        (
            Box::new(|a| a.s3_store = Some("gs://b".into())),
            "--s3-store: expected s3://",
        ),
        (
            Box::new(|a| {
                a.wasm.wasm_image = None;
                a.wasm.wasm_url = Some("ftp://x/f.wasm".into());
            }),
            "--wasm-url: expected an http(s):// or file:// URL",
        ),
    ];
    for (change, expected) in cases {
        let mut args = capture_args();
        change(&mut args);
        let error = render_capture(&args).expect_err(expected).to_string();
        assert!(
            error.contains(expected),
            "{error:?} should contain {expected:?}"
        );
    }
}

#[test]
fn the_checked_in_folder_is_what_render_kustomize_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let written = write_kustomize(&kustomize_args(tmp.path())).unwrap();
    if std::env::var_os("TAPEDECK_BLESS").is_some() {
        write_kustomize(&kustomize_args(&manifests_dir())).unwrap();
    }
    let checked_in = support::files_under(&manifests_dir());
    assert_eq!(
        checked_in, written,
        "istio/manifests/ has other files than render kustomize writes (TAPEDECK_BLESS=1 rewrites it)"
    );
    for file in &written {
        let expected = std::fs::read_to_string(tmp.path().join(file)).unwrap();
        let actual = std::fs::read_to_string(manifests_dir().join(file)).unwrap();
        assert_eq!(
            actual, expected,
            "istio/manifests/{file} differs from `tapedeck mesh render kustomize` (TAPEDECK_BLESS=1 rewrites it)"
        );
    }
}

/// Every file a kustomization names (resources, patches, generator inputs outside secrets/).
fn referenced(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let text = std::fs::read_to_string(dir.join(prefix).join("kustomization.yaml")).unwrap();
    let k: Value = serde_yaml::from_str(&text).unwrap();
    out.push(format!("{prefix}kustomization.yaml"));
    for resource in k["resources"].as_array().into_iter().flatten() {
        out.push(format!("{prefix}{}", resource.as_str().unwrap()));
    }
    for patch in k["patches"].as_array().into_iter().flatten() {
        if let Some(path) = patch["path"].as_str() {
            out.push(format!("{prefix}{path}"));
        }
    }
    for component in k["components"].as_array().into_iter().flatten() {
        referenced(
            dir,
            &format!("{prefix}{}/", component.as_str().unwrap()),
            out,
        );
    }
}

#[test]
fn the_kustomization_lists_every_file_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    support::copy_dir(&manifests_dir(), tmp.path());
    // The components are opt-in; list them as a user enabling both would.
    enable_components(tmp.path(), &["components/envoyfilter", "components/s3"]);
    let mut listed = Vec::new();
    referenced(tmp.path(), "", &mut listed);
    listed.sort();
    let present = support::files_under(tmp.path());
    assert_eq!(listed, present);
    for file in &present {
        assert!(
            !file.starts_with("secrets/"),
            "no secret is checked in: {file}"
        );
    }
}

fn enable_components(dir: &Path, components: &[&str]) {
    let path = dir.join("kustomization.yaml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("components:\n");
    for c in components {
        text.push_str(&format!("- {c}\n"));
    }
    std::fs::write(path, text).unwrap();
}

fn write_secrets(dir: &Path, key: &str, token: &str) {
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/hash-key"), key).unwrap();
    std::fs::write(dir.join("secrets/token"), token).unwrap();
}

#[test]
fn kustomize_builds_the_folder_into_a_valid_install_with_the_users_secrets() {
    let schemas = Schemas::load();
    let key = "4242424242424242424242424242424242424242424242424242424242424e42";
    let token = "f00df00df00df00df00df00df00df00df00df00df00df00df00df00df00df00d";
    for components in [
        &[][..],
        &["components/envoyfilter"],
        &["components/s3"],
        &["components/envoyfilter", "components/s3"],
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("manifests");
        support::copy_dir(&manifests_dir(), &dir);
        // Without the secret files nothing builds: the folder never installs a known key.
        let error = kustomize_build(&dir).expect_err("no secrets, no build");
        assert!(
            error.contains("secrets/hash-key") || error.contains("secrets/token"),
            "{error}"
        );
        write_secrets(&dir, key, token);
        if !components.is_empty() {
            enable_components(&dir, components);
        }
        let docs =
            kustomize_build(&dir).unwrap_or_else(|e| panic!("kustomize {components:?}: {e}"));
        assert!(
            docs.iter().all(|d| d["kind"] != "ConfigMap"),
            "the values ConfigMap stays local"
        );
        let (built_key, built_token) = check_install(
            &docs,
            &schemas,
            tmp.path(),
            &format!("kustomize {components:?}"),
        );
        assert_eq!((built_key.as_str(), built_token.as_str()), (key, token));
        let envoy_filter = components.contains(&"components/envoyfilter");
        assert_eq!(
            docs.iter().any(|d| d["kind"] == "EnvoyFilter"),
            envoy_filter
        );
        let container = &find(&docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0];
        let s3 = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "TAPEDECK_STORE");
        assert_eq!(s3, components.contains(&"components/s3"));
    }
}

#[test]
fn the_checked_in_filter_files_alone_load_no_filter() {
    // Applied without kustomize, the placeholders make the filter refuse its config (it then
    // fails open and captures nothing) instead of hashing with a key everyone can read.
    for file in [
        "capture-wasmplugin.yaml",
        "components/envoyfilter/capture-envoyfilter.yaml",
    ] {
        let docs = parse_yaml(&std::fs::read_to_string(manifests_dir().join(file)).unwrap());
        let doc = &docs[0];
        let json = if doc["kind"] == "WasmPlugin" {
            doc["spec"]["pluginConfig"].to_string()
        } else {
            doc["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["configuration"]["value"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert!(json.contains(kustomize::PLACEHOLDER));
        let error = Config::parse(json.as_bytes()).expect_err(file);
        assert!(error.to_string().contains("version"), "{file}: {error}");
    }
}

#[test]
fn kubernetes_validate_refuses_a_broken_manifest() {
    // The tool the install is checked with does catch mistakes.
    let tmp = tempfile::tempdir().unwrap();
    let docs = parse_yaml(&render_capture(&capture_args()).unwrap());
    let mut statefulset = find(&docs, "StatefulSet").clone();
    statefulset["spec"]["replicas"] = json!("1");
    statefulset["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("x");
    let (ok, output) = run_kubernetes_validate(&[statefulset.clone()], tmp.path());
    assert!(!ok, "{output}");
    let schemas = Schemas::load();
    assert_eq!(
        schemas.errors(&statefulset).len(),
        2,
        "{:?}",
        schemas.errors(&statefulset)
    );
    let mut plugin = find(&docs, "WasmPlugin").clone();
    plugin["spec"]["failStrategy"] = json!("FAIL_OPENLY");
    assert_eq!(schemas.errors(&plugin).len(), 1);
}
