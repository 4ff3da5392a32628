//! The proxy-wasm glue: moves bytes between Envoy and the capture logic.
//!
//! Queueing is per VM, on purpose: Envoy runs one Wasm VM per worker thread, each with its own
//! root context. HTTP contexts hand finished exchanges to their own VM's outbox through an `Rc`
//! (no copy, no lock, no shared-queue host call), and that VM's root context flushes on its own
//! tick with `dispatch_grpc_call`. Bounds therefore hold per worker.
//!
//! Every host call here goes through `hostcalls` and its `Result`; a failure is counted and the
//! stream goes on untouched (`Action::Continue` everywhere).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use tapedeck_proto::prost::Message as _;
use tapedeck_proto::{CAPTURE_PUSH_METHOD, CAPTURE_SERVICE, Direction};

use crate::capture::{FILTER_VERSION, Identity, Matcher, Rng, Sampler, StreamCapture, StreamEnd};
use crate::config::Config;
use crate::metrics;
use crate::queue::Outbox;
use crate::redact::Redactor;

/// How often the same kind of warning may be logged, at most.
const WARN_INTERVAL_NANOS: u64 = 10_000_000_000;

pub(crate) fn start() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}

fn now_nanos() -> u64 {
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

fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

fn string_property(path: &[&str]) -> String {
    property(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn int_property(path: &[&str]) -> Option<i64> {
    let bytes = property(path)?;
    let array: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(i64::from_le_bytes(array))
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
        }
    }

    /// Hands the gathered increments and the queue gauge to the proxy.
    fn publish(&self, queue_bytes: usize) {
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
}

impl Shared {
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
    /// Pushes under way: call token → exchanges in the batch.
    in_flight: HashMap<u32, u64>,
    authorization: Option<Vec<u8>>,
    last_warning: u64,
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
        self.authorization = config
            .collector
            .token
            .as_ref()
            .map(|token| format!("Bearer {token}").into_bytes());
        Ok(Rc::new(Shared {
            redactor: Redactor::new(&config),
            matcher: Matcher::new(&config.matching),
            sampler: Sampler::new(config.sampling.rate),
            identity,
            outbox: RefCell::new(outbox),
            rng: RefCell::new(Rng::new(seed)),
            metrics: Metrics::define(),
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
            let metadata: Vec<(&str, &[u8])> = match &self.authorization {
                Some(value) => vec![("authorization", value.as_slice())],
                None => Vec::new(),
            };
            match hostcalls::dispatch_grpc_call(
                &shared.config.collector.cluster,
                CAPTURE_SERVICE,
                CAPTURE_PUSH_METHOD,
                metadata,
                Some(&batch.bytes),
                timeout,
            ) {
                Ok(token) => {
                    self.in_flight.insert(token, batch.exchanges);
                }
                Err(status) => {
                    self.failed(&shared, batch.exchanges);
                    self.warn(&format!(
                        "tapedeck: cannot push to collector cluster {:?} ({status:?}); {} exchanges dropped",
                        shared.config.collector.cluster, batch.exchanges
                    ));
                }
            }
        }
        shared.metrics.publish(
            shared
                .outbox
                .try_borrow()
                .map_or(0, |outbox| outbox.bytes()),
        );
    }

    fn failed(&self, shared: &Shared, exchanges: u64) {
        shared.metrics.batch_failures.add(1);
        shared.metrics.dropped_send_failed.add(exchanges);
        if let Ok(mut outbox) = shared.outbox.try_borrow_mut() {
            outbox.dropped(exchanges);
        }
    }
}

/// Reads a node property: Envoy 1.40 serves the node as `xds.node`; older releases as `node`.
fn node_property(path: &[&str]) -> String {
    let mut xds = vec!["xds", "node"];
    xds.extend_from_slice(path);
    let found = string_property(&xds);
    if !found.is_empty() {
        return found;
    }
    let mut legacy = vec!["node"];
    legacy.extend_from_slice(path);
    string_property(&legacy)
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
        let exchanges = self.in_flight.remove(&token_id).unwrap_or(0);
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if status_code == 0 {
            shared.metrics.batches_sent.add(1);
            shared.metrics.sent.add(exchanges);
        } else {
            self.failed(&shared, exchanges);
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
                self.shared = Some(shared);
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
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
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

    fn map(&mut self, map: MapType) -> Option<Vec<(String, Vec<u8>)>> {
        match hostcalls::get_map_bytes(map) {
            Ok(pairs) => Some(pairs),
            Err(_) => {
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
            match hostcalls::get_buffer(buffer, 0, want) {
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
            capture.request_body(chunk_size, &kept);
        } else {
            capture.response_body(chunk_size, &kept);
        }
    }
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return Action::Continue;
        };
        if !shared.config.capture.enabled {
            return Action::Continue;
        }
        let Some(headers) = self.map(MapType::HttpRequestHeaders) else {
            return Action::Continue;
        };
        let capture =
            StreamCapture::start(now_nanos(), shared.config.capture.max_body_bytes, headers);
        if !shared.matcher.matches(capture.path(), capture.authority()) {
            shared.metrics.filtered_out.add(1);
        } else if !shared.sampler.keep(capture.trace_id(), shared.random()) {
            shared.metrics.sampled_out.add(1);
        } else {
            self.capture = Some(capture);
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
            capture.request_trailers(trailers);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.capture.is_some()
            && let Some(headers) = self.map(MapType::HttpResponseHeaders)
            && let Some(capture) = &mut self.capture
        {
            capture.response_headers(now_nanos(), headers);
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
            capture.response_trailers(trailers);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let Some(capture) = self.capture.take() else {
            return;
        };
        let Some(shared) = self.shared.clone() else {
            return;
        };
        // Envoy 1.40 serves the listener's `traffic_direction` as `xds.listener_direction`;
        // older releases had a top-level `listener_direction`.
        let direction = match int_property(&["xds", "listener_direction"])
            .or_else(|| int_property(&["listener_direction"]))
        {
            Some(1) => Direction::Inbound,
            Some(2) => Direction::Outbound,
            _ => Direction::Unspecified,
        };
        let peer_path: &[&str] = if direction == Direction::Outbound {
            &["upstream", "address"]
        } else {
            &["source", "address"]
        };
        let failed = !matches!(capture.status(), 100..=399);
        let end = StreamEnd {
            end_unix_nanos: now_nanos(),
            direction,
            peer_address: string_property(peer_path),
            upstream_cluster: string_property(&["xds", "cluster_name"]),
            route_name: string_property(&["xds", "route_name"]),
            protocol: string_property(&["request", "protocol"]),
            // Only a stream without response headers (a reset, a local reply before them) needs
            // the proxy's response code.
            response_code: if capture.status() != 0 {
                0
            } else {
                int_property(&["response", "code"])
                    .and_then(|code| u32::try_from(code).ok())
                    .unwrap_or(0)
            },
            // Flags and details explain failures; reading them for every success would cost two
            // host calls per exchange for values that are empty and `via_upstream`.
            response_flags: if failed {
                int_property(&["response", "flags"])
                    .map(response_flags)
                    .unwrap_or_default()
            } else {
                String::new()
            },
            response_code_details: if failed {
                string_property(&["response", "code_details"])
            } else {
                String::new()
            },
        };
        shared.metrics.truncated.add(capture.truncated_bodies());
        let exchange = capture.finish(
            end,
            &shared.identity,
            shared.id(),
            shared.sampler.rate(),
            &shared.redactor,
        );
        let encoded = exchange.encode_to_vec();
        let pushed = match shared.outbox.try_borrow_mut() {
            Ok(mut outbox) => outbox.push(encoded).is_ok(),
            Err(_) => false,
        };
        if pushed {
            shared.metrics.captured.add(1);
        } else {
            shared.metrics.dropped_queue_full.add(1);
        }
    }
}
