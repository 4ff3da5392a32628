//! The commit protocol that lets any number of collectors share one store.
//!
//! # What each writer owns
//!
//! Every collector process writes under its own random writer id (file names
//! `<writer>-<sequence>.parquet`, [`crate::layout`]) from its own write-ahead log. A flush file
//! is visible the moment its PUT completes (it adds rows nobody else has). Before its first PUT a
//! flush records a *pin* in the store, `_tapedeck/pins/<writer>-<segment>.json`, listing the
//! files it is about to write, and deletes the pin only after its log segments are gone: while
//! the pin exists a crash may still make that writer delete those files and replay them, so no
//! other writer may merge them. Compaction lists a partition first and the pins second, so any
//! file it sees whose flush is unfinished is pinned by then.
//!
//! # The partition manifest
//!
//! Everything that *replaces* rows (compaction) or *removes* them (retention) goes through a
//! per-partition manifest: immutable versions `_state-<version>.json` in the partition's folder
//! ([`PartitionState`]), each created with a conditional create (`PutMode::Create`: S3's
//! `If-None-Match: *`, a hard link on a local disk). Creating version `n + 1` succeeds for
//! exactly one writer, so a version is a compare-and-swap on the whole state; the newest version
//! is the state.
//!
//! A compaction, by the writer that holds the partition:
//! 1. takes the lease: creates `n + 1` with `lease = {writer, until}` (skipped if another
//!    writer's lease has not run out);
//! 2. lists the partition again, then the pins, and picks the visible, unpinned files;
//! 3. writes the merged file as `<writer>-<sequence>.compacted.parquet`, which no reader shows
//!    until a manifest version lists it among `outputs`;
//! 4. commits: creates `n + 2` with the output and the files it replaces. If anyone created
//!    `n + 2` first (the lease ran out and another writer took the partition) the commit fails,
//!    the output is deleted and nothing changed. This is the fence: a stalled compactor can
//!    never commit over a newer holder.
//!
//! # What a reader sees
//!
//! A reader lists the partition (data files and manifest versions in one listing) and applies
//! the newest version it listed ([`visible_names`]): a `.compacted.parquet` file is shown only if the
//! manifest commits it; a file the manifest says was replaced is hidden once the output that
//! replaced it is in the same listing (or once the replaced files are being deleted); everything
//! is hidden in a partition retention expired. Because a committed output is written before
//! the commit and its inputs are deleted only long after, every interleaving of a listing with a
//! commit shows each row exactly once: an older manifest shows the inputs and hides the output,
//! a newer one hides the inputs only when the output is in the listing.
//!
//! # Deleting: only what every reader is done with
//!
//! Nothing a reader may still be reading is deleted early. The replaced inputs of a commit are
//! marked for deletion (`gc_at`) only `--gc-grace` after the commit, and deleted after that mark
//! is in a manifest version; a partition past retention is first marked `expired` (hidden at
//! once) and its files deleted `--gc-grace` later. `--gc-grace` must exceed the longest query
//! of any reader of the bucket (this collector cancels its own queries at `--query-timeout`).
//! Old manifest versions and the outputs of compactions that never committed (a crash, a lost
//! lease) are cleaned up by the lease holder the same way.
//!
//! # Where the store is weaker
//!
//! The protocol needs conditional create, which a local disk and S3 (since 2024) have; on an
//! S3-compatible store without it, creating a manifest version fails and compaction and
//! retention stop (logged), while ingest and queries go on. A partition listing is assumed to
//! be one point-in-time view (one S3 LIST page, up to 1 000 keys; one directory read), which
//! compaction keeps true by keeping partitions small.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{FileName, PartitionKey, TABLE_DIR, parse_partition_entry};

/// The name prefix of manifest versions in a partition folder.
pub const STATE_PREFIX: &str = "_state-";
/// The name suffix of manifest versions.
pub const STATE_SUFFIX: &str = ".json";
/// The store folder of flush pins.
pub const PINS_DIR: &str = "_tapedeck/pins";

