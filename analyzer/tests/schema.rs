//! The JSON Schema of snapshot format v1 (`docs/snapshot-v1.schema.json`) against the code:
//! the golden snapshot, freshly built snapshots and every field the serde types can write
//! validate; the schema names exactly the fields and enum values the types write; and what the
//! reader rejects, the schema rejects too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use jsonschema::{Draft, Resource, Validator};
use serde_json::{Value, json};
use tapedeck_analyzer::fixture::Shop;
use tapedeck_analyzer::snapshot::model::Base64Bytes;
use tapedeck_analyzer::snapshot::{
    self, Body, Capture, Counts, Entry, HeaderEntry, HeaderValue, HostCount, INBOUND_FILE, Instant,
    MANIFEST_FILE, Manifest, MessageEntry, OUTBOUND_FILE, Source, Window,
};
use tapedeck_analyzer::tokens::{
    Evidence, Flow, JwtInfo, Location, Part, Position, ReplayAction, Side, TimestampFormat,
    TokenKind, TokenRule,
};
use tapedeck_proto::Protocol;

use crate::support::golden_dir;

/// The meta-schema the schema is written against.
const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/snapshot-v1.schema.json")
}

fn schema() -> Value {
    let path = schema_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

/// The two validators a tool needs: `snapshot.json` against the root, a line against
/// `#/$defs/entry`.
struct Schemas {
    manifest: Validator,
    entry: Validator,
}

impl Schemas {
    fn load() -> Self {
        let schema = schema();
        let id = schema["$id"]
            .as_str()
            .expect("the schema has an $id")
            .to_owned();
        let manifest = jsonschema::draft202012::new(&schema)
            .unwrap_or_else(|error| panic!("the schema does not compile: {error}"));
        // The entry schema is reached the way an outside tool reaches it: by reference to the
        // schema's `$id` and a JSON pointer.
        let resource = Resource::from_contents(schema).expect("the schema is a resource");
        let entry = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_resource(id.clone(), resource)
            .build(&json!({ "$ref": format!("{id}#/$defs/entry") }))
            .unwrap_or_else(|error| panic!("#/$defs/entry does not compile: {error}"));
        Self { manifest, entry }
    }
}

/// Every error of `instance`, one per line: where in the instance, what, and which keyword.
fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|error| {
            let at = error.instance_path.to_string();
            format!(
                "at {}: {} (schema {})",
                if at.is_empty() { "/" } else { at.as_str() },
                error.masked(),
                error.schema_path
            )
        })
        .collect()
}

/// Every schema violation of a snapshot directory, each as `file[:line]: at <path>: ...`.
fn violations(schemas: &Schemas, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let manifest =
        std::fs::read_to_string(dir.join(MANIFEST_FILE)).expect("snapshot.json is there");
    match serde_json::from_str::<Value>(&manifest) {
        Ok(value) => {
            for error in errors(&schemas.manifest, &value) {
                out.push(format!("{MANIFEST_FILE}: {error}"));
            }
        }
        Err(error) => out.push(format!("{MANIFEST_FILE}: not JSON: {error}")),
    }
    for file in [INBOUND_FILE, OUTBOUND_FILE] {
        let text = std::fs::read_to_string(dir.join(file)).expect("the file is there");
        for (i, line) in text.lines().enumerate() {
            match serde_json::from_str::<Value>(line) {
                Ok(value) => {
                    for error in errors(&schemas.entry, &value) {
                        out.push(format!("{file}:{}: {error}", i + 1));
                    }
                }
                Err(error) => out.push(format!("{file}:{}: not JSON: {error}", i + 1)),
            }
        }
    }
    out
}

fn assert_valid(schemas: &Schemas, dir: &Path, what: &str) {
    let violations = violations(schemas, dir);
    assert!(
        violations.is_empty(),
        "{what} ({}) does not match docs/snapshot-v1.schema.json:\n{}",
        dir.display(),
        violations.join("\n")
    );
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let schema = schema();
    assert_eq!(schema["$schema"], DRAFT_2020_12);
    if let Err(error) = jsonschema::draft202012::meta::validate(&schema) {
        panic!(
            "the schema breaks the 2020-12 meta-schema at {}: {error}",
            error.instance_path
        );
    }
    // Compiling catches what the meta-schema cannot: patterns that are not regexes, `$ref`s
    // that lead nowhere.
    Schemas::load();
}

