//! `./x bench replay`: the generator beside wrk and oha, in one run, against the same nginx
//! static target on loopback.
//!
//! 1. nginx (one worker) serves one static JSON file for every path.
//! 2. wrk and oha at maximum throughput (closed loop, same connection count, same duration).
//! 3. `tapedeck replay`'s engine (this crate's `run`, in process: the CLI would add only argument
//!    parsing) in the closed model, replaying a 10 000-request snapshot with varied paths and a
//!    JWT re-signing rule (HS256 key, 100 distinct recorded tokens).
//! 4. The open model at half of wrk's maximum: achieved rate against the target, and p99 beside
//!    oha's coordinated-omission-corrected p99 at the same fixed rate (`oha -q R
//!    --latency-correction`, the wrk2 method: latency counted from each request's scheduled time).
//!
//! Prints a markdown table for BENCHMARKS.md.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tapedeck_analyzer::snapshot::{Spec, build};
use tapedeck_proto::{Direction, Exchange, Header, Message, Protocol};

/// The `tapedeck` binary's allocator, so the bench measures what the CLI does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const REQUESTS: u64 = 10_000;
const USERS: u64 = 100;
const BODY: &str = r#"{"id":"item","status":"ok","items":[1,2,3],"note":"static"}"#;

#[derive(Debug)]
struct Options {
    seconds: u64,
    connections: u32,
    nginx: String,
    wrk: String,
    oha: String,
    /// Runtime worker threads of the generator (the CLI's runtime has one per core).
    threads: usize,
}

fn options() -> Result<Options> {
    let mut o = Options {
        seconds: 10,
        connections: 64,
        nginx: "nginx".into(),
        wrk: "wrk".into(),
        oha: "oha".into(),
        threads: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => o.seconds = value.parse()?,
            "--connections" => o.connections = value.parse()?,
            "--nginx" => o.nginx = value,
            "--wrk" => o.wrk = value,
            "--oha" => o.oha = value,
            "--threads" => o.threads = value.parse()?,
            other => {
                bail!(
                    "unknown flag {other} (--seconds, --connections, --nginx, --wrk, --oha, --threads)"
                )
            }
        }
    }
    Ok(o)
}

struct Nginx {
    child: Child,
    port: u16,
    /// `nginx -p DIR -c CONF`, to send it `-s stop` (SIGKILL on the master would orphan the
    /// worker).
    stop: Command,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let stopped = self.stop.status().is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_nginx(binary: &str, dir: &Path) -> Result<Nginx> {
    let port = free_port()?;
    let root = dir.join("www");
    std::fs::create_dir_all(&root)?;
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::write(root.join("item.json"), BODY)?;
    let conf = format!(
        r#"worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    default_type application/json;
    location / {{ try_files /item.json =404; }}
  }}
}}
"#,
        dir = dir.display(),
        root = root.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {binary}"))?;
    let mut stop = Command::new(binary);
    stop.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .args(["-s", "stop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let nginx = Nginx { child, port, stop };
    let listening = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let deadline = Instant::now() + Duration::from_secs(10);
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            true
        });
    if !listening {
        bail!("nginx did not listen on {port} within 10 s");
    }
    Ok(nginx)
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.into(),
        value: value.as_bytes().to_vec(),
    }
}

