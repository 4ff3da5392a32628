//! Secrets never leave the sidecar: credentials, cookies, configured headers, JSON fields and
//! query parameters arrive at the collector as markers, and the raw values appear nowhere in
//! what was sent.

use anyhow::Result;
use bytes::Bytes;
use serde_json::{Value, json};
use tapedeck_e2e::{
    RigBuilder, assert_absent, assert_identity, assert_marker, find, header_text, header_texts,
    message,
};
use tapedeck_local::sample::{LOGIN_SESSION, full_body};
use tapedeck_proto::Direction;
use tapedeck_proto::prost::Message as _;

/// `{"alg":"HS256","typ":"JWT"}` and `{"sub":"42","iat":1764000000}`, base64url.
const JWT_HEAD_AND_CLAIMS: &str =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsImlhdCI6MTc2NDAwMDAwMH0";
const JWT_SIGNATURE: &str = "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const COOKIE_ONE: &str = "cookie-secret-one-8d1f";
const COOKIE_TWO: &str = "cookie-secret-two-3b7e";
const API_KEY: &str = "api-key-secret-7f3a91";
const PASSWORD: &str = "hunter2-password-5c0d";
const NESTED_PASSWORD: &str = "nested-password-a61e";
const QUERY_TOKEN: &str = "query-token-secret-90b2";

fn jwt() -> String {
    format!("{JWT_HEAD_AND_CLAIMS}.{JWT_SIGNATURE}")
}

/// The marker in `Bearer <header>.<claims>.<marker>`, after checking that the scheme and claims
/// survived.
fn bearer_jwt_marker(value: &str) -> String {
    let prefix = format!("Bearer {JWT_HEAD_AND_CLAIMS}.");
    let marker = value.strip_prefix(&prefix).unwrap_or_else(|| {
        panic!("{value:?} should keep `Bearer` and the JWT's header and claims")
    });
    assert_marker(marker);
    marker.to_string()
}

/// `{"user": "ann", "password": <marker>, "profile": {"password": <marker>, "city": "Oslo"}}`;
/// returns the two markers.
fn redacted_order(body: &[u8]) -> (String, String) {
    let value: Value = serde_json::from_slice(body).expect("the redacted body is JSON");
    assert_eq!(value["user"], "ann");
    assert_eq!(value["profile"]["city"], "Oslo");
    let password = value["password"]
        .as_str()
        .expect("password is a string")
        .to_string();
    let nested = value["profile"]["password"]
        .as_str()
        .expect("profile.password is a string")
        .to_string();
    assert_marker(&password);
    assert_marker(&nested);
    (password, nested)
}

