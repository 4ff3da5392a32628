//! End-to-end capture: the real Envoy runs the built `filter.wasm` in front of the sample
//! service, and the in-memory sink shows exactly what the filter sent; `store` sends it to the
//! real collector and reads it back with SQL.
//!
//! Needs Envoy (`$TAPEDECK_ENVOY`, `.venv/bin/envoy` or `envoy` on `PATH`) and `filter.wasm`
//! (`cargo build -p tapedeck-filter --target wasm32-wasip1 --profile filter`); without them every
//! test fails and says what is missing. Each test starts its own rig on loopback.

#[path = "capture/basic.rs"]
mod basic;
#[path = "capture/collector.rs"]
mod collector;
#[path = "capture/config.rs"]
mod config;
#[path = "capture/directions.rs"]
mod directions;
#[path = "capture/redaction.rs"]
mod redaction;
#[path = "capture/sampling.rs"]
mod sampling;
#[path = "capture/store.rs"]
mod store;
