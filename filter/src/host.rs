//! The proxy-wasm glue: moves bytes between Envoy and the capture logic.
//!
//! Queueing is per VM, on purpose: Envoy runs one Wasm VM per worker thread, each with its own
//! root context. HTTP contexts hand finished exchanges to their own VM's outbox through an `Rc`
//! (no copy, no lock, no shared-queue host call), and that VM's root context flushes on its own
//! tick with `dispatch_grpc_call`. Bounds therefore hold per worker.
//!
//! Every host call here returns a `Result` (`abi.rs`'s `hostcalls`, named as the proxy-wasm SDK
//! named them, or this module's `raw` calls on the data path); a failure is counted and the
//! stream goes on untouched (`Action::Continue` everywhere).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use crate::abi::hostcalls;
use crate::abi::traits::{Context, HttpContext, RootContext};
use crate::abi::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use tapedeck_proto::{CAPTURE_PUSH_METHOD, CAPTURE_SERVICE, Direction};

use crate::capture::{
    self, Decision, FILTER_VERSION, Identity, Matcher, Rng, Sampler, StreamCapture, StreamEnd,
};
use crate::config::Config;
use crate::headers::HeaderMap;
use crate::metrics;
use crate::queue::{Batch, Outbox};
use crate::redact::Redactor;

/// How often the same kind of warning may be logged, at most.
const WARN_INTERVAL_NANOS: u64 = 10_000_000_000;

pub(crate) fn start() {
    crate::abi::log_panics();
    crate::abi::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}

fn now_nanos() -> u64 {
    calls::count(calls::Call::Clock);
    hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// The data-returning host calls of the data path, called directly: the result is taken as the
/// one buffer the host wrote (no per-header `String`/`Vec`), property paths are serialized once
/// as constants, and an unexpected status is an error, never a panic.
mod raw {
    use std::ptr::null_mut;

    use super::calls::{Call, count};

    use crate::abi::ffi::{
        proxy_call_foreign_function, proxy_get_buffer_bytes, proxy_get_header_map_pairs,
        proxy_get_property,
    };

    const OK: u32 = 0;
    const NOT_FOUND: u32 = 1;

    /// Takes ownership of what the host returned (`abi::take`), counting the host's call into
    /// the module's `proxy_on_memory_allocate` that handed it over.
    fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
        if data.is_null() {
            return None;
        }
        count(Call::Allocation);
        crate::abi::take(data, size)
    }

    /// A property by its serialized path (segments joined by NUL). `Err` on a host failure.
    pub(super) fn property(path: &[u8]) -> Result<Option<Vec<u8>>, u32> {
        let mut data = null_mut();
        let mut size = 0;
        count(Call::Property);
        // SAFETY: the pointers are valid for the call; the host writes the two out values.
        let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
        match status {
            OK => Ok(owned(data, size)),
            NOT_FOUND => Ok(None),
            other => Err(other),
        }
    }

    /// At most `max` bytes of a buffer from `start`.
    pub(super) fn buffer(
        buffer: crate::abi::types::BufferType,
        start: usize,
        max: usize,
    ) -> Result<Option<Vec<u8>>, u32> {
        let mut data = null_mut();
        let mut size = 0;
        count(Call::Buffer);
        // SAFETY: as above.
        let status =
            unsafe { proxy_get_buffer_bytes(buffer as u32, start, max, &mut data, &mut size) };
        match status {
            OK => Ok(owned(data, size)),
            NOT_FOUND => Ok(None),
            other => Err(other),
        }
    }

    /// Calls one of the proxy's foreign functions (Envoy: `expr_create`, `expr_evaluate`).
    pub(super) fn foreign(name: &str, arguments: &[u8]) -> Result<Option<Vec<u8>>, u32> {
        let mut data = null_mut();
        let mut size = 0;
        count(Call::Foreign);
        // SAFETY: as above.
        let status = unsafe {
            proxy_call_foreign_function(
                name.as_ptr(),
                name.len(),
                arguments.as_ptr(),
                arguments.len(),
                &mut data,
                &mut size,
            )
        };
        match status {
            OK => Ok(owned(data, size)),
            other => Err(other),
        }
    }

    /// A header map in the proxy's serialized form.
    pub(super) fn map(map: crate::abi::types::MapType) -> Result<Vec<u8>, u32> {
        let mut data = null_mut();
        let mut size = 0;
        count(Call::HeaderMap);
        // SAFETY: as above.
        let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
        match status {
            OK => Ok(owned(data, size).unwrap_or_default()),
            other => Err(other),
        }
    }
}

