//! The `tapedeck` binary as users run it: the collector as a process, killed with SIGKILL in
//! the middle of ingest, and `tapedeck sql` / `tapedeck import har` on its data directory.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use tapedeck_proto::capture::v1::capture_client::CaptureClient;
use tapedeck_proto::{Direction, Exchange, ExchangeBatch, Message};
use tokio::process::{Child, Command};

const TAPEDECK: &str = env!("CARGO_BIN_EXE_tapedeck");

// Ports outside the ephemeral range, held until the test ends (see the file's own doc).
#[path = "../../tests/src/ports.rs"]
#[allow(unreachable_pub)]
mod ports;
use ports::reserve_port;

struct Collector {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
}

async fn start_collector(data: &Path, extra: &[&str]) -> Result<Collector> {
    let grpc = reserve_port()?;
    let http = reserve_port()?;
    let child = Command::new(TAPEDECK)
        .args(["--log", "warn", "collector", "--data"])
        .arg(data)
        .args([
            "--grpc-listen",
            &grpc.to_string(),
            "--http-listen",
            &http.to_string(),
        ])
        .args(extra)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting tapedeck collector")?;
    // Ready once /readyz answers 200 (after write-ahead log recovery).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(http).await {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            stream
                .write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await?;
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer).await;
            if answer.starts_with("HTTP/1.1 200") {
                return Ok(Collector { child, grpc, http });
            }
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the collector was not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn exchange(pusher: usize, n: usize) -> Exchange {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(pusher as u64).to_le_bytes());
    id[8..].copy_from_slice(&(n as u64).to_le_bytes());
    Exchange {
        id: id.to_vec(),
        start_unix_nanos: 1_795_787_110_000_000_000 + n as u64,
        duration_nanos: 1_000,
        direction: Direction::Inbound as i32,
        workload: "orders".into(),
        method: "GET".into(),
        path: format!("/p{pusher}/{n}"),
        status: 200,
        request: Some(Message::default()),
        response: Some(Message {
            body: vec![b'x'; 256],
            body_size: 256,
            ..Default::default()
        }),
        sample_rate: 1.0,
        ..Default::default()
    }
}

