//! Reading a snapshot back, and validating it: every problem is reported with its file and
//! line (and column, for JSON syntax), not just the first.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use tapedeck_proto::{Direction, Exchange};

use super::model::{Entry, FORMAT_VERSION, HostCount, Manifest};
use super::{INBOUND_FILE, MANIFEST_FILE, OUTBOUND_FILE};
use crate::tokens::{Part, ReplayAction, TokenKind, TokenRule};

/// A loaded snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `snapshot.json`.
    pub manifest: Manifest,
    /// `inbound.jsonl`, in file order.
    pub inbound: Vec<Entry>,
    /// `outbound.jsonl`, in file order.
    pub outbound: Vec<Entry>,
}

impl Snapshot {
    /// Every exchange of the snapshot (inbound, then outbound, each in file order).
    pub fn exchanges(&self) -> Result<Vec<Exchange>, Problem> {
        let from = self.manifest.window.from.0;
        let mut out = Vec::with_capacity(self.inbound.len() + self.outbound.len());
        for (file, direction, entries) in [
            (INBOUND_FILE, Direction::Inbound, &self.inbound),
            (OUTBOUND_FILE, Direction::Outbound, &self.outbound),
        ] {
            for (i, entry) in entries.iter().enumerate() {
                out.push(
                    entry
                        .to_exchange(direction, from)
                        .map_err(|message| Problem {
                            file: file.to_owned(),
                            line: Some(i as u64 + 1),
                            column: None,
                            message,
                        })?,
                );
            }
        }
        Ok(out)
    }
}

/// One thing wrong with a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The file, relative to the snapshot directory.
    pub file: String,
    /// 1-based line, when the problem has one.
    pub line: Option<u64>,
    /// 1-based column, for JSON syntax errors.
    pub column: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The snapshot has problems.
    #[error("{path} is not a valid snapshot:\n{list}", path = path.display(), list = problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The directory.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

/// Reads a snapshot; any problem fails the read and all of them are listed.
pub fn read(dir: &Path) -> Result<Snapshot, ReadError> {
    read_with(dir, |_, _| {})
}

/// Reads a snapshot like [`read`], handing each outbound entry to `outbound` (with its 1-based
/// line of `outbound.jsonl`) as soon as it is parsed, before it is kept: a reader that does not
/// need every part in memory takes it out there (the responder moves response bodies to a
/// mapped file), so the whole snapshot never has to be held at once. The files are read line by
/// line. The snapshot is validated as [`read`] validates it; what `outbound` takes out is not
/// looked at again (no check depends on response bodies).
pub fn read_with(dir: &Path, outbound: impl FnMut(u64, &mut Entry)) -> Result<Snapshot, ReadError> {
    let (snapshot, problems) = validate_with(dir, outbound);
    match snapshot {
        Some(snapshot) if problems.is_empty() => Ok(snapshot),
        _ => Err(ReadError::Invalid {
            path: dir.to_path_buf(),
            problems,
        }),
    }
}

/// Checks a snapshot directory and returns what could be read (when every file parsed) and
/// every problem found.
pub fn validate(dir: &Path) -> (Option<Snapshot>, Vec<Problem>) {
    validate_with(dir, |_, _| {})
}

/// [`validate`], handing each outbound entry to `outbound` as [`read_with`] does.
pub fn validate_with(
    dir: &Path,
    outbound: impl FnMut(u64, &mut Entry),
) -> (Option<Snapshot>, Vec<Problem>) {
    let mut problems = Vec::new();
    let manifest_text = fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap_or_default();
    let manifest = read_manifest(dir, &mut problems);
    let inbound = read_lines(dir, INBOUND_FILE, &mut problems, |_, _| {});
    let outbound = read_lines(dir, OUTBOUND_FILE, &mut problems, outbound);
    let (Some(manifest), Some(inbound), Some(outbound)) = (manifest, inbound, outbound) else {
        return (None, problems);
    };
    let snapshot = Snapshot {
        manifest,
        inbound,
        outbound,
    };
    check(&snapshot, &manifest_text, &mut problems);
    problems.sort();
    (Some(snapshot), problems)
}

fn problem(file: &str, line: Option<u64>, message: impl Into<String>) -> Problem {
    Problem {
        file: file.to_owned(),
        line,
        column: None,
        message: message.into(),
    }
}

fn json_problem(file: &str, line_base: u64, error: &serde_json::Error) -> Problem {
    // serde_json's message ends with " at line L column C"; the position is reported apart.
    let message = error.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(head, _)| head)
        .to_owned();
    Problem {
        file: file.to_owned(),
        line: Some(line_base + error.line() as u64),
        column: (error.column() > 0).then_some(error.column() as u64),
        message,
    }
}