/// Host calls by kind, counted only in builds with the `host-call-counts` feature (never the
/// shipped `filter.wasm`): the profile in BENCHMARKS.md reads them from Envoy's stats. Without
/// the feature, [`calls::count`] is empty and compiles away.
mod calls {
    /// What crossed from the VM into the proxy (or, for `Allocation`, back).
    #[derive(Debug, Clone, Copy)]
    pub(super) enum Call {
        HeaderMap,
        Buffer,
        Property,
        Foreign,
        Clock,
        Grpc,
        /// The proxy called the module's `proxy_on_memory_allocate` to hand back data.
        Allocation,
    }

    #[cfg(feature = "host-call-counts")]
    static COUNTS: [std::sync::atomic::AtomicU64; 7] =
        [const { std::sync::atomic::AtomicU64::new(0) }; 7];

    #[cfg(feature = "host-call-counts")]
    pub(super) fn count(call: Call) {
        if let Some(counter) = COUNTS.get(call as usize) {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[cfg(not(feature = "host-call-counts"))]
    #[inline(always)]
    pub(super) fn count(_call: Call) {}

    /// Defines the counters (once per VM) and hands the calls counted since the last tick to
    /// the proxy.
    #[cfg(feature = "host-call-counts")]
    pub(super) fn publish(ids: &mut Option<Vec<Option<u32>>>) {
        use crate::abi::hostcalls;
        use crate::abi::types::MetricType;
        let ids = ids.get_or_insert_with(|| {
            crate::metrics::HOST_CALLS
                .iter()
                .map(|name| hostcalls::define_metric(MetricType::Counter, name).ok())
                .collect()
        });
        for (id, counter) in ids.iter().zip(&COUNTS) {
            let by = counter.swap(0, std::sync::atomic::Ordering::Relaxed);
            if let Some(id) = id
                && by > 0
            {
                let _ = hostcalls::increment_metric(*id, i64::try_from(by).unwrap_or(i64::MAX));
            }
        }
    }
}

/// The stream's properties that every captured exchange needs, as one CEL expression that Envoy
/// evaluates in one host call (its `expr_evaluate` foreign function) instead of five property
/// reads, each of which costs a host call and a call back into the VM to allocate the result.
/// A list, in order: listener direction, peer address (the upstream's for outbound), upstream
/// cluster, route name, protocol, the stream's start and its duration. The last two spare the
/// two clock reads a kept stream would otherwise make (at its start and at its end). A list
/// rather than one joined string: Envoy serializes each element as it serializes a property,
/// so no CEL string is built (the joined string with the two times cost Envoy 21 000 more
/// instructions per exchange than this list; BENCHMARKS.md). When a value is missing (a local
/// reply has no upstream, a request no route) the expression fails and the properties are read
/// one by one, as without it.
const STREAM_END_EXPRESSION: &str = "[xds.listener_direction, xds.listener_direction == 2 ? upstream.address : source.address, xds.cluster_name, xds.route_name, request.protocol, request.time, request.duration]";

/// What [`STREAM_END_EXPRESSION`] gives.
#[derive(Debug)]
struct Evaluated {
    direction: i64,
    peer: String,
    cluster: String,
    route: String,
    protocol: String,
    start_unix_nanos: u64,
    duration_nanos: u64,
}

/// Compiles a CEL expression in the proxy (per root context); `None` where the proxy has no
/// expression support.
fn create_expression(expression: &str) -> Option<u32> {
    let token = raw::foreign("expr_create", expression.as_bytes()).ok()??;
    let token: [u8; 4] = token.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(token))
}

/// The stream-end properties from [`STREAM_END_EXPRESSION`]. Envoy hands a list back in the
/// header-map form, each element as a name with an empty value, and each element serialized as
/// a property is: strings as they are, integers, timestamps and durations as 8 little-endian
/// bytes (timestamps in nanoseconds since the epoch).
fn evaluate_stream_end(token: u32) -> Option<Evaluated> {
    let bytes = raw::foreign("expr_evaluate", &token.to_le_bytes()).ok()??;
    let list = HeaderMap::parse(bytes)?;
    if list.len() != 7 {
        return None;
    }
    let int = |i: usize| -> Option<i64> {
        let array: [u8; 8] = list.name(i).try_into().ok()?;
        Some(i64::from_le_bytes(array))
    };
    let text = |i: usize| list.name_str(i).into_owned();
    Some(Evaluated {
        direction: int(0)?,
        peer: text(1),
        cluster: text(2),
        route: text(3),
        protocol: text(4),
        start_unix_nanos: u64::try_from(int(5)?).ok().filter(|start| *start > 0)?,
        duration_nanos: u64::try_from(int(6)?).ok()?,
    })
}

/// Property paths, serialized as the ABI wants them (segments joined by NUL).
mod path {
    pub(super) const LISTENER_DIRECTION: &[u8] = b"xds\0listener_direction";
    pub(super) const LEGACY_LISTENER_DIRECTION: &[u8] = b"listener_direction";
    pub(super) const SOURCE_ADDRESS: &[u8] = b"source\0address";
    pub(super) const UPSTREAM_ADDRESS: &[u8] = b"upstream\0address";
    pub(super) const CLUSTER_NAME: &[u8] = b"xds\0cluster_name";
    pub(super) const ROUTE_NAME: &[u8] = b"xds\0route_name";
    pub(super) const REQUEST_PROTOCOL: &[u8] = b"request\0protocol";
    pub(super) const REQUEST_TIME: &[u8] = b"request\0time";
    pub(super) const RESPONSE_CODE: &[u8] = b"response\0code";
    pub(super) const RESPONSE_FLAGS: &[u8] = b"response\0flags";
    pub(super) const RESPONSE_CODE_DETAILS: &[u8] = b"response\0code_details";
}

fn property(path: &[u8]) -> Option<Vec<u8>> {
    raw::property(path).ok().flatten()
}

fn string_property(path: &[u8]) -> String {
    property(path)
        .map(|bytes| {
            String::from_utf8(bytes)
                .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
        })
        .unwrap_or_default()
}

fn int_property(path: &[u8]) -> Option<i64> {
    let bytes = property(path)?;
    let array: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(i64::from_le_bytes(array))
}

/// Test builds only (feature `panic-on-demand`, never shipped): panics when the request carries
/// `x-tapedeck-test-panic`, as the proxy-wasm SDK did on a host status it did not expect, so
/// that tests can measure what the proxy's failure policy does to a dead VM.
#[cfg(feature = "panic-on-demand")]
#[allow(clippy::panic, reason = "this test-only feature exists to panic")]
fn panic_on_demand() {
    if let Ok(Some(_)) =
        hostcalls::get_map_value(MapType::HttpRequestHeaders, "x-tapedeck-test-panic")
    {
        panic!("tapedeck: x-tapedeck-test-panic asked this test build to panic");
    }
}

/// Envoy's response flags, in the bit order of its `ResponseFlag` enum.
const RESPONSE_FLAGS: &[&str] = &[
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
];

fn response_flags(bits: i64) -> String {
    let mut out = String::new();
    for (i, name) in RESPONSE_FLAGS.iter().enumerate() {
        if bits & (1 << i) != 0 {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(name);
        }
    }
    out
}

/// A counter whose increments gather in the VM and reach the proxy on the flush tick, so the
/// data path makes no metric host call per exchange.
#[derive(Debug, Default)]
struct Counter {
    id: Option<u32>,
    pending: Cell<u64>,
}

impl Counter {
    fn define(name: &str) -> Self {
        Self {
            id: hostcalls::define_metric(MetricType::Counter, name).ok(),
            pending: Cell::new(0),
        }
    }

