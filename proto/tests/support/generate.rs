//! Seeded random `ExchangeBatch`es and mutations of their encodings, for the tests that compare
//! the in-place decoder (`tapedeck_proto::wire`) with prost. Included with `#[path]` by
//! `proto/tests/wire.rs` and by the collector's ingest tests.

#![allow(dead_code, reason = "each including test uses part of it")]

use tapedeck_proto::prost::Message as _;
use tapedeck_proto::{Exchange, ExchangeBatch, Header, Message};

/// splitmix64: the same seed gives the same cases.
pub(crate) struct Gen(pub(crate) u64);

impl Gen {
    pub(crate) fn next(&mut self) -> u64 {
        tapedeck_proto::splitmix64(&mut self.0)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True one time in `n`.
    pub(crate) fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

const TEXTS: &[&str] = &[
    "",
    "a",
    "orders",
    "/orders/42?x=1",
    "GET",
    "é-ü-😀",
    "10.0.0.1:5000",
    "outbound|80||pay.shop.svc.cluster.local",
];
const WORKLOADS: &[&str] = &[
    "",
    "orders",
    "orders ",
    "orders_",
    "pay/ments",
    "pay_ments",
    "ü",
];
const NAMES: &[&str] = &["content-type", "x-dup", "", "set-cookie", "é"];
const REDACTIONS: &[&str] = &[
    "request.header:authorization",
    "request.body:$.password",
    "response.body:withheld",
    "request.body",
    "response.header:set-cookie",
];

fn bytes(g: &mut Gen, max: usize) -> Vec<u8> {
    let len = g.below(max + 1);
    match g.below(3) {
        0 => (0..len).map(|i| b'a' + (i % 26) as u8).collect(),
        1 => (0..len).map(|_| g.next() as u8).collect(),
        _ => "{\"k\":\"é\"}".bytes().cycle().take(len).collect(),
    }
}

fn text(g: &mut Gen) -> String {
    if g.one_in(8) {
        // Long strings, to cross the string builders' initial capacity.
        "p".repeat(g.below(300))
    } else {
        g.pick(TEXTS).to_string()
    }
}

fn headers(g: &mut Gen, max: usize) -> Vec<Header> {
    (0..g.below(max + 1))
        .map(|_| Header {
            name: g.pick(NAMES).to_string(),
            value: match g.below(4) {
                0 => vec![0xff, 0xfe, b'x'],
                1 => Vec::new(),
                2 => "caf\u{e9}".as_bytes().to_vec(),
                _ => bytes(g, 40),
            },
        })
        .collect()
}

fn message(g: &mut Gen) -> Option<Message> {
    if g.one_in(4) {
        return None;
    }
    let body = if g.one_in(40) {
        vec![b'z'; 70_000]
    } else {
        bytes(g, 64)
    };
    let body_size = match g.below(6) {
        0 => 0,
        1 => u64::MAX,
        2 => body.len() as u64 + 1,
        _ => body.len() as u64,
    };
    Some(Message {
        headers: headers(g, 5),
        body_truncated: g.one_in(3),
        body,
        body_size,
        trailers: headers(g, 2),
    })
}

/// One exchange: mostly valid, with every field's edge values now and then (ids of other
/// lengths, unknown enum values, statuses and times out of range, bodies longer than their
/// size, empty header names, non-UTF-8 header values, missing request or response).
pub(crate) fn exchange(g: &mut Gen) -> Exchange {
    const HOUR: u64 = 3_600_000_000_000;
    let start = match g.below(10) {
        0 => 0,
        1 => i64::MAX as u64,
        2 => i64::MAX as u64 + 1,
        3 => u64::MAX,
        _ => 1_764_000_000_000_000_000 + g.below(3) as u64 * HOUR + g.below(1000) as u64,
    };
    Exchange {
        id: match g.below(8) {
            0 => Vec::new(),
            1 => vec![7; 15],
            2 => vec![7; 17],
            _ => (0..16).map(|_| g.next() as u8).collect(),
        },
        trace_id: text(g),
        start_unix_nanos: start,
        duration_nanos: if g.one_in(10) {
            u64::MAX
        } else {
            g.below(1_000_000) as u64
        },
        response_headers_nanos: g.below(1000) as u64,
        direction: g.pick(&[0, 1, 2, 2, 3, -1, i32::MIN]),
        workload: g.pick(WORKLOADS).to_string(),
        namespace: text(g),
        pod: text(g),
        peer_address: text(g),
        upstream_cluster: text(g),
        route_name: text(g),
        protocol: g.pick(&[0, 1, 2, 3, 4, 5, 6, -7]),
        scheme: text(g),
        authority: text(g),
        method: text(g),
        path: text(g),
        request: message(g),
        status: g.pick(&[0, 200, 404, 999, 1000, u32::MAX]),
        response: message(g),
        response_flags: text(g),
        response_code_details: text(g),
        sample_rate: g.pick(&[1.0, 0.5, 0.0, -0.0, 1.5, -0.1, f64::NAN, 1e-9]),
        redactions: (0..g.below(3))
            .map(|_| g.pick(REDACTIONS).to_string())
            .collect(),
        filter_version: text(g),
    }
}

/// A batch of up to `max` exchanges.
pub(crate) fn batch(g: &mut Gen, max: usize) -> ExchangeBatch {
    ExchangeBatch {
        exchanges: (0..g.below(max + 1)).map(|_| exchange(g)).collect(),
        filter_version: text(g),
        sequence: g.pick(&[0, 1, 2, u64::MAX]),
        dropped_since_last: g.pick(&[0, 5, u64::MAX]),
        sent_unix_nanos: g.next(),
    }
}

/// A batch where every exchange passes the collector's checks, so that the comparison of the
/// stored rows is not vacuous.
pub(crate) fn valid_batch(g: &mut Gen, max: usize) -> ExchangeBatch {
    let mut batch = batch(g, max);
    for e in &mut batch.exchanges {
        e.id.resize(16, 1);
        e.direction = e.direction.clamp(0, 2);
        e.protocol = e.protocol.clamp(0, 5);
        e.status = e.status.min(999);
        e.start_unix_nanos = e.start_unix_nanos.min(i64::MAX as u64);
        if !(0.0..=1.0).contains(&e.sample_rate) {
            e.sample_rate = 1.0;
        }
        for m in [&mut e.request, &mut e.response].into_iter().flatten() {
            m.body_size = m.body_size.max(m.body.len() as u64);
            for h in m.headers.iter_mut().chain(m.trailers.iter_mut()) {
                if h.name.is_empty() {
                    h.name.push('x');
                }
            }
        }
    }
    batch
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// One field of a valid encoding: its bytes from the key on, its tag and wire type, and for a
/// length-delimited field where its payload starts.
struct Field {
    bytes: Vec<u8>,
    tag: u32,
    wire: u8,
    payload: usize,
}

/// Splits a valid encoding into its fields (None when it is not one).
fn fields(bytes: &[u8]) -> Option<Vec<Field>> {
    fn read(bytes: &[u8], pos: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in 0..10 {
            let byte = *bytes.get(*pos)?;
            *pos += 1;
            value |= u64::from(byte & 0x7f) << (shift * 7);
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let start = pos;
        let key = read(bytes, &mut pos)?;
        let (tag, wire) = ((key >> 3) as u32, (key & 7) as u8);
        let mut payload = 0;
        match wire {
            0 => {
                read(bytes, &mut pos)?;
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let len = read(bytes, &mut pos)? as usize;
                payload = pos - start;
                pos = pos.checked_add(len)?;
            }
            _ => return None,
        }
        if pos > bytes.len() {
            return None;
        }
        out.push(Field {
            bytes: bytes[start..pos].to_vec(),
            tag,
            wire,
            payload,
        });
    }
    Some(out)
}

/// Where each message of the schema embeds messages: (level, tag) → the level inside.
/// Levels: 0 batch, 1 exchange, 2 message, 3 header.
fn embedded(level: u8, tag: u32) -> Option<u8> {
    match (level, tag) {
        (0, 1) => Some(1),
        (1, 18 | 20) => Some(2),
        (2, 1 | 5) => Some(3),
        _ => None,
    }
}

/// An unknown field (a tag no level of the schema uses, any wire type, groups nested up to
/// `depth`).
fn unknown(g: &mut Gen, depth: usize) -> Vec<u8> {
    let tag = g.pick(&[26u64, 99, 1000, (1 << 29) - 1]);
    let mut out = Vec::new();
    let wire = if depth == 0 { g.below(5) } else { g.below(6) };
    let wire = [0u64, 1, 5, 2, 2, 3][wire];
    varint(tag << 3 | wire, &mut out);
    match wire {
        0 => varint(g.next() >> g.below(64), &mut out),
        1 => out.extend_from_slice(&g.next().to_le_bytes()),
        5 => out.extend_from_slice(&(g.next() as u32).to_le_bytes()),
        2 => {
            let payload = bytes(g, 20);
            varint(payload.len() as u64, &mut out);
            out.extend_from_slice(&payload);
        }
        _ => {
            for _ in 0..g.below(3) {
                out.extend(unknown(g, depth - 1));
            }
            varint(tag << 3 | 4, &mut out);
        }
    }
    out
}

/// A structural mutation of a valid encoding at `level`: fields reordered, a field repeated
/// (a singular message field repeated is merged by prost), an unknown field inserted, or the
/// same applied inside an embedded message (re-encoded with its new length).
fn mutate_message(g: &mut Gen, bytes: &[u8], level: u8) -> Vec<u8> {
    let Some(mut fields) = fields(bytes) else {
        return bytes.to_vec();
    };
    match g.below(5) {
        0 if fields.len() > 1 => {
            for i in (1..fields.len()).rev() {
                let j = g.below(i + 1);
                fields.swap(i, j);
            }
        }
        1 if !fields.is_empty() => {
            let i = g.below(fields.len());
            let copy = Field {
                bytes: fields[i].bytes.clone(),
                ..fields[i]
            };
            fields.insert(g.below(fields.len() + 1), copy);
        }
        2 => {
            let at = g.below(fields.len() + 1);
            fields.insert(
                at,
                Field {
                    bytes: unknown(g, 3),
                    tag: 0,
                    wire: 0,
                    payload: 0,
                },
            );
        }
        _ => {
            let inner: Vec<usize> = (0..fields.len())
                .filter(|&i| fields[i].wire == 2 && embedded(level, fields[i].tag).is_some())
                .collect();
            if !inner.is_empty() {
                let i = inner[g.below(inner.len())];
                let field = &fields[i];
                let level_inside = embedded(level, field.tag).expect("filtered above");
                let mutated = mutate_message(g, &field.bytes[field.payload..], level_inside);
                let mut bytes = Vec::new();
                varint(u64::from(field.tag) << 3 | 2, &mut bytes);
                varint(mutated.len() as u64, &mut bytes);
                bytes.extend(mutated);
                fields[i].bytes = bytes;
            }
        }
    }
    fields.into_iter().flat_map(|f| f.bytes).collect()
}

/// `rounds` structural mutations, then now and then a raw one (truncation, a flipped or
/// inserted byte, a string's byte made non-UTF-8), of an encoded batch.
pub(crate) fn mutate(g: &mut Gen, encoded: &[u8], rounds: usize) -> Vec<u8> {
    let mut bytes = encoded.to_vec();
    for _ in 0..rounds {
        bytes = mutate_message(g, &bytes, 0);
    }
    if g.one_in(3) && !bytes.is_empty() {
        let at = g.below(bytes.len());
        match g.below(4) {
            0 => bytes.truncate(at),
            1 => bytes[at] ^= 1 << g.below(8),
            2 => bytes.insert(at, g.next() as u8),
            _ => bytes[at] = 0xff,
        }
    }
    bytes
}

/// A random batch encoded, then mutated or not.
pub(crate) fn case(g: &mut Gen, max: usize) -> Vec<u8> {
    let batch = if g.one_in(2) {
        valid_batch(g, max)
    } else {
        batch(g, max)
    };
    let encoded = batch.encode_to_vec();
    match g.below(3) {
        0 => encoded,
        rounds => mutate(g, &encoded, rounds),
    }
}
