//! `tapedeck ui`: a local web page, served by the `tapedeck` binary itself, to explore captured
//! traffic over the collector's read-only SQL, draw the service map of what a filter selects,
//! cut snapshots and edit their token rules.
//!
//! The page (HTML, CSS and plain JavaScript, no build step) is compiled into the binary
//! ([`assets`]); it talks to the JSON API of [`router`], documented in `docs/ui.md`. Every query
//! goes through the same engine as `tapedeck sql`: offline over a data directory
//! (`--data`), or through a running collector's Flight SQL port (`--collector`, with its token).
//! Filters are SQL predicates on `exchanges`, accepted only when they parse as one expression,
//! and the statement built around them passes the collector's read-only guard.
//!
//! Replay reports (`--report DIR`, repeatable) show the verdict per goal with its statistics, the
//! latency distributions of baseline and candidate, and the three-way view of differing
//! requests; with `--noise FILE`, a field can be marked as noise: an anchored rule is written
//! into FILE through the generator's noise module and the verdict decided again by the
//! generator on the run's differences.
//!
//! Reads only, unless `--snapshots DIR` or `--noise FILE` is given: then snapshots can be cut
//! into DIR and the token rules of the snapshots in DIR edited (written back through the
//! analyzer and validated), and noise rules written into FILE.

#![warn(missing_docs)]

pub mod assets;
pub mod backend;
mod explore;
mod map;
mod reports;
mod snapshots;
pub mod sql;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};

pub use backend::Backend;

/// `tapedeck ui`: where the traffic is read from, where the page listens, what it may write.
#[derive(Debug, Clone, clap::Args)]
pub struct UiArgs {
    /// Flight SQL address of a running collector (`http://host:port`); without it, --data and
    /// --store are read directly.
    #[arg(long, env = "TAPEDECK_COLLECTOR", value_name = "URL")]
    pub collector: Option<String>,

    /// Bearer token for --collector (the collector's --token).
    #[arg(
        long,
        env = "TAPEDECK_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        requires = "collector"
    )]
    pub token: Option<String>,

    /// Data directory of a collector: its write-ahead log (`wal/`) and, unless --store is
    /// given, its Parquet store (`store/`). Prefer --collector while a collector writes to it.
    #[arg(
        long,
        env = "TAPEDECK_DATA",
        value_name = "DIR",
        default_value = "./tapedeck-data",
        conflicts_with = "collector"
    )]
    pub data: PathBuf,

    /// Where the Parquet files are, when not in DIR/store: `file:///absolute/path` or
    /// `s3://bucket/prefix`.
    #[arg(
        long,
        env = "TAPEDECK_STORE",
        value_name = "URL",
        conflicts_with = "collector"
    )]
    pub store: Option<String>,

    /// Address the page is served on.
    #[arg(
        long,
        env = "TAPEDECK_UI_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8686"
    )]
    pub listen: SocketAddr,

    /// A directory of snapshots the page may write to: cut new snapshots into it, and edit or
    /// delete the token rules of the snapshots in it. Without it the page only reads.
    #[arg(long, env = "TAPEDECK_UI_SNAPSHOTS", value_name = "DIR")]
    pub snapshots: Option<PathBuf>,

    /// A replay report directory (`tapedeck replay --report DIR`) to show on the Replays page;
    /// repeat, or separate with commas, for several. With reports only (no --collector and no
    /// data directory), the page shows just them.
    #[arg(
        long = "report",
        env = "TAPEDECK_UI_REPORT",
        value_name = "DIR",
        value_delimiter = ','
    )]
    pub reports: Vec<PathBuf>,

    /// A noise file (the format of `tapedeck replay --noise`) the Replays page may write to:
    /// "mark as noise" adds an anchored rule to it, checked as --noise reads it, and shows the
    /// verdict decided again with it. Created on the first mark if missing. Without it the
    /// replay pages only read.
    #[arg(long, env = "TAPEDECK_UI_NOISE", value_name = "FILE")]
    pub noise: Option<PathBuf>,

    /// Limits for the queries the page runs here (with --collector, the collector's apply).
    #[command(flatten)]
    pub limits: tapedeck_collector::query::QueryArgs,
}

