//! `./x bench har`: peak memory of importing a large generated HAR file.
//!
//! Writes a browser-like HAR of `--megabytes` MB (entries of about 2 KB, every 100th with an
//! object where HAR wants a string) into a temp dir, then imports it in child processes, one per
//! reader, and prints each one's peak RSS (`VmHWM`), time and counts: `stream` (what
//! `tapedeck import har` does: entry by entry) beside `parse` (the whole document in memory).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Parser;
use tapedeck_har::{Event, ImportOptions, parse, stream, to_exchanges};

#[derive(Debug, Parser)]
struct Args {
    /// Size of the generated file in MB.
    #[arg(long, default_value_t = 300, env = "TAPEDECK_BENCH_HAR_MB")]
    megabytes: u64,
    /// Internal: import FILE with one reader (`stream` or `parse`) and report.
    #[arg(long, env = "TAPEDECK_BENCH_HAR_MODE", requires = "file")]
    mode: Option<String>,
    /// Internal: the file to import.
    #[arg(long, env = "TAPEDECK_BENCH_HAR_FILE")]
    file: Option<PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if let (Some(mode), Some(file)) = (&args.mode, &args.file) {
        return import(mode, file);
    }
    let dir = std::env::temp_dir().join(format!("tapedeck-bench-har-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("large.har");
    let (entries, bytes) = generate(&file, args.megabytes * 1_000_000)?;
    println!(
        "generated {} ({entries} entries, {:.0} MB)",
        file.display(),
        bytes as f64 / 1e6
    );
    let me = std::env::current_exe()?;
    for mode in ["stream", "parse"] {
        let status = Command::new(&me)
            .args(["--mode", mode, "--file"])
            .arg(&file)
            .status()?;
        if !status.success() {
            println!("{mode}: exited with {status}");
        }
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn import(mode: &str, file: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let options = ImportOptions::new("bench");
    let started = Instant::now();
    let (imported, diagnostics) = match mode {
        "stream" => {
            let (mut imported, mut diagnostics) = (0u64, 0u64);
            stream(std::fs::File::open(file)?, &options, |event| match event {
                Event::Exchange(_) => imported += 1,
                Event::Diagnostic(_) => diagnostics += 1,
            })?;
            (imported, diagnostics)
        }
        "parse" => {
            let har = parse(&std::fs::read(file)?)?;
            let (exchanges, diagnostics) = to_exchanges(&har, &options);
            (exchanges.len() as u64, diagnostics.len() as u64)
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    let elapsed = started.elapsed();
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    println!(
        "{mode:>6}: peak RSS {hwm}, {:.1} s, {imported} exchanges, {diagnostics} diagnostics",
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// Writes a HAR of about `target` bytes, one entry at a time; returns entries and bytes.
fn generate(path: &Path, target: u64) -> std::io::Result<(u64, u64)> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let head = r#"{"log": {"version": "1.2", "creator": {"name": "bench-har", "version": "1"}, "entries": ["#;
    out.write_all(head.as_bytes())?;
    let mut written = head.len() as u64;
    let mut entries = 0u64;
    while written < target {
        let separator = if entries == 0 { "" } else { "," };
        let value = if entries % 100 == 99 {
            r#"{"size": [42, 43]}"#.to_owned()
        } else {
            format!(r#""v{entries}""#)
        };
        let body = "x".repeat(1200);
        let entry = format!(
            r#"{separator}
{{"startedDateTime": "2026-11-27T12:{:02}:{:02}.{:03}Z", "time": 12.5, "_priority": "High",
 "request": {{"method": "POST", "url": "https://api.example.com/v1/orders/{entries}?page={}", "httpVersion": "h2",
  "headers": [{{"name": ":authority", "value": "api.example.com"}}, {{"name": "content-type", "value": "application/x-www-form-urlencoded"}}, {{"name": "x-request-id", "value": "req-{entries}"}}],
  "queryString": [], "cookies": [], "headersSize": -1, "bodySize": -1,
  "postData": {{"mimeType": "application/x-www-form-urlencoded", "params": [{{"name": "q", "value": {value}}}]}}}},
 "response": {{"status": 200, "statusText": "", "httpVersion": "h2", "headers": [{{"name": "content-type", "value": "application/json"}}], "cookies": [],
  "content": {{"size": -1, "mimeType": "application/json", "text": "{{\"id\":{entries},\"note\":\"{body}\"}}"}}, "redirectURL": "", "headersSize": -1, "bodySize": -1}},
 "cache": {{}}, "timings": {{"send": 1, "wait": 10, "receive": 1.5}}}}"#,
            (entries / 60_000) % 60,
            (entries / 1000) % 60,
            entries % 1000,
            entries % 7,
        );
        out.write_all(entry.as_bytes())?;
        written += entry.len() as u64;
        entries += 1;
    }
    out.write_all(b"\n]}}\n")?;
    out.flush()?;
    Ok((entries, written + 5))
}
