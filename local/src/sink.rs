//! An in-memory capture receiver: the `Capture` gRPC service that hands each received batch to a
//! channel, or refuses, or hangs, so tests can see what the filter sends and how it copes with a
//! collector that is down, refusing or slow.

use anyhow::{Context as _, Result, bail};
use std::future::Future;
use std::time::Duration;
use tapedeck_proto::capture::v1::capture_server::{Capture, CaptureServer};
use tapedeck_proto::tonic::{self, Request, Response, Status};
use tapedeck_proto::{Exchange, ExchangeBatch, PushAck};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::TcpListenerStream;

/// The largest batch the sink decodes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How the sink answers pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SinkMode {
    /// Passes each batch to the channel and acks all of its exchanges.
    #[default]
    Accept,
    /// Answers `UNAVAILABLE` to every push.
    Refuse,
    /// Never answers; each push is held until the sink shuts down.
    Hang,
}

/// One push the sink accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The batch.
    pub batch: ExchangeBatch,
    /// The request metadata (gRPC headers) as name/value pairs, for example `authorization`.
    pub metadata: Vec<(String, String)>,
}

/// Where the sink sends what it accepted.
pub type ReceivedTx = mpsc::UnboundedSender<Received>;
/// Where tests read what the sink accepted.
pub type ReceivedRx = mpsc::UnboundedReceiver<Received>;

#[derive(Debug)]
struct Sink {
    mode: SinkMode,
    received: ReceivedTx,
    stopping: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Capture for Sink {
    async fn push(&self, request: Request<ExchangeBatch>) -> Result<Response<PushAck>, Status> {
        match self.mode {
            SinkMode::Accept => {
                let metadata = request
                    .metadata()
                    .clone()
                    .into_headers()
                    .iter()
                    .map(|(name, value)| {
                        (
                            name.to_string(),
                            String::from_utf8_lossy(value.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let batch = request.into_inner();
                let accepted = batch.exchanges.len() as u64;
                // A test that stopped reading is no reason to fail the push.
                let _ = self.received.send(Received { batch, metadata });
                Ok(Response::new(PushAck { accepted }))
            }
            SinkMode::Refuse => Err(Status::unavailable("the test sink refuses every push")),
            SinkMode::Hang => {
                let mut stopping = self.stopping.clone();
                // Resolves when the sink shuts down (or its shutdown signal is gone).
                let _ = stopping.wait_for(|stopping| *stopping).await;
                Err(Status::unavailable("the test sink is shutting down"))
            }
        }
    }
}

/// Serves the sink on `listener` until `shutdown` completes. Accepted batches go to `received`.
pub async fn serve(
    listener: TcpListener,
    mode: SinkMode,
    received: ReceivedTx,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let local = listener
        .local_addr()
        .context("reading the sink's address")?;
    let (stop, stopping) = watch::channel(false);
    let sink = Sink {
        mode,
        received,
        stopping,
    };
    let service = CaptureServer::new(sink).max_decoding_message_size(MAX_MESSAGE_BYTES);
    tracing::debug!(%local, ?mode, "Capture sink listening.");
    let signal = async move {
        shutdown.await;
        // Lets hanging pushes end so that the server's graceful shutdown can finish.
        let _ = stop.send(true);
    };
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
        .await
        .with_context(|| format!("serving the capture sink on {local}"))
}

/// What [`collect_until`] gathered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collected {
    /// The pushes, in arrival order.
    pub received: Vec<Received>,
}

impl Collected {
    /// Every exchange of every batch, in arrival order.
    pub fn exchanges(&self) -> impl Iterator<Item = &Exchange> {
        self.received
            .iter()
            .flat_map(|received| &received.batch.exchanges)
    }

    /// How many exchanges arrived.
    pub fn len(&self) -> usize {
        self.received
            .iter()
            .map(|received| received.batch.exchanges.len())
            .sum()
    }

    /// True when no exchange arrived.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads pushes from `rx` until `done` holds for what arrived so far; fails after `timeout`,
/// saying how much did arrive.
pub async fn collect_until(
    rx: &mut ReceivedRx,
    timeout: Duration,
    mut done: impl FnMut(&Collected) -> bool,
) -> Result<Collected> {
    let deadline = Instant::now() + timeout;
    let mut collected = Collected::default();
    while !done(&collected) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(received)) => collected.received.push(received),
            Ok(None) => bail!("the sink stopped after {} exchanges", collected.len()),
            Err(_) => bail!(
                "timed out after {timeout:?} with {} exchanges in {} batches: {:?}",
                collected.len(),
                collected.received.len(),
                collected
                    .exchanges()
                    .map(|e| format!("{} {}", e.method, e.path))
                    .collect::<Vec<_>>()
            ),
        }
    }
    Ok(collected)
}

/// Reads pushes until `count` exchanges arrived, for at most `timeout`.
pub async fn collect_exchanges(
    rx: &mut ReceivedRx,
    count: usize,
    timeout: Duration,
) -> Result<Collected> {
    collect_until(rx, timeout, |collected| collected.len() >= count).await
}

/// Reads every push that arrives within `window` (for checking that nothing, or nothing more,
/// is sent).
pub async fn collect_for(rx: &mut ReceivedRx, window: Duration) -> Collected {
    let deadline = Instant::now() + window;
    let mut collected = Collected::default();
    while let Ok(Some(received)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        collected.received.push(received);
    }
    collected
}