#[tokio::test]
async fn secrets_are_redacted_everywhere() -> Result<()> {
    let mut rig = RigBuilder::new()
        .plugin(json!({"redaction": {
            "headers": ["x-api-key"],
            "json_fields": ["password"],
            "query_params": ["token"],
            "hash_key": "e2e-hash-key",
        }}))
        .start()
        .await?;
    let body = json!({"user": "ann", "password": PASSWORD, "profile": {"password": NESTED_PASSWORD, "city": "Oslo"}})
        .to_string();
    let request = rig
        .request("POST", &format!("/echo?token={QUERY_TOKEN}&page=2"))
        .header("authorization", format!("Bearer {}", jwt()))
        .header("cookie", format!("a={COOKIE_ONE}; b={COOKIE_TWO}"))
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .body(full_body(body.clone()))?;
    let reply = rig.send(request).await?;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body, body,
        "redaction must not touch the traffic itself"
    );

    let reply = rig.get("/login").await?;
    assert_eq!(reply.status, 200);
    let set_cookie = reply
        .headers
        .get("set-cookie")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    assert_eq!(
        set_cookie,
        Some(format!(
            "session={LOGIN_SESSION}; Path=/; HttpOnly; SameSite=Lax"
        ))
    );

    let request = rig
        .request("GET", "/hello")
        .header("authorization", format!("Bearer {}", jwt()))
        .header("x-api-key", API_KEY)
        .body(full_body(Bytes::new()))?;
    assert_eq!(rig.send(request).await?.status, 200);

    let collected =
        tapedeck_local::sink::collect_exchanges(&mut rig.received, 3, tapedeck_e2e::WAIT).await?;
    let exchanges: Vec<_> = collected.exchanges().cloned().collect();

    // The order: query, headers, JSON body fields (request and echoed response).
    let order = exchanges
        .iter()
        .find(|e| e.path.starts_with("/echo?"))
        .expect("the /echo exchange");
    assert_identity(order, Direction::Inbound);
    let (base, marker) = order
        .path
        .strip_prefix("/echo?token=")
        .and_then(|rest| rest.split_once('&'))
        .map(|(marker, rest)| (rest, marker))
        .expect("the query keeps its shape");
    assert_eq!(base, "page=2");
    assert_marker(marker);
    let request = message(&order.request);
    let authorization =
        header_text(&request.headers, "authorization").expect("authorization is kept, redacted");
    let jwt_marker = bearer_jwt_marker(&authorization);
    let cookie = header_text(&request.headers, "cookie").expect("cookie is kept, redacted");
    let (one, two) = cookie
        .strip_prefix("a=")
        .and_then(|rest| rest.split_once("; b="))
        .unwrap_or_else(|| panic!("cookie {cookie:?} should keep the names a and b"));
    assert_marker(one);
    assert_marker(two);
    assert_ne!(one, two, "different secrets give different markers");
    let api_key = header_text(&request.headers, "x-api-key").expect("x-api-key is kept, redacted");
    assert_marker(&api_key);
    let (password, nested) = redacted_order(&request.body);
    assert_ne!(password, nested);
    let (echoed_password, echoed_nested) = redacted_order(&message(&order.response).body);
    assert_eq!(
        echoed_password, password,
        "equal secrets give equal markers"
    );
    assert_eq!(echoed_nested, nested);
    for place in [
        "request.query:token",
        "request.header:authorization",
        "request.header:cookie",
        "request.header:x-api-key",
        "request.body:$.password",
        "request.body:$.profile.password",
        "response.body:$.password",
        "response.body:$.profile.password",
    ] {
        assert!(
            order.redactions.iter().any(|r| r == place),
            "{place} missing from {:?}",
            order.redactions
        );
    }

    // The login: set-cookie keeps its name and attributes.
    let login = find(&exchanges, "GET", "/login");
    let set_cookies = header_texts(&message(&login.response).headers, "set-cookie");
    assert_eq!(set_cookies.len(), 1, "{set_cookies:?}");
    let marker = set_cookies[0]
        .strip_prefix("session=")
        .and_then(|rest| rest.strip_suffix("; Path=/; HttpOnly; SameSite=Lax"))
        .unwrap_or_else(|| {
            panic!(
                "set-cookie {:?} should keep its name and attributes",
                set_cookies[0]
            )
        });
    assert_marker(marker);
    assert!(
        login
            .redactions
            .iter()
            .any(|r| r == "response.header:set-cookie"),
        "{:?}",
        login.redactions
    );

    // The same secrets in another exchange give the same markers.
    let hello = find(&exchanges, "GET", "/hello");
    let request = message(&hello.request);
    assert_eq!(
        bearer_jwt_marker(&header_text(&request.headers, "authorization").unwrap_or_default()),
        jwt_marker
    );
    assert_eq!(header_text(&request.headers, "x-api-key"), Some(api_key));

    // No raw secret anywhere in what was sent.
    let sent: Vec<u8> = collected
        .received
        .iter()
        .flat_map(|r| r.batch.encode_to_vec())
        .collect();
    for secret in [
        JWT_SIGNATURE,
        COOKIE_ONE,
        COOKIE_TWO,
        API_KEY,
        PASSWORD,
        NESTED_PASSWORD,
        QUERY_TOKEN,
        LOGIN_SESSION,
    ] {
        assert_absent(&sent, secret.as_bytes())?;
    }
    assert!(
        sent.windows(JWT_HEAD_AND_CLAIMS.len())
            .any(|w| w == JWT_HEAD_AND_CLAIMS.as_bytes()),
        "the JWT claims are kept"
    );
    Ok(())
}
