//! `tapedeck demo`: the whole loop, from capture to verdict, on a bundled sample system on
//! loopback.
//!
//! 1. The sample system starts (`orders` v1, `payments`, `mail`, from `tapedeck_local::shop`),
//!    with `tapedeck proxy` (the real Envoy and `filter.wasm`) in front of `orders` and as its
//!    outbound HTTP proxy, and a collector in this process storing into the demo directory.
//! 2. A synthetic user population logs in, creates and reads orders through the proxy.
//! 3. A few `tapedeck sql` queries and the inventory over what was captured.
//! 4. A snapshot of `orders` is cut, with its token rules and correlations.
//! 5. `payments` and `mail` are mocked by the responder (with a little chaos), and the snapshot
//!    is replayed at 10× by the generator: `orders` v1 against itself (A/A), then `orders` v2
//!    (a deliberate regression) against v1, each with noise calibration and comparative goals.
//! 6. The verdicts, the diffs, the learned noise and the report paths.
//!
//! Every part runs in this process, through the same library entry points the commands use
//! (`tapedeck_local::proxy`, `tapedeck_collector::run_with`, `tapedeck_responder::serve`,
//! `tapedeck_generator::run`), with arguments parsed from the command lines it prints: one
//! binary, no ports to race for, and the responder's counters and the reports at hand for the
//! end-to-end test, which runs this same loop ([`run_loop`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser};
use serde_json::Value;
use tapedeck_analyzer::Cut;
use tapedeck_analyzer::inventory::Inventory;
use tapedeck_analyzer::snapshot;
use tapedeck_collector::flight::query_remote;
use tapedeck_collector::query::{OutputFormat, format_batches};
use tapedeck_collector::{CollectorArgs, Listeners};
use tapedeck_local::proxy::{self, Proxy, ProxyArgs};
use tapedeck_local::shop::{self, OrdersConfig, Version, users};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The file that marks a directory as the demo's own (so a rerun may clear it).
const MARKER: &str = ".tapedeck-demo";
/// The filter's redaction key in the demo (the same key computes the `--secrets` file).
const REDACTION_KEY: &str = "tapedeck-demo-redaction-key";
/// The chaos the responder adds to the mocked dependencies.
const CHAOS: &str = "latency=1ms..4ms@0.2";

/// `tapedeck demo` flags; every one has a default, so `tapedeck demo` alone runs the loop.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Where the demo keeps its collector data, snapshot, explain log and reports; kept at the
    /// end so you can go on querying. A directory from an earlier demo run is cleared first.
    #[arg(long, env = "TAPEDECK_DEMO_DIR", default_value = "tapedeck-demo")]
    pub dir: PathBuf,
    /// How many synthetic users.
    #[arg(long, env = "TAPEDECK_DEMO_USERS", default_value_t = 40)]
    pub users: usize,
    /// Orders each user creates.
    #[arg(long, env = "TAPEDECK_DEMO_ORDERS_PER_USER", default_value_t = 5)]
    pub orders_per_user: usize,
    /// Users start spread over this many seconds.
    #[arg(long, env = "TAPEDECK_DEMO_RAMP_UP_SECS", default_value_t = 10.0)]
    pub ramp_up_secs: f64,
    /// The longest think time between two requests of a user, in milliseconds (the shortest is
    /// a quarter of it).
    #[arg(long, env = "TAPEDECK_DEMO_THINK_MS", default_value_t = 2000)]
    pub think_ms: u64,
    /// The replay's speed-up over the recorded pace.
    #[arg(long, env = "TAPEDECK_DEMO_SPEED", default_value_t = 10.0)]
    pub speed: f64,
    /// Copies of the recorded traffic replayed (each with its own sessions), one after the
    /// other: copy k starts when copy k-1's recorded window, at `--speed`, has gone by.
    #[arg(long, env = "TAPEDECK_DEMO_COPIES", default_value_t = 4)]
    pub copies: u32,
    /// A/A replays against the baseline that learn the noise before each comparison.
    #[arg(long, env = "TAPEDECK_DEMO_CALIBRATE", default_value_t = 2)]
    pub calibrate: u32,
    /// Fewest request pairs per endpoint for the gate to pass or fail.
    #[arg(long, env = "TAPEDECK_DEMO_MIN_SAMPLES", default_value_t = 100)]
    pub min_samples: u64,
    /// The goals of the comparison (comparative, `tapedeck replay --goal`). Repeatable.
    #[arg(
        long,
        env = "TAPEDECK_DEMO_GOAL",
        value_delimiter = ',',
        default_values_t = ["p90 +50% @ 95%".to_string(), "errors +5pp @ 95%".to_string()]
    )]
    pub goal: Vec<String>,
    /// The seed of the users' choices and of the responder's chaos.
    #[arg(long, env = "TAPEDECK_DEMO_SEED", default_value_t = 7)]
    pub seed: u64,
    /// The Envoy binary; by default `$TAPEDECK_ENVOY`, then `.venv/bin/envoy` of the
    /// workspace (what `./x setup` installs), then `envoy` on the PATH.
    #[arg(long, env = "TAPEDECK_ENVOY")]
    pub envoy: Option<PathBuf>,
    /// The filter to load; by default `$TAPEDECK_FILTER_WASM`, then the workspace's
    /// `target/wasm32-wasip1/filter/tapedeck_filter.wasm`.
    #[arg(long, env = "TAPEDECK_FILTER_WASM")]
    pub filter_wasm: Option<PathBuf>,
    /// How to print query results.
    #[arg(long, env = "TAPEDECK_FORMAT", value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

