//! The shortcut: a Deployment annotated `replay.tapedeck.dev/snapshot` gets a Replay of its
//! current generation (`<deployment>-g<generation>`), so each rollout of a candidate is
//! replayed once.
//!
//! | annotation | Replay field |
//! | --- | --- |
//! | `replay.tapedeck.dev/snapshot` | `id/ID` (a snapshot the collector keeps), `configmap/NAME` (or just NAME), `pvc/CLAIM[/PATH]` |
//! | `replay.tapedeck.dev/hosts` | `mock.hosts`, comma-separated |
//! | `replay.tapedeck.dev/copies`, `…/rate`, `…/speed`, `…/duration` | `load` |
//! | `replay.tapedeck.dev/goals` | `goals`, `;`-separated |
//! | `replay.tapedeck.dev/baseline` | `baseline.deployment` |
//! | `replay.tapedeck.dev/service`, `…/port` | `target.service`, `target.port` |
//! | `replay.tapedeck.dev/timeout` | `timeout` |

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::crd::{Load, Mock, Replay, ReplaySpec, SnapshotSource, VolumeSource, Workload};
use crate::{Error, MANAGER};

/// The annotation that asks for a replay.
pub const SNAPSHOT: &str = "replay.tapedeck.dev/snapshot";
const PREFIX: &str = "replay.tapedeck.dev/";

fn number<T: std::str::FromStr>(
    annotations: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<T>, Error> {
    annotations
        .get(&format!("{PREFIX}{key}"))
        .map(|v| {
            v.trim().parse().map_err(|_| {
                Error::Invalid(format!("annotation {PREFIX}{key}: {v:?} is not a number"))
            })
        })
        .transpose()
}

/// The Replay a Deployment's annotations ask for, or None when it has no
/// `replay.tapedeck.dev/snapshot`.
pub fn replay_for(deployment: &Deployment) -> Option<Result<Replay, Error>> {
    let annotations = deployment.metadata.annotations.as_ref()?;
    let snapshot = annotations.get(SNAPSHOT)?;
    Some(build(deployment, annotations, snapshot))
}

fn build(
    deployment: &Deployment,
    annotations: &BTreeMap<String, String>,
    snapshot: &str,
) -> Result<Replay, Error> {
    let name = deployment.name_any();
    let text = |key: &str| annotations.get(&format!("{PREFIX}{key}")).cloned();
    let list = |key: &str, separator: char| -> Vec<String> {
        text(key)
            .map(|v| {
                v.split(separator)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let source = match snapshot.split_once('/') {
        Some(("pvc", rest)) => {
            let (claim, path) = match rest.split_once('/') {
                Some((claim, path)) => (claim.to_owned(), Some(path.to_owned())),
                None => (rest.to_owned(), None),
            };
            SnapshotSource {
                volume: Some(VolumeSource {
                    claim_name: claim,
                    path,
                }),
                ..Default::default()
            }
        }
        Some(("id", id)) => SnapshotSource {
            id: Some(id.to_owned()),
            ..Default::default()
        },
        Some(("configmap", name)) => SnapshotSource {
            config_map: Some(name.to_owned()),
            ..Default::default()
        },
        Some(_) => {
            return Err(Error::Invalid(format!(
                "annotation {SNAPSHOT}: {snapshot:?} is not id/ID, configmap/NAME or pvc/CLAIM[/PATH]"
            )));
        }
        None => SnapshotSource {
            config_map: Some(snapshot.to_owned()),
            ..Default::default()
        },
    };
    let spec = ReplaySpec {
        target: Workload {
            deployment: name.clone(),
            service: text("service"),
            port: number(annotations, "port")?,
        },
        baseline: text("baseline").map(|deployment| Workload {
            deployment,
            service: None,
            port: number(annotations, "port").ok().flatten(),
        }),
        snapshot: source,
        mock: Mock {
            hosts: list("hosts", ','),
        },
        chaos: list("chaos", ';'),
        load: Load {
            copies: number(annotations, "copies")?,
            speed: number(annotations, "speed")?,
            rate: number(annotations, "rate")?,
            duration: text("duration"),
            ..Default::default()
        },
        goals: list("goals", ';'),
        noise: Default::default(),
        report: None,
        timeout: text("timeout"),
        image: None,
    };
    let generation = deployment.metadata.generation.unwrap_or(0);
    let mut replay = Replay::new(&format!("{name}-g{generation}"), spec);
    replay.metadata.namespace = deployment.namespace();
    replay.metadata.labels = Some(BTreeMap::from([(
        "replay.tapedeck.dev/deployment".to_owned(),
        name,
    )]));
    Ok(replay)
}

/// Watches Deployments and applies the Replay their annotations ask for (server-side apply:
/// an existing Replay of the same generation is left as it is).
pub async fn watch(client: Client, namespace: Option<String>) {
    let deployments: Api<Deployment> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut stream = watcher(deployments, watcher::Config::default())
        .applied_objects()
        .boxed();
    while let Some(event) = stream.next().await {
        let deployment = match event {
            Ok(deployment) => deployment,
            Err(error) => {
                tracing::warn!(%error, "watching deployments");
                continue;
            }
        };
        let Some(replay) = replay_for(&deployment) else {
            continue;
        };
        match replay {
            Ok(replay) => {
                let ns = replay.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Replay> = Api::namespaced(client.clone(), &ns);
                let name = replay.name_any();
                if let Err(error) = api
                    .patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&replay))
                    .await
                {
                    tracing::warn!(%error, replay = %name, "applying an annotated replay");
                }
            }
            Err(error) => {
                tracing::warn!(%error, deployment = %deployment.name_any(), "annotations")
            }
        }
    }
}
