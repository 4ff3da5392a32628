//! Snapshots by id, kept in the collector's own object store (local folder or S3, the store
//! the Parquet files go to) and served on its HTTP port: the API `tapedeck_mesh::snapshots`
//! describes and is the client of (`PUT /v1/snapshots/{id}`, `GET /v1/snapshots`,
//! `GET /v1/snapshots/{id}/{file}`), behind the collector's bearer token. The archive an upload
//! carries is the analyzer's ([`tapedeck_analyzer::snapshot::archive`]).
//!
//! Layout under the store's root:
//!
//! ```text
//! snapshots/<id>/uploads/<nonce>/snapshot.json|inbound.jsonl|outbound.jsonl   one upload's files
//! snapshots/<id>/current.json      {"upload": "<nonce>", "sha256": {file: hex}}: the snapshot
//! ```
//!
//! An upload writes its files under a prefix of its own, then creates `current.json` with a
//! conditional create (`PutMode::Create`): a reader finds a snapshot only through
//! `current.json`, so it never sees a half-written one, and of two concurrent uploads of one id
//! exactly one wins (the other answers 200 when its files are the same, 409 when not). An
//! upload that lost, or died before its `current.json`, leaves files no reader looks at.
//!
//! An upload is checked before anything is stored: the archive holds exactly the three files,
//! the analyzer's reader (`tapedeck_analyzer::snapshot::validate`) finds no problem, the id in
//! the path is the one in `snapshot.json`, and that id has the analyzer's form
//! ([`tapedeck_analyzer::snapshot::id_problem`]).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt as _;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tapedeck_analyzer::snapshot::archive::{API_PATH, FILES, untar};
use tapedeck_analyzer::snapshot::{self, Manifest};

use crate::auth::{Schemes, credentials_match};

/// The folder of the store snapshots are kept under.
pub const PREFIX: &str = "snapshots";
/// The object that makes a snapshot visible.
pub const CURRENT: &str = "current.json";
/// The folder of the data directory uploads are unpacked in.
pub const SCRATCH_DIR: &str = "snapshot-uploads";
/// The largest upload accepted, bytes (the archive).
pub const MAX_UPLOAD_BYTES: u64 = 4 << 30;

/// The snapshot store and what its routes need.
#[derive(Debug, Clone)]
pub struct Snapshots {
    store: Arc<dyn ObjectStore>,
    token: Option<String>,
    scratch: PathBuf,
}

impl Snapshots {
    /// Snapshots in `store` (under [`PREFIX`]), uploads checked by the bearer `token` when
    /// given, archives unpacked in `scratch` (a folder of the data directory: the collector's
    /// root filesystem may be read-only).
    pub fn new(store: Arc<dyn ObjectStore>, token: Option<String>, scratch: PathBuf) -> Self {
        Snapshots {
            store,
            token: token.filter(|t| !t.is_empty()),
            scratch,
        }
    }
}

/// What `current.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Current {
    /// The upload whose files are the snapshot.
    upload: String,
    /// Each file's SHA-256, hex.
    sha256: BTreeMap<String, String>,
}

/// The snapshot routes, to merge into the collector's HTTP router.
pub fn routes<S: Clone + Send + Sync + 'static>(snapshots: Snapshots) -> Router<S> {
    Router::new()
        .route(API_PATH, get(list))
        .route(&format!("{API_PATH}/{{id}}"), axum::routing::put(upload))
        .route(&format!("{API_PATH}/{{id}}/{{file}}"), get(file))
        .layer(DefaultBodyLimit::disable())
        .with_state(Arc::new(snapshots))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut message = message.into();
    message.push('\n');
    (status, message).into_response()
}

/// The refusal of a request without the collector's token, if any.
fn refused(snapshots: &Snapshots, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &snapshots.token else {
        return None;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if credentials_match(presented, token.as_bytes(), Schemes::Bearer) {
        None
    } else {
        Some(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (authorization: Bearer TOKEN, the collector's --token)",
        ))
    }
}

fn path_of(parts: &[&str]) -> StorePath {
    StorePath::from_iter(std::iter::once(PREFIX).chain(parts.iter().copied()))
}

/// Whether `id` can name a folder of the store (the analyzer's ids always can).
fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

async fn current(snapshots: &Snapshots, id: &str) -> Result<Option<Current>, Response> {
    match snapshots.store.get(&path_of(&[id, CURRENT])).await {
        Ok(got) => {
            let bytes = got.bytes().await.map_err(store_error)?;
            serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("snapshot {id}: {CURRENT} is unreadable: {e}"),
                )
            })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_error(e)),
    }
}

