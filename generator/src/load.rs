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

use std::collections::HashSet;

use crate::client::{Clients, LiveResponse, Targets};
use crate::compare::{Clocks, Comparer, Outcome};
use crate::diff::{Compared, DiffSummary, ResponseView, Skips};
use crate::live::{self, Context, Session, Sessions};
use crate::noise::Learner;
use crate::plan::{Plan, Planned, Protocol, recorded_captures};
use crate::stats::{Sample, Stats};
use crate::verdict;

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
    /// The shard replayed (`--shard K/N`): local copy numbers map to global ones.
    pub shard: crate::shard::Shard,
    /// `--baseline`: every request also goes there, paired (see [`Engine::with_baseline`]).
    pub baseline: Option<Targets>,
    /// The baseline's sessions (its own captured values).
    pub baseline_sessions: Sessions,
    /// Per line, the JSON paths of the recorded response whose values came from the mocks.
    pub deterministic: Vec<HashSet<String>>,
    /// Calibration: the baseline → baseline comparisons are learned from, not reported.
    pub learner: Option<Mutex<Learner>>,
    /// Requests sent so far (pairs count once): the send order, and which arm goes first.
    order: AtomicU64,
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
            shard: crate::shard::Shard::default(),
            baseline: None,
            baseline_sessions: Sessions::new(0),
            deterministic: Vec::new(),
            learner: None,
            order: AtomicU64::new(0),
        }
    }

    /// Pairs every request with one to `baseline` (the same request, sent to both arms one
    /// after the other, the first arm drawn per request).
    pub fn with_baseline(mut self, baseline: Targets) -> Engine {
        self.baseline_sessions = Sessions::new(self.plan.lines.len());
        self.baseline = Some(baseline);
        self.stats().diffs = DiffSummary::new(true);
        self
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one request: waits for its sources, builds it, sends it (to the candidate, and
    /// with a baseline to both arms, the first arm drawn per request), captures, compares and records.
    pub async fn run(&self, mut job: Job) {
        job.copy = self.shard.global_copy(job.copy);
        let line = &self.plan.lines[job.index];
        let session = self.sessions.get(job.copy, job.iteration);
        let baseline_session = self
            .baseline
            .as_ref()
            .map(|_| self.baseline_sessions.get(job.copy, job.iteration));
        let mut start = job.intended;
        let mut wait = None;
        if !line.sources.is_empty()
            && (!session.ready(&line.sources)
                || baseline_session
                    .as_ref()
                    .is_some_and(|b| !b.ready(&line.sources)))
        {
            session.wait_for(&line.sources).await;
            if let Some(b) = &baseline_session {
                b.wait_for(&line.sources).await;
            }
            let now = Instant::now();
            if now > job.intended {
                wait = Some(now - job.intended);
                start = now;
            }
        }
        self.settled.fetch_add(1, Ordering::Relaxed);
        let order = self.order.fetch_add(1, Ordering::Relaxed);
        // The schedule's lag (a late generator) counts in both arms' latency alike.
        let lag = Instant::now().saturating_duration_since(start);
        let (candidate, baseline) = match (&self.baseline, &baseline_session) {
            (Some(targets), Some(b)) => {
                // Which arm goes first is drawn per request (a hash of the send order), not
                // alternated: with a plain alternation, requests that recur with an even period
                // in the send order (an endpoint every other request) would always go first on
                // the same arm, and that arm's latency would differ by the order alone.
                if first_arm_is_candidate(order) {
                    let c = self.send(line, job.index, &session, &self.targets).await;
                    let b = self.send(line, job.index, b, targets).await;
                    (c, Some(b))
                } else {
                    let b = self.send(line, job.index, b, targets).await;
                    let c = self.send(line, job.index, &session, &self.targets).await;
                    (c, Some(b))
                }
            }
            _ => (
                self.send(line, job.index, &session, &self.targets).await,
                None,
            ),
        };
        let clock = |at: std::time::SystemTime| {
            at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        };
        let now = clock(std::time::SystemTime::now());
        let recorded_clock = ((self.plan.window.0 + line.offset_ns) / 1_000_000_000) as i64;
        let recorded = ResponseView {
            status: line.status,
            message: &line.response,
            trailers: &line.response_trailers,
        };
        fn view(sent: &Option<Sent>) -> Option<ResponseView<'_>> {
            sent.as_ref()
                .and_then(|s| s.response.as_ref())
                .map(|r| ResponseView {
                    status: r.status,
                    message: &r.message,
                    trailers: &r.trailers,
                })
        }
        let deterministic = self.deterministic.get(job.index);
        let compare =
            |left: ResponseView<'_>, right: ResponseView<'_>, clocks: Clocks, learn: bool| {
                self.comparer.compare(
                    &line.endpoint,
                    left,
                    right,
                    clocks,
                    deterministic,
                    &self.skips,
                    learn,
                )
            };
        let both = Clocks {
            left: now,
            right: now,
        };
        let from_recording = Clocks {
            left: recorded_clock,
            right: now,
        };
        let candidate_view = view(&candidate);
        let baseline_view = baseline.as_ref().and_then(view);
        if let Some(learner) = &self.learner {
            // Calibration: the baseline against itself.
            if let (Some(c), Some(b)) = (candidate_view, baseline_view) {
                let outcomes = compare(b, c, both, true);
                learner
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add(&line.endpoint, &outcomes);
            }
        }
        let compared: Option<Three> = match (
            self.learner.is_some(),
            self.baseline.is_some(),
            candidate_view,
            baseline_view,
        ) {
            (true, ..) => None,
            (false, false, Some(c), _) => {
                Some((compare(recorded, c, from_recording, false), None, None))
            }
            (false, true, Some(c), Some(b)) => Some((
                compare(b, c, both, false),
                Some(compare(recorded, c, from_recording, false)),
                Some(compare(recorded, b, from_recording, false)),
            )),
            _ => None,
        };
        let offset_ns = u64::try_from(
            job.intended
                .saturating_duration_since(self.started)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX);
        let mut stats = self.stats();
        let arm = |stats: &mut Stats, sent: &Sent, baseline: bool| {
            let latency = lag + sent.took;
            let sample = Sample {
                endpoint: &line.endpoint,
                at: sent.end.saturating_duration_since(self.started),
                latency,
                wait,
                recorded: Duration::from_nanos(line.recorded_ns),
                status: sent.status,
                error: sent.error.clone(),
                failed: sent.failed,
                unresolved: &sent.unresolved,
                resign_without_key: &sent.resign_without_key,
            };
            if baseline {
                stats.record_baseline(&sample);
            } else {
                stats.record(&sample);
            }
            verdict::Arm {
                latency_ns: u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX),
                error: sent.failed,
            }
        };
        let c_arm = match &candidate {
            Some(sent) => Some(arm(&mut stats, sent, false)),
            None => {
                stats.record_failed_source(&line.endpoint);
                None
            }
        };
        let b_arm = match &baseline {
            Some(Some(sent)) => Some(arm(&mut stats, sent, true)),
            Some(None) => {
                stats.record_baseline_failed_source(&line.endpoint);
                None
            }
            None => None,
        };
        if self.baseline.is_some() {
            stats.samples.push(verdict::Sample {
                endpoint: line.endpoint.clone(),
                index: order,
                offset_ns,
                baseline: b_arm,
                candidate: c_arm,
            });
        }
        if let Some((primary, rc, rb)) = compared {
            stats.diffs.add(Compared {
                endpoint: &line.endpoint,
                line: line.line,
                copy: job.copy,
                iteration: job.iteration,
                primary,
                recorded_vs_candidate: rc,
                recorded_vs_baseline: rb,
            });
        }
    }

    /// Builds and sends one arm's request in its session; None when it was not sent (a source
    /// failed, or no target for its authority).
    async fn send(
        &self,
        line: &Planned,
        index: usize,
        session: &Session,
        targets: &Targets,
    ) -> Option<Sent> {
        let sent_at = Instant::now();
        let request = match live::build(&self.plan, line, session, &self.context) {
            Ok(request) => request,
            Err(failed) => {
                tracing::debug!(
                    line = line.line,
                    source_line = failed.source_line,
                    copy = session.copy,
                    "Source failed; request not sent."
                );
                session.fail(index);
                return None;
            }
        };
        let Some(target) = targets.resolve(&line.authority) else {
            session.fail(index);
            return None;
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
                    session.fail(index);
                } else {
                    session.capture(line, &self.captures[index], &path, &response.message);
                }
                (response.status, None)
            }
            Err(error) => {
                session.fail(index);
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
        Some(Sent {
            response: result.ok(),
            status,
            error,
            failed,
            took: end.saturating_duration_since(sent_at),
            end,
            unresolved,
            resign_without_key,
        })
    }
}

