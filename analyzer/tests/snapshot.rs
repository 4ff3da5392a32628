//! Snapshots of the shop fixture: golden files, determinism, read-back, validation.

use std::path::Path;

use tapedeck_analyzer::Cut;
use tapedeck_analyzer::fixture::Shop;
use tapedeck_analyzer::snapshot::{self, INBOUND_FILE, MANIFEST_FILE, OUTBOUND_FILE, Spec, build};
use tapedeck_proto::Exchange;

use crate::support::assert_golden;

/// The spec a `tapedeck snapshot create --service orders` would use.
pub(crate) fn spec() -> Spec {
    let cut = Cut::new("orders", None, None, None, 0).expect("a valid cut");
    Spec {
        service: cut.service.clone(),
        sql: cut.snapshot_sql(),
        predicate: None,
        from: None,
        to: None,
    }
}

/// Writes a snapshot of `exchanges` into `dir`.
pub(crate) fn write(exchanges: Vec<Exchange>, dir: &Path) -> snapshot::Manifest {
    build(&spec(), exchanges)
        .write(dir, false)
        .expect("the snapshot is written")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).expect("the file is there")
}

#[test]
fn shop_snapshot_matches_the_golden_files() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("snap");
    write(Shop::default().exchanges(), &dir);
    for file in [MANIFEST_FILE, INBOUND_FILE, OUTBOUND_FILE] {
        assert_golden(&format!("shop/{file}"), &read(&dir, file));
    }
}

fn sorted(mut exchanges: Vec<Exchange>) -> Vec<Exchange> {
    exchanges.sort_by(|a, b| (a.start_unix_nanos, &a.id).cmp(&(b.start_unix_nanos, &b.id)));
    exchanges
}

fn files(dir: &Path) -> Vec<String> {
    [MANIFEST_FILE, INBOUND_FILE, OUTBOUND_FILE]
        .iter()
        .map(|f| read(dir, f))
        .collect()
}

#[test]
fn the_same_exchanges_in_any_order_give_byte_identical_files() {
    let temp = tempfile::tempdir().unwrap();
    let exchanges = Shop::default().exchanges();
    let mut reversed = exchanges.clone();
    reversed.reverse();
    let mut rotated = exchanges.clone();
    rotated.rotate_left(17);
    let a = temp.path().join("a");
    let b = temp.path().join("b");
    let c = temp.path().join("c");
    let first = write(exchanges, &a);
    let second = write(reversed, &b);
    write(rotated, &c);
    assert_eq!(first.id, second.id);
    assert_eq!(files(&a), files(&b));
    assert_eq!(files(&a), files(&c));
}

#[test]
fn token_discovery_finds_exactly_the_dynamic_values_of_the_shop() {
    let temp = tempfile::tempdir().unwrap();
    let manifest = write(Shop::default().exchanges(), &temp.path().join("snap"));
    let found: Vec<String> = manifest
        .tokens
        .iter()
        .map(|r| format!("{:?} {}", r.replay, r.name).to_lowercase())
        .collect();
    assert_eq!(
        found,
        [
            // The caller's customer ref reaches the payment call of the same trace.
            "propagate correlation inbound request json $.customer_ref (post /orders)",
            // The session cookie set at login comes back in every later request.
            "substitute correlation inbound response cookie session",
            // The order id minted by POST /orders is in the paths of GET, PUT and the receipt.
            "substitute correlation inbound response json $.id (post /orders)",
            // The login's JWT comes back in Authorization.
            "substitute correlation inbound response json $.token (post /login)",
            "resign jwt inbound request header authorization bearer",
            "ignore jwt inbound response json $.token (post /login)",
            "shift timestamp inbound request header x-client-time",
            "ignore timestamp inbound response header date",
            "ignore timestamp inbound response json $.created_at (post /orders)",
            "ignore timestamp inbound response json $.expires_at (post /login)",
            "ignore timestamp inbound response json $.updated_at (get /orders/{id})",
            "ignore timestamp inbound response json $.updated_at (put /orders/{id})",
            "shift timestamp outbound response header date",
            "shift timestamp outbound response json $.created (post /v1/charges)",
            "ignore uuid outbound request json $.idempotency_key (post /v1/charges)",
            "ignore id inbound request json $.password (post /login)",
            "ignore id inbound response json $.id (get /orders/{id})",
            "ignore id inbound response json $.id (put /orders/{id})",
            "ignore id outbound request json $.order (post /v1/charges)",
            "ignore id outbound response json $.charge (post /v1/charges)",
        ]
    );
    // Constant values (the API key, the currency, the status words) and small numbers get no
    // rule, and neither do the headers the mesh sets.
    for constant in [
        "x-api-key",
        "$.currency",
        "$.status",
        "$.token_type",
        "$.quantity",
        "$.amount",
        "$.sku",
        "$.note",
        "x-request-id",
        "traceparent",
        "theme",
    ] {
        assert!(
            !found.iter().any(|name| name.contains(constant)),
            "a rule on the constant {constant}: {found:#?}"
        );
    }
    let jwt = manifest
        .tokens
        .iter()
        .find(|r| r.name == "jwt inbound request header authorization Bearer")
        .and_then(|r| r.jwt.clone())
        .expect("the JWT rule says what the token holds");
    assert_eq!(jwt.alg, "RS256");
    assert_eq!(jwt.issuer.as_deref(), Some("https://auth.shop.example"));
    assert_eq!(jwt.time_claims, ["exp", "iat"]);
    assert_eq!(jwt.lifetime_s, Some(3600));
    assert!(jwt.signature_redacted);
}

