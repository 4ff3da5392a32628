use std::sync::Arc;

use tapedeck_proto::arrow::to_record_batch;
use tapedeck_proto::arrow_array::{Int64Array, StringArray};
use tapedeck_proto::{Message, Protocol};

use super::*;

const T0: u64 = 1_795_780_800_000_000_000; // 2026-11-27T12:00:00Z
const MS: u64 = 1_000_000;

fn header(name: &str, value: &[u8]) -> Header {
    Header {
        name: name.into(),
        value: value.to_vec(),
    }
}

fn exchange(direction: Direction, authority: &str, method: &str, path: &str) -> Exchange {
    Exchange {
        direction: direction as i32,
        protocol: Protocol::Http11 as i32,
        authority: authority.into(),
        method: method.into(),
        path: path.into(),
        status: 200,
        start_unix_nanos: T0,
        duration_nanos: 10 * MS,
        request: Some(Message::default()),
        response: Some(Message::default()),
        sample_rate: 1.0,
        ..Default::default()
    }
}

fn with_types(mut e: Exchange, request: Option<&[u8]>, response: Option<&[u8]>) -> Exchange {
    if let (Some(value), Some(m)) = (request, e.request.as_mut()) {
        m.headers.push(header("Content-Type", value));
    }
    if let (Some(value), Some(m)) = (response, e.response.as_mut()) {
        m.headers.push(header("content-type", value));
    }
    e
}

fn sample() -> Vec<Exchange> {
    let inbound = |path: &str| exchange(Direction::Inbound, "orders:8080", "GET", path);
    let mut out = Vec::new();
    for (i, ms) in [12u64, 7, 30].into_iter().enumerate() {
        let mut e = inbound(&format!("/orders/{}?expand=1", 100 + i));
        e.duration_nanos = ms * MS;
        e.start_unix_nanos = T0 + i as u64 * 1_000 * MS;
        out.push(with_types(
            e,
            None,
            Some(b"application/json; charset=utf-8"),
        ));
    }
    let mut post = exchange(Direction::Inbound, "orders.shop:8080", "POST", "/orders");
    post.status = 0;
    post.request = Some(Message {
        headers: vec![header("content-type", b"Application/JSON")],
        body_size: 2048,
        ..Default::default()
    });
    out.push(post);
    let mut pay = exchange(
        Direction::Outbound,
        "payments:9000",
        "POST",
        "/pay/ord_1a2b3c",
    );
    pay.protocol = Protocol::Grpc as i32;
    pay.status = 503;
    pay.start_unix_nanos = T0 - 5_000 * MS;
    out.push(with_types(
        pay,
        Some(b"application/grpc+proto"),
        Some(&[0xff, b'/', b'x']),
    ));
    let mut lost = exchange(Direction::Unspecified, "", "GET", "/healthz");
    lost.protocol = 0;
    lost.request = None;
    lost.response = None;
    out.push(lost);
    out
}

#[test]
fn percentiles_are_nearest_rank() {
    assert_eq!(percentile(&[], 50), None);
    assert_eq!(percentile(&[7], 0), Some(7));
    assert_eq!(percentile(&[7], 99), Some(7));
    let hundred: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&hundred, 50), Some(50));
    assert_eq!(percentile(&hundred, 95), Some(95));
    assert_eq!(percentile(&hundred, 99), Some(99));
    assert_eq!(percentile(&hundred, 100), Some(100));
    let ten: Vec<u64> = (1..=10).collect();
    assert_eq!(percentile(&ten, 50), Some(5));
    assert_eq!(percentile(&ten, 95), Some(10));
    assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
    assert_eq!(percentile(&[1, 2, 3, 4], 50), Some(2));
    assert_eq!(percentile(&[1, 2], 500), Some(2));
}

#[test]
fn sizes_fall_in_inclusive_buckets() {
    for (size, bucket) in [
        (0, "0"),
        (1, "≤1 KiB"),
        (1024, "≤1 KiB"),
        (1025, "≤10 KiB"),
        (10 * 1024, "≤10 KiB"),
        (10 * 1024 + 1, "≤100 KiB"),
        (100 * 1024, "≤100 KiB"),
        (1024 * 1024, "≤1 MiB"),
        (1024 * 1024 + 1, ">1 MiB"),
        (u64::MAX, ">1 MiB"),
    ] {
        assert_eq!(size_bucket(size), bucket, "{size}");
        assert_eq!(
            size_index(size),
            SIZE_BUCKETS
                .iter()
                .position(|(_, label)| *label == bucket)
                .unwrap_or(SIZE_BUCKETS.len()),
        );
    }
}

