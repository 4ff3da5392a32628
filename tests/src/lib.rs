//! Helpers for the end-to-end tests: a [`Rig`] is the sample service (and, when asked, a
//! second one as its `payments` dependency), the in-memory capture sink, and the real Envoy
//! running the built `filter.wasm` in front of them, all on loopback with OS-chosen ports.
//!
//! Envoy and `filter.wasm` are found by [`tapedeck_local::find_envoy`] and
//! [`tapedeck_local::find_filter_wasm`]; when either is missing, starting a rig fails (tests fail,
//! they do not skip).

pub mod ports;
pub mod soak;

use anyhow::{Context as _, Result, ensure};
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tapedeck_local::sample::{self, ClientBody, Dependency, SampleConfig};
use tapedeck_local::sink::{self, ReceivedRx};
use tapedeck_local::{Envoy, EnvoyBootstrap, EnvoyOptions, OutboundRoute, SinkMode, Workload};
use tapedeck_proto::{Direction, Exchange, Header, Message};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

/// The workload the rig's Envoy speaks for (node metadata `WORKLOAD_NAME`).
pub const WORKLOAD: &str = "orders";
/// Node metadata `NAMESPACE`.
pub const NAMESPACE: &str = "shop";
/// Node metadata `NAME`.
pub const POD: &str = "orders-7d9f8b6c5-x2k4p";
/// The authority the sample sends its dependency calls with.
pub const DEPENDENCY_AUTHORITY: &str = "payments.shop.svc";
/// The outbound cluster of the dependency.
pub const DEPENDENCY_CLUSTER: &str = "outbound_payments";
/// The default wait for captures and stats.
pub const WAIT: Duration = Duration::from_secs(20);
/// The time limit of one request through the rig.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The plugin configuration tests start from: the rig's collector cluster and a short flush
/// interval, so captures arrive quickly.
pub fn base_plugin_config() -> Value {
    json!({
        "version": 1,
        "collector": {"cluster": tapedeck_local::envoy::COLLECTOR_CLUSTER, "timeout_ms": 5000},
        "queue": {"flush_interval_ms": 50},
    })
}

/// [`base_plugin_config`] with `overrides` merged in (objects merge key by key, anything else
/// replaces).
pub fn plugin_config(overrides: Value) -> Value {
    let mut config = base_plugin_config();
    merge(&mut config, overrides);
    config
}

/// Merges `overrides` into `base`.
pub fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, overrides) => *base = overrides,
    }
}

/// What listens on the collector address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collector {
    /// The in-memory sink, in this mode.
    Sink(SinkMode),
    /// Nothing: the port was free when Envoy started.
    Down,
    /// A collector the test started itself, at this gRPC address.
    At(SocketAddr),
}

/// Configures and starts a [`Rig`].
#[derive(Debug, Clone)]
pub struct RigBuilder {
    plugin: Value,
    collector: Collector,
    outbound: bool,
    filter: bool,
    wasm: Option<std::path::PathBuf>,
    wasm_config: Option<Value>,
    options: EnvoyOptions,
}

impl Default for RigBuilder {
    fn default() -> Self {
        Self {
            plugin: base_plugin_config(),
            collector: Collector::Sink(SinkMode::Accept),
            outbound: false,
            filter: true,
            wasm: None,
            wasm_config: None,
            options: EnvoyOptions::default(),
        }
    }
}

impl RigBuilder {
    /// A rig with the filter, the base plugin config and an accepting sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges `overrides` into the plugin config.
    pub fn plugin(mut self, overrides: Value) -> Self {
        merge(&mut self.plugin, overrides);
        self
    }

    /// Replaces the plugin config whole.
    pub fn raw_plugin(mut self, config: Value) -> Self {
        self.plugin = config;
        self
    }

    /// Sets what listens on the collector address.
    pub fn collector(mut self, collector: Collector) -> Self {
        self.collector = collector;
        self
    }

    /// Adds the outbound listener and a `payments` dependency behind it.
    pub fn outbound(mut self) -> Self {
        self.outbound = true;
        self
    }

    /// Runs Envoy without the filter.
    pub fn without_filter(mut self) -> Self {
        self.filter = false;
        self
    }

    /// Loads the filter from `wasm` instead of the built `filter.wasm`.
    pub fn wasm(mut self, wasm: impl Into<std::path::PathBuf>) -> Self {
        self.wasm = Some(wasm.into());
        self
    }

