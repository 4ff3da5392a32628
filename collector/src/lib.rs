//! The tapedeck collector: receives captured exchanges from the filters, makes them durable,
//! stores them as Parquet, and answers read-only SQL over all of them.
//!
//! Data path: [`ingest`] (the `Capture` gRPC service) validates a batch, appends it to the
//! [`wal`] (group commit: concurrent pushes share one fsync), adds it to the [`buffer`] and only
//! then acknowledges. The [`writer`] seals the buffer on a size or time trigger, writes one
//! zstd Parquet file per partition ([`layout`]) through `object_store` ([`store`]: local disk or
//! S3), then drops the sealed data and the WAL segments it covered; a flush intent in the WAL
//! folder makes that exactly once across crashes ([`wal`] docs). [`query`] serves SQL over
//! the Parquet files plus the buffer, and [`flight`] exposes it as Arrow Flight SQL.
//!
//! Used by the `tapedeck collector`, `tapedeck sql` and `tapedeck import` commands and the
//! end-to-end tests.

/// The largest HTTP/2 frame the ingest server accepts (SETTINGS_MAX_FRAME_SIZE).
const MAX_PUSH_FRAME_BYTES: u32 = 1 << 20;

/// The connections `listener` accepts, with Nagle's algorithm off (`TCP_NODELAY`), for a tonic
/// server: tonic sets it only on sockets it accepts itself (its `tcp_nodelay` setting does not
/// apply to a stream of accepted connections). With Nagle on, a small response, such as a
/// push's acknowledgement, can wait for the TCP ACK of a window update sent just before it,
/// that is for the peer's delayed-ACK timer.
pub(crate) fn accept_without_delay(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        nagle_off(&stream);
        Ok(stream)
    })
}

/// Turns Nagle's algorithm off for an accepted connection (the tonic servers' and the HTTP
/// port's); a failure only costs latency, so it is logged and the connection kept.
pub(crate) fn nagle_off(stream: &tokio::net::TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "Could not turn Nagle's algorithm off for a connection.");
    }
}

pub mod auth;
pub mod buffer;
pub mod cache;
pub mod config;
pub mod error;
pub mod flight;
pub mod http;
pub mod ingest;
pub mod layout;
pub mod manifest;
pub mod metrics;
pub mod query;
pub mod snapshots;
pub mod store;
pub mod wal;
pub mod writer;

pub use config::CollectorArgs;
pub use error::{Error, Result};

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Notify, RwLock, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;

use crate::buffer::Buffer;
use crate::ingest::{CaptureService, IngestConfig};
use crate::metrics::Metrics;
use crate::store::StoreHandle;
use crate::wal::Wal;
use crate::writer::{FileNamer, Flusher};

/// The collector's listeners, bound before it starts (tests bind `127.0.0.1:0`).
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC ingest endpoint.
    pub grpc: TcpListener,
    /// The HTTP endpoint (`/metrics`, `/healthz`, `/readyz`).
    pub http: TcpListener,
    /// The Flight SQL endpoint, if any.
    pub flight: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of the flags.
    pub async fn bind(args: &CollectorArgs) -> Result<Self> {
        async fn bind(what: &'static str, addr: std::net::SocketAddr) -> Result<TcpListener> {
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen { what, addr, source })
        }
        Ok(Self {
            grpc: bind("gRPC", args.grpc_listen).await?,
            http: bind("HTTP", args.http_listen).await?,
            flight: match args.flight_listen {
                Some(addr) => Some(bind("Flight SQL", addr).await?),
                None => None,
            },
        })
    }
}

/// Runs the collector until `shutdown` completes: binds the flags' addresses, opens the store
/// and calls [`run_with`].
pub async fn run(
    args: CollectorArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listeners = Listeners::bind(&args).await?;
    let store = store::open_store(&args.data, args.store.as_deref())?;
    run_with(args, listeners, store, shutdown).await
}