    fn add(&self, by: u64) {
        self.pending.set(self.pending.get().saturating_add(by));
    }

    fn publish(&self) {
        let by = self.pending.replace(0);
        if let Some(id) = self.id
            && by > 0
        {
            let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }
}

/// The filter's metrics, defined once per VM.
#[derive(Debug, Default)]
struct Metrics {
    captured: Counter,
    sampled_out: Counter,
    filtered_out: Counter,
    dropped_queue_full: Counter,
    dropped_send_failed: Counter,
    sent: Counter,
    truncated: Counter,
    batches_sent: Counter,
    batch_failures: Counter,
    errors: Counter,
    queue_bytes: Option<u32>,
    drops_unreported: Option<u32>,
}

impl Metrics {
    fn define() -> Self {
        Self {
            captured: Counter::define(metrics::EXCHANGES_CAPTURED),
            sampled_out: Counter::define(metrics::EXCHANGES_SAMPLED_OUT),
            filtered_out: Counter::define(metrics::EXCHANGES_FILTERED_OUT),
            dropped_queue_full: Counter::define(metrics::EXCHANGES_DROPPED_QUEUE_FULL),
            dropped_send_failed: Counter::define(metrics::EXCHANGES_DROPPED_SEND_FAILED),
            sent: Counter::define(metrics::EXCHANGES_SENT),
            truncated: Counter::define(metrics::BODIES_TRUNCATED),
            batches_sent: Counter::define(metrics::BATCHES_SENT),
            batch_failures: Counter::define(metrics::BATCH_SEND_FAILURES),
            errors: Counter::define(metrics::CAPTURE_ERRORS),
            queue_bytes: hostcalls::define_metric(MetricType::Gauge, metrics::QUEUE_BYTES).ok(),
            drops_unreported: hostcalls::define_metric(
                MetricType::Gauge,
                metrics::DROPS_UNREPORTED,
            )
            .ok(),
        }
    }