impl DemoArgs {
    /// The flags' defaults with `dir` as the demo directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            demo: DemoArgs,
        }
        let mut args = Wrap::parse_from(["demo"]).demo;
        args.dir = dir.into();
        args
    }
}

/// What one replay (a comparison of a candidate with the baseline) gave.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The command line it is equivalent to.
    pub command: String,
    /// The exit code `tapedeck replay` would exit with (0 pass, 1 fail, 3 inconclusive).
    pub exit_code: u8,
    /// `report.json`, as written.
    pub report: Value,
    /// The report directory.
    pub report_dir: PathBuf,
    /// The summary `tapedeck replay` prints.
    pub summary: String,
}

/// The responder's counters over both replays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mocked {
    /// Requests it received.
    pub requests: u64,
    /// Requests a recording answered.
    pub matches: u64,
    /// Requests no recording matched.
    pub misses: u64,
    /// Faults its chaos injected.
    pub faults: u64,
}

/// What each stage of the loop gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The population's requests, failures and orders.
    pub population: users::Counted,
    /// The exchanges the collector acknowledged, by direction.
    pub captured: proxy::Counted,
    /// The snapshot directory.
    pub snapshot_dir: PathBuf,
    /// The snapshot's manifest (`snapshot.json`).
    pub snapshot: Value,
    /// The responder's counters.
    pub mocked: Mocked,
    /// `orders` v1 against itself.
    pub aa: Replay,
    /// `orders` v2 against v1.
    pub ab: Replay,
}

/// Where the demo prints its progress and results.
pub trait Show: Send + Sync {
    /// A stage starts.
    fn stage(&self, title: &str);
    /// A line of output.
    fn line(&self, text: &str);
    /// The live line (overwritten on a terminal).
    fn live(&self, text: &str);
}

/// Prints to the terminal: stages and live lines on standard error, results on standard output.
#[derive(Debug)]
pub struct Terminal {
    started: Instant,
    stages: usize,
    stage: std::sync::atomic::AtomicUsize,
    terminal: bool,
}

impl Terminal {
    fn new(stages: usize) -> Self {
        use std::io::IsTerminal as _;
        Self {
            started: Instant::now(),
            stages,
            stage: 0.into(),
            terminal: std::io::stderr().is_terminal(),
        }
    }
}

impl Show for Terminal {
    fn stage(&self, title: &str) {
        let n = self.stage.fetch_add(1, Ordering::Relaxed) + 1;
        eprintln!(
            "\n\x1b[1m[{n}/{}] {title}\x1b[0m  ({:.0} s)",
            self.stages,
            self.started.elapsed().as_secs_f64()
        );
    }
    fn line(&self, text: &str) {
        println!("{text}");
    }
    fn live(&self, text: &str) {
        if self.terminal {
            eprint!("\r\x1b[K  {text}");
        } else {
            eprintln!("  {text}");
        }
    }
}

/// Stages of [`run_loop`].
const STAGES: usize = 8;