/// Runs `tapedeck sql` on a data directory and returns its CSV output lines (header dropped).
async fn sql_lines(data: &Path, query: &str) -> Result<Vec<String>> {
    let output = Command::new(TAPEDECK)
        .args(["sql", "--format", "csv", "--query-max-rows", "0", "--data"])
        .arg(data)
        .arg(query)
        .output()
        .await?;
    ensure!(
        output.status.success(),
        "tapedeck sql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect())
}

#[tokio::test]
async fn every_acknowledged_exchange_survives_kill_9_exactly_once() -> Result<()> {
    let data = tempfile::tempdir()?;
    // Flush often, so that the kill lands among flushes as well as appends.
    let collector = start_collector(
        data.path(),
        &["--flush-interval", "1", "--flush-rows", "2000"],
    )
    .await?;
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let endpoint = format!("http://{}", collector.grpc);
    let mut pushers = Vec::new();
    for pusher in 0..4 {
        let (acked, endpoint) = (acked.clone(), endpoint.clone());
        pushers.push(tokio::spawn(async move {
            let Ok(mut client) = CaptureClient::connect(endpoint).await else {
                return;
            };
            for batch in 0..1_000 {
                let exchanges: Vec<_> = (0..50).map(|i| exchange(pusher, batch * 50 + i)).collect();
                let paths: Vec<String> = exchanges.iter().map(|e| e.path.clone()).collect();
                let push = client.push(ExchangeBatch {
                    exchanges,
                    sequence: batch as u64 + 1,
                    ..Default::default()
                });
                match tokio::time::timeout(Duration::from_secs(5), push).await {
                    Ok(Ok(_ack)) => acked.lock().expect("not poisoned").extend(paths),
                    // The collector died: what was not acknowledged may or may not be stored.
                    _ => return,
                }
            }
        }));
    }
    // Let ingest and a few flushes happen, then kill -9.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while acked.lock().expect("not poisoned").len() < 20_000 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "ingest too slow: {} acked after 10 s",
            acked.lock().expect("not poisoned").len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut child = collector.child;
    child.start_kill().context("sending SIGKILL")?;
    let status = child.wait().await?;
    ensure!(
        !status.success(),
        "the collector should have died of SIGKILL, got {status}"
    );
    for pusher in pushers {
        let _ = tokio::time::timeout(Duration::from_secs(10), pusher).await;
    }
    let acked = acked.lock().expect("not poisoned").clone();

    // Restart: recovery replays the log; a clean stop (SIGTERM) flushes everything.
    let mut collector = start_collector(data.path(), &[]).await?;
    let pid = collector.child.id().context("collector pid")?;
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    ensure!(killed.success(), "kill -TERM failed");
    let status = tokio::time::timeout(Duration::from_secs(30), collector.child.wait())
        .await
        .context("no exit after SIGTERM")??;
    ensure!(
        status.success(),
        "the collector exited with {status} after SIGTERM"
    );

    let stored = sql_lines(data.path(), "SELECT path FROM exchanges").await?;
    let unique: HashSet<String> = stored.iter().cloned().collect();
    ensure!(
        unique.len() == stored.len(),
        "{} exchanges are stored more than once",
        stored.len() - unique.len()
    );
    let missing: Vec<_> = acked.difference(&unique).take(5).collect();
    if !missing.is_empty() {
        bail!(
            "{} acknowledged exchanges are lost, for example {missing:?}",
            acked.difference(&unique).count()
        );
    }
    assert!(acked.len() >= 20_000);
    Ok(())
}

#[tokio::test]
async fn a_har_file_imports_into_a_data_directory_and_queries_back() -> Result<()> {
    let data = tempfile::tempdir()?;
    let har = Path::new(env!("CARGO_MANIFEST_DIR")).join("../har/tests/fixtures/browser.har");
    let output = Command::new(TAPEDECK)
        .args(["import", "har"])
        .arg(&har)
        .args([
            "--service",
            "web",
            "--direction",
            "outbound",
            "--partial",
            "--data",
        ])
        .arg(data.path())
        .output()
        .await?;
    // Exit 0 when every entry imported; 2 when some were skipped (and named) under --partial.
    let code = output.status.code();
    ensure!(
        code == Some(0) || code == Some(2),
        "import failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = sql_lines(
        data.path(),
        "SELECT service, direction, count(*) FROM exchanges GROUP BY 1, 2",
    )
    .await?;
    ensure!(lines.len() == 1, "{lines:?}");
    ensure!(lines[0].starts_with("web,outbound,"), "{lines:?}");

    // A file that is not HAR is refused with the problem named, and nothing is written.
    let bad = data.path().join("bad.har");
    std::fs::write(&bad, br#"{"log": {"entries": 3}}"#)?;
    let output = Command::new(TAPEDECK)
        .args(["import", "har"])
        .arg(&bad)
        .args(["--service", "web", "--data"])
        .arg(data.path())
        .output()
        .await?;
    ensure!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("log.entries"),
        "the error should name log.entries: {stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn inventory_reports_a_data_directory_as_json() -> Result<()> {
    const T0: u64 = 1_795_780_800_000_000_000; // 2026-11-27T12:00:00Z
    let data = tempfile::tempdir()?;
    let call = |direction: Direction, authority: &str, method: &str, path: &str, n: u64| {
        let mut e = exchange(0, n as usize);
        e.direction = direction as i32;
        e.authority = authority.into();
        e.method = method.into();
        e.path = path.into();
        e.start_unix_nanos = T0 + n * 1_000_000_000;
        e.duration_nanos = (n + 1) * 1_000_000;
        e
    };
    let mut exchanges = vec![
        call(Direction::Inbound, "orders:8080", "GET", "/orders/123", 0),
        call(Direction::Inbound, "orders:8080", "GET", "/orders/456", 1),
        call(Direction::Inbound, "orders:8080", "GET", "/orders/789", 2),
        call(Direction::Inbound, "orders:8080", "POST", "/orders", 3),
        call(
            Direction::Outbound,
            "payments:9000",
            "POST",
            "/pay.v1.Pay/Charge",
            4,
        ),
    ];
    exchanges[3].status = 500;
    exchanges[3].request = Some(Message {
        headers: vec![tapedeck_proto::Header {
            name: "content-type".into(),
            value: b"application/json; charset=utf-8".to_vec(),
        }],
        body_size: 5_000,
        ..Default::default()
    });
    exchanges[4].protocol = tapedeck_proto::Protocol::Grpc as i32;
    // Another service's exchange, which the inventory of `orders` must not count.
    let mut other = call(Direction::Inbound, "billing:8080", "GET", "/invoices/1", 5);
    other.workload = "billing".into();
    exchanges.push(other);
    let store = tapedeck_collector::store::open_store(data.path(), None)?;
    tapedeck_collector::writer::write_exchanges(
        &store.store,
        tapedeck_collector::writer::random_writer_id(),
        &exchanges,
    )
    .await?;

    let inventory = |extra: &[&str]| {
        let mut command = Command::new(TAPEDECK);
        command
            .args(["inventory", "--service", "orders", "--data"])
            .arg(data.path())
            .args(extra)
            .env_remove("TAPEDECK_FROM")
            .env_remove("TAPEDECK_TO")
            .env_remove("TAPEDECK_WHERE")
            .env_remove("TAPEDECK_FORMAT");
        command.output()
    };
    let output = inventory(&["--format", "json"]).await?;
    ensure!(
        output.status.success(),
        "tapedeck inventory failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| String::from_utf8_lossy(&output.stdout).into_owned())?;
    assert_eq!(json["service"], "orders");
    assert_eq!(json["first_seen"], "2026-11-27T12:00:00Z");
    assert_eq!(json["last_seen"], "2026-11-27T12:00:04Z");
    assert_eq!(json["totals"]["exchanges"], 5);
    assert_eq!(json["totals"]["inbound"], 4);
    assert_eq!(json["totals"]["outbound"], 1);
    let post = &json["inbound"][0];
    assert_eq!(
        (&post["method"], &post["template"]),
        (&"POST".into(), &"/orders".into())
    );
    assert_eq!(post["status"]["500"], 1);
    assert_eq!(post["request_content_types"]["application/json"], 1);
    assert_eq!(post["request_sizes"]["≤10 KiB"], 1);
    let get = &json["inbound"][1];
    assert_eq!(
        (&get["method"], &get["template"]),
        (&"GET".into(), &"/orders/{id}".into())
    );
    assert_eq!(get["count"], 3);
    assert_eq!(get["status"]["200"], 3);
    // Durations 1, 2 and 3 ms: nearest rank.
    assert_eq!(get["latency_ms"]["p50"], 2.0);
    assert_eq!(get["latency_ms"]["p99"], 3.0);
    assert_eq!(json["outbound"][0]["host"], "payments:9000");
    assert_eq!(json["outbound"][0]["endpoints"][0]["protocols"]["gRPC"], 1);

    // The table is the default format.
    let output = inventory(&["--where", "status >= 500"]).await?;
    ensure!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout)?;
    ensure!(
        table.starts_with("service orders: 1 exchange from ") && table.contains("POST    /orders"),
        "{table}"
    );

    // A bad time is a usage error that names the flag; nothing is printed on stdout.
    let output = inventory(&["--from", "yesterday"]).await?;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("--from") && stderr.contains("yesterday"),
        "the error should name --from: {stderr}"
    );
    ensure!(output.stdout.is_empty());

    // A window without exchanges says so, naming the service and the window, and exits 1.
    let output = inventory(&[
        "--from",
        "2020-01-01T00:00:00Z",
        "--to",
        "2020-01-02T00:00:00Z",
    ])
    .await?;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("\"orders\"") && stderr.contains("2020-01-01T00:00:00Z"),
        "the message should name the service and the window: {stderr}"
    );
    Ok(())
}

