//! The generator: replays the recorded inbound requests of a snapshot against a build under
//! test, with tokens that are valid now, under a load model, and reports pass or fail.
//!
//! `tapedeck replay --snapshot DIR --target URL …` composes it: [`ReplayArgs`] are its flags and
//! [`run`] its entry point. The parts:
//! - [`plan`]: what each recorded request needs (its sources, by the analyzer's discovery join
//!   rules; the rules that re-sign and re-date its values; its redaction markers);
//! - [`live`]: per-session correlation maps, waits for sources, and the live request, built in
//!   the order substitute → resign → shift → secrets → fresh tracing and transport headers;
//! - [`load`]: the recorded-pace, open (`--rate`) and closed (`--concurrency`) models;
//! - [`client`]: HTTP/1.1, HTTP/2 (h2c, TLS with ALPN) and gRPC over pooled connections;
//! - [`diff`]: live responses compared with the recorded ones (the verdict extends it);
//! - [`stats`], [`slo`], [`report`]: HDR histograms, goals, and the JSON / JUnit / HTML report.
//!
//! Users read `generator/README.md`; the report format is `docs/replay-report.md`.
#![warn(missing_docs)]

pub mod client;
pub mod compare;
pub mod diff;
pub mod live;
pub mod load;
pub mod noise;
pub mod plan;
mod progress;
pub use progress::When;
pub mod report;
pub mod secrets;
pub mod shard;
pub mod slo;
pub mod stats;
pub mod verdict;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tapedeck_analyzer::replay::jwt::JwtKey;

pub use report::Report;
pub use slo::Verdict;

