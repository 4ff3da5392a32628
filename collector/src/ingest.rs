//! The `tapedeck.capture.v1.Capture` gRPC service: where filters push their batches.
//!
//! A push is checked (bearer token, every exchange valid, buffer and disk limits), appended to
//! the write-ahead log (group commit), added to the buffer, and only then acknowledged with the
//! number of exchanges stored. Any error refuses the whole batch: nothing of it is stored.
//!
//! Loss upstream is made visible here: `dropped_since_last` of each batch is added to a counter,
//! and gaps in each filter VM's batch `sequence` count as lost batches. A filter VM is known by
//! its connection's peer address: Envoy keeps one connection pool per worker thread, and runs
//! one Wasm VM per worker.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tapedeck_proto::arrow_schema::ArrowError;
use tapedeck_proto::capture::v1::capture_server::{Capture, CaptureServer};
use tapedeck_proto::prost::Message as _;
use tapedeck_proto::wire::{BatchRef, DecodeError, ExchangeRef, MessageRef};
use tapedeck_proto::{Direction, ExchangeBatch, Protocol, PushAck};
use tokio::sync::{Notify, RwLock};
use tonic::{Request, Response, Status};

use crate::auth::{Schemes, credentials_match};
use crate::buffer::{Buffer, Placement, Prepared};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::wal::Wal;

/// The length of an exchange id.
pub const ID_BYTES: usize = 16;
/// The highest HTTP status accepted.
pub const MAX_STATUS: u32 = 999;
/// How far out of order a batch may arrive and still not count as lost.
pub const SEQUENCE_WINDOW: u64 = 64;
/// Filter VMs whose sequences are tracked at once; the least recently seen is forgotten first.
pub const MAX_TRACKED_FILTERS: usize = 4096;

/// What the ingest service needs to know from the flags.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The bearer token pushes must carry, if any.
    pub token: Option<String>,
    /// The largest encoded batch accepted.
    pub max_push_bytes: u64,
    /// The buffer size above which pushes are refused.
    pub buffer_max_bytes: u64,
    /// The free disk below which pushes are refused.
    pub min_free_disk: u64,
    /// What wakes the flush loop.
    pub flush: crate::buffer::FlushTrigger,
    /// The folder whose disk is checked (the write-ahead log's).
    pub disk_path: PathBuf,
}

impl IngestConfig {
    /// The ingest settings of the collector's flags.
    pub fn from_args(args: &crate::CollectorArgs) -> Self {
        Self {
            token: args.token.clone(),
            max_push_bytes: args.max_push_bytes,
            buffer_max_bytes: args.buffer_max_bytes,
            min_free_disk: args.min_free_disk,
            flush: args.flush_trigger(),
            disk_path: args.wal_dir(),
        }
    }
}

/// The `Capture` service.
#[derive(Debug)]
pub struct CaptureService {
    config: IngestConfig,
    wal: Wal,
    buffer: Arc<Buffer>,
    gate: Arc<RwLock<()>>,
    metrics: Arc<Metrics>,
    wake_flush: Arc<Notify>,
    sequences: Mutex<SequenceTracker>,
    vms: Mutex<vms::VmTracker>,
}

impl CaptureService {
    /// The service. `gate` is shared with the flusher: a push holds it (shared) across its log
    /// append and buffer insert; `wake_flush` is notified when `flush_rows` rows are buffered.
    pub fn new(
        config: IngestConfig,
        wal: Wal,
        buffer: Arc<Buffer>,
        gate: Arc<RwLock<()>>,
        metrics: Arc<Metrics>,
        wake_flush: Arc<Notify>,
    ) -> Self {
        Self {
            config,
            wal,
            buffer,
            gate,
            metrics,
            wake_flush,
            sequences: Mutex::new(SequenceTracker::default()),
            vms: Mutex::new(vms::VmTracker::new(unix_nanos_now())),
        }
    }

    /// The tonic server for this service, refusing messages over `max_push_bytes`: the
    /// generated one, which decodes every batch and so must encode it again for the log.
    pub fn into_server(self) -> CaptureServer<Self> {
        let limit = usize::try_from(self.config.max_push_bytes).unwrap_or(usize::MAX);
        CaptureServer::new(self).max_decoding_message_size(limit)
    }

