//! The reconciler. Its state is the cluster's: the Replay's `status.phase` and the objects it
//! owns, never memory, so a restarted operator carries on where the last one stopped, and every
//! step is idempotent (objects are server-side applied; waiting steps only read).
//!
//! Pending → (responder, routing, Secret, ConfigMap, report claim applied) Preparing → (the
//! responder, the target and the baseline Ready; the generator Job applied) Running → (the Job
//! finished; the merge Job applied) Merging → (the merge pod's summary read) Passed / Failed /
//! Inconclusive, or Error (invalid spec, missing target, timeout). Every terminal phase records
//! the verdict and an Event, then deletes what the replay created (the report claim stays until
//! the Replay is deleted, by its owner reference); a deleted Replay is cleaned up through the
//! finalizer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::crd::{Condition, Phase, Replay, ReplayStatus, VerdictSummary};
use crate::metrics::Metrics;
use crate::objects::{self, Host, Kind, Names};
use crate::{Error, FINALIZER, MANAGER, names};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tapedeck_mesh::snapshots::{Client as SnapshotClient, SnapshotError};

/// What the reconciler works with.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The tapedeck image of the responder and the generator, unless the spec names one.
    pub image: String,
    /// The clock (tests fix it).
    pub now: Box<dyn Fn() -> Timestamp + Send + Sync>,
    /// Events.
    pub recorder: Recorder,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The collector's HTTP URL (its snapshot API, [`tapedeck_mesh::snapshots`]).
    pub collector: String,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("image", &self.image)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context on `client` with the wall clock, reading snapshots by id from the collector at
    /// `collector`.
    pub fn new(client: Client, image: String, metrics: Arc<Metrics>, collector: String) -> Context {
        let reporter = Reporter {
            controller: MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            image,
            now: Box::new(Timestamp::now),
            metrics,
            collector,
        }
    }
}

/// How long to wait before looking again while waiting for pods.
pub const POLL: Duration = Duration::from_secs(5);
/// The timeout of a replay whose spec gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn api_resource(kind: Kind) -> ApiResource {
    let (group, version) = kind
        .api_version
        .rsplit_once('/')
        .unwrap_or(("", kind.api_version));
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind.kind),
        kind.plural,
    )
}

fn dynamic(ctx: &Context, namespace: &str, kind: Kind) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client.clone(), namespace, &api_resource(kind))
}

async fn apply(ctx: &Context, namespace: &str, kind: Kind, object: &Value) -> Result<(), Error> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    dynamic(ctx, namespace, kind)
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .map_err(|e| Error::Kube(format!("applying {} {namespace}/{name}", kind.kind), e))?;
    Ok(())
}

async fn get(
    ctx: &Context,
    namespace: &str,
    kind: Kind,
    name: &str,
) -> Result<Option<DynamicObject>, Error> {
    dynamic(ctx, namespace, kind)
        .get_opt(name)
        .await
        .map_err(|e| Error::Kube(format!("reading {} {namespace}/{name}", kind.kind), e))
}

async fn delete(ctx: &Context, namespace: &str, kind: Kind, name: &str) -> Result<(), Error> {
    match dynamic(ctx, namespace, kind)
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(e) => Err(Error::Kube(
            format!("deleting {} {namespace}/{name}", kind.kind),
            e,
        )),
    }
}