fn read_manifest(dir: &Path, problems: &mut Vec<Problem>) -> Option<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) => {
            problems.push(problem(
                MANIFEST_FILE,
                None,
                format!("cannot be read: {error}"),
            ));
            return None;
        }
    };
    // The version first, so a newer snapshot gets "unknown version", not a list of fields.
    match serde_json::from_str::<serde_json::Value>(&text) {
        Err(error) => {
            problems.push(json_problem(MANIFEST_FILE, 0, &error));
            return None;
        }
        Ok(value) => {
            match value.get("version").and_then(serde_json::Value::as_u64) {
                Some(v) if v == u64::from(FORMAT_VERSION) => {}
                Some(v) => {
                    problems.push(problem(
                    MANIFEST_FILE,
                    line_of(&text, "\"version\""),
                    format!("unknown format version {v} (this tapedeck reads version {FORMAT_VERSION})"),
                ));
                    return None;
                }
                None => {
                    problems.push(problem(MANIFEST_FILE, Some(1), "no \"version\" number"));
                    return None;
                }
            }
        }
    }
    match serde_json::from_str::<Manifest>(&text) {
        Ok(manifest) => Some(manifest),
        Err(error) => {
            problems.push(json_problem(MANIFEST_FILE, 0, &error));
            None
        }
    }
}

fn line_of(text: &str, needle: &str) -> Option<u64> {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i as u64 + 1)
}

/// Reads a JSON-lines file line by line (one line in memory at a time, besides the entries),
/// handing each parsed entry to `each` before keeping it.
fn read_lines(
    dir: &Path,
    file: &str,
    problems: &mut Vec<Problem>,
    mut each: impl FnMut(u64, &mut Entry),
) -> Option<Vec<Entry>> {
    let mut reader = match fs::File::open(dir.join(file)) {
        Ok(handle) => std::io::BufReader::with_capacity(1 << 16, handle),
        Err(error) => {
            problems.push(problem(file, None, format!("cannot be read: {error}")));
            return None;
        }
    };
    let before = problems.len();
    let mut entries = Vec::new();
    let mut buffer = Vec::new();
    for i in 0usize.. {
        let number = i as u64 + 1;
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                problems.push(problem(
                    file,
                    Some(number),
                    format!("cannot be read: {error}"),
                ));
                return None;
            }
        }
        let line = match buffer.strip_suffix(b"\n") {
            Some(line) => line,
            None => {
                problems.push(problem(
                    file,
                    Some(number),
                    "the last line has no line break (is the file truncated?)",
                ));
                &buffer[..]
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            problems.push(problem(file, Some(number), "empty line"));
            continue;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            problems.push(problem(file, Some(number), "not UTF-8"));
            continue;
        };
        match serde_json::from_str::<Entry>(line) {
            Ok(mut entry) => {
                each(number, &mut entry);
                entries.push(entry);
            }
            Err(error) => problems.push(json_problem(file, i as u64, &error)),
        }
    }
    (problems.len() == before).then_some(entries)
}

