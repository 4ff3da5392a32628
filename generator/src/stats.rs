//! What a run measured, per endpoint and over time, kept in HDR histograms (microseconds, 3
//! significant digits, 1 µs to 1 hour).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::diff::DiffSummary;
use crate::verdict;

/// Highest latency kept, microseconds (1 hour).
const MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low 1, high ≥ 2, 3 digits).
    Histogram::new_with_bounds(1, MAX_US, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// One second of the run.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Responses received in this second (by completion time).
    pub requests: u64,
    /// Errors among them.
    pub errors: u64,
    /// Their latencies.
    pub latency: Histogram<u64>,
}

/// What one endpoint (or the whole run) measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Latency from the intended send time (or the moment the sources were ready) to the end of
    /// the response, µs.
    pub latency: Histogram<u64>,
    /// The recorded latencies of the same requests, µs.
    pub recorded: Histogram<u64>,
    /// Waits for source responses, µs (requests that waited only).
    pub waits: Histogram<u64>,
    /// Requests sent.
    pub sent: u64,
    /// Requests with no response (a transport error, a timeout), a 5xx status, or a non-zero
    /// `grpc-status` where the recording had 0.
    pub errors: u64,
    /// Status mix (0: no response).
    pub statuses: BTreeMap<u16, u64>,
    /// Requests not sent because a source failed.
    pub failed_sources: u64,
    /// Unresolved redaction markers sent as recorded, by location.
    pub unresolved: BTreeMap<String, u64>,
    /// Tokens sent as recorded for want of `--jwt-key`, by rule.
    pub resign_without_key: BTreeMap<String, u64>,
    /// The first transport error seen.
    pub first_error: Option<String>,
}

impl Default for Measured {
    fn default() -> Self {
        Measured {
            latency: histogram(),
            recorded: histogram(),
            waits: histogram(),
            sent: 0,
            errors: 0,
            statuses: BTreeMap::new(),
            failed_sources: 0,
            unresolved: BTreeMap::new(),
            resign_without_key: BTreeMap::new(),
            first_error: None,
        }
    }
}

/// One sent request's result.
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    /// `METHOD /template`.
    pub endpoint: &'a str,
    /// Seconds since the run started, at completion.
    pub at: Duration,
    /// Latency.
    pub latency: Duration,
    /// The wait for sources, when there was one.
    pub wait: Option<Duration>,
    /// The recorded latency.
    pub recorded: Duration,
    /// The status (0: none).
    pub status: u16,
    /// The transport error, if any.
    pub error: Option<String>,
    /// Whether it counts as an error: no response, a 5xx, or a non-zero `grpc-status` where the
    /// recording had 0.
    pub failed: bool,
    /// Unresolved markers (locations).
    pub unresolved: &'a [String],
    /// Resign rules sent without key.
    pub resign_without_key: &'a [String],
}

/// Everything a run measured.
#[derive(Debug, Default)]
pub struct Stats {
    /// Per endpoint.
    pub endpoints: BTreeMap<String, Measured>,
    /// Per second of the run.
    pub timeline: Vec<Bucket>,
    /// Differences (before the noise rules; `DiffSummary::finish` counts the responses with
    /// differences per endpoint: the one definition).
    pub diffs: DiffSummary,
    /// With `--baseline`: the baseline arm, per endpoint.
    pub baseline: BTreeMap<String, Measured>,
    /// With `--baseline`: one sample per request for the statistical gate.
    pub samples: Vec<verdict::Sample>,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_US)
}

impl Stats {
    /// Records a sent request (whatever became of it).
    pub fn record(&mut self, sample: &Sample<'_>) {
        let error = sample.failed;
        // No key allocation per response once the endpoint is known.
        if !self.endpoints.contains_key(sample.endpoint) {
            self.endpoints
                .insert(sample.endpoint.to_owned(), Measured::default());
        }
        let Some(m) = self.endpoints.get_mut(sample.endpoint) else {
            return;
        };
        m.sent += 1;
        m.latency.saturating_record(us(sample.latency));
        m.recorded.saturating_record(us(sample.recorded));
        if let Some(wait) = sample.wait {
            m.waits.saturating_record(us(wait));
        }
        if error {
            m.errors += 1;
        }
        if m.first_error.is_none() {
            m.first_error.clone_from(&sample.error);
        }
        *m.statuses.entry(sample.status).or_insert(0) += 1;
        for at in sample.unresolved {
            *m.unresolved.entry(at.clone()).or_insert(0) += 1;
        }
        for rule in sample.resign_without_key {
            *m.resign_without_key.entry(rule.clone()).or_insert(0) += 1;
        }
        let second = sample.at.as_secs() as usize;
        while self.timeline.len() <= second {
            self.timeline.push(Bucket {
                requests: 0,
                errors: 0,
                latency: histogram(),
            });
        }
        let bucket = &mut self.timeline[second];
        bucket.requests += 1;
        bucket.errors += u64::from(error);
        bucket.latency.saturating_record(us(sample.latency));
    }

    /// Records a request not sent because its source failed.
    pub fn record_failed_source(&mut self, endpoint: &str) {
        self.endpoints
            .entry(endpoint.to_owned())
            .or_default()
            .failed_sources += 1;
    }

    /// Records a baseline request (the baseline arm has no timeline of its own).
    pub fn record_baseline(&mut self, sample: &Sample<'_>) {
        let m = self.baseline.entry(sample.endpoint.to_owned()).or_default();
        m.sent += 1;
        m.latency.saturating_record(us(sample.latency));
        m.recorded.saturating_record(us(sample.recorded));
        if let Some(wait) = sample.wait {
            m.waits.saturating_record(us(wait));
        }
        m.errors += u64::from(sample.failed);
        if m.first_error.is_none() {
            m.first_error.clone_from(&sample.error);
        }
        *m.statuses.entry(sample.status).or_insert(0) += 1;
    }

    /// Records a baseline request not sent because its source failed.
    pub fn record_baseline_failed_source(&mut self, endpoint: &str) {
        self.baseline
            .entry(endpoint.to_owned())
            .or_default()
            .failed_sources += 1;
    }

    /// Everything merged.
    pub fn overall(&self) -> Measured {
        merged(&self.endpoints)
    }

    /// The baseline arm, merged.
    pub fn baseline_overall(&self) -> Measured {
        merged(&self.baseline)
    }
}

fn merged(endpoints: &BTreeMap<String, Measured>) -> Measured {
    let mut all = Measured::default();
    for m in endpoints.values() {
        // Same bounds everywhere, so adding cannot fail.
        let _ = all.latency.add(&m.latency);
        let _ = all.recorded.add(&m.recorded);
        let _ = all.waits.add(&m.waits);
        all.sent += m.sent;
        all.errors += m.errors;
        all.failed_sources += m.failed_sources;
        for (s, n) in &m.statuses {
            *all.statuses.entry(*s).or_insert(0) += n;
        }
        for (k, n) in &m.unresolved {
            *all.unresolved.entry(k.clone()).or_insert(0) += n;
        }
        for (k, n) in &m.resign_without_key {
            *all.resign_without_key.entry(k.clone()).or_insert(0) += n;
        }
        if all.first_error.is_none() {
            all.first_error.clone_from(&m.first_error);
        }
    }
    all
}
