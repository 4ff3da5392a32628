//! The Envoy v3 bootstrap that local mode runs: an inbound listener in front of the app, an
//! optional outbound listener in front of its dependencies, the collector cluster, and the
//! tapedeck Wasm filter on both listeners (or no filter, for a baseline in benchmarks).
//!
//! The bootstrap is rendered as JSON, which Envoy reads as YAML too.

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The name and stat prefix of the inbound listener.
pub const INBOUND_LISTENER: &str = "inbound";
/// The name and stat prefix of the outbound listener.
pub const OUTBOUND_LISTENER: &str = "outbound";
/// The cluster that reaches the collector's gRPC port (the filter config names it).
pub const COLLECTOR_CLUSTER: &str = "tapedeck_collector";
/// The default name of the cluster that reaches the app behind the inbound listener.
pub const DEFAULT_APP_CLUSTER: &str = "inbound_app";
/// The name of the inbound listener's route (`xds.route_name` in captured exchanges).
pub const INBOUND_ROUTE: &str = "inbound_default";
/// The `root_id` and `vm_id` of the tapedeck plugin.
pub const PLUGIN_ROOT_ID: &str = "tapedeck";
/// The Wasm runtime the filter runs in.
pub const WASM_RUNTIME: &str = "envoy.wasm.runtime.v8";

/// Who the proxy speaks for: Istio's `WORKLOAD_NAME`, `NAMESPACE` and `NAME` node metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `WORKLOAD_NAME`.
    pub name: String,
    /// `NAMESPACE`.
    pub namespace: String,
    /// `NAME` (the pod).
    pub pod: String,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            name: "sample".into(),
            namespace: "default".into(),
            pod: "sample-0".into(),
        }
    }
}

/// One dependency behind the outbound listener: a cluster with one endpoint, reached by
/// requests whose authority matches (or by every request when no authority is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRoute {
    /// The cluster name (`upstream_cluster` of captured outbound exchanges).
    pub cluster: String,
    /// Where the dependency listens.
    pub address: SocketAddr,
    /// The `Host` / `:authority` this route matches (with any port); `None` matches all.
    pub authority: Option<String>,
}

impl OutboundRoute {
    /// A route that takes every request on the outbound listener to `address`.
    pub fn new(cluster: impl Into<String>, address: SocketAddr) -> Self {
        Self {
            cluster: cluster.into(),
            address,
            authority: None,
        }
    }

    /// Only requests for `authority` take this route, so several dependencies share one port.
    pub fn with_authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = Some(authority.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    wasm: PathBuf,
    config: Value,
}

/// Envoy's native tap filter, the peer the capture benchmark measures the filter against.
#[derive(Debug, Clone, PartialEq)]
struct Tap {
    path_prefix: PathBuf,
    max_body_bytes: usize,
}

/// Builds the bootstrap of a local sidecar. Every address is on loopback; ports may be 0.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvoyBootstrap {
    node_id: String,
    workload: Workload,
    inbound_port: u16,
    app: SocketAddr,
    app_cluster: String,
    outbound_port: u16,
    outbound: Vec<OutboundRoute>,
    collector: SocketAddr,
    filter: Option<Filter>,
    tap: Option<Tap>,
    route_timeout: Duration,
    stream_idle_timeout: Duration,
}

impl EnvoyBootstrap {
    /// A sidecar for the app at `app` that sends captures to the collector at `collector`.
    pub fn new(app: SocketAddr, collector: SocketAddr) -> Self {
        Self {
            node_id: "tapedeck-local".into(),
            workload: Workload::default(),
            inbound_port: 0,
            app,
            app_cluster: DEFAULT_APP_CLUSTER.into(),
            outbound_port: 0,
            outbound: Vec::new(),
            collector,
            filter: None,
            tap: None,
            route_timeout: Duration::from_secs(60),
            stream_idle_timeout: Duration::from_secs(30),
        }
    }

