//! `tapedeck operator`: the `Replay` resource (`tapedeck.dev/v1alpha1`) and the controller that
//! runs each replay through mesh routing.
//!
//! - [`crd`]: the resource (spec, status); `crdgen` prints its CustomResourceDefinition;
//! - [`objects`]: what a replay creates (responder Deployment and Service, `ServiceEntry`,
//!   `VirtualService`s matching only the target's `sourceLabels`, generator and merge Jobs);
//! - [`controller`]: the reconciler, whose state is the cluster's (restart-safe, idempotent);
//! - [`annotations`]: a Deployment annotated `replay.tapedeck.dev/snapshot` gets a Replay;
//! - [`metrics`]: `/metrics`, `/healthz`, `/readyz`.
//!
//! Users read `docs/mesh-replay.md` (the replay walkthrough).
#![warn(missing_docs)]
// `kube::Error` is large, and every API call returns it: boxing it in each error would only move
// the allocation to every failed call.
#![allow(clippy::result_large_err)]

pub mod annotations;
pub mod controller;
pub mod crd;
pub mod metrics;
pub mod objects;

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};

pub use crd::{Replay, ReplaySpec, ReplayStatus};
/// The names shared with the capture install (`tapedeck-mesh`).
pub use tapedeck_mesh::names;

/// The field manager and controller name.
pub const MANAGER: &str = "tapedeck-operator";
/// The finalizer the operator puts on every Replay.
pub const FINALIZER: &str = "replay.tapedeck.dev/cleanup";
/// The label naming the Replay an object belongs to.
pub const LABEL_REPLAY: &str = "replay.tapedeck.dev/name";

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Replay that cannot be run as written.
    #[error("invalid replay: {0}")]
    Invalid(String),
    /// An API call failed.
    #[error("{0}: {1}")]
    Kube(String, #[source] kube::Error),
    /// The finalizer step failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The collector's snapshot API could not be asked (retried).
    #[error("collector: {0}")]
    Collector(String),
    /// The operator could not start.
    #[error("starting the operator: {0}")]
    Start(String),
}

/// `tapedeck operator` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct OperatorArgs {
    /// The tapedeck image the responder and generator pods run (a Replay's `spec.image`
    /// overrides it).
    #[arg(
        long,
        env = "TAPEDECK_OPERATOR_IMAGE",
        default_value = "ghcr.io/tapedeck/tapedeck:latest"
    )]
    pub image: String,

    /// Watch Replays (and annotated Deployments) in this namespace only; default: every
    /// namespace.
    #[arg(long, env = "TAPEDECK_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, env = "TAPEDECK_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// The collector's HTTP port (its snapshot API), where the operator reads the outbound
    /// hosts of a snapshot by id. The replay's pods pull snapshots from the install's in-cluster
    /// address, this default.
    #[arg(
        long,
        env = "TAPEDECK_OPERATOR_COLLECTOR",
        default_value = "http://tapedeck-collector.tapedeck.svc.cluster.local:9464"
    )]
    pub collector: String,

    /// Do not create Replays from Deployment annotations (`replay.tapedeck.dev/snapshot`).
    #[arg(long, env = "TAPEDECK_OPERATOR_NO_ANNOTATIONS")]
    pub no_annotations: bool,
}

/// Runs the controller (and the annotation watcher) until `shutdown` resolves.
pub async fn run(
    args: OperatorArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let client = Client::try_default()
        .await
        .map_err(|e| Error::Start(format!("no Kubernetes client configuration: {e}")))?;
    let metrics = Arc::new(metrics::Metrics::default());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Error::Start(format!("listening on {}: {e}", args.listen)))?;
    tokio::spawn(metrics::serve(listener, metrics.clone()));
    let (replays, jobs): (Api<Replay>, Api<Job>) = match &args.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    if !args.no_annotations {
        tokio::spawn(annotations::watch(client.clone(), args.namespace.clone()));
    }
    let context = Arc::new(controller::Context::new(
        client,
        args.image,
        metrics.clone(),
        args.collector,
    ));
    metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(listen = %args.listen, namespace = ?args.namespace, "operator running");
    let managed = format!("app.kubernetes.io/managed-by={MANAGER}");
    Controller::new(replays, watcher::Config::default())
        .owns(jobs, watcher::Config::default().labels(&managed))
        .graceful_shutdown_on(shutdown)
        .run(controller::reconcile, controller::error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(replay = %object.name, "reconciled"),
                Err(error) => tracing::warn!(%error, "reconcile"),
            }
        })
        .await;
    Ok(())
}
