//! The collector benchmarks.
//!
//! `ingest`: a collector in this process (default settings, data on local disk) and concurrent
//! pushers sending pre-encoded `ExchangeBatch`es (1 KiB request and 1 KiB response bodies,
//! realistic headers) over gRPC, as the filters would. Measured: exchanges and MB per second
//! acknowledged (so durable in the write-ahead log), over a fixed window after a warm-up; at the
//! end the collector is stopped (final flush) and the stored row count is checked. The pushers
//! run on their own runtime (threads `bench-pusher`) and send pre-built gRPC frames without
//! copying them; the CPU of the measured window is reported for the whole process, the pushers
//! and the collector (the difference), per acknowledged exchange.
//!
//! `query`: a dataset of N exchanges (10 million by default) written once as the collector
//! writes it (zstd Parquet, `service=/date=/hour=`), then three queries timed with tapedeck's
//! SQL engine and with DuckDB (PyPI `duckdb`, from the project's `.venv`) on the same files in
//! the same run, best of three each, both with 2 threads.
//!
//! Run with `./x bench ingest` and `./x bench query` (builds in release).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use bytes::{Buf as _, Bytes};
use clap::{Parser, Subcommand};
use tapedeck_collector::query::{QueryArgs, open_offline};
use tapedeck_collector::writer::FlushCompression;
use tapedeck_collector::{CollectorArgs, Listeners};
use tapedeck_proto::prost::Message as _;
use tapedeck_proto::tonic;
use tapedeck_proto::{Direction, Exchange, ExchangeBatch, Header, Message, Protocol, PushAck};
use tokio::net::TcpListener;

/// The same allocator as the `tapedeck` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Durable ingest rate.
    Ingest {
        /// Seconds measured.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Seconds of warm-up.
        #[arg(long, default_value_t = 3)]
        warmup: u64,
        /// Concurrent pushers (one HTTP/2 connection each).
        #[arg(long, default_value_t = 8)]
        pushers: usize,
        /// Exchanges per push.
        #[arg(long, default_value_t = 250)]
        batch: usize,
        /// Request and response body bytes.
        #[arg(long, default_value_t = 1024)]
        body_bytes: usize,
        /// The collector's --flush-interval (seconds); a long one measures ingest alone.
        #[arg(long, default_value_t = 10)]
        flush_interval: u64,
        /// The collector's --buffer-max-bytes.
        #[arg(long, default_value_t = 512 << 20)]
        buffer_max_bytes: u64,
        /// Collectors in this process, each with its own data folder; pushers take turns.
        #[arg(long, default_value_t = 1)]
        collectors: usize,
        /// The collector's --flush-compression (codec of freshly flushed Parquet pages).
        #[arg(long, value_enum, default_value_t = FlushCompression::Lz4)]
        flush_compression: FlushCompression,
    },
    /// Queries over N exchanges, beside DuckDB.
    Query {
        /// Exchanges in the dataset.
        #[arg(long, default_value_t = 10_000_000)]
        rows: usize,
        /// Where the dataset is kept between runs (written once).
        #[arg(long, default_value = "/tmp/tapedeck-bench-dataset")]
        dataset: PathBuf,
        /// Python with `duckdb` installed.
        #[arg(long, default_value = ".venv/bin/python")]
        python: PathBuf,
        /// Runs per query (the best counts).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

fn main() -> Result<()> {
    // As the `tapedeck` binary does, before any thread exists.
    tapedeck_cli::allocator::reuse_freed_pages();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(Args::parse()))
}

async fn run(args: Args) -> Result<()> {
    match args.command {
        Bench::Ingest {
            seconds,
            warmup,
            pushers,
            batch,
            body_bytes,
            flush_interval,
            buffer_max_bytes,
            collectors,
            flush_compression,
        } => {
            let args = CollectorArgs {
                flush_interval,
                flush_compression,
                buffer_max_bytes,
                flush_rows: if flush_interval > 10 {
                    usize::MAX
                } else {
                    200_000
                },
                ..CollectorArgs::default()
            };
            ingest(
                args, seconds, warmup, pushers, batch, body_bytes, collectors,
            )
            .await
        }
        Bench::Query {
            rows,
            dataset,
            python,
            runs,
        } => query(rows, &dataset, &python, runs).await,
    }
}

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PATHS: usize = 50;

