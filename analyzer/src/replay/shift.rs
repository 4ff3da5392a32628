//! Timestamps moved to replay time, each in its own spelling.
//!
//! Replay moves every recorded time by one offset (replay start − `window.from`), so that the
//! recorded relative times hold: a token that expired 5 minutes after it was issued still does.
//! A shifted value is written exactly as the recorded one was: an RFC 3339 time keeps its number
//! of fraction digits (the shift is truncated to them), its `T` or `t`, and its offset (`Z`,
//! `+01:00`, `+0100`, `+01`) with the local time moved in that offset; an HTTP date stays an
//! IMF-fixdate; epoch seconds and milliseconds stay integers of their unit.

use std::ops::RangeInclusive;

use tapedeck_har::time;

use crate::tokens::{Class, TimestampFormat, classify_number, classify_text, http_date};

const NANOS: i128 = 1_000_000_000;

/// The Unix seconds a timestamp may fall in for replay to shift it: the snapshot's window
/// widened by 366 days on each side, the same range discovery classifies with.
pub fn plausible_range(window_from_ns: u64, window_to_ns: u64) -> RangeInclusive<i64> {
    crate::tokens::plausible_range((window_from_ns, window_to_ns))
}

/// Shifts a timestamp written as text in `format` by `offset_ns`, keeping its spelling. `None`
/// when the text is not a timestamp of that format or the result cannot be written in it.
pub fn shift_text(value: &str, format: TimestampFormat, offset_ns: i64) -> Option<String> {
    match format {
        TimestampFormat::Rfc3339 => shift_rfc3339(value, offset_ns),
        TimestampFormat::HttpDate => {
            let seconds = http_date(value)?;
            let shifted = floor_div(i128::from(seconds) * NANOS + i128::from(offset_ns), NANOS);
            time::format_http_date(i64::try_from(shifted).ok()?)
        }
        TimestampFormat::EpochSeconds | TimestampFormat::EpochMillis => {
            shift_epoch(value, format, offset_ns)
        }
    }
}

/// Shifts a JSON number's text (epoch seconds or milliseconds) by `offset_ns`.
pub fn shift_number(value: &str, format: TimestampFormat, offset_ns: i64) -> Option<String> {
    match format {
        TimestampFormat::EpochSeconds | TimestampFormat::EpochMillis => {
            shift_epoch(value, format, offset_ns)
        }
        TimestampFormat::Rfc3339 | TimestampFormat::HttpDate => None,
    }
}

/// Classifies a value as discovery does and shifts it only when it is a timestamp in the
/// plausible range; `number` says the value is a JSON number.
pub fn shift_if_timestamp(
    value: &str,
    number: bool,
    plausible: &RangeInclusive<i64>,
    offset_ns: i64,
) -> Option<String> {
    let class = if number {
        classify_number(value, plausible)
    } else {
        classify_text(value, plausible)
    };
    match class {
        Class::Timestamp(format) if number => shift_number(value, format, offset_ns),
        Class::Timestamp(format) => shift_text(value, format, offset_ns),
        _ => None,
    }
}

fn floor_div(value: i128, by: i128) -> i128 {
    value.div_euclid(by)
}

fn shift_epoch(value: &str, format: TimestampFormat, offset_ns: i64) -> Option<String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let unit: i128 = match format {
        TimestampFormat::EpochSeconds => NANOS,
        TimestampFormat::EpochMillis => 1_000_000,
        _ => return None,
    };
    let recorded: i128 = value.parse().ok()?;
    let shifted = floor_div(recorded * unit + i128::from(offset_ns), unit);
    (shifted >= 0).then(|| shifted.to_string())
}

/// How an RFC 3339 time was written, so the shifted one is written the same way.
struct Spelling {
    separator: char,
    seconds: bool,
    fraction_separator: char,
    fraction_digits: usize,
    offset: OffsetSpelling,
    offset_seconds: i64,
}

