//! What the target receives: exact content and order, tokens at replay time (correlations,
//! re-signed JWTs, shifted timestamps, secrets), copies kept apart, failed sources.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tapedeck_analyzer::snapshot;
use tapedeck_generator::Error;

use crate::support::{
    Received, Reply, Server, T0, args, inbound, replay, shop_snapshot, write_snapshot,
};

/// A fake of the shop's `orders` service: logins issue fresh tokens and session cookies,
/// `POST /orders` mints fresh ids, reads need a known id and a known token. `fail_create`: the
/// n-th `POST /orders` (0-based) answers 500.
fn shop_app(fail_create: Option<usize>) -> (crate::support::Handler, Arc<Mutex<ShopState>>) {
    let state = Arc::new(Mutex::new(ShopState::default()));
    let shared = state.clone();
    let handler = Arc::new(move |r: &Received| {
        let mut s = shared.lock().expect("the shop state");
        let copy = r.trace().copy;
        let token = r
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::to_owned);
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/login") => {
                s.logins += 1;
                let n = s.logins;
                let token = format!("live-token-{n}");
                let session = format!("live-session-{n}");
                s.tokens.insert(token.clone(), copy);
                s.sessions.insert(session.clone(), copy);
                s.passwords.push(
                    serde_json::from_slice::<serde_json::Value>(&r.body).expect("a json login")["password"]
                        .as_str()
                        .expect("a password")
                        .to_owned(),
                );
                let mut reply = Reply::json(
                    200,
                    &format!(
                        r#"{{"token":"{token}","token_type":"Bearer","expires_at":"2030-01-01T00:00:00.000Z"}}"#
                    ),
                );
                reply.headers.push((
                    "set-cookie".into(),
                    format!("session={session}; Path=/; HttpOnly"),
                ));
                reply
            }
            ("POST", "/orders") => {
                let n = s.creates;
                s.creates += 1;
                let authorized = token.as_ref().and_then(|t| s.tokens.get(t)) == Some(&copy);
                if !authorized {
                    s.problems
                        .push(format!("create with a token not of copy {copy}: {token:?}"));
                    return Reply::json(401, r#"{"error":"unauthorized"}"#);
                }
                if Some(n) == fail_create {
                    return Reply::json(500, r#"{"error":"boom"}"#);
                }
                let id = format!("live_{n:04}");
                s.orders.insert(id.clone(), copy);
                Reply::json(
                    201,
                    &format!(
                        r#"{{"id":"{id}","status":"paid","amount":5196,"currency":"EUR","created_at":"2030-01-01T00:00:00.000Z"}}"#
                    ),
                )
            }
            (_, path) if path.starts_with("/orders/") => {
                let id = path
                    .trim_start_matches("/orders/")
                    .split('/')
                    .next()
                    .unwrap_or("");
                let cookie_ok = r
                    .header("cookie")
                    .and_then(|c| c.split("; ").find_map(|p| p.strip_prefix("session=")))
                    .and_then(|v| s.sessions.get(v))
                    == Some(&copy);
                if s.orders.get(id) != Some(&copy) || !cookie_ok {
                    s.problems.push(format!(
                        "{} {path} of copy {copy}: unknown id or session",
                        r.method
                    ));
                    return Reply::json(404, r#"{"error":"not found"}"#);
                }
                Reply::json(200, &format!(r#"{{"id":"{id}","status":"paid"}}"#))
            }
            _ => Reply::json(404, "{}"),
        }
    });
    (handler, state)
}

#[derive(Debug, Default)]
struct ShopState {
    logins: usize,
    creates: usize,
    tokens: HashMap<String, u32>,
    sessions: HashMap<String, u32>,
    orders: HashMap<String, u32>,
    passwords: Vec<String>,
    problems: Vec<String>,
}

#[tokio::test]
async fn requests_arrive_exactly_as_recorded_in_order() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let exchanges = vec![
        inbound(
            0,
            0,
            "GET",
            "/items?page=1",
            &[
                ("accept", "application/json"),
                ("x-tenant", "acme"),
                (
                    "traceparent",
                    "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
                ),
                ("x-envoy-attempt-count", "1"),
                ("content-length", "999"),
            ],
            "",
            200,
            r#"{"items":[]}"#,
        ),
        inbound(
            1,
            10,
            "POST",
            "/items",
            &[("content-type", "application/json"), ("x-tenant", "acme")],
            r#"{"name": "kettle", "qty": 2}"#,
            201,
            r#"{"ok":true}"#,
        ),
        inbound(
            2,
            20,
            "DELETE",
            "/items/sku-1",
            &[("x-tenant", "acme"), ("connection", "keep-alive")],
            "",
            204,
            "",
        ),
    ];
    let snapshot = write_snapshot(dir.path(), "plain", exchanges);
    let read = snapshot::read(&snapshot).expect("the snapshot reads");
    let mut server =
        Server::start(Arc::new(|_: &Received| Reply::json(200, r#"{"items":[]}"#))).await;
    let mut a = args(&snapshot, &server.url);
    a.concurrency = Some(1);
    let report = replay(a).await.expect("the replay runs");
    assert_eq!(report.overall.requests, 3);
    let got = server.drain();
    assert_eq!(got.len(), 3);
    for (i, (r, entry)) in got.iter().zip(&read.inbound).enumerate() {
        assert_eq!(r.method, entry.method);
        assert_eq!(r.path, entry.path);
        assert_eq!(r.version, http::Version::HTTP_11);
        let body = entry
            .request
            .body
            .as_ref()
            .map(|b| b.as_bytes().to_vec())
            .unwrap_or_default();
        assert_eq!(r.body, body, "line {}", i + 1);
        // Every recorded header but the transport and tracing ones, in order, byte for byte.
        let expected: Vec<(String, String)> = entry
            .request
            .headers
            .iter()
            .filter(|h| !tapedeck_generator::live::dropped_header(&h.0))
            .map(|h| {
                (
                    h.0.clone(),
                    entry.request.header(&h.0).expect("text").to_owned(),
                )
            })
            .collect();
        let sent: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(n, _)| {
                !matches!(
                    n.as_str(),
                    "host" | "content-length" | "traceparent" | "x-request-id"
                )
            })
            .cloned()
            .collect();
        assert_eq!(sent, expected, "line {}", i + 1);
        // Tracing regenerated: the replay convention, copy 0, iteration 0, this line.
        let trace = r.trace();
        assert_eq!(
            (trace.copy, trace.iteration, trace.line),
            (0, 0, i as u32 + 1)
        );
        assert!(r.header("x-envoy-attempt-count").is_none());
        assert!(r.header("x-request-id").is_some());
        // content-length recomputed.
        if !r.body.is_empty() {
            assert_eq!(
                r.header("content-length"),
                Some(r.body.len().to_string().as_str())
            );
        }
    }
}

#[tokio::test]
async fn login_create_read_uses_live_values_and_copies_keep_their_sessions() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshot = shop_snapshot(dir.path());
    let (inner, state) = shop_app(None);
    // Logins take 300 ms: the open model sends each copy's first POST /orders 7.5 ms after its
    // login (3 copies at 400/s), so those requests must wait for their source. The delay is
    // long so that a loaded machine cannot blur the wait with the latency.
    let handler: crate::support::Handler = Arc::new(move |r: &Received| {
        let mut reply = inner(r);
        if r.path == "/login" {
            reply.delay = std::time::Duration::from_millis(300);
        }
        reply
    });
    let mut server = Server::start(handler).await;
    let mut a = args(&snapshot, &server.url);
    a.rate = Some(400.0);
    a.copies = 3;
    let report = replay(a).await.expect("the replay runs");
    let got = server.drain();
    let state = state.lock().expect("the state");
    assert!(state.problems.is_empty(), "{:?}", state.problems);
    // 36 inbound lines × 3 copies, each with its own login.
    assert_eq!(got.len(), 36 * 3);
    assert_eq!(state.logins, 4 * 3);
    assert_eq!(report.overall.failed_sources, 0);
    assert_eq!(report.overall.errors, 0);
    let copies: HashSet<u32> = got.iter().map(|r| r.trace().copy).collect();
    assert_eq!(copies, HashSet::from([0, 1, 2]));
    // Every read used a live id (none of the recorded ord_… ids), and every status is a success.
    for r in &got {
        assert!(!r.path.contains("ord_0"), "recorded id sent: {}", r.path);
        if let Some(auth) = r.header("authorization") {
            assert!(auth.starts_with("Bearer live-token-"), "{auth}");
        }
    }
    assert!(
        report.overall.status.keys().all(|s| s.starts_with('2')),
        "{:?}",
        report.overall.status
    );
    // The first POST /orders of each copy waited for its login, and the wait is reported apart
    // from the latency (which counts from the moment the source was ready).
    let create = report
        .endpoints
        .iter()
        .find(|e| e.endpoint == "POST /orders")
        .expect("create");
    assert!(create.waits.count >= 3, "{:?}", create.waits);
    assert!(create.waits.max >= 250.0, "{:?}", create.waits);
    assert!(create.latency.max < 200.0, "{:?}", create.latency);
}

#[tokio::test]
async fn a_failed_source_is_reported_and_its_uses_are_not_sent() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshot = shop_snapshot(dir.path());
    // The second POST /orders fails: its GET, PUT and receipt must not be sent.
    let (handler, state) = shop_app(Some(1));
    let mut server = Server::start(handler).await;
    let mut a = args(&snapshot, &server.url);
    a.concurrency = Some(1);
    let report = replay(a).await.expect("the replay runs");
    let got = server.drain();
    let state = state.lock().expect("the state");
    assert!(state.problems.is_empty(), "{:?}", state.problems);
    assert_eq!(report.overall.failed_sources, 3);
    assert_eq!(got.len(), 36 - 3);
    let not_sent: u64 = report.endpoints.iter().map(|e| e.failed_sources).sum();
    assert_eq!(not_sent, 3);
    for endpoint in [
        "GET /orders/{id}",
        "PUT /orders/{id}",
        "GET /orders/{id}/receipt",
    ] {
        let e = report
            .endpoints
            .iter()
            .find(|e| e.endpoint == endpoint)
            .expect(endpoint);
        assert_eq!(e.failed_sources, 1, "{endpoint}");
    }
    assert_eq!(report.overall.status.get("500"), Some(&1));
}

fn hs256(secret: &[u8], signing_input: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(signing_input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

fn jwt(claims: &str) -> String {
    format!(
        "{}.{}.tapedeck-redacted:hmac-sha256:00112233445566778899aabbccddeeff",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"prod"}"#),
        URL_SAFE_NO_PAD.encode(claims.as_bytes())
    )
}

fn claims_of(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).expect("claims");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Three requests with recorded tokens of three users, no login in the recording.
fn jwt_snapshot(dir: &std::path::Path) -> (std::path::PathBuf, Vec<String>) {
    let t0 = (T0 / 1_000_000_000) as i64;
    let tokens: Vec<String> = (0..3)
        .map(|i| {
            jwt(&format!(
                r#"{{"sub":"user-{i}","iss":"https://auth.prod","aud":"orders","iat":{},"exp":{},"scope":"orders"}}"#,
                t0 + i,
                t0 + i + 900
            ))
        })
        .collect();
    let exchanges = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            inbound(
                i as u64,
                i as u64 * 10,
                "GET",
                "/me",
                &[("authorization", &format!("Bearer {t}"))],
                "",
                200,
                "{}",
            )
        })
        .collect();
    (write_snapshot(dir, "jwt", exchanges), tokens)
}