fn h(name: &str, value: impl Into<Vec<u8>>) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

/// One realistic exchange: `body_bytes` of JSON-ish request and response body.
fn exchange(rng: &mut Rng, n: u64, start: u64, body_bytes: usize) -> Exchange {
    let path_index = rng.below(PATHS as u64);
    let status = match rng.below(100) {
        0..=79 => 200,
        80..=89 => 201,
        90..=94 => 404,
        95..=97 => 500,
        _ => 503,
    };
    // Latency: a per-path base plus an exponential-ish tail.
    let base = 200_000 + path_index * 40_000;
    let tail = (rng.below(1_000_000) as f64 / 1_000_000.0)
        .max(1e-9)
        .ln()
        .abs()
        * 3_000_000.0;
    let needle = if rng.below(100) == 0 {
        "needle-error"
    } else {
        "ok"
    };
    let mut body = format!("{{\"order\":\"{n:012}\",\"status\":\"{needle}\",\"items\":[");
    while body.len() + 40 < body_bytes {
        body.push_str(&format!(
            "{{\"sku\":\"{:08}\",\"qty\":{}}},",
            rng.below(100_000_000),
            rng.below(9) + 1
        ));
    }
    body.push_str("{}]}");
    let request_body = body.replace("order", "query").into_bytes();
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_le_bytes());
    id[8..].copy_from_slice(&rng.next().to_le_bytes());
    Exchange {
        id: id.to_vec(),
        trace_id: format!("{:032x}", rng.next() as u128 * 31),
        start_unix_nanos: start,
        duration_nanos: base + tail as u64,
        response_headers_nanos: base,
        direction: if n.is_multiple_of(4) {
            Direction::Outbound
        } else {
            Direction::Inbound
        } as i32,
        workload: "orders".into(),
        namespace: "shop".into(),
        pod: "orders-7d9f8b6c5-x2k4p".into(),
        peer_address: "10.0.3.17:43122".into(),
        upstream_cluster: "inbound|8080||".into(),
        route_name: "default".into(),
        protocol: Protocol::Http11 as i32,
        scheme: "http".into(),
        authority: "orders.shop.svc.cluster.local".into(),
        method: if path_index.is_multiple_of(3) {
            "POST"
        } else {
            "GET"
        }
        .into(),
        path: format!("/api/v1/resource-{path_index:02}"),
        request: Some(Message {
            headers: vec![
                h("content-type", "application/json"),
                h("user-agent", "checkout/2.3.1"),
                h("x-request-id", format!("{:016x}", rng.next())),
                h(
                    "traceparent",
                    format!("00-{:032x}-{:016x}-01", n, rng.next()),
                ),
                h("accept", "application/json"),
            ],
            body_size: request_body.len() as u64,
            body: request_body,
            ..Default::default()
        }),
        status,
        response: Some(Message {
            headers: vec![
                h("content-type", "application/json"),
                h("date", "Fri, 27 Nov 2026 13:45:10 GMT"),
                h("x-envoy-upstream-service-time", "3"),
            ],
            body_size: body.len() as u64,
            body: body.into_bytes(),
            ..Default::default()
        }),
        sample_rate: 1.0,
        filter_version: "0.1.0".into(),
        ..Default::default()
    }
}

/// One pusher's HTTP/2 connection, sending `Capture/Push` requests whose gRPC frames (the
/// 5-byte prefix and the encoded `ExchangeBatch`) were built once: each request's body is that
/// `Bytes`, shared and not copied, so the pushers spend no CPU encoding or copying batches (the
/// filters that push in production run on other machines).
struct Pusher {
    sender: hyper::client::conn::http2::SendRequest<http_body_util::Full<Bytes>>,
    uri: http::Uri,
}

/// What a push got back.
enum Pushed {
    Accepted(u64),
    Refused(tonic::Code, String),
}

