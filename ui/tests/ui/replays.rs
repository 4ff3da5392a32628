//! Replay pages over a real replay: a snapshot of 40 `GET /items/{id}` requests replayed by the
//! generator against a baseline and a candidate (two local HTTP servers) whose responses differ
//! in one field, `$.build`, with `--slo "diffs<10%"`: the report fails on the differences. The
//! API shows it; marking `$.build` as noise writes an anchored rule into the `--noise` file
//! (readable by `tapedeck replay --noise`) and the verdict, decided again by the generator,
//! passes. Also: the viewer mounted on a running collector's HTTP port behind its token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use clap::Parser as _;
use serde_json::{Value, json};
use tapedeck_proto::{Direction, Exchange, Header, Message, Protocol};

use crate::support::Server;

/// Requests in the snapshot.
pub(crate) const ITEMS: u64 = 40;
/// The endpoint the analyzer names them by.
pub(crate) const ENDPOINT: &str = "GET /items/{id}";

const T0: u64 = 1_795_784_400 * 1_000_000_000;

fn item_body(n: u64, build: &str) -> String {
    json!({ "id": n, "name": format!("item {n}"), "build": build }).to_string()
}

fn inbound(n: u64) -> Exchange {
    let body = item_body(n, "v1");
    let mut id = [0u8; 16];
    id[8..].copy_from_slice(&(n + 1).to_be_bytes());
    let mut exchange = Exchange {
        id: id.to_vec(),
        trace_id: format!("{:032x}", n + 1),
        start_unix_nanos: T0 + n * 50_000_000,
        duration_nanos: 2_000_000,
        authority: "items.shop.svc:8080".into(),
        scheme: "http".into(),
        method: "GET".into(),
        path: format!("/items/{n}"),
        request: Some(Message::default()),
        status: 200,
        response: Some(Message {
            headers: vec![Header {
                name: "content-type".into(),
                value: b"application/json".to_vec(),
            }],
            body_size: body.len() as u64,
            body: body.into_bytes(),
            ..Default::default()
        }),
        sample_rate: 1.0,
        filter_version: "test".into(),
        ..Default::default()
    };
    exchange.set_direction(Direction::Inbound);
    exchange.set_protocol(Protocol::Http11);
    exchange
}

/// A server answering `GET /items/{n}` with `build`.
async fn items(build: &'static str) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = axum::Router::new().route(
        "/items/{n}",
        axum::routing::get(
            move |axum::extract::Path(n): axum::extract::Path<u64>| async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    item_body(n, build),
                )
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

#[derive(Debug, clap::Parser)]
struct Replay {
    #[command(flatten)]
    args: tapedeck_generator::ReplayArgs,
}

/// Replays the items snapshot into `dir/report` (candidate `v2` against baseline `v1`) and
/// returns the report directory.
pub(crate) async fn replay_report(dir: &Path) -> Result<PathBuf> {
    let spec = tapedeck_analyzer::snapshot::Spec {
        service: "items".into(),
        sql: "SELECT * FROM exchanges WHERE service = 'items'".into(),
        predicate: None,
        from: None,
        to: None,
    };
    let snapshot = dir.join("items");
    tapedeck_analyzer::snapshot::build(&spec, (0..ITEMS).map(inbound).collect())
        .write(&snapshot, false)?;
    let (baseline, baseline_task) = items("v1").await?;
    let (candidate, candidate_task) = items("v2").await?;
    let report = dir.join("report");
    let replay = Replay::try_parse_from([
        "replay".to_owned(),
        "--snapshot".to_owned(),
        snapshot.display().to_string(),
        "--target".to_owned(),
        format!("http://{candidate}"),
        "--baseline".to_owned(),
        format!("http://{baseline}"),
        "--concurrency".to_owned(),
        "4".to_owned(),
        "--slo".to_owned(),
        "diffs<10%".to_owned(),
        "--goal".to_owned(),
        "errors +50pp".to_owned(),
        "--min-samples".to_owned(),
        "10".to_owned(),
        "--progress".to_owned(),
        "never".to_owned(),
        "--report".to_owned(),
        report.display().to_string(),
    ])?;
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        tapedeck_generator::run(replay.args, std::future::pending()),
    )
    .await
    .context("the replay ends within 60 s")?;
    baseline_task.abort();
    candidate_task.abort();
    let report_value = result?;
    ensure!(
        report_value.overall.requests == ITEMS,
        "{}",
        report_value.summary()
    );
    Ok(report)
}

/// The UI on a replay report, with a noise file to write (not created yet).
pub(crate) async fn report_server(temp: &Path) -> Result<(Server, PathBuf)> {
    let report = replay_report(temp).await?;
    let noise = temp.join("noise.json");
    let server = Server::start_with(false, vec![report], Some(noise.clone()), false).await?;
    Ok((server, noise))
}