#[tokio::test]
async fn jwts_are_resigned_with_the_key_and_their_claims_moved_in_time() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (snapshot, recorded) = jwt_snapshot(dir.path());
    let secret = b"test-secret-0123456789";
    let key = dir.path().join("hs.key");
    std::fs::write(&key, secret).expect("writing the key");
    let mut server = Server::start(Arc::new(|_: &Received| Reply::json(200, "{}"))).await;
    let mut a = args(&snapshot, &server.url);
    a.concurrency = Some(1);
    a.iterations = Some(2);
    a.jwt_key = Some(format!("HS256:{}#test-kid", key.display()));
    a.jwt_claim = vec!["iss=https://auth.test".into()];
    let before = now_s();
    let report = replay(a).await.expect("the replay runs");
    let after = now_s();
    let got = server.drain();
    assert_eq!(got.len(), 6);
    let offset_low = before - (T0 / 1_000_000_000) as i64 - 1;
    let offset_high = after - (T0 / 1_000_000_000) as i64 + 1;
    for (i, r) in got.iter().enumerate() {
        let token = r
            .header("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
            .expect("a bearer token");
        let (input, signature) = token.rsplit_once('.').expect("three parts");
        assert_eq!(
            signature,
            hs256(secret, input),
            "the key verifies request {i}"
        );
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(input.split('.').next().expect("a header"))
                .expect("base64url"),
        )
        .expect("json");
        assert_eq!(header["alg"], "HS256");
        assert_eq!(header["kid"], "test-kid");
        let live = claims_of(token);
        let original = claims_of(&recorded[i % 3]);
        // The recorded claims, moved by the run offset, iss overridden.
        assert_eq!(live["sub"], original["sub"]);
        assert_eq!(live["aud"], original["aud"]);
        assert_eq!(live["scope"], original["scope"]);
        assert_eq!(live["iss"], "https://auth.test");
        let moved = live["iat"].as_i64().expect("iat") - original["iat"].as_i64().expect("iat");
        assert!(
            (offset_low..=offset_high).contains(&moved),
            "iat moved by {moved}, expected {offset_low}..={offset_high}"
        );
        assert_eq!(
            live["exp"].as_i64().expect("exp") - live["iat"].as_i64().expect("iat"),
            900,
            "lifetime kept"
        );
    }
    assert!(report.overall.resign_without_key.is_empty());
}