    /// Merges `overrides` into every Wasm filter's `PluginConfig` (for example
    /// `{"failure_policy": "FAIL_CLOSED"}` or a `reload_config`), over the bootstrap's own.
    pub fn wasm_config(mut self, overrides: Value) -> Self {
        self.wasm_config = Some(overrides);
        self
    }

    /// Sets Envoy's worker count.
    pub fn concurrency(mut self, workers: usize) -> Self {
        self.options.concurrency = workers;
        self
    }

    /// The bootstrap this rig would run, for apps, dependency and collector at these addresses.
    pub fn bootstrap(
        &self,
        app: SocketAddr,
        dependency: Option<SocketAddr>,
        collector: SocketAddr,
    ) -> Result<String> {
        let mut bootstrap = EnvoyBootstrap::new(app, collector)
            .node_id(format!("sidecar~127.0.0.1~{POD}.{NAMESPACE}"))
            .workload(Workload {
                name: WORKLOAD.into(),
                namespace: NAMESPACE.into(),
                pod: POD.into(),
            });
        if let Some(dependency) = dependency {
            bootstrap = bootstrap.outbound_route(
                OutboundRoute::new(DEPENDENCY_CLUSTER, dependency)
                    .with_authority(DEPENDENCY_AUTHORITY),
            );
        }
        if self.filter {
            let wasm = match &self.wasm {
                Some(wasm) => wasm.clone(),
                None => tapedeck_local::find_filter_wasm()?,
            };
            bootstrap = bootstrap.filter(wasm, self.plugin.clone());
        }
        let Some(overrides) = &self.wasm_config else {
            return Ok(bootstrap.render());
        };
        let mut value = bootstrap.to_value();
        merge_wasm_config(&mut value, overrides);
        Ok(serde_json::to_string_pretty(&value)?)
    }

    /// Starts the sink, the sample service (and its dependency), then Envoy.
    pub async fn start(self) -> Result<Rig> {
        let envoy_binary = tapedeck_local::find_envoy()?;
        let (stop, stopped) = watch::channel(());
        let shutdown = move || {
            let mut stopped = stopped.clone();
            async move {
                // Resolves when the rig (the sender) is dropped.
                let _ = stopped.changed().await;
            }
        };

        let collector_listener = bind().await?;
        let mut collector = collector_listener
            .local_addr()
            .context("reading the collector address")?;
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        match self.collector {
            Collector::At(address) => {
                drop((collector_listener, tx));
                collector = address;
            }
            Collector::Sink(mode) => {
                tokio::spawn(log_failure(
                    "sink",
                    sink::serve(collector_listener, mode, tx, shutdown()),
                ));
            }
            // Nothing listens there once the listener is closed.
            Collector::Down => drop((collector_listener, tx)),
        }

        let dependency = if self.outbound {
            let listener = bind().await?;
            let address = listener
                .local_addr()
                .context("reading the dependency address")?;
            tokio::spawn(log_failure(
                "dependency",
                sample::serve(listener, SampleConfig::default(), shutdown()),
            ));
            Some(address)
        } else {
            None
        };

        // The app's port goes into the bootstrap, but the app learns the outbound listener's
        // port only from the running Envoy: bind now, serve once Envoy is up.
        let app_listener = bind().await?;
        let app = app_listener
            .local_addr()
            .context("reading the app address")?;
        let bootstrap = self.bootstrap(app, dependency, collector)?;
        let envoy = Envoy::start(&envoy_binary, &bootstrap, self.options.clone()).await?;
        let config = SampleConfig {
            dependency: envoy.outbound_addr().map(|outbound| Dependency {
                base_url: format!("http://{outbound}"),
                authority: Some(DEPENDENCY_AUTHORITY.into()),
            }),
        };
        tokio::spawn(log_failure(
            "app",
            sample::serve(app_listener, config, shutdown()),
        ));

        Ok(Rig {
            envoy,
            received,
            app,
            dependency,
            collector,
            bootstrap,
            http1: Client::builder(TokioExecutor::new()).build_http(),
            http2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
            _stop: stop,
        })
    }
}

/// Merges `overrides` into every Wasm `PluginConfig` (an object with a `vm_config`) in `value`.
fn merge_wasm_config(value: &mut Value, overrides: &Value) {
    match value {
        Value::Object(map) if map.contains_key("vm_config") => {
            merge(value, overrides.clone());
        }
        Value::Object(map) => map
            .values_mut()
            .for_each(|field| merge_wasm_config(field, overrides)),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| merge_wasm_config(item, overrides)),
        _ => {}
    }
}

