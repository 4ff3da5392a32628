//! The responder's Prometheus metrics: names in one place, counters as atomics, rendered as
//! the Prometheus text format on the admin port's `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests received on the serving port.
pub const REQUESTS: &str = "tapedeck_responder_requests_total";
/// Requests served from a recording, by how the recording was chosen (`kind`).
pub const MATCHES: &str = "tapedeck_responder_matches_total";
/// Requests no recording matched, by reason.
pub const MISSES: &str = "tapedeck_responder_misses_total";
/// Misses forwarded to the real host.
pub const PASSTHROUGH: &str = "tapedeck_responder_passthrough_total";
/// Faults injected, by kind.
pub const FAULTS: &str = "tapedeck_responder_faults_total";
/// Recordings served whose recorded body was truncated.
pub const TRUNCATED: &str = "tapedeck_responder_truncated_served_total";
/// Recordings with status 0 served as a stream reset.
pub const RESETS: &str = "tapedeck_responder_recorded_resets_total";
/// Explain lines dropped because the writer fell behind.
pub const EXPLAIN_DROPPED: &str = "tapedeck_responder_explain_dropped_total";
/// Time from request to response headers, seconds (histogram).
pub const LATENCY: &str = "tapedeck_responder_response_seconds";
/// Recordings loaded.
pub const RECORDINGS: &str = "tapedeck_responder_recordings";

/// Histogram bucket bounds, seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Match kinds counted.
pub const MATCH_KINDS: [&str; 2] = ["exact", "fallback"];
/// Miss reasons counted.
pub const MISS_REASONS: [&str; 3] = ["unknown_host", "unknown_endpoint", "no_match"];
/// Fault kinds counted.
pub const FAULT_KINDS: [&str; 7] = [
    "latency",
    "status",
    "grpc_status",
    "reset",
    "hang",
    "slow_body",
    "truncate",
];

/// Every counter of a running responder.
#[derive(Debug, Default)]
pub struct Metrics {
    /// [`REQUESTS`].
    pub requests: AtomicU64,
    /// [`MATCHES`] by [`MATCH_KINDS`].
    pub matches: [AtomicU64; 2],
    /// [`MISSES`] by [`MISS_REASONS`].
    pub misses: [AtomicU64; 3],
    /// [`PASSTHROUGH`].
    pub passthrough: AtomicU64,
    /// [`FAULTS`] by [`FAULT_KINDS`].
    pub faults: [AtomicU64; 7],
    /// [`TRUNCATED`].
    pub truncated: AtomicU64,
    /// [`RESETS`].
    pub resets: AtomicU64,
    /// [`EXPLAIN_DROPPED`].
    pub explain_dropped: AtomicU64,
    /// [`LATENCY`] bucket counts (cumulative at render time), then +Inf.
    latency_buckets: [AtomicU64; 13],
    latency_sum_ns: AtomicU64,
    /// [`RECORDINGS`].
    pub recordings: AtomicU64,
}

/// Adds one.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Counts a fault by its kind word.
    pub fn fault(&self, kind: &str) {
        if let Some(i) = FAULT_KINDS.iter().position(|k| *k == kind) {
            inc(&self.faults[i]);
        }
    }

    /// Records one response time.
    pub fn observe(&self, seconds: f64) {
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        inc(&self.latency_buckets[i]);
        self.latency_sum_ns
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        };
        counter(&mut out, REQUESTS, "Requests received on the serving port.");
        let _ = writeln!(out, "{REQUESTS} {}", get(&self.requests));
        counter(
            &mut out,
            MATCHES,
            "Requests served from a recording, by kind.",
        );
        for (kind, c) in MATCH_KINDS.iter().zip(&self.matches) {
            let _ = writeln!(out, "{MATCHES}{{kind=\"{kind}\"}} {}", get(c));
        }
        counter(
            &mut out,
            MISSES,
            "Requests no recording matched, by reason.",
        );
        for (reason, c) in MISS_REASONS.iter().zip(&self.misses) {
            let _ = writeln!(out, "{MISSES}{{reason=\"{reason}\"}} {}", get(c));
        }
        counter(&mut out, PASSTHROUGH, "Misses forwarded to the real host.");
        let _ = writeln!(out, "{PASSTHROUGH} {}", get(&self.passthrough));
        counter(&mut out, FAULTS, "Faults injected, by kind.");
        for (kind, c) in FAULT_KINDS.iter().zip(&self.faults) {
            let _ = writeln!(out, "{FAULTS}{{kind=\"{kind}\"}} {}", get(c));
        }
        counter(
            &mut out,
            TRUNCATED,
            "Recordings with a truncated body served.",
        );
        let _ = writeln!(out, "{TRUNCATED} {}", get(&self.truncated));
        counter(
            &mut out,
            RESETS,
            "Recordings with status 0 served as a reset.",
        );
        let _ = writeln!(out, "{RESETS} {}", get(&self.resets));
        counter(
            &mut out,
            EXPLAIN_DROPPED,
            "Explain lines dropped (writer behind).",
        );
        let _ = writeln!(out, "{EXPLAIN_DROPPED} {}", get(&self.explain_dropped));
        let _ = writeln!(
            out,
            "# HELP {LATENCY} Time from request to response headers.\n# TYPE {LATENCY} histogram"
        );
        let mut cumulative = 0;
        for (bound, c) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += get(c);
            let _ = writeln!(out, "{LATENCY}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += get(&self.latency_buckets[LATENCY_BUCKETS.len()]);
        let _ = writeln!(out, "{LATENCY}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            out,
            "{LATENCY}_sum {}",
            get(&self.latency_sum_ns) as f64 / 1e9
        );
        let _ = writeln!(out, "{LATENCY}_count {cumulative}");
        let _ = writeln!(
            out,
            "# HELP {RECORDINGS} Recordings loaded.\n# TYPE {RECORDINGS} gauge\n{RECORDINGS} {}",
            get(&self.recordings)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        inc(&m.requests);
        m.fault("reset");
        m.observe(0.002);
        m.observe(10.0);
        let text = m.render();
        assert!(
            text.contains("tapedeck_responder_requests_total 1\n"),
            "{text}"
        );
        assert!(text.contains("tapedeck_responder_faults_total{kind=\"reset\"} 1\n"));
        assert!(text.contains("tapedeck_responder_response_seconds_bucket{le=\"0.0025\"} 1\n"));
        assert!(text.contains("tapedeck_responder_response_seconds_bucket{le=\"+Inf\"} 2\n"));
    }
}