#[tokio::test]
async fn without_a_key_recorded_tokens_are_sent_and_counted() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (snapshot, recorded) = jwt_snapshot(dir.path());
    let mut server = Server::start(Arc::new(|_: &Received| Reply::json(200, "{}"))).await;
    let mut a = args(&snapshot, &server.url);
    a.concurrency = Some(1);
    let report = replay(a).await.expect("the replay runs");
    let got = server.drain();
    for (r, token) in got.iter().zip(&recorded) {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
    }
    let counted: u64 = report
        .overall
        .resign_without_key
        .iter()
        .map(|c| c.count)
        .sum();
    assert_eq!(counted, 3);
    assert_eq!(
        report.overall.resign_without_key[0].at,
        "jwt inbound request header authorization Bearer"
    );
}

#[tokio::test]
async fn timestamps_are_shifted_in_their_own_spelling() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let times = [
        (
            "2026-11-27T13:00:01.250Z",
            "2026-11-27T14:00:01.5+01:00",
            1_795_784_401i64,
            "1795784401123",
        ),
        (
            "2026-11-27T13:00:02.750Z",
            "2026-11-27T14:00:02.5+01:00",
            1_795_784_402,
            "1795784402456",
        ),
        (
            "2026-11-27T13:00:03.125Z",
            "2026-11-27T14:00:03.5+01:00",
            1_795_784_403,
            "1795784403789",
        ),
    ];
    let exchanges = times
        .iter()
        .enumerate()
        .map(|(i, (header, local, epoch, millis))| {
            inbound(
                i as u64,
                i as u64 * 10,
                "POST",
                "/events",
                &[
                    ("x-client-time", header),
                    ("content-type", "application/json"),
                ],
                &format!(r#"{{"at":"{local}","epoch":{epoch},"ms":"{millis}","note":"keep"}}"#),
                202,
                "{}",
            )
        })
        .collect();
    let snapshot = write_snapshot(dir.path(), "times", exchanges);
    let mut server = Server::start(Arc::new(|_: &Received| Reply::json(202, "{}"))).await;
    let mut a = args(&snapshot, &server.url);
    a.concurrency = Some(1);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("now")
        .as_nanos() as i64;
    replay(a).await.expect("the replay runs");
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("now")
        .as_nanos() as i64;
    let got = server.drain();
    assert_eq!(got.len(), 3);
    let low = before - T0 as i64 - 1_000_000_000;
    let high = after - T0 as i64 + 1_000_000_000;
    let parse = |t: &str| tapedeck_har::time::parse(t).expect("rfc3339") as i64;
    for (r, (header, local, epoch, millis)) in got.iter().zip(&times) {
        let live_header = r.header("x-client-time").expect("the header");
        // Same spelling: milliseconds and Z.
        assert_eq!(live_header.len(), header.len(), "{live_header}");
        assert!(live_header.ends_with('Z'), "{live_header}");
        let moved = parse(live_header) - parse(header);
        assert!((low..=high).contains(&moved), "header moved by {moved}");
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        let at = body["at"].as_str().expect("a string");
        assert!(at.ends_with("+01:00") && at.len() == local.len(), "{at}");
        let moved = parse(at) - parse(local);
        assert!((low..=high).contains(&moved), "at moved by {moved}");
        let live_epoch = body["epoch"].as_i64().expect("still a number");
        assert!(
            (low / 1_000_000_000 - 1..=high / 1_000_000_000 + 1).contains(&(live_epoch - epoch))
        );
        let live_ms: i64 = body["ms"]
            .as_str()
            .expect("still a string")
            .parse()
            .expect("digits");
        assert_eq!(body["ms"].as_str().map(str::len), Some(13));
        let recorded_ms: i64 = millis.parse().expect("digits");
        assert!((low / 1_000_000 - 1..=high / 1_000_000 + 1).contains(&(live_ms - recorded_ms)));
        assert_eq!(body["note"], "keep");
        // The body's spacing and key order are kept.
        assert!(r.body_text().starts_with(r#"{"at":""#), "{}", r.body_text());
    }
}

#[tokio::test]
async fn redacted_login_passwords_come_from_secrets_or_are_counted() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshot = shop_snapshot(dir.path());
    let read = snapshot::read(&snapshot).expect("the snapshot reads");
    let markers: Vec<String> = read
        .inbound
        .iter()
        .filter(|e| e.path == "/login")
        .map(|e| {
            let body: serde_json::Value =
                serde_json::from_slice(e.request.body.as_ref().expect("a body").as_bytes())
                    .expect("json");
            body["password"].as_str().expect("a password").to_owned()
        })
        .collect();
    assert_eq!(markers.len(), 4);
    assert!(
        markers
            .iter()
            .all(|m| m.starts_with(tapedeck_proto::REDACTED_PREFIX))
    );

    // Without --secrets: sent as recorded, counted per endpoint and location.
    let (handler, state) = shop_app(None);
    let _server = Server::start(handler).await;
    let mut a = args(&snapshot, &_server.url);
    a.concurrency = Some(1);
    let report = replay(a.clone()).await.expect("the replay runs");
    assert_eq!(state.lock().expect("state").passwords, markers);
    let login = report
        .endpoints
        .iter()
        .find(|e| e.endpoint == "POST /login")
        .expect("login");
    let password = login
        .unresolved_redacted
        .iter()
        .find(|c| c.at == "inbound request json $.password (POST /login)")
        .expect("the password is counted");
    assert_eq!(password.count, 4);

    // --strict-redacted refuses to run.
    let mut strict = a.clone();
    strict.strict_redacted = true;
    match replay(strict).await {
        Err(Error::Unresolved { count, .. }) => assert!(count >= 4),
        other => panic!("expected an unresolved-redacted error, got {other:?}"),
    }

    // With --secrets: the real values are sent.
    let secrets = dir.path().join("secrets.txt");
    let text: String = markers
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{m}=hunter{i} = with spaces\n"))
        .collect();
    std::fs::write(&secrets, format!("# login passwords\n\n{text}")).expect("writing secrets");
    let (handler, state) = shop_app(None);
    let server = Server::start(handler).await;
    let mut a = args(&snapshot, &server.url);
    a.concurrency = Some(1);
    a.secrets = Some(secrets);
    let report = replay(a).await.expect("the replay runs");
    let passwords = state.lock().expect("state").passwords.clone();
    assert_eq!(
        passwords,
        (0..4)
            .map(|i| format!("hunter{i} = with spaces"))
            .collect::<Vec<_>>()
    );
    let login = report
        .endpoints
        .iter()
        .find(|e| e.endpoint == "POST /login")
        .expect("login");
    assert!(
        login
            .unresolved_redacted
            .iter()
            .all(|c| !c.at.contains("password"))
    );
}
