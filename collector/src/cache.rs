//! The store listing cache: small queries do not list the store again while nothing changed.
//!
//! Every change a writer makes to the table (a flush's files, a manifest version of a compaction
//! or of retention, files deleted) is followed by a *change marker*: the writer overwrites its
//! own object `_tapedeck/changes/<writer>.json` with a counter ([`ListingCache::publish`]).
//! A query lists that one folder first; when every marker is as it was when a partition listing
//! was cached, and this process changed nothing since ([`ListingCache::changed`]), the cached
//! listing is used instead of listing the partitions again. Any change anywhere drops every
//! cached listing.
//!
//! Why this keeps every answer exactly once: a cached listing is a real listing, taken after the
//! markers it is kept under were read, so it shows the table as of some moment after the last
//! marker change; the manifest protocol ([`crate::manifest`]) makes every listing consistent.
//! A writer's change becomes visible to caching readers in other processes when its marker
//! changes (right after the change), and to this process's queries at once: the flusher calls
//! [`ListingCache::changed`] after each file is durable and before its rows leave the buffer.
//! Files are deleted only after a marker change that hid them, and `--gc-grace` later.
//!
//! A store with no marker at all (written by something else than a collector) is never cached.
//! Parquet footers are cached by DataFusion's file metadata cache, shared by every query of an
//! engine and keyed by path, size and modification time (files are never rewritten in place).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::Result;

/// The store folder of change markers.
pub const CHANGES_DIR: &str = "_tapedeck/changes";
/// Concurrent LIST requests of one [`ListingCache::list`].
const LIST_CONCURRENCY: usize = 8;
/// A marker untouched this long belongs to a writer that stopped; maintenance deletes it.
pub const STALE_MARKER: Duration = Duration::from_secs(24 * 3600);

/// What identifies a marker's content: path, size, time and entity tag.
type Marker = (Path, u64, i64, Option<String>);

/// See the module docs.
#[derive(Debug, Default)]
pub struct ListingCache {
    /// Changes made by this process.
    local: AtomicU64,
    /// Markers published by this process.
    published: AtomicU64,
    entry: Mutex<Option<Entry>>,
}

#[derive(Debug)]
struct Entry {
    local: u64,
    markers: Vec<Marker>,
    listings: HashMap<Path, Arc<Vec<ObjectMeta>>>,
}

/// The path of a writer's change marker.
pub fn marker_path(writer: u64) -> Path {
    Path::from(format!("{CHANGES_DIR}/{writer:016x}.json"))
}

impl ListingCache {
    /// Notes a change this process made to the table: its own queries list again.
    pub fn changed(&self) {
        self.local.fetch_add(1, Ordering::SeqCst);
    }

