//! The capture path under faults: the real Envoy with the built `filter.wasm` in front of the
//! sample service, sustained client load on loopback, and the real collector as a child process
//! of the `tapedeck` binary, which the soak kills with SIGKILL and restarts on the same data
//! directory, makes slow (SIGSTOP / SIGCONT), makes refuse (`RESOURCE_EXHAUSTED` from its own
//! `--buffer-max-bytes` and `--min-free-disk` knobs) and stops.
//!
//! [`run`] measures, phase by phase: requests sent and failed at the client and their latency,
//! the filter's counters from Envoy's stats (captured, sent, dropped by reason), what the
//! collector stored (by `tapedeck sql` on its data directory once it stopped), the drops the
//! collector was told about (`dropped_since_last`), and the resident memory of Envoy and of the
//! collector over time. The test (`tests/tests/soak.rs`) asserts on the report;
//! `./x bench soak` (`bench-soak`) prints it for BENCHMARKS.md. docs/soak.md explains it.

use anyhow::{Context as _, Result, bail, ensure};
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;
use tapedeck_local::process::stat_by_suffix;
use tapedeck_local::sample::{ClientBody, full_body};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::ports::reserve_port;
use crate::{Collector, Rig, RigBuilder};

/// The environment variable naming the `tapedeck` binary the soak runs the collector with.
pub const TAPEDECK_BIN_ENV: &str = "TAPEDECK_BIN";

/// The filter's counters, as Envoy shows them (suffixes of `wasmcustom.…`).
pub mod stat {
    /// Exchanges queued for the collector.
    pub const CAPTURED: &str = "tapedeck.exchanges_captured";
    /// Exchanges the collector acknowledged.
    pub const SENT: &str = "tapedeck.exchanges_sent";
    /// Exchanges dropped because the outbox was full.
    pub const QUEUE_FULL: &str = "tapedeck.exchanges_dropped.queue_full";
    /// Exchanges dropped because their push failed.
    pub const SEND_FAILED: &str = "tapedeck.exchanges_dropped.send_failed";
    /// Bytes waiting in the outbox.
    pub const QUEUE_BYTES: &str = "tapedeck.queue_bytes";
    /// Drops no stored batch has reported to the collector yet.
    pub const DROPS_UNREPORTED: &str = "tapedeck.drops_unreported";
    /// Pushes the collector acknowledged.
    pub const BATCHES_SENT: &str = "tapedeck.batches_sent";
}

/// The collector metric counting the drops filters reported (`dropped_since_last`).
const COLLECTOR_FILTER_DROPPED: &str = "tapedeck_collector_filter_dropped_exchanges_total";
/// The collector metric counting refused batches, by reason.
const COLLECTOR_REJECTED: &str = "tapedeck_collector_batches_rejected_total";
/// The collector metric counting stored batches.
const COLLECTOR_BATCHES: &str = "tapedeck_collector_batches_received_total";
/// How long the soak waits for the filter's drop reports to reach a running collector.
const REPORT_WAIT: Duration = Duration::from_secs(20);
/// How often the filter sends what it queued.
const FILTER_FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// How long a SIGKILLed collector stays down before it is started again: several of the
/// filter's send intervals, so that pushes find nothing listening whatever the restart takes.
/// (Restarted at once, a kill between two pushes on a fast machine cost no push at all: the
/// new collector was up before the filter's next send, and the fault went unseen.)
const KILL_DOWNTIME: Duration = Duration::from_millis(250);

/// Finds the `tapedeck` binary: `$TAPEDECK_BIN`, else `debug/tapedeck` under
/// `$CARGO_TARGET_DIR` (or the workspace's `target`).
pub fn find_tapedeck() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(TAPEDECK_BIN_ENV) {
        let path = PathBuf::from(path);
        ensure!(
            path.is_file(),
            "${TAPEDECK_BIN_ENV} is {}, which is not a file",
            path.display()
        );
        return Ok(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tapedeck_local::process::workspace_root().join("target"));
    let path = target.join("debug/tapedeck");
    ensure!(
        path.is_file(),
        "the tapedeck binary is not at {} (and ${TAPEDECK_BIN_ENV} is not set); build it with \
         `cargo build -p tapedeck`",
        path.display()
    );
    Ok(path)
}

/// What the collector is put through during one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: the reference run.
    None,
    /// SIGKILL twice, each time restarted 250 ms later on the same data directory and port.
    Kill,
    /// Frozen (SIGSTOP) for `slow_pause` out of every two, resumed (SIGCONT) in between.
    Slow,
    /// Restarted with a buffer so small (`--buffer-max-bytes`) that pushes arriving while it
    /// flushes are refused with `RESOURCE_EXHAUSTED`.
    BufferFull,
    /// Restarted with a free-disk floor above the disk's size (`--min-free-disk`): every push is
    /// refused with `RESOURCE_EXHAUSTED`.
    DiskFloor,
    /// Stopped (SIGTERM) for the phase: nothing listens on its port.
    Down,
    /// Nothing, after all the faults: capture is whole again.
    After,
}

