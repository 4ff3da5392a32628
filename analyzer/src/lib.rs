//! The analyzer: turns stored exchanges into what replay needs and what people read.
//!
//! - [`cut`]: one service, a time window and a predicate, and the SQL that selects them.
//! - [`snapshot`]: the snapshot directory (format v1: `snapshot.json`, `inbound.jsonl`,
//!   `outbound.jsonl`), how it is built from exchanges, written deterministically, read back and
//!   validated with every problem named by file and line.
//! - [`tokens`]: discovery of the dynamic values (JWTs, timestamps, UUIDs and other ids, and
//!   values that flow from a response into later requests or from an inbound request into the
//!   calls it causes), written as editable token rules with their evidence.
//! - [`inventory`]: every inbound endpoint and outbound dependency with counts, status mix and
//!   latency percentiles.
//! - [`replay`]: what replay does to recorded values (shared by the generator and the
//!   responder): the traceparent convention, timestamp shifting, JWT re-signing, and reading
//!   and rewriting the value at a rule's location in a live message.
//! - [`template`]: path templates (`/orders/{id}`) shared by all of the above.
//! - [`fixture`]: a realistic, seeded shop traffic generator for tests, benchmarks and demos.
//!
//! It depends on `tapedeck-proto` (Arrow mapping) and `tapedeck-har`, not on the collector: the
//! `tapedeck` CLI runs the cut's SQL (offline or through Flight SQL) and hands the record
//! batches here. No async, no network.
#![warn(missing_docs)]

pub mod cut;
pub mod fixture;
pub mod inventory;
mod parallel;
pub mod replay;
pub mod rows;
pub mod snapshot;
pub mod template;
pub mod tokens;

pub use cut::Cut;