impl Pusher {
    async fn connect(address: std::net::SocketAddr) -> Result<Self> {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(16 << 20)
                .handshake(hyper_util::rt::TokioIo::new(stream))
                .await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            uri: format!("http://{address}/tapedeck.capture.v1.Capture/Push").parse()?,
        })
    }

    async fn push(&mut self, framed: Bytes) -> Result<Pushed> {
        use http_body_util::BodyExt as _;
        self.sender.ready().await?;
        let request = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(http_body_util::Full::new(framed))?;
        let response = self.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let collected = body.collect().await?;
        // A trailers-only response carries the status in its headers.
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let field = |name: &str| {
            trailers
                .get(name)
                .or_else(|| parts.headers.get(name))
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        let code = field("grpc-status")
            .and_then(|code| code.parse::<i32>().ok())
            .map_or(tonic::Code::Unknown, tonic::Code::from_i32);
        if code != tonic::Code::Ok {
            return Ok(Pushed::Refused(
                code,
                field("grpc-message").unwrap_or_default(),
            ));
        }
        let mut data = collected.to_bytes();
        ensure!(data.len() >= 5, "a gRPC response without its message");
        data.advance(5);
        Ok(Pushed::Accepted(PushAck::decode(data)?.accepted))
    }
}

/// A gRPC frame: no compression, the length, the message.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    Bytes::from(frame)
}