/// What can go wrong before or during a replay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A report file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The snapshot could not be read or planned.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// A `--target` is wrong.
    #[error("--target {0}")]
    Target(String),
    /// TLS could not be set up.
    #[error("tls: {0}")]
    Tls(String),
    /// The `--jwt-key` or a `--jwt-claim` is wrong.
    #[error("--jwt-key: {0}")]
    Jwt(String),
    /// The secrets file is wrong.
    #[error("--secrets {0}")]
    Secrets(String),
    /// A goal is wrong.
    #[error("--slo: {0}")]
    Slo(String),
    /// The noise file is wrong, or a rule in it is over-broad.
    #[error("--noise {0}")]
    Noise(String),
    /// A `--goal`, `--warmup` or another gate argument is wrong.
    #[error("{0}")]
    Gate(#[from] verdict::Error),
    /// Another argument is wrong.
    #[error("{0}")]
    Args(String),
    /// `--strict-redacted` and markers without a secret.
    #[error(
        "--strict-redacted: {count} redacted values have no secret (first: {first}); give them in --secrets FILE"
    )]
    Unresolved {
        /// How many.
        count: u64,
        /// The first, as `endpoint: location`.
        first: String,
    },
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `tapedeck replay` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReplayArgs {
    /// The snapshot directory to replay (its inbound.jsonl).
    #[arg(long, env = "TAPEDECK_SNAPSHOT")]
    pub snapshot: PathBuf,

    /// Where to send: a URL (`http://127.0.0.1:8080`), or HOST=URL to send the requests recorded
    /// for one authority elsewhere (`orders=http://127.0.0.1:8080`; HOST matches the recorded
    /// authority, its host, or the host's first label). Repeatable; in the environment,
    /// separated by spaces.
    #[arg(long, env = "TAPEDECK_TARGET", required = true, value_delimiter = ' ')]
    pub target: Vec<String>,

    /// The baseline (the version in production) to compare the target with: URL or HOST=URL,
    /// mapped by host as --target is. Every request goes to both, one after the other (the
    /// first arm drawn per request), with the same tokens, counting once against the load model;
    /// the gate (--goal) compares their latencies and errors, and responses are compared three
    /// ways (recorded, baseline, candidate). Repeatable; in the environment, separated by
    /// spaces.
    #[arg(long, env = "TAPEDECK_BASELINE", value_delimiter = ' ')]
    pub baseline: Vec<String>,

    /// Before the run, replay the recording N times against the baseline paired with itself
    /// (A/A) and learn noise from it: comparators where the values differ by type (timestamps,
    /// UUIDs, ids, float jitter, reordered arrays), noise rules elsewhere (written to
    /// noise.json in the report directory). Needs --baseline.
    #[arg(long, env = "TAPEDECK_CALIBRATE", default_value_t = 0)]
    pub calibrate: u32,

    /// A noise file (JSON, version 1, docs/verdict.md): comparators per field and noise rules.
    /// The run writes the rules it used, learned ones included, as noise.json in the report
    /// directory.
    #[arg(long, env = "TAPEDECK_NOISE")]
    pub noise: Option<PathBuf>,

    /// The statistical gate against the baseline.
    #[command(flatten)]
    pub gate: verdict::GateArgs,

    /// Recorded pace: divide the recorded offsets by this (2 = twice as fast).
    #[arg(long, env = "TAPEDECK_SPEED", default_value_t = 1.0)]
    pub speed: f64,

    /// Parallel copies of the recorded stream, each with its own sessions and tokens.
    #[arg(long, env = "TAPEDECK_COPIES", default_value_t = 1)]
    pub copies: u32,

    /// Open model: send at this fixed rate (requests per second), latency counted from each
    /// request's intended send time.
    #[arg(long, env = "TAPEDECK_RATE", conflicts_with = "concurrency")]
    pub rate: Option<f64>,

    /// Closed model: this many workers, each sending its next request when the last is answered.
    #[arg(long, env = "TAPEDECK_CONCURRENCY")]
    pub concurrency: Option<u32>,

    /// Stop sending after this long (`30s`, `2m`, `500ms`).
    #[arg(long, env = "TAPEDECK_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Passes over the recording (default 1 when no --duration is given; unbounded otherwise).
    #[arg(long, env = "TAPEDECK_ITERATIONS")]
    pub iterations: Option<u32>,

    /// Ramp-up: copies (recorded pace) or workers (closed model) start spread over this time;
    /// the open model's rate rises linearly over it.
    #[arg(long, env = "TAPEDECK_RAMP_UP", value_parser = parse_duration, default_value = "0s")]
    pub ramp_up: Duration,

    /// Timeout of one request.
    #[arg(long, env = "TAPEDECK_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,

    /// The key that re-signs recorded JWTs: `[ALG:]PATH[#KID]` (a PEM private key: RS256 or
    /// ES256 by default; any other file: an HMAC secret, HS256 by default).
    #[arg(long, env = "TAPEDECK_JWT_KEY")]
    pub jwt_key: Option<String>,

    /// A claim set in every re-signed JWT: NAME=VALUE (VALUE as JSON when it parses, else a
    /// string), e.g. `iss=https://auth.test`. Repeatable.
    #[arg(long, env = "TAPEDECK_JWT_CLAIM")]
    pub jwt_claim: Vec<String>,

    /// The real values of redaction markers: a file of `MARKER=VALUE` lines (see
    /// generator/README.md).
    #[arg(long, env = "TAPEDECK_SECRETS")]
    pub secrets: Option<PathBuf>,

    /// Refuse to run when a request carries a redaction marker with no secret.
    #[arg(long, env = "TAPEDECK_STRICT_REDACTED")]
    pub strict_redacted: bool,

    /// A response field not compared: `FIELD` or `METHOD /template FIELD`, where FIELD is
    /// `status`, `header NAME`, a JSON path (`$.updated_at`, covering what is under it) or
    /// `body`. Repeatable; in the environment, separated by commas.
    #[arg(long, env = "TAPEDECK_IGNORE", value_delimiter = ',')]
    pub ignore: Vec<String>,

    /// Response headers compared with the recorded ones (default: content-type). Repeatable or
    /// comma-separated.
    #[arg(
        long,
        env = "TAPEDECK_COMPARE_HEADER",
        value_delimiter = ',',
        default_value = "content-type"
    )]
    pub compare_header: Vec<String>,

    /// Goals that decide pass (exit 0) or fail (exit 1): `p99<250ms,errors<1%,rps>=500`, or a
    /// file of them.
    #[arg(long, env = "TAPEDECK_SLO")]
    pub slo: Option<String>,

    /// Write the report here: report.json, junit.xml and report.html.
    #[arg(long, env = "TAPEDECK_REPORT")]
    pub report: Option<PathBuf>,

    /// At most this many requests in flight per target (and so at most this many HTTP/1.1
    /// connections); more wait for a slot, and the wait counts in their latency.
    #[arg(long, env = "TAPEDECK_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,

    /// PEM file of the CA certificates trusted on https:// targets.
    #[arg(long, env = "TAPEDECK_CA_CERT")]
    pub ca_cert: Option<PathBuf>,

    /// The progress line on standard error: auto (only on a terminal), always or never.
    #[arg(long, env = "TAPEDECK_PROGRESS", default_value = "auto")]
    pub progress: When,

    /// Replay only shard K of N (`0/4`): the copies with `copy % N == K`, under their global
    /// numbers, so N runs side by side replay every copy once; `tapedeck replay merge` merges
    /// their reports (histograms merged, not averaged).
    #[arg(long, env = "TAPEDECK_SHARD", value_parser = shard::parse_shard)]
    pub shard: Option<shard::Shard>,

    /// `tapedeck replay merge DIR… --out DIR`: merge shards' reports.
    #[command(subcommand)]
    pub command: Option<shard::ReplayCommand>,
}

