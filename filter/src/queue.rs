//! The outbox: encoded exchanges waiting to be pushed, bounded in count and bytes.
//!
//! One outbox per Wasm VM (Envoy runs a VM per worker). HTTP contexts put exchanges in as they
//! end; the root context takes batches out on its tick. Nothing here waits: a full outbox drops
//! the new exchange and counts it, so capture never holds production memory hostage.

use std::collections::VecDeque;

use tapedeck_proto::prost::encoding::{WireType, encode_key, encode_varint};

/// Why an exchange was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The outbox was at its count or byte bound.
    QueueFull,
}

/// Bounded queue of encoded `Exchange` messages, kept as the batches they will be pushed in:
/// each exchange is encoded once, straight into the batch under construction, as field 1
/// (`exchanges`) of an `ExchangeBatch`; a batch that reaches the byte bound is sealed and the
/// next exchange starts a new one.
#[derive(Debug)]
pub struct Outbox {
    sealed: VecDeque<Pending>,
    current: Pending,
    items: usize,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
    batch_max_bytes: usize,
    sequence: u64,
    dropped_since_last: u64,
    /// Bytes reserved for a new batch: the size of the last one taken, so that a batch under
    /// load is written into one allocation instead of growing (and being copied) by doubling.
    reserve: usize,
}

/// Room for the batch's own fields, appended by [`Outbox::next_batch`].
const BATCH_TRAILER_BYTES: usize = 48;

/// A batch under construction: the encoded `exchanges` records.
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    exchanges: u64,
    /// Encoded exchange bytes in it (without the record keys and lengths).
    exchange_bytes: usize,
}

/// One batch ready to push: the encoded `ExchangeBatch` and how many exchanges it holds.
#[derive(Debug)]
pub struct Batch {
    /// The encoded `tapedeck.capture.v1.ExchangeBatch`.
    pub bytes: Vec<u8>,
    /// Exchanges in it.
    pub exchanges: u64,
    /// The drop report it carries (`dropped_since_last`). The collector counts a report only
    /// when it stores the batch; a batch that fails or is refused gives its report back to the
    /// outbox ([`Outbox::dropped`]) so that the next batch carries it.
    pub reported: u64,
}

impl Outbox {
    /// An empty outbox with these bounds.
    pub fn new(max_items: usize, max_bytes: usize, batch_max_bytes: usize) -> Self {
        Self {
            sealed: VecDeque::new(),
            current: Pending::default(),
            items: 0,
            bytes: 0,
            max_items,
            max_bytes,
            batch_max_bytes,
            sequence: 0,
            dropped_since_last: 0,
            reserve: 0,
        }
    }

    /// Queues one encoded exchange, or drops it when a bound would be passed.
    pub fn push(&mut self, encoded: Vec<u8>) -> Result<(), Dropped> {
        self.push_with(encoded.len(), |out| out.extend_from_slice(&encoded))
    }

    /// Queues one exchange of `len` encoded bytes that `write` appends (exactly `len` bytes)
    /// straight into its batch, or drops it, without calling `write`, when a bound would be
    /// passed.
    pub fn push_with(
        &mut self,
        len: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), Dropped> {
        if self.items >= self.max_items || self.bytes.saturating_add(len) > self.max_bytes {
            self.dropped(1);
            return Err(Dropped::QueueFull);
        }
        if self.current.exchanges > 0 && self.current.bytes.len() + len + 10 > self.batch_max_bytes
        {
            let full = std::mem::take(&mut self.current);
            self.sealed.push_back(full);
        }
        let out = &mut self.current.bytes;
        if self.current.exchanges == 0 {
            out.reserve(self.reserve.max(len + 10 + BATCH_TRAILER_BYTES));
        }
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(len as u64, out);
        write(out);
        self.current.exchanges += 1;
        self.current.exchange_bytes += len;
        self.items += 1;
        self.bytes += len;
        Ok(())
    }

    /// Records exchanges lost elsewhere (failed pushes), so the next batch reports them.
    pub fn dropped(&mut self, exchanges: u64) {
        self.dropped_since_last = self.dropped_since_last.saturating_add(exchanges);
    }