/// Runs the collector on bound listeners and an opened store until `shutdown` completes.
///
/// Start: HTTP first (so `/healthz` answers during recovery), then write-ahead log recovery into
/// the buffer, then `/readyz` turns ready and ingest, the flush loop, compaction and retention
/// start. Shutdown: ingest stops accepting and finishes in-flight pushes, the flush loop stops,
/// a final flush writes everything buffered, then the other tasks stop. Dropping the returned
/// future stops every task without a flush (what a crash does; the log replays on restart).
pub async fn run_with(
    args: CollectorArgs,
    listeners: Listeners,
    store: StoreHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let metrics = Arc::new(Metrics::new());
    let buffer = Arc::new(Buffer::new());
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_sender, stop) = watch::channel(false);
    let stop_sender = Arc::new(stop_sender);
    // Every task lives in this set, so dropping this future aborts them all.
    let mut tasks = JoinSet::new();
    let stopper = stop_sender.clone();
    tasks.spawn(async move {
        shutdown.await;
        let _ = stopper.send(true);
        Ok(())
    });
    let stopped = |mut stop: watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };

    let http_addr = listeners.http.local_addr().ok();
    let http_state = http::HttpState {
        metrics: metrics.clone(),
        buffer: buffer.clone(),
        ready: ready.clone(),
        snapshots: snapshots::Snapshots::new(
            store.store.clone(),
            args.token.clone(),
            args.data.join(snapshots::SCRATCH_DIR),
        ),
    };
    tasks.spawn(http::serve(
        listeners.http,
        http_state,
        stopped(stop.clone()),
    ));

    let started = Instant::now();
    let wal_dir = args.wal_dir();
    // Flushes a crash cut off: a complete one is not replayed, a partial one is undone.
    let intents = wal::resolve_intents(&wal_dir, &store.store).await?;
    if intents != wal::IntentRecovery::default() {
        tracing::info!(
            complete = intents.completed,
            segments_removed = intents.segments_removed,
            partial = intents.partial,
            files_removed = intents.files_removed,
            "Settled the flushes the last run left unfinished."
        );
    }
    let (wal, recovery) = {
        let (metrics, buffer) = (metrics.clone(), buffer.clone());
        tokio::task::spawn_blocking(move || {
            Wal::open(&wal_dir, metrics, |batch| {
                // A batch whose insert failed was refused, never acknowledged: skip it.
                if let Err(error) = buffer.insert(&batch.exchanges) {
                    tracing::warn!(%error, sequence = batch.sequence, "Skipped a logged batch that was not acknowledged.");
                }
                Ok(())
            })
        })
        .await
        .map_err(|error| Error::Task { what: "write-ahead log recovery", reason: error.to_string() })??
    };
    tracing::info!(
        segments = recovery.segments,
        batches = recovery.records,
        exchanges = recovery.exchanges,
        truncated = recovery.truncated.is_some(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Recovered the write-ahead log."
    );
    if recovery.exchanges == 0
        && let Some(last) = recovery.last_segment
    {
        wal.remove_through(last).await?;
    }

    let gate = Arc::new(RwLock::new(()));
    let names = Arc::new(FileNamer::new(writer::random_writer_id(), 1));
    if intents.files_removed > 0 {
        // Readers that cached a listing with those files list again.
        store.changes.publish(&store.store, names.writer()).await?;
    }
    let flusher = Arc::new(
        Flusher::new(
            store.clone(),
            buffer.clone(),
            wal.clone(),
            gate.clone(),
            metrics.clone(),
            names.clone(),
        )
        .with_compression(args.flush_compression),
    );
    flusher.observe_buffer();
    let wake_flush = Arc::new(Notify::new());
    let flush_task = tasks.spawn({
        let flusher = flusher.clone();
        let run = flusher.run(
            args.flush_interval(),
            args.flush_trigger(),
            wake_flush.clone(),
            stop.clone(),
        );
        async move {
            run.await;
            Ok(())
        }
    });
    tasks.spawn({
        let run = writer::run_maintenance(
            store.clone(),
            names.clone(),
            args.maintenance(),
            Duration::from_secs(args.compact_interval),
            metrics.clone(),
            flusher.pinned(),
            stop.clone(),
        );
        async move {
            run.await;
            Ok(())
        }
    });

    let capture = CaptureService::new(
        IngestConfig::from_args(&args),
        wal.clone(),
        buffer.clone(),
        gate,
        metrics.clone(),
        wake_flush,
    );
    let grpc_addr = listeners.grpc.local_addr().ok();
    let grpc_task = tasks.spawn({
        // Batches are up to megabytes: HTTP/2's default 64 KiB windows would make every push
        // wait for window updates, and its default 16 KiB frames would deliver a push in dozens
        // of pieces, each a wake-up and a copy into the message buffer; a sender may now send a
        // push of up to 1 MiB as one frame. (Measured: BENCHMARKS.md, "Sixth pass".)
        let server = tonic::transport::Server::builder()
            .initial_stream_window_size(4 * 1024 * 1024)
            .initial_connection_window_size(16 * 1024 * 1024)
            .max_frame_size(MAX_PUSH_FRAME_BYTES)
            .layer(tower::util::MapResponseLayer::new(ingest::count_refusals(
                metrics.clone(),
            )))
            .add_service(capture.into_push_server())
            .serve_with_incoming_shutdown(
                accept_without_delay(listeners.grpc),
                stopped(stop.clone()),
            );
        async move { server.await.map_err(Error::from) }
    });
    let flight_addr = match listeners.flight {
        Some(listener) => {
            let addr = listener.local_addr().ok();
            let engine = Arc::new(
                query::QueryEngine::with_listing_cache(
                    store.store.clone(),
                    buffer.clone(),
                    &args.query,
                    store.changes.clone(),
                )?
                .with_metrics(metrics.clone()),
            );
            let serve = flight::serve(listener, engine, args.token.clone(), stopped(stop.clone()));
            tasks.spawn(async move {
                serve.await.map_err(|error| Error::Task {
                    what: "Flight SQL server",
                    reason: error.to_string(),
                })
            });
            addr
        }
        None => None,
    };
    ready.store(true, Ordering::Release);
    tracing::info!(
        grpc = ?grpc_addr,
        http = ?http_addr,
        flight = ?flight_addr,
        store = %store.url,
        "Collector ready."
    );

    // Until shutdown, or until a task fails.
    let mut outcome = Ok(());
    let mut grpc_done = false;
    let mut flush_done = false;
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            Err(error) => (
                error.id(),
                Err(Error::Task {
                    what: "collector",
                    reason: error.to_string(),
                }),
            ),
        };
        if let Err(error) = result {
            tracing::error!(%error, "A collector task failed; shutting down.");
            if outcome.is_ok() {
                outcome = Err(error);
            }
            let _ = stop_sender.send(true);
        }
        grpc_done |= id == grpc_task.id();
        flush_done |= id == flush_task.id();
        if grpc_done && flush_done {
            break;
        }
    }
    // Ingest has stopped and so has the flush loop: flush what is left.
    ready.store(false, Ordering::Release);
    match flusher.flush().await {
        Ok(report) => tracing::info!(
            files = report.files,
            rows = report.rows,
            "Flushed before exit."
        ),
        Err(error) => {
            tracing::error!(%error, "Final flush failed; the write-ahead log replays the data on the next start.");
            if outcome.is_ok() {
                outcome = Err(error);
            }
        }
    }
    let _ = stop_sender.send(true);
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(error)) = joined {
            tracing::warn!(%error, "A collector task failed while stopping.");
        }
    }
    drop(flusher);
    wal.close();
    outcome
}