/// One version of a partition's manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Who may compact or delete in the partition, until when.
    #[serde(default)]
    pub lease: Option<Lease>,
    /// Committed compaction outputs (file names), with what each replaces.
    #[serde(default)]
    pub outputs: BTreeMap<String, Commit>,
    /// When retention expired the partition (ms since the epoch): nothing in it is visible.
    #[serde(default)]
    pub expired_at_ms: Option<u64>,
}

/// A partition lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The holder's writer id, 16 hex digits.
    pub writer: String,
    /// Until when (ms since the epoch).
    pub until_ms: u64,
}

/// One committed compaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The file names it replaces.
    pub inputs: Vec<String>,
    /// When it committed (ms since the epoch).
    pub at_ms: u64,
    /// When its inputs were marked for deletion (after `--gc-grace`); they are deleted after.
    #[serde(default)]
    pub gc_at_ms: Option<u64>,
}

impl PartitionState {
    /// Whether `writer` may take the lease at `now_ms`.
    pub fn lease_free_for(&self, writer: u64, now_ms: u64) -> bool {
        match &self.lease {
            None => true,
            Some(lease) => lease.writer == writer_hex(writer) || lease.until_ms <= now_ms,
        }
    }

    /// The input names hidden given the names in a listing.
    fn hidden_inputs(&self, listed: &HashSet<&str>) -> HashSet<String> {
        self.outputs
            .iter()
            .filter(|(output, commit)| {
                listed.contains(output.as_str()) || commit.gc_at_ms.is_some()
            })
            .flat_map(|(_, commit)| commit.inputs.iter().cloned())
            .collect()
    }
}

/// A writer id as 16 hex digits.
pub fn writer_hex(writer: u64) -> String {
    format!("{writer:016x}")
}

/// What one listing found in one partition folder.
#[derive(Debug, Clone, Default)]
pub struct PartitionListing {
    /// Data files (flushed and compacted, committed or not).
    pub files: Vec<(FileName, ObjectMeta)>,
    /// Manifest versions.
    pub states: Vec<(u64, ObjectMeta)>,
}

impl PartitionListing {
    /// The newest manifest version listed.
    pub fn latest(&self) -> Option<u64> {
        self.states.iter().map(|(version, _)| *version).max()
    }
}

/// The path of manifest version `version` of a partition.
pub fn state_path(key: &PartitionKey, version: u64) -> Path {
    Path::from(format!(
        "{}/{STATE_PREFIX}{version:020}{STATE_SUFFIX}",
        key.dir()
    ))
}

/// Groups listed objects by partition: data files and manifest versions; anything else is left
/// out.
pub fn group(
    metas: impl IntoIterator<Item = ObjectMeta>,
) -> BTreeMap<PartitionKey, PartitionListing> {
    let mut partitions: BTreeMap<PartitionKey, PartitionListing> = BTreeMap::new();
    for meta in metas {
        let Some((key, name)) = parse_partition_entry(&meta.location) else {
            continue;
        };
        if let Some(name) = FileName::parse(&name) {
            partitions.entry(key).or_default().files.push((name, meta));
        } else if let Some(version) = name
            .strip_prefix(STATE_PREFIX)
            .and_then(|rest| rest.strip_suffix(STATE_SUFFIX))
            .filter(|digits| digits.len() == 20)
            .and_then(|digits| digits.parse::<u64>().ok())
        {
            partitions
                .entry(key)
                .or_default()
                .states
                .push((version, meta));
        }
    }
    for listing in partitions.values_mut() {
        listing
            .files
            .sort_by_key(|(name, meta)| (meta.last_modified, *name));
        listing.states.sort_by_key(|(version, _)| *version);
    }
    partitions
}

/// Lists everything under `prefix` and groups it by partition.
pub async fn list(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
) -> Result<BTreeMap<PartitionKey, PartitionListing>> {
    let metas: Vec<ObjectMeta> = store.list(Some(prefix)).try_collect().await?;
    Ok(group(metas))
}

/// Lists the whole table.
pub async fn list_table(
    store: &Arc<dyn ObjectStore>,
) -> Result<BTreeMap<PartitionKey, PartitionListing>> {
    list(store, &Path::from(TABLE_DIR)).await
}

