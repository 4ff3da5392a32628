//! `tapedeck proxy`: capture on a laptop or a CI runner without a cluster.
//!
//! The real Envoy runs with a generated bootstrap and the very same `filter.wasm` as in a mesh:
//! - one inbound listener per `--inbound LISTEN=APP`, in front of a local app;
//! - an outbound HTTP proxy listener (`--outbound LISTEN`) that the app reaches through
//!   `HTTP_PROXY` / `HTTPS_PROXY`: Envoy's dynamic forward proxy sends each request where its
//!   absolute URL (or `Host`) says, and `--resolve HOST=ADDR` pins names that DNS does not know.
//!   `CONNECT` (what clients send for `https://` through a proxy) is tunnelled; the tunnel is
//!   recorded as one exchange without bodies (method `CONNECT`, authority, status, sizes,
//!   duration), since its bytes are TLS that the proxy cannot read.
//!
//! The filter pushes its batches to a relay in this process, which forwards each batch to the
//! collector and acknowledges it only once the collector did, counting the acknowledged
//! exchanges by direction: that is the live counter `tapedeck proxy` prints.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use tapedeck_proto::capture::v1::capture_client::CaptureClient;
use tapedeck_proto::capture::v1::capture_server::{Capture, CaptureServer};
use tapedeck_proto::tonic::{self, Request, Response, Status};
use tapedeck_proto::{Direction, ExchangeBatch, PushAck};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::envoy::{
    COLLECTOR_CLUSTER, DEFAULT_APP_CLUSTER, INBOUND_LISTENER, INBOUND_ROUTE, OUTBOUND_LISTENER,
    PLUGIN_ROOT_ID, Workload, collector_cluster, seconds, socket_address, upstream_cluster,
    wasm_filter_named,
};
use crate::process::{Envoy, EnvoyOptions};
use crate::sink::MAX_MESSAGE_BYTES;

/// The HTTP filter name of the capture filter on HTTP routes.
pub const CAPTURE_FILTER: &str = "tapedeck";
/// The HTTP filter name of the capture filter on `CONNECT` routes (bodies not kept).
pub const CONNECT_FILTER: &str = "tapedeck_connect";
/// The cluster of Envoy's dynamic forward proxy.
pub const FORWARD_PROXY_CLUSTER: &str = "dynamic_forward_proxy";
/// The route name of `CONNECT` tunnels on the outbound listener.
pub const CONNECT_ROUTE: &str = "connect";
/// The route name of plain HTTP requests on the outbound listener.
pub const FORWARD_ROUTE: &str = "forward";

