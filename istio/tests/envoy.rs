//! The Envoy side of the `EnvoyFilter`: its patches applied, the way istiod applies them, to a
//! bootstrap shaped like an Istio sidecar's (the `virtualInbound` listener and an outbound
//! `0.0.0.0_8080` listener, each an HTTP connection manager ending in the router; ADS over the
//! `xds-grpc` cluster; the collector's `outbound|9090||…` cluster), then checked by the real
//! `envoy --mode validate`:
//! 1. as istiod sends it: the HTTP filters load the Wasm config over ECDS (`config_discovery`);
//! 2. as the sidecar then runs it: the extension config inline, its remote module replaced by a
//!    local file (what istio-agent does after downloading), with the real `filter.wasm`.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use tapedeck_mesh::names;
use tapedeck_mesh::render::{self, HCM_FILTER, WasmSource};

fn hcm(stat_prefix: &str, route_config: Value) -> Value {
    let mut typed_config = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "http_filters": [
            {"name": "envoy.filters.http.fault", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
            {"name": "envoy.filters.http.cors", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            {"name": render::ROUTER_FILTER, "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ],
    });
    for (key, value) in route_config.as_object().cloned().unwrap_or_default() {
        typed_config[key] = value;
    }
    json!({"name": HCM_FILTER, "typed_config": typed_config})
}

fn eds_cluster(name: &str, http2: bool) -> Value {
    let mut cluster = json!({
        "name": name,
        "type": "EDS",
        "connect_timeout": "10s",
        "eds_cluster_config": {"service_name": name, "eds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"}},
    });
    if http2 {
        cluster["typed_extension_protocol_options"] = json!({"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }});
    }
    cluster
}

/// The sidecar of pod `orders-7d9f8-x2x4q` in namespace `shop`, as far as the patch sees it.
fn istio_like_bootstrap() -> Value {
    json!({
        "node": {
            "id": "sidecar~10.0.0.5~orders-7d9f8-x2x4q.shop~shop.svc.cluster.local",
            "cluster": "orders.shop",
            "metadata": {"WORKLOAD_NAME": "orders", "NAMESPACE": "shop", "NAME": "orders-7d9f8-x2x4q", "ISTIO_VERSION": "1.30.3"},
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
            },
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "virtualInbound",
                    "traffic_direction": "INBOUND",
                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
                    "filter_chains": [{
                        "name": "0.0.0.0_8080",
                        "filter_chain_match": {"destination_port": 8080},
                        "filters": [hcm("inbound_0.0.0.0_8080", json!({"route_config": {
                            "name": "inbound|8080||",
                            "virtual_hosts": [{"name": "inbound|http|8080", "domains": ["*"], "routes": [{
                                "name": "default", "match": {"prefix": "/"}, "route": {"cluster": "inbound|8080||", "timeout": "0s"},
                            }]}],
                        }}))],
                    }],
                },
                {
                    "name": "0.0.0.0_8080",
                    "traffic_direction": "OUTBOUND",
                    "bind_to_port": false,
                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8080}},
                    "filter_chains": [{
                        "filters": [hcm("outbound_0.0.0.0_8080", json!({"rds": {
                            "config_source": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
                            "route_config_name": "8080",
                        }}))],
                    }],
                },
                {
                    "name": "virtualOutbound",
                    "traffic_direction": "OUTBOUND",
                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
                    "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "PassthroughCluster",
                        "cluster": "PassthroughCluster",
                    }}]}],
                },
            ],
            "clusters": [
                {
                    "name": "xds-grpc",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": "./etc/istio/proxy/XDS"}}}}]}]},
                    "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}},
                    }},
                },
                {
                    "name": "inbound|8080||",
                    "type": "STATIC",
                    "connect_timeout": "10s",
                    "load_assignment": {"cluster_name": "inbound|8080||", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.6", "port_value": 8080}}}}]}]},
                },
                eds_cluster(&names::collector_cluster(), true),
                eds_cluster("outbound|8080||payments.shop.svc.cluster.local", false),
                {"name": "PassthroughCluster", "type": "ORIGINAL_DST", "connect_timeout": "10s", "lb_policy": "CLUSTER_PROVIDED"},
            ],
        },
    })
}

/// Applies the EnvoyFilter's `HTTP_FILTER` patches as istiod does: for every listener of the
/// patch's context, every matching network filter, insert before the named HTTP filter.
/// Returns how many times each patch applied.
fn apply_http_filter_patches(bootstrap: &mut Value, envoy_filter: &Value) -> Vec<usize> {
    let mut applied = Vec::new();
    for patch in envoy_filter["spec"]["configPatches"].as_array().unwrap() {
        if patch["applyTo"] != "HTTP_FILTER" {
            continue;
        }
        assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
        let direction = match patch["match"]["context"].as_str().unwrap() {
            "SIDECAR_INBOUND" => "INBOUND",
            "SIDECAR_OUTBOUND" => "OUTBOUND",
            other => panic!("unexpected context {other}"),
        };
        let network = &patch["match"]["listener"]["filterChain"]["filter"];
        let mut count = 0;
        for listener in bootstrap["static_resources"]["listeners"]
            .as_array_mut()
            .unwrap()
        {
            if listener["traffic_direction"] != direction {
                continue;
            }
            for chain in listener["filter_chains"].as_array_mut().unwrap() {
                for filter in chain["filters"].as_array_mut().unwrap() {
                    if filter["name"] != network["name"] {
                        continue;
                    }
                    let http_filters = filter["typed_config"]["http_filters"]
                        .as_array_mut()
                        .unwrap();
                    if let Some(at) = http_filters
                        .iter()
                        .position(|f| f["name"] == network["subFilter"]["name"])
                    {
                        http_filters.insert(at, patch["patch"]["value"].clone());
                        count += 1;
                    }
                }
            }
        }
        applied.push(count);
    }
    applied
}

