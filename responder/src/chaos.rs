//! Transaction-level chaos: faults injected into served responses, from a versioned rules file
//! or `--chaos` flags, each rule scoped by host, endpoint and method and firing with a
//! probability.
//!
//! Determinism: every request gets a sequence number in arrival order, and each rule's draw
//! for it is a pure function of (seed, sequence number, rule index): the same seed and the same
//! request order give the same faults, whatever the timing.
//!
//! Every rule that fires is reported; latency faults add up, and the first other fault that
//! fires (in file order) decides what is served.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{Recording, Store};

/// The rules file's format version.
pub const RULES_VERSION: u32 = 1;

/// A chaos rules file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    /// Always 1.
    pub version: u32,
    /// The rules, in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One chaos rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A name for the explain log and errors (default `rules[i]`).
    #[serde(default)]
    pub name: Option<String>,
    /// Only requests to this host (any alias of a recorded host).
    #[serde(default)]
    pub host: Option<String>,
    /// Only this endpoint (`POST /v1/charges`, as in the snapshot).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Only this method.
    #[serde(default)]
    pub method: Option<String>,
    /// How often the fault fires, 0–1.
    pub probability: Probability,
    /// What happens.
    pub fault: Fault,
}

/// A probability in 0–1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Probability(pub f64);

impl<'de> Deserialize<'de> for Probability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = f64::deserialize(d)?;
        if (0.0..=1.0).contains(&p) {
            Ok(Probability(p))
        } else {
            Err(serde::de::Error::custom(format!(
                "probability {p} is not between 0 and 1"
            )))
        }
    }
}

/// What a rule does when it fires.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Added time before the response headers.
    Latency(Latency),
    /// This HTTP status with a short JSON body instead of the recording.
    Status {
        /// The status code.
        status: u16,
    },
    /// A trailers-only gRPC response with this status code.
    GrpcStatus {
        /// The gRPC status code (14 = unavailable).
        code: u32,
        /// `grpc-message`.
        #[serde(default)]
        message: Option<String>,
    },
    /// The stream is reset (HTTP/1.1: the connection is closed) without a response.
    Reset {},
    /// No response: the request waits until the client gives up (or the responder stops).
    Hang {},
    /// The body dribbled out in small pieces over this duration.
    SlowBody {
        /// Milliseconds from the first byte to the last.
        duration_ms: u64,
    },
    /// Only this fraction of the body, then the stream is cut.
    Truncate {
        /// 0–1 of the body served.
        fraction: f64,
    },
}

/// The largest latency value of a rule, ms (a day).
pub const MAX_LATENCY_MS: f64 = 86_400_000.0;
/// The largest `recorded_factor`.
pub const MAX_RECORDED_FACTOR: f64 = 1_000.0;

/// An added latency: exactly one of its fields.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "LatencyFields", into = "LatencyFields")]
pub enum Latency {
    /// Always this long.
    Fixed(f64),
    /// Uniform in [low, high] milliseconds.
    Uniform(f64, f64),
    /// Normal with this mean and standard deviation (ms), cut at 0.
    Normal(f64, f64),
    /// A recorded duration of the same endpoint (drawn at random) × factor.
    Recorded(f64),
}

/// The file form of [`Latency`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyFields {
    /// Fixed milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_ms: Option<f64>,
    /// `[low, high]` milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uniform_ms: Option<[f64; 2]>,
    /// `{mean, stddev}` milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normal_ms: Option<NormalMs>,
    /// The recorded distribution × this factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_factor: Option<f64>,
}

/// Mean and standard deviation.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NormalMs {
    /// Mean, ms.
    pub mean: f64,
    /// Standard deviation, ms.
    pub stddev: f64,
}

impl TryFrom<LatencyFields> for Latency {
    type Error = String;
    fn try_from(f: LatencyFields) -> Result<Self, String> {
        let mut out = Vec::new();
        if let Some(ms) = f.fixed_ms {
            out.push(Latency::Fixed(ms));
        }
        if let Some([low, high]) = f.uniform_ms {
            if low > high {
                return Err(format!("uniform_ms [{low}, {high}]: low is above high"));
            }
            out.push(Latency::Uniform(low, high));
        }
        if let Some(n) = f.normal_ms {
            out.push(Latency::Normal(n.mean, n.stddev));
        }
        if let Some(factor) = f.recorded_factor {
            out.push(Latency::Recorded(factor));
        }
        let values = match out.first() {
            Some(Latency::Fixed(a) | Latency::Recorded(a)) => vec![*a],
            Some(Latency::Uniform(a, b) | Latency::Normal(a, b)) => vec![*a, *b],
            None => vec![],
        };
        if values.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err("latency values must be finite and not negative".to_owned());
        }
        // A planned latency is a `Duration`; far larger values would not fit one.
        let limit = match out.first() {
            Some(Latency::Recorded(_)) => MAX_RECORDED_FACTOR,
            _ => MAX_LATENCY_MS,
        };
        if let Some(v) = values.iter().find(|v| **v > limit) {
            return Err(format!(
                "latency value {v} is above {limit} (a day in ms; {MAX_RECORDED_FACTOR} for recorded_factor)"
            ));
        }
        match (out.len(), out.pop()) {
            (1, Some(latency)) => Ok(latency),
            _ => Err(
                "a latency fault has exactly one of fixed_ms, uniform_ms, normal_ms, recorded_factor"
                    .to_owned(),
            ),
        }
    }
}