#[test]
fn the_golden_snapshot_matches_the_schema() {
    let schemas = Schemas::load();
    let dir = golden_dir().join("shop");
    assert_valid(&schemas, &dir, "the golden shop snapshot");
    let lines = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .unwrap()
            .lines()
            .count()
    };
    assert!(
        lines(INBOUND_FILE) > 0 && lines(OUTBOUND_FILE) > 0,
        "the golden files have lines to check"
    );
}

#[test]
fn fresh_snapshots_match_the_schema() {
    let schemas = Schemas::load();
    let variants = [
        ("the default shop", Shop::default()),
        (
            "more sessions and orders",
            Shop {
                sessions: 25,
                orders_per_session: 3,
                ..Shop::default()
            },
        ),
        (
            "large receipts",
            Shop {
                receipt_bytes: 200_000,
                ..Shop::default()
            },
        ),
        (
            "another seed, overlapping sessions",
            Shop {
                seed: 20_261_127,
                sessions: 12,
                session_gap_ns: 300_000_000,
                ..Shop::default()
            },
        ),
    ];
    let temp = tempfile::tempdir().unwrap();
    for (i, (what, shop)) in variants.into_iter().enumerate() {
        let dir = temp.path().join(format!("snap{i}"));
        let manifest = crate::snapshot::write(shop.exchanges(), &dir);
        assert!(
            !manifest.tokens.is_empty(),
            "{what}: discovery found rules to check"
        );
        assert_valid(&schemas, &dir, what);
        let (_, problems) = snapshot::validate(&dir);
        assert!(
            problems.is_empty(),
            "{what}: the reader finds problems: {problems:?}"
        );
    }
}

