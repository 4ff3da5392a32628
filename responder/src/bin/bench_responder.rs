//! `./x bench responder`: the responder serving 10 000 recorded pairs on random paths beside
//! nginx (a small static file: the practical ceiling), WireMock standalone and mountebank with
//! the same 10 000 stubs, all under `wrk` on loopback in one run; then the responder's latency
//! at half its maximum rate (an open-loop client of our own, corrected for coordinated
//! omission) and its memory with 100 000 pairs loaded.
//!
//! Servers run pinned to one core (`taskset -c 0`), load generators to the other (`-c 1`).

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper_util::rt::TokioIo;
use tapedeck_analyzer::snapshot::{Spec, build};
use tapedeck_responder::fixture::{WINDOW_FROM_NS, bench_exchanges};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The host the bench snapshot was recorded against.
const HOST: &str = "bench.svc:8080";

#[derive(Debug, Parser)]
#[command(about = "Responder throughput and latency beside nginx, WireMock and mountebank")]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Internal: run a responder (what the benchmark measures) in this process.
    Serve {
        /// The snapshot.
        #[arg(long, env = "TAPEDECK_BENCH_SNAPSHOT")]
        snapshot: PathBuf,
        /// The serving address.
        #[arg(long, env = "TAPEDECK_BENCH_LISTEN")]
        listen: String,
        /// The admin address.
        #[arg(long, env = "TAPEDECK_BENCH_ADMIN")]
        admin: String,
        /// Tokio worker threads.
        #[arg(long, env = "TAPEDECK_BENCH_WORKERS", default_value_t = 1)]
        workers: usize,
    },
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Recorded pairs (and stubs) served.
    #[arg(long, env = "TAPEDECK_BENCH_PAIRS", default_value_t = 10_000)]
    pairs: usize,
    /// Pairs loaded for the memory figure.
    #[arg(long, env = "TAPEDECK_BENCH_MEMORY_PAIRS", default_value_t = 100_000)]
    memory_pairs: usize,
    /// Measured seconds per target.
    #[arg(long, env = "TAPEDECK_BENCH_SECONDS", default_value_t = 10)]
    seconds: u64,
    /// Warm-up seconds per target (the JVM needs them).
    #[arg(long, env = "TAPEDECK_BENCH_WARMUP", default_value_t = 5)]
    warmup: u64,
    /// wrk connections.
    #[arg(long, env = "TAPEDECK_BENCH_CONNECTIONS", default_value_t = 32)]
    connections: usize,
    /// Where `npm install wiremock mountebank` put its node_modules (peers skipped if absent).
    #[arg(long, env = "TAPEDECK_BENCH_NPM_DIR")]
    npm_dir: Option<PathBuf>,
    /// Only the responder (and its latency and memory figures).
    #[arg(long, env = "TAPEDECK_BENCH_ONLY_RESPONDER")]
    only_responder: bool,
    /// Response body size of the memory figure's pairs in bytes (0: the small JSON answer).
    #[arg(long, env = "TAPEDECK_BENCH_MEMORY_BODY_BYTES", default_value_t = 0)]
    memory_body_bytes: usize,
    /// Only the memory figure (no throughput or latency runs).
    #[arg(long, env = "TAPEDECK_BENCH_MEMORY_ONLY")]
    memory_only: bool,
}

/// What wrk measured.
#[derive(Debug, Clone, Default)]
struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    non_2xx: u64,
    errors: String,
}

fn free_port() -> Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn pinned(core: u32, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("taskset");
    command.arg("-c").arg(core.to_string()).arg(program);
    command
}

struct Server {
    name: &'static str,
    child: Child,
    port: u16,
    host: Option<&'static str>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get_status(addr: SocketAddr, host: &str, path: &str) -> Result<u16> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = http::Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())?;
    let response = send.send_request(request).await?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await?;
    Ok(status)
}