async fn ingest(
    base: CollectorArgs,
    seconds: u64,
    warmup: u64,
    pushers: usize,
    batch: usize,
    body_bytes: usize,
    collectors: usize,
) -> Result<()> {
    let mut running = Vec::new();
    for _ in 0..collectors.max(1) {
        let data = tempfile::tempdir_in(std::env::temp_dir())?;
        let args = CollectorArgs {
            data: data.path().to_path_buf(),
            ..base.clone()
        };
        let listeners = Listeners {
            grpc: TcpListener::bind("127.0.0.1:0").await?,
            http: TcpListener::bind("127.0.0.1:0").await?,
            flight: None,
        };
        let grpc = listeners.grpc.local_addr()?;
        let store = tapedeck_collector::store::open_store(data.path(), None)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let collector = tokio::spawn(tapedeck_collector::run_with(
            args,
            listeners,
            store,
            async {
                let _ = stopped.await;
            },
        ));
        running.push((data, grpc, stop, collector));
    }

    // 32 distinct batches, encoded once.
    let mut rng = Rng(7);
    let start = 1_795_787_110_000_000_000u64;
    let batches: Vec<Bytes> = (0..32u64)
        .map(|b| {
            let exchanges = (0..batch as u64)
                .map(|i| exchange(&mut rng, b * batch as u64 + i, start + i * 1000, body_bytes))
                .collect();
            Bytes::from(
                ExchangeBatch {
                    exchanges,
                    sequence: b + 1,
                    ..Default::default()
                }
                .encode_to_vec(),
            )
        })
        .collect();
    let framed: Vec<Bytes> = batches.iter().map(|batch| grpc_frame(batch)).collect();
    let batch_bytes = batches.iter().map(Bytes::len).sum::<usize>() as f64 / batches.len() as f64;
    let limits = machine_limits(&batches, running[0].0.path(), base.flush_compression).await?;
    let acked = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The pushers stand in for sidecars on other machines: they run on their own runtime
    // (threads named `bench-pusher`), so that their CPU can be told apart from the collector's.
    let pusher_runtime = PusherRuntime(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(PUSHER_THREAD)
            .enable_all()
            .build()?,
    ));
    let mut tasks = Vec::new();
    for p in 0..pushers {
        let (framed, acked, measuring, done) = (
            framed.clone(),
            acked.clone(),
            measuring.clone(),
            done.clone(),
        );
        let refused = refused.clone();
        let address = running[p % running.len()].1;
        tasks.push(pusher_runtime.handle().spawn(async move {
            let mut pusher = Pusher::connect(address).await?;
            let mut total = 0u64;
            let mut i = p;
            while !done.load(Ordering::Relaxed) {
                match pusher.push(framed[i % framed.len()].clone()).await? {
                    Pushed::Accepted(accepted) => {
                        if measuring.load(Ordering::Relaxed) {
                            acked.fetch_add(accepted, Ordering::Relaxed);
                        }
                        total += batch as u64;
                        i += pushers;
                    }
                    // Back-pressure: the collector is flushing; a filter would drop, a
                    // benchmark pusher waits and sends the same batch again.
                    Pushed::Refused(tonic::Code::ResourceExhausted, _) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Pushed::Refused(code, message) => bail!("push refused: {code:?} {message}"),
                }
            }
            anyhow::Ok(total)
        }));
    }
    tokio::time::sleep(Duration::from_secs(warmup)).await;
    let cpu_before = Cpu::now()?;
    measuring.store(true, Ordering::Relaxed);
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = began.elapsed().as_secs_f64();
    let in_window = acked.load(Ordering::Relaxed);
    let cpu = Cpu::now()?.since(&cpu_before);
    done.store(true, Ordering::Relaxed);
    let mut pushed = 0;
    for task in tasks {
        pushed += task.await??;
    }
    drop(pusher_runtime);
    let stopping = Instant::now();
    let mut stored = 0;
    let mut folders = Vec::new();
    for (data, _, stop, collector) in running {
        let _ = stop.send(());
        collector.await??;
        folders.push(data);
    }
    let final_flush = stopping.elapsed();
    for data in &folders {
        let engine = open_offline(data.path(), None, &QueryArgs::default()).await?;
        let (_, rows) = engine.sql("SELECT count(*) FROM exchanges").await?;
        stored += rows[0]
            .column(0)
            .as_any()
            .downcast_ref::<tapedeck_proto::arrow_array::Int64Array>()
            .context("count")?
            .value(0) as u64;
    }
    ensure!(
        stored == pushed,
        "pushed and acknowledged {pushed} exchanges but {stored} are stored"
    );
    // The flushed files (no hour closes within a run, so nothing is compacted).
    let (parquet_files, parquet_bytes) = folders.iter().try_fold((0u64, 0u64), |sum, data| {
        parquet_size(
            &data.path().join(tapedeck_collector::config::STORE_DIR),
            sum,
        )
    })?;
    let rate = in_window as f64 / elapsed;
    let per_exchange = batch_bytes / batch as f64;
    println!("| metric | value |");
    println!("| --- | --- |");
    println!(
        "| disk: fdatasync'd sequential write, one fdatasync per {:.0} KiB (a push) | {:.0} MB/s = {:.0} exchanges/s |",
        batch_bytes / 1024.0,
        limits.disk_push / 1e6,
        limits.disk_push / per_exchange_bytes(batch_bytes, batch)
    );
    println!(
        "| disk: the same over a file already written (a reused log segment) | {:.0} MB/s = {:.0} exchanges/s |",
        limits.disk_push_over / 1e6,
        limits.disk_push_over / per_exchange_bytes(batch_bytes, batch)
    );
    println!(
        "| disk: fdatasync'd sequential write, 4 MiB writes | {:.0} MB/s = {:.0} exchanges/s |",
        limits.disk_4m / 1e6,
        limits.disk_4m / per_exchange_bytes(batch_bytes, batch)
    );
    println!(
        "| protobuf decode, one core | {:.0} MB/s = {:.0} exchanges/s |",
        limits.decode_exchanges * per_exchange_bytes(batch_bytes, batch) / 1e6,
        limits.decode_exchanges
    );
    println!(
        "| Arrow conversion of decoded batches, one core | {:.0} exchanges/s = {:.2} µs per exchange |",
        limits.arrow_exchanges,
        1e6 / limits.arrow_exchanges
    );
    println!(
        "| Parquet encoding as the flush does it ({:?} pages, {} threads, into memory) | {:.0} exchanges/s, {:.2} µs of CPU per exchange |",
        base.flush_compression,
        tapedeck_collector::writer::encoding_threads(),
        limits.parquet_exchanges,
        limits.parquet_cpu_per_exchange * 1e6
    );
    println!(
        "| decode, check and Arrow rows by partition, one core: prost (`ExchangeBatch::decode`, `validate`, `Buffer::prepare`) | {:.0} exchanges/s = {:.2} µs/exchange |",
        limits.prost_rows_exchanges,
        1e6 / limits.prost_rows_exchanges
    );
    println!(
        "| the same in place (`Received::decode`, `Received::prepare`: the push path) | {:.0} exchanges/s = {:.2} µs/exchange |",
        limits.in_place_rows_exchanges,
        1e6 / limits.in_place_rows_exchanges
    );
    println!("| collectors | {} |", folders.len());
    println!("| exchanges/s acknowledged (durable) | {rate:.0} |");
    println!(
        "| MB/s acknowledged (encoded protobuf) | {:.1} |",
        rate * per_exchange / 1e6
    );
    println!("| bytes per exchange (encoded) | {per_exchange:.0} |");
    println!("| stored = pushed after shutdown | {stored} = {pushed} |");
    println!(
        "| flushed Parquet ({:?} pages) | {parquet_files} files, {:.1} MB, {:.0} B per exchange |",
        base.flush_compression,
        parquet_bytes as f64 / 1e6,
        parquet_bytes as f64 / stored.max(1) as f64
    );
    println!(
        "| final flush at shutdown | {:.2} s |",
        final_flush.as_secs_f64()
    );
    let per_exchange_us = |seconds: f64| seconds * 1e6 / in_window.max(1) as f64;
    println!(
        "| CPU in the window: whole process | {:.1} s = {:.2} CPUs = {:.1} µs per exchange |",
        cpu.process,
        cpu.process / elapsed,
        per_exchange_us(cpu.process)
    );
    println!(
        "| CPU in the window: collector (process − pushers) | {:.1} s = {:.2} CPUs = {:.1} µs per exchange |",
        cpu.process - cpu.pushers,
        (cpu.process - cpu.pushers) / elapsed,
        per_exchange_us(cpu.process - cpu.pushers)
    );
    println!(
        "| CPU in the window: pushers (`{PUSHER_THREAD}` threads) | {:.1} s = {:.2} CPUs = {:.1} µs per exchange |",
        cpu.pushers,
        cpu.pushers / elapsed,
        per_exchange_us(cpu.pushers)
    );
    println!(
        "| pushes refused with RESOURCE_EXHAUSTED (retried) | {} |",
        refused.load(Ordering::Relaxed)
    );
    println!();
    println!(
        "({pushers} pushers, {batch} exchanges per push, {body_bytes} B request + {body_bytes} B response bodies, {seconds} s measured after {warmup} s warm-up; collector defaults, data on local disk; the disk figures are measured in the collectors' temporary folder just before)"
    );
    Ok(())
}