/// Two lines that between them use every field and every form the types can write. The
/// struct literals are exhaustive on purpose: a new field in a format type fails to compile
/// here, and the schema has to learn it.
fn maximal_entries() -> Vec<Entry> {
    let capture = Capture {
        workload: "orders".into(),
        namespace: "shop".into(),
        pod: "orders-7d9f8c6b5-x2k4q".into(),
        peer: "10.42.3.9:8080".into(),
        cluster: "outbound|8080||payments.shop.svc.cluster.local".into(),
        route: "default".into(),
        flags: "UF".into(),
        details: "upstream_reset_before_response_started".into(),
        sample_rate: 0.25,
        redactions: vec!["request.header.authorization".into()],
        filter_version: "0.1.0".into(),
    };
    let header =
        |name: &str, value: &str| HeaderEntry(name.into(), HeaderValue::Text(value.into()));
    let first = Entry {
        id: "000102030405060708090a0b0c0d0e0f".into(),
        trace_id: "53fcd6513d02befe225ec07a99506761".into(),
        offset_ns: 1_500_000,
        duration_ns: 24_000_000,
        response_headers_ns: 23_500_000,
        caused_by: Some("ff90b8601c5b7c6c30ce495ddfd60ce7".into()),
        protocol: "gRPC".into(),
        scheme: "https".into(),
        authority: "payments.shop.svc:8080".into(),
        method: "POST".into(),
        path: "/v1/charges?expand=1".into(),
        request: MessageEntry {
            headers: vec![
                header("content-type", "application/json"),
                HeaderEntry(
                    "x-blob".into(),
                    HeaderValue::Binary(Base64Bytes {
                        base64: vec![0xff, 0xfe, 0x00],
                    }),
                ),
            ],
            body: Body::from_bytes(br#"[1,2,3]"#),
            size: None,
            truncated: false,
            trailers: Vec::new(),
        },
        status: 200,
        response: MessageEntry {
            headers: vec![header("content-type", "text/plain")],
            body: Body::from_bytes(b"ok, charged"),
            size: Some(4096),
            truncated: true,
            trailers: vec![header("grpc-status", "0")],
        },
        capture,
    };
    let second = Entry {
        id: "0a0b".into(),
        trace_id: String::new(),
        offset_ns: 0,
        duration_ns: 0,
        response_headers_ns: 0,
        caused_by: None,
        protocol: String::new(),
        scheme: String::new(),
        authority: String::new(),
        method: "GET".into(),
        path: "/receipt".into(),
        request: MessageEntry::default(),
        status: 0,
        response: MessageEntry {
            body: Body::from_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"),
            ..MessageEntry::default()
        },
        capture: Capture::default(),
    };
    vec![first, second]
}

/// A manifest that uses every field and every location kind.
fn maximal_manifest() -> Manifest {
    let location = |direction, message, part| Location {
        direction,
        message,
        part,
        name: None,
        scheme: None,
        path: None,
        segment: None,
        endpoint: None,
    };
    let position = |file: &str, line| Position {
        file: file.into(),
        line,
    };
    let correlation = TokenRule {
        name: "correlation inbound response json $.token (POST /login)".into(),
        kind: TokenKind::Correlation,
        at: Location {
            path: Some("$.token".into()),
            endpoint: Some("POST /login".into()),
            ..location(Flow::Inbound, Side::Response, Part::Json)
        },
        to: vec![
            Location {
                name: Some("authorization".into()),
                scheme: Some("Bearer".into()),
                ..location(Flow::Inbound, Side::Request, Part::Header)
            },
            Location {
                name: Some("session".into()),
                ..location(Flow::Inbound, Side::Request, Part::Cookie)
            },
            Location {
                name: Some("token".into()),
                endpoint: Some("GET /orders".into()),
                ..location(Flow::Inbound, Side::Request, Part::Query)
            },
            Location {
                segment: Some(2),
                endpoint: Some("GET /tokens/{id}".into()),
                ..location(Flow::Inbound, Side::Request, Part::Path)
            },
        ],
        jwt: None,
        format: None,
        replay: ReplayAction::Substitute,
        evidence: Some(Evidence {
            exchanges: 32,
            distinct: 4,
            first: position(INBOUND_FILE, 1),
            first_use: Some(position(INBOUND_FILE, 2)),
            example: Some("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0".into()),
        }),
    };
    let jwt = TokenRule {
        name: "jwt inbound request header authorization".into(),
        kind: TokenKind::Jwt,
        at: Location {
            name: Some("authorization".into()),
            scheme: Some("Bearer".into()),
            ..location(Flow::Inbound, Side::Request, Part::Header)
        },
        to: Vec::new(),
        jwt: Some(JwtInfo {
            alg: "RS256".into(),
            issuer: Some("https://auth.shop.example".into()),
            time_claims: vec!["exp".into(), "iat".into(), "nbf".into()],
            lifetime_s: Some(3600),
            signature_redacted: true,
        }),
        format: None,
        replay: ReplayAction::Resign,
        evidence: None,
    };
    let timestamp = TokenRule {
        name: "timestamp outbound response header date".into(),
        kind: TokenKind::Timestamp,
        at: Location {
            name: Some("date".into()),
            ..location(Flow::Outbound, Side::Response, Part::Header)
        },
        to: Vec::new(),
        jwt: None,
        format: Some(TimestampFormat::HttpDate),
        replay: ReplayAction::Shift,
        evidence: Some(Evidence {
            exchanges: 8,
            distinct: 7,
            first: position(OUTBOUND_FILE, 1),
            first_use: None,
            example: None,
        }),
    };
    Manifest {
        version: snapshot::FORMAT_VERSION,
        id: "orders-20261127T130000Z-b57c6fac6cf4".into(),
        service: "orders".into(),
        window: Window {
            from: Instant(1_795_784_400_000_000_000),
            to: Instant(1_795_784_411_205_000_001),
        },
        source: Source {
            sql: "SELECT * FROM exchanges WHERE service = 'orders' AND (status < 500)".into(),
            predicate: Some("status < 500".into()),
        },
        counts: Counts {
            inbound: 36,
            outbound: 8,
            linked: 8,
            skipped: 2,
            duplicates: 1,
        },
        hosts: vec![HostCount {
            host: "payments.shop.svc:8080".into(),
            calls: 8,
            first_line: 1,
        }],
        tokens: vec![correlation, jwt, timestamp],
    }
}

/// The names of every property the schema declares, anywhere.
fn schema_property_names(schema: &Value, out: &mut BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "properties"
                    && let Value::Object(properties) = value
                {
                    out.extend(properties.keys().cloned());
                }
                schema_property_names(value, out);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| schema_property_names(item, out)),
        _ => {}
    }
}

