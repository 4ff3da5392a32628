//! Where Parquet files live: a local folder or an S3 bucket, behind `object_store`.
//!
//! [`open_store`] gives a [`StoreHandle`]: `store` is rooted at the root of the table tree, so
//! paths in it are exactly the [`crate::layout`] paths (`exchanges/service=…/…parquet`), and
//! `url` says where that root is (`file:///abs/dir/` or `s3://bucket/prefix/`, always with a
//! trailing `/`), for logs and for users.
//!
//! To read the store through DataFusion, register `store` under an object store URL of your own
//! choosing (for example `tapedeck://store/`) and point the listing table at
//! `tapedeck://store/exchanges/`: `store` already carries the folder or bucket prefix, so it
//! must not be registered under `url`'s own scheme and host.

use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use url::Url;

use crate::cache::ListingCache;
use crate::config::STORE_DIR;
use crate::error::{Error, Result};

/// An object store rooted at the table tree, and where that is.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    /// The store; paths are [`crate::layout`] paths.
    pub store: Arc<dyn ObjectStore>,
    /// Where the root of `store` is: `file:///abs/dir/` or `s3://bucket/prefix/`.
    pub url: Url,
    /// The listing cache of this process's queries of `store`, told of this process's changes
    /// ([`crate::cache`]).
    pub changes: Arc<ListingCache>,
}

impl StoreHandle {
    /// The URL of the `exchanges` table folder (`<url>exchanges/`).
    pub fn table_url(&self) -> Url {
        self.url
            .join(&format!("{}/", crate::layout::TABLE_DIR))
            .expect("a relative path joins any base URL")
    }
}

/// Opens the store: `url` when given (`file:///absolute/path` or `s3://bucket/prefix`), else
/// the folder `data/store` (created if missing). S3 settings come from the `AWS_*` environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
/// `AWS_ALLOW_HTTP`, …).
pub fn open_store(data: &Path, url: Option<&str>) -> Result<StoreHandle> {
    open_store_with(data, url, std::iter::empty::<(&str, &str)>())
}

/// [`open_store`] with S3 settings given here rather than in the environment (they override
/// it): keys are the lowercase names of the variables (`aws_endpoint`, `aws_allow_http`,
/// `aws_access_key_id`, …). Tests use it to avoid racing on process environment variables.
pub fn open_store_with<K: AsRef<str>, V: Into<String>>(
    data: &Path,
    url: Option<&str>,
    s3_options: impl IntoIterator<Item = (K, V)>,
) -> Result<StoreHandle> {
    let Some(text) = url else {
        return open_local(&data.join(STORE_DIR));
    };
    let bad = |reason: String| Error::StoreUrl {
        url: text.to_string(),
        reason,
    };
    let parsed = Url::parse(text).map_err(|error| bad(error.to_string()))?;
    match parsed.scheme() {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|()| bad("not an absolute local path".into()))?;
            open_local(&path)
        }
        "s3" | "s3a" => {
            let bucket = parsed
                .host_str()
                .filter(|bucket| !bucket.is_empty())
                .ok_or_else(|| bad("no bucket name".into()))?
                .to_string();
            let prefix = parsed.path().trim_matches('/').to_string();
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
            for (key, value) in s3_options {
                let key: AmazonS3ConfigKey = key
                    .as_ref()
                    .parse()
                    .map_err(|error| bad(format!("S3 option {}: {error}", key.as_ref())))?;
                builder = builder.with_config(key, value);
            }
            let s3 = builder.build().map_err(|error| bad(error.to_string()))?;
            let (store, root): (Arc<dyn ObjectStore>, String) = if prefix.is_empty() {
                (Arc::new(s3), format!("s3://{bucket}/"))
            } else {
                (
                    Arc::new(PrefixStore::new(s3, prefix.as_str())),
                    format!("s3://{bucket}/{prefix}/"),
                )
            };
            let url = Url::parse(&root).map_err(|error| bad(error.to_string()))?;
            Ok(StoreHandle {
                store,
                url,
                changes: Arc::default(),
            })
        }
        other => Err(bad(format!(
            "unsupported scheme {other:?}; use file:///absolute/path or s3://bucket/prefix"
        ))),
    }
}

impl StoreHandle {
    /// Makes a file just put into a local store durable across a power loss: `object_store`'s
    /// local put writes a temporary file and renames it, without fsync. This fsyncs the file and
    /// every folder from its own up to the store root (a new partition creates new folders).
    /// Nothing to do for object storage, where a completed PUT is durable.
    pub async fn sync(&self, path: &object_store::path::Path) -> Result<()> {
        if self.url.scheme() != "file" {
            return Ok(());
        }
        let Ok(root) = self.url.to_file_path() else {
            return Ok(());
        };
        let file = path
            .parts()
            .fold(root.clone(), |dir, part| dir.join(part.as_ref()));
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            let mut dir = file.parent();
            while let Some(folder) = dir {
                std::fs::File::open(folder)?.sync_all()?;
                if folder == root {
                    break;
                }
                dir = folder.parent();
            }
            Ok(())
        })
        .await
        .map_err(|error| Error::Io {
            what: format!("syncing {path}"),
            source: std::io::Error::other(error),
        })?
        .map_err(|source| Error::Io {
            what: format!("syncing {path} to disk"),
            source,
        })
    }
}

fn open_local(dir: &Path) -> Result<StoreHandle> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        what: format!("creating store folder {}", dir.display()),
        source,
    })?;
    let dir = dir.canonicalize().map_err(|source| Error::Io {
        what: format!("resolving store folder {}", dir.display()),
        source,
    })?;
    // Automatic cleanup removes partition folders that retention and compaction empty.
    let store = LocalFileSystem::new_with_prefix(&dir)?.with_automatic_cleanup(true);
    let url = Url::from_directory_path(&dir).map_err(|()| Error::StoreUrl {
        url: dir.display().to_string(),
        reason: "not an absolute local path".into(),
    })?;
    Ok(StoreHandle {
        store: Arc::new(store),
        url,
        changes: Arc::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_store_is_the_data_folder() {
        let data = tempfile::tempdir().unwrap();
        let handle = open_store(data.path(), None).unwrap();
        let root = data.path().join("store").canonicalize().unwrap();
        assert_eq!(handle.url.to_file_path().unwrap(), root);
        assert!(handle.url.as_str().ends_with("/store/"));
        assert!(handle.table_url().as_str().ends_with("/store/exchanges/"));
    }

    #[test]
    fn file_urls_must_be_absolute() {
        let data = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(other.path().join("parquet")).unwrap();
        let handle = open_store(data.path(), Some(url.as_str())).unwrap();
        assert!(other.path().join("parquet").is_dir());
        assert_eq!(handle.url, url);
        let error = open_store(data.path(), Some("file://host/x"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not an absolute local path"), "{error}");
    }

    #[test]
    fn s3_urls_keep_their_prefix_and_other_schemes_are_refused() {
        let data = tempfile::tempdir().unwrap();
        let handle = open_store_with(
            data.path(),
            Some("s3://bucket/some/prefix"),
            [
                ("aws_endpoint", "http://127.0.0.1:1"),
                ("aws_allow_http", "true"),
                ("aws_region", "us-east-1"),
            ],
        )
        .unwrap();
        assert_eq!(handle.url.as_str(), "s3://bucket/some/prefix/");
        let error = open_store(data.path(), Some("gs://bucket/x"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "store URL \"gs://bucket/x\": unsupported scheme \"gs\"; use file:///absolute/path or s3://bucket/prefix"
        );
        let error = open_store(data.path(), Some("s3:///x"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("no bucket name"), "{error}");
    }
}