#[test]
fn evidence_points_at_the_first_occurrence() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("snap");
    let manifest = write(Shop::default().exchanges(), &dir);
    let inbound: Vec<String> = read(&dir, INBOUND_FILE)
        .lines()
        .map(str::to_owned)
        .collect();
    let rule = manifest
        .tokens
        .iter()
        .find(|r| r.name == "correlation inbound response json $.id (POST /orders)")
        .expect("the order id correlation");
    let evidence = rule.evidence.as_ref().expect("found rules carry evidence");
    assert_eq!(evidence.first.file, INBOUND_FILE);
    let source = &inbound[evidence.first.line as usize - 1];
    assert!(
        source.contains(r#""method":"POST","path":"/orders""#),
        "{source}"
    );
    let example = evidence.example.as_deref().expect("an example");
    assert!(source.contains(example));
    let first_use = evidence.first_use.as_ref().expect("a first use");
    let used = &inbound[first_use.line as usize - 1];
    assert!(
        used.contains(&format!(r#""path":"/orders/{example}"#)),
        "{used}"
    );
    assert_eq!(evidence.distinct, 8);
    assert_eq!(evidence.exchanges, 24);
}

#[test]
fn entries_keep_bodies_readable_and_link_calls_to_their_cause() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("snap");
    let manifest = write(Shop::default().exchanges(), &dir);
    let snapshot = snapshot::read(&dir).expect("the snapshot reads back");
    assert_eq!(snapshot.manifest, manifest);
    let receipt = snapshot
        .inbound
        .iter()
        .find(|e| e.path.ends_with("/receipt"))
        .expect("a receipt");
    assert_eq!(
        receipt.response.body.as_ref().map(|b| b.kind()),
        Some("base64")
    );
    let login = &snapshot.inbound[0];
    assert_eq!(login.path, "/login");
    assert_eq!(login.request.body.as_ref().map(|b| b.kind()), Some("json"));
    assert_eq!(login.offset_ns, 0);
    for call in &snapshot.outbound {
        let cause = call
            .caused_by
            .as_deref()
            .expect("every payment call is linked");
        let inbound = snapshot
            .inbound
            .iter()
            .find(|e| e.id == cause)
            .expect("the cause is an inbound exchange");
        assert_eq!(
            (inbound.method.as_str(), inbound.path.as_str()),
            ("POST", "/orders")
        );
        assert_eq!(inbound.trace_id, call.trace_id);
        assert!(inbound.offset_ns <= call.offset_ns);
    }
    assert_eq!(manifest.counts.linked, manifest.counts.outbound);
    assert_eq!(manifest.hosts.len(), 1);
    assert_eq!(manifest.hosts[0].calls, manifest.counts.outbound);
}

#[test]
fn a_snapshot_reads_back_as_the_exchanges_it_was_cut_from() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("snap");
    let exchanges = Shop {
        sessions: 6,
        ..Shop::default()
    }
    .exchanges();
    write(exchanges.clone(), &dir);
    let back = snapshot::read(&dir).unwrap().exchanges().unwrap();
    assert_eq!(sorted(back), sorted(exchanges));
}