/// Why `tapedeck ui` could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory or store could not be opened.
    #[error("opening {path}: {source}", path = path.display())]
    Open {
        /// The data directory.
        path: PathBuf,
        /// What failed.
        source: tapedeck_collector::Error,
    },
    /// The data directory does not exist (a mistyped --data would otherwise create an empty
    /// store).
    #[error("the data directory {} does not exist (pass --data DIR or --collector URL)", .0.display())]
    NoData(PathBuf),
    /// The snapshot directory does not exist.
    #[error("--snapshots {}: not a directory", .0.display())]
    NoSnapshots(PathBuf),
    /// A report directory has no `report.json`.
    #[error("--report {}: no report.json there (a `tapedeck replay --report DIR` directory)", .0.display())]
    NoReport(PathBuf),
    /// The noise file's directory does not exist.
    #[error("--noise {}: its directory does not exist", .0.display())]
    NoNoiseDir(PathBuf),
    /// The listen address could not be bound, or serving failed.
    #[error("serving on {addr}: {source}")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
}

/// What every handler shares.
#[derive(Debug)]
pub struct Ui {
    /// Where queries run.
    pub backend: Backend,
    /// The snapshot directory the page may write to.
    pub snapshots: Option<PathBuf>,
    /// Replay report directories (`--report`), by index.
    pub reports: Vec<PathBuf>,
    /// The noise file the page may write to (`--noise`).
    pub noise: Option<PathBuf>,
    /// Held while the noise file is read, changed and written.
    pub noise_lock: tokio::sync::Mutex<()>,
}

impl Ui {
    /// A page on `backend` that only reads: no snapshot directory, no reports, no noise file.
    pub fn read_only(backend: Backend) -> Self {
        Self {
            backend,
            snapshots: None,
            reports: Vec::new(),
            noise: None,
            noise_lock: tokio::sync::Mutex::new(()),
        }
    }
}

/// Opens the backend `args` names (offline engine or collector address).
pub async fn open(args: &UiArgs) -> Result<Ui, Error> {
    let backend = match &args.collector {
        Some(address) => Backend::remote(address.clone(), args.token.clone()),
        // Reports alone: the default data directory is not required.
        None if !args.reports.is_empty() && args.store.is_none() && !args.data.is_dir() => {
            Backend::nothing()
        }
        None => {
            if args.store.is_none() && !args.data.is_dir() {
                return Err(Error::NoData(args.data.clone()));
            }
            let engine = tapedeck_collector::query::open_offline(
                &args.data,
                args.store.as_deref(),
                &args.limits,
            )
            .await
            .map_err(|source| Error::Open {
                path: args.data.clone(),
                source,
            })?;
            Backend::offline(engine, args.data.display().to_string())
        }
    };
    if let Some(dir) = &args.snapshots
        && !dir.is_dir()
    {
        return Err(Error::NoSnapshots(dir.clone()));
    }
    for dir in &args.reports {
        if !dir.join(tapedeck_generator::report::JSON_FILE).is_file() {
            return Err(Error::NoReport(dir.clone()));
        }
    }
    if let Some(path) = &args.noise {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if parent.is_some_and(|p| !p.is_dir()) {
            return Err(Error::NoNoiseDir(path.clone()));
        }
    }
    Ok(Ui {
        backend,
        snapshots: args.snapshots.clone(),
        reports: args.reports.clone(),
        noise: args.noise.clone(),
        noise_lock: tokio::sync::Mutex::new(()),
    })
}

/// The page and its JSON API, served at the root (`tapedeck ui`). Every URL the page uses is
/// relative, so it also works under a prefix: see [`mounted`].
pub fn router(ui: Arc<Ui>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .merge(resources(ui))
}

/// The prefix [`mounted`] serves the page under.
pub const MOUNT_PREFIX: &str = "/ui";