    /// Hands the gathered increments and the gauges to the proxy.
    fn publish(&self, queue_bytes: usize, drops_unreported: u64) {
        for counter in [
            &self.captured,
            &self.sampled_out,
            &self.filtered_out,
            &self.dropped_queue_full,
            &self.dropped_send_failed,
            &self.sent,
            &self.truncated,
            &self.batches_sent,
            &self.batch_failures,
            &self.errors,
        ] {
            counter.publish();
        }
        if let Some(id) = self.queue_bytes {
            let _ = hostcalls::record_metric(id, queue_bytes as u64);
        }
        if let Some(id) = self.drops_unreported {
            let _ = hostcalls::record_metric(id, drops_unreported);
        }
    }
}

/// What a configured VM shares between its root and HTTP contexts.
#[derive(Debug)]
struct Shared {
    config: Config,
    redactor: Redactor,
    matcher: Matcher,
    sampler: Sampler,
    identity: Identity,
    outbox: RefCell<Outbox>,
    rng: RefCell<Rng>,
    metrics: Metrics,
    legacy_direction: Cell<bool>,
    /// Envoy's token for [`STREAM_END_EXPRESSION`], when the proxy compiled it.
    stream_end_expression: Option<u32>,
}

impl Shared {
    /// The listener's `traffic_direction` (1 inbound, 2 outbound). Envoy 1.40 serves it as
    /// `xds.listener_direction`, older releases as `listener_direction`; the VM asks first for
    /// the name that answered last, so each exchange costs one host call.
    fn direction(&self) -> Option<i64> {
        let [first, second] = if self.legacy_direction.get() {
            [path::LEGACY_LISTENER_DIRECTION, path::LISTENER_DIRECTION]
        } else {
            [path::LISTENER_DIRECTION, path::LEGACY_LISTENER_DIRECTION]
        };
        if let Some(direction) = int_property(first) {
            return Some(direction);
        }
        let direction = int_property(second)?;
        self.legacy_direction.set(!self.legacy_direction.get());
        Some(direction)
    }

    fn random(&self) -> u64 {
        self.rng
            .try_borrow_mut()
            .map_or(0, |mut rng| rng.next_u64())
    }