/// Reads manifest version `version` of a partition (`None` if it is gone: a newer one exists).
pub async fn load(
    store: &Arc<dyn ObjectStore>,
    key: &PartitionKey,
    version: u64,
) -> Result<Option<PartitionState>> {
    let path = state_path(key, version);
    let bytes = match store.get(&path).await {
        Ok(result) => result.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| Error::Manifest {
            path: path.to_string(),
            reason: error.to_string(),
        })
}

/// Creates manifest version `version`; `false` if it already exists (someone else won).
pub async fn create(
    store: &Arc<dyn ObjectStore>,
    key: &PartitionKey,
    version: u64,
    state: &PartitionState,
) -> Result<bool> {
    let json = serde_json::to_vec_pretty(state).expect("a manifest serializes");
    let options = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .put_opts(
            &state_path(key, version),
            PutPayload::from(Bytes::from(json)),
            options,
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Whether a file is visible under `state`, given the names of the same listing (see the
/// module docs).
pub fn visible_names<'a>(
    names: impl IntoIterator<Item = &'a FileName>,
    state: Option<&PartitionState>,
) -> HashSet<FileName> {
    let names: Vec<FileName> = names.into_iter().copied().collect();
    let Some(state) = state else {
        return names.into_iter().filter(|name| !name.compacted).collect();
    };
    if state.expired_at_ms.is_some() {
        return HashSet::new();
    }
    let texts: Vec<String> = names.iter().map(ToString::to_string).collect();
    let listed: HashSet<&str> = texts.iter().map(String::as_str).collect();
    let hidden = state.hidden_inputs(&listed);
    names
        .into_iter()
        .zip(&texts)
        .filter(|(name, text)| {
            (!name.compacted || state.outputs.contains_key(text.as_str()))
                && !hidden.contains(text.as_str())
        })
        .map(|(name, _)| name)
        .collect()
}

/// A cache of manifest versions: they never change once written, so each is read once.
#[derive(Debug, Default)]
pub struct StateCache {
    states: std::sync::Mutex<BTreeMap<(PartitionKey, u64), Arc<PartitionState>>>,
}

impl StateCache {
    /// The newest listed manifest of a partition, from the cache or the store; `None` when the
    /// listing has none, `Err` if the version was deleted (the caller lists again).
    pub async fn latest(
        &self,
        store: &Arc<dyn ObjectStore>,
        key: &PartitionKey,
        listing: &PartitionListing,
    ) -> Result<Option<Arc<PartitionState>>, Stale> {
        let Some(version) = listing.latest() else {
            return Ok(None);
        };
        let cached = self.lock().get(&(key.clone(), version)).cloned();
        if let Some(state) = cached {
            return Ok(Some(state));
        }
        match load(store, key, version).await {
            Ok(Some(state)) => {
                let state = Arc::new(state);
                let mut states = self.lock();
                // Older versions of the partition are never needed again.
                states.retain(|(k, v), _| k != key || *v >= version);
                states.insert((key.clone(), version), state.clone());
                Ok(Some(state))
            }
            Ok(None) => Err(Stale::Gone),
            Err(error) => Err(Stale::Failed(error)),
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<(PartitionKey, u64), Arc<PartitionState>>> {
        self.states
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why a manifest could not be read.
#[derive(Debug)]
pub enum Stale {
    /// The listed version was deleted since: list again.
    Gone,
    /// Reading it failed.
    Failed(Error),
}

/// The visible data files of every partition under `prefixes`, oldest first, listed through
/// `listings` ([`crate::cache`]). Lists again (up to three times, bypassing the cache) when a
/// manifest version was cleaned up between the listing and its read.
pub async fn resolve_visible(
    store: &Arc<dyn ObjectStore>,
    cache: &StateCache,
    listings: &crate::cache::ListingCache,
    prefixes: &[Path],
) -> Result<BTreeMap<PartitionKey, Vec<(FileName, ObjectMeta)>>> {
    let mut attempt = 0;
    'again: loop {
        attempt += 1;
        // A retry lists the store itself: the cached listing named a version since deleted.
        let metas = listings.list(store, prefixes, attempt > 1).await?;
        let listings = group(metas);
        let mut visible = BTreeMap::new();
        for (key, listing) in listings {
            let state = match cache.latest(store, &key, &listing).await {
                Ok(state) => state,
                Err(Stale::Gone) if attempt < 3 => continue 'again,
                Err(Stale::Gone) => {
                    return Err(Error::Manifest {
                        path: key.dir().to_string(),
                        reason: "its manifest changed under three listings in a row".into(),
                    });
                }
                Err(Stale::Failed(error)) => return Err(error),
            };
            let keep = visible_names(listing.files.iter().map(|(name, _)| name), state.as_deref());
            let files: Vec<_> = listing
                .files
                .into_iter()
                .filter(|(name, _)| keep.contains(name))
                .collect();
            if !files.is_empty() {
                visible.insert(key, files);
            }
        }
        return Ok(visible);
    }
}

/// The path of a flush's pin.
pub fn pin_path(writer: u64, segment: u64) -> Path {
    Path::from(format!("{PINS_DIR}/{writer:016x}-{segment:020}.json"))
}

/// Records a pin (see the module docs): the files a flush is about to write.
pub async fn put_pin(store: &Arc<dyn ObjectStore>, pin: &Path, files: &[String]) -> Result<()> {
    let json = serde_json::to_vec(files).expect("a pin serializes");
    store.put(pin, PutPayload::from(Bytes::from(json))).await?;
    Ok(())
}

/// Deletes a pin (absent is fine).
pub async fn remove_pin(store: &Arc<dyn ObjectStore>, pin: &Path) -> Result<()> {
    match store.delete(pin).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Whether a pin exists.
pub async fn pin_exists(store: &Arc<dyn ObjectStore>, pin: &Path) -> Result<bool> {
    match store.head(pin).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Every file pinned by any writer's unfinished flush.
pub async fn pinned_files(store: &Arc<dyn ObjectStore>) -> Result<BTreeSet<Path>> {
    let pins: Vec<ObjectMeta> = store
        .list(Some(&Path::from(PINS_DIR)))
        .try_collect()
        .await?;
    let mut files = BTreeSet::new();
    for pin in pins {
        let bytes = match store.get(&pin.location).await {
            Ok(result) => result.bytes().await?,
            // Its flush finished meanwhile.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(error) => return Err(error.into()),
        };
        let listed: Vec<String> =
            serde_json::from_slice(&bytes).map_err(|error| Error::Manifest {
                path: pin.location.to_string(),
                reason: error.to_string(),
            })?;
        files.extend(listed.into_iter().map(Path::from));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(sequence: u64, compacted: bool) -> FileName {
        FileName {
            writer: 1,
            sequence,
            compacted,
        }
    }

    #[test]
    fn a_commit_hides_its_inputs_only_when_its_output_is_listed() {
        let (a, b, out) = (name(1, false), name(2, false), name(3, true));
        let mut state = PartitionState::default();
        // Not committed: the output is invisible, the inputs show.
        assert_eq!(
            visible_names(&[a, b, out], Some(&state)),
            HashSet::from([a, b])
        );
        assert_eq!(visible_names(&[a, b, out], None), HashSet::from([a, b]));
        state.outputs.insert(
            out.to_string(),
            Commit {
                inputs: vec![a.to_string(), b.to_string()],
                at_ms: 1,
                gc_at_ms: None,
            },
        );
        assert_eq!(
            visible_names(&[a, b, out], Some(&state)),
            HashSet::from([out])
        );
        // A listing that missed the output keeps the inputs.
        assert_eq!(visible_names(&[a, b], Some(&state)), HashSet::from([a, b]));
        // Once the inputs are being deleted they are hidden whatever the listing.
        state.outputs.get_mut(&out.to_string()).unwrap().gc_at_ms = Some(2);
        assert_eq!(visible_names(&[a], Some(&state)), HashSet::new());
        state.expired_at_ms = Some(3);
        assert_eq!(visible_names(&[out], Some(&state)), HashSet::new());
    }

    #[test]
    fn leases_run_out() {
        let state = PartitionState {
            lease: Some(Lease {
                writer: writer_hex(7),
                until_ms: 100,
            }),
            ..Default::default()
        };
        assert!(state.lease_free_for(7, 50));
        assert!(!state.lease_free_for(8, 50));
        assert!(state.lease_free_for(8, 100));
    }
}
