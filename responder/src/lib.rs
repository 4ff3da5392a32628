//! The responder: serves the recorded outbound calls of a snapshot as mocks, so that a service
//! under test talks to its dependencies while every one of them answers from the recording.
//!
//! - [`store`]: the snapshot loaded once (through `tapedeck_analyzer::snapshot::read`) into
//!   recordings indexed by host alias, method and endpoint, with each request field's matching
//!   mode (exact, wildcard, by token class, redacted) decided from the token rules.
//! - [`fields`]: a request flattened into the fields matching compares (path segments, query
//!   parameters, application headers and cookies, JSON leaves, form fields, gRPC messages).
//! - [`matcher`]: candidates, differing fields, the score, sessions and recorded-order
//!   sequences.
//! - [`consistency`]: the served response kept consistent with the replay (timestamps shifted,
//!   JWTs re-signed, values that flow from the request substituted).
//! - [`chaos`]: transaction-level faults from a versioned rules file, deterministic per seed.
//! - [`explain`]: one JSON line per decision, and the summary of such a log.
//! - [`server`]: HTTP/1.1, h2c and gRPC on one port, the admin port, clean shutdown.
//! - [`fixture`]: the exchanges of the test and benchmark snapshots.
//!
//! `tapedeck respond` (the CLI) only parses [`RespondArgs`] and calls [`run`].
#![warn(missing_docs)]

pub mod args;
pub mod chaos;
pub mod consistency;
pub mod explain;
pub mod fields;
pub mod fixture;
pub mod matcher;
pub mod metrics;
pub mod server;
pub mod store;

use std::path::PathBuf;

pub use args::{
    ExplainArgs, Fallback, LatencyMode, OnMiss, RespondArgs, RespondCommand, ServeArgs,
};
pub use server::{Running, serve};

/// What can go wrong in the responder.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The snapshot could not be read; every problem is listed with its file and line.
    #[error(transparent)]
    Snapshot(#[from] tapedeck_analyzer::snapshot::ReadError),
    /// The chaos rules file could not be read or is invalid.
    #[error("{path}: {message}", path = path.display())]
    Rules {
        /// The rules file (or `--chaos` for the flag).
        path: PathBuf,
        /// What is wrong, with the line when there is one.
        message: String,
    },
    /// A flag's value is invalid.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A listener could not be bound.
    #[error("binding {what} {addr}: {source}")]
    Bind {
        /// `--listen` or `--admin-listen`.
        what: &'static str,
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `tapedeck respond`: serves until `shutdown` resolves (SIGTERM in the CLI), or
/// summarises an explain log.
pub async fn run(
    args: RespondArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    match args.command {
        Some(RespondCommand::Explain(explain)) => {
            let summary = explain::summarise_file(&explain.file)?;
            print!("{summary}");
            Ok(())
        }
        None => {
            let listener = tokio::net::TcpListener::bind(&args.serve.listen)
                .await
                .map_err(|source| Error::Bind {
                    what: "--listen",
                    addr: args.serve.listen.clone(),
                    source,
                })?;
            let admin = match &args.serve.admin_listen {
                Some(addr) if !addr.is_empty() => Some(
                    tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|source| Error::Bind {
                            what: "--admin-listen",
                            addr: addr.clone(),
                            source,
                        })?,
                ),
                _ => None,
            };
            let running = serve(args.serve, listener, admin).await?;
            tracing::info!(addr = %running.addr(), "Responder serving.");
            shutdown.await;
            tracing::info!("Shutting down: finishing requests in flight.");
            running.stop().await;
            Ok(())
        }
    }
}
