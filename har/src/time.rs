//! RFC 3339 timestamps, the ISO 8601 profile HAR writers use for `startedDateTime`, and the
//! calendar arithmetic behind them.
//!
//! Hand-written (a date library would be the crate's largest dependency for a few functions):
//! [`parse`] reads `2026-11-27T13:05:01.123+01:00` into nanoseconds since the Unix epoch,
//! [`format()`] writes them back as UTC with milliseconds (`2026-11-27T12:05:01.123Z`) and
//! [`format_exact`] with every nanosecond that is not zero. The analyzer uses them for snapshot
//! windows and [`days_from_civil`] / [`civil_from_days`] for the timestamps it finds in traffic.

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// Reads an RFC 3339 timestamp into nanoseconds since the Unix epoch.
///
/// Accepts `T`, `t` or a space between date and time, seconds with any number of fraction
/// digits (nanoseconds are kept, the rest dropped), and the offset as `Z`, `+HH:MM`, `+HHMM`
/// or `+HH`. A timestamp without an offset is an error: it names no instant.
pub fn parse(text: &str) -> Result<u64, String> {
    let mut cursor = Cursor {
        bytes: text.trim().as_bytes(),
        at: 0,
    };
    let year = cursor.digits(4, "year")?;
    cursor.expect(b'-', "'-' after the year")?;
    let month = cursor.digits(2, "month")?;
    cursor.expect(b'-', "'-' after the month")?;
    let day = cursor.digits(2, "day")?;
    match cursor.next() {
        Some(b'T' | b't' | b' ') => {}
        _ => return Err("expected 'T' after the date".into()),
    }
    let hour = cursor.digits(2, "hour")?;
    cursor.expect(b':', "':' after the hour")?;
    let minute = cursor.digits(2, "minute")?;
    let mut second = 0;
    let mut nanos: i128 = 0;
    if cursor.peek() == Some(b':') {
        cursor.at += 1;
        second = cursor.digits(2, "second")?;
        if matches!(cursor.peek(), Some(b'.' | b',')) {
            cursor.at += 1;
            let mut digits = 0;
            while let Some(digit) = cursor.peek().filter(u8::is_ascii_digit) {
                if digits < 9 {
                    nanos = nanos * 10 + i128::from(digit - b'0');
                }
                digits += 1;
                cursor.at += 1;
            }
            if digits == 0 {
                return Err("expected digits after the decimal point".into());
            }
            for _ in digits..9 {
                nanos *= 10;
            }
        }
    }
    let offset_seconds: i128 = match cursor.next() {
        Some(b'Z' | b'z') => 0,
        Some(sign @ (b'+' | b'-')) => {
            let hours = cursor.digits(2, "offset hours")?;
            let minutes = match cursor.peek() {
                Some(b':') => {
                    cursor.at += 1;
                    cursor.digits(2, "offset minutes")?
                }
                Some(b'0'..=b'9') => cursor.digits(2, "offset minutes")?,
                _ => 0,
            };
            if hours > 23 || minutes > 59 {
                return Err("offset out of range".into());
            }
            let offset = i128::from(hours * 3600 + minutes * 60);
            if sign == b'-' { -offset } else { offset }
        }
        None => return Err("no UTC offset (expected 'Z' or '+HH:MM' at the end)".into()),
        Some(_) => return Err("expected 'Z' or a UTC offset after the time".into()),
    };
    if cursor.at != cursor.bytes.len() {
        return Err("unexpected text after the UTC offset".into());
    }
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} out of range"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(format!("day {day} out of range"));
    }
    // 60 is a leap second; it reads as the first second of the next minute.
    if hour > 23 || minute > 59 || second > 60 {
        return Err("time of day out of range".into());
    }
    let days = days_from_civil(i64::from(year), month, day);
    let seconds =
        i128::from(days) * 86_400 + i128::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    let total = seconds * NANOS_PER_SECOND + nanos;
    u64::try_from(total).map_err(|_| "before 1970 or after 2554".to_owned())
}

/// Writes nanoseconds since the Unix epoch as RFC 3339 in UTC with milliseconds.
pub fn format(unix_nanos: u64) -> String {
    let seconds = unix_nanos / 1_000_000_000;
    let millis = (unix_nanos / 1_000_000) % 1000;
    let days = (seconds / 86_400) as i64;
    let in_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        in_day / 3600,
        (in_day / 60) % 60,
        in_day % 60
    )
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek();
        if byte.is_some() {
            self.at += 1;
        }
        byte
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), String> {
        if self.next() == Some(byte) {
            Ok(())
        } else {
            Err(format!("expected {what}"))
        }
    }

    fn digits(&mut self, count: usize, what: &str) -> Result<u32, String> {
        let mut value = 0;
        for _ in 0..count {
            match self.next() {
                Some(digit @ b'0'..=b'9') => value = value * 10 + u32::from(digit - b'0'),
                _ => return Err(format!("expected {count} digits for the {what}")),
            }
        }
        Ok(value)
    }
}

