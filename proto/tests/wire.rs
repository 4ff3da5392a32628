//! The in-place decoder (`tapedeck_proto::wire`) against prost: the same accept/reject and the
//! same values for random batches and for mutations of their encodings, and the same Arrow rows
//! through the one mapping.
#![cfg(feature = "arrow")]

#[path = "support/generate.rs"]
mod generate;
#[path = "../../fuzz/properties/smoke.rs"]
mod smoke;
#[path = "../../fuzz/properties/wire_decode.rs"]
mod wire_decode;

use generate::Gen;
use tapedeck_proto::arrow::{ExchangesBuilder, to_record_batch};
use tapedeck_proto::prost::Message as _;
use tapedeck_proto::wire::{BatchRef, ExchangeRef};
use tapedeck_proto::{Exchange, ExchangeBatch, Header, Message};

/// What the in-place decoder gives for `bytes`: the batch (exchanges owned again) and its rows.
fn decode_in_place(
    bytes: &[u8],
) -> Result<(ExchangeBatch, tapedeck_proto::arrow_array::RecordBatch), String> {
    let mut exchanges = Vec::new();
    let mut rows = ExchangesBuilder::with_capacity(0);
    let batch = BatchRef::parse_all(bytes, |_, view| {
        exchanges.push(view.to_exchange());
        rows.append(view).expect("a row appends");
    })
    .map_err(|error| error.to_string())?;
    let owned = ExchangeBatch {
        exchanges,
        filter_version: batch.filter_version.to_string(),
        sequence: batch.sequence,
        dropped_since_last: batch.dropped_since_last,
        sent_unix_nanos: batch.sent_unix_nanos,
    };
    Ok((owned, rows.finish().expect("rows finish")))
}

/// Asserts that both decoders agree on `bytes`; returns whether prost accepted them.
fn agree(bytes: &[u8]) -> bool {
    let expected = ExchangeBatch::decode(bytes);
    let actual = decode_in_place(bytes);
    match (expected, actual) {
        (Ok(expected), Ok((actual, rows))) => {
            // Debug, not ==, so that a NaN sample rate compares equal to itself.
            assert_eq!(
                format!("{actual:?}"),
                format!("{expected:?}"),
                "the same batch for {bytes:02x?}"
            );
            let old = to_record_batch(&expected.exchanges).expect("prost's exchanges convert");
            // A NaN sample rate is never equal to itself: compare such rows by their text.
            if expected.exchanges.iter().any(|e| e.sample_rate.is_nan()) {
                assert_eq!(format!("{rows:?}"), format!("{old:?}"), "the same rows");
            } else {
                assert_eq!(rows, old, "the same rows for {bytes:02x?}");
            }
            true
        }
        (Err(_), Err(error)) => {
            assert!(
                error.starts_with("failed to decode Protobuf message"),
                "{error}"
            );
            false
        }
        (Ok(_), Err(error)) => {
            panic!("prost accepts what the decoder refuses ({error}): {bytes:02x?}")
        }
        (Err(error), Ok(_)) => {
            panic!("the decoder accepts what prost refuses ({error}): {bytes:02x?}")
        }
    }
}

