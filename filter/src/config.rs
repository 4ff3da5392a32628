//! The filter's configuration: JSON from `WasmPlugin.spec.pluginConfig` (or the Envoy filter's
//! `configuration`), parsed once in `on_configure`.
//!
//! The file is versioned (`"version": 1`) and unknown fields are rejected, so a typo is an error
//! at configure time rather than a setting silently ignored in production.

use serde::Deserialize;
use std::fmt;
use tapedeck_proto::DEFAULT_REDACTED_HEADERS;

/// The one config version this filter reads.
pub const CONFIG_VERSION: u32 = 1;

/// The largest body prefix a filter may keep per message.
pub const MAX_BODY_BYTES_LIMIT: usize = 16 * 1024 * 1024;

/// The plugin configuration, version 1.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Must be 1.
    pub version: u32,
    /// Where batches go.
    pub collector: Collector,
    /// Overrides the workload name read from the proxy's node metadata (`WORKLOAD_NAME`).
    #[serde(default)]
    pub workload: Option<String>,
    /// Overrides the namespace read from node metadata (`NAMESPACE`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Overrides the pod name read from node metadata (`NAME`, else the node id).
    #[serde(default)]
    pub pod: Option<String>,
    /// What share of exchanges to capture.
    #[serde(default)]
    pub sampling: Sampling,
    /// Which exchanges to consider at all.
    #[serde(default, rename = "match")]
    pub matching: Match,
    /// How much of each body to keep.
    #[serde(default)]
    pub capture: Capture,
    /// What to hide before anything leaves the pod.
    #[serde(default)]
    pub redaction: Redaction,
    /// Bounds on memory and on calls to the collector.
    #[serde(default)]
    pub queue: Queue,
}

/// The collector the batches are pushed to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collector {
    /// The Envoy cluster (HTTP/2) that reaches the collector's gRPC port.
    pub cluster: String,
    /// A bearer token sent as `authorization` with every push, when the collector wants one.
    #[serde(default)]
    pub token: Option<String>,
    /// How long one push may take before it counts as failed, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5000
}

/// Sampling settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// The share of exchanges captured, from 0 (none) to 1 (all). Exchanges with a trace id are
    /// sampled by a hash of it, so every sidecar on a trace makes the same choice.
    #[serde(default = "default_rate")]
    pub rate: f64,
}

fn default_rate() -> f64 {
    1.0
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            rate: default_rate(),
        }
    }
}

/// Include and exclude rules. An empty include list includes everything; an exclude wins.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Path prefixes to capture (`/api/`); empty means all.
    #[serde(default)]
    pub include_paths: Vec<String>,
    /// Path prefixes never to capture (`/healthz`).
    #[serde(default)]
    pub exclude_paths: Vec<String>,
    /// Authorities to capture: exact (`payments.internal`) or a suffix (`*.example.com`), port
    /// ignored; empty means all.
    #[serde(default)]
    pub include_authorities: Vec<String>,
    /// Authorities never to capture, same forms.
    #[serde(default)]
    pub exclude_authorities: Vec<String>,
}

/// Body capture settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capture {
    /// Whether to capture at all. `false` keeps the filter loaded but idle (a kill switch that
    /// needs no redeploy): every callback returns at once and nothing is read or sent.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Bytes kept of each request and each response body; the rest is counted, not kept.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

fn default_enabled() -> bool {
    true
}

fn default_max_body_bytes() -> usize {
    64 * 1024
}

impl Default for Capture {
    fn default() -> Self {
        Self {
            enabled: true,
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

/// How JWTs found in redacted places are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JwtMode {
    /// Keep the header and claims, replace only the signature (replay re-signs tokens).
    #[default]
    KeepClaims,
    /// Replace the whole token like any other secret.
    Hash,
}

/// Redaction settings. The default headers are always redacted; these add to them.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redaction {
    /// More header names to redact (case-insensitive), in requests and responses.
    #[serde(default)]
    pub headers: Vec<String>,
    /// JSON object keys (case-insensitive, any depth) whose values are redacted in JSON bodies.
    #[serde(default)]
    pub json_fields: Vec<String>,
    /// Query parameter names whose values are redacted in the path.
    #[serde(default)]
    pub query_params: Vec<String>,
    /// The key of the keyed hash that replaces secrets. Set it (same value on every proxy) so
    /// hashes cannot be reversed by guessing; without it a built-in key is used.
    #[serde(default)]
    pub hash_key: Option<String>,
    /// What happens to JWTs.
    #[serde(default)]
    pub jwt: JwtMode,
}

/// Bounds on memory and on calls to the collector, per Wasm VM (one VM per Envoy worker).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    /// Exchanges waiting to be sent, at most; more are dropped and counted.
    #[serde(default = "default_max_exchanges")]
    pub max_exchanges: usize,
    /// Encoded bytes waiting to be sent, at most; more are dropped and counted.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Encoded bytes per push, at most (one larger exchange still goes alone).
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// How often the queue is flushed, in milliseconds.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Pushes under way at once, at most; while at the limit the queue only fills.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// A VM that has handled a request and pushed nothing for this long, in milliseconds,
    /// pushes a batch without exchanges (a heartbeat), so that the collector can tell a quiet
    /// VM from a dead one.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
}

