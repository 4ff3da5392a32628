//! Shards and their merge: `tapedeck replay --shard K/N` replays the copies with
//! `copy % N == K` (so N pods, one shard each, together replay every copy once, each copy under
//! its own global number, so sessions and trace ids never collide across shards), and
//! `tapedeck replay merge DIR… --out DIR` merges the shards' reports.
//!
//! Latencies are merged as histograms, never averaged: every report directory gets
//! [`HISTOGRAMS_FILE`], the run's HDR latency histograms (overall and per endpoint) in
//! hdrhistogram's V2 serialization, and the merge adds them bucket by bucket, so the merged
//! percentiles are those of one run that had sent every shard's requests.
//!
//! With `--baseline`, the statistical gate is evaluated once over every shard's pairs, never as
//! the worst of the shards' gates (each shard has fewer samples, and Holm's family is the run's):
//! every report directory also gets [`GATE_FILE`], the gate's settings and goals and one
//! [`verdict::Sample`] per request, and the merge orders the shards' samples by their intended
//! send offset (so `--warmup` trims once, over the whole run) and calls [`verdict::evaluate`].

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

use crate::slo::{self, Checked, Goal};
use crate::stats::{self, Measured, Stats};
use crate::verdict::{self, GateReport, Verdict};
use crate::{Error, Result};

/// The histograms file in a report directory.
pub const HISTOGRAMS_FILE: &str = "histograms.bin";
/// The merged summary `merge` writes into its `--out` directory.
pub const SUMMARY_FILE: &str = "summary.json";
/// The name of the whole run's histogram in [`HISTOGRAMS_FILE`]; the others are endpoints.
pub const OVERALL: &str = "*";
/// The gate's samples in a report directory (with `--baseline`): JSON lines, a [`GateHeader`]
/// then one [`verdict::Sample`] per request.
pub const GATE_FILE: &str = "gate-samples.jsonl";
/// The merged gate's full report `merge` writes into its `--out` directory (summary.json has its
/// goals' overall rows).
pub const MERGED_GATE_FILE: &str = "gate.json";
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

/// The first line of [`GATE_FILE`]: how the shard's gate was set up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateHeader {
    /// Format version, 1.
    pub version: u32,
    /// The gate's settings (`--min-samples`, `--warmup`, `--bootstrap`, `--seed`).
    pub config: verdict::Config,
    /// The comparative goals (`--goal`).
    pub goals: Vec<verdict::Goal>,
}

/// Writes the gate's settings, goals and samples into `dir` as [`GATE_FILE`].
pub fn write_gate(
    config: &verdict::Config,
    goals: &[verdict::Goal],
    samples: &[verdict::Sample],
    dir: &Path,
) -> Result<()> {
    let path = dir.join(GATE_FILE);
    let write_error = |source| Error::Write {
        path: path.display().to_string(),
        source,
    };
    let header = GateHeader {
        version: 1,
        config: config.clone(),
        goals: goals.to_vec(),
    };
    let mut out = Vec::with_capacity(128 * (samples.len() + 1));
    let json_error = |e: serde_json::Error| write_error(std::io::Error::other(e));
    serde_json::to_writer(&mut out, &header).map_err(json_error)?;
    out.push(b'\n');
    for sample in samples {
        serde_json::to_writer(&mut out, sample).map_err(json_error)?;
        out.push(b'\n');
    }
    std::fs::create_dir_all(dir).map_err(write_error)?;
    std::fs::write(&path, out).map_err(write_error)
}

/// Reads a [`GATE_FILE`]: its header and samples in file order.
pub fn read_gate(path: &Path) -> Result<(GateHeader, Vec<verdict::Sample>)> {
    let bad = |line: usize, why: String| Error::Read {
        path: format!("{}:{line}", path.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, why),
    };
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines
        .next()
        .ok_or_else(|| bad(1, "empty: expected a header line".to_owned()))?;
    let header: GateHeader =
        serde_json::from_str(first).map_err(|e| bad(1, format!("header: {e}")))?;
    if header.version != 1 {
        return Err(bad(1, format!("version {}: expected 1", header.version)));
    }
    let samples = lines
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| bad(i + 1, format!("sample: {e}"))))
        .collect::<Result<Vec<verdict::Sample>>>()?;
    Ok((header, samples))
}

