//! Reading and rewriting the value at a token rule's [`Location`] in a live message.
//!
//! Discovery reads values with [`crate::tokens::extract`]; replay reads and replaces them here,
//! with the same notion of where a value is: a header (its auth scheme split off), a cookie pair,
//! a raw query parameter, a path segment, or a JSON leaf under the same path spelling
//! (`$.items[*].sku`, `$["odd key"]`). An edit changes only the value's own bytes:
//!
//! - JSON bodies are edited in place: key order, spacing, escapes and every other byte stay, and
//!   a replacement keeps the use site's JSON type (a number stays a number when the new text is
//!   a JSON number; a string stays a string).
//! - Path segments and query values are percent-encoded only where a character would change the
//!   structure or may not appear raw: space, `/` `?` `#` in a segment, `&` `#` in a query value,
//!   `%` not followed by two hex digits, control characters and non-ASCII.
//! - A cookie keeps its other pairs (and a `Set-Cookie` its attributes); `Bearer` and other auth
//!   schemes stay.
//! - `content-length` is not touched: whoever sends the message computes it.

use std::borrow::Cow;

use crate::template::{endpoint, path_without_query, query_of};
use crate::tokens::{Location, Part, Side, push_key, split_scheme};

/// One live HTTP message, owned: what replay sends or serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveMessage {
    /// Headers in order, duplicates kept; names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl LiveMessage {
    /// The first header of that name (ASCII case-insensitive) that is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Whether a value was text (a header, a cookie, a query or path value, a JSON string) or a
/// JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// Text, or a JSON string.
    Text,
    /// A JSON number, as written.
    Number,
}

/// Whether `location` applies to an exchange with this request line: its endpoint, when it has
/// one, must be the request's (`template::endpoint(method, path)`).
pub fn applies(location: &Location, method: &str, path: &str) -> bool {
    location
        .endpoint
        .as_deref()
        .is_none_or(|wanted| wanted == endpoint(method, path))
}

/// The values at `location` in one message, in the order they appear. `method` and `path` are
/// the exchange's request line (path and query locations read `path`, which belongs to the
/// request).
pub fn values_at(
    location: &Location,
    method: &str,
    path: &str,
    message: &LiveMessage,
) -> Vec<(String, ValueType)> {
    let mut out = Vec::new();
    if !applies(location, method, path) {
        return out;
    }
    let mut path = path.to_owned();
    let mut message = Cow::Borrowed(message);
    visit(location, &mut path, &mut message, &mut |value, kind| {
        out.push((value.to_owned(), kind));
        None
    });
    out
}

/// Rewrites every value at `location`: `f(raw value, type)` returns the replacement, or `None`
/// to leave the value as it is. Returns how many values changed. `path` is edited for path and
/// query locations; `message` for the others.
pub fn rewrite_at(
    location: &Location,
    method: &str,
    path: &mut String,
    message: &mut LiveMessage,
    f: &mut dyn FnMut(&str, ValueType) -> Option<String>,
) -> usize {
    if !applies(location, method, path) {
        return 0;
    }
    let mut cow = Cow::Borrowed(&*message);
    let mut new_path = path.clone();
    let changed = visit(location, &mut new_path, &mut cow, f);
    if changed > 0 {
        if let Cow::Owned(edited) = cow {
            *message = edited;
        }
        *path = new_path;
    }
    changed
}

/// Calls `f` with each value at the location; where it returns a replacement, writes it.
fn visit(
    location: &Location,
    path: &mut String,
    message: &mut Cow<'_, LiveMessage>,
    f: &mut dyn FnMut(&str, ValueType) -> Option<String>,
) -> usize {
    let name = location.name.as_deref().unwrap_or("");
    match location.part {
        Part::Path => {
            let (Some(segment), Side::Request) = (location.segment, location.message) else {
                return 0;
            };
            rewrite_segment(path, segment as usize, f)
        }
        Part::Query => {
            if location.message != Side::Request {
                return 0;
            }
            rewrite_query(path, name, f)
        }
        Part::Header => rewrite_headers(
            message,
            |header| {
                if !header.eq_ignore_ascii_case(name) {
                    return None;
                }
                Some(HeaderValueKind::Plain(location.scheme.as_deref()))
            },
            f,
        ),
        Part::Cookie => {
            let (header_name, kind) = match location.message {
                Side::Request => ("cookie", HeaderValueKind::Cookies(name)),
                Side::Response => ("set-cookie", HeaderValueKind::SetCookie(name)),
            };
            rewrite_headers(
                message,
                |header| header.eq_ignore_ascii_case(header_name).then_some(kind),
                f,
            )
        }
        Part::Json => {
            let Some(wanted) = location.path.as_deref() else {
                return 0;
            };
            let Some(edited) = rewrite_json(&message.body, wanted, f) else {
                return 0;
            };
            let (body, changed) = edited;
            if changed > 0 {
                message.to_mut().body = body;
            }
            changed
        }
    }
}