/// Runs `tapedeck` with arguments and no TAPEDECK_* settings from the environment.
async fn tapedeck(args: &[&std::ffi::OsStr]) -> Result<std::process::Output> {
    let mut command = Command::new(TAPEDECK);
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TAPEDECK_") {
            command.env_remove(name);
        }
    }
    Ok(command.output().await?)
}

fn os(text: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(text)
}

/// The fields a HAR entry carries, as exchanges, for comparing two HAR files.
fn har_exchanges(path: &Path) -> Result<Vec<Exchange>> {
    let har = tapedeck_har::parse(&std::fs::read(path)?)?;
    let (mut exchanges, diagnostics) =
        tapedeck_har::to_exchanges(&har, &tapedeck_har::ImportOptions::new("web"));
    ensure!(diagnostics.is_empty(), "{diagnostics:?}");
    exchanges.sort_by_key(|e| e.start_unix_nanos);
    Ok(exchanges)
}

#[tokio::test]
async fn har_to_store_to_snapshot_to_har_keeps_every_request_and_response() -> Result<()> {
    let temp = tempfile::tempdir()?;
    let data = temp.path().join("data");
    let snapshot = temp.path().join("snapshot");
    let exported = temp.path().join("out.har");
    let har = Path::new(env!("CARGO_MANIFEST_DIR")).join("../har/tests/fixtures/browser.har");
    let output = tapedeck(&[
        os("import"),
        os("har"),
        har.as_os_str(),
        os("--service"),
        os("web"),
        os("--data"),
        data.as_os_str(),
    ])
    .await?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = tapedeck(&[
        os("snapshot"),
        os("create"),
        os("--service"),
        os("web"),
        os("--data"),
        data.as_os_str(),
        os("--out"),
        snapshot.as_os_str(),
    ])
    .await?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = tapedeck(&[
        os("export"),
        os("har"),
        snapshot.as_os_str(),
        os("-o"),
        exported.as_os_str(),
    ])
    .await?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let before = har_exchanges(&har)?;
    let after = har_exchanges(&exported)?;
    ensure!(
        before.len() == 6 && after.len() == before.len(),
        "{} vs {}",
        before.len(),
        after.len()
    );
    for (b, a) in before.iter().zip(&after) {
        let what = format!("{} {}", b.method, b.path);
        assert_eq!(
            (&a.method, &a.scheme, &a.authority, &a.path),
            (&b.method, &b.scheme, &b.authority, &b.path),
            "{what}"
        );
        assert_eq!(a.status, b.status, "{what}");
        assert_eq!(a.request, b.request, "{what}: request");
        assert_eq!(a.response, b.response, "{what}: response");
        assert_eq!(
            (a.start_unix_nanos, a.duration_nanos),
            (b.start_unix_nanos, b.duration_nanos),
            "{what}"
        );
        assert_eq!(a.direction(), Direction::Inbound, "{what}");
    }
    // The export is HAR 1.2 that tapedeck reads back without a diagnostic, and says who wrote it.
    let text = std::fs::read_to_string(&exported)?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(json["log"]["version"], "1.2");
    assert!(
        json["log"]["creator"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("tapedeck"))
    );
    Ok(())
}

