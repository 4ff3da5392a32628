//! Reading a HAR document entry by entry, and repairing what real files get wrong.
//!
//! [`read_document`] walks the document with serde's streaming visitors: `log.entries` is never
//! held whole, each entry is read into one [`serde_json::Value`] and handed to the caller, so
//! the memory an import needs is one entry (plus the small rest of `log`), whatever the file's
//! size. Only JSON that does not parse, a top level without `log`, or a `log` without an
//! `entries` array is an error.
//!
//! [`lenient`] turns such a value into a model type. Where a field cannot be read as the spec
//! says (an object where a string belongs, a word where a number belongs, a map of headers where
//! an array belongs), it repairs that one field and tries again: a non-string value where a
//! string belongs is kept as its JSON text, an object of `name: value` where an array of pairs
//! belongs becomes those pairs, and anything else is set to null (the field's "unknown" value)
//! and, failing that, removed. Each repair is a note naming the field.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess};
use serde::de::{Deserializer, Visitor};
use serde_json::{Map, Value};
use serde_path_to_error::Segment;

/// Repairs tried on one value before the value is given up.
const MAX_REPAIRS: usize = 256;

/// Where the reader was when the document stopped parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// Outside `log`.
    Document,
    /// Inside `log`, outside `entries`.
    Log,
    /// At `log.entries` itself.
    Entries,
    /// Inside `log.entries`, at this index.
    Entry(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Document => f.write_str("document"),
            Position::Log => f.write_str("log"),
            Position::Entries => f.write_str("log.entries"),
            Position::Entry(index) => write!(f, "log.entries[{index}]"),
        }
    }
}

/// What [`read_document`] learned besides the entries.
#[derive(Debug, Default)]
pub(crate) struct Head {
    /// The fields of `log` other than `entries`, as written.
    pub(crate) log: Map<String, Value>,
    /// How many entries were handed over.
    pub(crate) entries: usize,
    /// Where the reader was last (meaningful when it fails).
    pub(crate) position: Option<Position>,
}

struct State<'a, F> {
    each: &'a mut F,
    head: Head,
}

/// Reads a HAR document from a serde_json deserializer, calling `each(index, value)` for every
/// entry in order. On failure, [`Head::position`] says where the reader was.
pub(crate) fn read_document<'de, D, F>(
    deserializer: D,
    each: &mut F,
) -> (std::result::Result<(), D::Error>, Head)
where
    D: Deserializer<'de>,
    F: FnMut(usize, Value),
{
    let mut state = State {
        each,
        head: Head {
            position: Some(Position::Document),
            ..Head::default()
        },
    };
    let result = deserializer.deserialize_any(DocumentVisitor(&mut state));
    (result, state.head)
}

struct DocumentVisitor<'s, 'a, F>(&'s mut State<'a, F>);

impl<'de, F: FnMut(usize, Value)> Visitor<'de> for DocumentVisitor<'_, '_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a HAR document (an object with `log`)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen_log = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "log" && !seen_log {
                seen_log = true;
                self.0.head.position = Some(Position::Log);
                map.next_value_seed(LogSeed(&mut *self.0))?;
                self.0.head.position = Some(Position::Document);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !seen_log {
            return Err(de::Error::missing_field("log"));
        }
        Ok(())
    }
}

struct LogSeed<'s, 'a, F>(&'s mut State<'a, F>);

impl<'de, F: FnMut(usize, Value)> DeserializeSeed<'de> for LogSeed<'_, '_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(LogVisitor(self.0))
    }
}

struct LogVisitor<'s, 'a, F>(&'s mut State<'a, F>);

impl<'de, F: FnMut(usize, Value)> Visitor<'de> for LogVisitor<'_, '_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the HAR log (an object with `entries`)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen_entries = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "entries" && !seen_entries {
                seen_entries = true;
                self.0.head.position = Some(Position::Entries);
                map.next_value_seed(EntriesSeed(&mut *self.0))?;
                self.0.head.position = Some(Position::Log);
            } else if key == "entries" {
                map.next_value::<IgnoredAny>()?;
            } else {
                let value = map.next_value::<Value>()?;
                self.0.head.log.insert(key, value);
            }
        }
        if !seen_entries {
            return Err(de::Error::missing_field("entries"));
        }
        Ok(())
    }
}

struct EntriesSeed<'s, 'a, F>(&'s mut State<'a, F>);

impl<'de, F: FnMut(usize, Value)> DeserializeSeed<'de> for EntriesSeed<'_, '_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(EntriesVisitor(self.0))
    }
}

struct EntriesVisitor<'s, 'a, F>(&'s mut State<'a, F>);

impl<'de, F: FnMut(usize, Value)> Visitor<'de> for EntriesVisitor<'_, '_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let index = self.0.head.entries;
            self.0.head.position = Some(Position::Entry(index));
            let Some(value) = seq.next_element::<Value>()? else {
                break;
            };
            (self.0.each)(index, value);
            self.0.head.entries += 1;
        }
        Ok(())
    }
}

/// A repair [`lenient`] made: the field's path below the value, what was wrong, what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Repair {
    /// The path below the value read, `request.headers[0].value`.
    pub(crate) path: String,
    /// The problem and what was done about it.
    pub(crate) message: String,
}

