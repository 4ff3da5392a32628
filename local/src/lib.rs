//! Local mode: everything needed to run the real Envoy with `filter.wasm` on loopback.
//!
//! - [`envoy`]: [`EnvoyBootstrap`] renders the sidecar's bootstrap (inbound and outbound
//!   listeners, the collector cluster, the tapedeck Wasm filter or none).
//! - [`process`]: [`Envoy`] starts Envoy on a bootstrap, finds its listeners, reads its stats and
//!   log; [`validate`] runs `envoy --mode validate`; [`find_envoy`] and [`find_filter_wasm`]
//!   locate the binaries.
//! - [`proxy`]: `tapedeck proxy`: Envoy as an inbound sidecar and an outbound HTTP proxy
//!   (dynamic forward proxy), captures relayed to a collector and counted by direction.
//! - [`shop`]: the demo's sample system (`orders` v1/v2, `payments`, `mail`) and its users.
//! - [`sample`]: a small HTTP/1.1 + h2c + gRPC service to capture traffic of.
//! - [`sink`]: an in-memory `Capture` receiver that can accept, refuse or hang.
//!
//! Used by the end-to-end tests (`tests/`), the benchmarks, and `tapedeck proxy` / `tapedeck demo`.

pub mod envoy;
pub mod process;
pub mod proxy;
pub mod sample;
pub mod shop;
pub mod sink;

pub use envoy::{EnvoyBootstrap, OutboundRoute, Workload};
pub use process::{Envoy, EnvoyOptions, find_envoy, find_filter_wasm, validate, workspace_root};
pub use sink::{Received, SinkMode};