#[tokio::test]
async fn snapshot_create_cuts_the_shop_and_explains_bad_input() -> Result<()> {
    let temp = tempfile::tempdir()?;
    let data = temp.path().join("data");
    let out = temp.path().join("snap");
    std::fs::create_dir_all(&data)?;
    let shop = tapedeck_analyzer::fixture::Shop::default();
    let store = tapedeck_collector::store::open_store(&data, None)?;
    tapedeck_collector::writer::write_exchanges(
        &store.store,
        tapedeck_collector::writer::random_writer_id(),
        &shop.exchanges(),
    )
    .await?;
    let create = |extra: Vec<&'static str>, out: &Path| {
        let mut args = vec![
            os("snapshot"),
            os("create"),
            os("--data"),
            data.as_os_str(),
            os("--out"),
            out.as_os_str().to_owned().leak(),
        ];
        args.extend(extra.into_iter().map(os));
        async move { tapedeck(&args).await }
    };

    // The whole service: the same rules as the library finds (see the analyzer's golden files).
    let output = create(vec!["--service", "orders"], &out).await?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(stdout.contains("inbound   36 requests"), "{stdout}");
    ensure!(
        stdout.contains("tokens    20 rules: 4 correlation, 2 jwt, 8 timestamp, 1 uuid, 5 id"),
        "{stdout}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("snapshot.json"))?)?;
    assert!(
        manifest["source"]["sql"]
            .as_str()
            .is_some_and(|s| s.ends_with("WHERE service = 'orders'"))
    );

    // A window and a predicate are recorded in the SQL and cut the traffic.
    let cut = temp.path().join("cut");
    let output = create(
        vec![
            "--service",
            "orders",
            "--from",
            "2026-11-27T13:00:02Z",
            "--to",
            "2026-11-27T13:00:06Z",
            "--where",
            "method <> 'GET'",
        ],
        &cut,
    )
    .await?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let snapshot = tapedeck_analyzer::snapshot::read(&cut)?;
    assert!(snapshot.inbound.iter().all(|e| e.method != "GET"));
    assert!(!snapshot.inbound.is_empty() && snapshot.inbound.len() < 36);
    assert_eq!(
        snapshot.manifest.source.predicate.as_deref(),
        Some("method <> 'GET'")
    );
    assert!(
        snapshot
            .manifest
            .source
            .sql
            .contains("start_time >= TIMESTAMP '2026-11-27T13:00:02Z'")
    );
    assert_eq!(
        tapedeck_har::time::format_exact(snapshot.manifest.window.from.0),
        "2026-11-27T13:00:02Z"
    );

    // The output exists: refused without --force, replaced with it.
    let output = create(vec!["--service", "orders"], &out).await?;
    ensure!(!output.status.success());
    ensure!(String::from_utf8_lossy(&output.stderr).contains("--force"));
    let output = create(vec!["--service", "orders", "--force"], &out).await?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Bad input: a clear message and a non-zero exit, and nothing written.
    let none = temp.path().join("none");
    for (extra, code, message) in [
        (
            vec!["--service", "orders", "--from", "yesterday"],
            2,
            "--from \"yesterday\"",
        ),
        (
            vec!["--service", "orders", "--where", "1=1; DROP TABLE x"],
            2,
            "cannot contain ';'",
        ),
        (
            vec!["--service", "billing"],
            1,
            "no exchanges of service \"billing\"",
        ),
        (
            vec!["--service", "orders", "--where", "no_such_column = 1"],
            1,
            "no_such_column",
        ),
    ] {
        let output = create(extra.clone(), &none).await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{extra:?}: {stderr}");
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
        assert!(!none.exists(), "{extra:?} wrote a snapshot");
    }

    // Validate: a clean snapshot passes; an edited one names the file and line.
    let output = tapedeck(&[os("snapshot"), os("validate"), out.as_os_str()]).await?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let inbound = out.join("inbound.jsonl");
    let text = std::fs::read_to_string(&inbound)?;
    std::fs::write(
        &inbound,
        text.replacen("\"status\":201", "\"status\":\"created\"", 1),
    )?;
    let output = tapedeck(&[os("snapshot"), os("validate"), out.as_os_str()]).await?;
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("inbound.jsonl:2:"), "{stdout}");
    Ok(())
}

