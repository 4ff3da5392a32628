//! Property of the `responder_match` fuzz target, shared with its stable smoke test
//! (`responder/tests/fuzz_smoke.rs` includes this file).
//!
//! The fuzzed bytes are a request to the responder's fixture snapshot (payments, inventory,
//! auth over HTTP and the ledger over gRPC, with `capture.proto` descriptors so that gRPC
//! messages are decoded field by field): host, method, path, headers and body, each arbitrary,
//! kept only as far as an HTTP server could receive them. The request is decided by the
//! server's own `server::decide` (authority, fields, endpoint, session, `Matcher::decide`), then
//! the served response is built (`Consistency::edit`, `served_headers`). Checked:
//! - nothing panics;
//! - a miss for an unknown host is exactly a host the snapshot does not know;
//! - a match serves a recording of the request's own host, method and endpoint, with a score
//!   in [0, 1], and an exact match has no differing field;
//! - the served `content-length` is the served body's length.

use std::sync::OnceLock;

use tapedeck_analyzer::replay::jwt::JwtKey;
use tapedeck_responder::consistency::Consistency;
use tapedeck_responder::fields::Descriptors;
use tapedeck_responder::fixture;
use tapedeck_responder::matcher::{Decision, MatchKind, Matcher, MissReason};
use tapedeck_responder::server;
use tapedeck_responder::store::{Store, served_headers};

struct Fixture {
    matcher: Matcher,
    consistency: Consistency,
}

/// `capture.proto` as a descriptor pool (what `--descriptors` loads).
fn descriptors() -> Descriptors {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/proto");
    let set = protox::compile(["tapedeck/capture/v1/capture.proto"], [root])
        .expect("capture.proto compiles");
    Descriptors::from_pool(
        prost_reflect::DescriptorPool::from_file_descriptor_set(set).expect("a descriptor pool"),
    )
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("orders-snapshot");
        fixture::write_snapshot(&path).expect("writing the fixture snapshot");
        let store = Store::load(&path).expect("loading the fixture snapshot");
        let matcher = Matcher::new(store, Some(fixture::REDACTION_KEY), Some(0.5))
            .with_descriptors(Some(descriptors()));
        // The store maps its body file; the folder may go.
        drop(dir);
        Fixture {
            matcher,
            consistency: Consistency {
                offset_ns: 86_400_000_000_000,
                jwt_key: Some(
                    JwtKey::hmac("HS256", fixture::AUTH_SECRET, None).expect("an HMAC key"),
                ),
            },
        }
    })
}

/// The property; panics when it does not hold.
pub(crate) fn check(data: &[u8]) {
    let fixture = fixture();
    let store = &fixture.matcher.store;
    let [host_pick, method_pick, flags, rest @ ..] = data else {
        return;
    };
    let mut parts = rest.splitn(4, |&b| b == 0);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (custom, path, header_lines) = (next(), next(), next());
    let body = parts.next().unwrap_or_default().to_vec();
    let authority = match host_pick % 6 {
        0 => fixture::PAYMENTS.to_owned(),
        1 => fixture::INVENTORY.to_owned(),
        2 => fixture::LEDGER.to_owned(),
        3 => fixture::AUTH.to_owned(),
        4 => "payments".to_owned(),
        _ => custom.clone(),
    };
    let method = match method_pick % 5 {
        0 => "GET".to_owned(),
        1 => "POST".to_owned(),
        2 => "PUT".to_owned(),
        3 => "DELETE".to_owned(),
        _ => custom,
    };
    // Only what an HTTP server can receive.
    if http::Method::from_bytes(method.as_bytes()).is_err()
        || path.parse::<http::uri::PathAndQuery>().is_err()
        || !path.starts_with('/')
        || !authority.bytes().all(|b| b.is_ascii_graphic())
    {
        return;
    }
    // The request as the server receives it (the authority in `host`, as HTTP/1.1 sends it).
    let mut request = http::Request::builder()
        .method(method.as_str())
        .uri(path.as_str())
        .header(http::header::HOST, authority.as_str());
    if flags & 1 != 0 {
        request = request.header(http::header::CONTENT_TYPE, "application/grpc");
    }
    for line in header_lines.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_bytes(value.trim().as_bytes()),
        ) else {
            continue;
        };
        request = request.header(name, value);
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let truncated = flags & 2 != 0;
    // What the server decides for it, by the server's own function.
    let decided = server::decide(&fixture.matcher, &parts, &body, truncated);
    assert_eq!(decided.authority, authority, "the authority read back");
    assert_eq!(decided.method, method, "the method read back");
    let endpoint = &decided.endpoint;
    let host = store.host(&authority);
    match decided.decision {
        Decision::Miss { reason, candidates } => {
            assert_eq!(
                reason == MissReason::UnknownHost,
                host.is_none(),
                "{authority:?}: {reason:?}"
            );
            for candidate in candidates {
                assert!((0.0..=1.0).contains(&candidate.score), "{candidate:?}");
            }
        }
        Decision::Matched { kind, chosen, .. } => {
            let rec = fixture.matcher.recording(&chosen);
            assert_eq!(Some(rec.host), host, "served another host's recording");
            assert_eq!(
                &rec.endpoint, endpoint,
                "served another endpoint's recording"
            );
            assert!(
                rec.method.eq_ignore_ascii_case(&method),
                "served another method's recording"
            );
            assert!(
                (0.0..=1.0).contains(&chosen.score),
                "score {}",
                chosen.score
            );
            if kind == MatchKind::Exact {
                assert!(
                    chosen.differing.is_empty(),
                    "an exact match differs: {:?}",
                    chosen.differing
                );
            }
            if let Some(edited) = fixture.consistency.edit(store, rec, &chosen.substitutions) {
                let map = served_headers(
                    &store.id,
                    rec.line,
                    rec.status,
                    &edited.headers,
                    edited.body.len(),
                    rec.served_trailers.is_some(),
                    rec.truncated.then_some(rec.size),
                );
                if let Some(length) = map.get(http::header::CONTENT_LENGTH) {
                    assert_eq!(
                        length.to_str().ok(),
                        Some(edited.body.len().to_string().as_str()),
                        "content-length is not the served body's length"
                    );
                }
            }
        }
    }
}