/// `tapedeck proxy` flags (the CLI adds `--data`, a collector in this process).
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// An inbound listener in front of a local app: `LISTEN=APP`, for example
    /// `127.0.0.1:8080=127.0.0.1:8081` (callers use 8080, the app listens on 8081). Repeatable;
    /// in the environment, separated by spaces.
    #[arg(long, env = "TAPEDECK_PROXY_INBOUND", value_delimiter = ' ')]
    pub inbound: Vec<Inbound>,
    /// The outbound HTTP proxy listener, for example `127.0.0.1:3128`: start the app with
    /// `HTTP_PROXY=http://127.0.0.1:3128` (and `HTTPS_PROXY`, whose CONNECT tunnels are recorded
    /// as connections only).
    #[arg(long, env = "TAPEDECK_PROXY_OUTBOUND")]
    pub outbound: Option<SocketAddr>,
    /// Send requests for HOST to ADDR instead of resolving HOST by DNS: `HOST=ADDR`, for example
    /// `payments.shop.svc=127.0.0.1:7001`. Repeatable; in the environment, separated by spaces.
    #[arg(long, env = "TAPEDECK_PROXY_RESOLVE", value_delimiter = ' ')]
    pub resolve: Vec<Resolve>,
    /// A collector's gRPC ingest address (`127.0.0.1:9090` or `http://127.0.0.1:9090`) to send
    /// captures to.
    #[arg(long, env = "TAPEDECK_PROXY_COLLECTOR")]
    pub collector: Option<String>,
    /// The collector's push token, if it requires one.
    #[arg(long, env = "TAPEDECK_PROXY_COLLECTOR_TOKEN", hide_env_values = true)]
    pub collector_token: Option<String>,
    /// The workload the captures are attributed to (the `service` of snapshots and inventory).
    #[arg(long, env = "TAPEDECK_PROXY_WORKLOAD", default_value = "app")]
    pub workload: String,
    /// The namespace the captures are attributed to.
    #[arg(long, env = "TAPEDECK_PROXY_NAMESPACE", default_value = "local")]
    pub namespace: String,
    /// The pod name the captures are attributed to.
    #[arg(long, env = "TAPEDECK_PROXY_POD", default_value = "local-0")]
    pub pod: String,
    /// Bytes of each body kept (the rest is counted).
    #[arg(long, env = "TAPEDECK_PROXY_MAX_BODY_BYTES", default_value_t = 65536)]
    pub max_body_bytes: usize,
    /// JSON keys whose values are redacted in bodies (besides the headers always redacted:
    /// authorization, cookie, set-cookie, proxy-authorization). Repeatable or comma-separated.
    #[arg(long, env = "TAPEDECK_PROXY_REDACT_JSON", value_delimiter = ',')]
    pub redact_json: Vec<String>,
    /// The key of the HMAC that replaces secrets (the filter's `redaction.hash_key`); the same
    /// key lets `tapedeck respond --redaction-key` and `--secrets` files line up.
    #[arg(long, env = "TAPEDECK_PROXY_REDACTION_KEY", hide_env_values = true)]
    pub redaction_key: Option<String>,
    /// The Envoy binary; by default `$TAPEDECK_ENVOY`, then `.venv/bin/envoy` of the
    /// workspace (what `./x setup` installs), then `envoy` on the PATH.
    #[arg(long, env = "TAPEDECK_ENVOY")]
    pub envoy: Option<PathBuf>,
    /// The filter to load; by default `$TAPEDECK_FILTER_WASM`, then the workspace's
    /// `target/wasm32-wasip1/filter/tapedeck_filter.wasm`.
    #[arg(long, env = "TAPEDECK_FILTER_WASM")]
    pub filter_wasm: Option<PathBuf>,
    /// Envoy's worker threads.
    #[arg(long, env = "TAPEDECK_PROXY_CONCURRENCY", default_value_t = 1)]
    pub concurrency: usize,
}

impl ProxyArgs {
    /// Flags with their defaults and nothing to listen on.
    pub fn new(workload: impl Into<String>) -> Self {
        Self {
            inbound: Vec::new(),
            outbound: None,
            resolve: Vec::new(),
            collector: None,
            collector_token: None,
            workload: workload.into(),
            namespace: "local".into(),
            pod: "local-0".into(),
            max_body_bytes: 65536,
            redact_json: Vec::new(),
            redaction_key: None,
            envoy: None,
            filter_wasm: None,
            concurrency: 1,
        }
    }

    /// The filter's plugin configuration for these flags (`connect`: the CONNECT variant, which
    /// keeps no body bytes).
    pub fn plugin_config(&self, connect: bool) -> Value {
        let mut config = json!({
            "version": 1,
            "collector": {"cluster": COLLECTOR_CLUSTER, "timeout_ms": 10000},
            "capture": {"max_body_bytes": if connect { 0 } else { self.max_body_bytes }},
            "queue": {"flush_interval_ms": 200},
            "redaction": {"json_fields": self.redact_json},
        });
        if let Some(key) = &self.redaction_key {
            config["redaction"]["hash_key"] = json!(key);
        }
        if let Some(token) = &self.collector_token {
            config["collector"]["token"] = json!(token);
        }
        config
    }
}