/// Reads `value` (an object) as a `T`, repairing fields that do not read. `None` when even
/// repairs do not make it readable (the value is not an object, or a field resists every
/// repair).
pub(crate) fn lenient<T: DeserializeOwned>(
    mut value: Value,
    repairs: &mut Vec<Repair>,
) -> Option<T> {
    // Every model type is an object; serde would read some from arrays too.
    if !value.is_object() {
        return None;
    }
    // Per path: the first problem seen, and how many repairs were tried.
    let mut tried: Vec<(String, String, u8)> = Vec::new();
    for _ in 0..MAX_REPAIRS {
        let error = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(read) => {
                // By path: the order does not depend on how serde_json keeps object keys.
                tried.sort_by(|a, b| a.0.cmp(&b.0));
                repairs.extend(
                    tried
                        .into_iter()
                        .map(|(path, message, _)| Repair { path, message }),
                );
                return Some(read);
            }
            Err(error) => error,
        };
        let segments: Vec<Segment> = error.path().iter().cloned().collect();
        if segments.is_empty() {
            return None;
        }
        let path = error.path().to_string();
        let problem = error.into_inner().to_string();
        let slot = match tried.iter().position(|(p, ..)| *p == path) {
            Some(slot) => slot,
            None => {
                tried.push((path, problem.clone(), 0));
                tried.len() - 1
            }
        };
        let (_, message, stage) = &mut tried[slot];
        let (parent, last) = segments.split_at(segments.len() - 1);
        let parent = walk(&mut value, parent)?;
        let done = repair(parent, &last[0], *stage, &problem)?;
        *stage += 1;
        let first = message.split("; ").next().unwrap_or_default().to_owned();
        *message = format!("{first}; {done}");
    }
    None
}

/// The value at `segments` below `value`.
fn walk<'v>(mut value: &'v mut Value, segments: &[Segment]) -> Option<&'v mut Value> {
    for segment in segments {
        value = match segment {
            Segment::Map { key } => value.as_object_mut()?.get_mut(key)?,
            Segment::Seq { index } => value.as_array_mut()?.get_mut(*index)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Repairs the child `last` of `parent`, the `stage`th try; says what was done. `None` when
/// nothing is left to try.
fn repair(parent: &mut Value, last: &Segment, stage: u8, problem: &str) -> Option<&'static str> {
    let target = match last {
        Segment::Map { key } => parent.as_object_mut()?.get_mut(key)?,
        Segment::Seq { index } => parent.as_array_mut()?.get_mut(*index)?,
        _ => return None,
    };
    let wants_array = problem.contains("expected an array") || problem.contains("sequence");
    match stage {
        0 if target.is_object() && wants_array => {
            let pairs = target
                .as_object()?
                .iter()
                .map(|(name, value)| {
                    let mut pair = Map::new();
                    pair.insert("name".into(), Value::String(name.clone()));
                    pair.insert("value".into(), value.clone());
                    Value::Object(pair)
                })
                .collect();
            *target = Value::Array(pairs);
            Some("read as its name/value pairs")
        }
        0 if !(target.is_string() || target.is_null()) => {
            *target = Value::String(target.to_string());
            Some("kept as its JSON text")
        }
        0 | 1 if !target.is_null() => {
            *target = Value::Null;
            Some("ignored")
        }
        0..=2 => {
            match last {
                Segment::Map { key } => {
                    parent.as_object_mut()?.remove(key);
                }
                Segment::Seq { index } => {
                    parent.as_array_mut()?.remove(*index);
                }
                _ => return None,
            }
            Some("ignored")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Entry;

    fn read(text: &str) -> (Option<Entry>, Vec<Repair>) {
        let mut repairs = Vec::new();
        let entry = lenient::<Entry>(serde_json::from_str(text).unwrap(), &mut repairs);
        (entry, repairs)
    }

    #[test]
    fn an_object_where_a_string_belongs_is_kept_as_json_text() {
        let (entry, repairs) = read(
            r#"{"request": {"postData": {"params": [{"name": "a", "value": {"x": [1, 2]}}]}}}"#,
        );
        let entry = entry.unwrap();
        let params = &entry.request.post_data.unwrap().params;
        assert_eq!(params[0].value.as_deref(), Some(r#"{"x":[1,2]}"#));
        assert_eq!(
            repairs,
            vec![Repair {
                path: "request.postData.params[0].value".into(),
                message: "invalid type: map, expected a string; kept as its JSON text".into()
            }]
        );
    }

    #[test]
    fn a_word_where_a_number_belongs_is_ignored() {
        let (entry, repairs) =
            read(r#"{"time": "soon", "response": {"content": {"_tapedeckRaw": "yes"}}}"#);
        assert_eq!(entry.unwrap().time, -1.0);
        let mut paths: Vec<_> = repairs.iter().map(|r| r.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(paths, ["response.content._tapedeckRaw", "time"]);
        assert!(
            repairs.iter().all(|r| r.message.ends_with("; ignored")),
            "{repairs:?}"
        );
    }

    #[test]
    fn headers_written_as_a_map_become_pairs() {
        let (entry, repairs) = read(r#"{"request": {"headers": {"Accept": "*/*", "X-N": 3}}}"#);
        let headers = entry.unwrap().request.headers;
        let pairs: Vec<_> = headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(pairs, [("Accept", "*/*"), ("X-N", "3")]);
        assert_eq!(repairs[0].path, "request.headers");
    }

    #[test]
    fn a_value_that_is_not_an_object_cannot_be_read() {
        assert!(read(r#""GET /""#).0.is_none());
        assert!(read("[1]").0.is_none());
    }
}
