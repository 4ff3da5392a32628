//! Shards and their merge: `tapedeck replay --shard K/N` replays the copies with
//! `copy % N == K` (so N pods, one shard each, together replay every copy once, each copy under
//! its own global number, so sessions and trace ids never collide across shards), and
//! `tapedeck replay merge DIR… --out DIR` merges the shards' reports.
//!
//! Latencies are merged as histograms, never averaged: every report directory gets
//! [`HISTOGRAMS_FILE`], the run's HDR latency histograms (overall and per endpoint) in
//! hdrhistogram's V2 serialization, and the merge adds them bucket by bucket, so the merged
//! percentiles are those of one run that had sent every shard's requests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::Serialize;

use crate::stats::{self, Stats};
use crate::{Error, Result};

/// The histograms file in a report directory.
pub const HISTOGRAMS_FILE: &str = "histograms.bin";
/// The merged summary `merge` writes into its `--out` directory.
pub const SUMMARY_FILE: &str = "summary.json";
/// The name of the whole run's histogram in [`HISTOGRAMS_FILE`]; the others are endpoints.
pub const OVERALL: &str = "*";
/// Magic and version at the start of [`HISTOGRAMS_FILE`].
const MAGIC: &[u8; 8] = b"TDHIST01";

/// One shard of the copies: `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// K, from 0.
    pub index: u32,
    /// N, at least 1.
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// How many of `total` copies this shard replays.
    pub fn copies(self, total: u32) -> u32 {
        if self.index >= total {
            0
        } else {
            (total - self.index).div_ceil(self.count)
        }
    }

    /// The global copy number of this shard's `local`-th copy.
    pub fn global_copy(self, local: u32) -> u32 {
        self.index + local * self.count
    }
}

/// Parses `K/N` (`0/4`): K from 0 to N-1.
pub fn parse_shard(text: &str) -> std::result::Result<Shard, String> {
    let (k, n) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: expected K/N, e.g. 0/4"))?;
    let index: u32 = k
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: K is not a number"))?;
    let count: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: N is not a number"))?;
    if count == 0 || index >= count {
        return Err(format!("{text:?}: K must be below N and N at least 1"));
    }
    Ok(Shard { index, count })
}

/// Writes the run's latency histograms (overall first, then each endpoint) into `dir`.
pub fn write_histograms(stats: &Stats, dir: &Path) -> Result<()> {
    let mut all = vec![(OVERALL.to_owned(), stats.overall().latency)];
    all.extend(
        stats
            .endpoints
            .iter()
            .map(|(name, m)| (name.clone(), m.latency.clone())),
    );
    let path = dir.join(HISTOGRAMS_FILE);
    let write_error = |source| Error::Write {
        path: path.display().to_string(),
        source,
    };
    let mut out = Vec::from(&MAGIC[..]);
    let mut serializer = V2Serializer::new();
    for (name, histogram) in &all {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        serializer
            .serialize(histogram, &mut out)
            .map_err(|e| write_error(std::io::Error::other(format!("{e:?}"))))?;
    }
    std::fs::create_dir_all(dir).map_err(write_error)?;
    let mut file = std::fs::File::create(&path).map_err(write_error)?;
    file.write_all(&out).map_err(write_error)
}

/// Reads a [`HISTOGRAMS_FILE`]: (name, histogram) in file order.
pub fn read_histograms(path: &Path) -> Result<Vec<(String, Histogram<u64>)>> {
    let bad = |why: String| Error::Read {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, why),
    };
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("not a tapedeck histograms file".to_owned()));
    }
    let mut reader = &bytes[MAGIC.len()..];
    let mut deserializer = Deserializer::new();
    let mut out = Vec::new();
    while !reader.is_empty() {
        let mut len = [0u8; 4];
        reader
            .read_exact(&mut len)
            .map_err(|e| bad(format!("name length: {e}")))?;
        let len = u32::from_be_bytes(len) as usize;
        if reader.len() < len {
            return Err(bad("truncated name".to_owned()));
        }
        let name = String::from_utf8(reader[..len].to_vec())
            .map_err(|_| bad("a name is not UTF-8".to_owned()))?;
        reader = &reader[len..];
        let histogram: Histogram<u64> = deserializer
            .deserialize(&mut reader)
            .map_err(|e| bad(format!("histogram {name:?}: {e:?}")))?;
        out.push((name, histogram));
    }
    Ok(out)
}

/// `tapedeck replay merge` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// The shards' report directories (each with report.json and histograms.bin).
    #[arg(required = true, env = "TAPEDECK_MERGE_DIRS", value_delimiter = ' ')]
    pub dirs: Vec<PathBuf>,

    /// Where to write the merged histograms.bin and summary.json.
    #[arg(long, env = "TAPEDECK_MERGE_OUT")]
    pub out: PathBuf,

    /// Also write summary.json here (for example `/dev/termination-log`, where Kubernetes
    /// reads a finished container's message).
    #[arg(long, env = "TAPEDECK_MERGE_SUMMARY")]
    pub summary: Option<PathBuf>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Requests counted.
    pub count: u64,
}

impl Percentiles {
    /// The percentiles of a µs histogram.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50: ms(histogram.value_at_quantile(0.5)),
            p90: ms(histogram.value_at_quantile(0.9)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
            count: histogram.len(),
        }
    }
}