/// Runs `tapedeck demo`: the loop, printed; exits 0 when the demo showed what it should (v1
/// passes against itself, v2 is caught).
pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    let show = Terminal::new(STAGES);
    let outcome = run_loop(&args, &show).await?;
    let dir = std::path::absolute(&args.dir).unwrap_or(args.dir.clone());
    println!();
    println!("The demo's data is kept in {}: go on with", dir.display());
    println!(
        "  tapedeck sql --data {}/data \"SELECT method, path, status, count(*) FROM exchanges GROUP BY 1, 2, 3\"",
        dir.display()
    );
    println!(
        "  tapedeck inventory --service orders --data {}/data",
        dir.display()
    );
    println!(
        "  tapedeck snapshot validate {}",
        outcome.snapshot_dir.display()
    );
    println!("  tapedeck respond explain {}/explain.jsonl", dir.display());
    println!("  open {}/report.html", outcome.ab.report_dir.display());
    let caught = outcome.ab.exit_code == 1;
    let quiet = outcome.aa.exit_code == 0;
    eprintln!(
        "\ndemo done in {:.0} s: {}",
        show.started.elapsed().as_secs_f64(),
        match (quiet, caught) {
            (true, true) =>
                "v1 passed against itself and the regression in v2 was caught".to_owned(),
            (false, _) => format!(
                "v1 against itself was {}, not pass (see above; docs/local-mode.md says what \
                 the demo needs of the machine)",
                verdict_word(outcome.aa.exit_code)
            ),
            (true, false) => format!(
                "v1 passed against itself, but the regression in v2 was NOT caught ({}; see above)",
                verdict_word(outcome.ab.exit_code)
            ),
        }
    );
    Ok(if caught && quiet {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A shutdown signal shared by the demo's servers.
#[derive(Debug)]
struct Stopper {
    stop: watch::Sender<bool>,
}

impl Stopper {
    fn new() -> Self {
        Self {
            stop: watch::channel(false).0,
        }
    }

    fn signal(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = self.stop.subscribe();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    }

    fn stop(&self) {
        let _ = self.stop.send(true);
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
            tracing::error!(error = format!("{error:#}"), what, "Demo task failed.");
        }
    });
}

/// Starts `orders` of `version` with `proxy` as its HTTP proxy; returns its address.
async fn start_orders(
    version: Version,
    proxy: SocketAddr,
    stopper: &Stopper,
) -> Result<SocketAddr> {
    let listener = bind().await?;
    let address = listener.local_addr()?;
    spawn(
        "orders",
        shop::serve_orders(
            listener,
            OrdersConfig::new(version, Some(proxy)),
            stopper.signal(),
        ),
    );
    Ok(address)
}

/// Clears `dir` when it is an earlier demo's (or empty), creates it, and marks it.
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!(
                "{} exists and is not a tapedeck demo directory; give another with --dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `tapedeck demo`; it clears this directory on its next run\n",
    )
    .with_context(|| format!("writing {}", dir.join(MARKER).display()))?;
    Ok(())
}

/// The queries the demo shows.
const QUERIES: [(&str, &str); 4] = [
    (
        "captured exchanges by direction",
        "SELECT direction, count(*) AS exchanges, count(DISTINCT trace_id) AS traces FROM exchanges GROUP BY direction ORDER BY direction",
    ),
    (
        "endpoints, with their latency",
        "SELECT direction, method, authority, regexp_replace(path, '/ord_[0-9a-f]+', '/{id}') AS endpoint, count(*) AS n, round(avg(duration_ns) / 1e6, 2) AS avg_ms, round(max(duration_ns) / 1e6, 2) AS max_ms FROM exchanges GROUP BY 1, 2, 3, 4 ORDER BY 1, 3, 4, 2",
    ),
    (
        "one order, inbound and outbound, joined by its trace",
        "SELECT direction, method, authority, path, status, round(duration_ns / 1e6, 2) AS ms FROM exchanges WHERE trace_id = (SELECT min(trace_id) FROM exchanges WHERE method = 'POST' AND path = '/orders') ORDER BY start_time",
    ),
    (
        "what redaction left of the secrets",
        "SELECT path, substr(header(request_headers, 'authorization'), 1, 60) AS authorization, body_text(request_body) AS request_body FROM exchanges WHERE path = '/login' LIMIT 2",
    ),
];

