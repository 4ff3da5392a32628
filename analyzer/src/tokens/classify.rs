//! What a single value looks like: a JWT, a timestamp, a UUID, an identifier, a number, or
//! nothing in particular.

use std::ops::RangeInclusive;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tapedeck_har::time;

use crate::template::is_uuid;

/// How a timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimestampFormat {
    /// `2026-11-27T13:05:01.123Z` (any offset, any fraction).
    Rfc3339,
    /// `Fri, 27 Nov 2026 13:05:01 GMT` (RFC 9110 IMF-fixdate).
    HttpDate,
    /// Seconds since the Unix epoch (10 digits), as a JSON number or a string.
    EpochSeconds,
    /// Milliseconds since the Unix epoch (13 digits), as a JSON number or a string.
    EpochMillis,
}

/// What a JWT's header and claims say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtClaims {
    /// The header's `alg`.
    pub alg: String,
    /// The `iss` claim.
    pub issuer: Option<String>,
    /// The time claims present, in the order `exp`, `iat`, `nbf`.
    pub time_claims: Vec<String>,
    /// `exp − iat` in seconds.
    pub lifetime_s: Option<i64>,
    /// The signature is a tapedeck redaction marker.
    pub signature_redacted: bool,
}

/// What a value looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// A JSON Web Token.
    Jwt(Box<JwtClaims>),
    /// A point in time inside the plausible range.
    Timestamp(TimestampFormat),
    /// A canonical UUID.
    Uuid,
    /// An identifier: 4+ digits, or 6+ characters of letters and digits (and `_-.:~+/=`), or a
    /// redaction marker.
    Id,
    /// An integer of 4+ digits in a JSON body (a candidate for correlations, never a rule of
    /// its own: amounts and counts look the same).
    Number,
    /// Nothing dynamic-looking.
    Other,
}

impl Class {
    /// Whether the value can carry a correlation: tokens, UUIDs, identifiers and long integers;
    /// timestamps have their own rule (shift) and words are too likely to repeat by chance.
    pub fn correlatable(&self) -> bool {
        matches!(
            self,
            Class::Jwt(_) | Class::Uuid | Class::Id | Class::Number
        )
    }
}

/// Classifies a text value. `plausible` is the range of Unix seconds a timestamp may fall in
/// (the window, widened), so that numbers that merely have 10 digits are not taken for times.
pub fn classify_text(text: &str, plausible: &RangeInclusive<i64>) -> Class {
    let bytes = text.as_bytes();
    if bytes.len() < 4 || bytes.len() > 8192 {
        return Class::Other;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        if let Some(format) = epoch(text, plausible) {
            return Class::Timestamp(format);
        }
        return Class::Id;
    }
    if is_uuid(text) {
        return Class::Uuid;
    }
    if let Some(claims) = decode_jwt(text) {
        return Class::Jwt(Box::new(claims));
    }
    if let Some(parsed) = timestamp_text(text) {
        // A date far from the window (a birth date, a product launch) is data, not a clock.
        return match parsed {
            (seconds, format) if plausible.contains(&seconds) => Class::Timestamp(format),
            _ => Class::Other,
        };
    }
    if text.starts_with(tapedeck_proto::REDACTED_PREFIX) {
        return Class::Id;
    }
    let token_like = bytes.iter().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'_' | b'-' | b'.' | b':' | b'~' | b'+' | b'/' | b'=')
    });
    let has_digit = bytes.iter().any(u8::is_ascii_digit);
    let has_letter = bytes.iter().any(u8::is_ascii_alphabetic);
    if token_like && has_digit && has_letter && bytes.len() >= 6 {
        return Class::Id;
    }
    Class::Other
}

/// Classifies a JSON number (its text as written).
pub fn classify_number(text: &str, plausible: &RangeInclusive<i64>) -> Class {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Class::Other;
    }
    if let Some(format) = epoch(text, plausible) {
        return Class::Timestamp(format);
    }
    if digits.len() >= 4 {
        Class::Number
    } else {
        Class::Other
    }
}

fn epoch(digits: &str, plausible: &RangeInclusive<i64>) -> Option<TimestampFormat> {
    let value: i64 = digits.parse().ok()?;
    match digits.len() {
        10 if plausible.contains(&value) => Some(TimestampFormat::EpochSeconds),
        13 if plausible.contains(&(value / 1000)) => Some(TimestampFormat::EpochMillis),
        _ => None,
    }
}

/// The Unix seconds of a value that [`classify_text`] or [`classify_number`] called a timestamp
/// written as `format` (the verdict compares live timestamps by their skew to the replay clock).
pub fn timestamp_seconds(text: &str, format: TimestampFormat) -> Option<i64> {
    match format {
        TimestampFormat::EpochSeconds => text.parse().ok(),
        TimestampFormat::EpochMillis => text.parse::<i64>().ok().map(|ms| ms.div_euclid(1000)),
        TimestampFormat::Rfc3339 | TimestampFormat::HttpDate => {
            timestamp_text(text).map(|(seconds, _)| seconds)
        }
    }
}