    /// Sets the node id.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = id.into();
        self
    }

    /// Sets the workload identity given as node metadata.
    pub fn workload(mut self, workload: Workload) -> Self {
        self.workload = workload;
        self
    }

    /// Sets the inbound listener's port (0 picks a free one).
    pub fn inbound_port(mut self, port: u16) -> Self {
        self.inbound_port = port;
        self
    }

    /// Names the cluster that reaches the app.
    pub fn app_cluster(mut self, name: impl Into<String>) -> Self {
        self.app_cluster = name.into();
        self
    }

    /// Sets the outbound listener's port (0 picks a free one).
    pub fn outbound_port(mut self, port: u16) -> Self {
        self.outbound_port = port;
        self
    }

    /// Adds a dependency behind the outbound listener; the first one creates the listener.
    pub fn outbound_route(mut self, route: OutboundRoute) -> Self {
        self.outbound.push(route);
        self
    }

    /// Adds the tapedeck filter, loaded from `wasm`, with its plugin configuration.
    pub fn filter(mut self, wasm: impl Into<PathBuf>, config: Value) -> Self {
        self.filter = Some(Filter {
            wasm: wasm.into(),
            config,
        });
        self
    }

    /// Adds Envoy's native tap filter (`envoy.filters.http.tap`) on every listener, tapping
    /// every exchange (`any_match`) with bodies buffered up to `max_body_bytes` each way, one
    /// `PROTO_BINARY_LENGTH_DELIMITED` file per tap whose name starts with `path_prefix`.
    /// The benchmark's peer for `filter.wasm`; it counts taps as `<listener>.tap.rq_tapped`.
    pub fn tap(mut self, path_prefix: impl Into<PathBuf>, max_body_bytes: usize) -> Self {
        self.tap = Some(Tap {
            path_prefix: path_prefix.into(),
            max_body_bytes,
        });
        self
    }

    /// Sets the per-route timeout (whole request and response).
    pub fn route_timeout(mut self, timeout: Duration) -> Self {
        self.route_timeout = timeout;
        self
    }

    /// Renders the bootstrap as a JSON document (which Envoy also reads as YAML).
    pub fn render(&self) -> String {
        // Serializing a `Value` cannot fail.
        serde_json::to_string_pretty(&self.to_value()).unwrap_or_default()
    }

    /// The bootstrap as a JSON value.
    pub fn to_value(&self) -> Value {
        let mut listeners = vec![self.listener(
            INBOUND_LISTENER,
            "INBOUND",
            self.inbound_port,
            vec![json!({
                "name": INBOUND_LISTENER,
                "domains": ["*"],
                "routes": [self.route(INBOUND_ROUTE, &self.app_cluster)],
            })],
        )];
        let mut clusters = vec![upstream_cluster(&self.app_cluster, self.app)];
        if !self.outbound.is_empty() {
            let hosts = self
                .outbound
                .iter()
                .map(|route| {
                    let domains = match &route.authority {
                        Some(authority) => json!([authority, format!("{authority}:*")]),
                        None => json!(["*"]),
                    };
                    json!({
                        "name": route.cluster,
                        "domains": domains,
                        "routes": [self.route(&route.cluster, &route.cluster)],
                    })
                })
                .collect();
            listeners.push(self.listener(OUTBOUND_LISTENER, "OUTBOUND", self.outbound_port, hosts));
            clusters.extend(
                self.outbound
                    .iter()
                    .map(|route| upstream_cluster(&route.cluster, route.address)),
            );
        }
        clusters.push(collector_cluster(self.collector));
        json!({
            "node": {
                "id": self.node_id,
                "cluster": self.workload.name,
                "metadata": {
                    "WORKLOAD_NAME": self.workload.name,
                    "NAMESPACE": self.workload.namespace,
                    "NAME": self.workload.pod,
                },
            },
            "admin": {"address": socket_address("127.0.0.1", 0)},
            "static_resources": {"listeners": listeners, "clusters": clusters},
        })
    }

    fn route(&self, name: &str, cluster: &str) -> Value {
        json!({
            "name": name,
            "match": {"prefix": "/"},
            "route": {"cluster": cluster, "timeout": seconds(self.route_timeout)},
        })
    }

    fn listener(&self, name: &str, direction: &str, port: u16, virtual_hosts: Vec<Value>) -> Value {
        let mut http_filters = Vec::new();
        if let Some(filter) = &self.filter {
            http_filters.push(wasm_filter(filter));
        }
        if let Some(tap) = &self.tap {
            http_filters.push(tap_filter(tap));
        }
        http_filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }));
        json!({
            "name": name,
            "traffic_direction": direction,
            "address": socket_address("127.0.0.1", port),
            "filter_chains": [{
                "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": name,
                        "codec_type": "AUTO",
                        "stream_idle_timeout": seconds(self.stream_idle_timeout),
                        "request_timeout": seconds(self.route_timeout),
                        // Keep the caller's `x-request-id`: it is the trace id when no `traceparent` comes.
                        "preserve_external_request_id": true,
                        "route_config": {"name": name, "virtual_hosts": virtual_hosts},
                        "http_filters": http_filters,
                    },
                }],
            }],
        })
    }
}

fn wasm_filter(filter: &Filter) -> Value {
    wasm_filter_named(
        "envoy.filters.http.wasm",
        PLUGIN_ROOT_ID,
        &filter.wasm,
        &filter.config,
    )
}

/// The tapedeck Wasm filter as an HTTP filter named `name`, in the VM `vm_id`, with `config`.
pub(crate) fn wasm_filter_named(
    name: &str,
    vm_id: &str,
    wasm: &std::path::Path,
    config: &Value,
) -> Value {
    json!({
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": PLUGIN_ROOT_ID,
                "root_id": PLUGIN_ROOT_ID,
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": WASM_RUNTIME,
                    "code": {"local": {"filename": wasm.display().to_string()}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": config.to_string(),
                },
                // A VM that dies (the proxy-wasm SDK panics on an unexpected host status) is
                // replaced after 50 ms instead of passing traffic uncaptured until Envoy restarts;
                // only the requests within those 50 ms fail (docs/soak.md has the figures).
                "failure_policy": "FAIL_RELOAD",
                "reload_config": {"backoff": {"base_interval": "0.05s", "max_interval": "1s"}},
            },
        },
    })
}

