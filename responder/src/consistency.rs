//! Keeping a served response consistent with the replay, through the shared
//! `tapedeck_analyzer::replay` module:
//!
//! - timestamps at `timestamp` rules with `replay: shift` are moved by the replay offset
//!   ((`--replay-start` or the responder's start) − `window.from`), each in its own spelling;
//! - JWTs at `jwt` rules with `replay: resign` are re-signed with `--jwt-key` (time claims moved
//!   by the same offset); without a key they are served as recorded;
//! - values the live request carries in place of recorded ones at wildcard or class-compared
//!   fields (a propagated order id, a fresh idempotency key) replace the recorded value wherever
//!   the response holds it whole (a header, a cookie, a JSON leaf).

use bytes::Bytes;
use tapedeck_analyzer::replay::edit::{LiveMessage, ValueType, rewrite_at};
use tapedeck_analyzer::replay::jwt::{JwtKey, resign};
use tapedeck_analyzer::replay::shift::{shift_if_timestamp, shift_number, shift_text};
use tapedeck_analyzer::tokens::{
    Class, Flow, Location, Part, Side, TokenKind, classify_text, extract,
};
use tapedeck_proto::{Exchange, Header, Message};

use crate::store::{Recording, Store};

/// The replay-wide settings.
#[derive(Clone)]
pub struct Consistency {
    /// Replay start − window start, ns.
    pub offset_ns: i64,
    /// The key JWTs are re-signed with.
    pub jwt_key: Option<JwtKey>,
}

impl std::fmt::Debug for Consistency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consistency")
            .field("offset_ns", &self.offset_ns)
            .field("jwt_key", &self.jwt_key.as_ref().map(JwtKey::alg))
            .finish()
    }
}

/// A response after the edits.
#[derive(Debug, Clone, PartialEq)]
pub struct Edited {
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body.
    pub body: Bytes,
    /// Timestamps shifted.
    pub shifted: usize,
    /// JWTs re-signed.
    pub resigned: usize,
    /// Values substituted from the request.
    pub substituted: usize,
}

/// Whether a recorded value is distinctive enough to be replaced wherever it appears whole:
/// a JWT, a UUID or an identifier (not a word, not a short number).
fn substitutable(value: &str, store: &Store) -> bool {
    matches!(
        classify_text(value, &store.plausible),
        Class::Jwt(_) | Class::Uuid | Class::Id
    )
}

/// The response locations holding each value, found as discovery finds values.
fn response_locations(rec: &Recording, wanted: &[&str]) -> Vec<(Location, String)> {
    let exchange = Exchange {
        path: rec.path.clone(),
        response: Some(Message {
            headers: rec
                .headers
                .iter()
                .map(|(name, value)| Header {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            body: rec.body.to_vec(),
            body_truncated: rec.truncated,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut out = Vec::new();
    extract(&exchange, &mut |o| {
        if o.side != Side::Response || !wanted.contains(&o.value.as_ref()) {
            return;
        }
        let mut location = Location {
            direction: Flow::Outbound,
            message: Side::Response,
            part: o.part,
            name: None,
            scheme: o.scheme.map(str::to_owned),
            path: None,
            segment: None,
            endpoint: None,
        };
        match o.part {
            Part::Json => location.path = Some(o.key.into_owned()),
            Part::Header | Part::Cookie => location.name = Some(o.key.into_owned()),
            Part::Query | Part::Path => return,
        }
        let pair = (location, o.value.into_owned());
        if !out.contains(&pair) {
            out.push(pair);
        }
    });
    out
}

impl Consistency {
    /// The response to serve for `rec`, or `None` when nothing changes (serve the recording's
    /// bytes as they are).
    pub fn edit(
        &self,
        store: &Store,
        rec: &Recording,
        substitutions: &[(String, String)],
    ) -> Option<Edited> {
        if rec.response_rules.is_empty() && substitutions.is_empty() {
            return None;
        }
        let substitutions: Vec<&(String, String)> = substitutions
            .iter()
            .filter(|(recorded, _)| substitutable(recorded, store))
            .collect();
        let resigning = self.jwt_key.is_some();
        let rules: Vec<usize> = rec
            .response_rules
            .iter()
            .copied()
            .filter(|i| store.rules[*i].kind != TokenKind::Jwt || resigning)
            .collect();
        if rules.is_empty() && substitutions.is_empty() {
            return None;
        }
        let mut message = LiveMessage {
            headers: rec.headers.clone(),
            body: rec.body.to_vec(),
        };
        let mut path = rec.path.clone();
        let mut edited = Edited {
            headers: Vec::new(),
            body: Bytes::new(),
            shifted: 0,
            resigned: 0,
            substituted: 0,
        };
        if !substitutions.is_empty() && !rec.truncated {
            let wanted: Vec<&str> = substitutions.iter().map(|(r, _)| r.as_str()).collect();
            for (location, recorded) in response_locations(rec, &wanted) {
                let Some((_, live)) = substitutions.iter().find(|(r, _)| *r == recorded) else {
                    continue;
                };
                edited.substituted += rewrite_at(
                    &location,
                    &rec.method,
                    &mut path,
                    &mut message,
                    &mut |v, _| (v == recorded).then(|| live.clone()),
                );
            }
        }
        let offset_s = self.offset_ns.div_euclid(1_000_000_000);
        for i in rules {
            let rule = &store.rules[i];
            match rule.kind {
                TokenKind::Timestamp => {
                    let format = rule.format;
                    edited.shifted += rewrite_at(
                        &rule.at,
                        &rec.method,
                        &mut path,
                        &mut message,
                        &mut |v, ty| match (format, ty) {
                            (Some(f), ValueType::Number) => shift_number(v, f, self.offset_ns),
                            (Some(f), ValueType::Text) => shift_text(v, f, self.offset_ns),
                            (None, ty) => shift_if_timestamp(
                                v,
                                ty == ValueType::Number,
                                &store.plausible,
                                self.offset_ns,
                            ),
                        },
                    );
                }
                TokenKind::Jwt => {
                    if let Some(key) = &self.jwt_key {
                        edited.resigned += rewrite_at(
                            &rule.at,
                            &rec.method,
                            &mut path,
                            &mut message,
                            &mut |v, _| resign(v, key, offset_s, &[]).ok(),
                        );
                    }
                }
                _ => {}
            }
        }
        edited.headers = message.headers;
        edited.body = Bytes::from(message.body);
        Some(edited)
    }
}
