//! The filter benchmark: the same Envoy without filters, with `filter.wasm` idle and capturing
//! at several sampling rates, and with Envoy's native tap filter, under `wrk`.
//!
//! Envoy runs one worker in front of the sample service's `POST /echo`; `wrk` sends request
//! bodies of each `--body-bytes` size and gets the same size back. Each round runs every variant
//! once, one after another, so that drift of the machine hits all alike. Measured per run:
//! requests/s (wrk), Envoy's CPU time per request (utime + stime from `/proc/<pid>/stat` over
//! the measured window, divided by the requests wrk completed) and Envoy's RSS after the run.
//! A variant's cost per exchange is its CPU per request minus that of Envoy without filters.
//! The capture sink runs in this process and acks every batch, so the filter does its full
//! work (capture, redaction, encoding, pushes).
//!
//! The peer is Envoy's own `envoy.filters.http.tap` capturing the same exchanges: `any_match`,
//! bodies buffered up to the filter's `capture.max_body_bytes`, one
//! `PROTO_BINARY_LENGTH_DELIMITED` file per tap on tmpfs (`--tap-dir`, /dev/shm), which this
//! process deletes as they come so tmpfs does not fill; its `rq_tapped` counter is reported.
//! The tap bootstrap is checked with `envoy --mode validate` first.
//!
//! Envoy is pinned to core 0 and everything else (this process with the sample service and the
//! sink, and wrk) to core 1, so the figures are Envoy's alone.
//!
//! Run it with `./x bench filter` (which builds filter.wasm, installs Envoy and wrk); the table
//! it prints goes into BENCHMARKS.md. It lives in `tapedeck-local` so that its release build
//! does not compile the collector.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use tapedeck_local::sample::{self, SampleConfig};
use tapedeck_local::sink::{self, SinkMode};
use tapedeck_local::{Envoy, EnvoyBootstrap, EnvoyOptions, Workload};
use tokio::net::TcpListener;

/// The same allocator as the `tapedeck` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The filter's `capture.max_body_bytes` default, which the native tap buffers up to as well.
const MAX_BODY_BYTES: usize = 65536;

/// Envoy without filters, with filter.wasm (idle, capturing at sampling 1, 0.1 and 0.01) and
/// with Envoy's native tap filter, under wrk.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds wrk measures each run.
    #[arg(long, env = "TAPEDECK_BENCH_SECONDS", default_value_t = 10)]
    seconds: u64,
    /// Seconds of warm-up before each measured run.
    #[arg(long, env = "TAPEDECK_BENCH_WARMUP", default_value_t = 3)]
    warmup: u64,
    /// Rounds; each runs every variant once.
    #[arg(long, env = "TAPEDECK_BENCH_ROUNDS", default_value_t = 3)]
    rounds: usize,
    /// wrk connections.
    #[arg(long, env = "TAPEDECK_BENCH_CONNECTIONS", default_value_t = 32)]
    connections: usize,
    /// wrk's per-request timeout in seconds (a timed-out request fails the run).
    #[arg(long, env = "TAPEDECK_BENCH_WRK_TIMEOUT", default_value_t = 2)]
    wrk_timeout: u64,
    /// Request and response body sizes in bytes; every variant runs with each.
    #[arg(
        long,
        env = "TAPEDECK_BENCH_BODY_BYTES",
        value_delimiter = ',',
        default_value = "1024,16384"
    )]
    body_bytes: Vec<usize>,
    /// Envoy worker threads.
    #[arg(long, env = "TAPEDECK_BENCH_CONCURRENCY", default_value_t = 1)]
    concurrency: usize,
    /// JSON merged over the filter's plugin config (top-level keys replace), for example
    /// '{"queue": {"flush_interval_ms": 200}}'.
    #[arg(long, env = "TAPEDECK_BENCH_PLUGIN", default_value = "{}")]
    plugin: String,
    /// Run only these variants: bare, idle, capture, sample-0.1, sample-0.01, tap.
    #[arg(long, env = "TAPEDECK_BENCH_ONLY", value_delimiter = ',')]
    only: Vec<String>,
    /// Where the native tap writes its files (tmpfs).
    #[arg(long, env = "TAPEDECK_BENCH_TAP_DIR", default_value = "/dev/shm")]
    tap_dir: PathBuf,
}