/// The README's main command, as a process, at the end-to-end test's size: every stage runs and
/// the regression is caught (`tests/tests/demo.rs` asserts each stage of the same loop).
#[tokio::test]
async fn the_demo_runs_the_whole_loop_and_catches_the_regression() -> Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = temp.path().join("demo");
    let output = tokio::time::timeout(
        Duration::from_secs(180),
        tapedeck(&[
            os("demo"),
            os("--dir"),
            dir.as_os_str(),
            os("--users"),
            os("12"),
            os("--orders-per-user"),
            os("3"),
            os("--ramp-up-secs"),
            os("2"),
            os("--think-ms"),
            os("600"),
            os("--copies"),
            os("4"),
            os("--calibrate"),
            os("1"),
            os("--min-samples"),
            os("20"),
        ]),
    )
    .await
    .context("the demo did not finish in 3 minutes")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "captured exchanges by direction:",
        "what redaction left of the secrets:",
        "resign     jwt inbound request header authorization Bearer",
        "inventory:",
        " 0 missed,",
        "A/B (v2 against v1): FAIL",
    ] {
        ensure!(
            stdout.contains(expected),
            "no {expected:?} in the demo's output:\n{stderr}\n{stdout}"
        );
    }
    ensure!(
        dir.join("reports/ab/report.html").is_file(),
        "no HTML report"
    );
    Ok(())
}