    /// The server the collector runs: the same `Capture/Push` method, but it keeps the bytes
    /// each batch arrived as and logs those ([`PushServer`]), refusing messages over
    /// `max_push_bytes`.
    pub fn into_push_server(self) -> PushServer {
        let limit = usize::try_from(self.config.max_push_bytes).unwrap_or(usize::MAX);
        PushServer {
            service: Arc::new(self),
            max_decoding_message_size: limit,
        }
    }

    /// Checks and stores one batch; returns the number of exchanges stored. The batch is
    /// encoded and takes the path of a received one ([`CaptureService::store_received`]).
    pub async fn store(&self, batch: ExchangeBatch) -> Result<usize> {
        let received =
            Received::decode(Bytes::from(batch.encode_to_vec())).map_err(|error| Error::Task {
                what: "decoding an encoded batch",
                reason: error.to_string(),
            })?;
        self.store_received(received).await
    }

    /// [`CaptureService::store`] of a batch as received: its bytes are what the log stores,
    /// and what the buffer's rows are built from.
    pub async fn store_received(&self, mut received: Received) -> Result<usize> {
        let (sequence, count) = (received.sequence, received.count);
        let bytes = received.bytes.len() as u64;
        if bytes > self.config.max_push_bytes {
            return Err(Error::BatchTooLarge {
                sequence,
                bytes,
                limit: self.config.max_push_bytes,
            });
        }
        received.check()?;
        let held = self.buffer.bytes() as u64;
        if held >= self.config.buffer_max_bytes {
            return Err(Error::BufferFull {
                bytes: held,
                limit: self.config.buffer_max_bytes,
            });
        }
        if let Some(free) = free_disk_bytes(&self.config.disk_path)
            && free < self.config.min_free_disk
        {
            return Err(Error::DiskFull {
                free,
                min: self.config.min_free_disk,
            });
        }
        {
            let _shared = self.gate.read().await;
            // Queued for the log's next group commit; the rows' Arrow arrays (appended to their
            // builders as the batch was decoded) are finished while the log writes and syncs,
            // and the batch enters the buffer only once it is durable.
            let logged = self.wal.submit(received.bytes.clone())?;
            let prepared = received.prepare();
            logged.await?;
            self.buffer.insert_prepared(prepared?);
        }
        if self.config.flush.due(&self.buffer) {
            self.wake_flush.notify_one();
        }
        self.metrics.batches_received.inc();
        self.metrics.exchanges_received.inc_by(count as u64);
        self.metrics.bytes_received.inc_by(bytes);
        Ok(count)
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<()> {
        let Some(token) = &self.config.token else {
            return Ok(());
        };
        let presented = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes());
        if presented
            .is_some_and(|value| credentials_match(value, token.as_bytes(), Schemes::Bearer))
        {
            Ok(())
        } else {
            Err(Error::Unauthenticated)
        }
    }

    /// Accounts for a push on arrival: which filter VM sent it (a VM start, the workload's
    /// last push) and gaps in its sequence. Its drop report (`dropped_since_last`) is counted
    /// only once the batch is stored ([`CaptureService::account_stored`]): a filter whose push
    /// failed or was refused carries the report forward to its next batch.
    fn account(&self, peer: Option<SocketAddr>, sender: &vms::Sender, sequence: u64) {
        if !sender.workload.is_empty() {
            if self
                .vms
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .observe(sender)
            {
                self.metrics
                    .filter_vm_started(&sender.workload, &sender.namespace);
                tracing::info!(workload = %sender.workload, namespace = %sender.namespace, vm = %sender.vm_id, "A filter VM started.");
            }
            self.metrics.filter_pushed(
                &sender.workload,
                &sender.namespace,
                unix_nanos_now() as f64 / 1e9,
            );
        }
        let Some(peer) = peer else { return };
        let lost = self
            .sequences
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .observe(peer, sequence);
        if lost > 0 {
            self.metrics.batches_lost.inc_by(lost);
            tracing::warn!(%peer, lost, sequence, "Batches were lost on the way from a filter.");
        }
    }

    /// Counts the drop report of a batch that was stored.
    fn account_stored(&self, dropped_since_last: u64) {
        self.metrics
            .filter_dropped_exchanges
            .inc_by(dropped_since_last);
    }
}

fn unix_nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