/// What a variant runs in front of the app.
#[derive(Debug, Clone)]
enum Setup {
    Bare,
    Filter(Value),
    Tap,
}

#[derive(Debug, Clone)]
struct Variant {
    key: &'static str,
    name: &'static str,
    setup: Setup,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    rps: f64,
    requests: u64,
    cpu_us_per_request: f64,
    rss_mib: f64,
    captured: u64,
    dropped: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    // Envoy gets core 0 to itself; this process (sample service, sink) and wrk share core 1, so
    // that the load generator and the collector do not steal Envoy's CPU.
    pin(std::process::id(), "1")?;
    let envoy_binary = tapedeck_local::find_envoy()?;
    let wasm = tapedeck_local::find_filter_wasm()?;
    which("wrk")?;
    let load_before = loadavg();

    let sink_listener = TcpListener::bind("127.0.0.1:0").await?;
    let sink_addr = sink_listener.local_addr()?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(sink::serve(
        sink_listener,
        SinkMode::Accept,
        tx,
        std::future::pending(),
    ));
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let app_listener = TcpListener::bind("127.0.0.1:0").await?;
    let app = app_listener.local_addr()?;
    tokio::spawn(sample::serve(
        app_listener,
        SampleConfig::default(),
        std::future::pending(),
    ));

    let mut plugin = json!({
        "version": 1,
        "collector": {"cluster": tapedeck_local::envoy::COLLECTOR_CLUSTER},
        "redaction": {"hash_key": "bench"},
    });
    let overrides: Value = serde_json::from_str(&args.plugin).context("--plugin is not JSON")?;
    if let (Some(base), Some(overrides)) = (plugin.as_object_mut(), overrides.as_object()) {
        for (key, value) in overrides {
            base.insert(key.clone(), value.clone());
        }
    }
    let with = |key: &str, value: Value| {
        let mut config = plugin.clone();
        config[key] = value;
        config
    };
    let all = vec![
        Variant {
            key: "bare",
            name: "Envoy without filters",
            setup: Setup::Bare,
        },
        Variant {
            key: "idle",
            name: "filter, capture off",
            setup: Setup::Filter(with("capture", json!({"enabled": false}))),
        },
        Variant {
            key: "capture",
            name: "filter, sampling 1.0",
            setup: Setup::Filter(plugin.clone()),
        },
        Variant {
            key: "sample-0.1",
            name: "filter, sampling 0.1",
            setup: Setup::Filter(with("sampling", json!({"rate": 0.1}))),
        },
        Variant {
            key: "sample-0.01",
            name: "filter, sampling 0.01",
            setup: Setup::Filter(with("sampling", json!({"rate": 0.01}))),
        },
        Variant {
            key: "tap",
            name: "native tap filter",
            setup: Setup::Tap,
        },
    ];
    let variants: Vec<Variant> = all
        .into_iter()
        .filter(|v| args.only.is_empty() || args.only.iter().any(|key| key == v.key))
        .collect();
    if variants.is_empty() {
        bail!("--only names no variant (bare, idle, capture, sample-0.1, sample-0.01, tap)");
    }