/// The gate's flags at their defaults (as `tapedeck replay` without gate flags), for programs
/// that build [`ReplayArgs`] by hand.
pub fn gate_defaults() -> verdict::GateArgs {
    use clap::{Args as _, FromArgMatches as _};
    let command = verdict::GateArgs::augment_args(clap::Command::new("replay"));
    let matches = command.get_matches_from(["replay"]);
    verdict::GateArgs::from_arg_matches(&matches)
        .unwrap_or_else(|e| unreachable!("the gate's defaults parse: {e}"))
}

/// Parses `500ms`, `30s`, `2m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (500ms, 30s, 2m, 1h)"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

fn jwt_claims(specs: &[String]) -> Result<Vec<(String, serde_json::Value)>> {
    specs
        .iter()
        .map(|spec| {
            let (name, value) = spec
                .split_once('=')
                .ok_or_else(|| Error::Jwt(format!("--jwt-claim {spec:?}: expected NAME=VALUE")))?;
            let value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
            Ok((name.to_owned(), value))
        })
        .collect()
}

/// Replays a snapshot as `args` say until done or `shutdown` resolves (then stops sending and
/// lets requests in flight settle), writes the report when asked, and returns it; its
/// [`Report::verdict`] gives the exit code.
pub async fn run(
    args: ReplayArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Report> {
    let snapshot = tapedeck_analyzer::snapshot::read(&args.snapshot)
        .map_err(|e| Error::Snapshot(format!("{}: {e}", args.snapshot.display())))?;
    let plan = plan::plan(&snapshot)?;
    let targets = client::Targets::parse(&args.target)?;
    let secrets = match &args.secrets {
        Some(path) => secrets::read(path)?,
        None => Default::default(),
    };
    let unresolved = plan::unresolved_markers(&plan, &secrets);
    if args.strict_redacted
        && let Some(((endpoint, location), _)) = unresolved.iter().next()
    {
        return Err(Error::Unresolved {
            count: unresolved.values().sum(),
            first: format!("{endpoint}: {location}"),
        });
    }
    let jwt_key = args
        .jwt_key
        .as_deref()
        .map(JwtKey::parse_spec)
        .transpose()
        .map_err(|e| Error::Jwt(e.to_string()))?;
    let goals = match &args.slo {
        Some(spec) => slo::parse(spec)?,
        None => Vec::new(),
    };
    if args.copies == 0 || args.speed <= 0.0 || args.rate.is_some_and(|r| r <= 0.0) {
        return Err(Error::Args(
            "--copies, --speed and --rate must be positive".to_owned(),
        ));
    }
    let model = match (args.rate, args.concurrency) {
        (Some(rate), _) => load::Model::Rate(rate),
        (None, Some(c)) => load::Model::Concurrency(c.max(1)),
        (None, None) => load::Model::Recorded {
            speed: args.speed / plan.sample_rate,
        },
    };
    let bounds = load::Bounds {
        iterations: args.iterations.or(if args.duration.is_none() {
            Some(1)
        } else {
            None
        }),
        duration: args.duration,
        ramp_up: args.ramp_up,
        copies: args.shard.unwrap_or_default().copies(args.copies),
    };
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let offset_ns = now_ns - plan.window.0 as i64;
    let iteration_ns = match model {
        load::Model::Recorded { speed } => {
            ((plan.window.1 - plan.window.0).max(plan.span_ns) as f64 / speed) as i64
        }
        _ => 0,
    };
    let context = live::Context::new(
        &plan,
        jwt_key,
        jwt_claims(&args.jwt_claim)?,
        secrets,
        offset_ns,
        iteration_ns,
    );
    let clients =
        client::Clients::new(args.timeout, args.max_connections, args.ca_cert.as_deref())?;
    let ignores = args.ignore.iter().map(|i| diff::Ignore::parse(i)).collect();
    let skips = diff::Skips::new(ignores);
    let headers: Vec<String> = args
        .compare_header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();

    // Noise: the file, the snapshot's token rules, then what the recording teaches.
    let fields = noise::endpoint_fields(&plan, &headers);
    let file = match &args.noise {
        Some(path) => noise::read(path, &fields)?,
        None => noise::NoiseFile::default(),
    };
    let thresholds = file.thresholds;
    let plausible = {
        let window = plan.plausible();
        let now_s = now_ns / 1_000_000_000;
        (*window.start()).min(now_s - 86_400)..=(*window.end()).max(now_s + 86_400)
    };
    let mut sets = noise::file_sets(&file);
    for rule in &snapshot.manifest.tokens {
        for location in std::iter::once(&rule.at).chain(&rule.to) {
            if location.direction == tapedeck_analyzer::tokens::Flow::Inbound
                && location.message == tapedeck_analyzer::tokens::Side::Response
                && let Some(field) = compare::location_field(location)
            {
                sets.push(compare::Set {
                    endpoint: location.endpoint.clone(),
                    field,
                    comparator: compare::token_comparator(rule.kind),
                    origin: compare::Origin::TokenRule(rule.name.clone()),
                });
            }
        }
    }
    let deterministic = deterministic_paths(&snapshot, &plan);
    let mut learned = noise::Learned::default();
    let mut rules: Vec<(noise::NoiseRule, String)> = file
        .rules
        .iter()
        .map(|r| (r.clone(), "file".to_owned()))
        .collect();
    {
        let comparer = compare::Comparer::new(headers.clone(), sets.clone(), plausible.clone());
        let recording = learn_from_recording(&plan, &comparer, &deterministic, &skips);
        let mut from_recording = recording.finish(&thresholds, &fields);
        learned.comparators.append(&mut from_recording.comparators);
        learned.rules.append(&mut from_recording.rules);
        learned.refused.append(&mut from_recording.refused);
    }
    let baseline = if args.baseline.is_empty() {
        None
    } else {
        Some(client::Targets::parse(&args.baseline).map_err(|e| match e {
            Error::Target(why) => Error::Args(format!("--baseline {why}")),
            other => other,
        })?)
    };
    let gate_goals = args.gate.goals()?;
    let gate_config = args.gate.config()?;
    let mut calibration = None;
    if args.calibrate > 0 {
        let Some(baseline) = &baseline else {
            return Err(Error::Args(
                "--calibrate needs --baseline (it replays the baseline against itself)".to_owned(),
            ));
        };
        let comparer = compare::Comparer::new(
            headers.clone(),
            with_learned(&sets, &learned.comparators),
            plausible.clone(),
        );
        let context = live::Context::new(
            &plan,
            context.jwt_key.clone(),
            context.jwt_claims.clone(),
            context.secrets.clone(),
            offset_ns,
            iteration_ns,
        );
        let calibrate_clients =
            client::Clients::new(args.timeout, args.max_connections, args.ca_cert.as_deref())?;
        let mut engine = load::Engine::new(
            plan.clone(),
            context,
            calibrate_clients,
            baseline.clone(),
            comparer,
            skips.clone(),
        )
        .with_baseline(baseline.clone());
        engine.deterministic = deterministic.clone();
        engine.learner = Some(std::sync::Mutex::new(noise::Learner::new(
            noise::Source::Calibration,
        )));
        let engine = Arc::new(engine);
        let calibrate_bounds = load::Bounds {
            iterations: Some(args.calibrate),
            duration: None,
            ramp_up: Duration::ZERO,
            copies: 1,
        };
        tracing::info!(
            passes = args.calibrate,
            "Calibrating: the baseline against itself."
        );
        load::drive(
            engine.clone(),
            model,
            calibrate_bounds,
            Arc::new(AtomicBool::new(false)),
        )
        .await;
        let learner = engine
            .learner
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_else(|| noise::Learner::new(noise::Source::Calibration));
        let pairs = learner.pairs();
        let mut from_calibration = learner.finish(&thresholds, &fields);
        learned
            .comparators
            .append(&mut from_calibration.comparators);
        learned.rules.append(&mut from_calibration.rules);
        learned.refused.append(&mut from_calibration.refused);
        calibration = Some(report::Calibration {
            passes: args.calibrate,
            pairs,
        });
    }
    for rule in &learned.rules {
        let source = rule.evidence.as_ref().map_or("file", |e| e.source.as_str());
        rules.push((rule.clone(), source.to_owned()));
    }
    for refused in &learned.refused {
        tracing::warn!(
            endpoint = %refused.endpoint,
            field = %refused.field,
            source = %refused.source,
            "Learned noise rule refused: {}",
            refused.error
        );
    }
    let comparer = compare::Comparer::new(
        headers,
        with_learned(&sets, &learned.comparators),
        plausible,
    );
    let settings = report::Settings::of(&args, &plan, model, &targets);
    let mut engine = load::Engine::new(plan, context, clients, targets, comparer, skips);
    engine.shard = args.shard.unwrap_or_default();
    engine.deterministic = deterministic;
    if let Some(baseline) = &baseline {
        engine = engine.with_baseline(baseline.clone());
    }
    let engine = Arc::new(engine);
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let started_at = now_ns;
    let progress = progress::start(args.progress, engine.clone(), args.duration);
    load::drive(engine.clone(), model, bounds, stop).await;
    let elapsed = engine.started.elapsed();
    stopper.abort();
    progress.finish().await;
    let gate = baseline.as_ref().map(|_| {
        let stats = engine.stats.lock().unwrap_or_else(|e| e.into_inner());
        verdict::evaluate(&gate_config, &gate_goals, &stats.samples)
    });
    let noise_setup = report::NoiseSetup {
        file,
        learned_comparators: learned.comparators,
        rules,
        refused: learned.refused,
        calibration,
    };
    let (report, noise_file) = Report::build(
        &engine,
        settings,
        &goals,
        started_at,
        elapsed,
        &noise_setup,
        gate,
    );
    if let Some(dir) = &args.report {
        report.write(dir)?;
        noise::write(&noise_file, &dir.join(noise::NOISE_FILE))?;
        let stats = engine.stats.lock().unwrap_or_else(|e| e.into_inner());
        // What `tapedeck ui` needs to decide the differences again under other noise rules.
        report::Rediff::of(&report, &stats.diffs, &noise_setup, &goals, &fields).write(dir)?;
        shard::write_histograms(&stats, dir)?;
        if baseline.is_some() {
            // `replay merge` evaluates the gate once over every shard's samples.
            shard::write_gate(&gate_config, &gate_goals, &stats.samples, dir)?;
        }
    }
    Ok(report)
}

/// The comparator sets and the learned comparators after them (origin `Learned(i)`).
fn with_learned(sets: &[compare::Set], learned: &[noise::ComparatorRule]) -> Vec<compare::Set> {
    let mut out = sets.to_vec();
    for (i, c) in learned.iter().enumerate() {
        if let Ok(comparator) = noise::to_comparator(c) {
            out.push(compare::Set {
                endpoint: c.endpoint.clone(),
                field: c.field.clone(),
                comparator,
                origin: compare::Origin::Learned(i),
            });
        }
    }
    out
}

/// Per line, the JSON paths of its recorded response whose values came from mocks: the leaves
/// of the recorded outbound responses it caused (`caused_by`).
fn deterministic_paths(
    snapshot: &tapedeck_analyzer::snapshot::Snapshot,
    plan: &plan::Plan,
) -> Vec<HashSet<String>> {
    let mut mocks: BTreeMap<&str, HashSet<String>> = BTreeMap::new();
    for entry in &snapshot.outbound {
        if let (Some(by), Some(body)) = (&entry.caused_by, &entry.response.body) {
            compare::leaf_texts(body.as_bytes(), mocks.entry(by.as_str()).or_default());
        }
    }
    snapshot
        .inbound
        .iter()
        .zip(&plan.lines)
        .map(|(entry, line)| match mocks.get(entry.id.as_str()) {
            Some(m) => compare::deterministic_paths(&line.response.body, m),
            None => HashSet::new(),
        })
        .collect()
}

/// Learns from recorded responses to identical requests (same method, path and body): each
/// such response compared with the previous one.
fn learn_from_recording(
    plan: &plan::Plan,
    comparer: &compare::Comparer,
    deterministic: &[HashSet<String>],
    skips: &diff::Skips,
) -> noise::Learner {
    let mut learner = noise::Learner::new(noise::Source::Recording);
    let mut last: BTreeMap<(&str, &str, &[u8]), usize> = BTreeMap::new();
    for (i, line) in plan.lines.iter().enumerate() {
        let key = (
            line.method.as_str(),
            line.path.as_str(),
            line.request.body.as_slice(),
        );
        if let Some(&prev) = last.get(&key) {
            let p = &plan.lines[prev];
            let clock = |l: &plan::Planned| ((plan.window.0 + l.offset_ns) / 1_000_000_000) as i64;
            let outcomes = comparer.compare(
                &line.endpoint,
                diff::ResponseView {
                    status: p.status,
                    message: &p.response,
                    trailers: &p.response_trailers,
                },
                diff::ResponseView {
                    status: line.status,
                    message: &line.response,
                    trailers: &line.response_trailers,
                },
                compare::Clocks {
                    left: clock(p),
                    right: clock(line),
                },
                deterministic.get(i),
                skips,
                true,
            );
            learner.add(&line.endpoint, &outcomes);
        }
        last.insert(key, i);
    }
    learner
}
