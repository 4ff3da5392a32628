//! `--secrets FILE`: the real values of redaction markers, so replay can send what production
//! sent where the capture redacted it.
//!
//! The file is UTF-8 text, one secret per line, `MARKER=VALUE`: the marker exactly as it appears
//! in the snapshot (`tapedeck-redacted:hmac-sha256:…`, which holds no `=`), then `=`, then the
//! value, which is the rest of the line taken verbatim (spaces and further `=` kept; a trailing
//! `\r` dropped). Empty lines and lines starting with `#` are skipped. A line without `=`, a
//! marker without the prefix, or a marker given twice is an error naming the line.

use std::collections::HashMap;
use std::path::Path;

use tapedeck_proto::REDACTED_PREFIX;

use crate::{Error, Result};

/// Reads a secrets file.
pub fn read(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|message| Error::Secrets(format!("{}:{message}", path.display())))
}

/// Parses the text of a secrets file; errors are `<line>: <problem>`.
pub fn parse(text: &str) -> std::result::Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((marker, value)) = line.split_once('=') else {
            return Err(format!("{}: expected MARKER=VALUE", i + 1));
        };
        let marker = marker.trim();
        if !marker.starts_with(REDACTED_PREFIX) {
            return Err(format!(
                "{}: {marker:?} is not a redaction marker (they start with {REDACTED_PREFIX:?})",
                i + 1
            ));
        }
        if out.insert(marker.to_owned(), value.to_owned()).is_some() {
            return Err(format!("{}: marker {marker} is given twice", i + 1));
        }
    }
    Ok(out)
}
