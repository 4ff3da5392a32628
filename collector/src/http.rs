//! The collector's HTTP endpoint: `/metrics` (Prometheus, OpenMetrics text), `/healthz` (the
//! process is up) and `/readyz` (write-ahead log recovery is done and pushes are accepted).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::buffer::Buffer;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// The content type of the metrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoints read.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// The metrics to expose.
    pub metrics: Arc<Metrics>,
    /// The buffer, for its gauges.
    pub buffer: Arc<Buffer>,
    /// True once recovery is done.
    pub ready: Arc<AtomicBool>,
    /// Snapshots by id (`/v1/snapshots`, [`crate::snapshots`]).
    pub snapshots: crate::snapshots::Snapshots,
}

/// Routes the caller adds to this port, set before the collector starts (once per process):
/// `tapedeck collector --ui` mounts the traffic viewer here, composed in the `tapedeck` binary
/// because the viewer's crate depends on this one. They bring their own authentication.
pub static EXTRA_ROUTES: std::sync::OnceLock<Router> = std::sync::OnceLock::new();

/// The routes (and [`EXTRA_ROUTES`]).
pub fn app(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(crate::snapshots::routes(state.snapshots.clone()))
        .with_state(state)
        .merge(EXTRA_ROUTES.get().cloned().unwrap_or_default())
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    crate::writer::observe_buffer(&state.metrics, &state.buffer);
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "recovering\n")
    }
}

/// `listener` for `axum::serve`, with Nagle's algorithm off (`TCP_NODELAY`) on every
/// connection it accepts, as `accept_without_delay` does for the tonic servers: axum
/// 0.8 leaves it on, and a response written in pieces (headers, then a streamed body) can then
/// wait for the peer's delayed ACK.
pub fn without_delay(
    listener: TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(|stream| crate::nagle_off(stream))
}

/// Serves [`app`] on a bound listener until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener.local_addr().map_err(|source| Error::Io {
        what: "reading the HTTP listener's address".into(),
        source,
    })?;
    axum::serve(without_delay(listener), app(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Listen {
            what: "HTTP",
            addr,
            source,
        })
}