#[tonic::async_trait]
impl Capture for CaptureService {
    async fn push(&self, request: Request<ExchangeBatch>) -> Result<Response<PushAck>, Status> {
        let (metadata, extensions, batch) = request.into_parts();
        // The generated server decoded the batch already; encode it for the one path.
        let received = Received::decode(Bytes::from(batch.encode_to_vec()))
            .map_err(|error| Status::internal(error.to_string()))?;
        self.push_received(Request::from_parts(metadata, extensions, received))
            .await
    }
}

impl CaptureService {
    async fn push_received(&self, request: Request<Received>) -> Result<Response<PushAck>, Status> {
        if let Err(error) = self.authorize(&request) {
            self.metrics.batch_rejected(error.reason());
            return Err(error.into());
        }
        let peer = request.remote_addr();
        let sender = vms::Sender::from_metadata(request.metadata());
        let received = request.into_inner();
        let (sequence, dropped) = (received.sequence, received.dropped_since_last);
        self.account(peer, &sender, sequence);
        match self.store_received(received).await {
            Ok(accepted) => {
                self.account_stored(dropped);
                Ok(Response::new(PushAck {
                    accepted: accepted as u64,
                }))
            }
            Err(error) => {
                self.metrics.batch_rejected(error.reason());
                tracing::debug!(%error, sequence, "Refused a batch.");
                Err(error.into())
            }
        }
    }
}

/// A response mapper for the gRPC server that counts the pushes tonic refuses before they reach
/// [`CaptureService`]: a message over `--max-push-bytes` (OUT_OF_RANGE, counted as `too_large`)
/// and bytes that are not an `ExchangeBatch` (counted as `malformed`, and answered with
/// INVALID_ARGUMENT instead of tonic's INTERNAL, since the sender is at fault). Use it with
/// `tower::util::MapResponseLayer`.
pub fn count_refusals(
    metrics: Arc<Metrics>,
) -> impl Fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> + Clone {
    move |response| {
        // tonic attaches the status to the trailers-only responses it builds from errors.
        let Some(status) = response.extensions().get::<Status>() else {
            return response;
        };
        match status.code() {
            tonic::Code::OutOfRange => {
                metrics.batch_rejected("too_large");
                response
            }
            tonic::Code::Internal if status.message().starts_with(DECODE_FAILURE) => {
                metrics.batch_rejected("malformed");
                Status::invalid_argument(status.message()).into_http()
            }
            _ => response,
        }
    }
}

/// A pushed batch as received: its bytes (a view of the request's buffer, not a copy), what
/// the collector needs of it before storing it, and the outcome of its checks. No `Exchange`
/// is built: [`Received::decode`] reads the exchanges in place from the bytes, checks each and
/// appends it to its partition's Arrow builder in the same pass ([`Placement`]).
#[derive(Debug)]
pub struct Received {
    bytes: Bytes,
    sequence: u64,
    dropped_since_last: u64,
    /// How many exchanges it holds.
    count: usize,
    /// The rows of its exchanges by partition (only up to the first invalid exchange).
    placement: Placement,
    /// The first invalid exchange: its index and what is wrong with it.
    invalid: Option<(usize, String)>,
}

impl Received {
    /// Decodes and checks a pushed batch in place. Fails exactly where
    /// `ExchangeBatch::decode` fails (the error's text starts as prost's); a batch that decodes
    /// but holds an invalid exchange is returned with the first problem, which
    /// [`CaptureService::store_received`] reports as [`validate`] would.
    pub fn decode(bytes: Bytes) -> Result<Self, DecodeError> {
        let batch = BatchRef::parse(&bytes)?;
        let mut placement = Placement::with_capacity(batch.exchanges.len());
        let mut invalid = None;
        batch.for_each(&bytes, |index, exchange| {
            if invalid.is_some() {
                // Parsed on to fail exactly where prost fails; the batch is refused anyway.
                return;
            }
            match check_exchange(exchange) {
                Ok(()) => placement.place(exchange),
                Err(reason) => invalid = Some((index, reason)),
            }
        })?;
        let (sequence, dropped_since_last) = (batch.sequence, batch.dropped_since_last);
        let count = batch.exchanges.len();
        Ok(Self {
            bytes,
            sequence,
            dropped_since_last,
            count,
            placement,
            invalid,
        })
    }

    /// The batch's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The batch's drop report.
    pub fn dropped_since_last(&self) -> u64 {
        self.dropped_since_last
    }

    /// How many exchanges the batch holds.
    pub fn exchanges(&self) -> usize {
        self.count
    }

