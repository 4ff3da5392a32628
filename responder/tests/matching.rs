//! Matching: token-normalised fields, redacted values, misses with candidates and differing
//! fields, fallback, passthrough, and responses kept consistent with the replay.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tapedeck_responder::fixture::{
    self, API_KEY, AUTH, AUTH_SECRET, PAYMENTS, WINDOW_FROM_NS, amount, charge_body,
};
use tapedeck_responder::{Fallback, OnMiss};

use crate::support::*;

/// The charge request the service under test sends for `order` (a fresh token and key).
fn charge(order: &str, amount: u64, api_key: &str) -> Call {
    let token = fixture::jwt(
        b"a key the recording never saw",
        &serde_json::json!({"iss": "auth.shop", "sub": "orders", "iat": 1_900_000_000u64, "exp": 1_900_003_600u64}),
    );
    Call::post(
        PAYMENTS,
        "/v1/charges",
        charge_body(order, amount, "0f0e0d0c-0b0a-4909-8807-060504030201").to_string(),
    )
    .header("content-type", "application/json")
    .header("x-api-key", api_key)
    .header("authorization", format!("Bearer {token}"))
}

#[tokio::test]
async fn fresh_jwt_and_new_order_id_still_match() {
    let f = fixture();
    let mut args = args(&f.path);
    args.redaction_key = Some(fixture::REDACTION_KEY.to_owned());
    let running = start(args).await;
    let reply = charge("ord_777777", amount(2), API_KEY)
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.json());
    let line = outbound_line(&f.snapshot, |e| {
        e.method == "POST"
            && e.request.body.as_ref().is_some_and(|b| {
                std::str::from_utf8(b.as_bytes())
                    .unwrap()
                    .contains("ord_010002")
            })
    });
    assert_eq!(
        reply.header("x-tapedeck-recording"),
        Some(recording_name(&f.snapshot, line).as_str())
    );
    let body = reply.json();
    assert_eq!(body["charge"], "ch_11118452");
    // The order id flows from the request into the served response.
    assert_eq!(body["order"], "ord_777777");
    running.stop().await;
}

#[tokio::test]
async fn redacted_values_compare_by_keyed_hash() {
    let f = fixture();
    let mut keyed = args(&f.path);
    keyed.redaction_key = Some(fixture::REDACTION_KEY.to_owned());
    let running = start(keyed).await;
    let right = charge("ord_010001", amount(1), API_KEY)
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(right.status, 200);
    let wrong = charge("ord_010001", amount(1), "pk_live_stolen")
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(wrong.status, 404);
    let body = wrong.json();
    let differing = &body["candidates"][0]["differing"];
    assert_eq!(differing[0]["field"], "header x-api-key", "{body:#}");
    assert_eq!(differing[0]["compared"], "redacted");
    running.stop().await;

    // Without the key, a redacted value matches anything, and says why.
    let running = start(args(&f.path)).await;
    let reply = charge("ord_010001", amount(1), "pk_live_stolen")
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    running.stop().await;
}