/// `--inbound LISTEN=APP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbound {
    /// Where callers connect.
    pub listen: SocketAddr,
    /// Where the app listens.
    pub app: SocketAddr,
}

impl FromStr for Inbound {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (listen, app) = text.split_once('=').ok_or_else(|| {
            format!("{text:?}: expected LISTEN=APP, e.g. 127.0.0.1:8080=127.0.0.1:8081")
        })?;
        Ok(Inbound {
            listen: listen
                .trim()
                .parse()
                .map_err(|e| format!("{text:?}: listen address {listen:?}: {e}"))?,
            app: app
                .trim()
                .parse()
                .map_err(|e| format!("{text:?}: app address {app:?}: {e}"))?,
        })
    }
}

/// `--resolve HOST=ADDR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolve {
    /// The name (without port) requests carry in their URL or `Host`.
    pub host: String,
    /// Where such requests go.
    pub address: SocketAddr,
}

impl FromStr for Resolve {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (host, address) = text.split_once('=').ok_or_else(|| {
            format!("{text:?}: expected HOST=ADDR, e.g. payments.local=127.0.0.1:7001")
        })?;
        let host = host.trim().to_ascii_lowercase();
        if host.is_empty() || host.contains([':', '/', ' ']) {
            return Err(format!("{text:?}: {host:?} is not a host name"));
        }
        Ok(Resolve {
            host,
            address: address
                .trim()
                .parse()
                .map_err(|e| format!("{text:?}: address {address:?}: {e}"))?,
        })
    }
}

/// The cluster name of a resolved host, in Istio's spelling, so that the responder knows the
/// host by its cluster's name as well.
pub fn resolved_cluster(host: &str) -> String {
    format!("outbound|80||{host}")
}

/// The name of the `index`-th inbound listener (the first is `inbound`).
pub fn inbound_listener(index: usize) -> String {
    if index == 0 {
        INBOUND_LISTENER.to_owned()
    } else {
        format!("{INBOUND_LISTENER}_{index}")
    }
}

fn inbound_cluster(index: usize) -> String {
    if index == 0 {
        DEFAULT_APP_CLUSTER.to_owned()
    } else {
        format!("{DEFAULT_APP_CLUSTER}_{index}")
    }
}

