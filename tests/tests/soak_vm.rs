//! A filter VM that dies (docs/soak.md): the proxy-wasm SDK panics on a host status it does not
//! expect, which kills the Wasm VM. A test build of the filter (`--features panic-on-demand`,
//! profile `filter-panic`; `./x setup` builds it) panics when a request carries
//! `x-tapedeck-test-panic`. Under paced load, one such request is sent to the real Envoy with
//! each `failure_policy`, and the test measures what happens to the requests during and after
//! the crash, and whether capture resumes (the in-memory sink shows which requests arrived).
//!
//! Envoy 1.40's answers, which these tests pin: under every policy the request the VM died in
//! gets a 503. `FAIL_OPEN` then passes traffic but captures nothing more, and no stat says so.
//! `FAIL_CLOSED` fails every request after it. `FAIL_RELOAD` fails requests with 503 until its
//! reload backoff (1 s unless `reload_config` says otherwise) has passed, then starts a new VM,
//! captures again and counts `wasm.<vm_id>.vm_reload_success` / `vm_reload_backoff`.

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use tapedeck_e2e::ports::reserve_port;
use tapedeck_e2e::soak::{self, LoadResult};
use tapedeck_e2e::{Collector, Rig, RigBuilder};
use tapedeck_local::process::stat_by_suffix;
use tapedeck_local::sample::full_body;
use tapedeck_local::sink;

/// The environment variable naming the panic-on-demand test build of `filter.wasm`.
const PANIC_WASM_ENV: &str = "TAPEDECK_FILTER_PANIC_WASM";
/// The header that makes the test build panic.
const PANIC_HEADER: &str = "x-tapedeck-test-panic";
/// The paced load around the crash.
const RATE: u32 = 200;
const LOAD: Duration = Duration::from_secs(2);
/// When, into the load, the crashing request is sent.
const CRASH_AT: Duration = Duration::from_millis(500);
/// Requests sent one by one after the load, once Envoy's default reload backoff (1 s) is over.
const AFTER: usize = 20;
/// The load's connections: a dying VM fails the requests it was handling, at most one per
/// connection besides the crashing one.
const CONNECTIONS: u64 = 4;

fn panic_wasm() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(PANIC_WASM_ENV) {
        return Ok(PathBuf::from(path));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tapedeck_local::process::workspace_root().join("target"));
    let path = target.join("wasm32-wasip1/filter-panic/tapedeck_filter.wasm");
    ensure!(
        path.is_file(),
        "the panic-on-demand filter is not at {} (and ${PANIC_WASM_ENV} is not set); build it with \
         `cargo build -p tapedeck-filter --target wasm32-wasip1 --profile filter-panic --features panic-on-demand` \
         (./x setup does)",
        path.display()
    );
    Ok(path)
}

/// What one crash did.
#[derive(Debug)]
struct Outcome {
    /// The crashing request's status (or its error).
    crash: String,
    /// The load around the crash.
    during: LoadResult,
    /// Of the requests sent after the load: failed, and captured (arrived at the sink).
    after_failed: usize,
    after_captured: usize,
    /// Envoy's reload counters for the VM.
    reload_success: u64,
    reload_backoff: u64,
}

impl Outcome {
    fn line(&self, policy: &str) -> String {
        format!(
            "| {policy} | {} | {} | {} | {AFTER} | {} | {} | {} | {} |",
            self.crash,
            self.during.latencies.len() as u64 + self.during.failed,
            self.during.failed,
            self.after_failed,
            self.after_captured,
            self.reload_success,
            self.reload_backoff
        )
    }
}

