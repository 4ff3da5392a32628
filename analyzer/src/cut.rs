//! A cut: which exchanges of the store a snapshot or an inventory covers (one service, a time
//! window, an optional SQL predicate), and the SQL that selects them.
//!
//! The SQL is recorded in the snapshot, so a snapshot can be re-cut from the same store and the
//! two compared. Times are always absolute in the SQL: a relative `--from 2h` is resolved once,
//! when the cut is made.

use tapedeck_har::time;
use tapedeck_proto::arrow::columns;

/// The table every cut reads.
pub const TABLE: &str = "exchanges";

/// Why a cut cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CutError {
    /// A time is neither RFC 3339 nor a duration ago.
    #[error(
        "{flag} {value:?}: expected an RFC 3339 time (2026-11-27T13:00:00Z), a duration ago (30m, 2h, 7d) or `now`"
    )]
    Time {
        /// The flag, `--from` or `--to`.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// The window ends before it starts.
    #[error("the window ends ({to}) before it starts ({from})")]
    EmptyWindow {
        /// `--from`, RFC 3339.
        from: String,
        /// `--to`, RFC 3339.
        to: String,
    },
    /// The service name cannot be a partition value.
    #[error("service {0:?}: expected a workload name (letters, digits, '-', '_', '.')")]
    Service(String),
    /// The predicate would change the statement rather than filter rows.
    #[error("--where {0:?}: a predicate cannot contain ';' or a comment")]
    Predicate(String),
}

/// One service, a window and a predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The service (the `service` partition: the workload that captured the exchanges).
    pub service: String,
    /// Start of the window, inclusive, nanoseconds since the Unix epoch.
    pub from: Option<u64>,
    /// End of the window, exclusive.
    pub to: Option<u64>,
    /// A SQL predicate over the `exchanges` columns, ANDed to the window.
    pub predicate: Option<String>,
}

impl Cut {
    /// Checks the parts and builds the cut. `now` (nanoseconds since the Unix epoch) resolves
    /// relative times.
    pub fn new(
        service: &str,
        from: Option<&str>,
        to: Option<&str>,
        predicate: Option<&str>,
        now: u64,
    ) -> Result<Self, CutError> {
        if service.is_empty()
            || !service
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(CutError::Service(service.to_owned()));
        }
        let from = from.map(|v| parse_time("--from", v, now)).transpose()?;
        let to = to.map(|v| parse_time("--to", v, now)).transpose()?;
        if let (Some(from), Some(to)) = (from, to)
            && to < from
        {
            return Err(CutError::EmptyWindow {
                from: time::format_exact(from),
                to: time::format_exact(to),
            });
        }
        let predicate = predicate.map(str::trim).filter(|p| !p.is_empty());
        if let Some(p) = predicate
            && (p.contains(';') || p.contains("--") || p.contains("/*"))
        {
            return Err(CutError::Predicate(p.to_owned()));
        }
        Ok(Self {
            service: service.to_owned(),
            from,
            to,
            predicate: predicate.map(str::to_owned),
        })
    }

    /// The `WHERE` clause (without the keyword): service, window and predicate.
    pub fn where_clause(&self) -> String {
        let mut parts = vec![format!("service = '{}'", self.service)];
        if let Some(from) = self.from {
            parts.push(format!(
                "{} >= TIMESTAMP '{}'",
                columns::START_TIME,
                time::format_exact(from)
            ));
        }
        if let Some(to) = self.to {
            parts.push(format!(
                "{} < TIMESTAMP '{}'",
                columns::START_TIME,
                time::format_exact(to)
            ));
        }
        if let Some(predicate) = &self.predicate {
            parts.push(format!("({predicate})"));
        }
        parts.join(" AND ")
    }

    /// The statement a snapshot runs: every column of the exchanges in the cut. Rows come in
    /// any order; the snapshot sorts them.
    pub fn snapshot_sql(&self) -> String {
        let schema = tapedeck_proto::arrow::schema();
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        format!(
            "SELECT {} FROM {TABLE} WHERE {}",
            columns.join(", "),
            self.where_clause()
        )
    }
}

/// Reads `--from` / `--to`: RFC 3339, `now`, or a duration ago (`90s`, `30m`, `2h`, `7d`, with
/// or without a leading `-`).
pub fn parse_time(flag: &'static str, value: &str, now: u64) -> Result<u64, CutError> {
    let error = || CutError::Time {
        flag,
        value: value.to_owned(),
    };
    let text = value.trim();
    if text.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(nanos) = time::parse(text) {
        return Ok(nanos);
    }
    let ago = text.strip_prefix('-').unwrap_or(text);
    let split = ago.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
    let (number, unit) = ago.split_at(split);
    let number: u64 = number.parse().map_err(|_| error())?;
    let seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(error()),
    };
    let nanos = number
        .checked_mul(seconds)
        .and_then(|s| s.checked_mul(1_000_000_000))
        .ok_or_else(error)?;
    now.checked_sub(nanos).ok_or_else(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_780_800_000_000_000; // 2026-11-27T12:00:00Z

    #[test]
    fn times_are_absolute_relative_or_now() {
        assert_eq!(parse_time("--from", "now", NOW), Ok(NOW));
        assert_eq!(
            parse_time("--from", "2h", NOW),
            Ok(NOW - 7200 * 1_000_000_000)
        );
        assert_eq!(
            parse_time("--from", "-30m", NOW),
            Ok(NOW - 1800 * 1_000_000_000)
        );
        assert_eq!(
            parse_time("--from", "2026-11-27T11:00:00Z", NOW),
            Ok(NOW - 3600 * 1_000_000_000)
        );
        for bad in ["", "yesterday", "2w", "5", "2026-11-27"] {
            assert!(parse_time("--from", bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn sql_names_service_window_and_predicate() {
        let cut = Cut::new(
            "orders",
            Some("2026-11-27T11:00:00Z"),
            Some("now"),
            Some("status >= 500"),
            NOW,
        )
        .unwrap();
        assert_eq!(
            cut.where_clause(),
            "service = 'orders' AND start_time >= TIMESTAMP '2026-11-27T11:00:00Z' AND start_time < TIMESTAMP '2026-11-27T12:00:00Z' AND (status >= 500)"
        );
        assert!(
            cut.snapshot_sql()
                .starts_with("SELECT id, trace_id, start_time, ")
        );
    }

    #[test]
    fn bad_cuts_are_refused() {
        assert!(matches!(
            Cut::new("orders'; --", None, None, None, NOW),
            Err(CutError::Service(_))
        ));
        assert!(matches!(
            Cut::new("orders", Some("1h"), Some("2h"), None, NOW),
            Err(CutError::EmptyWindow { .. })
        ));
        assert!(matches!(
            Cut::new("orders", None, None, Some("1=1; DROP TABLE x"), NOW),
            Err(CutError::Predicate(_))
        ));
    }
}