/// The name of the pushers' runtime threads.
const PUSHER_THREAD: &str = "bench-pusher";

/// The pushers' runtime, shut down without waiting when dropped (also on an error's early
/// return: a runtime may not be dropped where blocking is not allowed).
struct PusherRuntime(Option<tokio::runtime::Runtime>);

impl PusherRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("running").handle()
    }
}

impl Drop for PusherRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// CPU seconds (user + system) used so far: by the whole process, and by the pushers' threads.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    process: f64,
    pushers: f64,
}

impl Cpu {
    /// Reads `getrusage(RUSAGE_SELF)` and, per thread, `/proc/self/task/*/stat`.
    fn now() -> Result<Self> {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `usage` is a writable rusage.
        ensure!(
            unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0,
            "getrusage failed"
        );
        // SAFETY: getrusage succeeded, so it filled `usage`.
        let usage = unsafe { usage.assume_init() };
        let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
        let process = seconds(usage.ru_utime) + seconds(usage.ru_stime);
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let mut pushers = 0.0;
        for task in std::fs::read_dir("/proc/self/task")? {
            // A thread may end between the listing and the read.
            let Ok(stat) = std::fs::read_to_string(task?.path().join("stat")) else {
                continue;
            };
            let Some((name, rest)) = stat
                .split_once(" (")
                .and_then(|(_, rest)| rest.rsplit_once(") "))
            else {
                continue;
            };
            if !name.starts_with(PUSHER_THREAD) {
                continue;
            }
            // After the name: state is field 3, utime field 14, stime field 15.
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0);
            let stime: f64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0.0);
            pushers += (utime + stime) / ticks;
        }
        Ok(Self { process, pushers })
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            process: self.process - before.process,
            pushers: self.pushers - before.pushers,
        }
    }
}