impl Fault {
    /// The phase's name, which also starts its requests' `x-request-id`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Kill => "kill",
            Fault::Slow => "slow",
            Fault::BufferFull => "bufferfull",
            Fault::DiskFloor => "diskfloor",
            Fault::Down => "down",
            Fault::After => "after",
        }
    }

    /// The fault a phase name stands for.
    pub fn from_name(name: &str) -> Option<Fault> {
        [
            Fault::None,
            Fault::Kill,
            Fault::Slow,
            Fault::BufferFull,
            Fault::DiskFloor,
            Fault::Down,
            Fault::After,
        ]
        .into_iter()
        .find(|fault| fault.name() == name)
    }

    /// Whether a push can be stored without the filter learning it was (its answer lost to a
    /// kill or a timeout).
    pub fn may_lose_acks(self) -> bool {
        matches!(self, Fault::Kill | Fault::Slow)
    }
}

/// How to run the soak.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The `tapedeck` binary the collector runs as.
    pub tapedeck: PathBuf,
    /// The phases, in order; each one's name must be unique.
    pub phases: Vec<Fault>,
    /// How long the load runs in each phase.
    pub phase: Duration,
    /// Requests per second, over all client connections.
    pub rate: u32,
    /// Client connections (each sends one request at a time, paced).
    pub connections: usize,
    /// The request body size in bytes (JSON, echoed back).
    pub body_bytes: usize,
    /// The filter's push timeout.
    pub push_timeout: Duration,
    /// The filter's outbox bound in exchanges (per VM).
    pub queue_max_exchanges: usize,
    /// The filter's outbox bound in bytes (per VM).
    pub queue_max_bytes: usize,
    /// The collector's `--buffer-max-bytes` outside the `BufferFull` phase.
    pub buffer_max_bytes: u64,
    /// The collector's `--buffer-max-bytes` in the `BufferFull` phase.
    pub full_buffer_bytes: u64,
    /// How long each freeze of the `Slow` phase lasts.
    pub slow_pause: Duration,
    /// How often memory is sampled.
    pub sample_every: Duration,
}

impl Plan {
    /// The CI soak: every fault once, about a minute of load in all.
    pub fn ci(tapedeck: PathBuf) -> Self {
        Self {
            tapedeck,
            phases: vec![
                Fault::None,
                Fault::Kill,
                Fault::Slow,
                Fault::BufferFull,
                Fault::DiskFloor,
                Fault::Down,
                Fault::After,
            ],
            phase: Duration::from_secs(7),
            rate: 100,
            connections: 4,
            body_bytes: 512,
            push_timeout: Duration::from_millis(2000),
            queue_max_exchanges: 64,
            queue_max_bytes: 256 * 1024,
            buffer_max_bytes: 16 * 1024 * 1024,
            full_buffer_bytes: 4096,
            slow_pause: Duration::from_millis(800),
            sample_every: Duration::from_millis(200),
        }
    }
}

/// One phase's figures.
#[derive(Debug, Clone, Default)]
pub struct PhaseReport {
    /// The phase's fault.
    pub name: &'static str,
    /// Requests the client sent.
    pub sent: u64,
    /// Requests that failed at the client (an error, a status other than 200, a wrong body).
    pub failed: u64,
    /// Client latency percentiles and maximum.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The slowest request.
    pub max: Duration,
    /// Filter: exchanges queued (`exchanges_captured`).
    pub captured: u64,
    /// Filter: exchanges the collector acknowledged (`exchanges_sent`).
    pub acked: u64,
    /// Filter: dropped, outbox full.
    pub queue_full: u64,
    /// Filter: dropped, push failed (collector down, killed, refusing, too slow).
    pub send_failed: u64,
    /// Collector: exchanges of this phase found in the store at the end (by `x-request-id`).
    pub stored: u64,
    /// Collector: distinct exchange ids among them (equal to `stored`: nothing twice).
    pub stored_ids: u64,
    /// Collector: refused batches by reason, in this phase.
    pub rejected: HashMap<String, u64>,
    /// Collector: drops it was told about in this phase (`dropped_since_last` of the batches it
    /// stored, summed over its lifetimes). Every phase ends with every drop reported (the
    /// filter's `drops_unreported` at 0), so this equals `queue_full + send_failed` unless a
    /// batch was stored and its answer lost (see [`PhaseReport::unacked_batches`]).
    pub reported: u64,
    /// Collector: batches it stored in this phase (summed over its lifetimes; a SIGKILLed
    /// lifetime's batches after its last reading are missing).
    pub stored_batches: u64,
    /// Filter: pushes the collector acknowledged in this phase.
    pub acked_batches: u64,
    /// Envoy's peak resident memory during the phase, bytes.
    pub envoy_peak_rss: u64,
    /// The collector's peak resident memory during the phase, bytes (0 while it was down).
    pub collector_peak_rss: u64,
}