    /// The bytes the batch arrived as.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The first invalid exchange, as [`validate`] reports it.
    pub fn check(&self) -> Result<()> {
        match &self.invalid {
            None => Ok(()),
            Some((index, reason)) => Err(Error::InvalidExchange {
                sequence: self.sequence,
                index: *index,
                reason: reason.clone(),
            }),
        }
    }

    /// The batch's rows by partition, built from the received bytes while they were checked
    /// ([`Placement::finish`]); for a batch whose [`Received::check`] passed.
    pub fn prepare(&mut self) -> std::result::Result<Prepared, ArrowError> {
        if self.invalid.is_some() {
            return Err(ArrowError::InvalidArgumentError(
                "the batch holds an invalid exchange".into(),
            ));
        }
        std::mem::take(&mut self.placement).finish()
    }
}

/// The gRPC path of `Capture/Push`.
const PUSH_PATH: &str = "/tapedeck.capture.v1.Capture/Push";

/// The `tapedeck.capture.v1.Capture` service as the collector serves it: like the generated
/// server, but each batch keeps the bytes it arrived as, and those are what the write-ahead log
/// stores, so nothing is encoded again.
#[derive(Debug, Clone)]
pub struct PushServer {
    service: Arc<CaptureService>,
    max_decoding_message_size: usize,
}

impl tonic::server::NamedService for PushServer {
    const NAME: &'static str = "tapedeck.capture.v1.Capture";
}

impl<B> tower::Service<http::Request<B>> for PushServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != PUSH_PATH {
            return Box::pin(async {
                Ok(Status::unimplemented("tapedeck.capture.v1.Capture has only Push").into_http())
            });
        }
        let service = self.service.clone();
        let limit = self.max_decoding_message_size;
        Box::pin(async move {
            Ok(push(service, limit, request)
                .await
                .unwrap_or_else(Status::into_http))
        })
    }
}

/// One unary `Push` call: the gRPC framing (grpc/grpc's `PROTOCOL-HTTP2.md`) read here rather
/// than by tonic's `Grpc::unary`, which copies every request into a buffer of its own. A push
/// that arrives in one HTTP/2 DATA frame (the server accepts frames of up to
/// [`crate::MAX_PUSH_FRAME_BYTES`]) is decoded from that frame's bytes, and those same bytes
/// are what the log writes; one in several frames is joined once, as tonic would. Refusals
/// are tonic's: the same codes and, where callers or [`count_refusals`] look, the same words.
async fn push<B>(
    service: Arc<CaptureService>,
    limit: usize,
    request: http::Request<B>,
) -> Result<http::Response<tonic::body::Body>, Status>
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    if let Some(encoding) = request.headers().get("grpc-encoding")
        && encoding != "identity"
    {
        return Err(Status::unimplemented(format!(
            "Content is compressed with `{}` which isn't supported",
            encoding.to_str().unwrap_or("(not text)")
        )));
    }
    let (parts, body) = request.into_parts();
    let message = read_message(body, limit).await?;
    let received =
        Received::decode(message).map_err(|error| Status::internal(error.to_string()))?;
    let ack = service
        .push_received(Request::from_http(http::Request::from_parts(
            parts, received,
        )))
        .await?
        .into_inner();
    Ok(ack_response(&ack))
}

/// The length of gRPC's message prefix: a compression flag and a big-endian length.
const GRPC_PREFIX: usize = 5;