/// The shards' samples as one run's: ordered by intended send offset (then shard, then the
/// shard's own order), indices renumbered 0, 1, … in that order, so `--warmup N` trims the
/// run's first N requests once, not N per shard. (The shards start side by side, each offset
/// counted from its own start.)
pub fn merge_samples(shards: Vec<Vec<verdict::Sample>>) -> Vec<verdict::Sample> {
    let mut all: Vec<(usize, verdict::Sample)> = shards
        .into_iter()
        .enumerate()
        .flat_map(|(k, samples)| samples.into_iter().map(move |s| (k, s)))
        .collect();
    all.sort_by_key(|(k, s)| (s.offset_ns, *k, s.index));
    all.into_iter()
        .enumerate()
        .map(|(i, (_, mut s))| {
            s.index = i as u64;
            s
        })
        .collect()
}

/// A goal's verdict over every endpoint, in summary.json.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct MergedGoal {
    /// The goal, normalised (`p99 +10% @ 95%`).
    pub goal: String,
    /// Its worst verdict over the overall and endpoint rows.
    pub verdict: Verdict,
    /// Samples of its overall row.
    pub n: u64,
    /// The overall row's line (estimate, interval, p-value or why inconclusive).
    pub text: String,
}

/// The gate over every shard's samples, in summary.json (the full report: [`MERGED_GATE_FILE`]).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct MergedGate {
    /// The worst goal verdict.
    pub verdict: Verdict,
    /// Samples evaluated (after warm-up), over every shard.
    pub samples: u64,
    /// Samples left out as warm-up.
    pub trimmed: u64,
    /// Tests in Holm's family.
    pub tests: u64,
    /// Per goal.
    pub goals: Vec<MergedGoal>,
}

impl MergedGate {
    fn of(report: &GateReport) -> Self {
        MergedGate {
            verdict: report.verdict,
            samples: report.samples,
            trimmed: report.trimmed,
            tests: report.tests,
            goals: report
                .goals
                .iter()
                .map(|g| MergedGoal {
                    goal: g.goal.text.clone(),
                    verdict: g.verdict,
                    n: g.overall.n,
                    text: g.overall.text.clone(),
                })
                .collect(),
        }
    }
}

