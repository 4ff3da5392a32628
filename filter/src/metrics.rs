//! The filter's metric names, in one place. Envoy shows them among its stats (proxy-wasm
//! metrics; Envoy may add a prefix such as `wasmcustom.`).

/// Exchanges captured and queued for the collector.
pub const EXCHANGES_CAPTURED: &str = "tapedeck.exchanges_captured";
/// Exchanges skipped by sampling.
pub const EXCHANGES_SAMPLED_OUT: &str = "tapedeck.exchanges_sampled_out";
/// Exchanges skipped by the include/exclude rules.
pub const EXCHANGES_FILTERED_OUT: &str = "tapedeck.exchanges_filtered_out";
/// Exchanges dropped because the outbox was full.
pub const EXCHANGES_DROPPED_QUEUE_FULL: &str = "tapedeck.exchanges_dropped.queue_full";
/// Exchanges dropped because their push failed (collector down, slow, refusing).
pub const EXCHANGES_DROPPED_SEND_FAILED: &str = "tapedeck.exchanges_dropped.send_failed";
/// Exchanges the collector acknowledged.
pub const EXCHANGES_SENT: &str = "tapedeck.exchanges_sent";
/// Bodies cut at `max_body_bytes`.
pub const BODIES_TRUNCATED: &str = "tapedeck.bodies_truncated";
/// Pushes the collector acknowledged.
pub const BATCHES_SENT: &str = "tapedeck.batches_sent";
/// Pushes that failed.
pub const BATCH_SEND_FAILURES: &str = "tapedeck.batch_send_failures";
/// Host calls that failed while capturing (the stream is left alone and not captured whole).
pub const CAPTURE_ERRORS: &str = "tapedeck.capture_errors";
/// Gauge: encoded bytes waiting in this VM's outbox.
pub const QUEUE_BYTES: &str = "tapedeck.queue_bytes";
/// Gauge: exchanges dropped that no stored batch has reported to the collector yet (waiting
/// for the next batch, or riding a push still under way). 0 once the collector has heard of
/// every drop.
pub const DROPS_UNREPORTED: &str = "tapedeck.drops_unreported";

/// Host calls by kind (`header_map`, `buffer`, `property`, `foreign`, `clock`,
/// `grpc_call`, and `allocation` for the proxy's calls back into the VM to hand data over):
/// counted only in builds with the `host-call-counts` feature, for the profile in
/// BENCHMARKS.md.
pub const HOST_CALLS: [&str; 7] = [
    "tapedeck.host_calls.header_map",
    "tapedeck.host_calls.buffer",
    "tapedeck.host_calls.property",
    "tapedeck.host_calls.foreign",
    "tapedeck.host_calls.clock",
    "tapedeck.host_calls.grpc_call",
    "tapedeck.host_calls.allocation",
];