fn timestamp_text(text: &str) -> Option<(i64, TimestampFormat)> {
    let bytes = text.as_bytes();
    Some(
        if bytes.len() >= 20
            && bytes.len() <= 40
            && bytes.get(4) == Some(&b'-')
            && matches!(bytes.get(10), Some(b'T' | b't'))
        {
            let nanos = time::parse(text).ok()?;
            (
                i64::try_from(nanos / 1_000_000_000).ok()?,
                TimestampFormat::Rfc3339,
            )
        } else if bytes.len() == 29 && text.ends_with(" GMT") && bytes.get(3) == Some(&b',') {
            (http_date(text)?, TimestampFormat::HttpDate)
        } else {
            return None;
        },
    )
}

/// Reads an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds.
pub(crate) fn http_date(text: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let rest = text.get(5..)?; // after "Sun, "
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u32 + 1;
    let year: u32 = parts.next()?.parse().ok()?;
    let clock = parts.next()?;
    if parts.next()? != "GMT" || day == 0 || day > time::days_in_month(year, month) {
        return None;
    }
    let mut hms = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = time::days_from_civil(i64::from(year), month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Decodes a JWT (`header.claims.signature`, base64url): `None` unless the header is a JSON
/// object with an `alg` and the claims are a JSON object. The signature may be a redaction
/// marker.
pub fn decode_jwt(text: &str) -> Option<JwtClaims> {
    let mut parts = text.splitn(3, '.');
    let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if header.len() < 10
        || !header.starts_with("ey")
        || !claims.starts_with("ey")
        || signature.contains('.')
    {
        return None;
    }
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
    let alg = header.get("alg")?.as_str()?.to_owned();
    let claims = claims.as_object()?;
    let time_claims: Vec<String> = ["exp", "iat", "nbf"]
        .into_iter()
        .filter(|c| claims.get(*c).is_some_and(serde_json::Value::is_number))
        .map(str::to_owned)
        .collect();
    let number = |name: &str| claims.get(name).and_then(serde_json::Value::as_i64);
    let lifetime_s = number("exp").zip(number("iat")).map(|(exp, iat)| exp - iat);
    Some(JwtClaims {
        alg,
        issuer: claims
            .get("iss")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        time_claims,
        lifetime_s,
        signature_redacted: signature.starts_with(tapedeck_proto::REDACTED_PREFIX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: RangeInclusive<i64> = 1_764_000_000..=1_830_000_000;

    #[test]
    fn values_are_classified() {
        let jwt =
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsImlhdCI6MTc2NDAwMDAwMH0.c2ln";
        assert!(
            matches!(classify_text(jwt, &WINDOW), Class::Jwt(c) if c.alg == "HS256" && c.time_claims == ["iat"])
        );
        assert_eq!(
            classify_text("2026-11-27T13:05:01Z", &WINDOW),
            Class::Timestamp(TimestampFormat::Rfc3339)
        );
        assert_eq!(
            classify_text("Fri, 27 Nov 2026 13:05:01 GMT", &WINDOW),
            Class::Timestamp(TimestampFormat::HttpDate)
        );
        assert_eq!(
            classify_text("1795780800", &WINDOW),
            Class::Timestamp(TimestampFormat::EpochSeconds)
        );
        assert_eq!(
            classify_number("1795780800123", &WINDOW),
            Class::Timestamp(TimestampFormat::EpochMillis)
        );
        assert_eq!(classify_text("1995-01-01T00:00:00Z", &WINDOW), Class::Other);
        assert_eq!(
            classify_text("0b5e6a0c-3f4e-4c6b-9a51-1c2d3e4f5a6b", &WINDOW),
            Class::Uuid
        );
        assert_eq!(classify_text("ord_000123", &WINDOW), Class::Id);
        assert_eq!(
            classify_text("tapedeck-redacted:hmac-sha256:00ff", &WINDOW),
            Class::Id
        );
        assert_eq!(classify_text("1042", &WINDOW), Class::Id);
        assert_eq!(classify_number("1042", &WINDOW), Class::Number);
        assert_eq!(classify_number("19.99", &WINDOW), Class::Other);
        assert_eq!(classify_number("42", &WINDOW), Class::Other);
        for other in [
            "pending",
            "EUR",
            "19.99",
            "hello world 123",
            "v2",
            "application/json",
        ] {
            assert_eq!(classify_text(other, &WINDOW), Class::Other, "{other}");
        }
    }

    #[test]
    fn http_dates_are_exact() {
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(http_date("Sun, 31 Feb 1994 08:49:37 GMT"), None);
        assert_eq!(http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
    }
}
