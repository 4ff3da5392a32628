//! The tapedeck capture filter: a proxy-wasm HTTP filter for Envoy sidecars.
//!
//! Loaded by an Istio `WasmPlugin` (or an `EnvoyFilter`, or `tapedeck proxy` locally), it copies
//! every HTTP exchange that crosses the sidecar (headers, body prefix, trailers, status, timing,
//! workload identity), redacts secrets, and pushes batches to the collector's `Capture` gRPC
//! service. It never pauses a stream and never fails a request: bodies are copied chunk by chunk
//! while the stream flows, memory is bounded, and whatever cannot be sent is dropped and counted.
//!
//! The capture logic ([`capture`], [`redact`], [`queue`], [`config`]) is plain Rust tested on the
//! host; `host.rs` (built only for `wasm32`) moves bytes between the proxy and that logic, and
//! `abi.rs` is the module's side of the proxy-wasm ABI (our own, not the SDK's: it exports only
//! the callbacks the filter uses).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod capture;
pub mod config;
pub mod headers;
pub mod metrics;
pub mod queue;
pub mod redact;

#[cfg(target_arch = "wasm32")]
mod abi;
#[cfg(target_arch = "wasm32")]
mod host;