#[test]
fn random_batches_and_mutations_decode_as_prost_decodes_them() {
    let mut g = Gen(16);
    let (mut accepted, mut refused, mut cases) = (0, 0, 0);
    for _ in 0..4000 {
        let bytes = generate::case(&mut g, 4);
        cases += 1;
        if agree(&bytes) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // Not vacuous: both outcomes are exercised many times.
    assert!(
        accepted > cases / 4 && refused > cases / 20,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn every_prefix_and_every_single_byte_change_of_a_batch_agrees() {
    let mut g = Gen(17);
    let encoded = loop {
        let encoded = generate::valid_batch(&mut g, 3).encode_to_vec();
        if (500..4000).contains(&encoded.len()) {
            break encoded;
        }
    };
    for len in 0..=encoded.len() {
        agree(&encoded[..len]);
    }
    for at in (0..encoded.len()).step_by(3) {
        for value in [0x00, 0x01, 0x07, 0x80, 0xff, encoded[at] ^ 0x40] {
            let mut changed = encoded.clone();
            changed[at] = value;
            agree(&changed);
        }
    }
}

fn key(tag: u64, wire: u64) -> Vec<u8> {
    varint(tag << 3 | wire)
}

fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

fn len_field(tag: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = key(tag, 2);
    out.extend(varint(payload.len() as u64));
    out.extend_from_slice(payload);
    out
}

fn batch_of(exchange: &[u8]) -> Vec<u8> {
    len_field(1, exchange)
}

#[test]
fn a_request_that_occurs_twice_is_merged_as_prost_merges_it() {
    let first = Message {
        headers: vec![Header {
            name: "a".into(),
            value: b"1".to_vec(),
        }],
        body: b"first".to_vec(),
        body_size: 5,
        body_truncated: true,
        trailers: vec![],
    };
    let second = Message {
        headers: vec![Header {
            name: "b".into(),
            value: vec![0xff],
        }],
        body: b"second".to_vec(),
        body_size: 0,
        body_truncated: false,
        trailers: vec![Header {
            name: "t".into(),
            value: b"x".to_vec(),
        }],
    };
    let mut exchange = len_field(18, &first.encode_to_vec());
    exchange.extend(len_field(17, b"/p"));
    exchange.extend(len_field(18, &second.encode_to_vec()));
    let bytes = batch_of(&exchange);
    assert!(agree(&bytes));
    let decoded = ExchangeBatch::decode(bytes.as_slice()).unwrap();
    let request = decoded.exchanges[0].request.as_ref().unwrap();
    assert_eq!(request.headers.len(), 2);
    assert_eq!(request.body, b"second");
    assert!(
        request.body_truncated,
        "a field the second occurrence lacks is kept"
    );
    assert_eq!(request.body_size, 5);
}

#[test]
fn edge_encodings_agree_with_prost() {
    let valid_exchange = Exchange {
        id: vec![1; 16],
        path: "/".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        // Tag 0, wire types 6 and 7, a key above u32::MAX.
        vec![0x00, 0x00],
        key(9, 6),
        key(9, 7),
        varint(u64::from(u32::MAX) + 1),
        // A 10-byte varint whose last byte is 1 (u64::MAX) or 2 (overflow); an overlong 0.
        [key(3, 0), vec![0xff; 9], vec![0x01]].concat(),
        [key(3, 0), vec![0xff; 9], vec![0x02]].concat(),
        [key(3, 0), vec![0x80, 0x80, 0x00]].concat(),
        [key(3, 0), vec![0x80; 11]].concat(),
        // Wrong wire types for known fields.
        [key(1, 0), vec![1]].concat(),
        [key(3, 2), vec![0]].concat(),
        [key(5, 0), vec![1]].concat(),
        batch_of(&[key(3, 0), vec![1]].concat()),
        batch_of(&[key(23, 0), vec![1]].concat()),
        batch_of(&[key(18, 0), vec![1]].concat()),
        batch_of(&[key(24, 5), vec![1, 2, 3, 4]].concat()),
        // A string that is not UTF-8, once and then overwritten by a valid one.
        [len_field(2, &[0xff]), len_field(2, b"ok")].concat(),
        batch_of(&[len_field(17, &[0xc3]), len_field(17, b"/")].concat()),
        batch_of(&len_field(18, &len_field(1, &len_field(1, &[0xff])))),
        // Strings of every kind the ASCII fast path sees: multi-byte UTF-8, long ASCII, a
        // non-ASCII byte at the end of a long string, a surrogate and an overlong form.
        batch_of(&len_field(17, "/caf\u{e9}/\u{1f600}".as_bytes())),
        batch_of(&len_field(17, &[b"/".repeat(40), vec![0xff]].concat())),
        batch_of(&len_field(
            17,
            &[b"/".repeat(40), vec![0xc3, 0xa9]].concat(),
        )),
        batch_of(&len_field(7, &[0xed, 0xa0, 0x80])),
        batch_of(&len_field(7, &[0xc0, 0xaf])),
        batch_of(&len_field(
            18,
            &len_field(1, &len_field(1, "n\u{e4}me".as_bytes())),
        )),
        // A header value that is not UTF-8 (bytes: accepted).
        batch_of(&len_field(18, &len_field(1, &len_field(2, &[0xff])))),
        // Lengths past the end, and at u64::MAX.
        [key(1, 2), varint(5), vec![0; 4]].concat(),
        [key(1, 2), varint(u64::MAX)].concat(),
        [key(99, 2), varint(u64::MAX)].concat(),
        // Unknown fields of every wire type at every level.
        [
            key(99, 0),
            varint(7),
            key(98, 1),
            vec![0; 8],
            key(97, 5),
            vec![0; 4],
        ]
        .concat(),
        batch_of(&[key(99, 3), key(1, 0), vec![1], key(99, 4)].concat()),
        batch_of(&[key(99, 3), key(98, 4)].concat()),
        batch_of(&[key(99, 4)].concat()),
        batch_of(&len_field(
            20,
            &len_field(5, &[key(99, 5), vec![0; 3]].concat()),
        )),
        // An embedded message whose last field runs past its length.
        [key(1, 2), varint(2), key(3, 1), vec![0; 8]].concat(),
        valid_exchange.clone(),
        batch_of(&valid_exchange),
    ];
    // Groups nested at the limit of prost's recursion budget and one past it, at each level.
    for nesting in [95usize, 96, 97, 98, 99, 100, 101] {
        let mut group = Vec::new();
        for _ in 0..nesting {
            group.extend(key(99, 3));
        }
        for _ in 0..nesting {
            group.extend(key(99, 4));
        }
        cases.push(group.clone());
        cases.push(batch_of(&group));
        cases.push(batch_of(&len_field(18, &group)));
        cases.push(batch_of(&len_field(18, &len_field(1, &group))));
    }
    let mut accepted = 0;
    for case in &cases {
        if agree(case) {
            accepted += 1;
        }
    }
    assert!(
        accepted > 5 && accepted < cases.len(),
        "{accepted} of {}",
        cases.len()
    );
}

#[test]
fn a_view_filled_from_an_exchange_reads_back_as_it() {
    let mut g = Gen(18);
    let exchanges: Vec<Exchange> = (0..200).map(|_| generate::exchange(&mut g)).collect();
    let mut view = ExchangeRef::default();
    for exchange in &exchanges {
        view.fill_from(exchange);
        assert_eq!(format!("{:?}", view.to_exchange()), format!("{exchange:?}"));
    }
}

#[test]
fn wire_decode_fuzz_corpus_and_mutations() {
    let inputs = smoke::inputs(
        "wire_decode",
        3000,
        24,
        &[b"\x00", b"\x1b", b"\x1c", b"\x80"],
    );
    let accepted = inputs
        .iter()
        .filter(|input| wire_decode::check(input))
        .count();
    assert!(
        accepted >= 100 && accepted < inputs.len(),
        "{accepted} of {} accepted: the cases must include both",
        inputs.len()
    );
}

#[test]
fn the_utf8_check_agrees_with_the_standard_one() {
    let mut samples: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"GET".to_vec(),
        b"orders.shop.svc.cluster.local".to_vec(),
        "caf\u{e9} \u{1f600}".as_bytes().to_vec(),
        vec![0xed, 0xa0, 0x80],
        vec![0xc0, 0xaf],
        vec![0xf4, 0x90, 0x80, 0x80],
    ];
    // Every length up to three words, with one byte of each class at every position.
    for len in 0..24 {
        for at in 0..len {
            for byte in [0x7f, 0x80, 0xc3, 0xe2, 0xf0, 0xff] {
                let mut sample = vec![b'a'; len];
                sample[at] = byte;
                samples.push(sample.clone());
                if at + 1 < len {
                    sample[at + 1] = 0xa9;
                    samples.push(sample);
                }
            }
        }
    }
    for sample in &samples {
        assert_eq!(
            tapedeck_proto::wire::utf8(sample),
            std::str::from_utf8(sample),
            "{sample:?}"
        );
    }
}
