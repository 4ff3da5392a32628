//! HAR 1.2 import and export for tapedeck exchanges.
//!
//! HAR (HTTP Archive) is how browsers, proxies and API tools trade recorded HTTP traffic. This
//! crate converts between HAR documents and [`tapedeck_proto::Exchange`]s:
//! - [`import`]: [`stream`] reads a HAR file of any size entry by entry and turns each entry
//!   into an exchange; [`parse`] and [`to_exchanges`] do the same for a document in memory.
//!   HAR as real tools write it imports: a field that does not read as the spec says is
//!   repaired and named in a [`Diagnostic`], an entry that cannot become an exchange is skipped
//!   with one, and only a file that is not JSON or has no `log.entries` is refused (errors name
//!   the JSON path, line and column). `tapedeck import har` uses it to feed the collector.
//! - [`export`]: [`from_exchanges`] and [`to_json`] write exchanges as HAR 1.2, with the fields
//!   HAR lacks in `_tapedeck` custom fields, so exchanges → HAR → exchanges is lossless.
//!   `tapedeck export har` uses it.
//! - [`model`]: the serde types of HAR 1.2, lenient on input the way real files need.
//!
//! It depends on `tapedeck-proto` (default features off), serde and base64 only: no I/O, no
//! async. Callers read and write the files.
#![warn(missing_docs)]

pub mod export;
pub mod import;
pub mod model;
mod read;
pub mod time;

pub use export::{from_exchanges, to_json};
pub use import::{
    Diagnostic, Event, HarError, IMPORT_FILTER_VERSION, ImportOptions, Result, Summary, parse,
    stream, to_exchanges,
};
pub use model::Har;