enum OffsetSpelling {
    /// `Z` or `z`, as written.
    Utc(char),
    /// `+HH:MM`.
    Colon,
    /// `+HHMM`.
    Compact,
    /// `+HH`.
    HoursOnly,
}

fn spelling(text: &str) -> Option<Spelling> {
    let bytes = text.as_bytes();
    // YYYY-MM-DDTHH:MM
    let separator = char::from(*bytes.get(10)?);
    let mut at = 16;
    let seconds = bytes.get(at) == Some(&b':');
    if seconds {
        at += 3;
    }
    let mut fraction_separator = '.';
    let mut fraction_digits = 0;
    if seconds && matches!(bytes.get(at), Some(b'.' | b',')) {
        fraction_separator = char::from(bytes[at]);
        at += 1;
        while bytes.get(at).is_some_and(u8::is_ascii_digit) {
            fraction_digits += 1;
            at += 1;
        }
    }
    let offset_text = text.get(at..)?;
    let (offset, offset_seconds) = match offset_text.as_bytes() {
        [z @ (b'Z' | b'z')] => (OffsetSpelling::Utc(char::from(*z)), 0),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let digits = |range: std::ops::Range<usize>| -> Option<i64> {
                let part = rest.get(range)?;
                std::str::from_utf8(part).ok()?.parse().ok()
            };
            let (spelling, hours, minutes) = match rest.len() {
                5 if rest.get(2) == Some(&b':') => {
                    (OffsetSpelling::Colon, digits(0..2)?, digits(3..5)?)
                }
                4 => (OffsetSpelling::Compact, digits(0..2)?, digits(2..4)?),
                2 => (OffsetSpelling::HoursOnly, digits(0..2)?, 0),
                _ => return None,
            };
            let seconds = hours * 3600 + minutes * 60;
            (spelling, if *sign == b'-' { -seconds } else { seconds })
        }
        _ => return None,
    };
    Some(Spelling {
        separator,
        seconds,
        fraction_separator,
        fraction_digits,
        offset,
        offset_seconds,
    })
}

