//! Exchanges → a snapshot, and writing it.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use rustc_hash::FxHashSet;
use sha2::{Digest, Sha256};
use tapedeck_proto::{Direction, Exchange};

use super::model::{
    Counts, EntryRef, FORMAT_VERSION, HostCount, Instant, Manifest, Source, Window, hex,
};
use super::{INBOUND_FILE, MANIFEST_FILE, OUTBOUND_FILE};
use crate::rows::Row;
use crate::tokens::{DiscoveryInput, Flow, discover};

/// Lines serialized by a worker at a time.
const CHUNK: usize = 1024;

/// What a snapshot is cut from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The service.
    pub service: String,
    /// The statement that selected the exchanges.
    pub sql: String,
    /// The user's predicate, as given.
    pub predicate: Option<String>,
    /// The requested window start, if any (else the first exchange's start).
    pub from: Option<u64>,
    /// The requested window end, if any (else the last exchange's end).
    pub to: Option<u64>,
}

/// A snapshot ready to write: the manifest (without its id, which hashes the written lines)
/// and the exchanges in file order.
#[derive(Debug)]
pub struct Built<R = Exchange> {
    manifest: Manifest,
    inbound: Vec<R>,
    outbound: Vec<R>,
    caused_by: Vec<Option<String>>,
}

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The output directory exists and is not empty.
    #[error("{path} exists and is not empty (pass --force to replace it)", path = path.display())]
    Exists {
        /// The directory.
        path: PathBuf,
    },
    /// A file could not be written.
    #[error("writing {path}: {source}", path = path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
}

/// Builds a snapshot from the exchanges a cut returned, in any order. Exchanges with no
/// direction are counted as skipped; a second exchange with an id already seen (the same
/// traffic stored twice) is counted as a duplicate and left out.
pub fn build<R: Row + Sync>(spec: &Spec, exchanges: Vec<R>) -> Built<R> {
    let total = exchanges.len();
    let (exchanges, duplicates) = sorted_unique(exchanges);
    let skipped = (total - exchanges.len()) as u64 - duplicates;
    let first_start = exchanges.first().map_or(0, Row::start);
    let last_end = exchanges
        .iter()
        .map(|e| e.start().saturating_add(e.duration()).saturating_add(1))
        .max()
        .unwrap_or(first_start);
    let window = Window {
        from: Instant(spec.from.unwrap_or(first_start)),
        to: Instant(spec.to.unwrap_or(last_end)),
    };

    // File order and line numbers: inbound by start; outbound by host, then start.
    let flows: Vec<Flow> = exchanges
        .iter()
        .map(|e| {
            if e.direction() == Direction::Inbound {
                Flow::Inbound
            } else {
                Flow::Outbound
            }
        })
        .collect();
    let mut outbound_order: Vec<usize> = (0..exchanges.len())
        .filter(|i| flows[*i] == Flow::Outbound)
        .collect();
    outbound_order.sort_by(|a, b| {
        exchanges[*a]
            .authority()
            .cmp(exchanges[*b].authority())
            .then(a.cmp(b))
    });
    let mut lines = vec![0u64; exchanges.len()];
    let mut inbound_line = 0;
    for (i, flow) in flows.iter().enumerate() {
        if *flow == Flow::Inbound {
            inbound_line += 1;
            lines[i] = inbound_line;
        }
    }
    for (line, i) in outbound_order.iter().enumerate() {
        lines[*i] = line as u64 + 1;
    }

    // Links: an outbound call belongs to the latest inbound request of its trace that started
    // before it.
    let mut latest_inbound: HashMap<&str, &[u8]> = HashMap::new();
    let mut caused_by_time: Vec<Option<String>> = vec![None; exchanges.len()];
    for (i, exchange) in exchanges.iter().enumerate() {
        if exchange.trace_id().is_empty() {
            continue;
        }
        match flows[i] {
            Flow::Inbound => {
                latest_inbound.insert(exchange.trace_id(), exchange.id());
            }
            Flow::Outbound => {
                caused_by_time[i] = latest_inbound.get(exchange.trace_id()).map(|id| hex(id));
            }
        }
    }

    let tokens = discover(&DiscoveryInput {
        exchanges: &exchanges,
        flows: &flows,
        lines: &lines,
        window: (window.from.0, window.to.0),
    });

    let mut hosts: Vec<HostCount> = Vec::new();
    for (line, i) in outbound_order.iter().enumerate() {
        let host = exchanges[*i].authority();
        match hosts.last_mut() {
            Some(last) if last.host == host => last.calls += 1,
            _ => hosts.push(HostCount {
                host: host.to_owned(),
                calls: 1,
                first_line: line as u64 + 1,
            }),
        }
    }
    let linked = outbound_order
        .iter()
        .filter(|i| caused_by_time[**i].is_some())
        .count() as u64;

    // Move the exchanges into file order.
    let mut caused_by = Vec::with_capacity(outbound_order.len());
    let mut slots: Vec<Option<R>> = exchanges.into_iter().map(Some).collect();
    let mut outbound = Vec::with_capacity(outbound_order.len());
    for i in &outbound_order {
        outbound.extend(slots[*i].take());
        caused_by.push(caused_by_time[*i].take());
    }
    let inbound: Vec<R> = slots.into_iter().flatten().collect();

    let manifest = Manifest {
        version: FORMAT_VERSION,
        id: String::new(),
        service: spec.service.clone(),
        window,
        source: Source {
            sql: spec.sql.clone(),
            predicate: spec.predicate.clone(),
        },
        counts: Counts {
            inbound: inbound.len() as u64,
            outbound: outbound.len() as u64,
            linked,
            skipped,
            duplicates,
        },
        hosts,
        tokens,
    };
    Built {
        manifest,
        inbound,
        outbound,
        caused_by,
    }
}