#[cfg(test)]
mod accept_tests {
    use tokio_stream::StreamExt as _;

    use super::*;

    /// Connections the servers accept have `TCP_NODELAY`; a plain listener stream's do not (so
    /// the check can tell them apart).
    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        for (delay_off, expected) in [(true, true), (false, false)] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let mut accepted: std::pin::Pin<
                Box<dyn tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>>>,
            > = if delay_off {
                Box::pin(accept_without_delay(listener))
            } else {
                Box::pin(TcpListenerStream::new(listener))
            };
            let _client = tokio::net::TcpStream::connect(address).await.unwrap();
            let stream = accepted.next().await.unwrap().unwrap();
            assert_eq!(
                stream.nodelay().unwrap(),
                expected,
                "delay off: {delay_off}"
            );
        }
    }

    /// The same for the HTTP port's listener (metrics, snapshots, the viewer) and a plain one.
    #[tokio::test]
    async fn the_http_listener_turns_nagle_off() {
        use axum::serve::Listener as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut without = crate::http::without_delay(listener);
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let (stream, _) = without.accept().await;
        assert!(stream.nodelay().unwrap());

        let mut plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = plain.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let (stream, _) = axum::serve::Listener::accept(&mut plain).await;
        assert!(!stream.nodelay().unwrap());
    }
}