/// Runs the loop and returns what each stage gave; `show` prints the progress.
pub async fn run_loop(args: &DemoArgs, show: &dyn Show) -> Result<Outcome> {
    prepare_dir(&args.dir)?;
    let dir = std::path::absolute(&args.dir).unwrap_or(args.dir.clone());
    let data = dir.join("data");
    let stopper = Stopper::new();
    let result = run_stages(args, &dir, &data, &stopper, show).await;
    stopper.stop();
    result
}

async fn run_stages(
    args: &DemoArgs,
    dir: &Path,
    data: &Path,
    stopper: &Stopper,
    show: &dyn Show,
) -> Result<Outcome> {
    // 1. The collector, the sample system and the proxy.
    show.stage(
        "starting the sample system, the collector and tapedeck proxy (Envoy + filter.wasm)",
    );
    let collector_stop = Stopper::new();
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
    let store = tapedeck_collector::store::open_store(data, None)?;
    let collector = tokio::spawn(tapedeck_collector::run_with(
        CollectorArgs {
            data: data.to_path_buf(),
            flush_interval: 2,
            ..CollectorArgs::default()
        },
        listeners,
        store,
        collector_stop.signal(),
    ));
    let payments_listener = bind().await?;
    let payments = payments_listener.local_addr()?;
    spawn(
        "payments",
        shop::serve_payments(payments_listener, stopper.signal()),
    );
    let mail_listener = bind().await?;
    let mail = mail_listener.local_addr()?;
    spawn("mail", shop::serve_mail(mail_listener, stopper.signal()));
    let orders_listener = bind().await?;
    let orders = orders_listener.local_addr()?;

    let mut proxy_args = ProxyArgs::new("orders");
    proxy_args.namespace = "shop".into();
    proxy_args.pod = "orders-v1-0".into();
    proxy_args.inbound.push(proxy::Inbound {
        listen: "127.0.0.1:0".parse()?,
        app: orders,
    });
    proxy_args.outbound = Some("127.0.0.1:0".parse()?);
    for (host, address) in [(shop::PAYMENTS_HOST, payments), (shop::MAIL_HOST, mail)] {
        proxy_args.resolve.push(proxy::Resolve {
            host: host.into(),
            address,
        });
    }
    proxy_args.redact_json = vec!["password".into()];
    proxy_args.redaction_key = Some(REDACTION_KEY.into());
    proxy_args.envoy = args.envoy.clone();
    proxy_args.filter_wasm = args.filter_wasm.clone();
    let proxy = Proxy::start(&proxy_args, &grpc.to_string()).await?;
    let outbound = proxy
        .outbound()
        .context("the proxy has no outbound listener")?;
    let (inbound, _) = proxy.inbound()[0];
    spawn(
        "orders",
        shop::serve_orders(
            orders_listener,
            OrdersConfig::new(Version::V1, Some(outbound)),
            stopper.signal(),
        ),
    );
    show.line(&format!(
        "  orders v1 {orders}, payments {payments} ({}), mail {mail} ({})",
        shop::PAYMENTS_HOST,
        shop::MAIL_HOST
    ));
    show.line(&format!(
        "  collector: data {}, gRPC {grpc}, Flight SQL {flight}",
        data.display()
    ));
    show.line(&format!(
        "  $ tapedeck proxy --workload orders --inbound 127.0.0.1:{}={orders} --outbound 127.0.0.1:{} \\\n      --resolve {}={payments} --resolve {}={mail} --redact-json password --collector {grpc}",
        inbound.port(),
        outbound.port(),
        shop::PAYMENTS_HOST,
        shop::MAIL_HOST
    ));
    for line in proxy.describe().lines() {
        show.line(&format!("  {line}"));
    }
    show.line(&format!("  orders runs with HTTP_PROXY=http://{outbound}"));

    // 2. Live traffic.
    show.stage(&format!(
        "capturing live traffic: {} users log in, create and read orders",
        args.users
    ));
    let population = users::Population {
        users: args.users,
        orders_per_user: args.orders_per_user,
        read_back: 0.6,
        think: (
            Duration::from_millis(args.think_ms / 4),
            Duration::from_millis(args.think_ms),
        ),
        ramp_up: Duration::from_secs_f64(args.ramp_up_secs),
        seed: args.seed,
    };
    let tally = Arc::new(users::Tally::default());
    let users_task = tokio::spawn({
        let (population, tally) = (population.clone(), tally.clone());
        async move { users::run(inbound, &population, tally).await }
    });
    let started = Instant::now();
    while !users_task.is_finished() {
        let done = tally.read();
        show.live(&format!(
            "{:>3.0} s  users sent {} requests ({} failed, {} orders) · {}",
            started.elapsed().as_secs_f64(),
            done.requests,
            done.failures,
            done.orders,
            proxy.counts()
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let population = users_task.await.context("the population task panicked")??;
    let captured = proxy.stop().await?;
    show.live(&format!(
        "{:>3.0} s  users sent {} requests ({} failed, {} orders) · {captured}\n",
        started.elapsed().as_secs_f64(),
        population.requests,
        population.failures,
        population.orders,
    ));

    // 3. SQL and the inventory.
    show.stage("querying what was captured (tapedeck sql, tapedeck inventory)");
    let flight_url = format!("http://{flight}");
    for (title, sql) in QUERIES {
        let (schema, batches) = query_remote(&flight_url, None, sql)
            .await
            .with_context(|| format!("querying {title}"))?;
        show.line(&format!("\n{title}:\n  $ tapedeck sql \"{sql}\""));
        show.line(format_batches(&schema, &batches, args.format)?.trim_end());
    }

    // 4. The snapshot.
    show.stage("cutting a snapshot of orders (tokens and correlations discovered)");
    let snapshot_dir = dir.join("snapshot");
    let (snapshot, window) = cut_snapshot(&flight_url, &snapshot_dir, show).await?;
    // The copies start one after the other (`--ramp-up`: copy k of N starts k/N of it late),
    // each at `--speed`: side by side, every copy's logins would land in the same instant, a
    // burst whose tail is the harness's own queue and left `POST /login` inconclusive in A/A
    // about every other run (docs/local-mode.md, "Why A/A passes").
    let ramp_up = window.div_f64(args.speed.max(1e-9)) * args.copies;
    collector_stop.stop();
    collector.await.context("the collector task panicked")??;

    // 5. The responder.
    show.stage("mocking payments and mail with the responder (recorded latency, a little chaos)");
    let jwt_key = dir.join("jwt.secret");
    std::fs::write(&jwt_key, shop::JWT_SECRET).context("writing the JWT key")?;
    let secrets = dir.join("secrets.txt");
    let mut lines =
        String::from("# The demo users' passwords, by the marker the filter wrote for each.\n");
    for index in 0..args.users {
        let password = shop::password(&users::user_name(index));
        lines.push_str(&format!(
            "{}={password}\n",
            tapedeck_proto::redaction_marker(REDACTION_KEY.as_bytes(), password.as_bytes())
        ));
    }
    std::fs::write(&secrets, lines).context("writing the secrets file")?;
    let explain = dir.join("explain.jsonl");
    let respond_command = format!(
        "tapedeck respond --snapshot {} --listen 127.0.0.1:0 --admin-listen '' --explain {} --chaos {CHAOS} --seed {}",
        snapshot_dir.display(),
        explain.display(),
        args.seed
    );
    let respond: tapedeck_responder::RespondArgs = parse_args(&respond_command)?;
    let listener = bind().await?;
    let responder = tapedeck_responder::serve(respond.serve, listener, None)
        .await
        .context("starting the responder")?;
    let mock = responder.addr();
    show.line(&format!("  $ {respond_command}"));
    show.line(&format!(
        "  serving {} recorded calls on {mock}; orders under test use it as HTTP_PROXY",
        responder.metrics().recordings.load(Ordering::Relaxed)
    ));

    // 6. The replays.
    show.stage(&format!(
        "replaying at {}× against orders v1 itself (A/A: does the gate stay quiet?)",
        args.speed
    ));
    let baseline = start_orders(Version::V1, mock, stopper).await?;
    let twin = start_orders(Version::V1, mock, stopper).await?;
    let aa = replay(
        args,
        dir,
        "aa",
        &snapshot_dir,
        twin,
        baseline,
        ramp_up,
        &jwt_key,
        &secrets,
        show,
    )
    .await?;
    show.stage(&format!(
        "replaying at {}× against orders v2 with v1 as the baseline (A/B)",
        args.speed
    ));
    let baseline = start_orders(Version::V1, mock, stopper).await?;
    let candidate = start_orders(Version::V2, mock, stopper).await?;
    let ab = replay(
        args,
        dir,
        "ab",
        &snapshot_dir,
        candidate,
        baseline,
        ramp_up,
        &jwt_key,
        &secrets,
        show,
    )
    .await?;
    let metrics = responder.metrics();
    let mocked = Mocked {
        requests: metrics.requests.load(Ordering::Relaxed),
        matches: metrics
            .matches
            .iter()
            .map(|m| m.load(Ordering::Relaxed))
            .sum(),
        misses: metrics
            .misses
            .iter()
            .map(|m| m.load(Ordering::Relaxed))
            .sum(),
        faults: metrics
            .faults
            .iter()
            .map(|m| m.load(Ordering::Relaxed))
            .sum(),
    };
    responder.stop().await;

    // 7. The verdict.
    show.stage("the verdict");
    show.line(&format!(
        "  responder: {} requests, {} matched a recording, {} missed, {} with chaos faults",
        mocked.requests, mocked.matches, mocked.misses, mocked.faults
    ));
    show.line(&format!(
        "  A/A (v1 against v1): {}",
        verdict_word(aa.exit_code)
    ));
    show.line(&format!(
        "  A/B (v2 against v1): {}",
        verdict_word(ab.exit_code)
    ));
    for line in changed_fields(&aa.report, &ab.report) {
        show.line(&line);
    }
    for line in learned_noise(&ab.report) {
        show.line(&line);
    }
    show.line(&format!(
        "  HTML report: {}/report.html",
        ab.report_dir.display()
    ));
    Ok(Outcome {
        population,
        captured,
        snapshot_dir,
        snapshot,
        mocked,
        aa,
        ab,
    })
}

/// The response fields that differ in the A/B replay but never in the A/A one: what v2 changed.
fn changed_fields(aa: &Value, ab: &Value) -> Vec<String> {
    let key = |group: &Value| {
        (
            group["endpoint"].as_str().unwrap_or_default().to_owned(),
            group["field"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let quiet: std::collections::HashSet<(String, String)> = aa["diffs"]
        .as_array()
        .map(|groups| groups.iter().map(key).collect())
        .unwrap_or_default();
    let mut lines =
        vec!["  fields v2 changed (differing against v1, never in v1 against itself):".to_owned()];
    for group in ab["diffs"].as_array().into_iter().flatten() {
        if quiet.contains(&key(group)) {
            continue;
        }
        let (endpoint, field) = key(group);
        let example = &group["examples"][0];
        lines.push(format!(
            "    {endpoint} {field}: {} responses, e.g. baseline {} → candidate {}",
            group["count"], example["baseline"], example["live"]
        ));
    }
    if lines.len() == 1 {
        lines.push("    none".to_owned());
    }
    lines
}

/// The noise rules the A/B replay learned and applied (from the recording and calibration).
fn learned_noise(ab: &Value) -> Vec<String> {
    let rules = ab["noise"]["rules"].as_array().cloned().unwrap_or_default();
    let mut lines = vec![format!(
        "  noise learned ({} rules, written to noise.json beside the report):",
        rules.len()
    )];
    for rule in &rules {
        lines.push(format!(
            "    {} {} (from the {}, {} differences silenced{})",
            rule["endpoint"].as_str().unwrap_or_default(),
            rule["field"].as_str().unwrap_or_default(),
            rule["source"].as_str().unwrap_or_default(),
            rule["suppressed"],
            if rule["applied"].as_bool() == Some(false) {
                ", not applied: the candidate differs more than its evidence explains"
            } else {
                ""
            }
        ));
    }
    lines
}

fn verdict_word(code: u8) -> &'static str {
    match code {
        0 => "pass",
        1 => "FAIL",
        3 => "inconclusive",
        _ => "could not run",
    }
}

/// Parses a command line (as printed: `tapedeck <command> FLAGS…`, single quotes for values
/// with spaces) into a command's flags.
fn parse_args<A: Args>(command: &str) -> Result<A> {
    #[derive(Parser)]
    struct Wrap<A: Args> {
        #[command(flatten)]
        args: A,
    }
    let words = split_words(command);
    let argv = std::iter::once("tapedeck".to_string()).chain(words.into_iter().skip(2));
    Ok(Wrap::<A>::try_parse_from(argv)
        .with_context(|| format!("parsing `{command}`"))?
        .args)
}

/// Splits a command line at spaces, keeping single-quoted words whole.
fn split_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in command.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            ' ' | '\n' | '\\' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// Cuts the snapshot of `orders` from the collector into `dir` and prints its token rules and
/// the inventory; returns its manifest.
async fn cut_snapshot(flight_url: &str, dir: &Path, show: &dyn Show) -> Result<(Value, Duration)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let cut = Cut::new("orders", None, None, None, now)?;
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
    let window = Duration::from_nanos(manifest.window.to.0.saturating_sub(manifest.window.from.0));
    show.line(&format!(
        "\ninventory:\n  $ tapedeck inventory --service orders\n{}",
        inventory.to_table().trim_end()
    ));
    show.line(&format!(
        "\n  $ tapedeck snapshot create --service orders --out {}",
        dir.display()
    ));
    show.line(&format!(
        "snapshot {}: {} inbound requests, {} outbound calls ({} linked to the request that caused them)",
        manifest.id, manifest.counts.inbound, manifest.counts.outbound, manifest.counts.linked
    ));
    show.line("token rules (what replay does with each dynamic value):");
    for rule in &manifest.tokens {
        let to: Vec<String> = rule.to.iter().map(|l| l.describe()).collect();
        show.line(&format!(
            "  {:<10} {}{}",
            format!("{:?}", rule.replay).to_lowercase(),
            rule.name,
            if to.is_empty() {
                String::new()
            } else {
                format!(" → {}", to.join(", "))
            }
        ));
    }
    let text = std::fs::read_to_string(dir.join("snapshot.json"))
        .with_context(|| format!("reading {}/snapshot.json", dir.display()))?;
    Ok((
        serde_json::from_str(&text).context("parsing snapshot.json")?,
        window,
    ))
}

/// Replays the snapshot against `candidate` with `baseline` beside it and prints the verdict.
#[allow(clippy::too_many_arguments)] // Reason: one call site per comparison, each named.
async fn replay(
    args: &DemoArgs,
    dir: &Path,
    name: &str,
    snapshot: &Path,
    candidate: SocketAddr,
    baseline: SocketAddr,
    ramp_up: Duration,
    jwt_key: &Path,
    secrets: &Path,
    show: &dyn Show,
) -> Result<Replay> {
    let report_dir = dir.join("reports").join(name);
    let goals: String = args
        .goal
        .iter()
        .map(|goal| format!(" --goal '{goal}'"))
        .collect();
    let command = format!(
        "tapedeck replay --snapshot {} --target http://{candidate} --baseline http://{baseline} \
         --speed {} --copies {} --ramp-up {}ms --calibrate {}{goals} --min-samples {} \
         --jwt-key HS256:{} --secrets {} --report {} --progress never",
        snapshot.display(),
        args.speed,
        args.copies,
        ramp_up.as_millis(),
        args.calibrate,
        args.min_samples,
        jwt_key.display(),
        secrets.display(),
        report_dir.display()
    );
    show.line(&format!("  $ {command}"));
    let replay_args: tapedeck_generator::ReplayArgs = parse_args(&command)?;
    let started = Instant::now();
    let report = tapedeck_generator::run(replay_args, std::future::pending())
        .await
        .with_context(|| format!("replaying ({name})"))?;
    let exit_code = report.verdict().exit_code();
    let summary = report.summary();
    for line in summary.lines() {
        show.line(&format!("  {line}"));
    }
    show.line(&format!(
        "  → {} (exit code {exit_code}) in {:.1} s; report {}/report.html",
        verdict_word(exit_code),
        started.elapsed().as_secs_f64(),
        report_dir.display()
    ));
    let text = std::fs::read_to_string(report_dir.join("report.json"))
        .with_context(|| format!("reading {}/report.json", report_dir.display()))?;
    Ok(Replay {
        command,
        exit_code,
        report: serde_json::from_str(&text).context("parsing report.json")?,
        report_dir,
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_commands_split_into_their_words() {
        assert_eq!(
            split_words("tapedeck replay --goal 'p99 +25% @ 95%' --x ''"),
            ["tapedeck", "replay", "--goal", "p99 +25% @ 95%", "--x", ""]
        );
        let args = DemoArgs::new("/tmp/d");
        assert_eq!(args.speed, 10.0);
        assert_eq!(args.goal.len(), 2);
    }
}
