//! `tapedeck demo`: capture → store → query → snapshot on the bundled sample service, on
//! loopback.
//!
//! The collector (in a temporary data directory unless `--data` is given), the sample service
//! `orders` and its dependency `payments` start in this process; a real Envoy with
//! `filter.wasm` sits in front of `orders` (inbound listener) and between `orders` and
//! `payments` (outbound listener). The demo sends a few requests, waits until the collector has
//! acknowledged every exchange, and prints them with SQL over Arrow Flight SQL, the way
//! `tapedeck sql` would. Then it cuts a snapshot of `orders` (written to `DATA/snapshot`) and
//! prints the token rules found in it and the service's inventory, the way
//! `tapedeck snapshot create` and `tapedeck inventory` would.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use clap::Args;
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tapedeck_analyzer::Cut;
use tapedeck_analyzer::inventory::Inventory;
use tapedeck_analyzer::snapshot;
use tapedeck_collector::flight::query_remote;
use tapedeck_collector::query::{OutputFormat, format_batches};
use tapedeck_collector::{CollectorArgs, Listeners};
use tapedeck_local::sample::{self, Dependency, SampleConfig};
use tapedeck_local::{Envoy, EnvoyBootstrap, EnvoyOptions, OutboundRoute, Workload};
use tapedeck_proto::arrow_array::Int64Array;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The dependency's authority, as the sample service addresses it.
const PAYMENTS: &str = "payments.shop.svc";
/// A JWT (HS256) whose claims survive redaction and whose signature does not.
const DEMO_JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbm4iLCJpYXQiOjE3NjQyMDAwMDAsImV4cCI6MTc2NDIwMzYwMH0.ZGVtby1zaWduYXR1cmUtbm90LXJlYWw";

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
    /// Keep the collector's data in this directory (query it later with
    /// `tapedeck sql --data DIR`); by default a temporary directory, removed at the end.
    #[arg(long, env = "TAPEDECK_DEMO_DATA")]
    data: Option<PathBuf>,
    /// How to print the query results.
    #[arg(long, env = "TAPEDECK_FORMAT", value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// How long to wait for the captured exchanges to reach the collector.
    #[arg(long, env = "TAPEDECK_DEMO_WAIT_SECS", default_value_t = 20)]
    wait_secs: u64,
}

/// What the demo shows: every exchange, then what redaction left of the secrets.
const OVERVIEW_SQL: &str = "SELECT direction, method, authority, path, status, protocol, \
     request_body_size AS req_bytes, response_body_size AS resp_bytes, response_body_truncated AS truncated, \
     round(duration_ns / 1e6, 2) AS ms, trace_id \
     FROM exchanges ORDER BY start_time";
