//! Snapshots: the recorded traffic of one service over a window, with the query that cut it and
//! the token rules found in it, as a directory of plain files (format v1, see
//! `docs/snapshot-format.md`):
//!
//! ```text
//! snapshot.json    manifest: id, service, window, source SQL, counts, hosts, token rules
//! inbound.jsonl    requests that reached the service, by start time (the generator sends them)
//! outbound.jsonl   calls the service made, by host then start time (the responder serves them)
//! ```
//!
//! [`build`] turns exchanges into a [`Built`] snapshot (sorting, linking outbound calls to the
//! inbound request that caused them, discovering token rules) and [`Built::write`] writes it:
//! byte-identical output for the same input, whatever order the rows came in. [`read`] loads a
//! snapshot and [`validate`] lists every problem of one, each with its file and line.

pub mod archive;
mod build;
pub mod model;
mod read;

pub use build::{Built, Spec, WriteError, build, id_problem, write_manifest};
pub use model::{
    Body, Capture, Counts, Entry, FORMAT_VERSION, HeaderEntry, HeaderValue, HostCount, Instant,
    Manifest, MessageEntry, Source, Window,
};
pub use read::{Problem, ReadError, Snapshot, read, read_with, validate, validate_with};

/// The manifest's file name.
pub const MANIFEST_FILE: &str = "snapshot.json";
/// The inbound exchanges' file name.
pub const INBOUND_FILE: &str = "inbound.jsonl";
/// The outbound exchanges' file name.
pub const OUTBOUND_FILE: &str = "outbound.jsonl";