impl PhaseReport {
    /// Exchanges stored although their push counted as failed (the answer was lost to a kill
    /// or a timeout): `stored - acked`.
    pub fn stored_unacked(&self) -> i64 {
        self.stored as i64 - self.acked as i64
    }

    /// Drops that happened at the filter: `queue_full + send_failed`.
    pub fn dropped(&self) -> u64 {
        self.queue_full + self.send_failed
    }

    /// Batches the collector stored (and counted) whose answer the filter never got:
    /// `stored_batches - acked_batches`, at least 0. Such a batch's drop report is counted by
    /// the collector and, its push having failed, carried forward by the filter again: the one
    /// case where the collector is told of a drop twice. A SIGKILL cannot cause it (the killed
    /// lifetime's count after its last reading is lost with it, and the soak reads it only when
    /// no report is on the way); a push that outlived the filter's timeout on a live collector can.
    pub fn unacked_batches(&self) -> u64 {
        self.stored_batches.saturating_sub(self.acked_batches)
    }
}

/// The whole soak's figures.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Per phase, in order.
    pub phases: Vec<PhaseReport>,
    /// Envoy's resident memory over time: (seconds since start, bytes, phase index).
    pub envoy_rss: Vec<(f64, u64, usize)>,
    /// The collector's resident memory over time (while it ran).
    pub collector_rss: Vec<(f64, u64, usize)>,
    /// The collector's resident memory when it was first ready, before any load.
    pub collector_idle_rss: u64,
    /// Drops the collector was told about (`dropped_since_last` of the batches it stored),
    /// summed over its lifetimes, each read when no drop report was on its way.
    pub reported_dropped: u64,
    /// Filter totals at the end: captured + queue_full == every request.
    pub total_requests: u64,
    /// Total stored rows (any phase, any id).
    pub stored_rows: u64,
}