/// 10 000 GETs over 100 users (one JWT each, signature redacted as captured), varied paths.
fn snapshot(dir: &Path) -> Result<PathBuf> {
    let t0: u64 = 1_795_784_400_000_000_000;
    let mut exchanges = Vec::with_capacity(REQUESTS as usize);
    for i in 0..REQUESTS {
        let user = i % USERS;
        let iat = t0 / 1_000_000_000 + user;
        let claims = format!(
            r#"{{"sub":"user-{user:03}","iss":"https://auth.shop.example","aud":"orders","iat":{iat},"exp":{}}}"#,
            iat + 3600
        );
        let token = format!(
            "{}.{}.tapedeck-redacted:hmac-sha256:{:032x}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.as_bytes()),
            user
        );
        let path = match i % 4 {
            0 => format!("/items/sku-{:05}", i % 997),
            1 => format!("/items/sku-{:05}/reviews?page={}", i % 991, i % 7),
            2 => format!("/users/user-{user:03}/cart"),
            _ => format!("/search?q=term{}&limit=20", i % 113),
        };
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&(i + 1).to_be_bytes());
        let mut e = Exchange {
            id: id.to_vec(),
            trace_id: format!("{:032x}", i + 1),
            start_unix_nanos: t0 + i * 1_000_000,
            duration_nanos: 2_000_000,
            authority: "orders.shop.svc:8080".into(),
            scheme: "http".into(),
            method: "GET".into(),
            path,
            request: Some(Message {
                headers: vec![
                    header("authorization", &format!("Bearer {token}")),
                    header("accept", "application/json"),
                ],
                ..Default::default()
            }),
            status: 200,
            response: Some(Message {
                headers: vec![header("content-type", "application/json")],
                body: BODY.as_bytes().to_vec(),
                body_size: BODY.len() as u64,
                ..Default::default()
            }),
            sample_rate: 1.0,
            filter_version: "bench".into(),
            ..Default::default()
        };
        e.set_direction(Direction::Inbound);
        e.set_protocol(Protocol::Http11);
        exchanges.push(e);
    }
    let spec = Spec {
        service: "orders".into(),
        sql: "bench".into(),
        predicate: None,
        from: None,
        to: None,
    };
    let path = dir.join("snapshot");
    let built = build(&spec, exchanges);
    let rules = built.manifest().tokens.clone();
    if !rules
        .iter()
        .any(|r| r.name == "jwt inbound request header authorization Bearer")
    {
        bail!("the bench snapshot has no JWT rule: {rules:?}");
    }
    built.write(&path, true)?;
    Ok(path)
}

fn run_tool(program: &str, args: &[String]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// wrk's `Requests/sec:` line and its p99 (`--latency`).
fn wrk(o: &Options, url: &str) -> Result<(f64, f64)> {
    let out = run_tool(
        &o.wrk,
        &[
            "-t1".into(),
            format!("-c{}", o.connections),
            format!("-d{}s", o.seconds),
            "--latency".into(),
            url.into(),
        ],
    )?;
    let rps = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .context("no Requests/sec in wrk's output")?
        .trim()
        .parse()?;
    let p99 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| parse_wrk_time(v.trim()))
        .unwrap_or(f64::NAN);
    Ok((rps, p99))
}

fn parse_wrk_time(text: &str) -> f64 {
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let n: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

/// oha's JSON summary: requests per second and p99 (ms).
fn oha(o: &Options, url: &str, rate: Option<f64>) -> Result<(f64, f64)> {
    let mut args = vec![
        "-z".into(),
        format!("{}s", o.seconds),
        "-c".into(),
        o.connections.to_string(),
        "--no-tui".into(),
        "--output-format".into(),
        "json".into(),
    ];
    if let Some(rate) = rate {
        args.extend([
            "-q".into(),
            format!("{rate:.0}"),
            "--latency-correction".into(),
        ]);
    }
    args.push(url.into());
    let out = run_tool(&o.oha, &args)?;
    let json: serde_json::Value = serde_json::from_str(&out).context("oha's json")?;
    let rps = json["summary"]["requestsPerSec"]
        .as_f64()
        .context("oha summary.requestsPerSec")?;
    let p99 = json["latencyPercentiles"]["p99"]
        .as_f64()
        .map(|s| s * 1000.0)
        .unwrap_or(f64::NAN);
    Ok((rps, p99))
}

fn replay(
    o: &Options,
    snapshot: &Path,
    key: &Path,
    url: &str,
    rate: Option<f64>,
) -> Result<tapedeck_generator::Report> {
    let args = tapedeck_generator::ReplayArgs {
        snapshot: snapshot.to_owned(),
        target: vec![url.to_owned()],
        speed: 1.0,
        copies: 1,
        rate,
        concurrency: if rate.is_none() {
            Some(o.connections)
        } else {
            None
        },
        duration: Some(Duration::from_secs(o.seconds)),
        iterations: None,
        ramp_up: Duration::ZERO,
        timeout: Duration::from_secs(10),
        jwt_key: Some(format!("HS256:{}", key.display())),
        jwt_claim: Vec::new(),
        secrets: None,
        strict_redacted: false,
        ignore: Vec::new(),
        compare_header: vec!["content-type".into()],
        slo: None,
        report: None,
        max_connections: 256,
        ca_cert: None,
        progress: tapedeck_generator::When::Never,
        baseline: Vec::new(),
        calibrate: 0,
        noise: None,
        gate: tapedeck_generator::gate_defaults(),
        shard: None,
        command: None,
    };
    let runtime = if o.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.threads)
            .enable_all()
            .build()?
    };
    Ok(runtime.block_on(tapedeck_generator::run(args, std::future::pending()))?)
}