fn shift_rfc3339(value: &str, offset_ns: i64) -> Option<String> {
    let spelling = spelling(value)?;
    let recorded = i128::from(time::parse(value).ok()?);
    let utc = recorded + i128::from(offset_ns);
    // The local time in the value's own offset.
    let local = utc + i128::from(spelling.offset_seconds) * NANOS;
    let seconds = floor_div(local, NANOS);
    let nanos = local - seconds * NANOS;
    let days = i64::try_from(floor_div(seconds, 86_400)).ok()?;
    let in_day = seconds - i128::from(days) * 86_400;
    let (year, month, day) = time::civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}{}{:02}:{:02}",
        spelling.separator,
        in_day / 3600,
        (in_day / 60) % 60
    );
    if spelling.seconds {
        out.push_str(&format!(":{:02}", in_day % 60));
        if spelling.fraction_digits > 0 {
            out.push(spelling.fraction_separator);
            let nine = format!("{nanos:09}");
            let kept = spelling.fraction_digits.min(9);
            out.push_str(&nine[..kept]);
            // Digits beyond nanoseconds were never kept by the parser: write them as zeros.
            out.extend(std::iter::repeat_n('0', spelling.fraction_digits - kept));
        }
    }
    let offset = spelling.offset_seconds.abs();
    let sign = if spelling.offset_seconds < 0 {
        '-'
    } else {
        '+'
    };
    let (hours, minutes) = (offset / 3600, (offset / 60) % 60);
    match spelling.offset {
        OffsetSpelling::Utc(z) => out.push(z),
        OffsetSpelling::Colon => out.push_str(&format!("{sign}{hours:02}:{minutes:02}")),
        OffsetSpelling::Compact => out.push_str(&format!("{sign}{hours:02}{minutes:02}")),
        OffsetSpelling::HoursOnly => out.push_str(&format!("{sign}{hours:02}")),
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000_000;

    #[test]
    fn rfc3339_keeps_its_spelling() {
        let cases = [
            ("2026-11-27T13:05:01Z", HOUR, "2026-11-27T14:05:01Z"),
            (
                "2026-11-27T13:05:01.123Z",
                1_500_000,
                "2026-11-27T13:05:01.124Z",
            ),
            (
                "2026-11-27T13:05:01.123456789Z",
                -1,
                "2026-11-27T13:05:01.123456788Z",
            ),
            (
                "2026-11-27t13:05:01.5z",
                11 * HOUR,
                "2026-11-28t00:05:01.5z",
            ),
            (
                "2026-11-27T23:30:00+01:00",
                HOUR,
                "2026-11-28T00:30:00+01:00",
            ),
            ("2026-11-27T23:30:00-0530", HOUR, "2026-11-28T00:30:00-0530"),
            (
                "2026-11-27T23:30:00+01",
                30 * 60_000_000_000,
                "2026-11-28T00:00:00+01",
            ),
            ("2026-11-27T13:05Z", 61_000_000_000, "2026-11-27T13:06Z"),
            (
                "2026-12-31T23:59:59,9Z",
                100_000_000,
                "2027-01-01T00:00:00,0Z",
            ),
            ("2024-02-28T12:00:00Z", 24 * HOUR, "2024-02-29T12:00:00Z"),
            (
                "2026-11-27T13:05:01.123Z",
                -24 * 365 * HOUR,
                "2025-11-27T13:05:01.123Z",
            ),
        ];
        for (recorded, offset, expected) in cases {
            assert_eq!(
                shift_text(recorded, TimestampFormat::Rfc3339, offset).as_deref(),
                Some(expected),
                "{recorded} + {offset} ns"
            );
        }
        assert_eq!(
            shift_text("yesterday", TimestampFormat::Rfc3339, HOUR),
            None
        );
        assert_eq!(
            shift_text("2026-11-27T13:05:01", TimestampFormat::Rfc3339, HOUR),
            None,
            "no offset: not an instant"
        );
    }

    #[test]
    fn http_dates_and_epochs_shift() {
        assert_eq!(
            shift_text(
                "Fri, 27 Nov 2026 13:00:00 GMT",
                TimestampFormat::HttpDate,
                36 * HOUR
            )
            .as_deref(),
            Some("Sun, 29 Nov 2026 01:00:00 GMT")
        );
        assert_eq!(
            shift_text(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                TimestampFormat::HttpDate,
                0
            )
            .as_deref(),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        assert_eq!(
            shift_number("1795784400", TimestampFormat::EpochSeconds, HOUR).as_deref(),
            Some("1795788000")
        );
        assert_eq!(
            shift_text("1795784400123", TimestampFormat::EpochMillis, 1_000_000).as_deref(),
            Some("1795784400124")
        );
        // A shift that is not a whole unit is floored, as the recorded precision allows.
        assert_eq!(
            shift_number("1795784400", TimestampFormat::EpochSeconds, -1).as_deref(),
            Some("1795784399")
        );
        assert_eq!(
            shift_number("1795784400", TimestampFormat::Rfc3339, HOUR),
            None
        );
        assert_eq!(
            shift_number("-5", TimestampFormat::EpochSeconds, HOUR),
            None
        );
    }

    #[test]
    fn only_plausible_timestamps_shift() {
        // 2026-11-27T13:00:00Z .. +1 h.
        let from = 1_795_784_400_000_000_000u64;
        let plausible = plausible_range(from, from + 3_600_000_000_000);
        let shift = |value: &str, number: bool| shift_if_timestamp(value, number, &plausible, HOUR);
        assert_eq!(shift("1795784400", true).as_deref(), Some("1795788000"));
        assert_eq!(shift("1795784400", false).as_deref(), Some("1795788000"));
        assert_eq!(
            shift("2026-11-27T13:00:00Z", false).as_deref(),
            Some("2026-11-27T14:00:00Z")
        );
        assert_eq!(
            shift("1995-01-01T00:00:00Z", false),
            None,
            "a birth date is data"
        );
        assert_eq!(shift("1042", true), None);
        assert_eq!(shift("ord_010000", false), None);
    }
}