async fn bind() -> Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback port")
}

async fn log_failure(what: &'static str, task: impl Future<Output = Result<()>>) {
    if let Err(error) = task.await {
        eprintln!("rig {what} failed: {error:#}");
    }
}

/// A running rig. Dropping it stops Envoy and the servers.
#[derive(Debug)]
pub struct Rig {
    /// The sidecar.
    pub envoy: Envoy,
    /// What the sink accepted.
    pub received: ReceivedRx,
    /// The sample service's own address.
    pub app: SocketAddr,
    /// The dependency's own address, with [`RigBuilder::outbound`].
    pub dependency: Option<SocketAddr>,
    /// The collector address.
    pub collector: SocketAddr,
    /// The bootstrap Envoy runs.
    pub bootstrap: String,
    http1: Client<HttpConnector, ClientBody>,
    http2: Client<HttpConnector, ClientBody>,
    _stop: watch::Sender<()>,
}

/// A response read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The response body.
    pub body: Bytes,
    /// From sending the request to the end of the body.
    pub elapsed: Duration,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("the body is not JSON: {:?}", self.body))
    }
}

impl Rig {
    /// Starts a rig with the defaults.
    pub async fn start() -> Result<Rig> {
        RigBuilder::new().start().await
    }

    /// The inbound listener's URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.envoy.inbound_addr())
    }

    /// The inbound authority (`Host`) clients send.
    pub fn authority(&self) -> String {
        self.envoy.inbound_addr().to_string()
    }

    /// A request builder for `path` on the inbound listener.
    pub fn request(&self, method: &str, path: &str) -> http::request::Builder {
        Request::builder().method(method).uri(self.url(path))
    }

    /// Sends a request over HTTP/1.1 and reads the whole response.
    pub async fn send(&self, request: Request<ClientBody>) -> Result<Reply> {
        send(&self.http1, request).await
    }

    /// Sends a request over HTTP/2 without TLS (prior knowledge) and reads the whole response.
    pub async fn send_h2(&self, request: Request<ClientBody>) -> Result<Reply> {
        send(&self.http2, request).await
    }

    /// `GET path` over HTTP/1.1.
    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.send(
            self.request("GET", path)
                .body(sample::full_body(Bytes::new()))?,
        )
        .await
    }

    /// Waits for `count` captured exchanges.
    pub async fn exchanges(&mut self, count: usize) -> Result<Vec<Exchange>> {
        let collected = sink::collect_exchanges(&mut self.received, count, WAIT).await?;
        Ok(collected.exchanges().cloned().collect())
    }

    /// Waits for a counter or gauge (by name suffix) to reach at least `at_least`.
    pub async fn wait_for_stat(&self, suffix: &str, at_least: u64) -> Result<u64> {
        self.envoy
            .wait_for_stat(suffix, WAIT, |value| value >= at_least)
            .await
            .with_context(|| format!("waiting for {suffix} >= {at_least}"))
    }

    /// One counter or gauge by name suffix.
    pub async fn stat(&self, suffix: &str) -> Result<u64> {
        self.envoy.counter_suffix(suffix).await
    }
}

async fn send(
    client: &Client<HttpConnector, ClientBody>,
    request: Request<ClientBody>,
) -> Result<Reply> {
    let what = format!("{} {}", request.method(), request.uri());
    let started = Instant::now();
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        anyhow::Ok(Reply {
            status,
            headers: parts.headers,
            body,
            elapsed: started.elapsed(),
        })
    })
    .await
    .with_context(|| format!("{what} timed out after {REQUEST_TIMEOUT:?}"))?
    .with_context(|| format!("{what} failed"))?;
    Ok(reply)
}

/// The first value of header `name` in `headers`.
pub fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|header| header.name == name)
        .map(|header| header.value.as_slice())
}

/// The first value of header `name`, as text (lossy).
pub fn header_text(headers: &[Header], name: &str) -> Option<String> {
    header(headers, name).map(|value| String::from_utf8_lossy(value).into_owned())
}

/// Every value of header `name`, as text (lossy).
pub fn header_texts(headers: &[Header], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|header| header.name == name)
        .map(|header| String::from_utf8_lossy(&header.value).into_owned())
        .collect()
}