async fn wait_ready(server: &mut Server, path: &str, limit: Duration) -> Result<()> {
    let addr: SocketAddr = ([127, 0, 0, 1], server.port).into();
    let host = server.host.unwrap_or("localhost");
    let begun = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!("{} exited while starting: {status}", server.name);
        }
        if let Ok(Ok(200)) =
            tokio::time::timeout(Duration::from_secs(2), get_status(addr, host, path)).await
        {
            return Ok(());
        }
        if begun.elapsed() > limit {
            bail!("{} not ready after {limit:?}", server.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn parse_duration_ms(text: &str) -> f64 {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (text, 1.0)
    };
    number.parse::<f64>().unwrap_or(f64::NAN) * scale
}

fn run_wrk(
    port: u16,
    host: Option<&str>,
    script: &Path,
    seconds: u64,
    connections: usize,
) -> Result<WrkResult> {
    let mut command = pinned(1, "wrk");
    command
        .arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script);
    if let Some(host) = host {
        command.arg("-H").arg(format!("Host: {host}"));
    }
    command.arg(format!("http://127.0.0.1:{port}/"));
    let output = command.output().context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut result = WrkResult::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", rps] => result.rps = rps.parse().unwrap_or(0.0),
            ["50%", value] => result.p50_ms = parse_duration_ms(value),
            ["99%", value] => result.p99_ms = parse_duration_ms(value),
            [n, "requests", "in", ..] => result.requests = n.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => result.non_2xx = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => result.errors = rest.join(" "),
            _ => {}
        }
    }
    Ok(result)
}

fn lua_script(dir: &Path, paths: &[String]) -> Result<PathBuf> {
    let path = dir.join("paths.lua");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    writeln!(out, "local paths = {{")?;
    for p in paths {
        writeln!(out, "  \"{p}\",")?;
    }
    writeln!(
        out,
        "}}\nlocal n = #paths\nmath.randomseed(42)\nrequest = function()\n  return wrk.format(\"GET\", paths[math.random(n)])\nend"
    )?;
    out.flush()?;
    Ok(path)
}

fn write_snapshot(dir: &Path, pairs: usize, body_bytes: usize) -> Result<(PathBuf, Vec<String>)> {
    let (exchanges, paths) = bench_exchanges(pairs, 42, body_bytes);
    let spec = Spec {
        service: "bench".to_owned(),
        sql: format!("-- bench-responder: {pairs} random GETs"),
        predicate: None,
        from: Some(WINDOW_FROM_NS),
        to: None,
    };
    let path = dir.join(format!("snapshot-{pairs}-{body_bytes}"));
    build(&spec, exchanges).write(&path, true)?;
    Ok((path, paths))
}

fn body_of(path: &str) -> String {
    format!(r#"{{"path":"{path}","ok":true}}"#)
}

fn start_responder(exe: &Path, snapshot: &Path) -> Result<(Server, u16)> {
    let port = free_port()?;
    let admin = free_port()?;
    let child = pinned(0, exe)
        .arg("serve")
        .arg("--snapshot")
        .arg(snapshot)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--admin")
        .arg(format!("127.0.0.1:{admin}"))
        .stdout(Stdio::null())
        .spawn()
        .context("starting the responder")?;
    Ok((
        Server {
            name: "responder",
            child,
            port,
            host: Some(HOST),
        },
        admin,
    ))
}

fn start_nginx(dir: &Path) -> Result<Server> {
    let port = free_port()?;
    let root = dir.join("nginx");
    std::fs::create_dir_all(root.join("html"))?;
    std::fs::write(
        root.join("html/static.json"),
        body_of("/api/static/file/ok"),
    )?;
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {r}/nginx.pid;\nerror_log {r}/error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  keepalive_requests 100000000;\n  keepalive_timeout 300s;\n  client_body_temp_path {r}/body;\n  proxy_temp_path {r}/proxy;\n  fastcgi_temp_path {r}/fastcgi;\n  uwsgi_temp_path {r}/uwsgi;\n  scgi_temp_path {r}/scgi;\n  server {{\n    listen 127.0.0.1:{port};\n    root {r}/html;\n    location / {{ default_type application/json; try_files /static.json =404; }}\n  }}\n}}\n",
        r = root.display()
    );
    std::fs::write(root.join("nginx.conf"), conf)?;
    let child = pinned(0, "nginx")
        .arg("-p")
        .arg(&root)
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .stdout(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    Ok(Server {
        name: "nginx",
        child,
        port,
        host: None,
    })
}