/// Adds the count and bytes of the `.parquet` files under `dir` to `sum`.
fn parquet_size(dir: &Path, mut sum: (u64, u64)) -> Result<(u64, u64)> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sum = parquet_size(&entry.path(), sum)?;
        } else if entry.path().extension().is_some_and(|ext| ext == "parquet") {
            sum = (sum.0 + 1, sum.1 + entry.metadata()?.len());
        }
    }
    Ok(sum)
}

fn per_exchange_bytes(batch_bytes: f64, batch: usize) -> f64 {
    batch_bytes / batch as f64
}

/// What the machine allows, measured before the collectors get busy.
struct Limits {
    /// Bytes/s written sequentially with one fdatasync per push-sized write.
    disk_push: f64,
    /// The same written over a file already that long (a reused log segment).
    disk_push_over: f64,
    /// Bytes/s written sequentially in 4 MiB writes, one fdatasync at the end.
    disk_4m: f64,
    /// Exchanges/s `ExchangeBatch::decode` gets through on one core.
    decode_exchanges: f64,
    /// Exchanges/s the conversion of decoded batches to Arrow gets through on one core.
    arrow_exchanges: f64,
    /// The flush's Parquet encoding (the collector's writer, its codec and threads, into
    /// memory): CPU seconds per exchange and exchanges/s of wall time.
    parquet_cpu_per_exchange: f64,
    parquet_exchanges: f64,
    /// Exchanges/s decoded, checked and converted to Arrow rows by partition through prost
    /// (`ExchangeBatch::decode`, `ingest::validate`, `Buffer::prepare`), on one core.
    prost_rows_exchanges: f64,
    /// The same through the push path (`Received::decode`, `Received::prepare`).
    in_place_rows_exchanges: f64,
}

