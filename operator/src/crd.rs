//! The `Replay` resource (`tapedeck.dev/v1alpha1`): its spec and status, from which the
//! CustomResourceDefinition is generated (`crdgen`; `manifests/replay-crd.yaml` is its output,
//! checked in and compared by a test).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A replay of a snapshot against a Deployment under test, with its dependencies served by a
/// responder through mesh routing, judged by goals.
// The repeated `printcolumn(...)` arguments are kube's syntax, not duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tapedeck.dev",
    version = "v1alpha1",
    kind = "Replay",
    namespaced,
    status = "ReplayStatus",
    shortname = "rpl",
    category = "tapedeck",
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.target.deployment"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Verdict",
        type_ = "string",
        json_path = ".status.verdict.result"
    ),
    printcolumn(name = "P99-ms", type_ = "number", json_path = ".status.verdict.p99Ms"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ReplaySpec {
    /// The Deployment under test (the candidate), in the Replay's namespace.
    pub target: Workload,
    /// A Deployment of the current build, replayed side by side for comparative goals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Workload>,
    /// Where the snapshot comes from: exactly one of `id`, `configMap`, `volume` or `query`.
    pub snapshot: SnapshotSource,
    /// Which outbound hosts the responder answers for.
    #[serde(default)]
    pub mock: Mock,
    /// Chaos rules of the responder, in `tapedeck respond --chaos` syntax (`KIND[=ARG]@P`,
    /// e.g. `latency=200ms@0.1`, `status=503@0.01`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chaos: Vec<String>,
    /// How much load, how fast.
    #[serde(default)]
    pub load: Load,
    /// Goals, in `tapedeck replay --goal` syntax (`p99 +10% @ 95%`, `errors +2pp @ 95%`), or
    /// absolute ones in `--slo` syntax (`p99<250ms`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<String>,
    /// Noise rules and comparators: the noise file (format version 1, `docs/verdict.md`) that
    /// `tapedeck replay --noise` reads, in the resource's spelling (camelCase). The operator
    /// renders it into the ConfigMap `<replay>-config` as `noise.json`.
    #[serde(default, skip_serializing_if = "Noise::is_empty")]
    pub noise: Noise,
    /// Where reports go. Default: a PersistentVolumeClaim `<replay>-report` the operator creates
    /// (kept until the Replay is deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportVolume>,
    /// The whole replay (preparation included) must end within this (`30m`, `2h`); then it
    /// stops with phase Error and everything it created is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// The tapedeck image for the responder and the generator (default: the operator's
    /// `--image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// A Deployment and the Service in front of it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// The Deployment's name.
    pub deployment: String,
    /// The Service the generator sends to (default: the Deployment's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The Service's port (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Where the snapshot comes from.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSource {
    /// A snapshot the collector keeps, by id (`tapedeck snapshot push`, `tapedeck snapshot
    /// list`): the responder and generator pods pull it (`tapedeck snapshot pull`) and the
    /// operator reads its outbound hosts from the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A ConfigMap holding `snapshot.json`, `inbound.jsonl` and `outbound.jsonl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// A PersistentVolumeClaim holding the snapshot directory. When the replay starts, a Job
    /// (`<replay>-snapshot`) pushes it to the collector; the replay then runs as for its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeSource>,
    /// Cut from the collector once, when the replay starts, by a Job (`<replay>-snapshot`:
    /// `tapedeck snapshot create`, then `tapedeck snapshot push`); the replay then runs as for
    /// its id (`status.snapshotId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<Query>,
}

/// A snapshot directory on a volume.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSource {
    /// The PersistentVolumeClaim.
    pub claim_name: String,
    /// The snapshot directory inside it (default: its root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A snapshot cut from the collector's store.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    /// The service whose sidecar captured the exchanges.
    pub service: String,
    /// Start of the window: RFC 3339 (`2026-11-27T13:00:00Z`). Give absolute times: every pod
    /// that cuts the snapshot then cuts the same one (same snapshot id).
    pub from: String,
    /// End of the window, exclusive, RFC 3339.
    pub to: String,
    /// A SQL predicate over the `exchanges` columns, ANDed to the window.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub predicate: Option<String>,
}