fn store_error(e: object_store::Error) -> Response {
    tracing::warn!(error = %e, "snapshot store");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the snapshot store failed: {e}"),
    )
}

async fn list(State(snapshots): State<Arc<Snapshots>>, headers: HeaderMap) -> Response {
    if let Some(refused) = refused(&snapshots, &headers) {
        return refused;
    }
    let listed = match snapshots
        .store
        .list_with_delimiter(Some(&StorePath::from(PREFIX)))
        .await
    {
        Ok(listed) => listed.common_prefixes,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return store_error(e),
    };
    let mut out = Vec::new();
    for prefix in listed {
        let Some(id) = prefix.filename() else {
            continue;
        };
        let current = match current(&snapshots, id).await {
            Ok(Some(current)) => current,
            Ok(None) => continue, // an upload in progress, or one that died
            Err(e) => return e,
        };
        let location = path_of(&[id, "uploads", &current.upload, snapshot::MANIFEST_FILE]);
        let bytes = match snapshots.store.get(&location).await {
            Ok(got) => match got.bytes().await {
                Ok(bytes) => bytes,
                Err(e) => return store_error(e),
            },
            Err(e) => return store_error(e),
        };
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(mut manifest) => {
                manifest.tokens.clear();
                out.push(manifest);
            }
            Err(e) => tracing::warn!(%id, error = %e, "a stored snapshot.json is unreadable"),
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    let body = serde_json::to_vec(&serde_json::json!({ "snapshots": out })).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn file(
    State(snapshots): State<Arc<Snapshots>>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    if let Some(refused) = refused(&snapshots, &headers) {
        return refused;
    }
    if !FILES.contains(&name.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            format!("no file {name:?}: a snapshot has {}", FILES.join(", ")),
        );
    }
    if !plausible_id(&id) {
        return error(StatusCode::NOT_FOUND, format!("no snapshot {id:?}"));
    }
    let current = match current(&snapshots, &id).await {
        Ok(Some(current)) => current,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no snapshot {id} (GET {API_PATH} lists them)"),
            );
        }
        Err(e) => return e,
    };
    let location = path_of(&[&id, "uploads", &current.upload, &name]);
    match snapshots.store.get(&location).await {
        Ok(got) => {
            let stream = got
                .into_stream()
                .map(|chunk| chunk.map_err(std::io::Error::other));
            let kind = if name == snapshot::MANIFEST_FILE {
                "application/json"
            } else {
                "application/jsonl"
            };
            ([(header::CONTENT_TYPE, kind)], Body::from_stream(stream)).into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn upload(
    State(snapshots): State<Arc<Snapshots>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    if let Some(refused) = refused(&snapshots, &headers) {
        return refused;
    }
    if !plausible_id(&id) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a snapshot id (<service>-<window start>-<12 hex digits>)"),
        );
    }
    if let Err(e) = std::fs::create_dir_all(&snapshots.scratch) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("creating {}: {e}", snapshots.scratch.display()),
        );
    }
    let dir = match tempfile::Builder::new()
        .prefix("upload-")
        .tempdir_in(&snapshots.scratch)
    {
        Ok(dir) => dir,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("a scratch folder in {}: {e}", snapshots.scratch.display()),
            );
        }
    };
    // The archive goes to disk as it arrives (snapshots can be large), then is unpacked.
    let archive_path = dir.path().join("upload.tar");
    let mut archive = match std::fs::File::create(&archive_path) {
        Ok(file) => file,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut received = 0u64;
    let mut body = request.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                return error(StatusCode::BAD_REQUEST, format!("reading the upload: {e}"));
            }
        };
        received += chunk.len() as u64;
        if received > MAX_UPLOAD_BYTES {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the upload is larger than {MAX_UPLOAD_BYTES} bytes"),
            );
        }
        if let Err(e) = archive.write_all(&chunk) {
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    }
    drop(archive);
    let files_dir = dir.path().join("files");
    let checked = tokio::task::spawn_blocking({
        let files_dir = files_dir.clone();
        let id = id.clone();
        move || check_upload(&archive_path, &files_dir, &id)
    })
    .await;
    let sha256 = match checked {
        Ok(Ok(sha256)) => sha256,
        Ok(Err(problem)) => return error(StatusCode::UNPROCESSABLE_ENTITY, problem),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if let Ok(Some(existing)) = current(&snapshots, &id).await {
        return same_or_conflict(&id, &existing, &sha256);
    }
    let nonce = format!("{:016x}", crate::writer::random_writer_id());
    for name in FILES {
        let bytes = match std::fs::read(files_dir.join(name)) {
            Ok(bytes) => bytes,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        let location = path_of(&[&id, "uploads", &nonce, name]);
        if let Err(e) = snapshots
            .store
            .put(&location, PutPayload::from(bytes))
            .await
        {
            return store_error(e);
        }
    }
    let ours = Current {
        upload: nonce.clone(),
        sha256,
    };
    let json = serde_json::to_vec_pretty(&ours).unwrap_or_default();
    let created = snapshots
        .store
        .put_opts(
            &path_of(&[&id, CURRENT]),
            PutPayload::from(json),
            PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            },
        )
        .await;
    match created {
        Ok(_) => {
            tracing::info!(%id, upload = %nonce, bytes = received, "Stored a snapshot.");
            (StatusCode::CREATED, format!("stored snapshot {id}\n")).into_response()
        }
        Err(object_store::Error::AlreadyExists { .. }) => {
            // Another upload of the id won the race: ours is not referenced; remove it.
            for name in FILES {
                let _ = snapshots
                    .store
                    .delete(&path_of(&[&id, "uploads", &nonce, name]))
                    .await;
            }
            match current(&snapshots, &id).await {
                Ok(Some(existing)) => same_or_conflict(&id, &existing, &ours.sha256),
                Ok(None) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("snapshot {id}: {CURRENT} exists and then does not"),
                ),
                Err(e) => e,
            }
        }
        Err(e) => store_error(e),
    }
}

