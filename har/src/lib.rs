//! HAR 1.2 import and export for tapedeck exchanges.
//!
//! HAR (HTTP Archive) is how browsers, proxies and API tools trade recorded HTTP traffic. This
//! crate converts between HAR documents and [`tapedeck_proto::Exchange`]s:
//! - [`import`]: [`parse`] reads a HAR file (errors name the JSON path, line and column), and
//!   [`to_exchanges`] turns its entries into exchanges, skipping bad entries with a
//!   [`Diagnostic`] each. `tapedeck import har` uses it to feed the collector.
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
pub mod time;

pub use export::{from_exchanges, to_json};
pub use import::{
    Diagnostic, HarError, IMPORT_FILTER_VERSION, ImportOptions, Result, parse, to_exchanges,
};
pub use model::Har;
