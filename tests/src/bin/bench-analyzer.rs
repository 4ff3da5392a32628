//! The analyzer benchmark: 1 million exchanges in the store → a snapshot with token discovery.
//!
//! The dataset is the shop fixture (`tapedeck_analyzer::fixture::Shop`) scaled up: logins with
//! JWTs and session cookies, orders minted by POST and used by GET/PUT/receipt, a payment call
//! per order, timestamps in headers and bodies, a 2 KiB binary receipt per order. It is written
//! once as the collector writes it (zstd Parquet, `service=/date=/hour=`). Then the real
//! `tapedeck snapshot create --data …` runs as a child process, timed from spawn to exit, with
//! its peak resident memory taken from `wait4`. Each run must produce the same snapshot id
//! (determinism), and the snapshot is validated after the last run.
//!
//! Run with `./x bench analyzer` (builds in release).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail, ensure};
use clap::Parser;
use tapedeck_analyzer::fixture::Shop;

/// The same allocator as the `tapedeck` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// The `tapedeck` binary to run (a release build).
    #[arg(long)]
    tapedeck: PathBuf,
    /// Exchanges in the store (rounded to whole sessions of 11).
    #[arg(long, default_value_t = 1_000_000)]
    exchanges: u64,
    /// Timed runs.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Where to keep the dataset (reused when it holds the same number of exchanges).
    #[arg(long, default_value = "/tmp/tapedeck-bench-analyzer")]
    dir: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let shop = Shop {
        seed: 11,
        sessions: args.exchanges.div_ceil(11),
        orders_per_session: 2,
        start: 1_795_784_400_000_000_000,
        session_gap_ns: 40_000_000,
        receipt_bytes: 2048,
    };
    let total = shop.sessions * shop.exchanges_per_session();
    let data = args.dir.join(format!("data-{total}"));
    if !data.join("store").exists() {
        write_dataset(&shop, &data)?;
    }
    let store_bytes = du(&data.join("store"))?;
    println!(
        "dataset: {total} exchanges ({} sessions), {:.1} MiB of Parquet in {}",
        shop.sessions,
        store_bytes as f64 / 1048576.0,
        data.display()
    );

    let out = args.dir.join("snapshot");
    let mut ids = Vec::new();
    let mut results = Vec::new();
    for run in 1..=args.runs {
        // The previous run's snapshot is removed and written back to disk before the clock
        // starts, so that neither its deletion nor its writeback is timed.
        let _ = std::fs::remove_dir_all(&out);
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
        let began = Instant::now();
        let child = Command::new(&args.tapedeck)
            .args([
                "snapshot",
                "create",
                "--service",
                "orders",
                "--force",
                "--data",
            ])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", args.tapedeck.display()))?;
        let pid = child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: `rusage` is plain data that wait4 fills; the pid is our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our child and fills the two out-parameters it is given.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let seconds = began.elapsed().as_secs_f64();
        ensure!(
            waited == pid,
            "wait4 failed: {}",
            std::io::Error::last_os_error()
        );
        ensure!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "tapedeck snapshot create failed (status {status})"
        );
        let mut stdout = String::new();
        if let Some(mut pipe) = child.stdout {
            std::io::Read::read_to_string(&mut pipe, &mut stdout)?;
        }
        let id = stdout
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_default()
            .to_owned();
        let peak_mib = usage.ru_maxrss as f64 / 1024.0;
        println!(
            "run {run}: {seconds:.2} s, peak RSS {peak_mib:.0} MiB, snapshot {id}, user {:.1} s + sys {:.1} s CPU",
            tv(usage.ru_utime),
            tv(usage.ru_stime)
        );
        if run == 1 {
            print!("{stdout}");
        }
        ids.push(id);
        results.push((seconds, peak_mib));
    }
    ensure!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "runs gave different snapshots: {ids:?}"
    );
    let check = Command::new(&args.tapedeck)
        .args(["snapshot", "validate"])
        .arg(&out)
        .output()?;
    if !check.status.success() {
        bail!(
            "the snapshot does not validate:\n{}",
            String::from_utf8_lossy(&check.stdout)
        );
    }
    let best = results.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let peak = results.iter().map(|r| r.1).fold(0.0, f64::max);
    println!(
        "result: {total} exchanges -> snapshot with tokens in {best:.2} s (best of {}), peak RSS {peak:.0} MiB, snapshot {:.1} MiB on disk; bar 20 s",
        args.runs,
        du(&out)? as f64 / 1048576.0
    );
    Ok(())
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

fn write_dataset(shop: &Shop, data: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(data);
    std::fs::create_dir_all(data)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let store = tapedeck_collector::store::open_store(data, None)?;
    let writer = tapedeck_collector::writer::random_writer_id();
    let began = Instant::now();
    let per_call = 20_000 / shop.exchanges_per_session();
    let mut session = 0;
    while session < shop.sessions {
        let end = (session + per_call).min(shop.sessions);
        let mut exchanges = Vec::new();
        for s in session..end {
            shop.session(s, &mut exchanges);
        }
        runtime.block_on(tapedeck_collector::writer::write_exchanges(
            &store.store,
            writer,
            &exchanges,
        ))?;
        session = end;
    }
    println!(
        "wrote the dataset in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

fn du(path: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            du(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