#[test]
fn read_with_hands_every_outbound_line_over_before_keeping_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("snap");
    write(Shop::default().exchanges(), &dir);
    let whole = snapshot::read(&dir).unwrap();
    let mut seen = Vec::new();
    let stripped = snapshot::read_with(&dir, |line, entry| {
        seen.push((line, entry.response.body.take()));
    })
    .unwrap();
    // Every line, in order, with the body `read` keeps; what was taken stays out.
    assert_eq!(seen.len(), whole.outbound.len());
    for (i, ((line, body), kept)) in seen.iter().zip(&whole.outbound).enumerate() {
        assert_eq!(*line, i as u64 + 1);
        assert_eq!(*body, kept.response.body);
    }
    assert!(seen.iter().any(|(_, body)| body.is_some()));
    assert!(stripped.outbound.iter().all(|e| e.response.body.is_none()));
    assert_eq!(stripped.inbound, whole.inbound);
    assert_eq!(stripped.manifest, whole.manifest);
}

#[test]
fn an_explicit_window_sets_the_offsets() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("snap");
    let shop = Shop::default();
    let from = shop.start - 5_000_000_000;
    let mut spec = spec();
    spec.from = Some(from);
    spec.to = Some(shop.start + 60_000_000_000);
    let manifest = build(&spec, shop.exchanges()).write(&dir, false).unwrap();
    assert_eq!(manifest.window.from.0, from);
    let snapshot = snapshot::read(&dir).unwrap();
    assert_eq!(snapshot.inbound[0].offset_ns, 5_000_000_000);
    assert!(read(&dir, MANIFEST_FILE).contains(r#""from": "2026-11-27T12:59:55Z""#));
}

#[test]
fn an_existing_snapshot_is_replaced_only_when_asked() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("snap");
    write(Shop::default().exchanges(), &dir);
    let error = build(&spec(), Shop::default().exchanges())
        .write(&dir, false)
        .unwrap_err();
    assert!(error.to_string().contains("--force"), "{error}");
    let bigger = Shop {
        sessions: 5,
        ..Shop::default()
    };
    let manifest = build(&spec(), bigger.exchanges())
        .write(&dir, true)
        .unwrap();
    assert_eq!(manifest.counts.inbound, 5 * 9);
    assert_eq!(snapshot::read(&dir).unwrap().inbound.len(), 45);
    // No temporary directory is left beside it.
    let left: Vec<_> = std::fs::read_dir(temp.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn exchanges_without_a_direction_are_counted_not_written() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("snap");
    let mut exchanges = Shop::default().exchanges();
    exchanges[0].set_direction(tapedeck_proto::Direction::Unspecified);
    let manifest = write(exchanges, &dir);
    assert_eq!(manifest.counts.skipped, 1);
    assert_eq!(manifest.counts.inbound, 35);
    assert!(snapshot::validate(&dir).1.is_empty());
}

#[test]
fn traffic_stored_twice_is_written_once() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("snap");
    let exchanges = Shop::default().exchanges();
    let twice: Vec<Exchange> = exchanges.iter().chain(&exchanges).cloned().collect();
    let manifest = write(twice, &dir);
    assert_eq!(manifest.counts.duplicates, exchanges.len() as u64);
    assert_eq!(
        manifest.counts.inbound + manifest.counts.outbound,
        exchanges.len() as u64
    );
    assert!(snapshot::validate(&dir).1.is_empty());
}

#[test]
fn rows_read_in_place_from_record_batches_give_the_same_snapshot() {
    use tapedeck_analyzer::rows::{BatchView, rows_of, to_exchange};
    let temp = tempfile::tempdir().unwrap();
    let exchanges = Shop {
        sessions: 7,
        ..Shop::default()
    }
    .exchanges();
    // Several batches, in a scrambled order, as a query returns them.
    let mut scrambled = exchanges.clone();
    scrambled.rotate_left(29);
    let batches: Vec<_> = scrambled
        .chunks(13)
        .map(|chunk| tapedeck_proto::arrow::to_record_batch(chunk).unwrap())
        .collect();
    let views: Vec<BatchView<'_>> = batches.iter().map(|b| BatchView::new(b).unwrap()).collect();
    let rows = rows_of(&views);
    assert_eq!(
        rows.iter().map(to_exchange).collect::<Vec<_>>(),
        scrambled,
        "a row reads back as its exchange"
    );
    let from_rows = temp.path().join("rows");
    let from_exchanges = temp.path().join("exchanges");
    build(&spec(), rows).write(&from_rows, false).unwrap();
    write(exchanges, &from_exchanges);
    assert_eq!(files(&from_rows), files(&from_exchanges));
}