#[test]
fn content_types_lose_parameters_and_case() {
    for (value, media) in [
        ("application/json", Some("application/json")),
        ("Application/JSON; charset=utf-8", Some("application/json")),
        ("  text/html ;q=1", Some("text/html")),
        ("application/grpc+proto", Some("application/grpc+proto")),
        ("; charset=utf-8", None),
        ("", None),
        ("   ", None),
    ] {
        assert_eq!(media_type(value).as_deref(), media, "{value:?}");
    }
    let headers = [
        header("accept", b"text/plain"),
        header("CONTENT-TYPE", b"Text/CSV; header=present"),
        header("content-type", b"application/json"),
    ];
    assert_eq!(header_media_type(&headers).as_deref(), Some("text/csv"));
    assert_eq!(header_media_type(&headers[..1]), None);
}

#[test]
fn exchanges_accumulate_by_direction_and_endpoint() {
    let inventory = Inventory::from_exchanges("orders", &sample());
    assert_eq!(
        inventory.totals,
        Totals {
            exchanges: 6,
            inbound: 4,
            outbound: 1,
            unspecified: 1,
            inbound_endpoints: 2,
            dependencies: 1,
            outbound_endpoints: 1,
            unspecified_endpoints: 1,
        }
    );
    assert_eq!(inventory.first_seen, Some(T0 - 5_000 * MS));
    assert_eq!(inventory.last_seen, Some(T0 + 2_000 * MS));

    let [post, get] = inventory.inbound.as_slice() else {
        panic!("two inbound endpoints: {:?}", inventory.inbound);
    };
    assert_eq!(
        (get.method.as_str(), get.template.as_str()),
        ("GET", "/orders/{id}")
    );
    assert_eq!(get.stats.count, 3);
    assert_eq!(get.hosts, Counts(vec![("orders:8080".into(), 3)]));
    assert_eq!(
        get.stats.latency_ms,
        Latency {
            p50: 12.0,
            p95: 30.0,
            p99: 30.0
        }
    );
    assert_eq!(get.stats.request_content_types, Counts::default());
    assert_eq!(get.stats.response_content_types.get("application/json"), 3);
    assert_eq!(get.stats.request_sizes, Counts(vec![("0".into(), 3)]));
    assert_eq!(
        (get.stats.first_seen, get.stats.last_seen),
        (T0, T0 + 2_000 * MS)
    );

    assert_eq!(
        (post.method.as_str(), post.template.as_str()),
        ("POST", "/orders")
    );
    assert_eq!(post.stats.status, Counts(vec![(NO_RESPONSE.into(), 1)]));
    assert_eq!(post.stats.request_content_types.get("application/json"), 1);
    assert_eq!(
        post.stats.request_sizes,
        Counts(vec![("≤10 KiB".into(), 1)])
    );

    let [payments] = inventory.outbound.as_slice() else {
        panic!("one dependency: {:?}", inventory.outbound);
    };
    assert_eq!(payments.host, "payments:9000");
    assert_eq!(payments.stats.status, Counts(vec![("503".into(), 1)]));
    assert_eq!(payments.endpoints.len(), 1);
    assert_eq!(payments.endpoints[0].template, "/pay/{id}");
    assert!(payments.endpoints[0].hosts.is_empty());
    assert_eq!(payments.stats.protocols, Counts(vec![("gRPC".into(), 1)]));
    // Invalid UTF-8 is read the way the Arrow mapping writes it.
    assert_eq!(payments.stats.response_content_types.get("\u{fffd}/x"), 1);

    let [health] = inventory.unspecified.as_slice() else {
        panic!("one unspecified endpoint: {:?}", inventory.unspecified);
    };
    assert_eq!(
        health.stats.protocols,
        Counts(vec![(UNKNOWN_PROTOCOL.into(), 1)])
    );
    assert_eq!(health.hosts, Counts(vec![(String::new(), 1)]));
}