async fn machine_limits(
    batches: &[Bytes],
    dir: &Path,
    compression: FlushCompression,
) -> Result<Limits> {
    use std::io::Write as _;
    let path = dir.join("limit.bin");
    // `reuse`: written over a file already that long, as the log writes a reused segment.
    let write = |chunk: usize, total: usize, sync_each: bool, reuse: bool| -> Result<f64> {
        let mut file = if reuse {
            std::fs::OpenOptions::new().write(true).open(&path)?
        } else {
            std::fs::File::create(&path)?
        };
        let data = vec![0x5au8; chunk];
        let began = Instant::now();
        let mut written = 0;
        while written < total {
            file.write_all(&data)?;
            if sync_each {
                file.sync_data()?;
            }
            written += chunk;
        }
        file.sync_data()?;
        Ok(written as f64 / began.elapsed().as_secs_f64())
    };
    let push = batches[0].len();
    let disk_push = write(push, 512 << 20, true, false)?;
    let disk_push_over = write(push, 512 << 20, true, true)?;
    let disk_4m = write(4 << 20, 1 << 30, false, false)?;
    std::fs::remove_file(&path)?;
    let began = Instant::now();
    let mut decoded = 0usize;
    while began.elapsed() < Duration::from_secs(2) {
        for bytes in batches {
            let batch = ExchangeBatch::decode(bytes.clone())?;
            decoded += batch.exchanges.len();
        }
    }
    let decode_exchanges = decoded as f64 / began.elapsed().as_secs_f64();
    // The stages after decoding, each alone: Arrow conversion (one core), then the flush's
    // Parquet encoding of what was converted, as the collector's writer does it (all its
    // encoding threads) into an in-memory store, so the disk plays no part.
    let decoded: Vec<ExchangeBatch> = batches
        .iter()
        .map(|bytes| ExchangeBatch::decode(bytes.clone()))
        .collect::<Result<_, _>>()?;
    let began = Instant::now();
    let mut records = Vec::new();
    let mut converted = 0usize;
    while began.elapsed() < Duration::from_secs(2) || records.len() < 4 * decoded.len() {
        for batch in &decoded {
            records.push(tapedeck_proto::arrow::to_record_batch(&batch.exchanges)?);
            converted += batch.exchanges.len();
        }
    }
    let arrow_exchanges = converted as f64 / began.elapsed().as_secs_f64();
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let partition = tapedeck_collector::layout::PartitionKey::of(&decoded[0].exchanges[0]);
    let (cpu, began) = (Cpu::now()?, Instant::now());
    let mut encoded = 0usize;
    // Files of one row group's worth of pushes, as the flush writes them.
    let per_file = tapedeck_collector::writer::ROW_GROUP_ROWS / decoded[0].exchanges.len();
    for (n, chunk) in records.chunks(per_file.max(1)).enumerate() {
        let name = tapedeck_collector::layout::FileName::flushed(1, n as u64 + 1);
        tapedeck_collector::writer::write_partition(&store, &partition, &name, chunk, compression)
            .await?;
        encoded += chunk
            .iter()
            .map(tapedeck_proto::arrow_array::RecordBatch::num_rows)
            .sum::<usize>();
    }
    let (cpu, wall) = (Cpu::now()?.process - cpu.process, began.elapsed());
    let rate = |convert: &dyn Fn(&Bytes) -> Result<usize>| -> Result<f64> {
        let began = Instant::now();
        let mut converted = 0usize;
        while began.elapsed() < Duration::from_secs(2) {
            for bytes in batches {
                converted += convert(bytes)?;
            }
        }
        Ok(converted as f64 / began.elapsed().as_secs_f64())
    };
    let prost_rows_exchanges = rate(&|bytes| {
        let batch = ExchangeBatch::decode(bytes.clone())?;
        tapedeck_collector::ingest::validate(&batch)?;
        tapedeck_collector::buffer::Buffer::prepare(&batch.exchanges)?;
        Ok(batch.exchanges.len())
    })?;
    let in_place_rows_exchanges = rate(&|bytes| {
        let mut received = tapedeck_collector::ingest::Received::decode(bytes.clone())?;
        received.check()?;
        received.prepare()?;
        Ok(received.exchanges())
    })?;
    Ok(Limits {
        disk_push,
        disk_push_over,
        disk_4m,
        decode_exchanges,
        arrow_exchanges,
        parquet_cpu_per_exchange: cpu / encoded as f64,
        parquet_exchanges: encoded as f64 / wall.as_secs_f64(),
        prost_rows_exchanges,
        in_place_rows_exchanges,
    })
}

const QUERIES: [(&str, &str, &str); 3] = [
    (
        "count by status",
        "SELECT status, count(*) AS n FROM exchanges GROUP BY status ORDER BY status",
        "SELECT status, count(*) AS n FROM exchanges GROUP BY status ORDER BY status",
    ),
    (
        "p99 latency by path",
        "SELECT path, approx_percentile_cont(duration_ns, 0.99) AS p99 FROM exchanges GROUP BY path ORDER BY p99 DESC, path LIMIT 10",
        "SELECT path, approx_quantile(duration_ns, 0.99) AS p99 FROM exchanges GROUP BY path ORDER BY p99 DESC, path LIMIT 10",
    ),
    (
        "bodies containing a string",
        "SELECT count(*) AS n FROM exchanges WHERE strpos(body_text(response_body), 'needle-error') > 0",
        "SELECT count(*) AS n FROM exchanges WHERE contains(CAST(response_body AS VARCHAR), 'needle-error')",
    ),
];