/// One request's comparisons: the one that counts, recorded → candidate, recorded → baseline.
type Three = (Vec<Outcome>, Option<Vec<Outcome>>, Option<Vec<Outcome>>);

/// One arm's sent request.
#[derive(Debug)]
struct Sent {
    response: Option<LiveResponse>,
    status: u16,
    error: Option<String>,
    failed: bool,
    /// From the send to the end of the response (the wait for a connection slot included).
    took: Duration,
    end: Instant,
    unresolved: Vec<String>,
    resign_without_key: Vec<String>,
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

/// Whether the candidate goes first in pair `order`: the top bit of a SplitMix64 step, so the
/// choice is balanced overall and uncorrelated with any period in what is sent.
pub fn first_arm_is_candidate(order: u64) -> bool {
    let mut z = order.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z >> 63 == 0
}

#[cfg(test)]
mod first_arm_tests {
    use super::first_arm_is_candidate;

    #[test]
    fn the_first_arm_is_balanced_and_not_periodic() {
        // Overall about half, and about half within every residue of small periods, which a
        // plain alternation fails (period 2 gives 100 % / 0 %).
        for period in 1..=8u64 {
            for residue in 0..period {
                let picks: Vec<bool> = (0..4_000u64)
                    .filter(|i| i % period == residue)
                    .map(first_arm_is_candidate)
                    .collect();
                let share = picks.iter().filter(|&&c| c).count() as f64 / picks.len() as f64;
                assert!(
                    (0.4..=0.6).contains(&share),
                    "period {period} residue {residue}: candidate first in {share:.2}"
                );
            }
        }
    }
}