/// `tapedeck replay merge` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// The shards' report directories (each with report.json and histograms.bin; with
    /// --baseline, gate-samples.jsonl).
    #[arg(required = true, env = "TAPEDECK_MERGE_DIRS", value_delimiter = ' ')]
    pub dirs: Vec<PathBuf>,

    /// Where to write the merged histograms.bin and summary.json (and, when the shards ran with
    /// --baseline, gate.json: the gate over every shard's pairs).
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
    /// `--slo` goals checked once over the merged run ([`Summary::slo`]) and, with a baseline,
    /// of the gate evaluated once over every shard's samples ([`Summary::gate`]).
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
    /// With `--baseline`: the statistical gate over every shard's samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<MergedGate>,
    /// The `--slo` goals (the same in every shard), checked once over the merged run as one
    /// run checks them: latency from the merged histogram, errors, differences, failed sources
    /// and unresolved markers summed, rps over the longest shard's duration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slo: Vec<Checked>,
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
    // A shard whose report has no verdict it knows could not run.
    let mut shard_error = false;
    let mut goals: Option<Vec<Goal>> = None;
    let (mut diffs_total, mut failed_sources) = (0u64, 0u64);
    let mut unresolved: BTreeMap<String, u64> = BTreeMap::new();
    let mut gates: Vec<Option<(GateHeader, Vec<verdict::Sample>)>> = Vec::new();
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
        shard_error |= rank(&shard_verdict) >= rank("error");
        diffs_total += number(&report["overall"]["diffs"]);
        failed_sources += number(&report["overall"]["failed_sources"]);
        for counted in report["overall"]["unresolved_redacted"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let at = counted["at"].as_str().unwrap_or_default().to_owned();
            *unresolved.entry(at).or_insert(0) += number(&counted["count"]);
        }
        let shard_goals = shard_goals(&report, dir)?;
        match &goals {
            Some(first) if *first != shard_goals => {
                return Err(Error::Args(format!(
                    "{}: its --slo goals differ from {}'s",
                    dir.display(),
                    args.dirs[0].display()
                )));
            }
            Some(_) => {}
            None => goals = Some(shard_goals),
        }
        let gate_path = dir.join(GATE_FILE);
        gates.push(if gate_path.exists() {
            Some(read_gate(&gate_path)?)
        } else {
            None
        });
        for group in report["diffs"].as_array().into_iter().flatten() {
            let key = (
                group["endpoint"].as_str().unwrap_or_default().to_owned(),
                group["field"].as_str().unwrap_or_default().to_owned(),
            );
            *diffs.entry(key).or_insert(0) += number(&group["count"]);
        }
    }
    let gate = merge_gates(&args.dirs, gates)?;
    // The goals checked once, over the merged run, by the run's own metric definitions.
    let merged_run = Measured {
        latency: histograms
            .get(OVERALL)
            .cloned()
            .unwrap_or_else(stats::histogram),
        sent: requests,
        errors,
        failed_sources,
        unresolved,
        ..Measured::default()
    };
    let figures = crate::report::Figures::of(OVERALL, &merged_run, duration_s, diffs_total);
    let checked = slo::check(&goals.unwrap_or_default(), &|metric| {
        crate::report::metric_value(&figures, metric)
    });
    let mut merged_verdict = slo::verdict(&checked);
    if let Some(gate) = &gate {
        merged_verdict = merged_verdict.worst(gate.verdict);
    }
    let verdict = if shard_error {
        "error".to_owned()
    } else {
        merged_verdict.as_str().to_owned()
    };
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
        gate: gate.as_ref().map(MergedGate::of),
        slo: checked,
    };
    let mut merged = Stats::default();
    for (name, histogram) in histograms {
        if name != OVERALL {
            merged.endpoints.entry(name).or_default().latency = histogram;
        }
    }
    write_histograms(&merged, &args.out)?;
    if let Some(gate) = &gate {
        let path = args.out.join(MERGED_GATE_FILE);
        let json =
            serde_json::to_vec_pretty(gate).map_err(|e| Error::Args(format!("gate: {e}")))?;
        std::fs::write(&path, json).map_err(|source| Error::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
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

/// A shard's `--slo` goals, from its report's checked goals.
fn shard_goals(report: &serde_json::Value, dir: &Path) -> Result<Vec<Goal>> {
    let Some(list) = report["slo"].get("goals") else {
        return Ok(Vec::new());
    };
    let checked: Vec<Checked> = serde_json::from_value(list.clone()).map_err(|e| {
        Error::Args(format!(
            "{}: report.json's slo.goals are unreadable: {e}",
            dir.display()
        ))
    })?;
    Ok(checked
        .into_iter()
        .map(|c| Goal {
            text: c.goal,
            metric: c.metric,
            op: c.op,
            threshold: c.threshold,
        })
        .collect())
}

/// The gate over every shard's samples: `None` when no shard had a baseline; an error when only
/// some did, or when their goals or settings differ (one run has one gate).
fn merge_gates(
    dirs: &[PathBuf],
    gates: Vec<Option<(GateHeader, Vec<verdict::Sample>)>>,
) -> Result<Option<GateReport>> {
    if gates.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut header: Option<GateHeader> = None;
    let mut shards = Vec::new();
    for (dir, gate) in dirs.iter().zip(gates) {
        let Some((h, samples)) = gate else {
            return Err(Error::Args(format!(
                "{}: no {GATE_FILE}, while other shards ran with --baseline",
                dir.display()
            )));
        };
        match &header {
            Some(first) if *first != h => {
                return Err(Error::Args(format!(
                    "{}: its --goal or gate settings differ from {}'s",
                    dir.display(),
                    dirs[0].display()
                )));
            }
            Some(_) => {}
            None => header = Some(h),
        }
        shards.push(samples);
    }
    let Some(header) = header else {
        return Ok(None);
    };
    let samples = merge_samples(shards);
    Ok(Some(verdict::evaluate(
        &header.config,
        &header.goals,
        &samples,
    )))
}

/// The subcommands of `tapedeck replay`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ReplayCommand {
    /// Merge the reports of shards (`--shard K/N` runs) into one: histograms merged, not
    /// averaged; with --baseline, the gate evaluated once over every shard's pairs; exits with
    /// the merged verdict (0 pass, 1 fail, 2 a shard could not run, 3 inconclusive).
    Merge(MergeArgs),
}
