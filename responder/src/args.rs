//! `tapedeck respond` flags. Runtime knobs only; what users author (chaos rules) is a file.

use std::path::PathBuf;
use std::str::FromStr;

/// `tapedeck respond`: serve a snapshot's recorded dependencies, or summarise an explain log.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RespondArgs {
    /// `explain LOG` summarises an explain log instead of serving.
    #[command(subcommand)]
    pub command: Option<RespondCommand>,
    /// Serving flags.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands of `tapedeck respond`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RespondCommand {
    /// Summarise an explain log (`--explain FILE` of a run): decisions by kind, misses by
    /// endpoint and by the fields that differed, faults by kind.
    Explain(ExplainArgs),
}

/// `tapedeck respond explain LOG`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// The explain log (JSON lines) to summarise.
    #[arg(value_name = "LOG", env = "TAPEDECK_RESPOND_EXPLAIN_LOG")]
    pub file: PathBuf,
}

/// Flags of a serving responder.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The snapshot directory whose outbound calls are served.
    #[arg(long, env = "TAPEDECK_RESPOND_SNAPSHOT", required = true)]
    pub snapshot: Option<PathBuf>,
    /// Address of the one listener for every recorded host (HTTP/1.1, h2c, gRPC); the host is
    /// chosen by `Host` / `:authority`.
    #[arg(
        long,
        env = "TAPEDECK_RESPOND_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: String,
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`); empty for none.
    #[arg(
        long,
        env = "TAPEDECK_RESPOND_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: Option<String>,
    /// Write every decision as a JSON line to this file (see docs/responder.md).
    #[arg(long, env = "TAPEDECK_RESPOND_EXPLAIN")]
    pub explain: Option<PathBuf>,
    /// Recorded latency: `recorded` (time to headers and to the end, as recorded), `none`, or
    /// `xF` (recorded × F, for example `x0.5`).
    #[arg(long, env = "TAPEDECK_RESPOND_LATENCY", default_value = "recorded")]
    pub latency: LatencyMode,
    /// `exact`: serve only recordings whose every compared field matches; `closest`: on a near
    /// miss serve the best-scoring recording of the same host, method and endpoint when its
    /// score reaches --fallback-min-score.
    #[arg(
        long,
        env = "TAPEDECK_RESPOND_FALLBACK",
        value_enum,
        default_value = "exact"
    )]
    pub fallback: Fallback,
    /// The lowest score (0–1) `--fallback closest` serves.
    #[arg(
        long,
        env = "TAPEDECK_RESPOND_FALLBACK_MIN_SCORE",
        default_value_t = 0.5
    )]
    pub fallback_min_score: f64,
    /// What a miss gets: `404` (JSON naming the closest candidates and the fields that
    /// differed), `502`, or `passthrough` (forwarded to the real host).
    #[arg(long, env = "TAPEDECK_RESPOND_ON_MISS", default_value = "404")]
    pub on_miss: OnMiss,
    /// Where `--on-miss passthrough` sends requests (`host:port`); by default the request's own
    /// `Host` / `:authority`.
    #[arg(long, env = "TAPEDECK_RESPOND_PASSTHROUGH_ADDRESS")]
    pub passthrough_address: Option<String>,
    /// The filter's redaction key: a live value's keyed hash is compared with a recorded
    /// redaction marker. Without it, redacted values match anything.
    #[arg(long, env = "TAPEDECK_RESPOND_REDACTION_KEY", hide_env_values = true)]
    pub redaction_key: Option<String>,
    /// Re-sign JWTs in served responses with this key: `[ALG:]PATH[#KID]` (an RSA/EC private
    /// key PEM, or any other file as an HMAC secret).
    #[arg(long, env = "TAPEDECK_RESPOND_JWT_KEY")]
    pub jwt_key: Option<String>,
    /// The replay's start (RFC 3339); recorded times in responses are shifted by this −
    /// the snapshot's window start. Default: when the responder starts.
    #[arg(long, env = "TAPEDECK_RESPOND_REPLAY_START")]
    pub replay_start: Option<String>,
    /// A chaos rules file (YAML or JSON, `version: 1`, see docs/responder.md).
    #[arg(long, env = "TAPEDECK_RESPOND_CHAOS_RULES")]
    pub chaos_rules: Option<PathBuf>,
    /// A chaos rule for every host: `KIND[=ARG]@PROBABILITY`, for example `status=503@0.1`,
    /// `latency=100ms@0.5`, `reset@0.01` (repeatable; see docs/responder.md).
    #[arg(long, env = "TAPEDECK_RESPOND_CHAOS", value_delimiter = ';')]
    pub chaos: Vec<String>,
    /// Seed of the chaos draws: the same seed and the same request order give the same faults.
    /// Default: from the clock (written in the explain log).
    #[arg(long, env = "TAPEDECK_RESPOND_SEED")]
    pub seed: Option<u64>,
    /// The largest request body read for matching, in bytes; a larger body is dropped and
    /// matched as if empty.
    #[arg(long, env = "TAPEDECK_RESPOND_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// A serialized `google.protobuf.FileDescriptorSet` (`protoc --include_imports
    /// --descriptor_set_out`, `buf build -o`); repeatable. gRPC request messages of methods it
    /// describes are compared field by field, others bytewise.
    #[arg(long, env = "TAPEDECK_RESPOND_DESCRIPTORS", value_delimiter = ',')]
    pub descriptors: Vec<PathBuf>,
}

