//! The filter benchmark: the same Envoy, with and without `filter.wasm`, under `wrk`.
//!
//! Envoy runs one worker in front of the sample service's `POST /echo`; `wrk` sends 1 KiB
//! request bodies and gets 1 KiB back. Each variant runs `--rounds` times, alternating, so that
//! drift of the machine hits both alike. Measured per run: requests/s (wrk), Envoy's CPU time
//! per request (utime + stime from `/proc/<pid>/stat` over the measured window, divided by the
//! requests wrk completed) and Envoy's RSS after the run. The filter's own cost per exchange is
//! the CPU per request with the filter minus without. The capture sink runs in this process and
//! acks every batch, so the filter does its full work (capture, redaction, encoding, pushes).
//!
//! Envoy is pinned to core 0 and everything else (this process with the sample service and the
//! sink, and wrk) to core 1, so the figures are Envoy's alone and repeat from run to run.
//!
//! Run it with `./x bench` (which builds filter.wasm, installs Envoy and wrk); the table it
//! prints goes into BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use serde_json::json;
use tapedeck_local::sample::{self, SampleConfig};
use tapedeck_local::sink::{self, SinkMode};
use tapedeck_local::{Envoy, EnvoyBootstrap, EnvoyOptions, Workload};
use tokio::net::TcpListener;

/// The same allocator as the `tapedeck` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Envoy with and without the tapedeck filter under wrk, 1 KiB bodies each way.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds wrk measures each run.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Seconds of warm-up before each measured run.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Runs per variant (alternating without / with).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Request and response body size in bytes.
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Envoy worker threads.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// JSON merged over the filter's plugin config (top-level keys replace), to measure a
    /// variant, for example '{"sampling": {"rate": 0}}'.
    #[arg(long, default_value = "{}")]
    plugin: String,
    /// Run only the capturing variant (for trying `--plugin` settings).
    #[arg(long)]
    only_filter: bool,
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

    let script = std::env::temp_dir().join(format!("tapedeck-bench-{}.lua", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = string.rep(\"a\", {})\nwrk.headers[\"Content-Type\"] = \"application/octet-stream\"\n",
            args.body_bytes
        ),
    )?;

    let mut plugin = json!({
        "version": 1,
        "collector": {"cluster": tapedeck_local::envoy::COLLECTOR_CLUSTER},
        "redaction": {"hash_key": "bench"},
    });
    let overrides: serde_json::Value =
        serde_json::from_str(&args.plugin).context("--plugin is not JSON")?;
    if let (Some(base), Some(overrides)) = (plugin.as_object_mut(), overrides.as_object()) {
        for (key, value) in overrides {
            base.insert(key.clone(), value.clone());
        }
    }
    let mut idle = plugin.clone();
    idle["capture"] = json!({"enabled": false});
    // The variants, in the order each round runs them.
    let variants: Vec<(&str, Option<serde_json::Value>)> = vec![
        ("Envoy without filter", None),
        ("Envoy + filter, capture off", Some(idle)),
        ("Envoy + filter, capturing", Some(plugin)),
    ];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); variants.len()];
    for round in 0..args.rounds {
        for (i, (name, plugin)) in variants.iter().enumerate() {
            if args.only_filter && i != 2 {
                continue;
            }
            let mut bootstrap = EnvoyBootstrap::new(app, sink_addr).workload(Workload::default());
            if let Some(plugin) = plugin {
                bootstrap = bootstrap.filter(wasm.clone(), plugin.clone());
            }
            let options = EnvoyOptions {
                concurrency: args.concurrency,
                log_level: "warn".into(),
                ..EnvoyOptions::default()
            };
            let envoy = Envoy::start(&envoy_binary, &bootstrap.render(), options).await?;
            pin(envoy.pid().context("Envoy has no pid")?, "0")?;
            let run = measure(&envoy, &args, &script).await?;
            eprintln!(
                "round {} {name:<28} {:>9.0} req/s  {:>6.1} µs CPU/req  RSS {:>6.1} MiB  captured {} dropped {}",
                round + 1,
                run.rps,
                run.cpu_us_per_request,
                run.rss_mib,
                run.captured,
                run.dropped
            );
            envoy.stop().await?;
            runs[i].push(run);
        }
    }
    let _ = std::fs::remove_file(&script);
    if args.only_filter {
        return Ok(());
    }

    let medians: Vec<Run> = runs.iter().map(|r| median(r)).collect();
    let base = medians[0];
    println!(
        "| variant | req/s | vs without | Envoy CPU µs/req | Δ CPU µs/req | Envoy RSS MiB | captured | dropped |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for ((name, _), run) in variants.iter().zip(&medians) {
        println!(
            "| {name} | {:.0} | {:.3} | {:.1} | {:+.1} | {:.1} | {} | {} |",
            run.rps,
            run.rps / base.rps,
            run.cpu_us_per_request,
            run.cpu_us_per_request - base.cpu_us_per_request,
            run.rss_mib,
            run.captured,
            run.dropped
        );
    }
    let capture = medians[2];
    let idle = medians[1];
    println!();
    println!(
        "requests measured per variant: {:?}",
        runs.iter()
            .map(|r| r.iter().map(|run| run.requests).sum::<u64>())
            .collect::<Vec<_>>()
    );
    println!(
        "throughput capturing / without: {:.3}",
        capture.rps / base.rps
    );
    println!(
        "filter CPU per exchange: {:.1} µs (of which the loaded-but-idle Wasm VM: {:.1} µs)",
        capture.cpu_us_per_request - base.cpu_us_per_request,
        idle.cpu_us_per_request - base.cpu_us_per_request
    );
    println!(
        "RSS capturing - without: {:.1} MiB",
        capture.rss_mib - base.rss_mib
    );
    println!(
        "(medians of {} runs each; {} s measured after {} s warm-up; wrk -t1 -c{}; {} B bodies; Envoy --concurrency {} pinned to core 0, wrk + sample service + sink on core 1)",
        args.rounds, args.seconds, args.warmup, args.connections, args.body_bytes, args.concurrency
    );
    Ok(())
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
    wrk(&url, script, args.connections, args.warmup).await?;
    let pid = envoy.pid().context("Envoy has no pid")?;
    let stats_before = envoy.stats().await?;
    let cpu_before = cpu_seconds(pid)?;
    let (rps, requests) = wrk(&url, script, args.connections, args.seconds).await?;
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
        captured: stat("tapedeck.exchanges_captured"),
        dropped: stat("tapedeck.exchanges_dropped.queue_full")
            + stat("tapedeck.exchanges_dropped.send_failed"),
    })
}

/// Runs wrk; returns requests/s and completed requests.
async fn wrk(url: &str, script: &Path, connections: usize, seconds: u64) -> Result<(f64, u64)> {
    let output = tokio::process::Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
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