    fn id(&self) -> [u8; 16] {
        self.rng
            .try_borrow_mut()
            .map_or([0; 16], |mut rng| rng.id())
    }
}

#[derive(Debug, Default)]
struct Root {
    shared: Option<Rc<Shared>>,
    /// Pushes under way: call token → (exchanges in the batch, the drop report it carries).
    in_flight: HashMap<u32, (u64, u64)>,
    /// The gRPC metadata of every push: the bearer token, if any, and who sends (this VM's id
    /// and start, the workload's identity), so that the collector sees a VM start and a VM
    /// that went quiet even from batches without exchanges.
    push_metadata: Vec<(&'static str, Vec<u8>)>,
    /// This VM's random id (16 hex digits), new at every VM start.
    vm_id: String,
    /// When this VM started, nanoseconds since the Unix epoch.
    vm_started: u64,
    /// When the last push was dispatched (a heartbeat follows `heartbeat_interval_ms` later).
    last_push: u64,
    /// Whether this VM has handled a stream: only such a VM sends heartbeats. Envoy also runs
    /// the plugin's root context on its main thread, which never sees a request; its
    /// heartbeats would keep a workload's last push advancing after its worker VMs died.
    served: Cell<bool>,
    last_warning: u64,
    /// The host-call counters' metric ids (feature `host-call-counts`).
    #[cfg(feature = "host-call-counts")]
    call_ids: Option<Vec<Option<u32>>>,
}

impl Root {
    fn warn(&mut self, message: &str) {
        let now = now_nanos();
        if now.saturating_sub(self.last_warning) >= WARN_INTERVAL_NANOS || self.last_warning == 0 {
            self.last_warning = now;
            log(LogLevel::Warn, message);
        }
    }

    fn configure(&mut self, bytes: &[u8]) -> Result<Rc<Shared>, String> {
        let config = Config::parse(bytes).map_err(|error| error.to_string())?;
        if config.redaction.hash_key.is_none() {
            log(
                LogLevel::Warn,
                "tapedeck filter config: redaction.hash_key is not set; secrets are hashed with the built-in key, so guessable ones can be recovered offline. Set the same hash_key on every proxy.",
            );
        }
        let identity = resolve_identity(&config);
        let seed = now_nanos() ^ (std::ptr::addr_of!(config) as usize as u64).rotate_left(32);
        let outbox = Outbox::new(
            config.queue.max_exchanges,
            config.queue.max_bytes,
            config.queue.batch_max_bytes,
        );
        self.push_metadata = push_metadata(
            config.collector.token.as_deref(),
            &self.vm_id,
            self.vm_started,
            &identity,
        );
        Ok(Rc::new(Shared {
            redactor: Redactor::new(&config),
            matcher: Matcher::new(&config.matching),
            sampler: Sampler::new(config.sampling.rate),
            identity,
            outbox: RefCell::new(outbox),
            rng: RefCell::new(Rng::new(seed)),
            metrics: Metrics::define(),
            legacy_direction: Cell::new(false),
            stream_end_expression: create_expression(STREAM_END_EXPRESSION),
            config,
        }))
    }

    fn flush(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let queue = &shared.config.queue;
        let timeout = Duration::from_millis(shared.config.collector.timeout_ms);
        while self.in_flight.len() < queue.max_in_flight {
            let batch = match shared.outbox.try_borrow_mut() {
                Ok(mut outbox) => outbox.next_batch(now_nanos(), FILTER_VERSION),
                Err(_) => None,
            };
            let Some(batch) = batch else { break };
            self.push(&shared, batch, timeout);
        }
        // Nothing to push: an empty batch still goes when a drop report waits (so that the
        // collector hears of drops without waiting for the next capture) or when this VM has
        // pushed nothing for the heartbeat interval (so that a VM that died shows as a
        // workload that went quiet, and a new VM as a new id).
        if self.in_flight.len() < queue.max_in_flight {
            let now = now_nanos();
            let heartbeat_due = self.served.get()
                && now.saturating_sub(self.last_push)
                    >= queue.heartbeat_interval_ms.saturating_mul(1_000_000);
            let batch = match shared.outbox.try_borrow_mut() {
                Ok(mut outbox)
                    if outbox.is_empty() && (outbox.unreported() > 0 || heartbeat_due) =>
                {
                    Some(outbox.empty_batch(now, FILTER_VERSION))
                }
                _ => None,
            };
            if let Some(batch) = batch {
                self.push(&shared, batch, timeout);
            }
        }
        let (queue_bytes, unreported) = shared
            .outbox
            .try_borrow()
            .map_or((0, 0), |outbox| (outbox.bytes(), outbox.unreported()));
        let in_flight_reports: u64 = self.in_flight.values().map(|(_, reported)| reported).sum();
        shared
            .metrics
            .publish(queue_bytes, unreported.saturating_add(in_flight_reports));
    }