/// Renders the proxy's Envoy bootstrap: inbound listeners, the outbound forward proxy, the
/// collector cluster (pointing at `relay`) and the filter loaded from `wasm`.
pub fn bootstrap(args: &ProxyArgs, relay: SocketAddr, wasm: &Path) -> Value {
    let workload = Workload {
        name: args.workload.clone(),
        namespace: args.namespace.clone(),
        pod: args.pod.clone(),
    };
    let capture = wasm_filter_named(
        CAPTURE_FILTER,
        PLUGIN_ROOT_ID,
        wasm,
        &args.plugin_config(false),
    );
    let connect = wasm_filter_named(
        CONNECT_FILTER,
        "tapedeck_connect",
        wasm,
        &args.plugin_config(true),
    );
    let router = json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    });
    let mut listeners = Vec::new();
    let mut clusters = Vec::new();
    for (index, inbound) in args.inbound.iter().enumerate() {
        let name = inbound_listener(index);
        let cluster = inbound_cluster(index);
        let route_name = if index == 0 {
            INBOUND_ROUTE.to_owned()
        } else {
            format!("{INBOUND_ROUTE}_{index}")
        };
        let hosts = json!([{
            "name": name,
            "domains": ["*"],
            "routes": [route(&route_name, &cluster, json!({"prefix": "/"}), None, None)],
        }]);
        listeners.push(listener(
            &name,
            "INBOUND",
            inbound.listen,
            hosts,
            vec![capture.clone(), router.clone()],
            json!({}),
        ));
        clusters.push(upstream_cluster(&cluster, inbound.app));
    }
    if let Some(outbound) = args.outbound {
        let disable = |filter: &str| json!({filter: {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": true}});
        let mut hosts: Vec<Value> = args
            .resolve
            .iter()
            .map(|resolve| {
                let cluster = resolved_cluster(&resolve.host);
                json!({
                    "name": resolve.host,
                    "domains": [resolve.host, format!("{}:*", resolve.host)],
                    "routes": [route(&cluster, &cluster, json!({"prefix": "/"}), Some(disable(CONNECT_FILTER)), None)],
                })
            })
            .collect();
        hosts.push(json!({
            "name": FORWARD_PROXY_CLUSTER,
            "domains": ["*"],
            "routes": [
                route(
                    CONNECT_ROUTE,
                    FORWARD_PROXY_CLUSTER,
                    json!({"connect_matcher": {}}),
                    Some(disable(CAPTURE_FILTER)),
                    Some(json!([{"upgrade_type": "CONNECT", "connect_config": {}}])),
                ),
                route(FORWARD_ROUTE, FORWARD_PROXY_CLUSTER, json!({"prefix": "/"}), Some(disable(CONNECT_FILTER)), None),
            ],
        }));
        clusters.extend(
            args.resolve
                .iter()
                .map(|resolve| upstream_cluster(&resolved_cluster(&resolve.host), resolve.address)),
        );
        let dns_cache = json!({"name": "tapedeck_dns_cache", "dns_lookup_family": "V4_PREFERRED"});
        listeners.push(listener(
            OUTBOUND_LISTENER,
            "OUTBOUND",
            outbound,
            Value::Array(hosts),
            vec![
                capture,
                connect,
                json!({
                    "name": "envoy.filters.http.dynamic_forward_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig",
                        "dns_cache_config": dns_cache,
                    },
                }),
                router,
            ],
            json!({
                "http_protocol_options": {"allow_absolute_url": true},
                "http2_protocol_options": {"allow_connect": true},
                "upgrade_configs": [{"upgrade_type": "CONNECT"}],
            }),
        ));
        clusters.push(json!({
            "name": FORWARD_PROXY_CLUSTER,
            "connect_timeout": "2s",
            "lb_policy": "CLUSTER_PROVIDED",
            "cluster_type": {
                "name": "envoy.clusters.dynamic_forward_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig",
                    "dns_cache_config": dns_cache,
                },
            },
        }));
    }
    clusters.push(collector_cluster(relay));
    json!({
        "node": {
            "id": format!("sidecar~127.0.0.1~{}.{}", workload.pod, workload.namespace),
            "cluster": workload.name,
            "metadata": {
                "WORKLOAD_NAME": workload.name,
                "NAMESPACE": workload.namespace,
                "NAME": workload.pod,
            },
        },
        "admin": {"address": socket_address("127.0.0.1", 0)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    })
}

fn route(
    name: &str,
    cluster: &str,
    matcher: Value,
    per_filter: Option<Value>,
    upgrades: Option<Value>,
) -> Value {
    let mut route = json!({
        "name": name,
        "match": matcher,
        "route": {"cluster": cluster, "timeout": seconds(Duration::from_secs(60))},
    });
    if let Some(upgrades) = upgrades {
        route["route"]["upgrade_configs"] = upgrades;
        // A tunnel lasts as long as the client keeps it.
        route["route"]["timeout"] = json!("0s");
    }
    if let Some(per_filter) = per_filter {
        route["typed_per_filter_config"] = per_filter;
    }
    route
}

fn listener(
    name: &str,
    direction: &str,
    address: SocketAddr,
    virtual_hosts: Value,
    http_filters: Vec<Value>,
    extra: Value,
) -> Value {
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name,
        "codec_type": "AUTO",
        "stream_idle_timeout": "300s",
        // Keep the caller's `x-request-id`: it is the trace id when no `traceparent` comes.
        "preserve_external_request_id": true,
        "route_config": {"name": name, "virtual_hosts": virtual_hosts},
        "http_filters": http_filters,
    });
    if let (Some(hcm), Value::Object(extra)) = (hcm.as_object_mut(), extra) {
        hcm.extend(extra);
    }
    json!({
        "name": name,
        "traffic_direction": direction,
        "address": socket_address(&address.ip().to_string(), address.port()),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": hcm,
        }]}],
    })
}