/// One crash (the request with the panic header at `CRASH_AT`), or with `every`, a crash
/// trigger that persists: every `every`-th request of the load carries the header.
async fn crash(wasm_config: Option<Value>, every: Option<usize>) -> Result<(Rig, Outcome)> {
    let mut builder = RigBuilder::new().wasm(panic_wasm()?);
    if let Some(overrides) = &wasm_config {
        builder = builder.wasm_config(overrides.clone());
    }
    let mut rig = builder.start().await?;
    let mark = every.map(|every| (PANIC_HEADER, every));
    let load = tokio::spawn(soak::load(
        rig.url("/echo"),
        "during",
        LOAD,
        RATE,
        CONNECTIONS as usize,
        128,
        mark,
    ));
    let crash = if every.is_some() {
        format!("every {}th", every.unwrap_or(0))
    } else {
        tokio::time::sleep(CRASH_AT).await;
        let request = rig
            .request("GET", "/hello")
            .header(PANIC_HEADER, "1")
            .body(full_body(""))?;
        match rig.send(request).await {
            Ok(reply) => reply.status.to_string(),
            Err(error) => format!("{error:#}"),
        }
    };
    let during = load.await.context("the load task died")?;
    // Whatever the load captured is not counted below.
    sink::collect_for(&mut rig.received, Duration::from_millis(1200)).await;
    let mut after_failed = 0;
    for i in 0..AFTER {
        let request = rig
            .request("GET", "/hello")
            .header("x-request-id", format!("after-{i}"))
            .body(full_body(""))?;
        if !matches!(rig.send(request).await, Ok(reply) if reply.status == 200) {
            after_failed += 1;
        }
    }
    let arrived = sink::collect_for(&mut rig.received, Duration::from_secs(2)).await;
    let after_captured = arrived
        .exchanges()
        .filter(|e| e.trace_id.starts_with("after-"))
        .count();
    let stats = rig.envoy.stats().await?;
    let outcome = Outcome {
        crash,
        during,
        after_failed,
        after_captured,
        reload_success: stat_by_suffix(&stats, "vm_reload_success").unwrap_or(0),
        reload_backoff: stat_by_suffix(&stats, "vm_reload_backoff").unwrap_or(0),
    };
    eprintln!(
        "| policy | crashing request | requests around it | failed | sent after | failed after | captured after | vm_reload_success | vm_reload_backoff |\n{}",
        outcome.line(&format!("{wasm_config:?}"))
    );
    Ok((rig, outcome))
}

fn policy(name: &str) -> Option<Value> {
    Some(json!({"failure_policy": name}))
}

#[tokio::test]
async fn fail_open_passes_traffic_but_a_dead_vm_captures_nothing_more() -> Result<()> {
    let (rig, outcome) = crash(policy("FAIL_OPEN"), None).await?;
    assert_eq!(outcome.crash, "503", "{outcome:?}");
    // Only requests the dying VM was handling fail; everything after passes, uncaptured.
    assert!(outcome.during.failed <= CONNECTIONS + 1, "{outcome:?}");
    assert_eq!(outcome.after_failed, 0, "{outcome:?}");
    assert_eq!(outcome.after_captured, 0, "{outcome:?}");
    // And Envoy counts nothing: the VM is dead silently.
    assert_eq!(outcome.reload_success + outcome.reload_backoff, 0);
    let captured = rig.stat(soak::stat::CAPTURED).await?;
    ensure!(captured > 0, "nothing was captured before the crash");
    Ok(())
}

#[tokio::test]
async fn fail_closed_fails_every_request_after_the_crash() -> Result<()> {
    let (_rig, outcome) = crash(policy("FAIL_CLOSED"), None).await?;
    assert_eq!(outcome.crash, "503", "{outcome:?}");
    assert_eq!(outcome.after_failed, AFTER, "{outcome:?}");
    assert_eq!(outcome.after_captured, 0, "{outcome:?}");
    // Every request of the load after the crash failed.
    let expected_failures = RATE as f64 * (LOAD - CRASH_AT).as_secs_f64();
    assert!(
        outcome.during.failed as f64 >= expected_failures * 0.5,
        "{outcome:?}"
    );
    Ok(())
}

#[tokio::test]
async fn fail_reload_replaces_a_dead_vm_and_captures_again() -> Result<()> {
    let (_rig, outcome) = crash(policy("FAIL_RELOAD"), None).await?;
    assert_eq!(outcome.crash, "503", "{outcome:?}");
    // The backoff (1 s by default) counts from the VM's last load, which was longer ago: the
    // next request gets a new VM at once, and only the crashing request fails.
    assert!(outcome.during.failed <= CONNECTIONS + 1, "{outcome:?}");
    // Then a new VM captures everything again, and the reload is counted.
    assert_eq!(outcome.after_failed, 0, "{outcome:?}");
    assert_eq!(outcome.after_captured, AFTER, "{outcome:?}");
    assert!(outcome.reload_success >= 1, "{outcome:?}");
    Ok(())
}