    /// Dispatches one batch; a dispatch that fails at once counts as a failed push.
    fn push(&mut self, shared: &Shared, batch: Batch, timeout: Duration) {
        let metadata: Vec<(&str, &[u8])> = self
            .push_metadata
            .iter()
            .map(|(name, value)| (*name, value.as_slice()))
            .collect();
        calls::count(calls::Call::Grpc);
        self.last_push = now_nanos();
        match hostcalls::dispatch_grpc_call(
            &shared.config.collector.cluster,
            CAPTURE_SERVICE,
            CAPTURE_PUSH_METHOD,
            metadata,
            Some(&batch.bytes),
            timeout,
        ) {
            Ok(token) => {
                self.in_flight
                    .insert(token, (batch.exchanges, batch.reported));
            }
            Err(status) => {
                self.failed(shared, batch.exchanges, batch.reported);
                self.warn(&format!(
                    "tapedeck: cannot push to collector cluster {:?} ({status:?}); {} exchanges dropped",
                    shared.config.collector.cluster, batch.exchanges
                ));
            }
        }
    }

    /// A push failed (or was refused): its exchanges are dropped, and its drop report was not
    /// counted by the collector (it counts the reports of the batches it stores), so both go
    /// into the next batch's report.
    fn failed(&self, shared: &Shared, exchanges: u64, reported: u64) {
        shared.metrics.batch_failures.add(1);
        shared.metrics.dropped_send_failed.add(exchanges);
        if let Ok(mut outbox) = shared.outbox.try_borrow_mut() {
            outbox.dropped(exchanges.saturating_add(reported));
        }
    }
}

fn direction_of(traffic_direction: Option<i64>) -> Direction {
    match traffic_direction {
        Some(1) => Direction::Inbound,
        Some(2) => Direction::Outbound,
        _ => Direction::Unspecified,
    }
}

/// Reads a node property: Envoy 1.40 serves the node as `xds.node`; older releases as `node`.
fn node_property(path: &[&str]) -> String {
    let serialize = |root: &[u8]| {
        let mut serialized = root.to_vec();
        for segment in path {
            serialized.push(0);
            serialized.extend_from_slice(segment.as_bytes());
        }
        serialized
    };
    let found = string_property(&serialize(b"xds\0node"));
    if !found.is_empty() {
        return found;
    }
    string_property(&serialize(b"node"))
}

/// The metadata of every push (see [`Root::push_metadata`]); values the proxy could not send
/// as a header (not visible ASCII) are left out.
fn push_metadata(
    token: Option<&str>,
    vm_id: &str,
    vm_started: u64,
    identity: &Identity,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut metadata = Vec::new();
    if let Some(token) = token {
        metadata.push(("authorization", format!("Bearer {token}").into_bytes()));
    }
    let fields = [
        (tapedeck_proto::PUSH_VM_ID, vm_id.to_string()),
        (tapedeck_proto::PUSH_VM_STARTED, vm_started.to_string()),
        (tapedeck_proto::PUSH_WORKLOAD, identity.workload.clone()),
        (tapedeck_proto::PUSH_NAMESPACE, identity.namespace.clone()),
        (tapedeck_proto::PUSH_POD, identity.pod.clone()),
    ];
    for (name, value) in fields {
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic()) {
            metadata.push((name, value.into_bytes()));
        }
    }
    metadata
}

fn resolve_identity(config: &Config) -> Identity {
    let metadata = |key: &str| node_property(&["metadata", key]);
    let pick = |configured: &Option<String>, found: String| configured.clone().unwrap_or(found);
    let mut pod = pick(&config.pod, metadata("NAME"));
    if pod.is_empty() {
        pod = node_property(&["id"]);
    }
    Identity {
        workload: pick(&config.workload, metadata("WORKLOAD_NAME")),
        namespace: pick(&config.namespace, metadata("NAMESPACE")),
        pod,
    }
}

impl Context for Root {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, _response_size: usize) {
        let (exchanges, reported) = self.in_flight.remove(&token_id).unwrap_or((0, 0));
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if status_code == 0 {
            shared.metrics.batches_sent.add(1);
            shared.metrics.sent.add(exchanges);
        } else {
            self.failed(&shared, exchanges, reported);
            let detail = hostcalls::get_grpc_status()
                .ok()
                .and_then(|(_, message)| message)
                .unwrap_or_default();
            self.warn(&format!(
                "tapedeck: collector push failed with gRPC status {status_code} {detail}; {exchanges} exchanges dropped"
            ));
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        let now = now_nanos();
        // The OS's randomness (WASI `random_get`, which Envoy serves) through the standard
        // library's hasher keys, mixed with the clock.
        let seed =
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), now);
        let mut rng = Rng::new(seed ^ now);
        self.vm_id = rng.id()[..8].iter().map(|b| format!("{b:02x}")).collect();
        self.vm_started = now;
        self.last_push = now;
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match self.configure(&bytes) {
            Ok(shared) => {
                let interval = Duration::from_millis(shared.config.queue.flush_interval_ms);
                // A new configuration compiled its own expression; streams still holding the old
                // one fall back to property reads.
                if let Some(token) = self
                    .shared
                    .replace(shared)
                    .and_then(|old| old.stream_end_expression)
                {
                    let _ = raw::foreign("expr_delete", &token.to_le_bytes());
                }
                if hostcalls::set_tick_period(interval).is_err() {
                    log(LogLevel::Critical, "tapedeck: cannot set the flush tick");
                    return false;
                }
                true
            }
            Err(message) => {
                log(LogLevel::Critical, &message);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.flush();
        #[cfg(feature = "host-call-counts")]
        calls::publish(&mut self.call_ids);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.served.set(true);
        Some(Box::new(Stream {
            shared: self.shared.clone(),
            capture: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP stream. Without a configuration (never expected) it captures nothing.
#[derive(Debug)]
struct Stream {
    shared: Option<Rc<Shared>>,
    capture: Option<StreamCapture>,
}

impl Stream {
    fn error(&mut self) {
        if let Some(shared) = &self.shared {
            shared.metrics.errors.add(1);
        }
        self.capture = None;
    }

    fn map(&mut self, map: MapType) -> Option<HeaderMap> {
        match raw::map(map).ok().and_then(HeaderMap::parse) {
            Some(map) => Some(map),
            None => {
                self.error();
                None
            }
        }
    }

    /// Copies at most the room left of a body chunk; the rest is only counted.
    fn body(&mut self, buffer: BufferType, chunk_size: usize, request: bool) {
        let Some(capture) = &mut self.capture else {
            return;
        };
        let room = if request {
            capture.request_room()
        } else {
            capture.response_room()
        };
        let want = room.min(chunk_size);
        let kept = if want > 0 {
            match raw::buffer(buffer, 0, want) {
                Ok(bytes) => bytes.unwrap_or_default(),
                Err(_) => {
                    self.error();
                    return;
                }
            }
        } else {
            Vec::new()
        };
        if request {
            capture.request_body_owned(chunk_size, kept);
        } else {
            capture.response_body_owned(chunk_size, kept);
        }
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "panic-on-demand")]
        panic_on_demand();
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        if !shared.config.capture.enabled {
            return Action::Continue;
        }
        let Ok(serialized) = raw::map(MapType::HttpRequestHeaders) else {
            self.error();
            return Action::Continue;
        };
        // Decided from the serialized map as the proxy wrote it: a stream that the match rules
        // or sampling leave out costs the read of its request headers and a scan of them, and
        // builds nothing (no parsed map, no capture). Without rules and at rate 1 every stream
        // is kept, and the scan is skipped (the random draw is still made, as before).
        let decision = if shared.sampler.rate() >= 1.0 && shared.matcher.is_empty() {
            let _ = shared.random();
            Some(Decision::Kept)
        } else {
            capture::decide(&serialized, &shared.matcher, &shared.sampler, || {
                shared.random()
            })
        };
        match decision {
            Some(Decision::FilteredOut) => shared.metrics.filtered_out.add(1),
            Some(Decision::SampledOut) => shared.metrics.sampled_out.add(1),
            Some(Decision::Kept) => {
                let Some(headers) = HeaderMap::parse(serialized) else {
                    self.error();
                    return Action::Continue;
                };
                // The clock is read only for streams that are kept, and not at all where the
                // stream-end expression gives the start.
                let mut capture =
                    StreamCapture::start_map(0, shared.config.capture.max_body_bytes, headers);
                if shared.stream_end_expression.is_none() {
                    capture.started_at(now_nanos());
                }
                self.capture = Some(capture);
            }
            None => self.error(),
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.body(BufferType::HttpRequestBody, body_size, true);
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.capture.is_some()
            && let Some(trailers) = self.map(MapType::HttpRequestTrailers)
            && let Some(capture) = &mut self.capture
        {
            capture.request_trailers_map(trailers);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.capture.is_some()
            && let Some(headers) = self.map(MapType::HttpResponseHeaders)
            && let Some(capture) = &mut self.capture
        {
            capture.response_headers_map(now_nanos(), headers);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.body(BufferType::HttpResponseBody, body_size, false);
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.capture.is_some()
            && let Some(trailers) = self.map(MapType::HttpResponseTrailers)
            && let Some(capture) = &mut self.capture
        {
            capture.response_trailers_map(trailers);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(mut capture) = self.capture.take() else {
            return;
        };
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let evaluated = shared.stream_end_expression.and_then(evaluate_stream_end);
        let (direction, peer_address, upstream_cluster, route_name, protocol, end_unix_nanos) =
            match evaluated {
                Some(found) => {
                    capture.started_at(found.start_unix_nanos);
                    (
                        direction_of(Some(found.direction)),
                        found.peer,
                        found.cluster,
                        found.route,
                        found.protocol,
                        found.start_unix_nanos.saturating_add(found.duration_nanos),
                    )
                }
                None => {
                    let end = now_nanos();
                    if shared.stream_end_expression.is_some() {
                        // The start was left to the expression: take the proxy's record of it
                        // (nanoseconds since the epoch), else the end.
                        let start = int_property(path::REQUEST_TIME)
                            .and_then(|start| u64::try_from(start).ok())
                            .filter(|start| *start > 0 && *start <= end)
                            .unwrap_or(end);
                        capture.started_at(start);
                    }
                    let direction = direction_of(shared.direction());
                    let peer_path = if direction == Direction::Outbound {
                        path::UPSTREAM_ADDRESS
                    } else {
                        path::SOURCE_ADDRESS
                    };
                    (
                        direction,
                        string_property(peer_path),
                        string_property(path::CLUSTER_NAME),
                        string_property(path::ROUTE_NAME),
                        string_property(path::REQUEST_PROTOCOL),
                        end,
                    )
                }
            };
        let failed = !matches!(capture.status(), 100..=399);
        let end = StreamEnd {
            end_unix_nanos,
            direction,
            peer_address,
            upstream_cluster,
            route_name,
            protocol,
            // Only a stream without response headers (a reset, a local reply before them) needs
            // the proxy's response code.
            response_code: if capture.status() != 0 {
                0
            } else {
                int_property(path::RESPONSE_CODE)
                    .and_then(|code| u32::try_from(code).ok())
                    .unwrap_or(0)
            },
            // Flags and details explain failures; reading them for every success would cost two
            // host calls per exchange for values that are empty and `via_upstream`.
            response_flags: if failed {
                int_property(path::RESPONSE_FLAGS)
                    .map(response_flags)
                    .unwrap_or_default()
            } else {
                String::new()
            },
            response_code_details: if failed {
                string_property(path::RESPONSE_CODE_DETAILS)
            } else {
                String::new()
            },
        };
        shared.metrics.truncated.add(capture.truncated_bodies());
        let sealed = capture.seal(
            end,
            &shared.identity,
            shared.id(),
            shared.sampler.rate(),
            &shared.redactor,
        );
        // Encoded once, straight into the batch it will be pushed in.
        let pushed = match shared.outbox.try_borrow_mut() {
            Ok(mut outbox) => outbox
                .push_with(sealed.encoded_len(), |out| sealed.encode(out))
                .is_ok(),
            Err(_) => false,
        };
        if pushed {
            shared.metrics.captured.add(1);
        } else {
            shared.metrics.dropped_queue_full.add(1);
        }
    }
}