fn same_or_conflict(id: &str, existing: &Current, sha256: &BTreeMap<String, String>) -> Response {
    if existing.sha256 == *sha256 {
        (StatusCode::OK, format!("snapshot {id} is already stored\n")).into_response()
    } else {
        error(
            StatusCode::CONFLICT,
            format!(
                "snapshot {id} is already stored with other files (a snapshot's files never change under its id)"
            ),
        )
    }
}

/// Unpacks and checks an upload; returns each file's SHA-256 or the problems, for people.
fn check_upload(
    archive: &std::path::Path,
    dir: &std::path::Path,
    id: &str,
) -> Result<BTreeMap<String, String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    let names = untar(std::io::BufReader::new(file), dir).map_err(|e| e.to_string())?;
    let missing: Vec<&str> = FILES
        .iter()
        .copied()
        .filter(|f| !names.iter().any(|n| n == f))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the archive lacks {} (send snapshot.json, inbound.jsonl and outbound.jsonl)",
            missing.join(", ")
        ));
    }
    let (read, problems) = snapshot::validate(dir);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        return Err(format!("not a valid snapshot:\n{}", list.join("\n")));
    }
    let Some(read) = read else {
        return Err("not a valid snapshot".to_owned());
    };
    if read.manifest.id != id {
        return Err(format!(
            "the path names snapshot {id} but its snapshot.json is snapshot {}",
            read.manifest.id
        ));
    }
    if let Some(problem) = snapshot::id_problem(&read.manifest) {
        return Err(format!("snapshot.json: {problem}"));
    }
    let mut sha256 = BTreeMap::new();
    for name in FILES {
        let bytes = std::fs::read(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        sha256.insert(name.to_owned(), hex(&Sha256::digest(&bytes)));
    }
    Ok(sha256)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