/// Exchanges the collector acknowledged, by direction.
#[derive(Debug, Default)]
pub struct Counts {
    inbound: AtomicU64,
    outbound: AtomicU64,
    other: AtomicU64,
    failed_pushes: AtomicU64,
}

/// A reading of [`Counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Inbound exchanges acknowledged by the collector.
    pub inbound: u64,
    /// Outbound exchanges acknowledged by the collector.
    pub outbound: u64,
    /// Exchanges without a direction.
    pub other: u64,
    /// Pushes the collector refused or did not answer.
    pub failed_pushes: u64,
}

impl Counted {
    /// Every acknowledged exchange.
    pub fn total(&self) -> u64 {
        self.inbound + self.outbound + self.other
    }
}

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "captured {} exchanges: {} in, {} out",
            self.total(),
            self.inbound,
            self.outbound
        )?;
        if self.failed_pushes > 0 {
            write!(f, " ({} pushes failed)", self.failed_pushes)?;
        }
        Ok(())
    }
}

impl Counts {
    /// The current counts.
    pub fn read(&self) -> Counted {
        Counted {
            inbound: self.inbound.load(Ordering::Relaxed),
            outbound: self.outbound.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
            failed_pushes: self.failed_pushes.load(Ordering::Relaxed),
        }
    }
}

/// The relay between the filter and the collector.
#[derive(Debug, Clone)]
struct Relay {
    client: CaptureClient<tonic::transport::Channel>,
    counts: Arc<Counts>,
}

#[tonic::async_trait]
impl Capture for Relay {
    async fn push(&self, request: Request<ExchangeBatch>) -> Result<Response<PushAck>, Status> {
        let authorization = request.metadata().get("authorization").cloned();
        let batch = request.into_inner();
        let (mut inbound, mut outbound, mut other) = (0, 0, 0);
        for exchange in &batch.exchanges {
            match exchange.direction() {
                Direction::Inbound => inbound += 1,
                Direction::Outbound => outbound += 1,
                Direction::Unspecified => other += 1,
            }
        }
        let mut forward = Request::new(batch);
        if let Some(value) = authorization {
            forward.metadata_mut().insert("authorization", value);
        }
        let mut client = self.client.clone();
        match client.push(forward).await {
            Ok(ack) => {
                self.counts.inbound.fetch_add(inbound, Ordering::Relaxed);
                self.counts.outbound.fetch_add(outbound, Ordering::Relaxed);
                self.counts.other.fetch_add(other, Ordering::Relaxed);
                Ok(ack)
            }
            Err(status) => {
                self.counts.failed_pushes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %status, "The collector refused a push.");
                Err(status)
            }
        }
    }
}

/// Parses `--collector`: `HOST:PORT` or `http://HOST:PORT`.
pub fn collector_url(text: &str) -> String {
    if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    }
}

/// A running proxy: Envoy and the relay. Dropping it kills Envoy.
#[derive(Debug)]
pub struct Proxy {
    envoy: Envoy,
    counts: Arc<Counts>,
    inbound: Vec<(SocketAddr, SocketAddr)>,
    outbound: Option<SocketAddr>,
    relay: tokio::task::JoinHandle<()>,
    stop_relay: watch::Sender<bool>,
}