impl From<Latency> for LatencyFields {
    fn from(l: Latency) -> Self {
        let mut f = LatencyFields::default();
        match l {
            Latency::Fixed(ms) => f.fixed_ms = Some(ms),
            Latency::Uniform(a, b) => f.uniform_ms = Some([a, b]),
            Latency::Normal(mean, stddev) => f.normal_ms = Some(NormalMs { mean, stddev }),
            Latency::Recorded(factor) => f.recorded_factor = Some(factor),
        }
        f
    }
}

impl Fault {
    /// The kind word (metrics label, explain log).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Latency(_) => "latency",
            Fault::Status { .. } => "status",
            Fault::GrpcStatus { .. } => "grpc_status",
            Fault::Reset {} => "reset",
            Fault::Hang {} => "hang",
            Fault::SlowBody { .. } => "slow_body",
            Fault::Truncate { .. } => "truncate",
        }
    }
}

/// A rule ready to draw: its scope resolved against the snapshot.
#[derive(Debug, Clone)]
struct Compiled {
    name: String,
    host: Option<usize>,
    endpoint: Option<String>,
    method: Option<String>,
    probability: f64,
    fault: Fault,
}

/// The rules of a run and the seed.
#[derive(Debug, Clone)]
pub struct Chaos {
    rules: Vec<Compiled>,
    /// The seed of the draws.
    pub seed: u64,
}

/// One fault that fired for a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fired {
    /// The rule's name.
    pub rule: String,
    /// The fault.
    pub fault: Fault,
    /// For latency: the drawn delay, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

/// What chaos does to one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Added before the headers.
    pub latency: Duration,
    /// The fault that replaces or alters the response (not latency).
    pub action: Option<Fault>,
    /// Every rule that fired.
    pub fired: Vec<Fired>,
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform draw in [0, 1) for (seed, request, rule, purpose).
pub fn unit(seed: u64, request: u64, rule: u64, purpose: u64) -> f64 {
    let h = mix(mix(mix(seed ^ mix(request)) ^ rule) ^ purpose);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn duration_ms(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, 1.0)
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v * scale)
}

/// Parses a `--chaos` flag: `KIND[=ARG]@PROBABILITY`.
pub fn parse_flag(flag: &str) -> Result<Rule, String> {
    let (spec, p) = flag
        .rsplit_once('@')
        .ok_or_else(|| format!("{flag:?}: expected KIND[=ARG]@PROBABILITY"))?;
    let probability = p
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| format!("{flag:?}: probability {p:?} is not a number between 0 and 1"))?;
    let (kind, arg) = spec.split_once('=').unwrap_or((spec, ""));
    let bad = || {
        format!(
            "{flag:?}: {kind} takes {}",
            match kind {
                "latency" =>
                    "a duration (100ms), a range (10ms..50ms), normal:MEAN:STDDEV or xFACTOR",
                "status" => "an HTTP status (503)",
                "grpc" | "grpc_status" => "a gRPC status code (14)",
                "slow" | "slow_body" => "a duration (2s)",
                "truncate" => "a fraction (0.5)",
                _ => "no argument",
            }
        )
    };
    let fault = match kind {
        "latency" => Fault::Latency(if let Some(f) = arg.strip_prefix('x') {
            Latency::Recorded(f.parse().map_err(|_| bad())?)
        } else if let Some(rest) = arg.strip_prefix("normal:") {
            let (mean, sd) = rest.split_once(':').ok_or_else(bad)?;
            Latency::Normal(
                duration_ms(mean).ok_or_else(bad)?,
                duration_ms(sd).ok_or_else(bad)?,
            )
        } else if let Some((low, high)) = arg.split_once("..") {
            Latency::Uniform(
                duration_ms(low).ok_or_else(bad)?,
                duration_ms(high).ok_or_else(bad)?,
            )
        } else {
            Latency::Fixed(duration_ms(arg).ok_or_else(bad)?)
        }),
        "status" => Fault::Status {
            status: arg
                .parse()
                .ok()
                .filter(|s| (100..1000).contains(s))
                .ok_or_else(bad)?,
        },
        "grpc" | "grpc_status" => Fault::GrpcStatus {
            code: arg.parse().map_err(|_| bad())?,
            message: None,
        },
        "reset" if arg.is_empty() => Fault::Reset {},
        "hang" if arg.is_empty() => Fault::Hang {},
        "slow" | "slow_body" => Fault::SlowBody {
            duration_ms: duration_ms(arg).ok_or_else(bad)? as u64,
        },
        "truncate" => Fault::Truncate {
            fraction: arg
                .parse()
                .ok()
                .filter(|f| (0.0..=1.0).contains(f))
                .ok_or_else(bad)?,
        },
        "reset" | "hang" => return Err(bad()),
        _ => {
            return Err(format!(
                "{flag:?}: unknown fault {kind:?} (latency, status, grpc, reset, hang, slow, truncate)"
            ));
        }
    };
    Ok(Rule {
        name: Some(format!("--chaos {flag}")),
        host: None,
        endpoint: None,
        method: None,
        probability: Probability(probability),
        fault,
    })
}