#[derive(Clone, Copy)]
enum HeaderValueKind<'a> {
    /// A whole header value, or the token after this auth scheme.
    Plain(Option<&'a str>),
    /// The pair of this name in a `Cookie` header.
    Cookies(&'a str),
    /// The first pair of a `Set-Cookie` header, when it has this name.
    SetCookie(&'a str),
}

fn rewrite_headers<'a>(
    message: &mut Cow<'_, LiveMessage>,
    select: impl Fn(&str) -> Option<HeaderValueKind<'a>>,
    f: &mut dyn FnMut(&str, ValueType) -> Option<String>,
) -> usize {
    let mut changed = 0;
    for i in 0..message.headers.len() {
        let (name, value) = &message.headers[i];
        let Some(kind) = select(name) else { continue };
        let Ok(text) = std::str::from_utf8(value) else {
            continue;
        };
        let replaced: Option<(String, usize)> = match kind {
            HeaderValueKind::Plain(scheme) => {
                let (found, token) = split_scheme(name, text);
                let same_scheme = match (scheme, found) {
                    (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                    (None, None) => true,
                    _ => false,
                };
                if !same_scheme {
                    continue;
                }
                f(token, ValueType::Text).map(|new| match found {
                    Some(scheme) => (format!("{scheme} {new}"), 1),
                    None => (new, 1),
                })
            }
            HeaderValueKind::Cookies(cookie) => {
                let mut count = 0;
                let pairs: Vec<String> = text
                    .split(';')
                    .map(|pair| {
                        cookie_value(pair, cookie)
                            .and_then(|(before, value, after)| {
                                f(value, ValueType::Text).map(|new| {
                                    count += 1;
                                    format!("{before}{new}{after}")
                                })
                            })
                            .unwrap_or_else(|| pair.to_owned())
                    })
                    .collect();
                (count > 0).then(|| (pairs.join(";"), count))
            }
            HeaderValueKind::SetCookie(cookie) => {
                let (first, attributes) = match text.find(';') {
                    Some(at) => text.split_at(at),
                    None => (text, ""),
                };
                cookie_value(first, cookie).and_then(|(before, value, after)| {
                    f(value, ValueType::Text)
                        .map(|new| (format!("{before}{new}{after}{attributes}"), 1))
                })
            }
        };
        if let Some((new, count)) = replaced {
            message.to_mut().headers[i].1 = new.into_bytes();
            changed += count;
        }
    }
    changed
}

/// Splits a cookie pair `name=value` of that name into what comes before the value, the value
/// (without surrounding quotes, as discovery reads it), and what comes after.
fn cookie_value<'p>(pair: &'p str, name: &str) -> Option<(&'p str, &'p str, &'p str)> {
    let trimmed_start = pair.len() - pair.trim_start().len();
    let eq = pair.find('=')?;
    if pair[trimmed_start..eq].trim_end() != name || name.is_empty() {
        return None;
    }
    let raw = &pair[eq + 1..];
    let value_start = eq + 1 + (raw.len() - raw.trim_start().len());
    let value_end = eq + 1 + raw.trim_end().len();
    let mut start = value_start;
    let mut end = value_end.max(start);
    let bytes = pair.as_bytes();
    while start < end && bytes[start] == b'"' {
        start += 1;
    }
    while end > start && bytes[end - 1] == b'"' {
        end -= 1;
    }
    Some((&pair[..start], &pair[start..end], &pair[end..]))
}

fn rewrite_segment(
    path: &mut String,
    wanted: usize,
    f: &mut dyn FnMut(&str, ValueType) -> Option<String>,
) -> usize {
    let bare = path_without_query(path);
    let rest = path[bare.len()..].to_owned();
    let mut segments: Vec<String> = bare.split('/').map(str::to_owned).collect();
    let Some(segment) = segments.get_mut(wanted).filter(|_| wanted > 0) else {
        return 0;
    };
    if segment.is_empty() {
        return 0;
    }
    let Some(new) = f(segment, ValueType::Text) else {
        return 0;
    };
    *segment = encode(&new, b"/?#");
    *path = segments.join("/") + &rest;
    1
}

fn rewrite_query(
    path: &mut String,
    name: &str,
    f: &mut dyn FnMut(&str, ValueType) -> Option<String>,
) -> usize {
    let (Some(query), Some(mark)) = (query_of(path), path.find('?')) else {
        return 0;
    };
    let start = mark + 1;
    let end = start + query.len();
    let mut changed = 0;
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key != name || key.is_empty() || value.is_empty() {
                return pair.to_owned();
            }
            match f(value, ValueType::Text) {
                Some(new) => {
                    changed += 1;
                    format!("{key}={}", encode(&new, b"&#"))
                }
                None => pair.to_owned(),
            }
        })
        .collect();
    if changed > 0 {
        path.replace_range(start..end, &pairs.join("&"));
    }
    changed
}