fn start_wiremock(dir: &Path, npm: &Path, paths: &[String]) -> Result<Server> {
    let jar = std::fs::read_dir(npm.join("node_modules/wiremock/build"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "jar"))
        .context("no WireMock jar under node_modules/wiremock/build")?;
    let root = dir.join("wiremock");
    std::fs::create_dir_all(root.join("mappings"))?;
    let mappings: Vec<serde_json::Value> = paths
        .iter()
        .map(|p| {
            serde_json::json!({
                "request": {"method": "GET", "url": p},
                "response": {"status": 200, "body": body_of(p), "headers": {"Content-Type": "application/json"}}
            })
        })
        .collect();
    std::fs::write(
        root.join("mappings/stubs.json"),
        serde_json::json!({ "mappings": mappings }).to_string(),
    )?;
    let port = free_port()?;
    let child = pinned(0, "java")
        .arg("-Xmx2g")
        .arg("-jar")
        .arg(jar)
        .arg("--port")
        .arg(port.to_string())
        .arg("--root-dir")
        .arg(&root)
        .arg("--disable-banner")
        .arg("--no-request-journal")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting WireMock")?;
    Ok(Server {
        name: "WireMock",
        child,
        port,
        host: None,
    })
}

async fn start_mountebank(npm: &Path, dir: &Path, paths: &[String]) -> Result<Server> {
    let mb_port = free_port()?;
    let port = free_port()?;
    let child = pinned(0, "node")
        .arg(npm.join("node_modules/mountebank/bin/mb"))
        .arg("--port")
        .arg(mb_port.to_string())
        // Its log and pid files go to the bench's temp dir, not the working directory.
        .arg("--logfile")
        .arg(dir.join("mb.log"))
        .arg("--pidfile")
        .arg(dir.join("mb.pid"))
        .arg("--loglevel")
        .arg("warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting mountebank")?;
    let mut mb = Server {
        name: "mountebank",
        child,
        port: mb_port,
        host: None,
    };
    wait_ready(&mut mb, "/imposters", Duration::from_secs(60)).await?;
    let stubs: Vec<serde_json::Value> = paths
        .iter()
        .map(|p| {
            serde_json::json!({
                "predicates": [{"equals": {"method": "GET", "path": p}}],
                "responses": [{"is": {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": body_of(p)}}]
            })
        })
        .collect();
    let imposter = serde_json::json!({"port": port, "protocol": "http", "stubs": stubs});
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", mb_port)).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = http::Request::post("/imposters")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(imposter.to_string())))?;
    let response = send.send_request(request).await?;
    if response.status() != 201 {
        bail!("mountebank refused the imposter: {}", response.status());
    }
    // The imposter lives in the mb process: serve it, keep mb's child for cleanup.
    mb.port = port;
    Ok(mb)
}

/// Latency percentiles at a fixed request rate over `connections` connections, each request
/// measured from its intended send time when its connection was still busy then (so a stall
/// counts against every request queued behind it: no coordinated omission), else from when the
/// timer released it.
async fn fixed_rate(
    addr: SocketAddr,
    host: &str,
    paths: Arc<Vec<String>>,
    rate: f64,
    seconds: u64,
    connections: usize,
) -> Result<(f64, Vec<f64>, u64)> {
    let total = (rate * seconds as f64) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let next = next.clone();
        let paths = paths.clone();
        let errors = errors.clone();
        let host = host.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut state = 0x9e37_79b9_u64 + c as u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let intended = start + Duration::from_secs_f64(i as f64 / rate);
                // Latency counts from the intended send time when the connection was still
                // busy then (no coordinated omission), else from when the timer woke it:
                // Tokio's timer has a 1 ms grain, which is the client's, not the server's.
                let from = if intended > tokio::time::Instant::now() {
                    tokio::time::sleep_until(intended).await;
                    tokio::time::Instant::now()
                } else {
                    intended
                };
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let path = &paths[(state >> 33) as usize % paths.len()];
                let request = http::Request::get(path.as_str())
                    .header("host", host.as_str())
                    .body(Empty::<Bytes>::new())?;
                match send.send_request(request).await {
                    Ok(response) => {
                        let ok = response.status() == 200;
                        let _ = response.into_body().collect().await;
                        if !ok {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies.push(from.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok((
        all.len() as f64 / elapsed,
        all,
        errors.load(Ordering::Relaxed),
    ))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn bench(args: BenchArgs) -> Result<()> {
    let exe = std::env::current_exe()?;
    let dir = tempfile::tempdir()?;
    if args.memory_only {
        return memory(&exe, dir.path(), &args).await;
    }
    eprintln!(
        "bench-responder: writing a snapshot of {} pairs",
        args.pairs
    );
    let (snapshot, paths) = write_snapshot(dir.path(), args.pairs, 0)?;
    let script = lua_script(dir.path(), &paths)?;
    let paths = Arc::new(paths);
    let mut rows: Vec<(&'static str, WrkResult)> = Vec::new();

    let measure = |server: &Server| -> Result<WrkResult> {
        eprintln!("bench-responder: {} warm-up {}s", server.name, args.warmup);
        run_wrk(
            server.port,
            server.host,
            &script,
            args.warmup,
            args.connections,
        )?;
        eprintln!(
            "bench-responder: {} measured {}s",
            server.name, args.seconds
        );
        run_wrk(
            server.port,
            server.host,
            &script,
            args.seconds,
            args.connections,
        )
    };

    // The responder.
    let (mut responder, _) = start_responder(&exe, &snapshot)?;
    wait_ready(&mut responder, &paths[0], Duration::from_secs(60)).await?;
    let result = measure(&responder)?;
    let half = result.rps / 2.0;
    eprintln!("bench-responder: responder at half its max rate ({half:.0}/s)");
    let addr: SocketAddr = ([127, 0, 0, 1], responder.port).into();
    let (achieved, latencies, errors) = fixed_rate(
        addr,
        HOST,
        paths.clone(),
        half,
        args.seconds,
        args.connections,
    )
    .await?;
    let rss_kib = proc_status_kib(responder.child.id(), "VmHWM:").unwrap_or(0);
    drop(responder);
    rows.push(("tapedeck responder", result));

    let mut nginx_fixed = None;
    if !args.only_responder {
        let mut nginx = start_nginx(dir.path())?;
        wait_ready(&mut nginx, &paths[0], Duration::from_secs(20)).await?;
        rows.push(("nginx (static file)", measure(&nginx)?));
        eprintln!("bench-responder: nginx at the responder's half rate ({half:.0}/s)");
        let addr: SocketAddr = ([127, 0, 0, 1], nginx.port).into();
        nginx_fixed = Some(
            fixed_rate(
                addr,
                "localhost",
                paths.clone(),
                half,
                args.seconds,
                args.connections,
            )
            .await?,
        );
        drop(nginx);
        if let Some(npm) = &args.npm_dir {
            let mut wiremock = start_wiremock(dir.path(), npm, &paths)?;
            wait_ready(&mut wiremock, &paths[0], Duration::from_secs(120)).await?;
            rows.push(("WireMock 3.13.2 (standalone jar)", measure(&wiremock)?));
            drop(wiremock);
            let mut mb = start_mountebank(npm, dir.path(), &paths).await?;
            wait_ready(&mut mb, &paths[0], Duration::from_secs(60)).await?;
            rows.push(("mountebank 2.9.1", measure(&mb)?));
            drop(mb);
        }
    }

    let responder_rps = rows[0].1.rps;
    println!("| server | req/s | p50 ms | p99 ms | responder ÷ it | requests | non-2xx |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (name, r) in &rows {
        println!(
            "| {name} | {:.0} | {:.3} | {:.3} | {:.2} | {} | {}{} |",
            r.rps,
            r.p50_ms,
            r.p99_ms,
            responder_rps / r.rps,
            r.requests,
            r.non_2xx,
            if r.errors.is_empty() {
                String::new()
            } else {
                format!(" (socket errors: {})", r.errors)
            }
        );
    }
    println!();
    println!(
        "Responder at half its maximum rate: asked {half:.0}/s, achieved {achieved:.0}/s over {}s, {} requests ({errors} errors): p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms; peak RSS during the run {:.1} MiB.",
        args.seconds,
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        latencies.last().copied().unwrap_or(f64::NAN),
        rss_kib as f64 / 1024.0
    );
    if let Some((achieved, latencies, errors)) = &nginx_fixed {
        println!(
            "nginx at the same rate, same client: achieved {achieved:.0}/s, {} requests ({errors} errors): p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms.",
            latencies.len(),
            percentile(latencies, 0.50),
            percentile(latencies, 0.99),
            percentile(latencies, 0.999),
            latencies.last().copied().unwrap_or(f64::NAN),
        );
    }
    memory(&exe, dir.path(), &args).await?;
    Ok(())
}

/// The memory figure: a responder loading `--memory-pairs` pairs, its RSS (heap and mapped
/// file pages apart) once it served one request, and its peak while loading.
async fn memory(exe: &Path, dir: &Path, args: &BenchArgs) -> Result<()> {
    eprintln!(
        "bench-responder: memory with {} pairs, bodies of {} bytes",
        args.memory_pairs, args.memory_body_bytes
    );
    let (big, big_paths) = write_snapshot(dir, args.memory_pairs, args.memory_body_bytes)?;
    let loading = Instant::now();
    let (mut big_responder, _) = start_responder(exe, &big)?;
    wait_ready(&mut big_responder, &big_paths[0], Duration::from_secs(300)).await?;
    let load_s = loading.elapsed().as_secs_f64();
    let pid = big_responder.child.id();
    let kib = |field| proc_status_kib(pid, field).unwrap_or(0) as f64 / 1024.0;
    let (rss, anon, file, hwm) = (
        kib("VmRSS:"),
        kib("RssAnon:"),
        kib("RssFile:"),
        kib("VmHWM:"),
    );
    drop(big_responder);
    println!(
        "Memory with {} pairs, bodies of {} bytes ({:.1} MiB snapshot on disk): RSS {rss:.1} MiB once serving (heap and other anonymous {anon:.1} MiB, file-backed {file:.1} MiB), peak {hwm:.1} MiB while loading; ready in {load_s:.1} s.",
        args.memory_pairs,
        if args.memory_body_bytes == 0 {
            "~50".to_owned()
        } else {
            args.memory_body_bytes.to_string()
        },
        dir_size(&big) as f64 / (1024.0 * 1024.0),
    );
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Sub::Serve {
            snapshot,
            listen,
            admin,
            workers,
        }) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut args = tapedeck_responder::ServeArgs::new(snapshot);
                args.listen = listen;
                args.admin_listen = Some(admin);
                let args = tapedeck_responder::RespondArgs {
                    command: None,
                    serve: args,
                };
                // Runs until killed.
                tapedeck_responder::run(args, std::future::pending()).await?;
                anyhow::Ok(())
            })
        }
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(bench(cli.bench)),
    }
}