async fn query(rows: usize, dataset: &Path, python: &Path, runs: usize) -> Result<()> {
    // The marker names what the files depend on, so a dataset written otherwise is rewritten.
    let marker = dataset.join(format!(
        ".complete-{rows}-zstd{}-nodict-bodies",
        tapedeck_collector::writer::ZSTD_LEVEL
    ));
    if !marker.exists() {
        if dataset.exists() {
            std::fs::remove_dir_all(dataset)
                .with_context(|| format!("clearing {}", dataset.display()))?;
        }
        std::fs::create_dir_all(dataset)?;
        let store = tapedeck_collector::store::open_store(dataset, None)?;
        let began = Instant::now();
        let mut rng = Rng(42);
        const CHUNK: usize = 250_000;
        // Spread over 24 hours from 2026-11-26T00:00Z, in time order, as a collector would.
        let first = 1_795_651_200_000_000_000u64;
        let step = 86_400_000_000_000u64 / rows as u64;
        let mut n = 0u64;
        while (n as usize) < rows {
            let count = CHUNK.min(rows - n as usize) as u64;
            let exchanges: Vec<Exchange> = (n..n + count)
                .map(|i| exchange(&mut rng, i, first + i * step, 256))
                .collect();
            tapedeck_collector::writer::write_exchanges(&store.store, 1, &exchanges).await?;
            n += count;
            eprintln!(
                "dataset: {n} of {rows} exchanges written ({:.0} s)",
                began.elapsed().as_secs_f64()
            );
        }
        std::fs::write(&marker, b"")?;
    }
    let files = walk(&dataset.join("store"))?;
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "dataset: {} Parquet files, {:.2} GB",
        files.len(),
        bytes as f64 / 1e9
    );

    let args = QueryArgs {
        timeout: 600,
        memory: 8 << 30,
        max_rows: 0,
        concurrency: 1,
    };
    // As a collector does after each flush: readers may cache the listing until the next change.
    let handle = tapedeck_collector::store::open_store(dataset, None)?;
    handle.changes.publish(&handle.store, 1).await?;
    let engine = open_offline(dataset, None, &args).await?;
    let mut ours = Vec::new();
    for (name, sql, _) in QUERIES {
        let mut best = f64::MAX;
        let mut answer = String::new();
        for _ in 0..runs {
            let began = Instant::now();
            let (schema, batches) = engine
                .sql(sql)
                .await
                .with_context(|| format!("tapedeck: {name}"))?;
            best = best.min(began.elapsed().as_secs_f64());
            answer = tapedeck_collector::query::format_batches(
                &schema,
                &batches,
                tapedeck_collector::query::OutputFormat::Csv,
            )?;
        }
        eprintln!("tapedeck {name}: {best:.3} s\n{answer}");
        ours.push(best);
    }

    let script = format!(
        r#"
import duckdb, json, sys, time
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET enable_progress_bar = false")
con.execute("CREATE VIEW exchanges AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
out = []
for sql in json.loads(sys.argv[1]):
    best = None
    for _ in range({runs}):
        began = time.perf_counter()
        rows = con.execute(sql).fetchall()
        took = time.perf_counter() - began
        best = took if best is None else min(best, took)
    print(rows, file=sys.stderr)
    out.append(best)
print(json.dumps(out))
"#,
        glob = dataset.join("store/exchanges/*/*/*/*.parquet").display(),
    );
    let duck_sql: Vec<&str> = QUERIES.iter().map(|(_, _, duck)| *duck).collect();
    let output = tokio::process::Command::new(python)
        .args(["-c", &script, &serde_json::to_string(&duck_sql)?])
        .output()
        .await
        .with_context(|| format!("running DuckDB through {}", python.display()))?;
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        bail!(
            "DuckDB failed (is `duckdb` installed in {}?)",
            python.display()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let theirs: Vec<f64> =
        serde_json::from_str(last).with_context(|| format!("DuckDB's timings in {stdout:?}"))?;
    let version = tokio::process::Command::new(python)
        .args(["-c", "import duckdb; print(duckdb.__version__)"])
        .output()
        .await?;
    println!(
        "| query ({rows} exchanges) | tapedeck (DataFusion) s | DuckDB {} s | tapedeck / DuckDB |",
        String::from_utf8_lossy(&version.stdout).trim()
    );
    println!("| --- | --- | --- | --- |");
    for (((name, _, _), ours), theirs) in QUERIES.iter().zip(&ours).zip(&theirs) {
        println!(
            "| {name} | {ours:.3} | {theirs:.3} | {:.2} |",
            ours / theirs
        );
    }
    println!();
    println!(
        "({} Parquet files, {:.2} GB, zstd; best of {runs} runs each; both engines 2 threads)",
        files.len(),
        bytes as f64 / 1e9
    );
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    Ok(out)
}
