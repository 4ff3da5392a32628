//! The operator's counters and its `/metrics`, `/healthz` and `/readyz` listener.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

use crate::crd::Phase;

/// Metric names (Prometheus).
pub mod names {
    /// Reconciles run.
    pub const RECONCILES: &str = "tapedeck_operator_reconciles_total";
    /// Reconciles that failed (and are retried).
    pub const ERRORS: &str = "tapedeck_operator_reconcile_errors_total";
    /// Replays finished, by phase (`phase` label).
    pub const FINISHED: &str = "tapedeck_operator_replays_finished_total";
}

/// A counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The operator's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Reconciles run.
    pub reconciles: Counter,
    /// Reconciles that failed.
    pub errors: Counter,
    /// Finished replays: passed, failed, inconclusive, error.
    pub by_phase: [Counter; 4],
    /// Set once the controller's watches are running.
    pub ready: AtomicBool,
}

const PHASES: [&str; 4] = ["Passed", "Failed", "Inconclusive", "Error"];

impl Metrics {
    /// Counts a finished replay.
    pub fn finished(&self, phase: Phase) {
        let index = match phase {
            Phase::Passed => 0,
            Phase::Failed => 1,
            Phase::Inconclusive => 2,
            _ => 3,
        };
        self.by_phase[index].inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# TYPE {} counter", names::RECONCILES);
        let _ = writeln!(out, "{} {}", names::RECONCILES, self.reconciles.get());
        let _ = writeln!(out, "# TYPE {} counter", names::ERRORS);
        let _ = writeln!(out, "{} {}", names::ERRORS, self.errors.get());
        let _ = writeln!(out, "# TYPE {} counter", names::FINISHED);
        for (phase, counter) in PHASES.iter().zip(&self.by_phase) {
            let _ = writeln!(
                out,
                "{}{{phase=\"{phase}\"}} {}",
                names::FINISHED,
                counter.get()
            );
        }
        out
    }
}

/// Answers `/metrics`, `/healthz` (200 while the process runs) and `/readyz` (200 once the
/// controller runs).
pub fn respond<B>(metrics: &Arc<Metrics>, request: &Request<B>) -> Response<Full<Bytes>> {
    let (status, body) = match request.uri().path() {
        "/metrics" => (StatusCode::OK, metrics.render()),
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if metrics.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, "ready\n".to_owned())
        }
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// Serves [`respond`] on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&metrics, &request);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%error, "metrics connection");
            }
        });
    }
}