    // The native tap writes a file per exchange; they are counted and deleted as they come.
    let tap_dir = args
        .tap_dir
        .join(format!("tapedeck-bench-taps-{}", std::process::id()));
    std::fs::create_dir_all(&tap_dir).with_context(|| format!("creating {}", tap_dir.display()))?;
    let tap_prefix = tap_dir.join("tap");
    let tap_files = Arc::new(AtomicU64::new(0));
    let tap_bytes = Arc::new(AtomicU64::new(0));
    {
        let (dir, files, bytes) = (tap_dir.clone(), tap_files.clone(), tap_bytes.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let (dir, files, bytes) = (dir.clone(), files.clone(), bytes.clone());
                let _ = tokio::task::spawn_blocking(move || sweep(&dir, &files, &bytes)).await;
            }
        });
    }
    if variants.iter().any(|v| matches!(v.setup, Setup::Tap)) {
        let bootstrap = EnvoyBootstrap::new(app, sink_addr).tap(&tap_prefix, MAX_BODY_BYTES);
        tapedeck_local::validate(&envoy_binary, &bootstrap.render())
            .await
            .context("envoy --mode validate refused the native tap bootstrap")?;
        eprintln!("native tap bootstrap: envoy --mode validate OK");
    }

    let mut tables = Vec::new();
    for &body_bytes in &args.body_bytes {
        let script =
            std::env::temp_dir().join(format!("tapedeck-bench-{}.lua", std::process::id()));
        std::fs::write(
            &script,
            format!(
                "wrk.method = \"POST\"\nwrk.body = string.rep(\"a\", {body_bytes})\nwrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n"
            ),
        )?;
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); variants.len()];
        for round in 0..args.rounds {
            for (i, variant) in variants.iter().enumerate() {
                let mut bootstrap =
                    EnvoyBootstrap::new(app, sink_addr).workload(Workload::default());
                match &variant.setup {
                    Setup::Bare => {}
                    Setup::Filter(plugin) => {
                        bootstrap = bootstrap.filter(wasm.clone(), plugin.clone());
                    }
                    Setup::Tap => bootstrap = bootstrap.tap(&tap_prefix, MAX_BODY_BYTES),
                }
                let options = EnvoyOptions {
                    concurrency: args.concurrency,
                    log_level: "warn".into(),
                    ..EnvoyOptions::default()
                };
                let envoy = Envoy::start(&envoy_binary, &bootstrap.render(), options).await?;
                pin(envoy.pid().context("Envoy has no pid")?, "0")?;
                let files_before = tap_files.load(Ordering::Relaxed);
                let run = measure(&envoy, &args, &script).await?;
                eprintln!(
                    "{body_bytes} B round {} {:<24} {:>8.0} req/s {:>6.1} µs CPU/req  RSS {:>6.1} MiB  captured {} dropped {}{}",
                    round + 1,
                    variant.name,
                    run.rps,
                    run.cpu_us_per_request,
                    run.rss_mib,
                    run.captured,
                    run.dropped,
                    if matches!(variant.setup, Setup::Tap) {
                        format!(
                            " (tap files so far this run: {})",
                            tap_files.load(Ordering::Relaxed) - files_before
                        )
                    } else {
                        String::new()
                    }
                );
                envoy.stop().await?;
                runs[i].push(run);
            }
        }
        let _ = std::fs::remove_file(&script);
        tables.push((body_bytes, runs));
    }
    sweep(&tap_dir, &tap_files, &tap_bytes);
    let _ = std::fs::remove_dir_all(&tap_dir);

    let load_after = loadavg();
    for (body_bytes, runs) in &tables {
        let medians: Vec<Run> = runs.iter().map(|r| median(r)).collect();
        let base = variants
            .iter()
            .position(|v| matches!(v.setup, Setup::Bare))
            .map(|i| medians[i]);
        println!();
        println!("{body_bytes} B bodies each way:");
        println!();
        println!(
            "| variant | req/s | vs bare | Envoy CPU µs/req | Δ CPU µs/req | Envoy RSS MiB | captured / tapped | dropped |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
        for (variant, run) in variants.iter().zip(&medians) {
            let (ratio, delta) = match base {
                Some(base) if !matches!(variant.setup, Setup::Bare) => (
                    format!("{:.3}", run.rps / base.rps),
                    format!("{:+.1}", run.cpu_us_per_request - base.cpu_us_per_request),
                ),
                Some(_) => ("1.000".into(), "—".into()),
                None => ("".into(), "".into()),
            };
            println!(
                "| {} | {:.0} | {ratio} | {:.1} | {delta} | {:.1} | {} | {} |",
                variant.name,
                run.rps,
                run.cpu_us_per_request,
                run.rss_mib,
                group(run.captured),
                run.dropped
            );
        }
        println!();
        println!(
            "requests measured per variant: {:?}",
            runs.iter()
                .map(|r| r.iter().map(|run| run.requests).sum::<u64>())
                .collect::<Vec<_>>()
        );
    }
    println!();
    println!(
        "(medians of {} rounds; {} s measured after {} s warm-up; wrk -t1 -c{}; Envoy --concurrency {} pinned to core 0, wrk + sample service + sink on core 1; native tap files written: {} ({:.1} MiB), deleted as they came)",
        args.rounds,
        args.seconds,
        args.warmup,
        args.connections,
        args.concurrency,
        tap_files.load(Ordering::Relaxed),
        tap_bytes.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
    );
    println!("load average before: {load_before}; after: {load_after}");
    Ok(())
}