/// A merged group of differences.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct MergedDiff {
    /// The endpoint.
    pub endpoint: String,
    /// The field.
    pub field: String,
    /// Responses with it, over every shard.
    pub count: u64,
}

/// What `merge` writes to summary.json.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    /// Format version, 1.
    pub version: u32,
    /// The shards merged.
    pub shards: u32,
    /// `pass`, `fail`, `inconclusive` or `error` (a shard could not run): the worst of the
    /// shards' verdicts (error, then fail, then inconclusive, then pass).
    pub verdict: String,
    /// Requests sent, over every shard.
    pub requests: u64,
    /// Errors among them.
    pub errors: u64,
    /// errors ÷ requests.
    pub error_rate: f64,
    /// Requests ÷ the longest shard's duration (the shards ran side by side).
    pub rps: f64,
    /// The longest shard's duration, seconds.
    pub duration_s: f64,
    /// Latency of every request (the shards' histograms added).
    pub latency: Percentiles,
    /// Latency per endpoint.
    pub endpoints: BTreeMap<String, Percentiles>,
    /// The most frequent differences, most first (at most 5).
    pub top_diffs: Vec<MergedDiff>,
}

impl Summary {
    /// The exit code of the verdict: 0 pass, 1 fail, 2 error, 3 inconclusive.
    pub fn exit_code(&self) -> u8 {
        match self.verdict.as_str() {
            "pass" => 0,
            "fail" => 1,
            "inconclusive" => 3,
            _ => 2,
        }
    }
}

fn rank(verdict: &str) -> u8 {
    match verdict {
        "error" => 3,
        "fail" => 2,
        "inconclusive" => 1,
        _ => 0,
    }
}

/// Merges the shard report directories in `args.dirs` into `args.out`.
pub fn merge(args: &MergeArgs) -> Result<Summary> {
    let mut histograms: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let (mut requests, mut errors, mut duration_s) = (0u64, 0u64, 0f64);
    let mut verdict = "pass".to_owned();
    let mut diffs: BTreeMap<(String, String), u64> = BTreeMap::new();
    for dir in &args.dirs {
        for (name, histogram) in read_histograms(&dir.join(HISTOGRAMS_FILE))? {
            histograms
                .entry(name)
                .or_insert_with(stats::histogram)
                .add(&histogram)
                .map_err(|e| Error::Args(format!("{}: {e:?}", dir.display())))?;
        }
        let path = dir.join("report.json");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        let report: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Read {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let number = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        requests += number(&report["overall"]["requests"]);
        errors += number(&report["overall"]["errors"]);
        duration_s = duration_s.max(report["duration_s"].as_f64().unwrap_or(0.0));
        let shard_verdict = report["verdict"]
            .as_str()
            .or_else(|| report["slo"]["verdict"].as_str())
            .unwrap_or("error")
            .to_ascii_lowercase();
        if rank(&shard_verdict) > rank(&verdict) {
            verdict = shard_verdict;
        }
        for group in report["diffs"].as_array().into_iter().flatten() {
            let key = (
                group["endpoint"].as_str().unwrap_or_default().to_owned(),
                group["field"].as_str().unwrap_or_default().to_owned(),
            );
            *diffs.entry(key).or_insert(0) += number(&group["count"]);
        }
    }
    let overall = histograms
        .get(OVERALL)
        .map(Percentiles::of)
        .unwrap_or_else(|| Percentiles::of(&stats::histogram()));
    let mut top_diffs: Vec<MergedDiff> = diffs
        .into_iter()
        .map(|((endpoint, field), count)| MergedDiff {
            endpoint,
            field,
            count,
        })
        .collect();
    top_diffs.sort_by_key(|d| std::cmp::Reverse(d.count));
    top_diffs.truncate(5);
    let summary = Summary {
        version: 1,
        shards: args.dirs.len() as u32,
        verdict,
        requests,
        errors,
        error_rate: if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        },
        rps: if duration_s > 0.0 {
            requests as f64 / duration_s
        } else {
            0.0
        },
        duration_s,
        latency: overall,
        endpoints: histograms
            .iter()
            .filter(|(name, _)| name.as_str() != OVERALL)
            .map(|(name, h)| (name.clone(), Percentiles::of(h)))
            .collect(),
        top_diffs,
    };
    let mut merged = Stats::default();
    for (name, histogram) in histograms {
        if name != OVERALL {
            merged.endpoints.entry(name).or_default().latency = histogram;
        }
    }
    write_histograms(&merged, &args.out)?;
    let json =
        serde_json::to_vec_pretty(&summary).map_err(|e| Error::Args(format!("summary: {e}")))?;
    let mut targets = vec![args.out.join(SUMMARY_FILE)];
    targets.extend(args.summary.clone());
    for path in targets {
        std::fs::write(&path, &json).map_err(|source| Error::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(summary)
}

/// The subcommands of `tapedeck replay`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ReplayCommand {
    /// Merge the reports of shards (`--shard K/N` runs) into one: histograms merged, not
    /// averaged; exits with the merged verdict (0 pass, 1 fail, 2 a shard could not run,
    /// 3 inconclusive).
    Merge(MergeArgs),
}
