//! The report: goals and the exit code, report.json against its schema, junit.xml read back,
//! report.html rendered in headless Chromium with its charts drawn.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use quick_xml::Reader;
use quick_xml::events::Event;
use tapedeck_generator::report::{HTML_FILE, JSON_FILE, JUNIT_FILE};
use tapedeck_generator::{Error, Verdict, slo};

use crate::support::{Received, Reply, Server, args, inbound, replay, write_snapshot};

/// Checks `dir/file` against `docs/<schema>`, and that the schema refuses an unknown field;
/// returns the JSON.
pub(crate) fn check_schema(dir: &Path, schema: &str, file: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(file)).expect("the file");
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(schema);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("the schema"))
            .expect("json");
    let validator = jsonschema::draft202012::new(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The schema is strict: an unknown field is refused.
    let mut extra = value.clone();
    extra["colour"] = serde_json::json!("red");
    assert!(!validator.is_valid(&extra));
    value
}

/// A small snapshot of two endpoints; the server differs from the recording on one field.
async fn run_with_report(dir: &Path, slo: &str) -> (tapedeck_generator::Report, PathBuf) {
    run_with_report_and(dir, slo, false).await
}

/// The same, with a baseline that answers as recorded when `paired`.
async fn run_with_report_and(
    dir: &Path,
    slo: &str,
    paired: bool,
) -> (tapedeck_generator::Report, PathBuf) {
    let exchanges = (0..6)
        .map(|i| {
            if i % 2 == 0 {
                inbound(
                    i,
                    i * 5,
                    "GET",
                    &format!("/orders/ord_{i:06}"),
                    &[],
                    "",
                    200,
                    r#"{"status":"paid","total":10}"#,
                )
            } else {
                inbound(i, i * 5, "GET", "/health", &[], "", 200, r#"{"ok":true}"#)
            }
        })
        .collect();
    let snapshot = write_snapshot(dir, "report", exchanges);
    let _server_guard;
    let server = Server::start(Arc::new(|r: &Received| {
        if r.path.starts_with("/orders/") {
            Reply::json(200, r#"{"status":"shipped","total":10}"#)
        } else {
            Reply::json(200, r#"{"ok":true}"#)
        }
    }))
    .await;
    let baseline = Server::start(Arc::new(|r: &Received| {
        if r.path.starts_with("/orders/") {
            Reply::json(200, r#"{"status":"paid","total":10}"#)
        } else {
            Reply::json(200, r#"{"ok":true}"#)
        }
    }))
    .await;
    let mut a = args(&snapshot, &server.url);
    a.concurrency = Some(2);
    a.iterations = Some(3);
    a.slo = Some(slo.to_owned());
    if paired {
        a.baseline = vec![baseline.url.clone()];
        a.gate.min_samples = 2;
    }
    let out = dir.join("out");
    a.report = Some(out.clone());
    let report = replay(a).await.expect("the replay runs");
    _server_guard = (server, baseline);
    (report, out)
}

#[tokio::test]
async fn goals_decide_the_verdict_and_the_exit_code() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (report, _) = run_with_report(dir.path(), "p99<10s,errors<1%,rps>=1").await;
    assert_eq!(report.verdict(), Verdict::Pass);
    assert_eq!(report.verdict().exit_code(), 0);
    assert_eq!(report.slo.goals.len(), 3);

    let dir = tempfile::tempdir().expect("a temp dir");
    let (report, _) = run_with_report(dir.path(), "p99<0.001ms,errors<1%").await;
    assert_eq!(report.verdict(), Verdict::Fail);
    assert_eq!(report.verdict().exit_code(), 1);
    assert!(!report.slo.goals[0].pass);
    assert!(report.slo.goals[1].pass);

    // A goal file, comments and new lines allowed.
    let file = dir.path().join("goals.txt");
    std::fs::write(&file, "# latency\np95 <= 5s\nerrors < 0.5%, diffs<=100%\n")
        .expect("writing goals");
    let goals = slo::parse(file.to_str().expect("utf-8")).expect("the goals parse");
    assert_eq!(goals.len(), 3);
    assert_eq!(goals[0].threshold, 5000.0);
    assert_eq!(goals[1].threshold, 0.005);
    assert!(matches!(slo::parse("p99~3"), Err(Error::Slo(_))));
    assert!(matches!(slo::parse("latency<3ms"), Err(Error::Slo(_))));
}

#[tokio::test]
async fn report_json_follows_its_schema_and_groups_diffs() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (report, out) = run_with_report(dir.path(), "p99<10s").await;
    let value = check_schema(&out, "replay-report-v2.schema.json", JSON_FILE);
    assert_eq!(value["version"], 2);
    assert_eq!(value["verdict"], "pass");
    assert_eq!(report.overall.requests, 18);
    assert_eq!(report.endpoints.len(), 2);
    // The changed field, grouped by endpoint and field, with examples.
    assert_eq!(report.diffs.len(), 1, "{:#?}", report.diffs);
    let group = &report.diffs[0];
    assert_eq!(group.endpoint, "GET /orders/{id}");
    assert_eq!(group.field, "$.status");
    assert_eq!(group.count, 9);
    assert_eq!(group.examples.len(), 3);
    assert_eq!(group.examples[0].recorded.as_deref(), Some("\"paid\""));
    assert_eq!(group.examples[0].live.as_deref(), Some("\"shipped\""));
}

#[tokio::test]
async fn ignored_fields_are_not_diffs() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let exchanges = vec![inbound(
        0,
        0,
        "GET",
        "/orders/ord_000001",
        &[],
        "",
        200,
        r#"{"status":"paid","n":{"a":1}}"#,
    )];
    let snapshot = write_snapshot(dir.path(), "ignore", exchanges);
    let server = Server::start(Arc::new(|_: &Received| {
        Reply::json(200, r#"{"n":{"a":2},"status":"shipped"}"#)
    }))
    .await;
    let mut a = args(&snapshot, &server.url);
    a.ignore = vec!["GET /orders/{id} $.status".into(), "$.n".into()];
    let report = replay(a).await.expect("the replay runs");
    assert!(report.diffs.is_empty(), "{:#?}", report.diffs);
    let mut a = args(&snapshot, &server.url);
    a.ignore = vec!["$.stat".into()];
    let report = replay(a).await.expect("the replay runs");
    let fields: Vec<&str> = report.diffs.iter().map(|d| d.field.as_str()).collect();
    assert_eq!(fields, ["$.n.a", "$.status"]);
}

#[tokio::test]
async fn junit_xml_reads_back_with_a_case_per_goal_and_per_endpoint() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (_, out) = run_with_report(dir.path(), "p99<10s,p50<0.001ms").await;
    let xml = std::fs::read_to_string(out.join(JUNIT_FILE)).expect("junit.xml");
    let mut reader = Reader::from_str(&xml);
    let mut cases: Vec<(String, String, bool)> = Vec::new();
    let mut open: Option<(String, String)> = None;
    loop {
        match reader.read_event().expect("well-formed xml") {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testcase" => {
                let attr = |name: &[u8]| {
                    e.attributes()
                        .filter_map(Result::ok)
                        .find(|a| a.key.as_ref() == name)
                        .map(|a| a.unescape_value().expect("an attribute").into_owned())
                        .unwrap_or_default()
                };
                open = Some((attr(b"classname"), attr(b"name")));
                cases.push((attr(b"classname"), attr(b"name"), false));
            }
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"failure" => {
                assert!(open.is_some(), "a failure inside a test case");
                if let Some(last) = cases.last_mut() {
                    last.2 = true;
                }
            }
            Event::End(e) if e.name().as_ref() == b"testcase" => open = None,
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(
        cases,
        vec![
            ("slo".into(), "p99<10s".into(), false),
            ("slo".into(), "p50<0.001ms".into(), true),
            ("endpoints".into(), "GET /health".into(), false),
            ("endpoints".into(), "GET /orders/{id}".into(), true),
        ]
    );
}

fn chromium() -> String {
    std::env::var("TAPEDECK_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

#[tokio::test]
async fn report_html_draws_its_charts_in_headless_chromium() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (report, out) = run_with_report_and(dir.path(), "p99<10s", true).await;
    let page = out.join(HTML_FILE);
    let html = std::fs::read_to_string(&page).expect("report.html");
    // Self-contained: no external resource.
    for needle in ["src=\"http", "href=\"http", "@import", "<link"] {
        assert!(!html.contains(needle), "{needle} in the page");
    }
    let profile = tempfile::tempdir().expect("a profile dir");
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| panic!("running {} (./x setup installs it): {e}", chromium()));
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("data-rendered=\"yes\""),
        "the script ran to its end"
    );
    // Each chart has its series drawn as SVG paths with real points.
    for series in ["p50", "p99", "rps", "errors"] {
        let marker = format!("data-series=\"{series}\"");
        let at = dom
            .find(&marker)
            .unwrap_or_else(|| panic!("no {series} path in the DOM"));
        let path = &dom[dom[..at].rfind("<path").expect("a path element")..at];
        assert!(path.contains("d=\"M"), "{series}: {path}");
    }
    // The per-endpoint table was filled from the embedded report.
    assert!(
        dom.contains("<td>GET /orders/{id}</td>"),
        "the endpoint table"
    );
    // Baseline and candidate distributions side by side, per endpoint, with the verdict.
    assert_eq!(report.distributions.len(), 3);
    for i in 0..report.distributions.len() {
        for arm in ["baseline", "candidate"] {
            let marker = format!("data-series=\"{arm}-{i}\"");
            let at = dom
                .find(&marker)
                .unwrap_or_else(|| panic!("no {arm} distribution {i} in the DOM"));
            let path = &dom[dom[..at].rfind("<path").expect("a path element")..at];
            assert!(path.contains("d=\"M"), "{arm} {i}: {path}");
        }
    }
    let gate = report.gate.as_ref().expect("the gate ran");
    let verdict = format!("class=\"verdict {}\"", gate.verdict.as_str());
    assert!(
        dom.contains(&verdict),
        "the verdict beside the distributions"
    );
    // The gate table's overall row as the script draws it: goal, endpoint, verdict, n. (Not the
    // row's text line: that is only in the embedded JSON, where `<` is written `\u003c`.)
    let goal = &gate.goals[0];
    let row = format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        goal.goal
            .text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;"),
        goal.overall.endpoint,
        goal.overall.verdict.as_str(),
        goal.overall.n
    );
    assert!(dom.contains(&row), "the gate table's overall row: {row}");
    // The three-way view: recorded and baseline say paid, the candidate shipped.
    assert!(
        dom.contains("<tr class=\"differs\"><td>$.status</td><td>\"paid\"</td><td>\"paid\"</td><td>\"shipped\"</td><td>differs</td><td>exact</td></tr>"),
        "the three-way view"
    );
    assert!(
        dom.contains("0 of 0 noise rules applied"),
        "the noise section"
    );
}