/// Percent-encodes what may not stand raw: `special`, space, `%` that starts no escape, control
/// characters and non-ASCII bytes.
fn encode(text: &str, special: &[u8]) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    for (i, &b) in bytes.iter().enumerate() {
        let escape_start = b == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if b <= b' ' || b >= 0x7f || special.contains(&b) || (b == b'%' && !escape_start) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// Rewrites the leaves at JSON path `wanted`. `None` when the body is not a JSON object or
/// array (discovery reads no values from it either).
fn rewrite_json(
    body: &[u8],
    wanted: &str,
    f: &mut dyn FnMut(&str, ValueType) -> Option<String>,
) -> Option<(Vec<u8>, usize)> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if !matches!(first, b'{' | b'[')
        || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err()
    {
        return None;
    }
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut scanner = Scanner { bytes: body, at: 0 };
    let mut path = String::from("$");
    scanner.value(&mut path, &mut |leaf_path, start, end, kind| {
        if leaf_path != wanted {
            return;
        }
        let token = &body[start..end];
        let (text, number) = match kind {
            ValueType::Text => match serde_json::from_slice::<String>(token) {
                Ok(text) => (text, false),
                Err(_) => return,
            },
            ValueType::Number => match serde_json::from_slice::<serde_json::Number>(token) {
                Ok(number) => (number.to_string(), true),
                Err(_) => return,
            },
        };
        if let Some(new) = f(&text, kind) {
            let keeps_number = number && serde_json::from_str::<serde_json::Number>(&new).is_ok();
            let written = if keeps_number {
                new
            } else {
                serde_json::Value::String(new).to_string()
            };
            edits.push((start, end, written));
        }
    })?;
    let changed = edits.len();
    if changed == 0 {
        return Some((body.to_vec(), 0));
    }
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut at = 0;
    for (start, end, written) in edits {
        out.extend_from_slice(&body[at..start]);
        out.extend_from_slice(written.as_bytes());
        at = end;
    }
    out.extend_from_slice(&body[at..]);
    Some((out, changed))
}

/// A scanner over JSON already known to be valid, reporting each string and number leaf with
/// its path (discovery's spelling) and byte span.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

type Leaf<'f> = dyn FnMut(&str, usize, usize, ValueType) + 'f;

impl Scanner<'_> {
    fn skip_ws(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn value(&mut self, path: &mut String, leaf: &mut Leaf<'_>) -> Option<()> {
        self.skip_ws();
        match *self.bytes.get(self.at)? {
            b'{' => {
                self.at += 1;
                loop {
                    self.skip_ws();
                    match *self.bytes.get(self.at)? {
                        b'}' => {
                            self.at += 1;
                            return Some(());
                        }
                        b',' => self.at += 1,
                        b'"' => {
                            let (start, end) = self.string()?;
                            let key: String =
                                serde_json::from_slice(&self.bytes[start..end]).ok()?;
                            self.skip_ws();
                            self.at += 1; // ':'
                            let len = path.len();
                            push_key(path, &key);
                            self.value(path, leaf)?;
                            path.truncate(len);
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.at += 1;
                let len = path.len();
                path.push_str("[*]");
                loop {
                    self.skip_ws();
                    match *self.bytes.get(self.at)? {
                        b']' => {
                            self.at += 1;
                            path.truncate(len);
                            return Some(());
                        }
                        b',' => self.at += 1,
                        _ => self.value(path, leaf)?,
                    }
                }
            }
            b'"' => {
                let (start, end) = self.string()?;
                leaf(path, start, end, ValueType::Text);
                Some(())
            }
            b't' | b'f' | b'n' => {
                while self.bytes.get(self.at).is_some_and(u8::is_ascii_alphabetic) {
                    self.at += 1;
                }
                Some(())
            }
            _ => {
                let start = self.at;
                while self
                    .bytes
                    .get(self.at)
                    .is_some_and(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                {
                    self.at += 1;
                }
                if self.at == start {
                    return None;
                }
                leaf(path, start, self.at, ValueType::Number);
                Some(())
            }
        }
    }

    /// The span of a string token, quotes included.
    fn string(&mut self) -> Option<(usize, usize)> {
        let start = self.at;
        self.at += 1;
        loop {
            match *self.bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some((start, self.at));
                }
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests;