fn tap_filter(tap: &Tap) -> Value {
    json!({
        "name": "envoy.filters.http.tap",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.tap.v3.Tap",
            "common_config": {"static_config": {
                "match": {"any_match": true},
                "output_config": {
                    "sinks": [{
                        "format": "PROTO_BINARY_LENGTH_DELIMITED",
                        "file_per_tap": {"path_prefix": tap.path_prefix.display().to_string()},
                    }],
                    "max_buffered_rx_bytes": tap.max_body_bytes,
                    "max_buffered_tx_bytes": tap.max_body_bytes,
                },
            }},
        },
    })
}

/// An app or dependency cluster: speaks whatever the caller spoke (h2 stays h2, for gRPC).
pub(crate) fn upstream_cluster(name: &str, address: SocketAddr) -> Value {
    static_cluster(
        name,
        address,
        json!({"use_downstream_protocol_config": {"http_protocol_options": {}, "http2_protocol_options": {}}}),
    )
}

/// The collector cluster: gRPC, so HTTP/2 always.
pub(crate) fn collector_cluster(address: SocketAddr) -> Value {
    static_cluster(
        COLLECTOR_CLUSTER,
        address,
        json!({"explicit_http_config": {"http2_protocol_options": {}}}),
    )
}

fn static_cluster(name: &str, address: SocketAddr, mut protocol: Value) -> Value {
    protocol["@type"] =
        json!("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions");
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": socket_address(&address.ip().to_string(), address.port()),
            }}]}],
        },
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": protocol},
    })
}

pub(crate) fn socket_address(address: &str, port: u16) -> Value {
    json!({"socket_address": {"address": address, "port_value": port}})
}

pub(crate) fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn without_a_filter_only_the_router_runs() {
        let value = EnvoyBootstrap::new(addr(8080), addr(9090)).to_value();
        let listeners = value["static_resources"]["listeners"].as_array().unwrap();
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0]["traffic_direction"], "INBOUND");
        let hcm = &listeners[0]["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(hcm["http_filters"].as_array().unwrap().len(), 1);
        assert_eq!(hcm["http_filters"][0]["name"], "envoy.filters.http.router");
        let clusters = value["static_resources"]["clusters"].as_array().unwrap();
        let names: Vec<_> = clusters
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [DEFAULT_APP_CLUSTER, COLLECTOR_CLUSTER]);
    }

    #[test]
    fn the_filter_runs_before_the_router_on_both_listeners() {
        let value = EnvoyBootstrap::new(addr(8080), addr(9090))
            .filter("/x/filter.wasm", json!({"version": 1}))
            .outbound_route(
                OutboundRoute::new("payments", addr(7070)).with_authority("payments.local"),
            )
            .outbound_route(OutboundRoute::new("rest", addr(7071)))
            .to_value();
        let listeners = value["static_resources"]["listeners"].as_array().unwrap();
        assert_eq!(listeners[1]["traffic_direction"], "OUTBOUND");
        for listener in listeners {
            let filters =
                listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
                    .as_array()
                    .unwrap();
            let config = &filters[0]["typed_config"]["config"];
            assert_eq!(config["configuration"]["value"], r#"{"version":1}"#);
            assert_eq!(config["failure_policy"], "FAIL_RELOAD");
            assert_eq!(filters[1]["name"], "envoy.filters.http.router");
        }
        let hosts = &listeners[1]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
            ["virtual_hosts"];
        assert_eq!(
            hosts[0]["domains"],
            json!(["payments.local", "payments.local:*"])
        );
        assert_eq!(hosts[1]["domains"], json!(["*"]));
    }

    #[test]
    fn the_native_tap_taps_everything_into_files_before_the_router() {
        let value = EnvoyBootstrap::new(addr(8080), addr(9090))
            .tap("/dev/shm/taps/t", 4096)
            .to_value();
        let filters = &value["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"];
        assert_eq!(filters[0]["name"], "envoy.filters.http.tap");
        assert_eq!(filters[1]["name"], "envoy.filters.http.router");
        let config = &filters[0]["typed_config"]["common_config"]["static_config"];
        assert_eq!(config["match"], json!({"any_match": true}));
        let output = &config["output_config"];
        assert_eq!(
            output["sinks"][0]["format"],
            "PROTO_BINARY_LENGTH_DELIMITED"
        );
        assert_eq!(
            output["sinks"][0]["file_per_tap"]["path_prefix"],
            "/dev/shm/taps/t"
        );
        assert_eq!(
            (
                &output["max_buffered_rx_bytes"],
                &output["max_buffered_tx_bytes"]
            ),
            (&json!(4096), &json!(4096))
        );
    }
}