    /// Queued bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queued exchanges.
    pub fn len(&self) -> usize {
        self.items
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// Drops counted but not yet put in a batch's report.
    pub fn unreported(&self) -> u64 {
        self.dropped_since_last
    }

    /// A batch without exchanges (a heartbeat, or the carrier of a drop report when nothing is
    /// queued): the batch's own fields only, with the next sequence number.
    pub fn empty_batch(&mut self, sent_unix_nanos: u64, filter_version: &str) -> Batch {
        self.seal(Pending::default(), sent_unix_nanos, filter_version)
    }

    /// Takes the oldest exchanges, up to the batch byte bound (at least one), as an encoded
    /// `ExchangeBatch`: the batch's records were written when the exchanges were queued, so
    /// only the batch's own fields are appended here.
    pub fn next_batch(&mut self, sent_unix_nanos: u64, filter_version: &str) -> Option<Batch> {
        let pending = match self.sealed.pop_front() {
            Some(pending) => pending,
            None if self.current.exchanges > 0 => std::mem::take(&mut self.current),
            None => return None,
        };
        self.items -= pending.exchanges as usize;
        self.bytes -= pending.exchange_bytes;
        self.reserve = (pending.bytes.len() + BATCH_TRAILER_BYTES).min(self.batch_max_bytes + 64);
        Some(self.seal(pending, sent_unix_nanos, filter_version))
    }

    /// Appends the batch's own fields to `pending`'s records; the batch takes the drop report.
    fn seal(&mut self, pending: Pending, sent_unix_nanos: u64, filter_version: &str) -> Batch {
        let mut bytes = pending.bytes;
        self.sequence += 1;
        encode_key(2, WireType::LengthDelimited, &mut bytes);
        encode_varint(filter_version.len() as u64, &mut bytes);
        bytes.extend_from_slice(filter_version.as_bytes());
        encode_key(3, WireType::Varint, &mut bytes);
        encode_varint(self.sequence, &mut bytes);
        let reported = std::mem::take(&mut self.dropped_since_last);
        if reported > 0 {
            encode_key(4, WireType::Varint, &mut bytes);
            encode_varint(reported, &mut bytes);
        }
        encode_key(5, WireType::SixtyFourBit, &mut bytes);
        bytes.extend_from_slice(&sent_unix_nanos.to_le_bytes());
        Batch {
            bytes,
            exchanges: pending.exchanges,
            reported,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapedeck_proto::prost::Message as _;
    use tapedeck_proto::{Exchange, ExchangeBatch};

    fn exchange(path: &str) -> Vec<u8> {
        Exchange {
            path: path.into(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn batches_decode_as_exchange_batches() {
        let mut outbox = Outbox::new(10, 1 << 20, 1 << 20);
        outbox.push(exchange("/a")).unwrap();
        outbox.push(exchange("/b")).unwrap();
        outbox.dropped(3);
        let batch = outbox.next_batch(42, "0.1.0").unwrap();
        assert_eq!(batch.exchanges, 2);
        let decoded = ExchangeBatch::decode(batch.bytes.as_slice()).unwrap();
        let paths: Vec<_> = decoded.exchanges.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["/a", "/b"]);
        assert_eq!(
            (
                decoded.sequence,
                decoded.dropped_since_last,
                decoded.sent_unix_nanos
            ),
            (1, 3, 42)
        );
        assert_eq!(decoded.filter_version, "0.1.0");
        assert!(outbox.is_empty());
        assert_eq!(outbox.bytes(), 0);
        assert!(outbox.next_batch(43, "0.1.0").is_none());
        outbox.push(exchange("/c")).unwrap();
        let decoded =
            ExchangeBatch::decode(outbox.next_batch(44, "0.1.0").unwrap().bytes.as_slice())
                .unwrap();
        assert_eq!((decoded.sequence, decoded.dropped_since_last), (2, 0));
    }

    #[test]
    fn a_failed_batch_gives_its_report_to_the_next_one() {
        let mut outbox = Outbox::new(10, 1 << 20, 1 << 20);
        outbox.push(exchange("/a")).unwrap();
        outbox.dropped(2);
        let failed = outbox.next_batch(1, "v").unwrap();
        assert_eq!((failed.exchanges, failed.reported), (1, 2));
        assert_eq!(outbox.unreported(), 0);
        // The push failed: its exchange is now a drop too, and its report rides again.
        outbox.dropped(failed.exchanges + failed.reported);
        assert_eq!(outbox.unreported(), 3);
        // Nothing queued: an empty batch carries the report.
        let carrier = outbox.empty_batch(2, "v");
        assert_eq!((carrier.exchanges, carrier.reported), (0, 3));
        let decoded = ExchangeBatch::decode(carrier.bytes.as_slice()).unwrap();
        assert!(decoded.exchanges.is_empty());
        assert_eq!(
            (
                decoded.sequence,
                decoded.dropped_since_last,
                decoded.sent_unix_nanos
            ),
            (2, 3, 2)
        );
        assert_eq!(outbox.unreported(), 0);
        let heartbeat = ExchangeBatch::decode(outbox.empty_batch(3, "v").bytes.as_slice()).unwrap();
        assert_eq!((heartbeat.sequence, heartbeat.dropped_since_last), (3, 0));
    }

    #[test]
    fn bounds_drop_new_exchanges() {
        let one = exchange("/x").len();
        let mut outbox = Outbox::new(2, 1 << 20, 1 << 20);
        assert!(outbox.push(exchange("/x")).is_ok());
        assert!(outbox.push(exchange("/x")).is_ok());
        assert_eq!(outbox.push(exchange("/x")), Err(Dropped::QueueFull));
        assert_eq!(outbox.len(), 2);
        let mut outbox = Outbox::new(100, one * 2, one);
        assert!(outbox.push(exchange("/x")).is_ok());
        assert!(outbox.push(exchange("/x")).is_ok());
        assert_eq!(outbox.push(exchange("/x")), Err(Dropped::QueueFull));
        assert_eq!(outbox.bytes(), one * 2);
        // The drop is reported in the next batch.
        let decoded =
            ExchangeBatch::decode(outbox.next_batch(0, "v").unwrap().bytes.as_slice()).unwrap();
        assert_eq!(decoded.dropped_since_last, 1);
    }

    #[test]
    fn batches_respect_the_byte_bound_but_always_carry_one() {
        let mut outbox = Outbox::new(100, 1 << 20, 64);
        for i in 0..10 {
            outbox.push(exchange(&format!("/{i:02}"))).unwrap();
        }
        let mut seen = Vec::new();
        while let Some(batch) = outbox.next_batch(0, "v") {
            assert!(
                batch.bytes.len() <= 64 + 32,
                "batch of {} bytes",
                batch.bytes.len()
            );
            let decoded = ExchangeBatch::decode(batch.bytes.as_slice()).unwrap();
            seen.extend(decoded.exchanges.into_iter().map(|e| e.path));
        }
        assert_eq!(
            seen,
            (0..10).map(|i| format!("/{i:02}")).collect::<Vec<_>>()
        );
        let mut outbox = Outbox::new(100, 1 << 20, 4);
        outbox.push(exchange(&"/long".repeat(10))).unwrap();
        assert_eq!(outbox.next_batch(0, "v").unwrap().exchanges, 1);
    }

    #[test]
    fn a_new_batch_reserves_the_size_of_the_last_one() {
        let mut outbox = Outbox::new(1000, 1 << 20, 1 << 20);
        for _ in 0..100 {
            outbox.push(exchange("/some/path")).unwrap();
        }
        let first = outbox.next_batch(0, "v").unwrap().bytes;
        for _ in 0..100 {
            outbox.push(exchange("/some/path")).unwrap();
        }
        let second = outbox.next_batch(0, "v").unwrap().bytes;
        // Written into the room reserved up front: no growth on the way.
        assert!(second.capacity() <= first.len() + BATCH_TRAILER_BYTES);
        assert_eq!(
            ExchangeBatch::decode(second.as_slice())
                .unwrap()
                .exchanges
                .len(),
            100
        );
    }
}