/// Writes nanoseconds since the Unix epoch as RFC 3339 in UTC, exactly: the fraction has as
/// many digits as it needs (none for a whole second), so [`parse`] gives the same number back.
pub fn format_exact(unix_nanos: u64) -> String {
    let seconds = unix_nanos / 1_000_000_000;
    let nanos = unix_nanos % 1_000_000_000;
    let days = (seconds / 86_400) as i64;
    let in_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        in_day / 3600,
        (in_day / 60) % 60,
        in_day % 60
    );
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Writes Unix seconds as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110); `None`
/// outside the years 0–9999.
pub fn format_http_date(seconds: i64) -> Option<String> {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let weekday = DAYS.get(usize::try_from(days.rem_euclid(7)).ok()?)?;
    let month_name = MONTHS.get(usize::try_from(month).ok()?.checked_sub(1)?)?;
    Some(format!(
        "{weekday}, {day:02} {month_name} {year:04} {:02}:{:02}:{:02} GMT",
        in_day / 3600,
        (in_day / 60) % 60,
        in_day % 60
    ))
}

/// Whether `year` is a leap year of the proleptic Gregorian calendar.
pub fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// The days of `month` (1-12) in `year`.
pub fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_format_round_trips_every_nanosecond() {
        for nanos in [
            0,
            1,
            1_795_781_101_000_000_000,
            1_795_781_101_120_000_000,
            1_795_781_101_123_456_789,
        ] {
            assert_eq!(
                parse(&format_exact(nanos)).unwrap(),
                nanos,
                "{}",
                format_exact(nanos)
            );
        }
        assert_eq!(
            format_exact(1_795_781_101_000_000_000),
            "2026-11-27T12:05:01Z"
        );
        assert_eq!(
            format_exact(1_795_781_101_120_000_000),
            "2026-11-27T12:05:01.12Z"
        );
    }

    #[test]
    fn parses_offsets_fractions_and_separators() {
        let utc = parse("2026-11-27T12:05:01.123Z").unwrap();
        assert_eq!(utc, 1_795_781_101_123_000_000);
        assert_eq!(parse("2026-11-27T13:05:01.123+01:00").unwrap(), utc);
        assert_eq!(parse("2026-11-27t07:35:01.123-0430").unwrap(), utc);
        assert_eq!(parse("2026-11-27 12:05:01.123z").unwrap(), utc);
        assert_eq!(parse("2026-11-27T14:05:01.123+02").unwrap(), utc);
        assert_eq!(
            parse("2026-11-27T12:05:01.123456789123Z").unwrap(),
            utc + 456_789
        );
        assert_eq!(parse("2026-11-27T12:05Z").unwrap(), utc - 1_123_000_000);
        assert_eq!(parse("1970-01-01T00:00:00Z").unwrap(), 0);
    }

    #[test]
    fn rejects_what_names_no_instant() {
        for (text, reason) in [
            ("2026-11-27T12:05:01.123", "no UTC offset"),
            ("2026-13-01T00:00:00Z", "month 13"),
            ("2026-02-29T00:00:00Z", "day 29"),
            ("2026-11-27T24:00:00Z", "time of day"),
            ("1969-12-31T23:59:59Z", "before 1970"),
            ("27/11/2026", "digits"),
            ("2026-11-27T12:05:01.Z", "digits after the decimal point"),
            ("2026-11-27T12:05:01Z trailing", "unexpected text"),
            ("", "digits for the year"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(reason), "{text:?}: {error}");
        }
        assert!(parse("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn formats_utc_with_milliseconds_and_round_trips() {
        assert_eq!(format(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format(1_795_781_101_123_999_999),
            "2026-11-27T12:05:01.123Z"
        );
        let mut nanos = 0u64;
        for _ in 0..2000 {
            nanos = nanos
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407)
                % 10_000_000_000_000_000_000;
            let millis = nanos / 1_000_000 * 1_000_000;
            assert_eq!(parse(&format(nanos)).unwrap(), millis, "{}", format(nanos));
        }
    }
}