impl Proxy {
    /// Starts the relay (forwarding to the collector at `collector`, a gRPC URL) and Envoy.
    /// Fails with how to get Envoy when there is none.
    pub async fn start(args: &ProxyArgs, collector: &str) -> Result<Proxy> {
        if args.inbound.is_empty() && args.outbound.is_none() {
            bail!("nothing to listen on: give --inbound LISTEN=APP and/or --outbound LISTEN");
        }
        let envoy_binary = match &args.envoy {
            Some(path) => path.clone(),
            None => crate::find_envoy()?,
        };
        let wasm = match &args.filter_wasm {
            Some(path) => path.clone(),
            None => crate::find_filter_wasm()?,
        };
        let channel = tonic::transport::Endpoint::from_shared(collector_url(collector))
            .with_context(|| format!("--collector {collector}: not a URL"))?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        let counts = Arc::new(Counts::default());
        let relay = Relay {
            client: CaptureClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            counts: counts.clone(),
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the capture relay")?;
        let relay_addr = listener.local_addr().context("reading the relay address")?;
        let (stop_relay, mut stopping) = watch::channel(false);
        let relay = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(CaptureServer::new(relay).max_decoding_message_size(MAX_MESSAGE_BYTES))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "The capture relay failed.");
            }
        });
        let config = bootstrap(args, relay_addr, &wasm);
        let options = EnvoyOptions {
            concurrency: args.concurrency.max(1),
            log_level: "warn".into(),
            ..EnvoyOptions::default()
        };
        let rendered = serde_json::to_string_pretty(&config).unwrap_or_default();
        let envoy = Envoy::start(&envoy_binary, &rendered, options)
            .await
            .with_context(|| format!("starting Envoy {}", envoy_binary.display()))?;
        let inbound = args
            .inbound
            .iter()
            .enumerate()
            .map(|(index, inbound)| {
                let listen = envoy
                    .listener_addr(&inbound_listener(index))
                    .unwrap_or(inbound.listen);
                (listen, inbound.app)
            })
            .collect();
        let outbound = envoy.listener_addr(OUTBOUND_LISTENER);
        Ok(Proxy {
            envoy,
            counts,
            inbound,
            outbound,
            relay,
            stop_relay,
        })
    }

    /// The inbound listeners as they were bound (port 0 resolved), each with its app.
    pub fn inbound(&self) -> &[(SocketAddr, SocketAddr)] {
        &self.inbound
    }

    /// The outbound proxy listener as it was bound.
    pub fn outbound(&self) -> Option<SocketAddr> {
        self.outbound
    }

    /// The exchanges the collector acknowledged so far, by direction.
    pub fn counts(&self) -> Counted {
        self.counts.read()
    }

    /// The running Envoy (stats, log).
    pub fn envoy(&self) -> &Envoy {
        &self.envoy
    }

    /// What it listens on, one line per listener.
    pub fn describe(&self) -> String {
        let mut lines = Vec::new();
        for (listen, app) in &self.inbound {
            lines.push(format!("inbound   http://{listen} → app {app}"));
        }
        if let Some(outbound) = self.outbound {
            lines.push(format!(
                "outbound  HTTP proxy on {outbound}: start the app with HTTP_PROXY=http://{outbound} HTTPS_PROXY=http://{outbound}"
            ));
        }
        lines.join("\n")
    }

    /// Waits until every exchange the filter captured so far reached the collector (or was
    /// dropped), for at most `timeout`; returns the counts.
    pub async fn settle(&self, timeout: Duration) -> Counted {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let counts = self.counts();
            let done = match self.envoy.stats().await {
                Ok(stats) => {
                    let stat =
                        |name: &str| crate::process::stat_by_suffix(&stats, name).unwrap_or(0);
                    let captured = stat("tapedeck.exchanges_captured");
                    let dropped = stat("tapedeck.exchanges_dropped.queue_full")
                        + stat("tapedeck.exchanges_dropped.send_failed");
                    counts.total() + dropped >= captured
                }
                Err(_) => true,
            };
            if done || tokio::time::Instant::now() >= deadline {
                return counts;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Lets captured exchanges reach the collector (at most 5 s), stops Envoy and the relay;
    /// returns the final counts.
    pub async fn stop(self) -> Result<Counted> {
        let counts = self.settle(Duration::from_secs(5)).await;
        self.envoy.stop().await?;
        let _ = self.stop_relay.send(true);
        let _ = self.relay.await;
        Ok(counts)
    }
}

/// Runs `tapedeck proxy` until `shutdown` resolves: starts it, prints what it listens on and a
/// live counter (on standard error), then stops it and returns the final counts.
pub async fn run(
    args: ProxyArgs,
    collector: &str,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Counted> {
    use std::io::IsTerminal as _;
    let proxy = Proxy::start(&args, collector).await?;
    eprintln!(
        "tapedeck proxy: workload {}, captures to {}",
        args.workload,
        collector_url(collector)
    );
    eprintln!("{}", proxy.describe());
    let terminal = std::io::stderr().is_terminal();
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut last = Counted::default();
    let mut last_print = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => {
                let counts = proxy.counts();
                if terminal {
                    eprint!("\r\x1b[K{counts}");
                } else if counts != last && last_print.elapsed() >= Duration::from_secs(5) {
                    eprintln!("{counts}");
                    last_print = tokio::time::Instant::now();
                    last = counts;
                }
            }
        }
    }
    if terminal {
        eprintln!();
    }
    eprintln!("stopping: letting captures reach the collector, then stopping Envoy");
    let counts = proxy.stop().await?;
    eprintln!("{counts}");
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_refuse_with_the_expected_form() {
        let inbound: Inbound = "127.0.0.1:8080=127.0.0.1:8081".parse().unwrap();
        assert_eq!(inbound.listen.port(), 8080);
        assert_eq!(inbound.app.port(), 8081);
        let error = "127.0.0.1:8080".parse::<Inbound>().unwrap_err();
        assert!(error.contains("expected LISTEN=APP"), "{error}");
        let resolve: Resolve = "Payments.Shop.svc=127.0.0.1:7001".parse().unwrap();
        assert_eq!(resolve.host, "payments.shop.svc");
        assert!("a:1=127.0.0.1:1".parse::<Resolve>().is_err());
        assert_eq!(collector_url("127.0.0.1:9090"), "http://127.0.0.1:9090");
        assert_eq!(collector_url("http://c:9090"), "http://c:9090");
    }

    #[test]
    fn connect_keeps_no_bodies_and_plain_http_does() {
        let mut args = ProxyArgs::new("orders");
        args.inbound
            .push("127.0.0.1:0=127.0.0.1:8081".parse().unwrap());
        args.outbound = Some("127.0.0.1:0".parse().unwrap());
        args.resolve
            .push("payments.shop.svc=127.0.0.1:7001".parse().unwrap());
        let value = bootstrap(&args, "127.0.0.1:9".parse().unwrap(), Path::new("/f.wasm"));
        let listeners = value["static_resources"]["listeners"].as_array().unwrap();
        assert_eq!(listeners.len(), 2);
        let outbound = &listeners[1]["filter_chains"][0]["filters"][0]["typed_config"];
        let filters: Vec<&str> = outbound["http_filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            filters,
            [
                CAPTURE_FILTER,
                CONNECT_FILTER,
                "envoy.filters.http.dynamic_forward_proxy",
                "envoy.filters.http.router"
            ]
        );
        let connect_config: Value = serde_json::from_str(
            outbound["http_filters"][1]["typed_config"]["config"]["configuration"]["value"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(connect_config["capture"]["max_body_bytes"], 0);
        let hosts = outbound["route_config"]["virtual_hosts"]
            .as_array()
            .unwrap();
        assert_eq!(
            hosts[0]["domains"],
            json!(["payments.shop.svc", "payments.shop.svc:*"])
        );
        let connect = &hosts[1]["routes"][0];
        assert_eq!(connect["match"], json!({"connect_matcher": {}}));
        assert_eq!(
            connect["typed_per_filter_config"][CAPTURE_FILTER]["disabled"],
            true
        );
        assert_eq!(
            hosts[1]["routes"][1]["typed_per_filter_config"][CONNECT_FILTER]["disabled"],
            true
        );
    }
}