/// The page under [`MOUNT_PREFIX`]`/` of another server (`tapedeck collector --ui` mounts it on
/// the collector's HTTP port), `/ui` redirecting there. With a `token` (the collector's
/// `--token`), every request must carry it as the collector's Flight SQL port takes it:
/// `authorization: Bearer TOKEN`, or basic authentication with the token as the password, so a
/// browser asks for it (any user name); otherwise 401 with a basic challenge.
pub fn mounted(ui: Arc<Ui>, token: Option<String>) -> Router {
    let page = Router::new()
        .route(MOUNT_PREFIX, get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(assets::index))
        .nest(MOUNT_PREFIX, resources(ui));
    match token {
        None => page,
        Some(token) => page.layer(axum::middleware::from_fn(move |request, next| {
            let token = token.clone();
            require_token(token, request, next)
        })),
    }
}

/// Lets a request through when it carries the token as the Flight SQL port takes it
/// ([`tapedeck_collector::auth::credentials_match`], bearer or basic).
async fn require_token(
    token: String,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if presented.is_some_and(|h| {
        tapedeck_collector::auth::credentials_match(
            h.as_bytes(),
            token.as_bytes(),
            tapedeck_collector::auth::Schemes::BearerOrBasic,
        )
    }) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            axum::http::header::WWW_AUTHENTICATE,
            "Basic realm=\"tapedeck collector\", charset=\"UTF-8\"",
        )],
        "missing or wrong token: the collector's --token, as `authorization: Bearer TOKEN` or as the password of basic authentication\n",
    )
        .into_response()
}

/// Everything but the index: the page's script, style and JSON API.
fn resources(ui: Arc<Ui>) -> Router {
    Router::new()
        .route("/app.js", get(assets::script))
        .route("/app.css", get(assets::style))
        .route("/api/info", get(explore::info))
        .route("/api/columns", get(explore::columns))
        .route("/api/validate", get(explore::validate))
        .route("/api/exchanges", get(explore::list))
        .route("/api/exchanges/{id}", get(explore::detail))
        .route("/api/traces/{trace}", get(explore::trace))
        .route("/api/har", get(explore::har))
        .route("/api/services", get(explore::services))
        .route("/api/map", get(map::map))
        .route(
            "/api/snapshots",
            get(snapshots::list).post(snapshots::create),
        )
        .route("/api/snapshots/{name}", get(snapshots::show))
        .route("/api/snapshots/{name}/entries", get(snapshots::entry))
        .route(
            "/api/snapshots/{name}/rules/{index}",
            put(snapshots::edit_rule).delete(snapshots::delete_rule),
        )
        .route("/api/reports", get(reports::list))
        .route("/api/reports/{index}", get(reports::show))
        .route(
            "/api/reports/{index}/noise",
            post(reports::mark).delete(reports::unmark),
        )
        .with_state(ui)
}

/// Serves the page on `args.listen` until `shutdown` completes.
pub async fn run(
    args: UiArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let ui = Arc::new(open(&args).await?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| Error::Serve {
            addr: args.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(args.listen);
    eprintln!(
        "tapedeck ui: http://{addr}/ (reading {})",
        ui.backend.describe()
    );
    serve(listener, ui, shutdown).await
}

/// Serves the page on a bound listener (tests bind port 0) until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ui: Arc<Ui>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    axum::serve(
        tapedeck_collector::http::without_delay(listener),
        router(ui),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|source| Error::Serve { addr, source })
}

/// An API error: a status and a message for the person using the page, sent as
/// `{"error": "…"}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl From<backend::QueryFailed> for ApiError {
    fn from(error: backend::QueryFailed) -> Self {
        Self {
            status: if error.user_error {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::BAD_GATEWAY
            },
            message: error.message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, message = %self.message, "ui request failed");
        }
        json_response(self.status, &serde_json::json!({ "error": self.message }))
    }
}

/// A JSON body with its content type.
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// `200 OK` with a JSON body.
pub(crate) fn ok(value: serde_json::Value) -> Response {
    json_response(StatusCode::OK, &value)
}
