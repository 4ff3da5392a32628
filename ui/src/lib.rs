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
//! Reads only, unless `--snapshots DIR` is given: then snapshots can be cut into DIR and the
//! token rules of the snapshots in DIR edited (written back through the analyzer and validated).

#![warn(missing_docs)]

pub mod assets;
pub mod backend;
mod explore;
mod map;
mod snapshots;
pub mod sql;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};

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
}

/// Opens the backend `args` names (offline engine or collector address).
pub async fn open(args: &UiArgs) -> Result<Ui, Error> {
    let backend = match &args.collector {
        Some(address) => Backend::remote(address.clone(), args.token.clone()),
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
    Ok(Ui {
        backend,
        snapshots: args.snapshots.clone(),
    })
}

/// The page and its JSON API, to serve on its own or nest under a prefix of another server
/// (`Router::nest("/ui", tapedeck_ui::router(ui))`: every URL the page uses is relative).
pub fn router(ui: Arc<Ui>) -> Router {
    Router::new()
        .route("/", get(assets::index))
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
    axum::serve(listener, router(ui))
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