/// Reconciles one Replay (the controller's entry point).
pub async fn reconcile(replay: Arc<Replay>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let namespace = replay
        .namespace()
        .ok_or_else(|| Error::Invalid("the replay has no namespace".to_owned()))?;
    let api: Api<Replay> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, replay, |event| async {
        match event {
            Finalized::Apply(replay) => step(&replay, &ctx).await,
            Finalized::Cleanup(replay) => {
                let names = Names::of(&replay)?;
                cleanup(&replay, &names, &ctx).await?;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// What the controller does with an error: count it and look again later.
pub fn error_policy(_replay: Arc<Replay>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.errors.inc();
    tracing::warn!(%error, "reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

/// Parses `500ms`, `30s`, `2m`, `1h` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || Error::Invalid(format!("timeout {text:?}: expected 500ms, 30s, 2m or 1h"));
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

fn condition(now: Timestamp, type_: &str, ok: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: now.to_string(),
    }
}

fn set_condition(status: &mut ReplayStatus, condition: Condition) {
    match status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == condition.type_)
    {
        Some(existing) if existing.status == condition.status => {
            existing.reason = condition.reason;
            existing.message = condition.message;
        }
        Some(existing) => *existing = condition,
        None => status.conditions.push(condition),
    }
}

async fn patch_status(
    ctx: &Context,
    replay: &Replay,
    names: &Names,
    status: &ReplayStatus,
) -> Result<(), Error> {
    let api: Api<Replay> = Api::namespaced(ctx.client.clone(), &names.namespace);
    api.patch_status(
        &names.replay,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .map_err(|e| {
        Error::Kube(
            format!(
                "writing the status of replay {}/{}",
                names.namespace, names.replay
            ),
            e,
        )
    })?;
    tracing::info!(replay = %replay.name_any(), phase = ?status.phase, "status");
    Ok(())
}

async fn step(replay: &Replay, ctx: &Context) -> Result<Action, Error> {
    let names = Names::of(replay)?;
    let status = replay.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(Phase::Pending);
    let now = (ctx.now)();
    if phase.is_terminal() {
        if !cleaned_up(&status) {
            cleanup(replay, &names, ctx).await?;
            let mut status = status;
            set_condition(
                &mut status,
                condition(
                    now,
                    "CleanedUp",
                    true,
                    "Deleted",
                    "everything the replay created is deleted",
                ),
            );
            patch_status(ctx, replay, &names, &status).await?;
        }
        return Ok(Action::await_change());
    }
    let timeout = match replay
        .spec
        .timeout
        .as_deref()
        .map(parse_duration)
        .transpose()
    {
        Ok(timeout) => timeout.unwrap_or(DEFAULT_TIMEOUT),
        Err(error) => {
            return finish(
                replay,
                &names,
                ctx,
                status,
                Phase::Error,
                None,
                "InvalidSpec",
                &error.to_string(),
            )
            .await;
        }
    };
    if let Some(start) = status
        .start_time
        .as_deref()
        .and_then(|s| s.parse::<Timestamp>().ok())
    {
        let elapsed = now.duration_since(start);
        if elapsed.as_secs() >= 0 && elapsed.unsigned_abs() >= timeout {
            let message = format!(
                "not finished within {}s (phase {phase:?})",
                timeout.as_secs()
            );
            return finish(
                replay,
                &names,
                ctx,
                status,
                Phase::Error,
                None,
                "Timeout",
                &message,
            )
            .await;
        }
    }
    match phase {
        Phase::Pending if needs_cut(replay, &status) => {
            start_cut(replay, &names, ctx, status, timeout).await
        }
        Phase::Pending => prepare(replay, &names, ctx, status, timeout).await,
        Phase::Cutting => watch_cut(replay, &names, ctx, status, timeout).await,
        Phase::Preparing => wait_ready(replay, &names, ctx, status, timeout).await,
        Phase::Running => watch_run(replay, &names, ctx, status, timeout).await,
        _ => watch_merge(replay, &names, ctx, status).await,
    }
}

fn cleaned_up(status: &ReplayStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == "CleanedUp" && c.status == "True")
}

fn image<'a>(replay: &'a Replay, ctx: &'a Context) -> &'a str {
    replay.spec.image.as_deref().unwrap_or(&ctx.image)
}

/// The mocked hosts of the spec, validated (`spec.mock.hosts` must not be empty here).
pub fn hosts(replay: &Replay, namespace: &str) -> Result<Vec<Host>, Error> {
    if replay.spec.mock.hosts.is_empty() {
        return Err(Error::Invalid(
            "spec.mock.hosts is empty: name the outbound hosts to mock (HOST[:PORT])".to_owned(),
        ));
    }
    replay
        .spec
        .mock
        .hosts
        .iter()
        .map(|h| objects::parse_host(h, namespace))
        .collect()
}

/// The outbound hosts (`authority`, in `outbound.jsonl` order, each once) of a snapshot held in
/// a ConfigMap's `data` (`snapshot.json`, `inbound.jsonl`, `outbound.jsonl`). The files are
/// written to a temporary directory and read with `tapedeck_analyzer::snapshot::read`, so the
/// snapshot is validated as the responder validates it.
pub fn snapshot_hosts(data: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    use tapedeck_analyzer::snapshot;
    for key in [
        snapshot::MANIFEST_FILE,
        snapshot::INBOUND_FILE,
        snapshot::OUTBOUND_FILE,
    ] {
        if !data.contains_key(key) {
            return Err(format!(
                "it has no key {key} (a snapshot ConfigMap holds snapshot.json, inbound.jsonl and outbound.jsonl)"
            ));
        }
    }
    let dir = tempfile::tempdir().map_err(|e| format!("making a temporary directory: {e}"))?;
    for (key, text) in data {
        // ConfigMap keys are file names ([-._a-zA-Z0-9]+); anything else is not a snapshot file.
        if key.contains(['/', '\\']) || key == "." || key == ".." {
            continue;
        }
        std::fs::write(dir.path().join(key), text)
            .map_err(|e| format!("writing {key} to {}: {e}", dir.path().display()))?;
    }
    let read = snapshot::read(dir.path()).map_err(|e| e.to_string())?;
    let mut hosts: Vec<String> = Vec::new();
    for entry in &read.outbound {
        if !entry.authority.is_empty() && !hosts.contains(&entry.authority) {
            hosts.push(entry.authority.clone());
        }
    }
    if hosts.is_empty() && !read.outbound.is_empty() {
        return Err(
            "its outbound exchanges carry no authority: list spec.mock.hosts (HOST[:PORT])"
                .to_owned(),
        );
    }
    Ok(hosts)
}

/// The hosts to mock: `spec.mock.hosts`, or, when it is empty, every outbound host of the
/// snapshot, which the operator can read for a ConfigMap snapshot only. `Ok(Err((reason,
/// message)))` is a replay that cannot run.
async fn mocked_hosts(
    replay: &Replay,
    names: &Names,
    ctx: &Context,
) -> Result<Result<Vec<Host>, (&'static str, String)>, Error> {
    let invalid = |e: Error| ("InvalidSpec", e.to_string());
    if !replay.spec.mock.hosts.is_empty() {
        return Ok(hosts(replay, &names.namespace).map_err(invalid));
    }
    if let Some(id) = objects::snapshot_id(replay) {
        let listed = match collector_hosts(ctx, id).await? {
            Ok(listed) => listed,
            Err(failure) => return Ok(Err(failure)),
        };
        tracing::info!(replay = %names.replay, snapshot = %id, hosts = ?listed, "mocking every outbound host of the snapshot");
        return Ok(listed
            .iter()
            .map(|h| objects::parse_host(h, &names.namespace))
            .collect::<Result<Vec<Host>, Error>>()
            .map_err(invalid));
    }
    let Some(config_map) = &replay.spec.snapshot.config_map else {
        let source = if replay.spec.snapshot.volume.is_some() {
            "a volume snapshot (the operator does not mount it)"
        } else {
            "a query snapshot (cut only when the replay's pods start)"
        };
        return Ok(Err((
            "InvalidSpec",
            format!(
                "spec.mock.hosts is empty and the operator cannot read the outbound hosts of {source}: \
                 list the hosts to mock in spec.mock.hosts (HOST[:PORT]), e.g. from \
                 `tapedeck snapshot inspect`"
            ),
        )));
    };
    let Some(found) = get(ctx, &names.namespace, objects::CONFIG_MAP, config_map).await? else {
        return Ok(Err((
            "SnapshotNotFound",
            format!(
                "spec.mock.hosts is empty and the snapshot ConfigMap {}/{config_map} is not found",
                names.namespace
            ),
        )));
    };
    let data: BTreeMap<String, String> =
        serde_json::from_value(found.data["data"].clone()).unwrap_or_default();
    let listed = match snapshot_hosts(&data) {
        Ok(listed) => listed,
        Err(why) => {
            return Ok(Err((
                "SnapshotUnreadable",
                format!(
                    "spec.mock.hosts is empty and the outbound hosts of snapshot ConfigMap {}/{config_map} could not be read: {why}",
                    names.namespace
                ),
            )));
        }
    };
    tracing::info!(replay = %names.replay, hosts = ?listed, "mocking every outbound host of the snapshot");
    Ok(listed
        .iter()
        .map(|h| objects::parse_host(h, &names.namespace))
        .collect::<Result<Vec<Host>, Error>>()
        .map_err(invalid))
}

/// The install's redaction key and collector token, copied next to the replay's pods.
async fn apply_secrets(replay: &Replay, names: &Names, ctx: &Context) -> Result<(), Error> {
    let mut data = BTreeMap::new();
    for (secret, key) in [
        (names::REDACTION_SECRET, names::REDACTION_SECRET_KEY),
        (
            names::COLLECTOR_TOKEN_SECRET,
            names::COLLECTOR_TOKEN_SECRET_KEY,
        ),
    ] {
        if let Some(found) = get(ctx, names::NAMESPACE, objects::SECRET, secret).await?
            && let Some(value) = found.data["data"][key].as_str()
        {
            data.insert(key.to_owned(), value.to_owned());
        }
    }
    apply(
        ctx,
        &names.namespace,
        objects::SECRET,
        &objects::secrets(replay, names, &data),
    )
    .await
}

/// A client of the collector's snapshot API, with the install's token (the Secret
/// `tapedeck-collector-token` of the `tapedeck` namespace, when there is one).
async fn collector(ctx: &Context) -> Result<SnapshotClient, Error> {
    let token = match get(
        ctx,
        names::NAMESPACE,
        objects::SECRET,
        names::COLLECTOR_TOKEN_SECRET,
    )
    .await?
    {
        Some(found) => found.data["data"][names::COLLECTOR_TOKEN_SECRET_KEY]
            .as_str()
            .and_then(|b64| BASE64.decode(b64).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .map(|t| t.trim().to_owned()),
        None => None,
    };
    SnapshotClient::new(&ctx.collector, token).map_err(|e| Error::Collector(e.to_string()))
}

/// The outbound hosts of snapshot `id` (`snapshot.json`'s `hosts`, in `outbound.jsonl` order),
/// read from the collector. `Ok(Err(..))`: the snapshot is not there (a replay that cannot run);
/// `Err`: the collector could not be asked (retried).
async fn collector_hosts(
    ctx: &Context,
    id: &str,
) -> Result<Result<Vec<String>, (&'static str, String)>, Error> {
    let client = collector(ctx).await?;
    match client.manifest(id).await {
        Ok(manifest) => Ok(Ok(manifest.hosts.into_iter().map(|h| h.host).collect())),
        Err(SnapshotError::Status { status: 404, .. }) => Ok(Err((
            "SnapshotNotFound",
            format!(
                "spec.mock.hosts is empty and the collector at {} has no snapshot {id} (`tapedeck snapshot list` shows what it has)",
                ctx.collector
            ),
        ))),
        Err(error @ SnapshotError::Pulled { .. }) => Ok(Err((
            "SnapshotUnreadable",
            format!("the outbound hosts of snapshot {id} could not be read: {error}"),
        ))),
        Err(error) => Err(Error::Collector(format!(
            "reading snapshot {id}'s hosts: {error}"
        ))),
    }
}

/// Whether the snapshot must be pushed to the collector before the replay is prepared.
fn needs_cut(replay: &Replay, status: &ReplayStatus) -> bool {
    let source = &replay.spec.snapshot;
    status.snapshot_id.is_none()
        && (source.volume.is_some() || source.query.is_some())
        && validate(replay).is_ok()
}

/// Pending → Cutting: the Job that pushes a `volume` or `query` snapshot to the collector.
async fn start_cut(
    replay: &Replay,
    names: &Names,
    ctx: &Context,
    mut status: ReplayStatus,
    timeout: Duration,
) -> Result<Action, Error> {
    let now = (ctx.now)();
    apply_secrets(replay, names, ctx).await?;
    if status.start_time.is_none() {
        status.start_time = Some(now.to_string());
    }
    let Some(job) = objects::cut_job(
        replay,
        names,
        image(replay, ctx),
        deadline(&status, now, timeout),
    ) else {
        return prepare(replay, names, ctx, status, timeout).await;
    };
    apply(ctx, &names.namespace, objects::JOB, &job).await?;
    status.phase = Some(Phase::Cutting);
    status.message = Some(format!(
        "pushing the snapshot to the collector (Job {})",
        names.cut()
    ));
    patch_status(ctx, replay, names, &status).await?;
    Ok(Action::requeue(POLL))
}

/// Cutting: waits for the cut Job; its `push` container's termination message is the id.
async fn watch_cut(
    replay: &Replay,
    names: &Names,
    ctx: &Context,
    mut status: ReplayStatus,
    timeout: Duration,
) -> Result<Action, Error> {
    let now = (ctx.now)();
    if status.snapshot_id.is_some() {
        return prepare(replay, names, ctx, status, timeout).await;
    }
    let Some(job) = get(ctx, &names.namespace, objects::JOB, &names.cut()).await? else {
        // Deleted behind our back (or never written before a restart): apply it again.
        if let Some(job) = objects::cut_job(
            replay,
            names,
            image(replay, ctx),
            deadline(&status, now, timeout),
        ) {
            apply(ctx, &names.namespace, objects::JOB, &job).await?;
        }
        return Ok(Action::requeue(POLL));
    };
    let Some(complete) = job_finished(&job) else {
        return Ok(Action::requeue(POLL));
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let selector = format!("batch.kubernetes.io/job-name={}", names.cut());
    let pods = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::Kube(format!("listing the pods of job {}", names.cut()), e))?;
    let message = terminated_message(&pods.items);
    let id = message.trim();
    if !complete || id.is_empty() || id.contains(char::is_whitespace) {
        let why = if message.trim().is_empty() {
            "it left no message".to_owned()
        } else {
            message.trim().to_owned()
        };
        return finish(
            replay,
            names,
            ctx,
            status,
            Phase::Error,
            None,
            "SnapshotCutFailed",
            &format!(
                "the snapshot could not be pushed to the collector (kubectl logs job/{}): {why}",
                names.cut()
            ),
        )
        .await;
    }
    status.snapshot_id = Some(id.to_owned());
    status.message = Some(format!("snapshot {id} is in the collector"));
    set_condition(
        &mut status,
        condition(
            now,
            "SnapshotPushed",
            true,
            "Pushed",
            &format!("snapshot {id}"),
        ),
    );
    patch_status(ctx, replay, names, &status).await?;
    Ok(Action::requeue(Duration::ZERO))
}

/// The termination messages of a Job's pods' containers (init containers first), joined.
fn terminated_message(pods: &[Pod]) -> String {
    let mut out = Vec::new();
    for pod in pods {
        let Some(status) = &pod.status else { continue };
        for statuses in [&status.init_container_statuses, &status.container_statuses] {
            for s in statuses.iter().flatten() {
                if let Some(t) = s.state.as_ref().and_then(|st| st.terminated.as_ref())
                    && let Some(message) = &t.message
                    && !message.trim().is_empty()
                {
                    out.push(message.trim().to_owned());
                }
            }
        }
    }
    out.join("\n")
}

fn validate(replay: &Replay) -> Result<(), Error> {
    let source = &replay.spec.snapshot;
    let given = [
        source.id.is_some(),
        source.config_map.is_some(),
        source.volume.is_some(),
        source.query.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(Error::Invalid(format!(
            "spec.snapshot: give exactly one of id, configMap, volume, query ({given} given)"
        )));
    }
    let shards = objects::shards(replay);
    if shards > 1
        && replay.spec.load.copies.unwrap_or(1) < shards
        && replay.spec.load.rate.is_none()
    {
        return Err(Error::Invalid(format!(
            "spec.load: {shards} generator pods need at least {shards} copies (recorded pace shards copies)"
        )));
    }
    Ok(())
}

/// The pod selector of a Deployment (its pods' `sourceLabels`), or None when it does not exist.
async fn selector(
    ctx: &Context,
    namespace: &str,
    deployment: &str,
) -> Result<Option<BTreeMap<String, String>>, Error> {
    Ok(get(ctx, namespace, objects::DEPLOYMENT, deployment)
        .await?
        .map(|d| {
            serde_json::from_value(d.data["spec"]["selector"]["matchLabels"].clone())
                .unwrap_or_default()
        }))
}

async fn prepare(
    replay: &Replay,
    names: &Names,
    ctx: &Context,
    mut status: ReplayStatus,
    _timeout: Duration,
) -> Result<Action, Error> {
    let now = (ctx.now)();
    let checked = match validate(replay) {
        Ok(()) => mocked_hosts(replay, names, ctx).await?,
        Err(error) => Err(("InvalidSpec", error.to_string())),
    };
    let hosts = match checked {
        Ok(hosts) => hosts,
        Err((reason, message)) => {
            return finish(
                replay,
                names,
                ctx,
                status,
                Phase::Error,
                None,
                reason,
                &message,
            )
            .await;
        }
    };
    let mut sources = Vec::new();
    let mut workloads = vec![&replay.spec.target];
    workloads.extend(replay.spec.baseline.as_ref());
    for workload in workloads {
        match selector(ctx, &names.namespace, &workload.deployment).await? {
            Some(labels) if !labels.is_empty() => sources.push(labels),
            _ => {
                let message = format!(
                    "Deployment {}/{} not found (or it has no matchLabels)",
                    names.namespace, workload.deployment
                );
                return finish(
                    replay,
                    names,
                    ctx,
                    status,
                    Phase::Error,
                    None,
                    "TargetNotFound",
                    &message,
                )
                .await;
            }
        }
    }
    apply_secrets(replay, names, ctx).await?;
    let shards = objects::shards(replay);
    let image = image(replay, ctx);
    if !replay.spec.noise.is_empty() {
        apply(
            ctx,
            &names.namespace,
            objects::CONFIG_MAP,
            &objects::config(replay, names),
        )
        .await?;
    }
    if replay.spec.report.is_none() {
        apply(
            ctx,
            &names.namespace,
            objects::PVC,
            &objects::report_claim(replay, names, shards),
        )
        .await?;
    }
    apply(
        ctx,
        &names.namespace,
        objects::DEPLOYMENT,
        &objects::responder_deployment(replay, names, image),
    )
    .await?;
    apply(
        ctx,
        &names.namespace,
        objects::SERVICE,
        &objects::responder_service(replay, names),
    )
    .await?;
    if let Some(entry) = objects::service_entry(replay, names, &hosts) {
        apply(ctx, &names.namespace, objects::SERVICE_ENTRY, &entry).await?;
    }
    for (index, host) in hosts.iter().enumerate() {
        let route = objects::virtual_service(replay, names, index, host, &sources);
        apply(ctx, &names.namespace, objects::VIRTUAL_SERVICE, &route).await?;
    }
    let (claim, path) = objects::report_location(replay, names);
    status.phase = Some(Phase::Preparing);
    if status.start_time.is_none() {
        status.start_time = Some(now.to_string());
    }
    status.snapshot_id = objects::snapshot_id(replay).map(str::to_owned);
    status.shards = Some(shards);
    status.mocked_hosts = hosts
        .iter()
        .map(|h| format!("{}:{}", h.fqdn, h.port))
        .collect();
    status.report = Some(format!("pvc://{claim}/{path}"));
    status.message = Some("waiting for the responder, the target and the baseline".to_owned());
    set_condition(
        &mut status,
        condition(
            now,
            "Prepared",
            true,
            "Applied",
            "responder, routing and report volume applied",
        ),
    );
    patch_status(ctx, replay, names, &status).await?;
    Ok(Action::requeue(POLL))
}

/// Whether a Deployment has every replica of its current generation Ready.
fn deployment_ready(deployment: &DynamicObject) -> bool {
    let data = &deployment.data;
    let wanted = data["spec"]["replicas"].as_i64().unwrap_or(1);
    let status = &data["status"];
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    let generation = deployment.metadata.generation.unwrap_or(0);
    observed >= generation
        && status["updatedReplicas"].as_i64().unwrap_or(0) >= wanted
        && status["readyReplicas"].as_i64().unwrap_or(0) >= wanted
}

fn deadline(status: &ReplayStatus, now: Timestamp, timeout: Duration) -> u64 {
    let elapsed = status
        .start_time
        .as_deref()
        .and_then(|s| s.parse::<Timestamp>().ok())
        .map(|start| now.duration_since(start).as_secs().max(0) as u64)
        .unwrap_or(0);
    timeout.as_secs().saturating_sub(elapsed).max(1)
}

async fn wait_ready(
    replay: &Replay,
    names: &Names,
    ctx: &Context,
    mut status: ReplayStatus,
    timeout: Duration,
) -> Result<Action, Error> {
    let mut waiting = Vec::new();
    let mut deployments = vec![names.responder(), replay.spec.target.deployment.clone()];
    deployments.extend(replay.spec.baseline.as_ref().map(|b| b.deployment.clone()));
    for name in deployments {
        match get(ctx, &names.namespace, objects::DEPLOYMENT, &name).await? {
            Some(deployment) if deployment_ready(&deployment) => {}
            _ => waiting.push(name),
        }
    }
    if !waiting.is_empty() {
        tracing::debug!(replay = %names.replay, ?waiting, "not ready yet");
        return Ok(Action::requeue(POLL));
    }
    let now = (ctx.now)();
    let shards = status.shards.unwrap_or_else(|| objects::shards(replay));
    let job = objects::run_job(
        replay,
        names,
        image(replay, ctx),
        shards,
        deadline(&status, now, timeout),
    );
    apply(ctx, &names.namespace, objects::JOB, &job).await?;
    status.phase = Some(Phase::Running);
    status.message = Some(format!("replaying with {shards} generator pod(s)"));
    set_condition(
        &mut status,
        condition(
            now,
            "Ready",
            true,
            "AllReady",
            "responder, target and baseline are Ready",
        ),
    );
    patch_status(ctx, replay, names, &status).await?;
    Ok(Action::requeue(POLL))
}

/// Whether a Job has finished: `Some(true)` complete, `Some(false)` failed, None running.
fn job_finished(job: &DynamicObject) -> Option<bool> {
    let conditions = job.data["status"]["conditions"].as_array()?;
    conditions
        .iter()
        .filter(|c| c["status"] == "True")
        .find_map(|c| match c["type"].as_str() {
            Some("Complete") => Some(true),
            Some("Failed") => Some(false),
            _ => None,
        })
}

async fn watch_run(
    replay: &Replay,
    names: &Names,
    ctx: &Context,
    mut status: ReplayStatus,
    timeout: Duration,
) -> Result<Action, Error> {
    let now = (ctx.now)();
    let shards = status.shards.unwrap_or_else(|| objects::shards(replay));
    let image = image(replay, ctx);
    let Some(job) = get(ctx, &names.namespace, objects::JOB, &names.run()).await? else {
        // Deleted behind our back (or never written before a restart): apply it again.
        let job = objects::run_job(
            replay,
            names,
            image,
            shards,
            deadline(&status, now, timeout),
        );
        apply(ctx, &names.namespace, objects::JOB, &job).await?;
        return Ok(Action::requeue(POLL));
    };
    let Some(complete) = job_finished(&job) else {
        return Ok(Action::requeue(POLL));
    };
    let succeeded = job.data["status"]["succeeded"].as_u64().unwrap_or(0);
    let merge = objects::merge_job(
        replay,
        names,
        image,
        shards,
        deadline(&status, now, timeout),
    );
    apply(ctx, &names.namespace, objects::JOB, &merge).await?;
    status.phase = Some(Phase::Merging);
    let message = format!("{succeeded} of {shards} shard(s) passed; merging the reports");
    status.message = Some(message.clone());
    set_condition(
        &mut status,
        condition(
            now,
            "Ran",
            true,
            if complete { "Complete" } else { "ShardsFailed" },
            &message,
        ),
    );
    patch_status(ctx, replay, names, &status).await?;
    Ok(Action::requeue(POLL))
}

/// The merge container's exit code and termination message, once it has terminated.
fn terminated(pods: &[Pod]) -> Option<(i32, String)> {
    pods.iter().find_map(|pod| {
        let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
        statuses.iter().find_map(|s| {
            let t = s.state.as_ref()?.terminated.as_ref()?;
            Some((t.exit_code, t.message.clone().unwrap_or_default()))
        })
    })
}

/// The status verdict of a merged summary (`tapedeck replay merge --summary`).
pub fn verdict_of(message: &str) -> Option<VerdictSummary> {
    let summary: Value = serde_json::from_str(message).ok()?;
    let top_diffs = summary["top_diffs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{} {}: {}",
                d["endpoint"].as_str().unwrap_or_default(),
                d["field"].as_str().unwrap_or_default(),
                d["count"].as_u64().unwrap_or(0)
            )
        })
        .collect();
    Some(VerdictSummary {
        result: summary["verdict"].as_str()?.to_owned(),
        requests: summary["requests"].as_u64().unwrap_or(0),
        p50_ms: summary["latency"]["p50"].as_f64(),
        p99_ms: summary["latency"]["p99"].as_f64(),
        rps: summary["rps"].as_f64(),
        error_rate: summary["error_rate"].as_f64(),
        top_diffs,
    })
}

async fn watch_merge(
    replay: &Replay,
    names: &Names,
    ctx: &Context,
    status: ReplayStatus,
) -> Result<Action, Error> {
    let Some(job) = get(ctx, &names.namespace, objects::JOB, &names.merge()).await? else {
        let message = "the merge Job is gone before it finished";
        return finish(
            replay,
            names,
            ctx,
            status,
            Phase::Error,
            None,
            "MergeLost",
            message,
        )
        .await;
    };
    if job_finished(&job).is_none() {
        return Ok(Action::requeue(POLL));
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let selector = format!("batch.kubernetes.io/job-name={}", names.merge());
    let pods = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::Kube(format!("listing the pods of job {}", names.merge()), e))?;
    let (phase, verdict, reason, message) = match terminated(&pods.items) {
        Some((code, message)) => {
            let verdict = verdict_of(&message);
            let phase = match code {
                0 => Phase::Passed,
                1 => Phase::Failed,
                3 => Phase::Inconclusive,
                _ => Phase::Error,
            };
            let note = match &verdict {
                Some(v) => format!(
                    "verdict {}: {} requests, p50 {:.2} ms, p99 {:.2} ms, {:.1} rps, {:.2} % errors",
                    v.result,
                    v.requests,
                    v.p50_ms.unwrap_or(0.0),
                    v.p99_ms.unwrap_or(0.0),
                    v.rps.unwrap_or(0.0),
                    v.error_rate.unwrap_or(0.0) * 100.0
                ),
                None => format!("the merge exited {code}: {}", message.trim()),
            };
            (phase, verdict, format!("{phase:?}"), note)
        }
        None => (
            Phase::Error,
            None,
            "MergeFailed".to_owned(),
            "the merge pod left no exit code".to_owned(),
        ),
    };
    finish(
        replay, names, ctx, status, phase, verdict, &reason, &message,
    )
    .await
}

/// Records a terminal phase (status and Event), then deletes what the replay created.
#[allow(clippy::too_many_arguments)]
async fn finish(
    replay: &Replay,
    names: &Names,
    ctx: &Context,
    mut status: ReplayStatus,
    phase: Phase,
    verdict: Option<VerdictSummary>,
    reason: &str,
    message: &str,
) -> Result<Action, Error> {
    let now = (ctx.now)();
    status.phase = Some(phase);
    status.completion_time = Some(now.to_string());
    status.verdict = verdict.or_else(|| {
        (phase == Phase::Error).then(|| VerdictSummary {
            result: "error".to_owned(),
            ..VerdictSummary::default()
        })
    });
    status.message = Some(message.to_owned());
    set_condition(
        &mut status,
        condition(now, "Finished", true, reason, message),
    );
    set_condition(
        &mut status,
        condition(
            now,
            "CleanedUp",
            false,
            "Pending",
            "deleting what the replay created",
        ),
    );
    patch_status(ctx, replay, names, &status).await?;
    ctx.metrics.finished(phase);
    let event = Event {
        type_: if matches!(phase, Phase::Passed) {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: reason.to_owned(),
        note: Some(message.chars().take(1000).collect()),
        action: "Replay".to_owned(),
        secondary: None,
    };
    ctx.recorder
        .publish(&event, &replay.object_ref(&()))
        .await
        .map_err(|e| Error::Kube(format!("recording an event on replay {}", names.replay), e))?;
    cleanup(replay, names, ctx).await?;
    set_condition(
        &mut status,
        condition(
            now,
            "CleanedUp",
            true,
            "Deleted",
            "everything the replay created is deleted",
        ),
    );
    patch_status(ctx, replay, names, &status).await?;
    Ok(Action::await_change())
}

/// Deletes everything the replay created but the report claim (owner references delete that
/// with the Replay). Deleting what is already gone is fine, so this is idempotent.
async fn cleanup(replay: &Replay, names: &Names, ctx: &Context) -> Result<(), Error> {
    let ns = &names.namespace;
    let hosts = replay
        .status
        .as_ref()
        .map(|s| s.mocked_hosts.len())
        .unwrap_or(0)
        .max(replay.spec.mock.hosts.len());
    delete(ctx, ns, objects::JOB, &names.merge()).await?;
    delete(ctx, ns, objects::JOB, &names.run()).await?;
    delete(ctx, ns, objects::JOB, &names.cut()).await?;
    for index in 0..hosts {
        delete(ctx, ns, objects::VIRTUAL_SERVICE, &names.mock(index)).await?;
    }
    delete(ctx, ns, objects::SERVICE_ENTRY, &names.egress()).await?;
    delete(ctx, ns, objects::SERVICE, &names.responder()).await?;
    delete(ctx, ns, objects::DEPLOYMENT, &names.responder()).await?;
    delete(ctx, ns, objects::CONFIG_MAP, &names.config()).await?;
    delete(ctx, ns, objects::SECRET, &names.secrets()).await?;
    Ok(())
}