impl Report {
    /// The reference phase.
    pub fn baseline(&self) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.name == Fault::None.name())
    }

    /// A Markdown table of the phases, for BENCHMARKS.md.
    pub fn table(&self) -> String {
        let base = self.baseline().map_or(Duration::ZERO, |b| b.p99);
        let mut out = String::from(
            "| scenario | requests sent | failed | p50 ms | p99 ms | p99 / no-fault | max ms | captured | acked | stored | stored unacked | dropped queue_full | dropped send_failed | drops reported to collector | refused batches | Envoy peak RSS MiB | collector peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for p in &self.phases {
            let mut rejected: Vec<_> = p.rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
            rejected.sort();
            out += &format!(
                "| {} | {} | {} | {:.1} | {:.1} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |\n",
                p.name,
                p.sent,
                p.failed,
                ms(p.p50),
                ms(p.p99),
                if base.is_zero() {
                    0.0
                } else {
                    p.p99.as_secs_f64() / base.as_secs_f64()
                },
                ms(p.max),
                p.captured,
                p.acked,
                p.stored,
                p.stored_unacked(),
                p.queue_full,
                p.send_failed,
                p.reported,
                if rejected.is_empty() {
                    "-".to_string()
                } else {
                    rejected.join(", ")
                },
                mib(p.envoy_peak_rss),
                mib(p.collector_peak_rss),
            );
        }
        out
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Resident memory of `pid` in bytes (`VmRSS` of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn signal(pid: u32, signal: i32) -> Result<()> {
    let pid = i32::try_from(pid).context("a pid above i32")?;
    // SAFETY: kill(2) with a pid of our own child and a valid signal number.
    let status = unsafe { libc::kill(pid, signal) };
    ensure!(
        status == 0,
        "kill({pid}, {signal}) failed: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// A collector running as `tapedeck collector`, a child of this process.
#[derive(Debug)]
pub struct CollectorProcess {
    child: Child,
    pid: u32,
    http: SocketAddr,
}

impl CollectorProcess {
    /// Starts `tapedeck collector` on `data` with its gRPC and HTTP ports and `extra` flags;
    /// returns once `/readyz` answers 200 (after write-ahead log recovery).
    pub async fn start(
        tapedeck: &Path,
        data: &Path,
        grpc: SocketAddr,
        http: SocketAddr,
        extra: &[String],
    ) -> Result<Self> {
        let mut child = Command::new(tapedeck)
            .args(["--log", "warn", "collector", "--data"])
            .arg(data)
            .args(["--grpc-listen", &grpc.to_string()])
            .args(["--http-listen", &http.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} collector", tapedeck.display()))?;
        let pid = child.id().context("the collector exited at once")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("the collector exited during start ({status})");
            }
            if let Ok((200, _)) = http_get(http, "/readyz").await {
                return Ok(Self { child, pid, http });
            }
            ensure!(
                Instant::now() < deadline,
                "the collector was not ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its Prometheus metrics (`/metrics`), by name with labels (`name{label="v"}`).
    pub async fn metrics(&self) -> Result<HashMap<String, f64>> {
        let (status, body) = http_get(self.http, "/metrics").await?;
        ensure!(status == 200, "/metrics answered {status}");
        Ok(body
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect())
    }

    /// SIGKILL, and wait for the exit.
    pub async fn kill9(mut self) -> Result<()> {
        signal(self.pid, libc::SIGKILL)?;
        let status = self.child.wait().await?;
        ensure!(!status.success(), "the collector survived SIGKILL");
        Ok(())
    }

    /// SIGTERM (the collector flushes its buffer to Parquet and exits), and wait for the exit.
    pub async fn terminate(mut self) -> Result<()> {
        signal(self.pid, libc::SIGTERM)?;
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("the collector did not exit within 60 s of SIGTERM")??;
        ensure!(
            status.success(),
            "the collector exited with {status} after SIGTERM"
        );
        Ok(())
    }

    /// Freezes (SIGSTOP) or resumes (SIGCONT) the process.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        signal(self.pid, if frozen { libc::SIGSTOP } else { libc::SIGCONT })
    }
}

/// A minimal HTTP/1.1 GET on loopback (the collector's HTTP port): status and body.
async fn http_get(address: SocketAddr, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            )
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        anyhow::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .context("GET timed out")??;
    let status = answer
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .context("not an HTTP answer")?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// What one phase's load saw at the client.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// The latency of every request that succeeded.
    pub latencies: Vec<Duration>,
    /// Requests that failed.
    pub failed: u64,
    /// What the first failure was.
    pub first_failure: Option<String>,
}

/// Sends `rate` requests per second over `connections` paced connections for `duration`,
/// `POST /echo` to `url` with a JSON body and `x-request-id: {phase}-{n}`; checks every answer.
/// With `mark`, every `mark.1`-th request also carries the header `mark.0: 1`.
pub async fn load(
    url: String,
    phase: &'static str,
    duration: Duration,
    rate: u32,
    connections: usize,
    body_bytes: usize,
    mark: Option<(&'static str, usize)>,
) -> LoadResult {
    let client: Client<HttpConnector, ClientBody> =
        Client::builder(TokioExecutor::new()).build_http();
    let counter = Arc::new(AtomicUsize::new(0));
    let interval = Duration::from_secs_f64(connections as f64 / f64::from(rate.max(1)));
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let (client, url, counter) = (client.clone(), url.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut result = LoadResult::default();
            // Connections start spread over one interval.
            let mut next =
                Instant::now() + interval.mul_f64(connection as f64 / connections as f64);
            while next < end {
                tokio::time::sleep_until(next).await;
                next += interval;
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let body = format!(
                    "{{\"phase\":\"{phase}\",\"n\":{n},\"pad\":\"{}\"}}",
                    "x".repeat(body_bytes.saturating_sub(40))
                );
                let started = Instant::now();
                let marked = mark.filter(|&(_, every)| n % every.max(1) == every.max(1) - 1);
                let outcome = send(
                    &client,
                    &url,
                    &format!("{phase}-{n}"),
                    marked.map(|(name, _)| name),
                    body.clone(),
                )
                .await;
                let elapsed = started.elapsed();
                match outcome {
                    Ok(answer) if answer == body.as_bytes() => result.latencies.push(elapsed),
                    Ok(answer) => {
                        result.failed += 1;
                        result.first_failure.get_or_insert(format!(
                            "request {phase}-{n}: wrong body {:?}",
                            String::from_utf8_lossy(&answer)
                        ));
                    }
                    Err(error) => {
                        result.failed += 1;
                        result
                            .first_failure
                            .get_or_insert(format!("request {phase}-{n}: {error:#}"));
                    }
                }
            }
            result
        }));
    }
    let mut all = LoadResult::default();
    for task in tasks {
        match task.await {
            Ok(result) => {
                all.latencies.extend(result.latencies);
                all.failed += result.failed;
                if all.first_failure.is_none() {
                    all.first_failure = result.first_failure;
                }
            }
            Err(error) => {
                all.failed += 1;
                all.first_failure
                    .get_or_insert(format!("a load task died: {error}"));
            }
        }
    }
    all
}

async fn send(
    client: &Client<HttpConnector, ClientBody>,
    url: &str,
    id: &str,
    mark: Option<&str>,
    body: String,
) -> Result<Bytes> {
    let mut request = Request::post(url)
        .header("content-type", "application/json")
        .header("x-request-id", id);
    if let Some(name) = mark {
        request = request.header(name, "1");
    }
    let request = request.body(full_body(body))?;
    let response = tokio::time::timeout(Duration::from_secs(10), async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    })
    .await
    .context("no answer within 10 s")??;
    ensure!(response.0 == 200, "status {}", response.0);
    Ok(response.1)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The filter counters the soak reads.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    captured: u64,
    acked: u64,
    queue_full: u64,
    send_failed: u64,
    acked_batches: u64,
}

impl Counters {
    fn read(stats: &HashMap<String, u64>) -> Self {
        let get = |name| stat_by_suffix(stats, name).unwrap_or(0);
        Self {
            captured: get(stat::CAPTURED),
            acked: get(stat::SENT),
            queue_full: get(stat::QUEUE_FULL),
            send_failed: get(stat::SEND_FAILED),
            acked_batches: get(stat::BATCHES_SENT),
        }
    }

    fn dropped(self) -> u64 {
        self.queue_full + self.send_failed
    }

    fn minus(self, before: Self) -> Self {
        Self {
            captured: self.captured - before.captured,
            acked: self.acked - before.acked,
            queue_full: self.queue_full - before.queue_full,
            send_failed: self.send_failed - before.send_failed,
            acked_batches: self.acked_batches - before.acked_batches,
        }
    }
}

/// Waits until the filter has settled every request so far: each one counted as captured or
/// dropped for a full outbox, and each captured one acknowledged or dropped for a failed push
/// (the outbox empty, nothing in flight), and every drop reported to the (running, accepting)
/// collector in a batch it stored.
async fn settle(rig: &Rig, requests: u64, timeout: Duration) -> Result<Counters> {
    let stats = rig
        .envoy
        .wait_for_stats(timeout, |stats| {
            let c = Counters::read(stats);
            c.captured + c.queue_full == requests
                && c.acked + c.send_failed == c.captured
                && stat_by_suffix(stats, stat::QUEUE_BYTES).unwrap_or(1) == 0
                && stat_by_suffix(stats, stat::DROPS_UNREPORTED).unwrap_or(1) == 0
        })
        .await
        .with_context(|| format!("waiting for the filter to settle {requests} requests"))?;
    Ok(Counters::read(&stats))
}

/// Waits until no drop report is on its way (every drop so far reported in a batch the running
/// collector stored and acknowledged, so counted there), then runs `read` and checks that no
/// drop happened meanwhile: once this returns, the collector's drop count is complete, and
/// stays so until the next drop. Used before a collector lifetime ends (SIGKILL or SIGTERM), so
/// that no report is lost with it.
async fn quiesce_reports(rig: &Rig, collectors: &mut Collectors) -> Result<()> {
    let quiet = |stats: &HashMap<String, u64>| {
        stat_by_suffix(stats, stat::DROPS_UNREPORTED).unwrap_or(1) == 0
    };
    let deadline = Instant::now() + REPORT_WAIT;
    loop {
        let before = rig
            .envoy
            .wait_for_stats(deadline.saturating_duration_since(Instant::now()), quiet)
            .await
            .context("waiting for the filter's drop reports to reach the collector")?;
        collectors.close_reports().await?;
        let after = rig.envoy.stats().await?;
        if quiet(&after) && Counters::read(&after).dropped() == Counters::read(&before).dropped() {
            return Ok(());
        }
        // A drop happened while the collector was read: its report may be counted in the
        // lifetime just read, or not yet; read again once it is.
        collectors.reopen_reports();
        ensure!(
            Instant::now() < deadline,
            "the filter kept dropping while the collector was read"
        );
    }
}

/// The collector, its ports and data directory, and what its lifetimes reported.
struct Collectors {
    tapedeck: PathBuf,
    data: PathBuf,
    grpc: SocketAddr,
    http: SocketAddr,
    flags: Vec<String>,
    buffer_max_bytes: u64,
    running: Option<CollectorProcess>,
    pid: Arc<AtomicU32>,
    reported_dropped: u64,
    stored_batches: u64,
    rejected: HashMap<String, u64>,
    /// The running lifetime's reports, once read by [`Collectors::close_reports`].
    closed: Option<LifetimeReports>,
}

/// One collector lifetime's report counters.
#[derive(Debug, Clone, Default)]
struct LifetimeReports {
    dropped: u64,
    batches: u64,
    rejected: HashMap<String, u64>,
}

impl Collectors {
    async fn start(&mut self, extra: &[String]) -> Result<()> {
        let mut flags = self.flags.clone();
        if !extra.iter().any(|flag| flag == "--buffer-max-bytes") {
            flags.extend([
                "--buffer-max-bytes".to_string(),
                self.buffer_max_bytes.to_string(),
            ]);
        }
        flags.extend_from_slice(extra);
        let process =
            CollectorProcess::start(&self.tapedeck, &self.data, self.grpc, self.http, &flags)
                .await?;
        self.pid.store(process.pid(), Ordering::Relaxed);
        self.running = Some(process);
        Ok(())
    }

    /// Reads the running collector's report counters (they restart with each lifetime).
    async fn read_reports(&mut self) -> Result<LifetimeReports> {
        let Some(process) = &self.running else {
            return Ok(LifetimeReports::default());
        };
        let metrics = process.metrics().await?;
        let get = |name: &str| metrics.get(name).copied().unwrap_or(0.0) as u64;
        let (dropped, batches) = (get(COLLECTOR_FILTER_DROPPED), get(COLLECTOR_BATCHES));
        let rejected = metrics
            .iter()
            .filter_map(|(name, value)| {
                let reason = name
                    .strip_prefix(COLLECTOR_REJECTED)?
                    .strip_prefix("{reason=\"")?
                    .strip_suffix("\"}")?;
                Some((reason.to_string(), *value as u64))
            })
            .collect();
        Ok(LifetimeReports {
            dropped,
            batches,
            rejected,
        })
    }

    /// Reads the running lifetime's final accounting (before it is stopped or killed); what it
    /// counts after this is not summed.
    async fn close_reports(&mut self) -> Result<()> {
        self.closed = Some(self.read_reports().await?);
        Ok(())
    }

    /// Forgets a [`Collectors::close_reports`] reading: the lifetime goes on.
    fn reopen_reports(&mut self) {
        self.closed = None;
    }

    /// Adds the running lifetime's reports to the sums, read now or as closed.
    async fn end_lifetime(&mut self) -> Result<()> {
        let last = match self.closed.take() {
            Some(closed) => closed,
            None => self.read_reports().await?,
        };
        self.reported_dropped += last.dropped;
        self.stored_batches += last.batches;
        for (reason, count) in last.rejected {
            *self.rejected.entry(reason).or_default() += count;
        }
        Ok(())
    }

    /// The reports so far, the running lifetime included: (drops reported, batches stored,
    /// refused batches by reason).
    async fn reports(&mut self) -> Result<(u64, u64, HashMap<String, u64>)> {
        let now = self.read_reports().await?;
        let mut all = self.rejected.clone();
        for (reason, count) in now.rejected {
            *all.entry(reason).or_default() += count;
        }
        Ok((
            self.reported_dropped + now.dropped,
            self.stored_batches + now.batches,
            all,
        ))
    }

    async fn kill9(&mut self) -> Result<()> {
        self.end_lifetime().await?;
        self.pid.store(0, Ordering::Relaxed);
        if let Some(process) = self.running.take() {
            process.kill9().await?;
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        self.end_lifetime().await?;
        self.pid.store(0, Ordering::Relaxed);
        if let Some(process) = self.running.take() {
            process.terminate().await?;
        }
        Ok(())
    }
}

/// Samples Envoy's and the collector's resident memory until `stop` is set.
async fn sample_memory(
    envoy: u32,
    collector: Arc<AtomicU32>,
    phase: Arc<AtomicUsize>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> (Vec<(f64, u64, usize)>, Vec<(f64, u64, usize)>) {
    let started = Instant::now();
    let (mut envoy_rss, mut collector_rss) = (Vec::new(), Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let at = started.elapsed().as_secs_f64();
        let index = phase.load(Ordering::Relaxed);
        if let Some(rss) = rss_bytes(envoy) {
            envoy_rss.push((at, rss, index));
        }
        let pid = collector.load(Ordering::Relaxed);
        if pid != 0
            && let Some(rss) = rss_bytes(pid)
        {
            collector_rss.push((at, rss, index));
        }
        tokio::time::sleep(every).await;
    }
    (envoy_rss, collector_rss)
}

/// Runs the fault script of one phase while its load runs; leaves the collector running, or,
/// for `BufferFull` and `DiskFloor`, the refusing one ([`restore`] puts the normal one back
/// once the load has ended). Before a lifetime ends, its drop count is made complete
/// ([`quiesce_reports`]).
async fn fault_script(
    collectors: &mut Collectors,
    fault: Fault,
    plan: &Plan,
    rig: &Rig,
) -> Result<()> {
    let phase = plan.phase;
    match fault {
        Fault::None | Fault::After => tokio::time::sleep(phase).await,
        Fault::Kill => {
            for _ in 0..2 {
                tokio::time::sleep(phase / 3).await;
                quiesce_reports(rig, collectors).await?;
                collectors.kill9().await?;
                tokio::time::sleep(KILL_DOWNTIME).await;
                collectors.start(&[]).await?;
            }
        }
        Fault::Slow => {
            let end = Instant::now() + phase;
            while Instant::now() + plan.slow_pause * 2 <= end {
                tokio::time::sleep(plan.slow_pause).await;
                let process = collectors.running.as_ref().context("no collector")?;
                process.freeze(true)?;
                tokio::time::sleep(plan.slow_pause).await;
                process.freeze(false)?;
            }
            tokio::time::sleep_until(end).await;
        }
        Fault::BufferFull | Fault::DiskFloor => {
            let extra = if fault == Fault::BufferFull {
                vec![
                    "--buffer-max-bytes".to_string(),
                    plan.full_buffer_bytes.to_string(),
                ]
            } else {
                // 2^60 bytes: above any disk, so the floor refuses every push.
                vec!["--min-free-disk".to_string(), (1u64 << 60).to_string()]
            };
            let end = Instant::now() + phase;
            quiesce_reports(rig, collectors).await?;
            collectors.stop().await?;
            collectors.start(&extra).await?;
            tokio::time::sleep_until(end).await;
        }
        Fault::Down => {
            quiesce_reports(rig, collectors).await?;
            collectors.stop().await?;
            tokio::time::sleep(phase).await;
            collectors.start(&[]).await?;
        }
    }
    Ok(())
}

/// After the load of a `BufferFull` or `DiskFloor` phase: the normal collector back. The
/// buffer-full one, no longer loaded, flushes and accepts again, so the drop reports reach it
/// first; the disk-floor one refuses every push and so counts no report.
async fn restore(collectors: &mut Collectors, fault: Fault, rig: &Rig) -> Result<()> {
    match fault {
        Fault::BufferFull => quiesce_reports(rig, collectors).await?,
        Fault::DiskFloor => {}
        _ => return Ok(()),
    }
    collectors.stop().await?;
    collectors.start(&[]).await
}

/// Runs the soak; fails only when it cannot run (the report carries what it measured).
pub async fn run(plan: &Plan) -> Result<Report> {
    let data = tempfile::Builder::new()
        .prefix("tapedeck-soak-")
        .tempdir()?;
    let grpc = reserve_port()?;
    let http = reserve_port()?;
    let mut collectors = Collectors {
        tapedeck: plan.tapedeck.clone(),
        data: data.path().to_path_buf(),
        grpc,
        http,
        flags: vec!["--flush-interval".into(), "2".into()],
        buffer_max_bytes: plan.buffer_max_bytes,
        running: None,
        pid: Arc::new(AtomicU32::new(0)),
        reported_dropped: 0,
        stored_batches: 0,
        rejected: HashMap::new(),
        closed: None,
    };
    collectors.start(&[]).await?;
    let collector_idle_rss = rss_bytes(collectors.pid.load(Ordering::Relaxed)).unwrap_or(0);

    let rig = RigBuilder::new()
        .collector(Collector::At(grpc))
        .plugin(json!({
            "collector": {"timeout_ms": plan.push_timeout.as_millis() as u64},
            "queue": {
                "flush_interval_ms": FILTER_FLUSH_INTERVAL.as_millis() as u64,
                "max_exchanges": plan.queue_max_exchanges,
                "max_bytes": plan.queue_max_bytes,
                "batch_max_bytes": plan.queue_max_bytes / 4,
            },
        }))
        .start()
        .await?;
    let envoy_pid = rig.envoy.pid().context("Envoy is not running")?;
    let phase_index = Arc::new(AtomicUsize::new(0));
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_memory(
        envoy_pid,
        collectors.pid.clone(),
        phase_index.clone(),
        plan.sample_every,
        stop_sampling.clone(),
    ));

    let url = rig.url("/echo");
    let mut report = Report {
        collector_idle_rss,
        ..Report::default()
    };
    let mut before = Counters::default();
    let mut requests = 0;
    let mut rejected_before: HashMap<String, u64> = HashMap::new();
    let (mut reported_before, mut batches_before) = (0, 0);
    for (index, &fault) in plan.phases.iter().enumerate() {
        phase_index.store(index, Ordering::Relaxed);
        let load = tokio::spawn(load(
            url.clone(),
            fault.name(),
            plan.phase,
            plan.rate,
            plan.connections,
            plan.body_bytes,
            None,
        ));
        fault_script(&mut collectors, fault, plan, &rig).await?;
        let result = load.await.context("the load task died")?;
        restore(&mut collectors, fault, &rig).await?;
        if let Some(failure) = &result.first_failure {
            eprintln!(
                "soak {}: {} requests failed; first: {failure}",
                fault.name(),
                result.failed
            );
        }
        let sent = result.latencies.len() as u64 + result.failed;
        requests += sent;
        let after = settle(
            &rig,
            requests,
            plan.push_timeout * 4 + Duration::from_secs(10),
        )
        .await?;
        let counters = after.minus(before);
        before = after;
        // The collector's count of drop reports can trail the filter's `drops_unreported` at 0
        // by a moment (seen once on 2026-11-30: the `down` phase's 700 drops counted in the
        // next phase's reading). Wait, up to REPORT_WAIT, until it holds the phase's drops, then
        // read it for the phase; a report that never arrives still fails the test below.
        let deadline = Instant::now() + REPORT_WAIT;
        let (reported_now, batches_now, rejected_now) = loop {
            let now = collectors.reports().await?;
            if now.0.saturating_sub(reported_before) >= counters.dropped()
                || Instant::now() >= deadline
            {
                break now;
            }
            tokio::time::sleep(FILTER_FLUSH_INTERVAL).await;
        };
        let (reported, stored_batches) =
            (reported_now - reported_before, batches_now - batches_before);
        (reported_before, batches_before) = (reported_now, batches_now);
        let rejected = rejected_now
            .iter()
            .filter_map(|(reason, count)| {
                let delta = count - rejected_before.get(reason).copied().unwrap_or(0);
                (delta > 0).then(|| (reason.clone(), delta))
            })
            .collect();
        rejected_before = rejected_now;
        let mut latencies = result.latencies;
        latencies.sort();
        report.phases.push(PhaseReport {
            name: fault.name(),
            sent,
            failed: result.failed,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            max: latencies.last().copied().unwrap_or_default(),
            captured: counters.captured,
            acked: counters.acked,
            queue_full: counters.queue_full,
            send_failed: counters.send_failed,
            rejected,
            reported,
            stored_batches,
            acked_batches: counters.acked_batches,
            ..PhaseReport::default()
        });
    }
    report.total_requests = requests;
    let (reported, _, _) = collectors.reports().await?;
    collectors.stop().await?;
    report.reported_dropped = reported;
    stop_sampling.store(true, Ordering::Relaxed);
    let (envoy_rss, collector_rss) = sampler.await.context("the memory sampler died")?;
    for (index, phase) in report.phases.iter_mut().enumerate() {
        phase.envoy_peak_rss = peak(&envoy_rss, index);
        phase.collector_peak_rss = peak(&collector_rss, index);
    }
    report.envoy_rss = envoy_rss;
    report.collector_rss = collector_rss;
    drop(rig);

    // What the store holds, per phase (the x-request-id is the trace id), read offline.
    let rows = sql_lines(
        &plan.tapedeck,
        data.path(),
        "SELECT split_part(trace_id, '-', 1) AS phase, count(*) AS n, count(DISTINCT id) AS ids \
         FROM exchanges GROUP BY 1 ORDER BY 1",
    )
    .await?;
    for row in rows {
        let fields: Vec<&str> = row.split(',').collect();
        let [phase, rows, ids] = fields.as_slice() else {
            bail!("an unexpected SQL row: {row}");
        };
        let (rows, ids): (u64, u64) = (rows.parse()?, ids.parse()?);
        report.stored_rows += rows;
        if let Some(report) = report.phases.iter_mut().find(|p| p.name == *phase) {
            report.stored = rows;
            report.stored_ids = ids;
        }
    }
    Ok(report)
}

fn peak(samples: &[(f64, u64, usize)], phase: usize) -> u64 {
    samples
        .iter()
        .filter(|(_, _, index)| *index == phase)
        .map(|(_, rss, _)| *rss)
        .max()
        .unwrap_or(0)
}

/// Runs `tapedeck sql` on a data directory; returns its CSV lines without the header.
async fn sql_lines(tapedeck: &Path, data: &Path, query: &str) -> Result<Vec<String>> {
    let output = Command::new(tapedeck)
        .args(["sql", "--format", "csv", "--query-max-rows", "0", "--data"])
        .arg(data)
        .arg(query)
        .output()
        .await
        .context("running tapedeck sql")?;
    ensure!(
        output.status.success(),
        "tapedeck sql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect())
}