/// `tapedeck snapshot create --collector`: through a running collector's Flight SQL (with its
/// token), unflushed exchanges included, the snapshot is byte for byte the one the library makes
/// from the same exchanges.
#[tokio::test]
async fn a_snapshot_through_a_running_collector_matches_the_library() -> Result<()> {
    let temp = tempfile::tempdir()?;
    let data = temp.path().join("data");
    let flight = reserve_port()?;
    let mut collector = start_collector(
        &data,
        &["--flight-listen", &flight.to_string(), "--token", "s3cret"],
    )
    .await?;
    let exchanges = tapedeck_analyzer::fixture::Shop::default().exchanges();
    let mut client = CaptureClient::connect(format!("http://{}", collector.grpc)).await?;
    let mut push = tapedeck_proto::tonic::Request::new(ExchangeBatch {
        exchanges: exchanges.clone(),
        sequence: 1,
        ..Default::default()
    });
    push.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse()?);
    let ack = client.push(push).await?.into_inner();
    ensure!(ack.accepted == exchanges.len() as u64, "{ack:?}");

    let through_collector = temp.path().join("through-collector");
    let collector_url = format!("http://{flight}");
    let output = tapedeck(&[
        os("snapshot"),
        os("create"),
        os("--service"),
        os("orders"),
        os("--collector"),
        os(&collector_url),
        os("--token"),
        os("s3cret"),
        os("--out"),
        through_collector.as_os_str(),
    ])
    .await?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Without the token the collector refuses, and the error says so.
    let refused = tapedeck(&[
        os("snapshot"),
        os("create"),
        os("--service"),
        os("orders"),
        os("--collector"),
        os(&collector_url),
        os("--out"),
        temp.path().join("refused").as_os_str(),
    ])
    .await?;
    ensure!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    ensure!(
        stderr.contains("unauthenticated") || stderr.contains("token"),
        "{stderr}"
    );

    let cut = tapedeck_analyzer::Cut::new("orders", None, None, None, 0)?;
    let spec = tapedeck_analyzer::snapshot::Spec {
        service: "orders".into(),
        sql: cut.snapshot_sql(),
        predicate: None,
        from: None,
        to: None,
    };
    let in_process = temp.path().join("in-process");
    tapedeck_analyzer::snapshot::build(&spec, exchanges).write(&in_process, false)?;
    for file in ["snapshot.json", "inbound.jsonl", "outbound.jsonl"] {
        let (a, b) = (
            std::fs::read(through_collector.join(file))?,
            std::fs::read(in_process.join(file))?,
        );
        ensure!(
            a == b,
            "{file} differs between the collector's snapshot and the library's"
        );
    }

    // `tapedeck snapshot push | list | pull`: the same snapshot kept by the collector by its id
    // and read back byte for byte; the token guards it.
    let http_url = format!("http://{}", collector.http);
    let pushed = tapedeck(&[
        os("snapshot"),
        os("push"),
        through_collector.as_os_str(),
        os("--collector"),
        os(&http_url),
        os("--token"),
        os("s3cret"),
    ])
    .await?;
    ensure!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(through_collector.join("snapshot.json"))?)?;
    let id = String::from_utf8(pushed.stdout)?.trim().to_owned();
    ensure!(
        Some(id.as_str()) == manifest["id"].as_str(),
        "push printed {id:?}, the snapshot's id is {}",
        manifest["id"]
    );
    let listed = tapedeck(&[
        os("snapshot"),
        os("list"),
        os("--json"),
        os("--collector"),
        os(&http_url),
        os("--token"),
        os("s3cret"),
    ])
    .await?;
    ensure!(listed.status.success());
    let listing: serde_json::Value = serde_json::from_slice(&listed.stdout)?;
    let ids: Vec<&str> = listing["snapshots"]
        .as_array()
        .map(|all| all.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    ensure!(ids == [id.as_str()], "listed {ids:?}");
    let pulled = temp.path().join("pulled");
    let output = tapedeck(&[
        os("snapshot"),
        os("pull"),
        os(&id),
        os("--out"),
        pulled.as_os_str(),
        os("--collector"),
        os(&http_url),
        os("--token"),
        os("s3cret"),
    ])
    .await?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in ["snapshot.json", "inbound.jsonl", "outbound.jsonl"] {
        ensure!(
            std::fs::read(pulled.join(file))? == std::fs::read(through_collector.join(file))?,
            "{file} differs after push and pull"
        );
    }
    // Without the token, and for an id the collector does not hold, the commands fail and say why.
    let refused = tapedeck(&[
        os("snapshot"),
        os("push"),
        through_collector.as_os_str(),
        os("--collector"),
        os(&http_url),
    ])
    .await?;
    ensure!(
        !refused.status.success(),
        "a push without the token was stored"
    );
    let unknown = tapedeck(&[
        os("snapshot"),
        os("pull"),
        os("0000000000000000"),
        os("--out"),
        temp.path().join("unknown").as_os_str(),
        os("--collector"),
        os(&http_url),
        os("--token"),
        os("s3cret"),
    ])
    .await?;
    ensure!(!unknown.status.success(), "an unknown id was pulled");
    ensure!(
        !String::from_utf8_lossy(&unknown.stderr).trim().is_empty(),
        "pulling an unknown id failed without saying why"
    );
    collector.child.kill().await?;
    Ok(())
}