/// Reads and checks a rules file (YAML or JSON).
pub fn read_rules(path: &Path) -> crate::Result<Vec<Rule>> {
    let error = |message: String| crate::Error::Rules {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot be read: {e}")))?;
    parse_rules(&text).map_err(error)
}

/// Parses a rules file's text; errors name the line.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    // The version first, so a newer file gets "unknown version", not a list of fields.
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| yaml_error(&e))?;
    match value.get("version").and_then(serde_yaml::Value::as_u64) {
        Some(v) if v == u64::from(RULES_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "unknown chaos rules version {v} (this tapedeck reads version {RULES_VERSION})"
            ));
        }
        None => return Err("line 1: no \"version: 1\"".to_owned()),
    }
    let file: RulesFile = serde_yaml::from_str(text).map_err(|e| yaml_error(&e))?;
    Ok(file.rules)
}

fn yaml_error(error: &serde_yaml::Error) -> String {
    let message = error.to_string();
    match error.location() {
        Some(at) => {
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(head, _)| head);
            format!("line {}:{}: {message}", at.line(), at.column())
        }
        None => message,
    }
}

impl Chaos {
    /// Compiles rules against the snapshot: every host must be a recorded host or alias.
    pub fn new(rules: Vec<Rule>, seed: u64, store: &Store, source: &Path) -> crate::Result<Chaos> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, rule) in rules.into_iter().enumerate() {
            let name = rule.name.clone().unwrap_or_else(|| format!("rules[{i}]"));
            let host = match &rule.host {
                Some(host) => Some(store.host(host).ok_or_else(|| crate::Error::Rules {
                    path: source.to_path_buf(),
                    message: format!(
                        "{name}: host {host:?} is not a recorded host (recorded: {})",
                        store
                            .hosts
                            .iter()
                            .map(|h| h.authority.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })?),
                None => None,
            };
            let invalid = match &rule.fault {
                Fault::Status { status } if !(100..1000).contains(status) => {
                    Some(format!("status {status} is not an HTTP status"))
                }
                Fault::Truncate { fraction } if !(0.0..=1.0).contains(fraction) => {
                    Some(format!("fraction {fraction} is not between 0 and 1"))
                }
                _ => None,
            };
            if let Some(message) = invalid {
                return Err(crate::Error::Rules {
                    path: source.to_path_buf(),
                    message: format!("{name}: {message}"),
                });
            }
            compiled.push(Compiled {
                name,
                host,
                endpoint: rule.endpoint,
                method: rule.method,
                probability: rule.probability.0,
                fault: rule.fault,
            });
        }
        Ok(Chaos {
            rules: compiled,
            seed,
        })
    }

    /// Whether there are rules at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The faults for request number `request`. `recorded` lists the recordings of the same
    /// endpoint (for `recorded_factor` latency).
    pub fn plan(
        &self,
        request: u64,
        host: Option<usize>,
        endpoint: &str,
        method: &str,
        recorded: &[&Recording],
    ) -> Plan {
        let mut plan = Plan::default();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.host.is_some() && rule.host != host
                || rule.endpoint.as_deref().is_some_and(|e| e != endpoint)
                || rule
                    .method
                    .as_deref()
                    .is_some_and(|m| !m.eq_ignore_ascii_case(method))
            {
                continue;
            }
            let i = i as u64;
            if unit(self.seed, request, i, 0) >= rule.probability {
                continue;
            }
            let mut latency_ms = None;
            match &rule.fault {
                Fault::Latency(latency) => {
                    let a = unit(self.seed, request, i, 1);
                    let b = unit(self.seed, request, i, 2);
                    let ms = match *latency {
                        Latency::Fixed(ms) => ms,
                        Latency::Uniform(low, high) => low + (high - low) * a,
                        Latency::Normal(mean, sd) => {
                            // Box–Muller.
                            let z = (-2.0 * (1.0 - a).ln()).sqrt()
                                * (2.0 * std::f64::consts::PI * b).cos();
                            (mean + sd * z).max(0.0)
                        }
                        Latency::Recorded(factor) => {
                            if recorded.is_empty() {
                                0.0
                            } else {
                                let pick =
                                    ((a * recorded.len() as f64) as usize).min(recorded.len() - 1);
                                recorded[pick].duration_ns as f64 / 1e6 * factor
                            }
                        }
                    };
                    let added = Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX);
                    plan.latency = plan.latency.saturating_add(added);
                    latency_ms = Some(ms);
                }
                other => {
                    if plan.action.is_none() {
                        plan.action = Some(other.clone());
                    }
                }
            }
            plan.fired.push(Fired {
                rule: rule.name.clone(),
                fault: rule.fault.clone(),
                latency_ms,
            });
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_files_parse_and_reject_mistakes() {
        let rules = parse_rules(
            "version: 1\nrules:\n  - host: payments\n    probability: 0.5\n    fault: {kind: latency, uniform_ms: [10, 20]}\n  - probability: 1\n    fault: {kind: grpc_status, code: 14}\n",
        )
        .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].fault, Fault::Latency(Latency::Uniform(10.0, 20.0)));
        let err = parse_rules(
            "version: 1\nrules:\n  - probability: 0.5\n    colour: red\n    fault: {kind: reset}\n",
        )
        .unwrap_err();
        assert!(
            err.starts_with("line 4:") && err.contains("unknown field `colour`"),
            "{err}"
        );
        let err =
            parse_rules("version: 1\nrules:\n  - probability: 1.5\n    fault: {kind: reset}\n")
                .unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("probability 1.5"),
            "{err}"
        );
        let err = parse_rules("version: 1\nrules:\n  - probability: 0.1\n    fault: {kind: latency, fixed_ms: 1, uniform_ms: [1, 2]}\n").unwrap_err();
        assert!(err.contains("exactly one of"), "{err}");
        let err = parse_rules(
            "version: 1\nrules:\n  - probability: 0.1\n    fault: {kind: reset, extra: 1}\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown field `extra`"), "{err}");
        assert!(
            parse_rules("version: 2\n")
                .unwrap_err()
                .contains("unknown chaos rules version 2")
        );
    }

    #[test]
    fn flags_parse() {
        for (flag, fault) in [
            ("status=503@0.1", Fault::Status { status: 503 }),
            ("reset@0.5", Fault::Reset {}),
            ("latency=100ms@1", Fault::Latency(Latency::Fixed(100.0))),
            (
                "latency=1s..2s@1",
                Fault::Latency(Latency::Uniform(1000.0, 2000.0)),
            ),
            ("latency=x2@1", Fault::Latency(Latency::Recorded(2.0))),
            ("slow=2s@1", Fault::SlowBody { duration_ms: 2000 }),
            ("truncate=0.5@1", Fault::Truncate { fraction: 0.5 }),
        ] {
            assert_eq!(parse_flag(flag).unwrap().fault, fault, "{flag}");
        }
        assert!(parse_flag("status=abc@0.1").is_err());
        assert!(parse_flag("reset@2").is_err());
        assert!(parse_flag("boom@0.1").is_err());
    }

    #[test]
    fn faults_serialise_as_they_are_written() {
        assert_eq!(
            serde_json::to_value(Fault::Latency(Latency::Fixed(5.0))).unwrap(),
            serde_json::json!({"kind": "latency", "fixed_ms": 5.0})
        );
        assert_eq!(
            serde_json::to_value(Fault::Reset {}).unwrap(),
            serde_json::json!({"kind": "reset"})
        );
    }

    #[test]
    fn draws_are_uniform_and_repeatable() {
        let n = 20_000;
        let hits = (0..n).filter(|r| unit(7, *r, 0, 0) < 0.25).count();
        assert!((hits as f64 / n as f64 - 0.25).abs() < 0.02, "{hits}");
        assert_eq!(unit(7, 3, 1, 0), unit(7, 3, 1, 0));
        assert_ne!(unit(7, 3, 1, 0), unit(8, 3, 1, 0));
    }
}