/// The keys of every object in an instance, JSON bodies left out.
fn instance_keys(instance: &Value, out: &mut BTreeSet<String>) {
    match instance {
        Value::Object(map) => {
            for (key, value) in map {
                out.insert(key.clone());
                if key != "json" {
                    instance_keys(value, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| instance_keys(item, out)),
        _ => {}
    }
}

#[test]
fn every_field_the_types_write_is_in_the_schema_and_no_other() {
    let schemas = Schemas::load();
    let manifest = serde_json::to_value(maximal_manifest()).unwrap();
    let errors_of_manifest = errors(&schemas.manifest, &manifest);
    assert!(
        errors_of_manifest.is_empty(),
        "the maximal manifest does not match:\n{}\n{manifest:#}",
        errors_of_manifest.join("\n")
    );
    serde_json::from_value::<Manifest>(manifest.clone()).expect("the maximal manifest reads back");
    let mut keys = BTreeSet::new();
    instance_keys(&manifest, &mut keys);
    let bodies: BTreeSet<&str> = ["json", "text", "base64"].into();
    let mut kinds = BTreeSet::new();
    for entry in maximal_entries() {
        for message in [&entry.request, &entry.response] {
            kinds.extend(message.body.as_ref().map(Body::kind));
        }
        let line = serde_json::to_value(&entry).unwrap();
        let errors_of_line = errors(&schemas.entry, &line);
        assert!(
            errors_of_line.is_empty(),
            "the maximal entry does not match:\n{}\n{line}",
            errors_of_line.join("\n")
        );
        serde_json::from_value::<Entry>(line.clone()).expect("the maximal entry reads back");
        instance_keys(&line, &mut keys);
    }
    assert_eq!(kinds, bodies, "the maximal entries have every kind of body");

    let mut declared = BTreeSet::new();
    schema_property_names(&schema(), &mut declared);
    let undeclared: Vec<_> = keys.difference(&declared).collect();
    let unwritten: Vec<_> = declared.difference(&keys).collect();
    assert!(
        undeclared.is_empty() && unwritten.is_empty(),
        "fields the types write that the schema lacks: {undeclared:?}; \
         fields the schema declares that no type writes: {unwritten:?}"
    );
}

/// The values of every enum of the format, as the types write them, with the schema's enum
/// for each. The `match`es list every variant without a wildcard, so a new variant fails to
/// compile here until it is listed, and then the schema has to learn it.
fn enums() -> Vec<(&'static str, Vec<Value>)> {
    fn words<T: serde::Serialize>(values: &[T]) -> Vec<Value> {
        values
            .iter()
            .map(|v| serde_json::to_value(v).unwrap())
            .collect()
    }
    let kinds = [
        TokenKind::Correlation,
        TokenKind::Jwt,
        TokenKind::Timestamp,
        TokenKind::Uuid,
        TokenKind::Id,
    ];
    let actions = [
        ReplayAction::Substitute,
        ReplayAction::Propagate,
        ReplayAction::Resign,
        ReplayAction::Shift,
        ReplayAction::Ignore,
        ReplayAction::Keep,
    ];
    let formats = [
        TimestampFormat::Rfc3339,
        TimestampFormat::HttpDate,
        TimestampFormat::EpochSeconds,
        TimestampFormat::EpochMillis,
    ];
    let parts = [
        Part::Header,
        Part::Cookie,
        Part::Query,
        Part::Path,
        Part::Json,
    ];
    let flows = [Flow::Inbound, Flow::Outbound];
    let sides = [Side::Request, Side::Response];
    let protocols = [
        Protocol::Http10,
        Protocol::Http11,
        Protocol::Http2,
        Protocol::Http3,
        Protocol::Grpc,
    ];
    for kind in kinds {
        match kind {
            TokenKind::Correlation
            | TokenKind::Jwt
            | TokenKind::Timestamp
            | TokenKind::Uuid
            | TokenKind::Id => {}
        }
    }
    for action in actions {
        match action {
            ReplayAction::Substitute
            | ReplayAction::Propagate
            | ReplayAction::Resign
            | ReplayAction::Shift
            | ReplayAction::Ignore
            | ReplayAction::Keep => {}
        }
    }
    for format in formats {
        match format {
            TimestampFormat::Rfc3339
            | TimestampFormat::HttpDate
            | TimestampFormat::EpochSeconds
            | TimestampFormat::EpochMillis => {}
        }
    }
    for part in parts {
        match part {
            Part::Header | Part::Cookie | Part::Query | Part::Path | Part::Json => {}
        }
    }
    for flow in flows {
        match flow {
            Flow::Inbound | Flow::Outbound => {}
        }
    }
    for side in sides {
        match side {
            Side::Request | Side::Response => {}
        }
    }
    for protocol in protocols {
        match protocol {
            // Unknown protocols are left out of a line rather than written.
            Protocol::Unspecified => {}
            Protocol::Http10
            | Protocol::Http11
            | Protocol::Http2
            | Protocol::Http3
            | Protocol::Grpc => {}
        }
    }
    vec![
        ("/$defs/tokenKind/enum", words(&kinds)),
        ("/$defs/replayAction/enum", words(&actions)),
        ("/$defs/timestampFormat/enum", words(&formats)),
        ("/$defs/location/properties/in/enum", words(&parts)),
        ("/$defs/location/properties/direction/enum", words(&flows)),
        ("/$defs/location/properties/message/enum", words(&sides)),
        (
            "/$defs/entry/properties/protocol/enum",
            protocols.iter().map(|p| json!(p.as_word())).collect(),
        ),
    ]
}

#[test]
fn every_enum_value_the_types_write_is_in_the_schema_and_no_other() {
    let schema = schema();
    let mut failures = Vec::new();
    for (pointer, written) in enums() {
        let declared = schema.pointer(pointer).cloned().unwrap_or(Value::Null);
        if declared != Value::Array(written.clone()) {
            failures.push(format!(
                "{pointer}: the schema has {declared}, the types write {}",
                Value::Array(written)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One change to the golden snapshot that both the schema and the reader must reject.
struct Broken {
    what: &'static str,
    /// `snapshot.json`, or a file whose first line is changed.
    file: &'static str,
    change: fn(&mut Value),
    /// Where in the changed JSON value the schema must see the problem.
    schema_at: &'static str,
    /// A part of the reader's problem message; empty where serde's own wording is all there is
    /// (`expected value`, `trailing characters`), so any problem of that file counts.
    reader_says: &'static str,
}

const BROKEN: &[Broken] = &[
    Broken {
        what: "an unknown field in an entry",
        file: INBOUND_FILE,
        change: |entry| entry["colour"] = json!("red"),
        schema_at: "/",
        reader_says: "unknown field `colour`",
    },
    Broken {
        what: "a body with two kinds",
        file: INBOUND_FILE,
        change: |entry| entry["response"]["body"]["text"] = json!("and text"),
        schema_at: "/response/body",
        reader_says: "",
    },
    Broken {
        what: "a header with 3 items",
        file: OUTBOUND_FILE,
        change: |entry| {
            entry["request"]["headers"][0] = json!(["content-type", "application/json", "x"])
        },
        schema_at: "/request/headers/0",
        reader_says: "",
    },
    Broken {
        what: "an id that is not hex",
        file: OUTBOUND_FILE,
        change: |entry| entry["id"] = json!("not-hex"),
        schema_at: "/id",
        reader_says: "is not hex",
    },
    Broken {
        what: "an unknown protocol",
        file: INBOUND_FILE,
        change: |entry| entry["protocol"] = json!("HTTP/4"),
        schema_at: "/protocol",
        reader_says: "protocol \"HTTP/4\"",
    },
    Broken {
        what: "a header value that is not base64",
        file: INBOUND_FILE,
        change: |entry| entry["request"]["headers"][0][1] = json!({ "base64": "%%%" }),
        schema_at: "/request/headers/0/1",
        reader_says: "",
    },
    Broken {
        what: "version 2",
        file: MANIFEST_FILE,
        change: |manifest| manifest["version"] = json!(2),
        schema_at: "/version",
        reader_says: "unknown format version 2",
    },
    Broken {
        what: "a token rule with an unknown replay",
        file: MANIFEST_FILE,
        change: |manifest| manifest["tokens"][0]["replay"] = json!("replace"),
        schema_at: "/tokens/0/replay",
        reader_says: "unknown variant `replace`",
    },
    Broken {
        what: "a correlation without \"to\"",
        file: MANIFEST_FILE,
        change: |manifest| {
            let rule = rule_to_front(manifest, |r| r["kind"] == "correlation");
            rule.as_object_mut().unwrap().remove("to");
        },
        schema_at: "/tokens/0",
        reader_says: "a correlation needs \"to\" locations",
    },
    Broken {
        what: "a jwt that is shifted",
        file: MANIFEST_FILE,
        change: |manifest| {
            rule_to_front(manifest, |r| r["kind"] == "jwt")["replay"] = json!("shift");
        },
        schema_at: "/tokens/0/replay",
        reader_says: "replay shift does not apply to a jwt rule",
    },
    Broken {
        what: "a json location whose path does not start with $",
        file: MANIFEST_FILE,
        change: |manifest| {
            let rule = rule_to_front(manifest, |r| r["at"]["in"] == "json");
            rule["at"]["path"] = json!("customer_ref");
        },
        schema_at: "/tokens/0/at/path",
        reader_says: "needs a \"path\" starting with $",
    },
    Broken {
        what: "a header location without a name",
        file: MANIFEST_FILE,
        change: |manifest| {
            let rule = rule_to_front(manifest, |r| r["at"]["in"] == "header");
            rule["at"].as_object_mut().unwrap().remove("name");
        },
        schema_at: "/tokens/0/at",
        reader_says: "location needs \"name\"",
    },
    Broken {
        what: "a path location without an endpoint",
        file: MANIFEST_FILE,
        change: |manifest| {
            let rule = rule_to_front(manifest, |r| r["to"][0]["in"] == "path");
            rule["to"][0].as_object_mut().unwrap().remove("endpoint");
        },
        schema_at: "/tokens/0/to/0",
        reader_says: "needs an \"endpoint\"",
    },
    Broken {
        what: "evidence in another file",
        file: MANIFEST_FILE,
        change: |manifest| {
            manifest["tokens"][0]["evidence"]["first"]["file"] = json!("other.jsonl")
        },
        schema_at: "/tokens/0/evidence/first/file",
        reader_says: "evidence names file \"other.jsonl\"",
    },
];

/// Moves the first token rule that `matches` to the front of `tokens`, and returns it, so a
/// case does not depend on the order of the golden rules.
fn rule_to_front(manifest: &mut Value, matches: fn(&Value) -> bool) -> &mut Value {
    let rules = manifest["tokens"]
        .as_array_mut()
        .expect("tokens is an array");
    let at = rules
        .iter()
        .position(matches)
        .expect("the golden snapshot has such a rule");
    let rule = rules.remove(at);
    rules.insert(0, rule);
    &mut rules[0]
}

fn copy_golden(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in [MANIFEST_FILE, INBOUND_FILE, OUTBOUND_FILE] {
        std::fs::copy(golden_dir().join("shop").join(file), to.join(file)).unwrap();
    }
}

/// Applies `change` to `snapshot.json` or to the first line of a JSONL file.
fn break_file(dir: &Path, file: &str, change: fn(&mut Value)) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let text = if file == MANIFEST_FILE {
        let mut manifest: Value = serde_json::from_str(&text).unwrap();
        change(&mut manifest);
        serde_json::to_string_pretty(&manifest).unwrap() + "\n"
    } else {
        let (first, rest) = text.split_once('\n').unwrap();
        let mut entry: Value = serde_json::from_str(first).unwrap();
        change(&mut entry);
        format!("{entry}\n{rest}")
    };
    std::fs::write(&path, text).unwrap();
}

#[test]
fn what_the_reader_rejects_the_schema_rejects() {
    let schemas = Schemas::load();
    let temp = tempfile::tempdir().unwrap();
    let intact = temp.path().join("intact");
    copy_golden(&intact);
    let (_, problems) = snapshot::validate(&intact);
    assert!(
        problems.is_empty(),
        "the golden snapshot reads cleanly: {problems:?}"
    );

    let mut failures = Vec::new();
    for (i, broken) in BROKEN.iter().enumerate() {
        let dir = temp.path().join(format!("broken{i}"));
        copy_golden(&dir);
        break_file(&dir, broken.file, broken.change);
        let violations = violations(&schemas, &dir);
        let at = format!(": at {}: ", broken.schema_at);
        if !violations
            .iter()
            .any(|v| v.starts_with(broken.file) && v.contains(&at))
        {
            failures.push(format!(
                "{}: the schema does not reject {} at {}; it says {violations:?}",
                broken.what, broken.file, broken.schema_at
            ));
        }
        let (_, problems) = snapshot::validate(&dir);
        let said = problems
            .iter()
            .any(|p| p.file == broken.file && p.message.contains(broken.reader_says));
        if !said {
            failures.push(format!(
                "{}: the reader does not say {:?} about {}; it says {:?}",
                broken.what,
                broken.reader_says,
                broken.file,
                problems.iter().map(ToString::to_string).collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
