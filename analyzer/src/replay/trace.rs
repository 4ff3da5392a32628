//! The traceparent convention between the generator and the responder.
//!
//! The generator sends every request with a fresh W3C `traceparent` whose trace id says which
//! recorded inbound request it replays, in which copy of the recorded stream and in which
//! iteration. The service under test propagates the trace id to the calls it makes (as every
//! traced service in a mesh does), so the responder knows which recorded request caused a live
//! call and keeps sessions apart. `docs/replay-traceparent.md` is the user-facing description.
//!
//! ```text
//! traceparent: 00-74646b31 0000000c 00000002 00000007-5f0c2a9e1b3d4c6f-01
//!                 "tdk1"   copy 12  iter 2   line 7   span id (random)  sampled
//! ```

use std::fmt::Write as _;

/// The first four bytes of every replay trace id: `tdk1` in ASCII (`74646b31`), the convention's
/// version 1.
pub const TRACE_MAGIC: [u8; 4] = *b"tdk1";

/// Which replayed request a trace id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayTrace {
    /// The copy of the recorded stream (0-based): `--copies N` replays N copies side by side.
    pub copy: u32,
    /// The pass over the recording (0-based): a replay that runs longer than the recording
    /// starts it again.
    pub iteration: u32,
    /// The 1-based line of `inbound.jsonl` holding the recorded request.
    pub line: u32,
}

impl ReplayTrace {
    /// The 16 bytes of the trace id: the magic, then copy, iteration and line, big-endian.
    pub fn trace_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        let parts = [
            TRACE_MAGIC,
            self.copy.to_be_bytes(),
            self.iteration.to_be_bytes(),
            self.line.to_be_bytes(),
        ];
        for (chunk, part) in id.chunks_exact_mut(4).zip(parts) {
            chunk.copy_from_slice(&part);
        }
        id
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        for byte in self.trace_id() {
            let _ = write!(out, "{byte:02x}");
        }
        out
    }

    /// A W3C `traceparent` header value: version 00, this trace id, `span_id` as the parent
    /// id (0, which W3C forbids, becomes 1) and the sampled flag.
    pub fn traceparent(&self, span_id: u64) -> String {
        format!(
            "00-{}-{:016x}-01",
            self.trace_id_hex(),
            if span_id == 0 { 1 } else { span_id }
        )
    }

    /// Reads a `traceparent` header value (`00-<trace id>-<parent id>-<flags>`); `None` when it
    /// is not one or its trace id does not follow the convention.
    pub fn from_traceparent(value: &str) -> Option<ReplayTrace> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2
            || version == "ff"
            || parent.len() != 16
            || flags.len() != 2
            || !is_hex(version)
            || !is_hex(parent)
            || !is_hex(flags)
        {
            return None;
        }
        ReplayTrace::from_trace_id(trace)
    }

    /// Reads a trace id of 32 hex digits (either case); `None` unless it starts with the magic.
    pub fn from_trace_id(hex: &str) -> Option<ReplayTrace> {
        if hex.len() != 32 || !is_hex(hex) {
            return None;
        }
        let word = |i: usize| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok();
        if word(0)? != u32::from_be_bytes(TRACE_MAGIC) {
            return None;
        }
        Some(ReplayTrace {
            copy: word(1)?,
            iteration: word(2)?,
            line: word(3)?,
        })
    }
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips() {
        let trace = ReplayTrace {
            copy: 12,
            iteration: 2,
            line: 7,
        };
        assert_eq!(trace.trace_id_hex(), "74646b310000000c0000000200000007");
        let header = trace.traceparent(0x5f0c_2a9e_1b3d_4c6f);
        assert_eq!(
            header,
            "00-74646b310000000c0000000200000007-5f0c2a9e1b3d4c6f-01"
        );
        assert_eq!(ReplayTrace::from_traceparent(&header), Some(trace));
        assert_eq!(
            ReplayTrace::from_traceparent(&header.to_uppercase()),
            Some(trace)
        );
        assert!(trace.traceparent(0).contains("-0000000000000001-"));
        let max = ReplayTrace {
            copy: u32::MAX,
            iteration: u32::MAX,
            line: u32::MAX,
        };
        assert_eq!(
            ReplayTrace::from_traceparent(&max.traceparent(9)),
            Some(max)
        );
    }

    #[test]
    fn other_traces_are_not_replays() {
        for value in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-74646b310000000c00000002000000-5f0c2a9e1b3d4c6f-01",
            "00-74646b310000000c0000000200000007-5f0c2a9e-01",
            "ff-74646b310000000c0000000200000007-5f0c2a9e1b3d4c6f-01",
            "74646b310000000c0000000200000007",
            "",
            "00-74646b31000000zz0000000200000007-5f0c2a9e1b3d4c6f-01",
        ] {
            assert_eq!(ReplayTrace::from_traceparent(value), None, "{value}");
        }
        assert_eq!(
            ReplayTrace::from_trace_id("74646b31000000000000000000000001"),
            Some(ReplayTrace {
                copy: 0,
                iteration: 0,
                line: 1
            })
        );
    }
}
