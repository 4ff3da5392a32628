//! The capture wire schema shared by every tapedeck part.
//!
//! `tapedeck.capture.v1` is what a filter in a sidecar sends to the collector: an
//! [`ExchangeBatch`] of [`Exchange`]s pushed through the `Capture` service. The filter uses this
//! crate with default features off (prost only, no tonic, no Arrow); the collector and the test
//! receivers turn on `grpc` for the tonic client and server, and the store and query side turns
//! on `arrow` for [`arrow`], the one mapping between exchanges and the `exchanges` Arrow table.
//!
//! Shared constants (header names, the default redaction list, the redaction marker) live here
//! too, so that the filter that writes them and the tools that read them agree.
#![warn(missing_docs)]

/// Generated from `proto/tapedeck/capture/v1/capture.proto`.
#[allow(
    clippy::doc_lazy_continuation,
    clippy::doc_overindented_list_items,
    reason = "generated docs copy the .proto comments verbatim"
)]
pub mod capture {
    /// Version 1 of the capture schema.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/tapedeck.capture.v1.rs"));
    }
}

#[cfg(feature = "arrow")]
pub mod arrow;
#[cfg(feature = "arrow")]
pub use arrow_array;
#[cfg(feature = "arrow")]
pub mod wire;
#[cfg(feature = "arrow")]
pub use arrow_schema;

pub use capture::v1::{Direction, Exchange, ExchangeBatch, Header, Message, Protocol, PushAck};
pub use prost;
#[cfg(feature = "grpc")]
pub use tonic;

/// The fully qualified gRPC service name, as `dispatch_grpc_call` needs it.
pub const CAPTURE_SERVICE: &str = "tapedeck.capture.v1.Capture";
/// The method that pushes one batch.
pub const CAPTURE_PUSH_METHOD: &str = "Push";
/// Push metadata (gRPC request headers of `Capture/Push`) naming the filter VM that sent the
/// batch: a random id, new at every VM start (a proxy restart, a reload after a crash).
pub const PUSH_VM_ID: &str = "tapedeck-vm-id";
/// Push metadata: when the sending filter VM started, nanoseconds since the Unix epoch (decimal).
pub const PUSH_VM_STARTED: &str = "tapedeck-vm-started";
/// Push metadata: the sending proxy's workload (as the exchanges' `workload`), so that a batch
/// without exchanges (a heartbeat) still says who sent it.
pub const PUSH_WORKLOAD: &str = "tapedeck-workload";
/// Push metadata: the workload's namespace.
pub const PUSH_NAMESPACE: &str = "tapedeck-namespace";
/// Push metadata: the pod (or the proxy's node id).
pub const PUSH_POD: &str = "tapedeck-pod";

/// Headers that are redacted by default, before anything leaves the pod.
pub const DEFAULT_REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// The prefix of every value the filter wrote in place of a secret. What follows is
/// `hmac-sha256:` and 32 lowercase hex digits (the first 16 bytes of the keyed hash of the raw
/// value), so equal secrets stay equal and correlatable without being readable.
pub const REDACTED_PREFIX: &str = "tapedeck-redacted:";

/// One step of splitmix64 (Steele, Lea and Flood, 2014): advances `state` and returns the next
/// value. The project's one seeded generator: the exchange ids of HAR imports, and the cases
/// that tests and fuzz smoke runs generate (the same seed gives the same cases).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The marker that stands for `secret` under the redaction `key`:
/// `tapedeck-redacted:hmac-sha256:` and the first 16 bytes of HMAC-SHA256(key, secret) in
/// lowercase hex. The filter writes it; the responder recomputes it from live values under
/// `--redaction-key` to compare them with recorded markers. One definition for both.
pub fn redaction_marker(key: &[u8], secret: &[u8]) -> String {
    use hmac::Mac as _;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(REDACTED_PREFIX.len() + 12 + 32);
    out.push_str(REDACTED_PREFIX);
    out.push_str("hmac-sha256:");
    // An HMAC accepts keys of any length, so this cannot fail; the bare prefix would be the
    // fallback and still leaks nothing.
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return out;
    };
    mac.update(secret);
    for byte in mac.finalize().into_bytes().iter().take(16) {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// The W3C trace context header the trace id is read from first.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The Envoy request id header, the trace id when no `traceparent` is present.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The trace id of a W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`): the 32 hex
/// digits, lowercase, if the value is well formed and the id not all zeros. The filter and the
/// HAR import both take an exchange's trace id from it.
pub fn traceparent_trace_id(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.trim().split('-');
    let _version = parts.next().filter(|v| v.len() == 2)?;
    let trace = parts.next()?;
    let _parent = parts.next().filter(|p| p.len() == 16)?;
    let valid = trace.len() == 32
        && trace.bytes().all(|b| b.is_ascii_hexdigit())
        && trace.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_ascii_lowercase())
}

impl Direction {
    /// The lowercase word used in SQL, snapshots and the CLI: `inbound`, `outbound` or
    /// `unspecified`.
    pub fn as_word(self) -> &'static str {
        match self {
            Direction::Unspecified => "unspecified",
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl Protocol {
    /// The name users see: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`, `gRPC` or empty.
    pub fn as_word(self) -> &'static str {
        match self {
            Protocol::Unspecified => "",
            Protocol::Http10 => "HTTP/1.0",
            Protocol::Http11 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
            Protocol::Http3 => "HTTP/3",
            Protocol::Grpc => "gRPC",
        }
    }

    /// The protocol a word of [`Protocol::as_word`] names; the empty word is unspecified, any
    /// other word `None`.
    pub fn from_word(word: &str) -> Option<Self> {
        [
            Protocol::Unspecified,
            Protocol::Http10,
            Protocol::Http11,
            Protocol::Http2,
            Protocol::Http3,
            Protocol::Grpc,
        ]
        .into_iter()
        .find(|p| p.as_word() == word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn exchange_round_trips_through_the_wire_format() {
        let exchange = Exchange {
            id: vec![7; 16],
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            start_unix_nanos: 1_764_000_000_000_000_000,
            duration_nanos: 1_500_000,
            direction: Direction::Outbound as i32,
            method: "POST".into(),
            path: "/pay?x=1".into(),
            request: Some(Message {
                headers: vec![Header {
                    name: "x-bin".into(),
                    value: vec![0xff, 0x00, 0x80],
                }],
                body: vec![0xde, 0xad],
                body_size: 4096,
                body_truncated: true,
                trailers: vec![],
            }),
            status: 201,
            redactions: vec!["request.header:authorization".into()],
            ..Default::default()
        };
        let batch = ExchangeBatch {
            exchanges: vec![exchange.clone()],
            sequence: 3,
            ..Default::default()
        };
        let decoded = ExchangeBatch::decode(batch.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded.exchanges, vec![exchange]);
        assert_eq!(decoded.sequence, 3);
        assert_eq!(decoded.exchanges[0].direction(), Direction::Outbound);
    }

    #[test]
    fn a_truncated_batch_is_an_error_not_a_panic() {
        let batch = ExchangeBatch {
            exchanges: vec![Exchange {
                path: "/a".repeat(100),
                ..Default::default()
            }],
            ..Default::default()
        };
        let bytes = batch.encode_to_vec();
        assert!(ExchangeBatch::decode(&bytes[..bytes.len() - 3]).is_err());
    }
}