/// The exchanges with a direction, sorted by (start, id), each id once (the first by start
/// time); and how many duplicates were left out. Sorts a permutation and moves each exchange
/// once, rather than moving the (large) exchanges around while sorting.
fn sorted_unique<R: Row>(exchanges: Vec<R>) -> (Vec<R>, u64) {
    let mut order: Vec<usize> = (0..exchanges.len())
        .filter(|i| {
            matches!(
                exchanges[*i].direction(),
                Direction::Inbound | Direction::Outbound
            )
        })
        .collect();
    order.sort_unstable_by(|a, b| {
        let (x, y) = (&exchanges[*a], &exchanges[*b]);
        (x.start(), x.id(), a).cmp(&(y.start(), y.id(), b))
    });
    let mut seen: FxHashSet<&[u8]> = FxHashSet::default();
    seen.reserve(order.len());
    let before = order.len();
    order.retain(|i| seen.insert(exchanges[*i].id()));
    drop(seen);
    let duplicates = (before - order.len()) as u64;
    let mut slots: Vec<Option<R>> = exchanges.into_iter().map(Some).collect();
    let sorted = order.iter().filter_map(|i| slots[*i].take()).collect();
    (sorted, duplicates)
}

impl<R: Row + Sync> Built<R> {
    /// The manifest (its `id` is set by [`Built::write`]).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Writes the snapshot into `dir`, which must not exist or be empty unless `replace`; the
    /// files are written into a sibling temporary directory that is renamed into place, so a
    /// failed write leaves no half snapshot. Returns the manifest as written.
    pub fn write(mut self, dir: &Path, replace: bool) -> Result<Manifest, WriteError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WriteError::Io { path, source }
        };
        if let Ok(mut entries) = fs::read_dir(dir)
            && entries.next().is_some()
            && !replace
        {
            return Err(WriteError::Exists {
                path: dir.to_path_buf(),
            });
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io(&parent))?;
        let name = dir
            .file_name()
            .map_or_else(|| "snapshot".into(), |n| n.to_string_lossy().into_owned());
        let temp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&temp);
        fs::create_dir(&temp).map_err(io(&temp))?;
        let result = self.write_files(&temp);
        if let Err(error) = result {
            let _ = fs::remove_dir_all(&temp);
            return Err(error);
        }
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        fs::rename(&temp, dir).map_err(io(dir))?;
        Ok(self.manifest)
    }

    fn write_files(&mut self, dir: &Path) -> Result<(), WriteError> {
        let mut hash = Sha256::new();
        let from = self.manifest.window.from.0;
        hash.update(self.manifest.source.sql.as_bytes());
        let no_links = vec![None; self.inbound.len()];
        write_lines(
            &dir.join(INBOUND_FILE),
            &self.inbound,
            &no_links,
            from,
            &mut hash,
        )?;
        write_lines(
            &dir.join(OUTBOUND_FILE),
            &self.outbound,
            &self.caused_by,
            from,
            &mut hash,
        )?;
        let digest = hash.finalize();
        self.manifest.id = format!(
            "{}-{}-{}",
            self.manifest.service,
            compact_time(from),
            hex(&digest[..6])
        );
        let mut text =
            serde_json::to_string_pretty(&self.manifest).map_err(|e| WriteError::Io {
                path: dir.join(MANIFEST_FILE),
                source: io::Error::other(e),
            })?;
        text.push('\n');
        let path = dir.join(MANIFEST_FILE);
        fs::write(&path, text).map_err(|source| WriteError::Io { path, source })?;
        Ok(())
    }
}

