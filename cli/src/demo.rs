//! `tapedeck demo`: the capture loop on the bundled sample service, on loopback.
//!
//! A capture sink, the sample service `orders` and its dependency `payments` start in this
//! process; a real Envoy with `filter.wasm` sits in front of `orders` (inbound listener) and
//! between `orders` and `payments` (outbound listener). The demo sends a few requests, waits for
//! the filter's batches and prints every captured exchange.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tapedeck_local::sample::{self, Dependency, SampleConfig};
use tapedeck_local::sink::{self, SinkMode};
use tapedeck_local::{Envoy, EnvoyBootstrap, EnvoyOptions, OutboundRoute, Workload};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::render;

/// The dependency's authority, as the sample service addresses it.
const PAYMENTS: &str = "payments.shop.svc";
/// A JWT (HS256) whose claims survive redaction and whose signature does not.
const DEMO_JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbm4iLCJpYXQiOjE3NjQyMDAwMDAsImV4cCI6MTc2NDIwMzYwMH0.ZGVtby1zaWduYXR1cmUtbm90LXJlYWw";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One summary line per exchange.
    Text,
    /// One JSON object per exchange (every field; bodies as text, or base64 when not UTF-8).
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// The Envoy binary; by default `$TAPEDECK_ENVOY`, then `.venv/bin/envoy` of the workspace
    /// (what `./x setup` installs), then `envoy` on the PATH.
    #[arg(long, env = "TAPEDECK_ENVOY")]
    envoy: Option<PathBuf>,
    /// The filter to load; by default `$TAPEDECK_FILTER_WASM`, then the workspace's
    /// `target/wasm32-wasip1/filter/tapedeck_filter.wasm`.
    #[arg(long, env = "TAPEDECK_FILTER_WASM")]
    filter_wasm: Option<PathBuf>,
    /// How to print the captured exchanges.
    #[arg(long, env = "TAPEDECK_DEMO_FORMAT", value_enum, default_value_t = Format::Text)]
    format: Format,
    /// How long to wait for the filter's batches.
    #[arg(long, env = "TAPEDECK_DEMO_WAIT_SECS", default_value_t = 20)]
    wait_secs: u64,
}