/// Reads the one message of a unary request's body, without copying it when it arrived in one
/// frame. The message's length is checked against `limit` as soon as its prefix is in. From
/// a second frame on, the frames are copied into one buffer as they come, so that what a
/// request holds stays within `limit` whatever the size of its frames (a view per frame would
/// keep each frame's receive buffer, and a slot, alive: with 1-byte frames, many times the
/// message).
async fn read_message<B>(body: B, limit: usize) -> Result<Bytes, Status>
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    use bytes::Buf as _;
    use http_body_util::BodyExt as _;
    let mut body = std::pin::pin!(body);
    let mut prefix = [0u8; GRPC_PREFIX];
    let mut received = 0usize;
    // The whole length (prefix and message) once the prefix is in.
    let mut expected: Option<usize> = None;
    let mut first: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| Status::from_error(error.into()))?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers: a push carries nothing there
        };
        let data = data.copy_to_bytes(data.remaining());
        if data.is_empty() {
            continue;
        }
        if received < GRPC_PREFIX {
            let take = (GRPC_PREFIX - received).min(data.len());
            prefix[received..received + take].copy_from_slice(&data[..take]);
            if received + take == GRPC_PREFIX {
                expected = Some(GRPC_PREFIX + message_length(&prefix, limit)?);
            }
        }
        received += data.len();
        if expected.is_some_and(|expected| received > expected) {
            return Err(Status::internal(
                "protocol error: a unary request holds more than one message",
            ));
        }
        if let Some(joined) = &mut joined {
            joined.extend_from_slice(&data);
        } else if let Some(first) = first.take() {
            let mut buffer = bytes::BytesMut::with_capacity(expected.unwrap_or(received));
            buffer.extend_from_slice(&first);
            buffer.extend_from_slice(&data);
            joined = Some(buffer);
        } else {
            first = Some(data);
        }
    }
    match expected {
        None if received == 0 => Err(Status::internal("Missing request message.")),
        Some(expected) if received == expected => match (joined, first) {
            (Some(joined), _) => Ok(joined.freeze().split_off(GRPC_PREFIX)),
            (None, Some(whole)) => Ok(whole.slice(GRPC_PREFIX..)),
            (None, None) => Err(Status::internal("Missing request message.")),
        },
        _ => Err(Status::internal("Unexpected EOF decoding stream.")),
    }
}

/// The message length of gRPC's prefix, refused as tonic refuses: a compressed message (no
/// compression is accepted) and one longer than `limit`.
fn message_length(prefix: &[u8; GRPC_PREFIX], limit: usize) -> Result<usize, Status> {
    match prefix[0] {
        0 => {}
        1 => {
            return Err(Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            ));
        }
        flag => {
            return Err(Status::internal(format!(
                "protocol error: received message with invalid compression flag: {flag} (valid flags are 0 and 1), while sending request"
            )));
        }
    }
    let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if length > limit {
        return Err(Status::out_of_range(format!(
            "Error, decoded message length too large: found {length} bytes, the limit is: {limit} bytes"
        )));
    }
    Ok(length)
}

/// A successful unary response: the acknowledgement as one gRPC message, then `grpc-status: 0`.
fn ack_response(ack: &PushAck) -> http::Response<tonic::body::Body> {
    use bytes::BufMut as _;
    let length = ack.encoded_len();
    let mut message = bytes::BytesMut::with_capacity(GRPC_PREFIX + length);
    message.put_u8(0);
    message.put_u32(length as u32);
    ack.encode(&mut message)
        .expect("the buffer was sized to the acknowledgement");
    let mut trailers = http::HeaderMap::new();
    trailers.insert(Status::GRPC_STATUS, http::HeaderValue::from_static("0"));
    let frames = [
        Ok::<_, Status>(http_body::Frame::data(message.freeze())),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let mut response = http::Response::new(tonic::body::Body::new(
        http_body_util::StreamBody::new(futures::stream::iter(frames)),
    ));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// How prost decode errors start, as tonic reports them.
const DECODE_FAILURE: &str = "failed to decode Protobuf message";

/// Checks every exchange of a batch; the first problem refuses the batch, naming the exchange.
/// (The same checks as a received batch's, [`Received::decode`].)
pub fn validate(batch: &ExchangeBatch) -> Result<()> {
    let mut view = ExchangeRef::default();
    for (index, exchange) in batch.exchanges.iter().enumerate() {
        view.fill_from(exchange);
        check_exchange(&view).map_err(|reason| Error::InvalidExchange {
            sequence: batch.sequence,
            index,
            reason,
        })?;
    }
    Ok(())
}

fn check_exchange(exchange: &ExchangeRef<'_>) -> Result<(), String> {
    if exchange.id.len() != ID_BYTES {
        return Err(format!(
            "id must be {ID_BYTES} bytes, got {}",
            exchange.id.len()
        ));
    }
    if Direction::try_from(exchange.direction).is_err() {
        return Err(format!(
            "direction {} is not a known value",
            exchange.direction
        ));
    }
    if Protocol::try_from(exchange.protocol).is_err() {
        return Err(format!(
            "protocol {} is not a known value",
            exchange.protocol
        ));
    }
    if exchange.status > MAX_STATUS {
        return Err(format!("status {} is above {MAX_STATUS}", exchange.status));
    }
    if i64::try_from(exchange.start_unix_nanos).is_err() {
        return Err(format!(
            "start_unix_nanos {} is after the year 2262",
            exchange.start_unix_nanos
        ));
    }
    if !(0.0..=1.0).contains(&exchange.sample_rate) {
        return Err(format!(
            "sample_rate must be within [0, 1], got {}",
            exchange.sample_rate
        ));
    }
    for (side, message) in [
        ("request", exchange.request()),
        ("response", exchange.response()),
    ] {
        if let Some(message) = message {
            // Redaction rewrites a JSON body with markers that can be longer than the secrets
            // they replace, so a redacted body may hold more bytes than the proxy saw. (A place
            // that starts with `{side}.body:`.)
            let redacted = exchange.redactions.iter().any(|place| {
                place
                    .strip_prefix(side)
                    .is_some_and(|rest| rest.starts_with(".body:"))
            });
            check_message(side, message, redacted)?;
        }
    }
    Ok(())
}

fn check_message(side: &str, message: &MessageRef<'_>, body_redacted: bool) -> Result<(), String> {
    if !body_redacted && message.body.len() as u64 > message.body_size {
        return Err(format!(
            "{side} body holds {} bytes, more than its body_size {}",
            message.body.len(),
            message.body_size
        ));
    }
    for (kind, fields) in [("header", &message.headers), ("trailer", &message.trailers)] {
        if let Some(position) = fields.iter().position(|field| field.name.is_empty()) {
            return Err(format!("{side} {kind} {position} has an empty name"));
        }
    }
    Ok(())
}

/// Free bytes on the disk holding `path`, for unprivileged users; `None` when unknown.
#[cfg(unix)]
pub fn free_disk_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `path` is a NUL-terminated string and `stats` is a writable statvfs.
    let status = unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) };
    if status != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded, so it filled `stats`.
    let stats = unsafe { stats.assume_init() };
    #[allow(
        clippy::useless_conversion,
        reason = "the field types differ between platforms"
    )]
    let free = u64::from(stats.f_bavail).saturating_mul(u64::from(stats.f_frsize));
    Some(free)
}