fn main() -> Result<()> {
    let o = options()?;
    let dir = tempfile_dir()?;
    let nginx = start_nginx(&o.nginx, &dir.join("nginx"))?;
    let base = format!("http://127.0.0.1:{}", nginx.port);
    let url = format!("{base}/items/sku-00001");
    eprintln!("bench-replay: writing the 10 000-request snapshot");
    let snapshot = snapshot(&dir)?;
    let key = dir.join("hs256.key");
    std::fs::write(&key, b"bench-secret-0123456789abcdef")?;

    eprintln!("bench-replay: wrk at maximum throughput");
    let (wrk_rps, wrk_p99) = wrk(&o, &url)?;
    eprintln!("bench-replay: oha at maximum throughput");
    let (oha_rps, oha_p99) = oha(&o, &url, None)?;
    eprintln!("bench-replay: tapedeck replay, closed model");
    let closed = replay(&o, &snapshot, &key, &base, None)?;
    if closed.overall.errors > 0
        || closed
            .overall
            .resign_without_key
            .iter()
            .any(|c| c.count > 0)
    {
        bail!(
            "closed run had errors or unsigned tokens: {}",
            closed.summary()
        );
    }
    let half = (wrk_rps / 2.0).round();
    eprintln!("bench-replay: tapedeck replay --rate {half}");
    let open = replay(&o, &snapshot, &key, &base, Some(half))?;
    eprintln!("bench-replay: oha -q {half} --latency-correction");
    let (oha_fixed_rps, oha_fixed_p99) = oha(&o, &url, Some(half))?;
    let quarter = (wrk_rps / 4.0).round();
    eprintln!(
        "bench-replay: tapedeck replay --rate {quarter}, oha -q {quarter} --latency-correction"
    );
    let open_quarter = replay(&o, &snapshot, &key, &base, Some(quarter))?;
    let (oha_quarter_rps, oha_quarter_p99) = oha(&o, &url, Some(quarter))?;

    let mut out = String::new();
    let _ = writeln!(out, "| tool | model | requests/s | p99 ms | vs wrk |");
    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
    let row = |out: &mut String, tool: &str, model: &str, rps: f64, p99: f64| {
        let _ = writeln!(
            out,
            "| {tool} | {model} | {rps:.0} | {p99:.2} | {:.2} |",
            rps / wrk_rps
        );
    };
    let c = o.connections;
    row(
        &mut out,
        "wrk 4 (`-t1`)",
        &format!("closed, {c} connections"),
        wrk_rps,
        wrk_p99,
    );
    row(
        &mut out,
        "oha",
        &format!("closed, {c} connections"),
        oha_rps,
        oha_p99,
    );
    row(
        &mut out,
        "tapedeck replay",
        &format!("closed, --concurrency {c}, 10 000 varied requests, JWT re-signed"),
        closed.overall.rps,
        closed.overall.latency.p99,
    );
    row(
        &mut out,
        "tapedeck replay",
        &format!("open, --rate {half}"),
        open.overall.rps,
        open.overall.latency.p99,
    );
    row(
        &mut out,
        "oha",
        &format!("open, -q {half} --latency-correction"),
        oha_fixed_rps,
        oha_fixed_p99,
    );
    row(
        &mut out,
        "tapedeck replay",
        &format!("open, --rate {quarter}"),
        open_quarter.overall.rps,
        open_quarter.overall.latency.p99,
    );
    row(
        &mut out,
        "oha",
        &format!("open, -q {quarter} --latency-correction"),
        oha_quarter_rps,
        oha_quarter_p99,
    );
    let achieved = open.overall.rps / half;
    let _ = writeln!(
        out,
        "\nclosed: tapedeck / wrk = {:.3}; open: achieved {:.1} of {half} rps ({:+.2} %), p99 {:.2} ms vs oha corrected {:.2} ms; {} requests sent in the closed run, {} in the open run, {} errors",
        closed.overall.rps / wrk_rps,
        open.overall.rps,
        (achieved - 1.0) * 100.0,
        open.overall.latency.p99,
        oha_fixed_p99,
        closed.overall.requests,
        open.overall.requests,
        closed.overall.errors + open.overall.errors + open_quarter.overall.errors,
    );
    let _ = writeln!(
        out,
        "quarter rate: achieved {:.1} of {quarter} rps ({:+.2} %), p99 {:.2} ms vs oha corrected {:.2} ms",
        open_quarter.overall.rps,
        (open_quarter.overall.rps / quarter - 1.0) * 100.0,
        open_quarter.overall.latency.p99,
        oha_quarter_p99,
    );
    print!("{out}");
    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tapedeck-bench-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