#[tokio::test]
async fn a_miss_names_candidates_and_differing_fields() {
    let f = fixture();
    let running = start(args(&f.path)).await;
    let reply = charge("ord_010001", 999_999, API_KEY)
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    let body = reply.json();
    assert_eq!(body["reason"], "no_match");
    assert_eq!(body["error"], "no recording matches this request");
    let candidates = body["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 3, "{body:#}");
    let best = &candidates[0];
    assert_eq!(best["differing"].as_array().unwrap().len(), 1, "{best:#}");
    assert_eq!(best["differing"][0]["field"], "json $.amount");
    assert_eq!(best["differing"][0]["recorded"], "1100");
    assert_eq!(best["differing"][0]["live"], "999999");
    let wildcards: Vec<&str> = best["wildcards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["reason"].as_str().unwrap())
        .collect();
    assert!(
        wildcards.iter().any(|r| r.contains("propagate target")),
        "{wildcards:?}"
    );
    assert!(
        wildcards.iter().any(|r| r.contains(": ignore")),
        "{wildcards:?}"
    );
    let score = best["score"].as_f64().unwrap();
    // Compared: amount (differs) and currency (agrees); the rest are wildcards.
    assert_eq!(score, 0.5);

    let reply = Call::get(PAYMENTS, "/v1/charges?order=ord_010001&limit=20")
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    let body = reply.json();
    assert_eq!(
        body["candidates"][0]["differing"][0]["field"], "query limit",
        "{body:#}"
    );
    let reply = Call::get(PAYMENTS, "/v1/refunds")
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.json()["reason"], "unknown_endpoint");
    running.stop().await;

    let mut bad_gateway = args(&f.path);
    bad_gateway.on_miss = OnMiss::BadGateway;
    let running = start(bad_gateway).await;
    let reply = Call::get(PAYMENTS, "/v1/refunds")
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 502);
    running.stop().await;
}

#[tokio::test]
async fn fallback_closest_serves_a_near_miss() {
    let f = fixture();
    let mut closest = args(&f.path);
    closest.fallback = Fallback::Closest;
    closest.fallback_min_score = 0.5;
    let running = start(closest).await;
    let reply = charge("ord_010001", 999_999, API_KEY)
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.header("x-tapedeck-recording").is_some());
    // Too far: below the minimum score.
    let reply = Call::post(PAYMENTS, "/v1/charges", "{\"x\":1}")
        .header("content-type", "application/json")
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    running.stop().await;
}

#[tokio::test]
async fn passthrough_forwards_misses_to_the_real_host() {
    let real = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let real_addr = real.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = real.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let host = req.headers().get("host").cloned();
                    let body = format!(
                        "real {} {} host={:?}",
                        req.method(),
                        req.uri(),
                        host.and_then(|h| h.to_str().ok().map(str::to_owned))
                    );
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .status(201)
                            .body(Full::new(Bytes::from(body)))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let f = fixture();
    let mut pass = args(&f.path);
    pass.on_miss = OnMiss::Passthrough;
    pass.passthrough_address = Some(real_addr.to_string());
    let running = start(pass).await;
    let reply = Call::get(PAYMENTS, "/v1/refunds?x=1")
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.body.as_ref(),
        format!("real GET /v1/refunds?x=1 host=Some(\"{PAYMENTS}\")").as_bytes()
    );
    // Recorded requests are still served from the recording.
    let reply = Call::get(fixture::INVENTORY, "/v1/catalog")
        .h2()
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        running
            .metrics()
            .passthrough
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    running.stop().await;
    server.abort();
}

fn verify_hs256(token: &str, secret: &[u8]) -> serde_json::Value {
    let (signing, signature) = token.rsplit_once('.').unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(signing.as_bytes());
    assert_eq!(
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()),
        signature,
        "signature of {token}"
    );
    let claims = signing.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap()
}

#[tokio::test]
async fn responses_are_shifted_and_re_signed() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("jwt-secret");
    std::fs::write(&secret_path, b"the replay's own secret").unwrap();
    let mut shifted = args(&f.path);
    // One day after the recording.
    shifted.replay_start = Some("2026-11-28T13:00:00Z".to_owned());
    shifted.jwt_key = Some(format!("HS256:{}", secret_path.display()));
    let running = start(shifted).await;
    let day = 86_400u64;
    let window_s = WINDOW_FROM_NS / 1_000_000_000;

    let reply = Call::post(
        AUTH,
        "/oauth/token",
        "grant_type=client_credentials&client_id=orders",
    )
    .header("content-type", "application/x-www-form-urlencoded")
    .send(running.addr())
    .await
    .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let token = reply.json()["access_token"].as_str().unwrap().to_owned();
    let claims = verify_hs256(&token, b"the replay's own secret");
    assert_eq!(claims["iat"], window_s + 8 + day);
    assert_eq!(claims["exp"], window_s + 3608 + day);
    assert!(
        std::panic::catch_unwind(|| verify_hs256(&token, AUTH_SECRET)).is_err(),
        "the recorded key no longer verifies it"
    );

    let reply = charge("ord_010000", amount(0), API_KEY)
        .send(running.addr())
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["created"], window_s + 1 + day);
    assert_eq!(reply.header("date"), Some("Sat, 28 Nov 2026 13:00:01 GMT"));
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
    running.stop().await;
}