/// Free bytes on the disk holding `path`; not known on this platform.
#[cfg(not(unix))]
pub fn free_disk_bytes(_path: &std::path::Path) -> Option<u64> {
    None
}

/// Finds lost batches from the per-VM `sequence` numbers.
#[derive(Debug, Default)]
pub struct SequenceTracker {
    filters: HashMap<SocketAddr, FilterSequence>,
    clock: u64,
}

#[derive(Debug)]
struct FilterSequence {
    highest: u64,
    /// Sequences below `highest` not seen yet (possibly still in flight).
    missing: BTreeSet<u64>,
    last_seen: u64,
}

impl SequenceTracker {
    /// Records batch `sequence` from `filter`; returns how many batches are now known lost (a
    /// missing sequence counts as lost once it is more than [`SEQUENCE_WINDOW`] behind the
    /// highest seen, so reordered in-flight pushes do not count).
    pub fn observe(&mut self, filter: SocketAddr, sequence: u64) -> u64 {
        self.clock += 1;
        let clock = self.clock;
        if !self.filters.contains_key(&filter) && self.filters.len() >= MAX_TRACKED_FILTERS {
            let oldest = self
                .filters
                .iter()
                .min_by_key(|(_, state)| state.last_seen)
                .map(|(addr, _)| *addr);
            if let Some(oldest) = oldest {
                self.filters.remove(&oldest);
            }
        }
        let state = self.filters.entry(filter).or_insert(FilterSequence {
            highest: sequence,
            missing: BTreeSet::new(),
            last_seen: clock,
        });
        state.last_seen = clock;
        let mut lost = 0;
        if sequence > state.highest {
            let gap_start = state.highest + 1;
            // Far-away gaps are lost at once rather than remembered one by one.
            let remembered_from = sequence.saturating_sub(SEQUENCE_WINDOW).max(gap_start);
            lost += remembered_from - gap_start;
            state.missing.extend(remembered_from..sequence);
            state.highest = sequence;
        } else {
            state.missing.remove(&sequence);
        }
        let horizon = state.highest.saturating_sub(SEQUENCE_WINDOW);
        let kept = state.missing.split_off(&horizon);
        lost += std::mem::replace(&mut state.missing, kept).len() as u64;
        lost
    }
}

#[cfg(test)]
mod tests;
pub mod vms;
