//! Load models and the engine that runs one replayed request.
//!
//! - **Recorded pace** (default): each copy sends the recorded requests at their recorded
//!   offsets divided by the effective speed (`--speed` ÷ the capture's sample rate); iteration
//!   `i` starts `i` windows later. Copies start together, or spread over `--ramp-up`.
//! - **Open model** (`--rate R`): request `k` of the run is due at a fixed, absolute time
//!   (`k / R` seconds, with a linear ramp over `--ramp-up`), whatever happened to earlier ones;
//!   latency counts from that intended time, so a slow target or a late generator shows up in
//!   the latency (coordinated omission corrected). Requests go in the order iteration, line,
//!   copy.
//! - **Closed model** (`--concurrency C`): C workers each send the next request as soon as their
//!   previous one is answered (workers started over `--ramp-up`).
//!
//! In every model a request whose sources are still in flight waits for them: the wait is
//! reported on its own and the latency counts from the moment the sources were ready.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Clients, Targets};
use crate::diff::{Comparer, ResponseView, Skips};
use crate::live::{self, Context, Sessions};
use crate::plan::{Plan, Protocol, recorded_captures};
use crate::stats::{Sample, Stats};

/// The load model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// Recorded offsets ÷ effective speed.
    Recorded {
        /// `--speed` ÷ sample rate.
        speed: f64,
    },
    /// A fixed rate, requests per second.
    Rate(f64),
    /// A fixed number of workers.
    Concurrency(u32),
}

/// How long a run goes on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Passes over the recording (None: unbounded, then `duration` must be set).
    pub iterations: Option<u32>,
    /// Wall-clock limit on sending.
    pub duration: Option<Duration>,
    /// Ramp-up.
    pub ramp_up: Duration,
    /// Copies of the recorded stream.
    pub copies: u32,
}

/// Everything a request needs.
#[derive(Debug)]
pub struct Engine {
    /// The plan.
    pub plan: Plan,
    /// Recorded capture values per line.
    captures: Vec<Vec<Vec<String>>>,
    /// Tokens.
    pub context: Context,
    /// Sessions.
    pub sessions: Sessions,
    /// Connection pools.
    pub clients: Clients,
    /// Targets.
    pub targets: Targets,
    /// Diff.
    pub comparer: Comparer,
    /// Diff skips.
    pub skips: Skips,
    /// Measurements.
    pub stats: Mutex<Stats>,
    /// When the run started.
    pub started: Instant,
    /// Requests settled (sent or not), for progress.
    pub settled: AtomicU64,
    /// Errors so far, for progress.
    pub errors: AtomicU64,
}

/// One request to run: which line, of which copy and iteration, due when.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    /// The copy.
    pub copy: u32,
    /// The iteration.
    pub iteration: u32,
    /// The 0-based line index.
    pub index: usize,
    /// The intended send time.
    pub intended: Instant,
}

