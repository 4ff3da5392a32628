//! Header maps kept as the proxy hands them over: one buffer in proxy-wasm's serialized form
//! and the offsets of each pair, so reading a map costs one host call and no allocation per
//! header, and the exchange is encoded straight from that buffer.
//!
//! The serialized form (proxy-wasm ABI): a `u32` count, then a `u32` name length and a `u32`
//! value length per pair, then each name and value followed by a NUL byte; integers are little
//! endian.

use std::borrow::Cow;

/// One pair: where its name and value are in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    name: (u32, u32),
    value: (u32, u32),
}

/// Header pairs in the proxy's serialized form, in order, with redacted values set aside.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderMap {
    buf: Vec<u8>,
    entries: Vec<Entry>,
    /// Values replaced by redaction: entry index → new value (few, so a list).
    replaced: Vec<(usize, Vec<u8>)>,
}

fn read_u32(buf: &[u8], at: usize) -> Option<usize> {
    let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes) as usize)
}

/// Pairs in the proxy-wasm serialized form (a header map, or the initial metadata of a gRPC
/// call the module starts).
pub fn serialize<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut buf = Vec::new();
    buf.extend_from_slice(&len(pairs.len()));
    for (name, value) in pairs {
        buf.extend_from_slice(&len(name.as_ref().len()));
        buf.extend_from_slice(&len(value.as_ref().len()));
    }
    for (name, value) in pairs {
        buf.extend_from_slice(name.as_ref());
        buf.push(0);
        buf.extend_from_slice(value.as_ref());
        buf.push(0);
    }
    buf
}

/// Calls `each` on every pair of a serialized map, in order, without copying or allocating;
/// `None` when the map is malformed (exactly when [`HeaderMap::parse`] refuses it).
pub fn for_each_pair<'a>(buf: &'a [u8], mut each: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
    if buf.is_empty() {
        return Some(());
    }
    let count = read_u32(buf, 0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > buf.len() {
        return None;
    }
    for i in 0..count {
        let name_len = read_u32(buf, 4 + i * 8)?;
        let value_len = read_u32(buf, 8 + i * 8)?;
        let name_start = data;
        let value_start = name_start.checked_add(name_len)?.checked_add(1)?;
        data = value_start.checked_add(value_len)?.checked_add(1)?;
        if data > buf.len() {
            return None;
        }
        let name = buf.get(name_start..name_start + name_len)?;
        let value = buf.get(value_start..value_start + value_len)?;
        each(name, value);
    }
    Some(())
}

impl HeaderMap {
    /// Takes a serialized map from the proxy. `None` when it is malformed.
    pub fn parse(buf: Vec<u8>) -> Option<Self> {
        if buf.is_empty() {
            return Some(Self::default());
        }
        let count = read_u32(&buf, 0)?;
        let mut data = count.checked_mul(8)?.checked_add(4)?;
        if data > buf.len() {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let name_len = read_u32(&buf, 4 + i * 8)?;
            let value_len = read_u32(&buf, 8 + i * 8)?;
            let name_start = data;
            let value_start = name_start.checked_add(name_len)?.checked_add(1)?;
            data = value_start.checked_add(value_len)?.checked_add(1)?;
            if data > buf.len() {
                return None;
            }
            entries.push(Entry {
                name: (
                    u32::try_from(name_start).ok()?,
                    u32::try_from(name_len).ok()?,
                ),
                value: (
                    u32::try_from(value_start).ok()?,
                    u32::try_from(value_len).ok()?,
                ),
            });
        }
        Some(Self {
            buf,
            entries,
            replaced: Vec::new(),
        })
    }

    /// Serializes pairs the way the proxy does (for tests and callers that hold pairs).
    pub fn from_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Self {
        // Well-formed by construction.
        Self::parse(serialize(pairs)).unwrap_or_default()
    }

    fn slice(&self, (start, len): (u32, u32)) -> &[u8] {
        let start = start as usize;
        self.buf
            .get(start..start + len as usize)
            .unwrap_or_default()
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name of pair `i` (bytes as received).
    pub fn name(&self, i: usize) -> &[u8] {
        self.entries
            .get(i)
            .map_or(&[][..], |entry| self.slice(entry.name))
    }

    /// The value of pair `i`, redacted when it was.
    pub fn value(&self, i: usize) -> &[u8] {
        if let Some((_, value)) = self.replaced.iter().find(|(at, _)| *at == i) {
            return value;
        }
        self.entries
            .get(i)
            .map_or(&[][..], |entry| self.slice(entry.value))
    }

    /// The name of pair `i` as text (header names are ASCII; anything else is made valid).
    pub fn name_str(&self, i: usize) -> Cow<'_, str> {
        String::from_utf8_lossy(self.name(i))
    }

    /// Pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        (0..self.entries.len()).map(|i| (self.name(i), self.value(i)))
    }

    /// The first value of `name` (exact, lowercase as the proxy gives names).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        (0..self.entries.len())
            .find(|&i| self.name(i) == name.as_bytes())
            .map(|i| self.value(i))
    }

    /// Keeps only the pairs `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8]) -> bool) {
        let buf = &self.buf;
        self.entries.retain(|entry| {
            let start = entry.name.0 as usize;
            keep(
                buf.get(start..start + entry.name.1 as usize)
                    .unwrap_or_default(),
            )
        });
    }

    /// Replaces the value of pair `i`.
    pub fn replace(&mut self, i: usize, value: Vec<u8>) {
        self.replaced.retain(|(at, _)| *at != i);
        self.replaced.push((i, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_in_order_and_malformed_maps_are_refused() {
        let mut map = HeaderMap::from_pairs(&[(":path", "/x"), ("a", ""), ("a", "2")]);
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(":path"), Some(&b"/x"[..]));
        assert_eq!(map.get("a"), Some(&b""[..]));
        map.retain(|name| !name.starts_with(b":"));
        map.replace(1, b"r".to_vec());
        let pairs: Vec<_> = map.iter().collect();
        assert_eq!(pairs, [(&b"a"[..], &b""[..]), (&b"a"[..], &b"r"[..])]);
        assert_eq!(HeaderMap::parse(Vec::new()), Some(HeaderMap::default()));
        let good = HeaderMap::from_pairs(&[("name", "value")]).buf;
        for cut in 1..good.len() {
            assert_eq!(HeaderMap::parse(good[..cut].to_vec()), None, "cut at {cut}");
        }
        assert_eq!(HeaderMap::parse(vec![0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn scanning_a_serialized_map_sees_what_parsing_sees() {
        let good = serialize(&[(":path", "/x"), ("a", ""), ("b", "2")]);
        let mut seen = Vec::new();
        assert_eq!(for_each_pair(&good, |n, v| seen.push((n, v))), Some(()));
        let parsed = HeaderMap::parse(good.clone()).expect("well formed");
        assert_eq!(seen, parsed.iter().collect::<Vec<_>>());
        assert_eq!(for_each_pair(&[], |_, _| ()), Some(()));
        for cut in 1..good.len() {
            let part = &good[..cut];
            assert_eq!(
                for_each_pair(part, |_, _| ()).is_some(),
                HeaderMap::parse(part.to_vec()).is_some(),
                "cut at {cut}"
            );
        }
        assert_eq!(for_each_pair(&[0xff, 0xff, 0xff, 0xff], |_, _| ()), None);
    }
}