const SECRETS_SQL: &str = "SELECT direction, path, header(request_headers, 'authorization') AS authorization, \
     body_text(request_body) AS request_body, array_to_string(redactions, ', ') AS redactions \
     FROM exchanges WHERE cardinality(redactions) > 0 ORDER BY start_time";

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
    let temporary = match &args.data {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("creating a temporary data directory")?),
    };
    let data = match (&args.data, &temporary) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => dir.path().to_path_buf(),
        (None, None) => unreachable!("one of the two is set above"),
    };

    let (stop, stopped) = watch::channel(());
    let shutdown = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.changed().await;
        }
    };

    // The collector, on loopback ports of its own.
    let collector_args = CollectorArgs {
        data: data.clone(),
        flush_interval: 2,
        ..CollectorArgs::default()
    };
    let listeners = Listeners {
        grpc: bind().await?,
        http: bind().await?,
        flight: Some(bind().await?),
    };
    let grpc = listeners.grpc.local_addr()?;
    let flight = listeners
        .flight
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?
        .context("no Flight SQL listener")?;
    let store = tapedeck_collector::store::open_store(&data, None)?;
    let collector = tokio::spawn(tapedeck_collector::run_with(
        collector_args,
        listeners,
        store,
        shutdown(),
    ));

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
    });
    let bootstrap = EnvoyBootstrap::new(orders, grpc)
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
        "sidecar: inbound {inbound} → orders {orders}; outbound {outbound} → payments {payments}; collector gRPC {grpc}, Flight SQL {flight}, data {}",
        data.display()
    );
    let sent = send_requests(inbound).await?;
    // Each request is one inbound exchange; `POST /orders` adds one outbound call.
    let expected = sent + 1;
    let flight_url = format!("http://{flight}");
    wait_for_rows(&flight_url, expected, Duration::from_secs(args.wait_secs)).await?;

    for (title, sql) in [
        ("captured exchanges", OVERVIEW_SQL),
        ("what redaction left of the secrets", SECRETS_SQL),
    ] {
        let (schema, batches) = query_remote(&flight_url, None, sql)
            .await
            .with_context(|| format!("querying {title}"))?;
        println!(
            "\n{title}:\n  $ tapedeck sql \"{}\"",
            sql.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        println!("{}", format_batches(&schema, &batches, args.format)?);
    }

    show_snapshot(&flight_url, &data.join("snapshot")).await?;

    let stats = envoy.stats().await?;
    let stat = |name: &str| tapedeck_local::process::stat_by_suffix(&stats, name).unwrap_or(0);
    eprintln!(
        "\nfilter stats: captured {}, truncated bodies {}, dropped {}",
        stat("tapedeck.exchanges_captured"),
        stat("tapedeck.bodies_truncated"),
        stat("tapedeck.exchanges_dropped.queue_full")
            + stat("tapedeck.exchanges_dropped.send_failed"),
    );
    envoy.stop().await?;
    drop(stop);
    collector.await.context("the collector task failed")??;
    match &args.data {
        Some(dir) => eprintln!(
            "data kept in {}: try `tapedeck sql --data {} \"SELECT count(*) FROM exchanges\"` or `tapedeck snapshot validate {}`",
            dir.display(),
            dir.display(),
            dir.join("snapshot").display()
        ),
        None => eprintln!("(the data was in a temporary directory; pass --data DIR to keep it)"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Cuts a snapshot of `orders` from the collector, writes it to `dir`, and prints its token
/// rules and the service's inventory.
async fn show_snapshot(flight_url: &str, dir: &std::path::Path) -> Result<()> {
    let cut = Cut::new("orders", None, None, None, crate::source::now_nanos())?;
    let sql = cut.snapshot_sql();
    let (_, batches) = query_remote(flight_url, None, &sql)
        .await
        .context("querying the snapshot's exchanges")?;
    let mut exchanges = Vec::new();
    for batch in &batches {
        exchanges.extend(tapedeck_proto::arrow::from_record_batch(batch)?);
    }
    let inventory = Inventory::from_exchanges("orders", &exchanges);
    let spec = snapshot::Spec {
        service: cut.service.clone(),
        sql,
        predicate: None,
        from: None,
        to: None,
    };
    let manifest = snapshot::build(&spec, exchanges).write(dir, true)?;
    println!(
        "\nsnapshot of orders, with the dynamic values found in it:\n  $ tapedeck snapshot create --service orders --out {}",
        dir.display()
    );
    println!(
        "snapshot {}: {} inbound requests, {} outbound calls ({} linked to the request that caused them)",
        manifest.id, manifest.counts.inbound, manifest.counts.outbound, manifest.counts.linked
    );
    for rule in &manifest.tokens {
        let to: Vec<String> = rule.to.iter().map(|l| l.describe()).collect();
        println!(
            "  {:<10} {}{}",
            format!("{:?}", rule.replay).to_lowercase(),
            rule.name,
            if to.is_empty() {
                String::new()
            } else {
                format!(" → {}", to.join(", "))
            }
        );
    }
    println!("\ninventory:\n  $ tapedeck inventory --service orders");
    print!("{}", inventory.to_table());
    Ok(())
}

/// Polls the collector until `rows` exchanges are queryable.
async fn wait_for_rows(flight_url: &str, rows: usize, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, batches) =
            query_remote(flight_url, None, "SELECT count(*) AS n FROM exchanges").await?;
        let count = batches
            .first()
            .and_then(|batch| {
                batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .map(|n| n.value(0))
            })
            .unwrap_or(0);
        if count as usize >= rows {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("only {count} of {rows} exchanges reached the collector within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let cookie = format!("session={}", sample::LOGIN_SESSION);
    let requests: Vec<DemoRequest> = vec![
        (Method::GET, "/hello", vec![], Bytes::new()),
        (Method::GET, "/login", vec![], Bytes::new()),
        (
            Method::POST,
            "/orders",
            vec![
                ("authorization", format!("Bearer {DEMO_JWT}")),
                ("cookie", cookie.clone()),
                ("content-type", "application/json".into()),
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                ),
            ],
            Bytes::from_static(br#"{"item":"book","qty":2,"card":"4111111111111111"}"#),
        ),
        (
            Method::GET,
            "/binary",
            vec![("cookie", cookie)],
            Bytes::new(),
        ),
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