/// The default of local mode (`EnvoyBootstrap`): `FAIL_RELOAD` with a 50 ms reload backoff.
#[tokio::test]
async fn the_local_default_reloads_a_dead_vm_at_once_and_counts_it() -> Result<()> {
    let (_rig, outcome) = crash(None, None).await?;
    assert_eq!(outcome.crash, "503", "{outcome:?}");
    // Only the requests within the short backoff fail.
    assert!(
        outcome.during.failed as f64 <= f64::from(RATE) * 0.1,
        "{outcome:?}"
    );
    assert_eq!(outcome.after_failed, 0, "{outcome:?}");
    assert_eq!(outcome.after_captured, AFTER, "{outcome:?}");
    assert!(outcome.reload_success >= 1, "{outcome:?}");
    Ok(())
}

/// Every 20th request triggers the panic (a bug that keeps firing): 20 of the 400.
const TRIGGERS: u64 = 20;

#[tokio::test]
async fn a_crash_loop_under_fail_open_fails_one_request_and_ends_capture() -> Result<()> {
    let (_rig, outcome) = crash(policy("FAIL_OPEN"), Some(20)).await?;
    assert!(outcome.during.failed <= CONNECTIONS + 1, "{outcome:?}");
    assert_eq!(outcome.after_failed, 0, "{outcome:?}");
    assert_eq!(outcome.after_captured, 0, "{outcome:?}");
    Ok(())
}

#[tokio::test]
async fn a_crash_loop_under_fail_reload_fails_the_triggering_requests_and_keeps_capturing()
-> Result<()> {
    let (_rig, outcome) = crash(policy("FAIL_RELOAD"), Some(20)).await?;
    // Each trigger kills the VM (its request fails, and so may the few others the dying VM was
    // handling); the next request gets a new VM.
    assert!(
        (TRIGGERS..=2 * TRIGGERS).contains(&outcome.during.failed),
        "{outcome:?}"
    );
    assert!(outcome.reload_success >= TRIGGERS / 2, "{outcome:?}");
    assert_eq!(outcome.after_failed, 0, "{outcome:?}");
    assert_eq!(outcome.after_captured, AFTER, "{outcome:?}");
    Ok(())
}

/// The collector's names for what a dead or reloaded VM looks like (docs/soak.md).
const VM_STARTS: &str =
    "tapedeck_collector_filter_vm_starts_total{workload=\"soak-vm\",namespace=\"test\"}";
const LAST_PUSH: &str = "tapedeck_collector_filter_last_push_timestamp_seconds{workload=\"soak-vm\",namespace=\"test\"}";
/// The filter's heartbeat in these tests: an idle VM pushes at least this often.
const HEARTBEAT: Duration = Duration::from_millis(200);

/// The real collector (`tapedeck collector`) and Envoy with the panic-on-demand filter under
/// `policy`, pushing to it with a short heartbeat.
async fn with_collector(policy: &str) -> Result<(soak::CollectorProcess, Rig, tempfile::TempDir)> {
    let data = tempfile::Builder::new()
        .prefix("tapedeck-soak-vm-")
        .tempdir()?;
    let (grpc, http) = (reserve_port()?, reserve_port()?);
    let collector = soak::CollectorProcess::start(
        &soak::find_tapedeck()?,
        data.path(),
        grpc,
        http,
        &["--flush-interval".to_string(), "2".to_string()],
    )
    .await?;
    let rig = RigBuilder::new()
        .wasm(panic_wasm()?)
        .wasm_config(json!({"failure_policy": policy}))
        .collector(Collector::At(grpc))
        .plugin(json!({
            "workload": "soak-vm",
            "namespace": "test",
            "queue": {"heartbeat_interval_ms": HEARTBEAT.as_millis() as u64},
        }))
        .start()
        .await?;
    // A VM heartbeats once it has handled a request (Envoy's main-thread VM never does).
    for _ in 0..3 {
        let reply = rig.get("/hello").await?;
        ensure!(reply.status == 200, "a plain request got {}", reply.status);
    }
    Ok((collector, rig, data))
}