/// Rewrites `snapshot.json` of the snapshot in `dir` (after its token rules were edited, say),
/// formatted as [`Built::write`] formats it; written to a temporary file and renamed into place,
/// so a failed write leaves the old manifest. The id is kept: it hashes the exchanges, not the
/// rules. Check the result with [`super::validate`].
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), WriteError> {
    let path = dir.join(MANIFEST_FILE);
    let mut text = serde_json::to_string_pretty(manifest).map_err(|e| WriteError::Io {
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    text.push('\n');
    let temp = dir.join(format!(".{MANIFEST_FILE}.tmp-{}", std::process::id()));
    fs::write(&temp, text).map_err(|source| WriteError::Io {
        path: temp.clone(),
        source,
    })?;
    fs::rename(&temp, &path).map_err(|source| WriteError::Io { path, source })
}

/// Why `manifest.id` is not an id of the form [`Built::write`] gives (`<service>-<window start,
/// compact UTC>-<12 hex digits>`, `service` made of `A-Za-z0-9._-`), or None when it is. Readers
/// do not recompute the hash (a hand-edited snapshot keeps its id); a store keyed by id (the
/// collector's `/v1/snapshots`) checks the rest with this.
pub fn id_problem(manifest: &Manifest) -> Option<String> {
    let service = &manifest.service;
    if service.is_empty()
        || !service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Some(format!(
            "service {service:?} is not made of letters, digits, '.', '_' and '-'"
        ));
    }
    let prefix = format!("{service}-{}-", compact_time(manifest.window.from.0));
    match manifest.id.strip_prefix(&prefix) {
        Some(hash)
            if hash.len() == 12 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            None
        }
        _ => Some(format!(
            "id {:?} is not {prefix}<12 hex digits> (service, window start, content hash)",
            manifest.id
        )),
    }
}

/// `20261127T130000Z`.
fn compact_time(unix_nanos: u64) -> String {
    let text = tapedeck_har::time::format_exact(unix_nanos - unix_nanos % 1_000_000_000);
    text.replace(['-', ':'], "")
}

fn write_lines<R: Row + Sync>(
    path: &Path,
    exchanges: &[R],
    caused_by: &[Option<String>],
    window_from: u64,
    hash: &mut Sha256,
) -> Result<(), WriteError> {
    let io = |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::create(path).map_err(io)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let chunks = exchanges.chunks(CHUNK).zip(caused_by.chunks(CHUNK));
    crate::parallel::map_ordered(
        chunks,
        crate::parallel::workers(),
        || (),
        |_, (exchanges, caused_by)| -> io::Result<Vec<u8>> {
            let mut buffer = Vec::with_capacity(exchanges.len() * 1024);
            for (exchange, link) in exchanges.iter().zip(caused_by) {
                let entry = EntryRef::new(exchange, window_from, link.as_deref());
                serde_json::to_writer(&mut buffer, &entry).map_err(io::Error::other)?;
                buffer.push(b'\n');
            }
            Ok(buffer)
        },
        |buffer| {
            let buffer = buffer?;
            hash.update(&buffer);
            out.write_all(&buffer)
        },
    )
    .map_err(io)?;
    out.flush().map_err(io)?;
    out.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    Ok(())
}