/// A loopback HTTP/1.1 server that answers every request with `status` and `{}`.
async fn fixed_status_server(status: u16) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| async move {
                    hyper::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// `tapedeck replay` exits with its verdict, as CI pipelines read it: 0 when every goal holds,
/// 1 when one fails, 2 when the replay cannot run.
#[tokio::test]
async fn replay_exit_codes_say_pass_fail_and_could_not_run() -> Result<()> {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../analyzer/tests/golden/shop");
    let golden = golden.to_str().context("golden path")?.to_owned();
    let dir = tempfile::tempdir()?;
    let replay = |target: SocketAddr, report: &str, extra: &[&str]| {
        let mut args: Vec<String> = [
            "replay",
            "--snapshot",
            &golden,
            "--target",
            &format!("http://{target}"),
            "--speed",
            "50",
            "--slo",
            "errors<1%",
            "--report",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(dir.path().join(report).display().to_string());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let run = |args: Vec<String>| async move {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| os(a)).collect();
        tapedeck(&args).await
    };

    let healthy = fixed_status_server(200).await?;
    let output = run(replay(healthy, "pass", &[])).await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.code() == Some(0),
        "a healthy target passes: {output:?}"
    );
    ensure!(stdout.contains("verdict: pass"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("pass/report.json"))?)?;
    ensure!(
        report["version"] == 2,
        "the JSON report is versioned: {report}"
    );

    let failing = fixed_status_server(500).await?;
    let output = run(replay(failing, "fail", &[])).await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.code() == Some(1),
        "a target answering 500 fails errors<1%: {output:?}"
    );
    ensure!(stdout.contains("verdict: FAIL"), "{stdout}");

    let output = run(replay(healthy, "strict", &["--strict-redacted"])).await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.code() == Some(2),
        "unresolved redacted values are fatal: {output:?}"
    );
    ensure!(
        stderr.contains("--secrets"),
        "the error says how to resolve them: {stderr}"
    );

    let output = run(vec![
        "replay".into(),
        "--snapshot".into(),
        dir.path().join("missing").display().to_string(),
        "--target".into(),
        format!("http://{healthy}"),
    ])
    .await?;
    ensure!(
        output.status.code() == Some(2),
        "a missing snapshot cannot run: {output:?}"
    );
    Ok(())
}