fn verdicts(shown: &Value) -> (Value, Value) {
    (
        shown["report"]["verdict"].clone(),
        shown["recomputed"]["verdict"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_a_field_as_noise_writes_an_anchored_rule_and_the_verdict_is_decided_again()
-> Result<()> {
    let temp = tempfile::tempdir()?;
    let (server, noise) = report_server(temp.path()).await?;

    let (status, list) = server.get("/api/reports").await?;
    ensure!(status == 200, "{list}");
    ensure!(list["reports"][0]["verdict"] == "fail", "{list}");
    ensure!(list["reports"][0]["recomputable"] == true, "{list}");

    // The report: the gate with its statistics, both arms' distributions, the differing field
    // in the three-way view, counted.
    let (status, shown) = server.get("/api/reports/0").await?;
    ensure!(status == 200, "{shown}");
    let report = &shown["report"];
    ensure!(
        report["gate"]["goals"][0]["goal"]["metric"] == "errors",
        "{report}"
    );
    ensure!(report["gate"]["verdict"] == "pass", "{}", report["gate"]);
    let endpoint_dist = report["distributions"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["endpoint"] == ENDPOINT))
        .context("the endpoint's distributions")?;
    ensure!(
        endpoint_dist["baseline"]
            .as_array()
            .is_some_and(|b| b.len() == 10)
    );
    ensure!(
        endpoint_dist["candidate"]
            .as_array()
            .is_some_and(|c| c.len() == 10)
    );
    let field = report["three_way"][0]["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["field"] == "$.build"))
        .context("$.build in the three-way view")?;
    // Values as the diff writes them: JSON text.
    ensure!(
        field["recorded"] == "\"v1\""
            && field["baseline"] == "\"v1\""
            && field["candidate"] == "\"v2\"",
        "{field}"
    );
    ensure!(field["outcome"] == "differs", "{field}");
    // Without rules in the (missing) noise file, the generator decides as the run did.
    ensure!(
        verdicts(&shown) == (json!("fail"), json!("fail")),
        "{shown}"
    );
    ensure!(
        shown["recomputed"]["overall_diffs"] == ITEMS,
        "{}",
        shown["recomputed"]
    );
    ensure!(!noise.exists());

    // A rule that is not anchored (no such endpoint) is refused as --noise refuses it, and the
    // file is not written.
    let (status, refused) = server
        .send(
            "POST",
            "/api/reports/0/noise",
            &json!({"endpoint": "GET /nowhere", "field": "$.build"}),
        )
        .await?;
    ensure!(status == 422, "{status} {refused}");
    ensure!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("not anchored") && e.contains("noise.json")),
        "{refused}"
    );
    ensure!(!noise.exists());

    // Mark $.build as noise: the rule is written, anchored, and the verdict passes.
    let (status, marked) = server
        .send(
            "POST",
            "/api/reports/0/noise",
            &json!({"endpoint": ENDPOINT, "field": "$.build"}),
        )
        .await?;
    ensure!(status == 200, "{marked}");
    ensure!(marked["changed"] == true);
    ensure!(
        verdicts(&marked) == (json!("fail"), json!("pass")),
        "{marked}"
    );
    let recomputed = &marked["recomputed"];
    ensure!(recomputed["overall_diffs"] == 0, "{recomputed}");
    ensure!(recomputed["diffs"] == json!([]), "{recomputed}");
    ensure!(
        recomputed["rules"][0]["suppressed"] == ITEMS,
        "{recomputed}"
    );
    let field = recomputed["three_way"][0]["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["field"] == "$.build"))
        .context("$.build")?;
    ensure!(field["outcome"] == "noise", "{field}");
    ensure!(field["by"] == "noise rule 0 (file)", "{field}");

    // The file is the generator's format, and `tapedeck replay --noise` reads it.
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&noise)?)?;
    ensure!(
        written["rules"] == json!([{"endpoint": ENDPOINT, "field": "$.build", "suppressed": 0}]),
        "{written}"
    );
    let rediff = tapedeck_generator::report::Rediff::read(&temp.path().join("report"))?;
    let file = tapedeck_generator::noise::read(&noise, &rediff.fields)?;
    ensure!(rediff.recompute(&file).verdict == tapedeck_generator::slo::Verdict::Pass);

    // Marking it again changes nothing; unmarking restores the verdict.
    let (_, again) = server
        .send(
            "POST",
            "/api/reports/0/noise",
            &json!({"endpoint": ENDPOINT, "field": "$.build"}),
        )
        .await?;
    ensure!(again["changed"] == false, "{again}");
    let (status, unmarked) = server
        .send(
            "DELETE",
            "/api/reports/0/noise",
            &json!({"endpoint": ENDPOINT, "field": "$.build"}),
        )
        .await?;
    ensure!(status == 200, "{unmarked}");
    ensure!(
        verdicts(&unmarked) == (json!("fail"), json!("fail")),
        "{unmarked}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_without_a_noise_file_are_read_only() -> Result<()> {
    let temp = tempfile::tempdir()?;
    let report = replay_report(temp.path()).await?;
    let server = Server::start_with(false, vec![report], None, false).await?;
    let (status, shown) = server.get("/api/reports/0").await?;
    ensure!(status == 200 && shown["recomputed"].is_null(), "{shown}");
    let (status, refused) = server
        .send(
            "POST",
            "/api/reports/0/noise",
            &json!({"endpoint": ENDPOINT, "field": "$.build"}),
        )
        .await?;
    ensure!(status == 403, "{status} {refused}");
    let (status, _) = server.get("/api/reports/1").await?;
    ensure!(status == 404);
    server.stop().await
}

/// The viewer on a running collector's HTTP port (`tapedeck collector --ui` composes the same
/// routes): the page and its API answer under /ui/ only with the collector's token, and query
/// the collector through its Flight SQL port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_mounted_on_the_collector_needs_its_token() -> Result<()> {
    let temp = tempfile::tempdir()?;
    let token = "s3cret-token";
    let args = tapedeck_collector::CollectorArgs {
        data: temp.path().join("data"),
        grpc_listen: "127.0.0.1:0".parse()?,
        http_listen: "127.0.0.1:0".parse()?,
        flight_listen: Some("127.0.0.1:0".parse()?),
        token: Some(token.to_owned()),
        ..Default::default()
    };
    let listeners = tapedeck_collector::Listeners::bind(&args).await?;
    let http = listeners.http.local_addr()?;
    let flight = listeners
        .flight
        .as_ref()
        .context("a flight listener")?
        .local_addr()?;
    let store = tapedeck_collector::store::open_store(&args.data, None)?;
    tapedeck_collector::writer::write_exchanges(
        &store.store,
        tapedeck_collector::writer::random_writer_id(),
        &crate::support::shop(),
    )
    .await?;
    let ui = tapedeck_ui::Ui::read_only(tapedeck_ui::Backend::remote(
        format!("http://{flight}"),
        Some(token.to_owned()),
    ));
    let mounted = tapedeck_ui::mounted(Arc::new(ui), Some(token.to_owned()));
    ensure!(
        tapedeck_collector::http::EXTRA_ROUTES.set(mounted).is_ok(),
        "mounted once per process"
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let collector = tokio::spawn(tapedeck_collector::run_with(
        args,
        listeners,
        store,
        async {
            let _ = stopped.await;
        },
    ));

    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("me:{token}")
        )
    );
    let get = |path: &'static str, auth: Option<String>| async move {
        crate::support::request_with(http, "GET", path, None, auth.as_deref()).await
    };
    // No token, or a wrong one: 401 with a challenge a browser answers.
    let (status, _) = get("/ui/", None).await?;
    ensure!(status == 401, "{status}");
    let (status, _) = get("/ui/api/info", Some("Bearer wrong".into())).await?;
    ensure!(status == 401, "{status}");
    // The collector's own routes are as before.
    let (status, _) = get("/healthz", None).await?;
    ensure!(status == 200);
    // With the token (basic, as a browser sends it; or bearer): the page, and the rows through
    // Flight SQL.
    let (status, page) = get("/ui/", Some(basic.clone())).await?;
    ensure!(status == 200 && String::from_utf8_lossy(&page).contains("app.js"));
    let (status, script) = get("/ui/app.js", Some(basic.clone())).await?;
    ensure!(status == 200 && script.len() == tapedeck_ui::assets::APP_JS.len());
    let (status, body) = get(
        "/ui/api/exchanges?limit=100",
        Some(format!("Bearer {token}")),
    )
    .await?;
    let rows: Value = serde_json::from_slice(&body)?;
    ensure!(status == 200, "{rows}");
    ensure!(
        rows["rows"].as_array().map(Vec::len) == Some(crate::support::shop().len()),
        "{rows}"
    );
    // Read-only: no snapshot directory, no noise file.
    let (status, _) = crate::support::request_with(
        http,
        "POST",
        "/ui/api/snapshots",
        Some(r#"{"name":"x","service":"orders"}"#),
        Some(&basic),
    )
    .await?;
    ensure!(status == 403, "{status}");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), collector).await???;
    Ok(())
}