/// The hosts the responder answers for the target.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mock {
    /// Outbound hosts, `HOST[:PORT]` (port 80 by default): Kubernetes Services (`payments`,
    /// `payments.shop`, `payments.shop.svc.cluster.local`) or hosts outside the mesh
    /// (`api.stripe.com:80`). Default: every outbound host of the snapshot (`outbound.jsonl` of
    /// a ConfigMap; `snapshot.json`'s hosts, from the collector, for the other sources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// The noise file of a replay (format version 1; the file's `version` is added when rendered).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Noise {
    /// The thresholds of the noise test (defaults: relative 0.2, absolute 0.0003, maxShare 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<NoiseThresholds>,
    /// How values of a field compare.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comparators: Vec<NoiseComparator>,
    /// Fields whose differences are noise, each anchored to one endpoint and one exact field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<NoiseRule>,
}

impl Noise {
    /// Whether there is nothing to write (no `--noise` then).
    pub fn is_empty(&self) -> bool {
        self.thresholds.is_none() && self.comparators.is_empty() && self.rules.is_empty()
    }
}

/// The thresholds of the noise test and of over-broad rules, fractions between 0 and 1.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoiseThresholds {
    /// A rule's evidence rate `a` explains a run's rate `c` when `c − a ≤ relative × c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub relative: Option<f64>,
    /// ... or when `c − a ≤ absolute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub absolute: Option<f64>,
    /// The largest share of an endpoint's fields its noise rules may silence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_share: Option<f64>,
}

/// How values of a field compare: the generator's own kinds (one definition), listed in the
/// schema from [`CompareKind::ALL`].
pub use tapedeck_generator::noise::CompareKind;

fn compare_kind_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = CompareKind::ALL.iter().map(|k| k.name()).collect();
    schemars::json_schema!({
        "description": "How values of the field compare.",
        "type": "string",
        "enum": names,
    })
}

/// A comparator for a field.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoiseComparator {
    /// Only this endpoint (`METHOD /template`); absent: every endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z]+ /"))]
    pub endpoint: Option<String>,
    /// The field: a JSON path (`$.items[*].price`), or `header NAME` for timestamp, uuid, id
    /// and jwt.
    #[schemars(regex(pattern = r"^(status|body|\$.*|(header|trailer) [^ ]+)$"))]
    pub field: String,
    /// How values compare.
    #[schemars(schema_with = "compare_kind_schema")]
    pub compare: CompareKind,
    /// `number`: absolute tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub absolute: Option<f64>,
    /// `number`: relative tolerance (a fraction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub relative: Option<f64>,
    /// `timestamp`: the largest skew from the side's clock, seconds (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub skew_s: Option<f64>,
    /// `array`: the key field of the elements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A learned comparator: what made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<NoiseEvidence>,
}

/// A noise rule.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoiseRule {
    /// The endpoint, `METHOD /template` (`GET /orders/{id}`).
    #[schemars(regex(pattern = r"^[A-Z]+ /"))]
    pub endpoint: String,
    /// The exact field: `status`, `header NAME`, `trailer NAME`, or a JSON path
    /// (`$.updated_at`, `$.items[*].eta`).
    #[schemars(regex(pattern = r"^(status|body|\$.*|(header|trailer) [^ ]+)$"))]
    pub field: String,
    /// A learned rule: what made it (absent: written by hand, always applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<NoiseEvidence>,
}

/// Where a learned rule comes from.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceSource {
    /// Recorded responses to identical requests.
    Recording,
    /// The baseline against itself (`--calibrate N`).
    Calibration,
}