#[test]
fn status_codes_ascend_and_no_response_comes_last() {
    let mut exchanges = Vec::new();
    for status in [500, 0, 200, 404, 200, 0] {
        let mut e = exchange(Direction::Inbound, "a", "GET", "/");
        e.status = status;
        exchanges.push(e);
    }
    let inventory = Inventory::from_exchanges("a", &exchanges);
    assert_eq!(
        inventory.inbound[0].stats.status,
        Counts(vec![
            ("200".into(), 2),
            ("404".into(), 1),
            ("500".into(), 1),
            (NO_RESPONSE.into(), 2),
        ])
    );
    assert_eq!(
        serde_json::to_string(&inventory.inbound[0].stats.status).unwrap_or_default(),
        r#"{"200":2,"404":1,"500":1,"no response":2}"#
    );
}

#[test]
fn order_of_exchanges_does_not_matter() {
    let mut exchanges = sample();
    let forward = Inventory::from_exchanges("orders", &exchanges);
    exchanges.reverse();
    assert_eq!(Inventory::from_exchanges("orders", &exchanges), forward);
}

#[test]
fn batches_and_exchanges_agree() {
    let exchanges = sample();
    let batch = to_record_batch(&exchanges).expect("sample converts");
    let (left, right) = (batch.slice(0, 2), batch.slice(2, batch.num_rows() - 2));
    let from_batches = Inventory::from_batches("orders", &[left, right]).expect("batches read");
    assert_eq!(
        from_batches,
        Inventory::from_exchanges("orders", &exchanges)
    );
}

fn replace_column(batch: &RecordBatch, name: &str, array: Option<ArrayRef>) -> RecordBatch {
    let schema = batch.schema();
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter_map(|(field, column)| {
            if field.name() == name {
                array.clone().map(|a| (field.name().clone(), a))
            } else {
                Some((field.name().clone(), column.clone()))
            }
        });
    RecordBatch::try_from_iter(columns).expect("columns have equal lengths")
}

#[test]
fn string_views_read_like_strings() {
    let exchanges = sample();
    let batch = to_record_batch(&exchanges).expect("sample converts");
    let path = batch
        .column_by_name(columns::PATH)
        .and_then(|c| c.as_string_opt::<i32>())
        .expect("path is Utf8");
    let view: StringViewArray = path.iter().collect();
    let batch = replace_column(&batch, columns::PATH, Some(Arc::new(view)));
    assert_eq!(
        Inventory::from_batches("orders", &[batch]),
        Ok(Inventory::from_exchanges("orders", &exchanges))
    );
}

#[test]
fn unreadable_batches_name_the_column() {
    let batch = to_record_batch(&sample()).expect("sample converts");
    let ok = batch.clone();
    let missing = replace_column(&batch, columns::STATUS, None);
    assert_eq!(
        Inventory::from_batches("orders", &[ok.clone(), missing]),
        Err(InventoryError::MissingColumn {
            batch: 1,
            column: columns::STATUS
        })
    );
    let n = batch.num_rows();
    let mistyped = replace_column(
        &batch,
        columns::DURATION_NS,
        Some(Arc::new(StringArray::from(vec!["1"; n]))),
    );
    let error = Inventory::from_batches("orders", &[mistyped]).expect_err("mistyped");
    assert_eq!(
        error.to_string(),
        "batch 0: column duration_ns is Utf8, expected Int64"
    );
    let mut sizes: Vec<Option<i64>> = vec![Some(1); n];
    sizes[2] = None;
    let null = replace_column(
        &batch,
        columns::REQUEST_BODY_SIZE,
        Some(Arc::new(Int64Array::from(sizes))),
    );
    assert_eq!(
        Inventory::from_batches("orders", &[null]),
        Err(InventoryError::Null {
            batch: 0,
            row: 2,
            column: columns::REQUEST_BODY_SIZE
        })
    );
}

#[test]
fn sql_reads_only_what_the_inventory_needs() {
    let cut = Cut::new("orders", None, None, Some("status >= 500"), T0).expect("valid cut");
    let sql = sql(&cut);
    assert_eq!(
        sql,
        "SELECT direction, authority, method, path, status, duration_ns, protocol, start_time, \
         request_body_size, response_body_size, request_headers, response_headers \
         FROM exchanges WHERE service = 'orders' AND (status >= 500)"
    );
    assert!(!sql.contains("_body,") && !sql.contains("_body "));
}

#[test]
fn an_empty_inventory_renders() {
    let inventory = Inventory::from_exchanges::<Exchange>("orders", &[]);
    assert!(inventory.is_empty());
    assert!(inventory.to_table().contains("INBOUND: none"));
    assert!(inventory.to_markdown().contains("None."));
    assert!(inventory.to_json().contains("\"first_seen\": null"));
}