/// Checks that `expected` (name, value) pairs appear in `headers`, in this relative order.
pub fn assert_headers_in_order(headers: &[Header], expected: &[(&str, &str)]) {
    let mut position = 0;
    for (name, value) in expected {
        let found = headers[position..]
            .iter()
            .position(|header| header.name == *name && header.value == value.as_bytes());
        match found {
            Some(offset) => position += offset + 1,
            None => panic!(
                "header {name}: {value} missing or out of order in {:?}",
                headers
                    .iter()
                    .map(|h| format!("{}: {}", h.name, String::from_utf8_lossy(&h.value)))
                    .collect::<Vec<_>>()
            ),
        }
    }
}

/// The request or response message of an exchange (an empty one when absent).
pub fn message(message: &Option<Message>) -> Message {
    message.clone().unwrap_or_default()
}

/// The exchange with this method and path; fails with the paths that did arrive.
pub fn find<'a>(exchanges: &'a [Exchange], method: &str, path: &str) -> &'a Exchange {
    exchanges
        .iter()
        .find(|e| e.method == method && e.path == path)
        .unwrap_or_else(|| {
            panic!(
                "no {method} {path} among {:?}",
                exchanges
                    .iter()
                    .map(|e| format!("{} {}", e.method, e.path))
                    .collect::<Vec<_>>()
            )
        })
}

/// Checks what every exchange captured by the rig's sidecar has: identity, timing, workload,
/// capture metadata, and the route it took.
pub fn assert_identity(exchange: &Exchange, direction: Direction) {
    let what = format!("{} {}", exchange.method, exchange.path);
    assert_eq!(exchange.id.len(), 16, "{what}: id");
    assert_eq!(exchange.direction(), direction, "{what}: direction");
    assert_eq!(exchange.workload, WORKLOAD, "{what}: workload");
    assert_eq!(exchange.namespace, NAMESPACE, "{what}: namespace");
    assert_eq!(exchange.pod, POD, "{what}: pod");
    assert!(exchange.duration_nanos > 0, "{what}: duration_nanos");
    assert!(
        exchange.response_headers_nanos > 0,
        "{what}: response_headers_nanos"
    );
    assert!(
        exchange.response_headers_nanos <= exchange.duration_nanos,
        "{what}: response headers after the end ({} > {})",
        exchange.response_headers_nanos,
        exchange.duration_nanos
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let age = now.saturating_sub(exchange.start_unix_nanos);
    assert!(
        exchange.start_unix_nanos > 0 && age < 120_000_000_000,
        "{what}: start_unix_nanos {} is not within the last 2 minutes of {now}",
        exchange.start_unix_nanos
    );
    assert!(!exchange.peer_address.is_empty(), "{what}: peer_address");
    assert_eq!(exchange.scheme, "http", "{what}: scheme");
    assert_eq!(exchange.sample_rate, 1.0, "{what}: sample_rate");
    assert!(
        !exchange.filter_version.is_empty(),
        "{what}: filter_version"
    );
    match direction {
        Direction::Inbound => {
            assert_eq!(
                exchange.upstream_cluster,
                tapedeck_local::envoy::DEFAULT_APP_CLUSTER,
                "{what}: upstream_cluster"
            );
            assert_eq!(
                exchange.route_name,
                tapedeck_local::envoy::INBOUND_ROUTE,
                "{what}: route_name"
            );
            assert!(
                exchange.peer_address.starts_with("127.0.0.1:"),
                "{what}: peer_address {}",
                exchange.peer_address
            );
        }
        Direction::Outbound => {
            assert_eq!(
                exchange.upstream_cluster, DEPENDENCY_CLUSTER,
                "{what}: upstream_cluster"
            );
            assert_eq!(
                exchange.route_name, DEPENDENCY_CLUSTER,
                "{what}: route_name"
            );
        }
        Direction::Unspecified => {}
    }
}

/// Checks that the filter's marker stands where a secret was: the prefix, `hmac-sha256:`, and
/// 32 lowercase hex digits, and nothing else.
pub fn assert_marker(text: &str) {
    let rest = text
        .strip_prefix(tapedeck_proto::REDACTED_PREFIX)
        .and_then(|rest| rest.strip_prefix("hmac-sha256:"))
        .unwrap_or_else(|| panic!("{text:?} is not a redaction marker"));
    assert!(
        rest.len() == 32
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{text:?} is not a redaction marker (32 lowercase hex digits expected)"
    );
}

/// Checks that `needle` appears nowhere in `haystack`.
pub fn assert_absent(haystack: &[u8], needle: &[u8]) -> Result<()> {
    ensure!(
        !haystack
            .windows(needle.len())
            .any(|window| window == needle),
        "the secret {:?} appears in the captured bytes",
        String::from_utf8_lossy(needle)
    );
    Ok(())
}