impl Engine {
    /// An engine.
    pub fn new(
        plan: Plan,
        context: Context,
        clients: Clients,
        targets: Targets,
        comparer: Comparer,
        skips: Skips,
    ) -> Engine {
        let captures = plan.lines.iter().map(recorded_captures).collect();
        let sessions = Sessions::new(plan.lines.len());
        Engine {
            plan,
            captures,
            context,
            sessions,
            clients,
            targets,
            comparer,
            skips,
            stats: Mutex::new(Stats::default()),
            started: Instant::now(),
            settled: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one request: waits for its sources, builds it, sends it, captures, compares and
    /// records.
    pub async fn run(&self, job: Job) {
        let line = &self.plan.lines[job.index];
        let session = self.sessions.get(job.copy, job.iteration);
        let mut start = job.intended;
        let mut wait = None;
        if !line.sources.is_empty() && !session.ready(&line.sources) {
            session.wait_for(&line.sources).await;
            let now = Instant::now();
            if now > job.intended {
                wait = Some(now - job.intended);
                start = now;
            }
        }
        self.settled.fetch_add(1, Ordering::Relaxed);
        let request = match live::build(&self.plan, line, &session, &self.context) {
            Ok(request) => request,
            Err(failed) => {
                tracing::debug!(
                    line = line.line,
                    source_line = failed.source_line,
                    copy = job.copy,
                    "Source failed; request not sent."
                );
                session.fail(job.index);
                self.stats().record_failed_source(&line.endpoint);
                return;
            }
        };
        let Some(target) = self.targets.resolve(&line.authority) else {
            session.fail(job.index);
            self.stats().record_failed_source(&line.endpoint);
            return;
        };
        let path = request.path.clone();
        let unresolved = request.unresolved.clone();
        let resign_without_key = request.resign_without_key.clone();
        let result = self.clients.send(target, line.protocol, request).await;
        let end = Instant::now();
        let (status, error) = match &result {
            Ok(response) => {
                let failed_status = response.status >= 400 && line.status < 400;
                if failed_status {
                    session.fail(job.index);
                } else {
                    session.capture(line, &self.captures[job.index], &path, &response.message);
                }
                (response.status, None)
            }
            Err(error) => {
                session.fail(job.index);
                (0, Some(error.clone()))
            }
        };
        let grpc_failed = result.as_ref().is_ok_and(|response| {
            let status = |trailers: &[(String, Vec<u8>)], headers: &[(String, Vec<u8>)]| {
                trailers
                    .iter()
                    .chain(headers)
                    .find(|(n, _)| n.eq_ignore_ascii_case("grpc-status"))
                    .map(|(_, v)| v.clone())
            };
            line.protocol == Protocol::Grpc
                && status(&line.response_trailers, &line.response.headers).as_deref()
                    == Some(b"0".as_slice())
                && status(&response.trailers, &response.message.headers).as_deref()
                    != Some(b"0".as_slice())
        });
        let failed = error.is_some() || status >= 500 || grpc_failed;
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let diffs = result.as_ref().ok().map(|response| {
            self.comparer.compare(
                &line.endpoint,
                ResponseView {
                    status: line.status,
                    message: &line.response,
                    trailers: &line.response_trailers,
                },
                ResponseView {
                    status: response.status,
                    message: &response.message,
                    trailers: &response.trailers,
                },
                &self.skips,
            )
        });
        let mut stats = self.stats();
        stats.record(&Sample {
            endpoint: &line.endpoint,
            at: end.saturating_duration_since(self.started),
            latency: end.saturating_duration_since(start),
            wait,
            recorded: Duration::from_nanos(line.recorded_ns),
            status,
            error,
            failed,
            unresolved: &unresolved,
            resign_without_key: &resign_without_key,
        });
        if let Some(diffs) = diffs {
            stats.record_diffs(&line.endpoint, line.line, job.copy, job.iteration, diffs);
        }
    }
}

/// Runs a model until its bounds or `stop`; returns when every request sent has settled.
pub async fn drive(engine: Arc<Engine>, model: Model, bounds: Bounds, stop: Arc<AtomicBool>) {
    let lines = engine.plan.lines.len();
    if lines == 0 {
        return;
    }
    let copies = bounds.copies.max(1);
    let start = engine.started;
    let deadline = bounds.duration.map(|d| start + d);
    let past = |now: Instant| deadline.is_some_and(|d| now >= d) || stop.load(Ordering::Relaxed);
    let per_iteration = (lines as u64) * u64::from(copies);
    let total = bounds.iterations.map(|i| u64::from(i) * per_iteration);
    match model {
        Model::Concurrency(workers) => {
            let next = Arc::new(AtomicU64::new(0));
            let mut set = JoinSet::new();
            for w in 0..workers.max(1) {
                let engine = engine.clone();
                let next = next.clone();
                let stop = stop.clone();
                let delay = bounds
                    .ramp_up
                    .mul_f64(f64::from(w) / f64::from(workers.max(1)));
                set.spawn(async move {
                    tokio::time::sleep_until(start + delay).await;
                    loop {
                        let now = Instant::now();
                        if deadline.is_some_and(|d| now >= d) || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if total.is_some_and(|t| k >= t) {
                            break;
                        }
                        engine.run(job_of(k, lines, copies, now)).await;
                    }
                });
            }
            while set.join_next().await.is_some() {}
        }
        Model::Rate(rate) => {
            let rate = rate.max(1e-9);
            let ramp = bounds.ramp_up.as_secs_f64();
            let in_flight = InFlight::default();
            let mut k: u64 = 0;
            loop {
                if total.is_some_and(|t| k >= t) {
                    break;
                }
                // Absolute due times: N(t) = R t² / 2T during the ramp, then R (t − T/2).
                let kf = k as f64;
                let at = if kf < rate * ramp / 2.0 {
                    (2.0 * ramp * kf / rate).sqrt()
                } else {
                    kf / rate + ramp / 2.0
                };
                let intended = start + Duration::from_secs_f64(at);
                if past(intended) {
                    break;
                }
                if intended > Instant::now() {
                    tokio::time::sleep_until(intended).await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                let engine = engine.clone();
                in_flight
                    .spawn(async move { engine.run(job_of(k, lines, copies, intended)).await });
                k += 1;
            }
            in_flight.settled().await;
        }
        Model::Recorded { speed } => {
            let speed = speed.max(1e-9);
            let window_ns = (engine.plan.window.1.saturating_sub(engine.plan.window.0))
                .max(engine.plan.span_ns) as f64;
            let iterations = bounds.iterations;
            // One cursor per copy: (due, copy, iteration, index).
            let mut heap = BinaryHeap::new();
            let due = |copy: u32, iteration: u32, index: usize| {
                let stagger = bounds.ramp_up.mul_f64(f64::from(copy) / f64::from(copies));
                let recorded =
                    iteration as f64 * window_ns + engine.plan.lines[index].offset_ns as f64;
                start + stagger + Duration::from_secs_f64(recorded / speed / 1e9)
            };
            for copy in 0..copies {
                heap.push(Reverse((due(copy, 0, 0), copy, 0u32, 0usize)));
            }
            let in_flight = InFlight::default();
            while let Some(Reverse((intended, copy, iteration, index))) = heap.pop() {
                if past(intended) {
                    break;
                }
                if intended > Instant::now() {
                    tokio::time::sleep_until(intended).await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                let engine2 = engine.clone();
                let job = Job {
                    copy,
                    iteration,
                    index,
                    intended,
                };
                in_flight.spawn(async move { engine2.run(job).await });
                let (next_iteration, next_index) = if index + 1 < lines {
                    (iteration, index + 1)
                } else {
                    (iteration + 1, 0)
                };
                if iterations.is_none_or(|i| next_iteration < i) {
                    heap.push(Reverse((
                        due(copy, next_iteration, next_index),
                        copy,
                        next_iteration,
                        next_index,
                    )));
                }
            }
            in_flight.settled().await;
        }
    }
}

/// Requests spawned by the open and recorded models, counted so the run can wait for them to
/// settle (cheaper than a `JoinSet` at tens of thousands of spawns a second).
#[derive(Debug, Default, Clone)]
struct InFlight {
    inner: Arc<(AtomicU64, tokio::sync::Notify)>,
}

impl InFlight {
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let inner = self.inner.clone();
        inner.0.fetch_add(1, Ordering::AcqRel);
        tokio::spawn(async move {
            // Counted down on drop, so a task that panics still settles.
            let _done = Done(inner);
            task.await;
        });
    }

    async fn settled(&self) {
        loop {
            let notified = self.inner.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.0.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// The `k`-th request of the open and closed models: iteration-major, then line, then copy.
fn job_of(k: u64, lines: usize, copies: u32, intended: Instant) -> Job {
    let per_iteration = lines as u64 * u64::from(copies);
    let iteration = (k / per_iteration) as u32;
    let rest = k % per_iteration;
    Job {
        copy: (rest % u64::from(copies)) as u32,
        iteration,
        index: (rest / u64::from(copies)) as usize,
        intended,
    }
}

/// Counts a spawned request down when it ends, however it ends.
struct Done(Arc<(AtomicU64, tokio::sync::Notify)>);

impl Drop for Done {
    fn drop(&mut self) {
        if self.0.0.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.1.notify_waiters();
        }
    }
}