fn check(snapshot: &Snapshot, manifest_text: &str, problems: &mut Vec<Problem>) {
    let m = &snapshot.manifest;
    if m.window.to < m.window.from {
        problems.push(problem(
            MANIFEST_FILE,
            None,
            "window.to is before window.from",
        ));
    }
    for (field, expected, actual) in [
        ("inbound", m.counts.inbound, snapshot.inbound.len() as u64),
        (
            "outbound",
            m.counts.outbound,
            snapshot.outbound.len() as u64,
        ),
        (
            "linked",
            m.counts.linked,
            snapshot
                .outbound
                .iter()
                .filter(|e| e.caused_by.is_some())
                .count() as u64,
        ),
    ] {
        if expected != actual {
            problems.push(problem(
                MANIFEST_FILE,
                line_of(manifest_text, &format!("\"{field}\":")),
                format!("counts.{field} is {expected} but the files hold {actual}"),
            ));
        }
    }
    let mut hosts: Vec<HostCount> = Vec::new();
    for (line, entry) in snapshot.outbound.iter().enumerate() {
        match hosts.last_mut() {
            Some(last) if last.host == entry.authority => last.calls += 1,
            _ => hosts.push(HostCount {
                host: entry.authority.clone(),
                calls: 1,
                first_line: line as u64 + 1,
            }),
        }
    }
    if hosts != m.hosts {
        problems.push(problem(
            MANIFEST_FILE,
            line_of(manifest_text, "\"hosts\":"),
            format!(
                "hosts do not match {OUTBOUND_FILE}, whose calls group as {}",
                hosts
                    .iter()
                    .map(|h| format!("{} ({} from line {})", h.host, h.calls, h.first_line))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let mut inbound_ids = HashSet::new();
    for (file, entries) in [
        (INBOUND_FILE, &snapshot.inbound),
        (OUTBOUND_FILE, &snapshot.outbound),
    ] {
        let mut ids = HashSet::new();
        let mut previous: Option<(&str, u64)> = None;
        for (i, entry) in entries.iter().enumerate() {
            let line = Some(i as u64 + 1);
            if let Err(message) = entry.to_exchange(Direction::Inbound, m.window.from.0) {
                problems.push(problem(file, line, message));
            }
            if !ids.insert(entry.id.as_str()) {
                problems.push(problem(
                    file,
                    line,
                    format!("id {} appears twice", entry.id),
                ));
            }
            if entry.method.is_empty() {
                problems.push(problem(file, line, "method is empty"));
            }
            let key = if file == INBOUND_FILE {
                ""
            } else {
                entry.authority.as_str()
            };
            if let Some(previous) = previous
                && previous > (key, entry.offset_ns)
            {
                problems.push(problem(
                    file,
                    line,
                    if file == INBOUND_FILE {
                        "out of order: lines are sorted by offset_ns".to_owned()
                    } else {
                        "out of order: lines are sorted by authority, then offset_ns".to_owned()
                    },
                ));
            }
            previous = Some((key, entry.offset_ns));
            if file == INBOUND_FILE && entry.caused_by.is_some() {
                problems.push(problem(file, line, "caused_by is only for outbound calls"));
            }
        }
        if file == INBOUND_FILE {
            inbound_ids = ids.into_iter().map(str::to_owned).collect();
        }
    }
    for (i, entry) in snapshot.outbound.iter().enumerate() {
        if let Some(cause) = &entry.caused_by
            && !inbound_ids.contains(cause)
        {
            problems.push(problem(
                OUTBOUND_FILE,
                Some(i as u64 + 1),
                format!("caused_by {cause} is not an id of {INBOUND_FILE}"),
            ));
        }
    }
    let mut names = HashSet::new();
    for (i, rule) in m.tokens.iter().enumerate() {
        let at = format!("tokens[{i}] ({})", rule.name);
        let line = line_of(
            manifest_text,
            &format!("\"name\": {}", serde_json::Value::String(rule.name.clone())),
        );
        if !names.insert(rule.name.as_str()) {
            problems.push(problem(
                MANIFEST_FILE,
                line,
                format!("{at}: the name is used twice"),
            ));
        }
        for message in rule_problems(rule) {
            problems.push(problem(MANIFEST_FILE, line, format!("{at}: {message}")));
        }
        if let Some(evidence) = &rule.evidence {
            for position in std::iter::once(&evidence.first).chain(&evidence.first_use) {
                let lines = match position.file.as_str() {
                    INBOUND_FILE => snapshot.inbound.len(),
                    OUTBOUND_FILE => snapshot.outbound.len(),
                    _ => {
                        problems.push(problem(
                            MANIFEST_FILE,
                            line,
                            format!("{at}: evidence names file {:?}", position.file),
                        ));
                        continue;
                    }
                } as u64;
                if position.line == 0 || position.line > lines {
                    problems.push(problem(
                        MANIFEST_FILE,
                        line,
                        format!(
                            "{at}: evidence points at {}:{}, which has {lines} lines",
                            position.file, position.line
                        ),
                    ));
                }
            }
        }
    }
}

/// What is inconsistent in one rule.
pub(crate) fn rule_problems(rule: &TokenRule) -> Vec<String> {
    let mut out = Vec::new();
    let correlation = rule.kind == TokenKind::Correlation;
    match (correlation, rule.to.is_empty()) {
        (true, true) => out.push("a correlation needs \"to\" locations".to_owned()),
        (false, false) => out.push("only correlations have \"to\" locations".to_owned()),
        _ => {}
    }
    let allowed: &[ReplayAction] = match rule.kind {
        TokenKind::Correlation => &[ReplayAction::Substitute, ReplayAction::Propagate],
        TokenKind::Jwt => &[ReplayAction::Resign, ReplayAction::Ignore],
        TokenKind::Timestamp => &[ReplayAction::Shift, ReplayAction::Ignore],
        TokenKind::Uuid | TokenKind::Id => &[ReplayAction::Ignore],
    };
    if rule.replay != ReplayAction::Keep && !allowed.contains(&rule.replay) {
        out.push(
            format!(
                "replay {:?} does not apply to a {:?} rule",
                rule.replay, rule.kind
            )
            .to_lowercase(),
        );
    }
    if rule.jwt.is_some() && rule.kind != TokenKind::Jwt {
        out.push("only jwt rules have \"jwt\"".to_owned());
    }
    if rule.format.is_some() && rule.kind != TokenKind::Timestamp {
        out.push("only timestamp rules have a \"format\"".to_owned());
    }
    for (label, location) in
        std::iter::once(("at", &rule.at)).chain(rule.to.iter().map(|l| ("to", l)))
    {
        let needs = |what: bool, field: &str, out: &mut Vec<String>| {
            if !what {
                out.push(format!(
                    "{label}: {:?} location needs {field}",
                    location.part.as_str()
                ));
            }
        };
        if location.scheme.is_some() && location.part != Part::Header {
            out.push(format!("{label}: only header locations have a \"scheme\""));
        }
        match location.part {
            Part::Header | Part::Cookie => needs(location.name.is_some(), "\"name\"", &mut out),
            Part::Query => {
                needs(location.name.is_some(), "\"name\"", &mut out);
            }
            Part::Json => needs(
                location.path.as_deref().is_some_and(|p| p.starts_with('$')),
                "a \"path\" starting with $",
                &mut out,
            ),
            Part::Path => {
                needs(
                    location.segment.is_some_and(|s| s > 0),
                    "a \"segment\" from 1",
                    &mut out,
                );
                needs(location.endpoint.is_some(), "an \"endpoint\"", &mut out);
            }
        }
    }
    out
}