impl ServeArgs {
    /// The flags' defaults, serving `snapshot` on `127.0.0.1:0` with no admin listener and no
    /// recorded latency (what tests and benchmarks start from).
    pub fn new(snapshot: impl Into<PathBuf>) -> Self {
        ServeArgs {
            snapshot: Some(snapshot.into()),
            listen: "127.0.0.1:0".to_owned(),
            admin_listen: None,
            explain: None,
            latency: LatencyMode::None,
            fallback: Fallback::Exact,
            fallback_min_score: 0.5,
            on_miss: OnMiss::NotFound,
            passthrough_address: None,
            redaction_key: None,
            jwt_key: None,
            replay_start: None,
            chaos_rules: None,
            chaos: Vec::new(),
            seed: None,
            max_body_bytes: 16 * 1024 * 1024,
            descriptors: Vec::new(),
        }
    }
}

/// How recorded latency is replayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyMode {
    /// As recorded.
    Recorded,
    /// Not at all.
    None,
    /// Recorded × factor.
    Scaled(f64),
}

impl LatencyMode {
    /// The factor applied to recorded durations.
    pub fn factor(self) -> f64 {
        match self {
            LatencyMode::Recorded => 1.0,
            LatencyMode::None => 0.0,
            LatencyMode::Scaled(f) => f,
        }
    }
}

impl FromStr for LatencyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "recorded" => Ok(LatencyMode::Recorded),
            "none" => Ok(LatencyMode::None),
            _ => s
                .strip_prefix('x')
                .and_then(|f| f.parse::<f64>().ok())
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(LatencyMode::Scaled)
                .ok_or_else(|| format!("{s:?} is not recorded, none or xF (x2, x0.5)")),
        }
    }
}

/// Whether near misses are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// Only exact matches (wildcards and token classes aside).
    Exact,
    /// The closest recording above the minimum score.
    Closest,
}

/// What a miss gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMiss {
    /// 404 with a JSON body naming the closest candidates.
    NotFound,
    /// 502 with the same body.
    BadGateway,
    /// Forwarded to the real host.
    Passthrough,
}

impl FromStr for OnMiss {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "404" => Ok(OnMiss::NotFound),
            "502" => Ok(OnMiss::BadGateway),
            "passthrough" => Ok(OnMiss::Passthrough),
            _ => Err(format!("{s:?} is not 404, 502 or passthrough")),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `RespondArgs` as the CLI composes it: a subcommand beside a global `--log`.
    #[derive(Debug, Parser)]
    struct Cli {
        #[arg(long, global = true)]
        log: Option<String>,
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Command {
        Respond(RespondArgs),
    }

    fn respond(args: &[&str]) -> Result<RespondArgs, clap::Error> {
        let Command::Respond(args) =
            Cli::try_parse_from(["tapedeck", "--log", "info", "respond"].iter().chain(args))?
                .command;
        Ok(args)
    }

    #[test]
    fn flags_and_the_explain_subcommand_parse() {
        match respond(&["explain", "run.jsonl"]).unwrap().command {
            Some(RespondCommand::Explain(args)) => {
                assert_eq!(args.file, PathBuf::from("run.jsonl"))
            }
            None => panic!("no subcommand"),
        }
        let serve = respond(&[
            "--snapshot",
            "snap",
            "--latency",
            "x0.5",
            "--on-miss",
            "passthrough",
            "--fallback",
            "closest",
            "--chaos",
            "reset@0.1;status=503@0.2",
        ])
        .unwrap()
        .serve;
        assert_eq!(serve.latency, LatencyMode::Scaled(0.5));
        assert_eq!(serve.on_miss, OnMiss::Passthrough);
        assert_eq!(serve.fallback, Fallback::Closest);
        assert_eq!(serve.chaos, ["reset@0.1", "status=503@0.2"]);
        assert!(respond(&[]).is_err(), "--snapshot is required");
        assert!(respond(&["--snapshot", "s", "--latency", "fast"]).is_err());
    }
}
