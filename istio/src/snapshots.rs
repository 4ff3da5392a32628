//! Snapshots by id: the collector's snapshot API (`/v1/snapshots`, served on its HTTP port by
//! `tapedeck_collector::snapshots`) and its client, used by `tapedeck snapshot push|pull|list`
//! and by the operator (which reads a snapshot's outbound hosts from it).
//!
//! - `PUT /v1/snapshots/{id}`: the snapshot's three files as a ustar archive
//!   ([`tapedeck_analyzer::snapshot::archive`], its one definition); the collector validates
//!   them with the analyzer's reader and refuses an id other than the one in `snapshot.json`.
//!   `201 Created` when stored, `200 OK` when the same files were already there, `409 Conflict`
//!   when other files are stored under the id.
//! - `GET /v1/snapshots`: `{"snapshots": [snapshot.json without its token rules, …]}`, by id.
//! - `GET /v1/snapshots/{id}/{file}`: one of the three files.
//!
//! Every request carries `authorization: Bearer TOKEN` when the collector has a token.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tapedeck_analyzer::snapshot::archive::{API_PATH, FILES, tar};
use tapedeck_analyzer::snapshot::{self, Manifest};

/// How long a request may wait for the collector's answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// What can go wrong talking to the collector's snapshot API.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The collector URL is unusable.
    #[error("collector url {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// No answer.
    #[error("{method} {url}: {reason}")]
    Request {
        /// GET or PUT.
        method: &'static str,
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The collector answered with an error status.
    #[error("{method} {url}: the collector answered {status}: {message}")]
    Status {
        /// GET or PUT.
        method: &'static str,
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// A local snapshot directory is not a valid snapshot.
    #[error(transparent)]
    Invalid(#[from] snapshot::ReadError),
    /// What was pulled is not the snapshot asked for.
    #[error("pulled snapshot {asked}: {problem}")]
    Pulled {
        /// The id asked for.
        asked: String,
        /// What is wrong.
        problem: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The snapshot's id.
    pub id: String,
    /// False when the collector already held the same files under the id.
    pub created: bool,
}

/// The answer of `GET /v1/snapshots`.
#[derive(Debug, Clone, Deserialize)]
pub struct Listing {
    /// Each stored snapshot's `snapshot.json` (its token rules left out), by id.
    pub snapshots: Vec<Manifest>,
}

/// A client of one collector's snapshot API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client of the collector whose HTTP port is at `url` (`http://HOST:PORT`, the port that
    /// serves `/metrics`; 9464 by default).
    pub fn new(url: &str, token: Option<String>) -> Result<Client, SnapshotError> {
        let bad = |reason: &str| SnapshotError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported: reach the collector's HTTP port in the cluster (the mesh encrypts it) or through `kubectl port-forward`",
                ));
            }
            _ => return Err(bad("expected http://HOST:PORT (the collector's HTTP port)")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        let http = HttpClient::builder(TokioExecutor::new()).build_http();
        Ok(Client {
            base: url.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
            http,
        })
    }

    /// The URL of a path of the API.
    pub fn url(&self, rest: &str) -> String {
        format!("{}{API_PATH}{rest}", self.base)
    }

    async fn send(
        &self,
        method: &'static str,
        url: String,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, SnapshotError> {
        let mut request = hyper::Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if method == "PUT" {
            request = request.header(http::header::CONTENT_TYPE, "application/x-tar");
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| SnapshotError::Request {
                method,
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| SnapshotError::Request {
                method,
                url: url.clone(),
                reason: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            })?
            .map_err(|e| SnapshotError::Request {
                method,
                url: url.clone(),
                reason: format!("{e} (is the collector's HTTP port at {}?)", self.base),
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = body_bytes(method, &url, response).await.unwrap_or_default();
        Err(SnapshotError::Status {
            method,
            url,
            status,
            message: String::from_utf8_lossy(&text).trim().to_owned(),
        })
    }

    /// Checks the snapshot in `dir` with the analyzer's reader and sends it. Returns its id.
    pub async fn push(&self, dir: &Path) -> Result<Pushed, SnapshotError> {
        let read = snapshot::read(dir)?;
        let mut files = Vec::new();
        for name in FILES {
            let path = dir.join(name);
            files.push((name, std::fs::read(&path).map_err(io(&path))?));
        }
        let archive = tar(&files);
        let id = read.manifest.id;
        let url = self.url(&format!("/{id}"));
        let response = self.send("PUT", url, Bytes::from(archive)).await?;
        Ok(Pushed {
            id,
            created: response.status() == http::StatusCode::CREATED,
        })
    }

    /// The stored snapshots' manifests (without their token rules), by id.
    pub async fn list(&self) -> Result<Vec<Manifest>, SnapshotError> {
        let url = self.url("");
        let response = self.send("GET", url.clone(), Bytes::new()).await?;
        let body = body_bytes("GET", &url, response).await?;
        let listing: Listing =
            serde_json::from_slice(&body).map_err(|e| SnapshotError::Request {
                method: "GET",
                url,
                reason: format!("the answer is not a snapshot listing: {e}"),
            })?;
        Ok(listing.snapshots)
    }

    /// `snapshot.json` of snapshot `id`.
    pub async fn manifest(&self, id: &str) -> Result<Manifest, SnapshotError> {
        let url = self.url(&format!("/{id}/{}", snapshot::MANIFEST_FILE));
        let response = self.send("GET", url.clone(), Bytes::new()).await?;
        let body = body_bytes("GET", &url, response).await?;
        let manifest: Manifest =
            serde_json::from_slice(&body).map_err(|e| SnapshotError::Pulled {
                asked: id.to_owned(),
                problem: format!("{}: {e}", snapshot::MANIFEST_FILE),
            })?;
        if manifest.id != id {
            return Err(SnapshotError::Pulled {
                asked: id.to_owned(),
                problem: format!("the collector sent snapshot {}", manifest.id),
            });
        }
        Ok(manifest)
    }

    /// Downloads snapshot `id` into `out` (which must not exist or be empty, unless `replace`):
    /// the files go into a sibling temporary directory, are checked with the analyzer's reader
    /// (and the id), and only then renamed into place.
    pub async fn pull(
        &self,
        id: &str,
        out: &Path,
        replace: bool,
    ) -> Result<Manifest, SnapshotError> {
        if let Ok(mut entries) = std::fs::read_dir(out)
            && entries.next().is_some()
            && !replace
        {
            return Err(SnapshotError::Io {
                path: out.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not empty (--force replaces it)",
                ),
            });
        }
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        let temp = tempfile::Builder::new()
            .prefix(".tapedeck-pull-")
            .tempdir_in(&parent)
            .map_err(io(&parent))?;
        for name in FILES {
            let url = self.url(&format!("/{id}/{name}"));
            let mut response = self.send("GET", url.clone(), Bytes::new()).await?;
            let path = temp.path().join(name);
            let mut file = std::fs::File::create(&path).map_err(io(&path))?;
            while let Some(frame) = response.body_mut().frame().await {
                let frame = frame.map_err(|e| SnapshotError::Request {
                    method: "GET",
                    url: url.clone(),
                    reason: format!("reading the answer: {e}"),
                })?;
                if let Some(data) = frame.data_ref() {
                    file.write_all(data).map_err(io(&path))?;
                }
            }
            file.sync_all().map_err(io(&path))?;
        }
        let read = snapshot::read(temp.path()).map_err(|e| SnapshotError::Pulled {
            asked: id.to_owned(),
            problem: e.to_string(),
        })?;
        if read.manifest.id != id {
            return Err(SnapshotError::Pulled {
                asked: id.to_owned(),
                problem: format!("the collector sent snapshot {}", read.manifest.id),
            });
        }
        if out.exists() {
            std::fs::remove_dir_all(out).map_err(io(out))?;
        }
        let temp = temp.keep();
        std::fs::rename(&temp, out).map_err(io(out))?;
        Ok(read.manifest)
    }
}

async fn body_bytes(
    method: &'static str,
    url: &str,
    response: hyper::Response<hyper::body::Incoming>,
) -> Result<Bytes, SnapshotError> {
    Ok(response
        .into_body()
        .collect()
        .await
        .map_err(|e| SnapshotError::Request {
            method,
            url: url.to_owned(),
            reason: format!("reading the answer: {e}"),
        })?
        .to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(Client::new("https://c:9464", None).is_err());
        assert!(Client::new("c:9464", None).is_err());
        let c = Client::new("http://c:9464/", Some(String::new())).unwrap();
        assert_eq!(c.url("/x"), "http://c:9464/v1/snapshots/x");
        assert!(c.token.is_none());
    }
}