/// What a learned rule or comparator was made from (copied from a report's `noise.json`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoiseEvidence {
    /// Recording or calibration.
    pub source: EvidenceSource,
    /// Response pairs of the endpoint compared.
    pub compared: u64,
    /// Of them, pairs that differed at the field.
    pub differed: u64,
}

/// The load model, as `tapedeck replay` has it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Load {
    /// Parallel copies of the recorded stream (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies: Option<u32>,
    /// Recorded pace divided by this (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// Open model: this many requests per second in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Stop sending after this long (`30s`, `2m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Generator pods. Default: enough that no pod replays more than `copiesPerPod` copies or
    /// sends more than `ratePerPod` requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Most copies one generator pod replays (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies_per_pod: Option<u32>,
    /// Most requests per second one generator pod sends (default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_pod: Option<f64>,
}

/// The volume reports are written to.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportVolume {
    /// A PersistentVolumeClaim (ReadWriteMany when the replay runs more than one generator pod).
    pub claim_name: String,
    /// A folder in it (default: the root); the replay writes into `<path>/<namespace>/<name>-<uid>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Where a replay is.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Accepted, nothing created yet.
    Pending,
    /// A `volume` or `query` snapshot is being pushed to the collector (the `<replay>-snapshot`
    /// Job); its id goes to `status.snapshotId`.
    Cutting,
    /// The responder and the routing are created; waiting for the responder, the target and
    /// the baseline to be Ready.
    Preparing,
    /// The generator Job runs.
    Running,
    /// The shards' reports are being merged.
    Merging,
    /// Done: every goal holds.
    Passed,
    /// Done: a goal does not hold.
    Failed,
    /// Done: not enough evidence either way.
    Inconclusive,
    /// The replay could not be run (invalid spec, timeout, a generator that could not run).
    Error,
}

impl Phase {
    /// Whether the replay is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Passed | Phase::Failed | Phase::Inconclusive | Phase::Error
        )
    }
}

/// The observed state of a replay.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayStatus {
    /// Where the replay is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Conditions: `Prepared`, `Ready`, `Ran`, `Merged`, `CleanedUp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the operator started it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Generator pods (shards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// The snapshot replayed, by its id in the collector (`id` sources, and `volume` and
    /// `query` sources once pushed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// The hosts routed to the responder (fixed when the replay starts; cleanup uses them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mocked_hosts: Vec<String>,
    /// The verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<VerdictSummary>,
    /// Where the full report is: `pvc://CLAIM/PATH` (report.json, junit.xml, report.html of
    /// each shard, and the merged histograms and summary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// A human-readable note on the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A condition, as Kubernetes writes them.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A PascalCase reason.
    pub reason: String,
    /// A human-readable message.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
}

/// The verdict of a finished replay (from the merged summary).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerdictSummary {
    /// `pass`, `fail`, `inconclusive` or `error`.
    pub result: String,
    /// Requests sent.
    #[serde(default)]
    pub requests: u64,
    /// Median latency, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Requests per second achieved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rps: Option<f64>,
    /// Errors ÷ requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// The most frequent differences, `METHOD /endpoint field: count`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_diffs: Vec<String>,
}

/// Labels on every object the operator creates for a replay.
pub fn child_labels(replay: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (crate::LABEL_REPLAY.to_owned(), replay.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            crate::MANAGER.to_owned(),
        ),
        (
            "app.kubernetes.io/part-of".to_owned(),
            "tapedeck".to_owned(),
        ),
    ])
}

/// The CustomResourceDefinition, as YAML (what `crdgen` prints), with a header saying so.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let yaml = serde_yaml::to_string(&Replay::crd())
        .unwrap_or_else(|e| unreachable!("a CRD always serializes: {e}"));
    format!(
        "# Generated by `cargo run -p tapedeck-operator --bin crdgen` from operator/src/crd.rs:\n\
         # never edit by hand (a test compares this file with the generator's output).\n{yaml}"
    )
}
