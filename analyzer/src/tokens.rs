//! Token rules: where a dynamic value sits in the traffic, what it is, and what replay does with
//! it; and their discovery over a snapshot's exchanges.
//!
//! The rule types here are part of snapshot format v1 (`snapshot.json`, `"tokens"`). Users read
//! and edit them, so they say everything in words: `{"kind": "jwt", "at": {"direction":
//! "inbound", "message": "request", "in": "header", "name": "authorization", "scheme":
//! "Bearer"}, "replay": "resign", …}`.

mod classify;
mod discover;
mod values;

use serde::{Deserialize, Serialize};

pub(crate) use classify::http_date;
pub use classify::{
    Class, JwtClaims, TimestampFormat, classify_number, classify_text, decode_jwt,
    timestamp_seconds,
};
pub(crate) use discover::plausible_range;
pub use discover::{
    DiscoveryInput, SourceJoin, SourcedUse, correlation_sources, discover, location_of,
};
pub(crate) use values::split_scheme;
pub use values::{Occurrence, Part, extract, push_key};

/// One dynamic value, found in the traffic or written by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRule {
    /// A unique, readable name (`jwt inbound request header authorization`).
    pub name: String,
    /// What the value is.
    pub kind: TokenKind,
    /// Where it is; for a correlation, where its value first appears.
    pub at: Location,
    /// Correlations: where the value is used afterwards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Location>,
    /// JWTs: what the tokens hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtInfo>,
    /// Timestamps: how they are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TimestampFormat>,
    /// What replay does with the value.
    pub replay: ReplayAction,
    /// What the rule was found from, so a user can judge it. Absent on rules written by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// What a dynamic value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A value first seen in a response (or an inbound request) and used in later requests.
    Correlation,
    /// A JSON Web Token.
    Jwt,
    /// A point in time.
    Timestamp,
    /// A UUID.
    Uuid,
    /// Another identifier that differs from exchange to exchange.
    Id,
}

/// What replay does with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayAction {
    /// Capture the value from the live response at `at` and put it, in every later request, at
    /// each of `to` where the recorded value was.
    Substitute,
    /// The value of the inbound request at `at` is expected again in the outbound calls at `to`:
    /// the responder matches those calls with the value the generator sent.
    Propagate,
    /// Re-sign the JWT with the configured key (claims re-dated like timestamps); without a key
    /// the recorded token is kept.
    Resign,
    /// Shift by the replay's offset (replay start − window start), the same everywhere, so
    /// recorded relative times hold.
    Shift,
    /// The value changes from run to run: sent as recorded, not matched by the responder, not
    /// compared in response diffs.
    Ignore,
    /// Nothing: send and match the recorded value (how a user turns a rule off).
    Keep,
}

/// Which message of which exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The request.
    Request,
    /// The response.
    Response,
}

/// Which file's exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    /// Requests that reached the service (`inbound.jsonl`).
    Inbound,
    /// Calls the service made (`outbound.jsonl`).
    Outbound,
}

impl Flow {
    /// `inbound` or `outbound`.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Inbound => "inbound",
            Flow::Outbound => "outbound",
        }
    }
}

/// Where a value sits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Inbound or outbound exchanges.
    pub direction: Flow,
    /// Request or response.
    pub message: Side,
    /// The part of the message.
    #[serde(rename = "in")]
    pub part: Part,
    /// `header`, `cookie`, `query`: the (lowercase header) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `header`: the value is `<scheme> <token>` (`Bearer`), and the rule is about the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// `json`: the path in the body (`$.order.id`, `$.items[*].sku`; `[*]` is every element).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `path`: the segment, counting from 1 after the leading `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<u32>,
    /// `query`, `path`, `json`: only exchanges of this endpoint (`POST /orders/{id}/pay`).
    /// `header` and `cookie` rules hold for every endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl Location {
    /// A placeholder for a location that was never described (cannot happen: workers send a
    /// location with the first value at it).
    pub(crate) fn unknown() -> Self {
        Location {
            direction: Flow::Inbound,
            message: Side::Request,
            part: Part::Header,
            name: Some("unknown".to_owned()),
            scheme: None,
            path: None,
            segment: None,
            endpoint: None,
        }
    }

    /// A short readable form: `inbound response json $.token (POST /login)`,
    /// `inbound request header authorization Bearer`.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} {} {}",
            self.direction.as_str(),
            match self.message {
                Side::Request => "request",
                Side::Response => "response",
            },
            self.part.as_str()
        );
        for text in [&self.name, &self.scheme, &self.path].into_iter().flatten() {
            out.push(' ');
            out.push_str(text);
        }
        if let Some(segment) = self.segment {
            out.push_str(&format!(" {segment}"));
        }
        if let Some(endpoint) = &self.endpoint {
            out.push_str(&format!(" ({endpoint})"));
        }
        out
    }
}

/// What a JWT holds (from its first occurrence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtInfo {
    /// The header's `alg`.
    pub alg: String,
    /// The `iss` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The time claims present (`exp`, `iat`, `nbf`), which replay re-dates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_claims: Vec<String>,
    /// `exp − iat` in seconds, when both are present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_s: Option<i64>,
    /// The capture redacted the signature (the filter's default): only re-signing makes the
    /// token valid again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signature_redacted: bool,
}

/// A place in the snapshot's files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// `inbound.jsonl` or `outbound.jsonl`.
    pub file: String,
    /// 1-based line.
    pub line: u64,
}

/// What a rule was found from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Exchanges with a value at the location (for a correlation: exchanges that used a
    /// captured value, each counted once however many `to` locations it used it in).
    pub exchanges: u64,
    /// Distinct values seen there.
    pub distinct: u64,
    /// The first occurrence (for a correlation: where the value first appeared).
    pub first: Position,
    /// Correlations: the first use of a captured value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_use: Option<Position>,
    /// The first value, cut to 64 characters (absent on `jwt` rules, whose `jwt` says more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
}