/// The collector's VM-start counter and last-push gauge for the test's workload.
async fn vm_metrics(collector: &soak::CollectorProcess) -> Result<(f64, f64)> {
    let metrics = collector.metrics().await?;
    let get = |name: &str| metrics.get(name).copied().unwrap_or(0.0);
    Ok((get(VM_STARTS), get(LAST_PUSH)))
}

/// Watches the collector for `window`, sampling every tenth of a heartbeat: the VM-start counter
/// at the end and how often the last-push gauge moved.
async fn watch(collector: &soak::CollectorProcess, window: Duration) -> Result<(f64, usize)> {
    let end = tokio::time::Instant::now() + window;
    let (mut starts, mut last) = vm_metrics(collector).await?;
    let mut advances = 0;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(HEARTBEAT / 10).await;
        let (now_starts, now_last) = vm_metrics(collector).await?;
        if now_last > last {
            advances += 1;
        }
        (starts, last) = (now_starts, now_last);
    }
    Ok((starts, advances))
}

/// Sends one request with the panic header (the VM dies in it: 503 under every policy), then
/// `plain` plain requests; returns how many of those failed.
async fn crash_then(rig: &Rig, plain: usize) -> Result<usize> {
    let request = rig
        .request("GET", "/hello")
        .header(PANIC_HEADER, "1")
        .body(full_body(""))?;
    let reply = rig.send(request).await?;
    ensure!(
        reply.status == 503,
        "the crashing request got {}",
        reply.status
    );
    let mut failed = 0;
    for _ in 0..plain {
        if !matches!(rig.get("/hello").await, Ok(reply) if reply.status == 200) {
            failed += 1;
        }
    }
    Ok(failed)
}

#[tokio::test]
async fn a_reloaded_vm_steps_the_collectors_vm_start_counter_by_one() -> Result<()> {
    let (collector, rig, _data) = with_collector("FAIL_RELOAD").await?;
    // Idle, the VM that served the requests pushes heartbeats: the gauge advances.
    let (before, advances) = watch(&collector, HEARTBEAT * 10).await?;
    ensure!(
        advances >= 3,
        "an idle filter pushed {advances} times in 10 heartbeats"
    );
    ensure!(before >= 1.0, "the collector saw no VM start ({before})");
    assert_eq!(crash_then(&rig, 5).await?, 0);
    // The reload is a new VM id: one more start, and no other.
    let (after, advances) = watch(&collector, HEARTBEAT * 10).await?;
    eprintln!("FAIL_RELOAD: VM starts {before} -> {after}; pushes after: {advances}");
    assert_eq!(after, before + 1.0, "VM starts {before} -> {after}");
    assert!(
        advances >= 3,
        "the new VM pushed {advances} times in 10 heartbeats"
    );
    assert!(rig.stat("vm_reload_success").await? >= 1);
    Ok(())
}

#[tokio::test]
async fn a_dead_vm_under_fail_open_stops_the_collectors_last_push_gauge() -> Result<()> {
    let (collector, rig, _data) = with_collector("FAIL_OPEN").await?;
    let (before, advances) = watch(&collector, HEARTBEAT * 10).await?;
    ensure!(
        advances >= 3,
        "an idle filter pushed {advances} times in 10 heartbeats"
    );
    // Traffic passes the dead VM, and nothing of it reaches the collector any more: pushes
    // under way at the crash settle within two heartbeats, then the gauge stands still.
    assert_eq!(crash_then(&rig, 5).await?, 0);
    watch(&collector, HEARTBEAT * 2).await?;
    let (_, stale) = vm_metrics(&collector).await?;
    let (after, advances) = watch(&collector, HEARTBEAT * 10).await?;
    let (_, still) = vm_metrics(&collector).await?;
    eprintln!("FAIL_OPEN: VM starts {before} -> {after}; last push {stale} -> {still}");
    assert_eq!(advances, 0, "the last-push gauge moved after the VM died");
    assert_eq!(still, stale);
    assert_eq!(after, before, "a VM start was counted under FAIL_OPEN");
    Ok(())
}