/// Replaces every ECDS filter named like the extension config by that config, with the remote
/// module swapped for `wasm` (istio-agent's conversion after it downloads the module).
fn inline_extension_config(bootstrap: &mut Value, envoy_filter: &Value, wasm: &Path) {
    let extension = envoy_filter["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["applyTo"] == "EXTENSION_CONFIG")
        .expect("an EXTENSION_CONFIG patch")["patch"]["value"]
        .clone();
    let mut typed_config = extension["typed_config"].clone();
    let code = &mut typed_config["config"]["vm_config"]["code"];
    assert!(code["remote"]["http_uri"]["uri"].is_string());
    *code = json!({"local": {"filename": wasm.display().to_string()}});
    for listener in bootstrap["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap()
    {
        for chain in listener["filter_chains"].as_array_mut().unwrap() {
            for filter in chain["filters"].as_array_mut().unwrap() {
                let http_filters = filter
                    .get_mut("typed_config")
                    .and_then(|c| c.get_mut("http_filters"));
                for http in http_filters
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if http["name"] == extension["name"] {
                        assert!(http["config_discovery"].is_object());
                        *http = json!({"name": extension["name"], "typed_config": typed_config.clone()});
                    }
                }
            }
        }
    }
}

fn envoy_validate(bootstrap: &Value, dir: &Path, name: &str) -> (bool, String) {
    let envoy = support::envoy();
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(bootstrap).unwrap()).unwrap();
    let out = Command::new(envoy)
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&path)
        .output()
        .expect("envoy runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn rendered_envoy_filter(config: &Value) -> Value {
    let wasm = WasmSource {
        url: "oci://registry.example.com/tapedeck/filter:0.1.0".into(),
        sha256: Some("ab".repeat(32)),
    };
    let selector = [("app".to_owned(), "orders".to_owned())]
        .into_iter()
        .collect();
    render::envoy_filter("shop", &selector, &wasm, &config.to_string())
}

#[test]
fn envoy_accepts_the_envoyfilter_as_istiod_sends_it_and_as_the_sidecar_runs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let config = render::plugin_config(
        0.25,
        "a-token-of-the-install",
        "a-key-of-the-install-0123456789abcdef",
    );
    let envoy_filter = rendered_envoy_filter(&config);

    // The bootstrap validates before the patch, so what follows tests the patch.
    let (ok, output) = envoy_validate(&istio_like_bootstrap(), tmp.path(), "plain.json");
    assert!(ok, "the Istio-like bootstrap itself: {output}");

    let mut ecds = istio_like_bootstrap();
    // Inbound: the one HTTP chain of virtualInbound; outbound: 0.0.0.0_8080 (virtualOutbound is
    // TCP only and stays untouched).
    assert_eq!(apply_http_filter_patches(&mut ecds, &envoy_filter), [1, 1]);
    let (ok, output) = envoy_validate(&ecds, tmp.path(), "ecds.json");
    assert!(
        ok,
        "envoy --mode validate refused the patched bootstrap (ECDS):\n{output}"
    );

    let wasm = support::filter_wasm();
    let mut inline = ecds.clone();
    inline_extension_config(&mut inline, &envoy_filter, &wasm);
    let listeners = &inline["static_resources"]["listeners"];
    for index in [0, 1] {
        let http =
            &listeners[index]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"];
        let names: Vec<&str> = http
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "envoy.filters.http.fault",
                "envoy.filters.http.cors",
                names::CAPTURE_PLUGIN,
                render::ROUTER_FILTER
            ]
        );
    }
    let (ok, output) = envoy_validate(&inline, tmp.path(), "inline.json");
    assert!(
        ok,
        "envoy --mode validate refused the inline Wasm filter:\n{output}"
    );
}

#[test]
fn envoy_validate_catches_a_broken_patch() {
    // The check above can fail: a patch naming a Wasm runtime Envoy lacks is refused.
    let tmp = tempfile::tempdir().unwrap();
    let config = render::plugin_config(
        1.0,
        "a-token-of-the-install",
        "a-key-of-the-install-0123456789abcdef",
    );
    let mut envoy_filter = rendered_envoy_filter(&config);
    envoy_filter["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["vm_config"]
        ["runtime"] = json!("envoy.wasm.runtime.nonexistent");
    let mut bootstrap = istio_like_bootstrap();
    apply_http_filter_patches(&mut bootstrap, &envoy_filter);
    let wasm = support::filter_wasm();
    inline_extension_config(&mut bootstrap, &envoy_filter, &wasm);
    let (ok, output) = envoy_validate(&bootstrap, tmp.path(), "broken.json");
    assert!(!ok, "envoy accepted an unknown runtime:\n{output}");
    assert!(
        output.contains("envoy.wasm.runtime.nonexistent"),
        "refused for another reason:\n{output}"
    );
}