fn default_max_exchanges() -> usize {
    10_000
}
fn default_max_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_batch_max_bytes() -> usize {
    2 * 1024 * 1024
}
fn default_flush_interval_ms() -> u64 {
    100
}
fn default_max_in_flight() -> usize {
    4
}
fn default_heartbeat_interval_ms() -> u64 {
    10_000
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            max_exchanges: default_max_exchanges(),
            max_bytes: default_max_bytes(),
            batch_max_bytes: default_batch_max_bytes(),
            flush_interval_ms: default_flush_interval_ms(),
            max_in_flight: default_max_in_flight(),
            heartbeat_interval_ms: default_heartbeat_interval_ms(),
        }
    }
}

/// Why a configuration was refused. The message names the field and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tapedeck filter config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and checks a configuration. An empty configuration is refused: the collector
    /// cluster has no sensible default.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError(
                "empty configuration; at least {\"version\": 1, \"collector\": {\"cluster\": \"…\"}} is needed".into(),
            ));
        }
        let config: Config =
            serde_json::from_slice(bytes).map_err(|error| ConfigError(error.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError(message));
        if self.version != CONFIG_VERSION {
            return fail(format!(
                "version {} is not supported (this filter reads version {CONFIG_VERSION})",
                self.version
            ));
        }
        if self.collector.cluster.trim().is_empty() {
            return fail("collector.cluster is empty".into());
        }
        if self.collector.timeout_ms == 0 {
            return fail("collector.timeout_ms must be above 0".into());
        }
        if !(0.0..=1.0).contains(&self.sampling.rate) {
            return fail(format!(
                "sampling.rate must be within [0, 1], got {}",
                self.sampling.rate
            ));
        }
        if self.capture.max_body_bytes > MAX_BODY_BYTES_LIMIT {
            return fail(format!(
                "capture.max_body_bytes is {}, above the limit of {MAX_BODY_BYTES_LIMIT}",
                self.capture.max_body_bytes
            ));
        }
        let queue = &self.queue;
        if queue.max_exchanges == 0
            || queue.max_bytes == 0
            || queue.batch_max_bytes == 0
            || queue.max_in_flight == 0
        {
            return fail(
                "queue.max_exchanges, max_bytes, batch_max_bytes and max_in_flight must be above 0"
                    .into(),
            );
        }
        if queue.batch_max_bytes > queue.max_bytes {
            return fail(format!(
                "queue.batch_max_bytes ({}) is larger than queue.max_bytes ({})",
                queue.batch_max_bytes, queue.max_bytes
            ));
        }
        if queue.flush_interval_ms < 10 {
            return fail(format!(
                "queue.flush_interval_ms must be at least 10, got {}",
                queue.flush_interval_ms
            ));
        }
        for (field, names) in [
            ("redaction.headers", &self.redaction.headers),
            ("redaction.json_fields", &self.redaction.json_fields),
            ("redaction.query_params", &self.redaction.query_params),
        ] {
            if let Some(position) = names.iter().position(|name| name.trim().is_empty()) {
                return fail(format!("{field}[{position}] is empty"));
            }
        }
        for (field, patterns) in [
            (
                "match.include_authorities",
                &self.matching.include_authorities,
            ),
            (
                "match.exclude_authorities",
                &self.matching.exclude_authorities,
            ),
        ] {
            if let Some(position) = patterns
                .iter()
                .position(|p| p.is_empty() || p.chars().skip(1).any(|c| c == '*'))
            {
                return fail(format!(
                    "{field}[{position}]: use an exact name or a leading `*.` suffix"
                ));
            }
        }
        Ok(())
    }

    /// Every header name that is redacted: the defaults plus the configured ones, lowercase.
    pub fn redacted_headers(&self) -> Vec<String> {
        let mut names: Vec<String> = DEFAULT_REDACTED_HEADERS
            .iter()
            .map(|name| name.to_string())
            .collect();
        for name in &self.redaction.headers {
            let name = name.trim().to_ascii_lowercase();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"version": 1, "collector": {"cluster": "tapedeck_collector"}}"#;

    #[test]
    fn minimal_config_takes_the_defaults() {
        let config = Config::parse(MINIMAL.as_bytes()).unwrap();
        assert_eq!(config.collector.timeout_ms, 5000);
        assert_eq!(config.sampling.rate, 1.0);
        assert_eq!(config.capture.max_body_bytes, 65536);
        assert_eq!(config.queue, Queue::default());
        assert_eq!(config.redaction.jwt, JwtMode::KeepClaims);
        assert_eq!(
            config.redacted_headers(),
            [
                "authorization",
                "proxy-authorization",
                "cookie",
                "set-cookie"
            ]
        );
    }

    #[test]
    fn full_config_parses() {
        let json = r#"{
            "version": 1,
            "collector": {"cluster": "c", "token": "t", "timeout_ms": 100},
            "workload": "orders", "namespace": "shop", "pod": "orders-0",
            "sampling": {"rate": 0.25},
            "match": {"include_paths": ["/api/"], "exclude_paths": ["/healthz"],
                      "include_authorities": ["*.svc"], "exclude_authorities": ["metrics.svc"]},
            "capture": {"max_body_bytes": 1024},
            "redaction": {"headers": ["X-Api-Key", "authorization"], "json_fields": ["password"],
                          "query_params": ["token"], "hash_key": "k", "jwt": "hash"},
            "queue": {"max_exchanges": 10, "max_bytes": 4096, "batch_max_bytes": 1024,
                      "flush_interval_ms": 50, "max_in_flight": 1}
        }"#;
        let config = Config::parse(json.as_bytes()).unwrap();
        assert_eq!(config.workload.as_deref(), Some("orders"));
        assert_eq!(config.redaction.jwt, JwtMode::Hash);
        assert_eq!(
            config.redacted_headers(),
            [
                "authorization",
                "proxy-authorization",
                "cookie",
                "set-cookie",
                "x-api-key"
            ]
        );
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let cases = [
            ("", "empty configuration"),
            ("{", "EOF while parsing"),
            (
                r#"{"version": 2, "collector": {"cluster": "c"}}"#,
                "version 2 is not supported",
            ),
            (r#"{"version": 1}"#, "missing field `collector`"),
            (
                r#"{"version": 1, "collector": {"cluster": "c"}, "sampling": {"rate": 1.5}}"#,
                "sampling.rate must be within [0, 1], got 1.5",
            ),
            (
                r#"{"version": 1, "collector": {"cluster": "c"}, "colector": {}}"#,
                "unknown field `colector`",
            ),
            (
                r#"{"version": 1, "collector": {"cluster": " "}}"#,
                "collector.cluster is empty",
            ),
            (
                r#"{"version": 1, "collector": {"cluster": "c"}, "queue": {"max_bytes": 10}}"#,
                "queue.batch_max_bytes (2097152) is larger than queue.max_bytes (10)",
            ),
            (
                r#"{"version": 1, "collector": {"cluster": "c"}, "capture": {"max_body_bytes": 999999999}}"#,
                "capture.max_body_bytes is 999999999",
            ),
            (
                r#"{"version": 1, "collector": {"cluster": "c"}, "redaction": {"json_fields": ["a", ""]}}"#,
                "redaction.json_fields[1] is empty",
            ),
            (
                r#"{"version": 1, "collector": {"cluster": "c"}, "match": {"include_authorities": ["a*b"]}}"#,
                "match.include_authorities[0]",
            ),
            (
                r#"{"version": 1, "collector": {"cluster": "c"}, "redaction": {"jwt": "drop"}}"#,
                "unknown variant `drop`",
            ),
        ];
        for (json, expected) in cases {
            let error = Config::parse(json.as_bytes()).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "config {json:?}: error {error:?} should contain {expected:?}"
            );
            assert!(error.starts_with("tapedeck filter config: "), "{error}");
        }
    }
}
