//! Property tests: any exchanges survive snapshot write → read unchanged, and a snapshot
//! survives HAR export → import unchanged.

use proptest::collection::vec;
use proptest::prelude::*;
use tapedeck_analyzer::snapshot;
use tapedeck_har::{ImportOptions, from_exchanges, parse, to_exchanges, to_json};
use tapedeck_proto::{Direction, Exchange, Header, Message, Protocol};

fn header() -> impl Strategy<Value = Header> {
    (
        prop::sample::select(vec![
            "content-type",
            "authorization",
            "cookie",
            "set-cookie",
            "x-bin",
            "date",
            "x-custom",
            "grpc-status",
        ]),
        prop_oneof![
            "[ -~]{0,40}".prop_map(String::into_bytes),
            vec(any::<u8>(), 0..24),
            Just(
                "Bearer eyJhbGciOiJIUzI1NiJ9.eyJpYXQiOjE3OTU3ODQ0MDB9.c2ln"
                    .as_bytes()
                    .to_vec()
            ),
        ],
    )
        .prop_map(|(name, value)| Header {
            name: name.into(),
            value,
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        vec(any::<u8>(), 0..200),
        "\\PC{0,80}".prop_map(String::into_bytes),
        Just(br#"{"id":"ord_000123","n":1.5e3,"nested":{"a":[1,2,{"b":null}]},"t":"2026-11-27T13:00:00Z"}"#.to_vec()),
        Just(b"[1, 2,\n 3]".to_vec()),
        Just(b" {\"padded\":true} ".to_vec()),
        Just(b"{\"k\":\"\\u00e9\\n\"}".to_vec()),
        Just(b"{\"broken\":".to_vec()),
    ]
}

/// A message as the filter captures it: a truncated body is shorter than its true size.
fn message() -> impl Strategy<Value = Message> {
    (
        vec(header(), 0..5),
        body(),
        1u64..3,
        any::<bool>(),
        vec(header(), 0..2),
    )
        .prop_map(|(headers, body, extra, truncated, trailers)| Message {
            headers,
            body_size: body.len() as u64 + if truncated { extra } else { 0 },
            body,
            body_truncated: truncated,
            trailers,
        })
}

prop_compose! {
    fn exchange()(
        id in any::<[u8; 16]>(),
        trace in prop_oneof![Just(String::new()), "[0-9a-f]{32}", Just("shared-trace".to_owned())],
        start in 1_795_784_400_000_000_000u64..1_795_784_500_000_000_000,
        duration in 0u64..5_000_000_000,
        inbound in any::<bool>(),
        protocol in prop::sample::select(vec![Protocol::Unspecified, Protocol::Http11, Protocol::Http2, Protocol::Grpc]),
        authority in prop::sample::select(vec!["orders:8080", "payments:80", "", "gmail.googleapis.com"]),
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        path in "/[a-z0-9_/]{0,20}(\\?[a-z]=[0-9a-z]{1,8})?",
        request in message(),
        status in prop::sample::select(vec![0u32, 200, 201, 404, 503]),
        response in message(),
        sample_rate in prop::sample::select(vec![0.0, 1.0, 0.5, 0.1, 1.0 / 3.0]),
        redactions in vec("[a-z.]{1,12}", 0..2),
        workload in prop::sample::select(vec!["orders", ""]),
        flags in prop::sample::select(vec!["", "UF,URX"]),
    ) -> Exchange {
        let mut exchange = Exchange {
            id: id.to_vec(),
            trace_id: trace,
            start_unix_nanos: start,
            duration_nanos: duration,
            // No response, no time to its headers (as the filter records it).
            response_headers_nanos: if status == 0 { 0 } else { duration / 2 },
            workload: workload.into(),
            namespace: "shop".into(),
            pod: "orders-1".into(),
            peer_address: "10.0.0.1:5000".into(),
            upstream_cluster: "outbound|80||payments".into(),
            route_name: "default".into(),
            scheme: "http".into(),
            authority: authority.into(),
            method: method.into(),
            path,
            request: Some(request),
            status,
            response: Some(response),
            response_flags: flags.into(),
            response_code_details: if flags.is_empty() { String::new() } else { "upstream_reset".into() },
            sample_rate,
            redactions,
            filter_version: "0.1.0".into(),
            ..Default::default()
        };
        exchange.set_direction(if inbound { Direction::Inbound } else { Direction::Outbound });
        exchange.set_protocol(protocol);
        exchange
    }
}

fn sorted(mut exchanges: Vec<Exchange>) -> Vec<Exchange> {
    exchanges.sort_by(|a, b| (a.start_unix_nanos, &a.id).cmp(&(b.start_unix_nanos, &b.id)));
    exchanges
}

/// The first lines where two exchange lists' pretty Debug forms differ.
fn first_difference(a: &[Exchange], b: &[Exchange]) -> String {
    let (a, b) = (format!("{a:#?}"), format!("{b:#?}"));
    a.lines()
        .zip(b.lines())
        .enumerate()
        .find(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| format!("line {i}: {x}  vs  {y}"))
        .unwrap_or_else(|| "lengths differ".to_owned())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_write_then_read_is_identity(exchanges in vec(exchange(), 1..24)) {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("snap");
        crate::snapshot::write(exchanges.clone(), &dir);
        let (read, problems) = snapshot::validate(&dir);
        prop_assert_eq!(problems, vec![]);
        let back = read.unwrap().exchanges().unwrap();
        prop_assert_eq!(sorted(back), sorted(exchanges));
    }

    #[test]
    fn a_snapshot_survives_har_export_and_import(mut exchanges in vec(exchange(), 1..24)) {
        // A HAR request needs a URL with a host; a capture without an authority (HTTP/1.0
        // with no Host) comes back from HAR as `localhost`, so this trip starts with one.
        for exchange in &mut exchanges {
            if exchange.authority.is_empty() {
                exchange.authority = "orders:8080".into();
            }
        }
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("snap");
        crate::snapshot::write(exchanges, &dir);
        let snapshot = snapshot::read(&dir).unwrap();
        let exchanges = sorted(snapshot.exchanges().unwrap());
        let har = to_json(&from_exchanges(&exchanges, "tapedeck-test"));
        let (back, diagnostics) = to_exchanges(&parse(har.as_bytes()).unwrap(), &ImportOptions::new("ignored"));
        prop_assert_eq!(diagnostics, vec![]);
        prop_assert!(back == exchanges, "{}", first_difference(&back, &exchanges));
    }

    #[test]
    fn rows_read_from_record_batches_write_the_same_snapshot(exchanges in vec(exchange(), 1..24)) {
        use tapedeck_analyzer::rows::{BatchView, rows_of};
        let temp = tempfile::tempdir().unwrap();
        let batch = tapedeck_proto::arrow::to_record_batch(&exchanges).unwrap();
        let views = vec![BatchView::new(&batch).unwrap()];
        let (a, b) = (temp.path().join("rows"), temp.path().join("exchanges"));
        snapshot::build(&crate::snapshot::spec(), rows_of(&views)).write(&a, false).unwrap();
        crate::snapshot::write(exchanges, &b);
        for file in [snapshot::MANIFEST_FILE, snapshot::INBOUND_FILE, snapshot::OUTBOUND_FILE] {
            let (x, y) = (std::fs::read(a.join(file)).unwrap(), std::fs::read(b.join(file)).unwrap());
            prop_assert!(x == y, "{file} differs");
        }
    }
}