pub(crate) async fn run(args: DemoArgs) -> Result<ExitCode> {
    let envoy_binary = match args.envoy {
        Some(path) => path,
        None => tapedeck_local::find_envoy()?,
    };
    let wasm = match args.filter_wasm {
        Some(path) => path,
        None => tapedeck_local::find_filter_wasm()?,
    };
    if !wasm.is_file() {
        bail!(
            "filter.wasm not found at {} (build it with `./x filter`)",
            wasm.display()
        );
    }
    let (_stop, stopped) = watch::channel(());
    let shutdown = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.changed().await;
        }
    };

    let sink_listener = bind().await?;
    let sink_addr = sink_listener.local_addr()?;
    let (tx, mut received) = tokio::sync::mpsc::unbounded_channel();
    spawn(
        "capture sink",
        sink::serve(sink_listener, SinkMode::Accept, tx, shutdown()),
    );

    let payments_listener = bind().await?;
    let payments = payments_listener.local_addr()?;
    spawn(
        "payments",
        sample::serve(payments_listener, SampleConfig::default(), shutdown()),
    );

    let orders_listener = bind().await?;
    let orders = orders_listener.local_addr()?;
    let plugin = json!({
        "version": 1,
        "collector": {"cluster": tapedeck_local::envoy::COLLECTOR_CLUSTER},
        "redaction": {"hash_key": "tapedeck-demo", "json_fields": ["card"]},
        "capture": {"max_body_bytes": 4096},
        "queue": {"flush_interval_ms": 100},
    });
    let bootstrap = EnvoyBootstrap::new(orders, sink_addr)
        .node_id("sidecar~127.0.0.1~orders-0.shop")
        .workload(Workload {
            name: "orders".into(),
            namespace: "shop".into(),
            pod: "orders-0".into(),
        })
        .outbound_route(
            OutboundRoute::new("outbound|80||payments.shop.svc", payments).with_authority(PAYMENTS),
        )
        .filter(wasm.clone(), plugin)
        .render();
    eprintln!(
        "starting Envoy ({}) with {}",
        envoy_binary.display(),
        wasm.display()
    );
    let envoy = Envoy::start(&envoy_binary, &bootstrap, EnvoyOptions::default()).await?;
    let outbound = envoy
        .outbound_addr()
        .context("Envoy has no outbound listener")?;
    let config = SampleConfig {
        dependency: Some(Dependency {
            base_url: format!("http://{outbound}"),
            authority: Some(PAYMENTS.into()),
        }),
    };
    spawn("orders", sample::serve(orders_listener, config, shutdown()));

    let inbound = envoy.inbound_addr();
    eprintln!(
        "sidecar: inbound {inbound} → orders {orders}; outbound {outbound} → payments {payments}; sink {sink_addr}"
    );
    let sent = send_requests(inbound).await?;
    // Each request is one inbound exchange; `POST /orders` adds one outbound call.
    let expected = sent + 1;
    let collected =
        sink::collect_exchanges(&mut received, expected, Duration::from_secs(args.wait_secs))
            .await
            .context("waiting for the filter's batches")?;
    let mut exchanges: Vec<_> = collected.exchanges().cloned().collect();
    exchanges.sort_by_key(|e| e.start_unix_nanos);
    match args.format {
        Format::Text => {
            println!(
                "captured {} exchanges in {} batches:",
                exchanges.len(),
                collected.received.len()
            );
            for exchange in &exchanges {
                println!("  {}", render::summary_line(exchange));
            }
        }
        Format::Json => {
            for exchange in &exchanges {
                println!("{}", render::exchange_json(exchange));
            }
        }
    }
    // The filter publishes its counters on its flush tick, after the collector's ack.
    let _ = envoy
        .wait_for_stat("tapedeck.exchanges_sent", Duration::from_secs(2), |sent| {
            sent >= exchanges.len() as u64
        })
        .await;
    let stats = envoy.stats().await?;
    let stat = |name: &str| tapedeck_local::process::stat_by_suffix(&stats, name).unwrap_or(0);
    eprintln!(
        "filter stats: captured {}, sent {}, truncated bodies {}, dropped {}",
        stat("tapedeck.exchanges_captured"),
        stat("tapedeck.exchanges_sent"),
        stat("tapedeck.bodies_truncated"),
        stat("tapedeck.exchanges_dropped.queue_full")
            + stat("tapedeck.exchanges_dropped.send_failed"),
    );
    envoy.stop().await?;
    Ok(ExitCode::SUCCESS)
}

async fn bind() -> Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback port")
}

fn spawn(what: &'static str, task: impl Future<Output = Result<()>> + Send + 'static) {
    tokio::spawn(async move {
        if let Err(error) = task.await {
            tracing::error!(%error, what, "Demo task failed.");
        }
    });
}

/// Method, path, extra headers and body of one demo request.
type DemoRequest = (Method, &'static str, Vec<(&'static str, String)>, Bytes);

/// Sends the demo requests through the sidecar; returns how many.
async fn send_requests(inbound: SocketAddr) -> Result<usize> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let requests: Vec<DemoRequest> = vec![
        (Method::GET, "/hello", vec![], Bytes::new()),
        (
            Method::POST,
            "/orders",
            vec![
                ("authorization", format!("Bearer {DEMO_JWT}")),
                ("content-type", "application/json".into()),
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                ),
            ],
            Bytes::from_static(br#"{"item":"book","qty":2,"card":"4111111111111111"}"#),
        ),
        (Method::GET, "/login", vec![], Bytes::new()),
        (Method::GET, "/binary", vec![], Bytes::new()),
        (Method::GET, "/download?bytes=200000", vec![], Bytes::new()),
    ];
    let count = requests.len();
    for (method, path, headers, body) in requests {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("http://{inbound}{path}"))
            .header("host", "orders.shop.svc");
        for (name, value) in &headers {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(Full::new(body))
            .context("building a demo request")?;
        let started = Instant::now();
        let response = client
            .request(request)
            .await
            .with_context(|| format!("{method} {path} through the sidecar"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer to {method} {path}"))?
            .to_bytes();
        eprintln!(
            "{method} {path} → {status} ({} bytes, {:.1} ms)",
            body.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(count)
}