    /// Notes a change and tells every reader of the store: overwrites `writer`'s marker.
    pub async fn publish(&self, store: &Arc<dyn ObjectStore>, writer: u64) -> Result<()> {
        self.changed();
        let change = self.published.fetch_add(1, Ordering::SeqCst) + 1;
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis());
        let json = format!("{{\"change\":{change},\"at_ms\":{at_ms}}}");
        store
            .put(&marker_path(writer), PutPayload::from(Bytes::from(json)))
            .await?;
        Ok(())
    }

    /// Every object under each of `prefixes`: from the cache when nothing changed since it was
    /// listed, else listed now (and cached). `fresh` skips the cache.
    pub async fn list(
        &self,
        store: &Arc<dyn ObjectStore>,
        prefixes: &[Path],
        fresh: bool,
    ) -> Result<Vec<ObjectMeta>> {
        // The local count and the markers first, the listings second: see the module docs.
        let local = self.local.load(Ordering::SeqCst);
        let markers = markers(store).await?;
        let cacheable = !markers.is_empty();
        let mut found: Vec<Vec<ObjectMeta>> = Vec::with_capacity(prefixes.len());
        let mut missing: Vec<(usize, Path)> = Vec::new();
        {
            let entry = self.lock();
            let valid = entry
                .as_ref()
                .filter(|entry| !fresh && cacheable && entry.matches(local, &markers));
            for (i, prefix) in prefixes.iter().enumerate() {
                match valid.and_then(|entry| entry.listings.get(prefix)) {
                    Some(listing) => found.push(listing.as_ref().clone()),
                    None => {
                        found.push(Vec::new());
                        missing.push((i, prefix.clone()));
                    }
                }
            }
        }
        let listed: Vec<(usize, Path, Vec<ObjectMeta>)> = futures::stream::iter(missing)
            .map(|(i, prefix)| {
                let store = store.clone();
                async move {
                    let metas: Vec<ObjectMeta> = store.list(Some(&prefix)).try_collect().await?;
                    Ok::<_, object_store::Error>((i, prefix, metas))
                }
            })
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        if cacheable && !listed.is_empty() {
            let mut entry = self.lock();
            if !entry
                .as_ref()
                .is_some_and(|entry| entry.matches(local, &markers))
            {
                *entry = Some(Entry {
                    local,
                    markers,
                    listings: HashMap::new(),
                });
            }
            if let Some(entry) = entry.as_mut() {
                for (_, prefix, metas) in &listed {
                    entry
                        .listings
                        .insert(prefix.clone(), Arc::new(metas.clone()));
                }
            }
        }
        for (i, _, metas) in listed {
            found[i] = metas;
        }
        Ok(found.into_iter().flatten().collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Entry>> {
        self.entry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Entry {
    fn matches(&self, local: u64, markers: &[Marker]) -> bool {
        self.local == local && self.markers == markers
    }
}

/// The change markers in the store, in path order.
async fn markers(store: &Arc<dyn ObjectStore>) -> Result<Vec<Marker>> {
    let mut markers: Vec<Marker> = store
        .list(Some(&Path::from(CHANGES_DIR)))
        .map_ok(|meta| {
            (
                meta.location,
                meta.size,
                meta.last_modified.timestamp_nanos_opt().unwrap_or(i64::MAX),
                meta.e_tag,
            )
        })
        .try_collect()
        .await?;
    markers.sort();
    Ok(markers)
}

/// Deletes the markers of writers that changed nothing for [`STALE_MARKER`] (they stopped);
/// returns how many. Deleting one only makes readers list again.
pub async fn remove_stale_markers(store: &Arc<dyn ObjectStore>, now: SystemTime) -> Result<usize> {
    let metas: Vec<ObjectMeta> = store
        .list(Some(&Path::from(CHANGES_DIR)))
        .try_collect()
        .await?;
    let mut removed = 0;
    for meta in metas {
        let modified = SystemTime::from(meta.last_modified);
        if now
            .duration_since(modified)
            .is_ok_and(|age| age > STALE_MARKER)
        {
            match store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                Err(error) => return Err(error.into()),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn listings_are_reused_until_a_marker_or_a_local_change() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let prefix = Path::from("exchanges/service=a");
        let file = Path::from("exchanges/service=a/date=2026-11-27/hour=01/x.parquet");
        store
            .put(&file, PutPayload::from_static(b"1"))
            .await
            .unwrap();
        let cache = ListingCache::default();
        // No marker: never cached.
        assert_eq!(
            cache
                .list(&store, std::slice::from_ref(&prefix), false)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(cache.lock().is_none());
        cache.publish(&store, 7).await.unwrap();
        assert_eq!(
            cache
                .list(&store, std::slice::from_ref(&prefix), false)
                .await
                .unwrap()
                .len(),
            1
        );
        // A new file without a marker change: the cached listing stands.
        let other = Path::from("exchanges/service=a/date=2026-11-27/hour=02/y.parquet");
        store
            .put(&other, PutPayload::from_static(b"2"))
            .await
            .unwrap();
        assert_eq!(
            cache
                .list(&store, std::slice::from_ref(&prefix), false)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            cache
                .list(&store, std::slice::from_ref(&prefix), true)
                .await
                .unwrap()
                .len(),
            2
        );
        // Another writer's marker: listed again.
        store.delete(&other).await.unwrap();
        ListingCache::default().publish(&store, 8).await.unwrap();
        assert_eq!(
            cache
                .list(&store, std::slice::from_ref(&prefix), false)
                .await
                .unwrap()
                .len(),
            1
        );
        // A local change: listed again.
        store
            .put(&other, PutPayload::from_static(b"2"))
            .await
            .unwrap();
        assert_eq!(
            cache
                .list(&store, std::slice::from_ref(&prefix), false)
                .await
                .unwrap()
                .len(),
            1
        );
        cache.changed();
        assert_eq!(
            cache
                .list(&store, std::slice::from_ref(&prefix), false)
                .await
                .unwrap()
                .len(),
            2
        );
    }
}