/// Counts and deletes the tap files written so far.
fn sweep(dir: &Path, files: &AtomicU64, bytes: &AtomicU64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        if std::fs::remove_file(entry.path()).is_ok() {
            files.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(size, Ordering::Relaxed);
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Pins every thread of a process to the given CPU list (`taskset -a -p -c`).
fn pin(pid: u32, cpus: &str) -> Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset could not pin process {pid} to CPU {cpus}");
    }
    Ok(())
}

fn median(runs: &[Run]) -> Run {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|x, y| x.rps.total_cmp(&y.rps));
    sorted[sorted.len() / 2]
}

async fn measure(envoy: &Envoy, args: &Args, script: &Path) -> Result<Run> {
    let url = format!("http://{}/echo", envoy.inbound_addr());
    wrk(&url, script, args, args.warmup).await?;
    let pid = envoy.pid().context("Envoy has no pid")?;
    let stats_before = envoy.stats().await?;
    let cpu_before = cpu_seconds(pid)?;
    let (rps, requests) = wrk(&url, script, args, args.seconds).await?;
    let cpu_after = cpu_seconds(pid)?;
    // Let the last flush land before reading the filter's counters.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stats_after = envoy.stats().await?;
    let stat = |name: &str| {
        let after = tapedeck_local::process::stat_by_suffix(&stats_after, name).unwrap_or(0);
        let before = tapedeck_local::process::stat_by_suffix(&stats_before, name).unwrap_or(0);
        after.saturating_sub(before)
    };
    Ok(Run {
        rps,
        requests,
        cpu_us_per_request: (cpu_after - cpu_before) * 1e6 / requests.max(1) as f64,
        rss_mib: rss_kib(pid)? / 1024.0,
        captured: stat("tapedeck.exchanges_captured") + stat("tap.rq_tapped"),
        dropped: stat("tapedeck.exchanges_dropped.queue_full")
            + stat("tapedeck.exchanges_dropped.send_failed"),
    })
}

/// Runs wrk; returns requests/s and completed requests.
async fn wrk(url: &str, script: &Path, args: &Args, seconds: u64) -> Result<(f64, u64)> {
    let output = tokio::process::Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{}", args.connections),
            &format!("-d{seconds}s"),
            &format!("--timeout={}s", args.wrk_timeout),
            "-s",
        ])
        .arg(script)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk saw errors:\n{text}");
    }
    let rps = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let requests = text
        .lines()
        .find_map(|line| {
            line.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().to_string())
        })
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no request count in wrk output:\n{text}"))?;
    Ok((rps, requests))
}

fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .context("reading Envoy's /proc stat")?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / clock_ticks()?)
}

fn clock_ticks() -> Result<f64> {
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

fn rss_kib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading Envoy's /proc status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc status")
}

fn which(program: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .with_context(|| format!("{program} is not on the PATH (./x bench installs it)"))
}
