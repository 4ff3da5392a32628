//! The JSON API over a store with the shop's known traffic.

use std::collections::HashSet;

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::support::{Server, encode, shop};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ids(page: &Value) -> Vec<String> {
    page["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_pages_newest_first_with_every_exchange_once() -> Result<()> {
    let server = Server::start(false).await?;
    let total = shop().len();
    let mut seen = Vec::new();
    let mut starts: Vec<u128> = Vec::new();
    let mut path = "/api/exchanges?limit=7".to_owned();
    for _ in 0..20 {
        let (status, page) = server.get(&path).await?;
        ensure!(status == 200, "{page}");
        seen.extend(ids(&page));
        for row in page["rows"].as_array().into_iter().flatten() {
            starts.push(row["start_time"].as_str().unwrap_or("0").parse()?);
        }
        match page["next"].as_object() {
            Some(next) => {
                path = format!(
                    "/api/exchanges?limit=7&before={}&skip={}",
                    next["before"].as_str().unwrap_or(""),
                    next["skip"].as_str().unwrap_or("")
                );
            }
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    ensure!(
        seen.len() == total,
        "{} rows for {total} exchanges",
        seen.len()
    );
    ensure!(unique.len() == total, "a row came twice");
    ensure!(starts.windows(2).all(|w| w[0] >= w[1]), "not newest first");

    // Rows newer than the newest: none; newer than the oldest: all but the oldest.
    let (_, newer) = server
        .get(&format!("/api/exchanges?after={}", starts[0]))
        .await?;
    ensure!(ids(&newer).is_empty(), "{newer}");
    let oldest = starts.last().copied().unwrap_or(0);
    let (_, newer) = server
        .get(&format!("/api/exchanges?limit=1000&after={oldest}"))
        .await?;
    ensure!(
        ids(&newer).len() == starts.iter().filter(|s| **s > oldest).count(),
        "{newer}"
    );
    server.stop().await
}

/// A store whose newest hour holds fewer rows than a page: the list looks in wider windows
/// (`newest_first`) and still answers exactly the rows and order of one query over everything,
/// page after page, with a filter and within a range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_exact_when_the_newest_hours_hold_few_rows() -> Result<()> {
    const HOUR: u64 = 3_600_000_000_000;
    // The shop's 44 exchanges moved one per hour and a half, so the newest hour holds less than
    // a page of 3 (and, for the filter, the next windows too).
    let mut exchanges = shop();
    let base = exchanges
        .iter()
        .map(|e| e.start_unix_nanos)
        .min()
        .unwrap_or(0);
    for (i, exchange) in exchanges.iter_mut().enumerate() {
        exchange.start_unix_nanos = base + i as u64 * (HOUR * 3 / 2);
    }
    // Two exchanges share a start time, so the cursor's skip is exercised across windows.
    exchanges[40].start_unix_nanos = exchanges[41].start_unix_nanos;
    let server = Server::start_on(false, Vec::new(), None, Some(exchanges.clone())).await?;
    // What one ORDER BY over everything gives: newest first, ties by id, descending.
    let expected = |keep: &dyn Fn(&tapedeck_proto::Exchange) -> bool| {
        let mut rows: Vec<(u64, String)> = exchanges
            .iter()
            .filter(|e| keep(e))
            .map(|e| (e.start_unix_nanos, hex(&e.id)))
            .collect();
        rows.sort_by(|a, b| b.cmp(a));
        rows.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
    };
    let newest = exchanges
        .iter()
        .map(|e| e.start_unix_nanos)
        .max()
        .unwrap_or(0);
    let from = tapedeck_har::time::format_exact(newest - 30 * HOUR);
    for (query, keep) in [
        (
            String::new(),
            Box::new(|_: &tapedeck_proto::Exchange| true) as Box<dyn Fn(&_) -> bool>,
        ),
        (
            format!("&q={}", encode("status = 201")),
            Box::new(|e: &tapedeck_proto::Exchange| e.status == 201),
        ),
        (
            format!("&from={}", encode(&from)),
            Box::new(move |e: &tapedeck_proto::Exchange| e.start_unix_nanos >= newest - 30 * HOUR),
        ),
    ] {
        let want = expected(&*keep);
        ensure!(want.len() > 3, "{query}: the case needs more than a page");
        let mut seen = Vec::new();
        let mut path = format!("/api/exchanges?limit=3{query}");
        for _ in 0..50 {
            let (status, page) = server.get(&path).await?;
            ensure!(status == 200, "{page}");
            seen.extend(ids(&page));
            match page["next"].as_object() {
                Some(next) => {
                    path = format!(
                        "/api/exchanges?limit=3{query}&before={}&skip={}",
                        next["before"].as_str().unwrap_or(""),
                        next["skip"].as_str().unwrap_or("")
                    );
                }
                None => break,
            }
        }
        ensure!(seen == want, "{query}: {seen:?}\nwanted {want:?}");
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_is_one_read_only_expression() -> Result<()> {
    let server = Server::start(false).await?;
    let (status, page) = server
        .get(&format!("/api/exchanges?q={}", encode("status = 201")))
        .await?;
    ensure!(status == 200, "{page}");
    let created = shop().iter().filter(|e| e.status == 201).count();
    ensure!(created > 0 && ids(&page).len() == created, "{page}");

    // Time range: nothing before the shop's first session.
    let (_, page) = server.get("/api/exchanges?to=2026-11-27T12:00:00Z").await?;
    ensure!(ids(&page).is_empty(), "{page}");

    for (predicate, expected) in [
        ("1=1; DROP TABLE exchanges", "filter"),
        ("1=1) UNION SELECT * FROM exchanges WHERE (1=1", "filter"),
        ("status = 200 LIMIT 1", "filter"),
        ("no_such_column = 1", "no_such_column"),
    ] {
        let (status, body) = server
            .get(&format!("/api/validate?q={}", encode(predicate)))
            .await?;
        ensure!(status == 400, "{predicate:?} answered {status}: {body}");
        let error = body["error"].as_str().unwrap_or("");
        ensure!(error.contains(expected), "{predicate:?}: {error}");
    }
    let (status, body) = server
        .get(&format!(
            "/api/validate?q={}",
            encode("header(request_headers, 'x-api-key') LIKE 'tapedeck-redacted:%'")
        ))
        .await?;
    ensure!(status == 200, "{body}");
    let (_, columns) = server.get("/api/columns").await?;
    ensure!(
        columns["columns"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "response_flags")),
        "{columns}"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detail_shows_redactions_binary_bodies_and_the_trace() -> Result<()> {
    let server = Server::start(false).await?;
    let exchanges = shop();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let receipt = exchanges
        .iter()
        .find(|e| e.path.ends_with("/receipt"))
        .expect("a receipt");
    let (status, detail) = server
        .get(&format!(
            "/api/exchanges/{}?t={}",
            hex(&receipt.id),
            receipt.start_unix_nanos
        ))
        .await?;
    ensure!(status == 200, "{detail}");
    ensure!(detail["response"]["body"]["kind"] == "hex", "{detail}");
    ensure!(
        detail["response"]["body"]["hex"]
            .as_str()
            .is_some_and(|h| h.starts_with("00000000  25 50 44 46")),
        "{detail}"
    );

    let charge = exchanges
        .iter()
        .find(|e| e.direction == tapedeck_proto::Direction::Outbound as i32)
        .expect("an outbound call");
    let (_, detail) = server
        .get(&format!("/api/exchanges/{}", hex(&charge.id)))
        .await?;
    let key = detail["request"]["headers"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["name"] == "x-api-key"))
        .cloned()
        .unwrap_or_default();
    ensure!(key["redacted"] == true, "{detail}");
    ensure!(detail["request"]["body"]["kind"] == "json", "{detail}");

    // The trace: the inbound request that caused the call has it as a child.
    let (status, tree) = server
        .get(&format!("/api/traces/{}", charge.trace_id))
        .await?;
    ensure!(status == 200, "{tree}");
    let roots = tree["roots"].as_array().cloned().unwrap_or_default();
    let parent = roots
        .iter()
        .find(|r| {
            r["children"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["id"] == json!(hex(&charge.id))))
        })
        .cloned()
        .unwrap_or_default();
    ensure!(parent["direction"] == "inbound", "{tree}");
    ensure!(parent["method"] == "POST", "{tree}");

    let (status, missing) = server.get("/api/exchanges/00ff").await?;
    ensure!(status == 404, "{missing}");
    let (status, _) = server.get("/api/exchanges/nothex").await?;
    ensure!(status == 400);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filtered_set_exports_as_har_and_draws_a_map() -> Result<()> {
    let server = Server::start(false).await?;
    let (status, har) = server
        .get(&format!("/api/har?q={}", encode("direction = 'outbound'")))
        .await?;
    ensure!(status == 200, "{har}");
    let outbound = shop()
        .iter()
        .filter(|e| e.direction == tapedeck_proto::Direction::Outbound as i32)
        .count();
    ensure!(har["log"]["version"] == "1.2", "{har}");
    ensure!(
        har["log"]["entries"].as_array().map(Vec::len) == Some(outbound),
        "expected {outbound} entries"
    );

    let (status, map) = server.get("/api/map").await?;
    ensure!(status == 200, "{map}");
    let edges = map["edges"].as_array().cloned().unwrap_or_default();
    let call = edges
        .iter()
        .find(|e| e["source"] == "orders" && e["target"] != "orders")
        .cloned()
        .unwrap_or_default();
    ensure!(call["calls"] == json!(outbound), "{map}");
    ensure!(call["p99_ms"].as_f64().is_some_and(|p| p > 0.0), "{map}");
    let inbound = edges
        .iter()
        .find(|e| e["source"] == "(clients)" && e["target"] == "orders")
        .cloned()
        .unwrap_or_default();
    ensure!(inbound["calls"] == json!(shop().len() - outbound), "{map}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_cut_and_their_rules_edited_only_when_allowed() -> Result<()> {
    let read_only = Server::start(false).await?;
    let (status, body) = read_only
        .send(
            "POST",
            "/api/snapshots",
            &json!({"name": "s", "service": "orders"}),
        )
        .await?;
    ensure!(status == 403, "{body}");
    read_only.stop().await?;

    let server = Server::start(true).await?;
    let dir = server.snapshots.clone().unwrap_or_default().join("shop");
    for bad in ["../escape", ".hidden", ""] {
        let (status, body) = server
            .send(
                "POST",
                "/api/snapshots",
                &json!({"name": bad, "service": "orders"}),
            )
            .await?;
        ensure!(
            status == 400 || status == 404 || status == 405,
            "{bad:?}: {status} {body}"
        );
    }
    let (status, made) = server
        .send(
            "POST",
            "/api/snapshots",
            &json!({"name": "shop", "service": "orders", "q": "path NOT LIKE '/healthz%'"}),
        )
        .await?;
    ensure!(status == 201, "{made}");
    ensure!(made["rules"].as_u64().is_some_and(|r| r > 0), "{made}");
    let (_, shown) = server.get("/api/snapshots/shop").await?;
    ensure!(shown["valid"] == true, "{shown}");
    let rules = shown["rules"].as_array().cloned().unwrap_or_default();
    let jwt = rules
        .iter()
        .position(|r| r["kind"] == "jwt")
        .expect("a jwt rule");

    // A valid change is written and validates.
    let (status, edited) = server
        .send(
            "PUT",
            &format!("/api/snapshots/shop/rules/{jwt}"),
            &json!({"replay": "keep"}),
        )
        .await?;
    ensure!(status == 200, "{edited}");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("snapshot.json"))?)?;
    ensure!(manifest["tokens"][jwt]["replay"] == "keep", "{manifest}");
    let (snapshot, problems) = tapedeck_analyzer::snapshot::validate(&dir);
    ensure!(snapshot.is_some() && problems.is_empty(), "{problems:?}");

    // An invalid one gets the validator's message and is not kept.
    let before = std::fs::read_to_string(dir.join("snapshot.json"))?;
    let (status, refused) = server
        .send(
            "PUT",
            &format!("/api/snapshots/shop/rules/{jwt}"),
            &json!({"replay": "shift"}),
        )
        .await?;
    ensure!(status == 422, "{refused}");
    ensure!(
        refused["problems"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p
                .as_str()
                .is_some_and(|p| p.contains("snapshot.json") && p.contains("does not apply")))),
        "{refused}"
    );
    ensure!(std::fs::read_to_string(dir.join("snapshot.json"))? == before);

    // Evidence: the line a rule was found at, with the exchange's id.
    let first = &rules[jwt]["evidence"]["first"];
    let (status, entry) = server
        .get(&format!(
            "/api/snapshots/shop/entries?file={}&line={}",
            first["file"].as_str().unwrap_or(""),
            first["line"]
        ))
        .await?;
    ensure!(status == 200, "{entry}");
    ensure!(
        entry["entry"]["id"]
            .as_str()
            .is_some_and(|id| id.len() == 32),
        "{entry}"
    );

    // Delete.
    let (status, after) = server
        .send(
            "DELETE",
            &format!("/api/snapshots/shop/rules/{jwt}"),
            &json!({}),
        )
        .await?;
    ensure!(status == 200, "{after}");
    ensure!(
        after["rules"].as_array().map(Vec::len) == Some(rules.len() - 1),
        "{after}"
    );
    server.stop().await
}
