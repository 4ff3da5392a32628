//! Where exchanges live in the object store.
//!
//! Parquet files are hive-partitioned by service and UTC hour so that time-window queries of
//! one service open only the files of that window:
//!
//! ```text
//! exchanges/service=<service>/date=<YYYY-MM-DD>/hour=<HH>/<writer>-<sequence>.parquet
//! ```
//!
//! `<service>` is the exchange's `workload` (the sidecar that captured it), with every byte
//! outside `[A-Za-z0-9._-]` replaced by `_`, or `unknown` when empty. `<writer>` is 16 hex
//! digits chosen at random by each writer process, so several collectors can share one bucket;
//! `<sequence>` is that writer's file counter, 20 decimal digits, so names sort by age.
//! Files are written whole and atomically (local: write then rename; S3: one PUT or a completed
//! multipart upload), so a listed file is always complete.

use std::collections::BTreeMap;
use std::fmt;

use object_store::path::Path;
use tapedeck_proto::Exchange;

/// The top-level folder of the `exchanges` table in the store.
pub const TABLE_DIR: &str = "exchanges";
/// The hive partition columns, in path order.
pub const PARTITION_COLUMNS: [&str; 3] = ["service", "date", "hour"];
/// The service name used when an exchange has no workload.
pub const UNKNOWN_SERVICE: &str = "unknown";

/// One partition: a service and one UTC hour.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// The service (sanitized workload name).
    pub service: String,
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    /// `00` to `23`, UTC.
    pub hour: String,
}

impl PartitionKey {
    /// The partition an exchange belongs to.
    pub fn of(exchange: &Exchange) -> Self {
        Self::of_parts(&exchange.workload, exchange.start_unix_nanos)
    }

    /// The partition of an exchange of `workload` that started at `start_unix_nanos`: the one
    /// rule, for owned exchanges ([`PartitionKey::of`]) and for exchanges decoded in place.
    /// Exchanges of the same workload in the same [`HOUR_NANOS`] bucket share a partition.
    pub fn of_parts(workload: &str, start_unix_nanos: u64) -> Self {
        let (date, hour) = date_hour(start_unix_nanos);
        Self {
            service: sanitize_service(workload),
            date,
            hour,
        }
    }

    /// `exchanges/service=…/date=…/hour=…` (no trailing slash).
    pub fn dir(&self) -> Path {
        Path::from(format!(
            "{TABLE_DIR}/service={}/date={}/hour={}",
            self.service, self.date, self.hour
        ))
    }

    /// The path of a data file of this partition.
    pub fn file(&self, name: &FileName) -> Path {
        Path::from(format!("{}/{name}", self.dir()))
    }

    /// The start of this partition's hour, ns since the epoch (None if the key is malformed).
    pub fn start_unix_nanos(&self) -> Option<i64> {
        let days = days_from_civil_str(&self.date)?;
        let hour: i64 = self.hour.parse().ok().filter(|h| (0..24).contains(h))?;
        Some((days * 24 + hour) * 3_600 * 1_000_000_000)
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "service={}/date={}/hour={}",
            self.service, self.date, self.hour
        )
    }
}

/// The name of a data file: `<writer>-<sequence>.parquet` for a flush,
/// `<writer>-<sequence>.compacted.parquet` for the output of a compaction (invisible until the
/// partition's manifest commits it, see [`crate::manifest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName {
    /// The writer process's random id.
    pub writer: u64,
    /// The writer's file counter.
    pub sequence: u64,
    /// Whether the file is a compaction's output.
    pub compacted: bool,
}

/// The suffix of a compaction output's name.
pub const COMPACTED_SUFFIX: &str = ".compacted.parquet";

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = if self.compacted {
            COMPACTED_SUFFIX
        } else {
            ".parquet"
        };
        write!(f, "{:016x}-{:020}{suffix}", self.writer, self.sequence)
    }
}

impl FileName {
    /// A flush file's name.
    pub fn flushed(writer: u64, sequence: u64) -> Self {
        Self {
            writer,
            sequence,
            compacted: false,
        }
    }

    /// Parses a file name (the last path segment).
    pub fn parse(name: &str) -> Option<Self> {
        let (stem, compacted) = match name.strip_suffix(COMPACTED_SUFFIX) {
            Some(stem) => (stem, true),
            None => (name.strip_suffix(".parquet")?, false),
        };
        let (writer, sequence) = stem.split_once('-')?;
        if writer.len() != 16 || sequence.len() != 20 {
            return None;
        }
        Some(Self {
            writer: u64::from_str_radix(writer, 16).ok()?,
            sequence: sequence.parse().ok()?,
            compacted,
        })
    }
}

/// Parses a data file path back into its partition and name. Paths that are not data files of
/// the table (temporary files, other folders) give `None`.
pub fn parse_file_path(path: &Path) -> Option<(PartitionKey, FileName)> {
    let (key, name) = parse_partition_entry(path)?;
    Some((key, FileName::parse(&name)?))
}

/// Parses the path of anything right inside a partition folder into the partition and the
/// object's name.
pub fn parse_partition_entry(path: &Path) -> Option<(PartitionKey, String)> {
    let parts: Vec<_> = path.parts().collect();
    let [table, service, date, hour, file] = parts.as_slice() else {
        return None;
    };
    if table.as_ref() != TABLE_DIR {
        return None;
    }
    let key = PartitionKey {
        service: service.as_ref().strip_prefix("service=")?.to_string(),
        date: date.as_ref().strip_prefix("date=")?.to_string(),
        hour: hour.as_ref().strip_prefix("hour=")?.to_string(),
    };
    key.start_unix_nanos()?;
    Some((key, file.as_ref().to_string()))
}

/// Exchanges grouped by the partition they belong to, in partition order.
pub fn group_by_partition(exchanges: &[Exchange]) -> BTreeMap<PartitionKey, Vec<&Exchange>> {
    let mut groups: BTreeMap<PartitionKey, Vec<&Exchange>> = BTreeMap::new();
    for exchange in exchanges {
        groups
            .entry(PartitionKey::of(exchange))
            .or_default()
            .push(exchange);
    }
    groups
}

/// A workload name made safe for a path segment.
pub fn sanitize_service(workload: &str) -> String {
    if workload.is_empty() {
        return UNKNOWN_SERVICE.to_string();
    }
    workload
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                char::from(b)
            } else {
                '_'
            }
        })
        .collect()
}

/// Nanoseconds in an hour: times in the same `start / HOUR_NANOS` bucket have the same
/// [`date_hour`].
pub const HOUR_NANOS: u64 = 3_600_000_000_000;

/// The UTC date (`YYYY-MM-DD`) and hour (`HH`) of a time in ns since the epoch.
pub fn date_hour(unix_nanos: u64) -> (String, String) {
    let secs = i64::try_from(unix_nanos / 1_000_000_000).unwrap_or(i64::MAX);
    let days = secs.div_euclid(86_400);
    let hour = secs.rem_euclid(86_400) / 3_600;
    let (y, m, d) = civil_from_days(days);
    (format!("{y:04}-{m:02}-{d:02}"), format!("{hour:02}"))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01 (`days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_from_civil_str(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts
        .next()?
        .parse()
        .ok()
        .filter(|m| (1..=12).contains(m))?;
    let d: u32 = parts
        .next()?
        .parse()
        .ok()
        .filter(|d| (1..=31).contains(d))?;
    if parts.next().is_some() {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges_land_in_their_service_and_utc_hour() {
        // 2026-11-27T13:45:10Z
        let exchange = Exchange {
            workload: "orders".into(),
            start_unix_nanos: 1_795_787_110_000_000_000,
            ..Default::default()
        };
        let key = PartitionKey::of(&exchange);
        assert_eq!(key.to_string(), "service=orders/date=2026-11-27/hour=13");
        let name = FileName::flushed(0xab, 7);
        let path = key.file(&name);
        assert_eq!(
            path.as_ref(),
            "exchanges/service=orders/date=2026-11-27/hour=13/00000000000000ab-00000000000000000007.parquet"
        );
        assert_eq!(parse_file_path(&path), Some((key.clone(), name)));
        let output = FileName {
            compacted: true,
            ..name
        };
        assert_eq!(
            output.to_string(),
            "00000000000000ab-00000000000000000007.compacted.parquet"
        );
        assert_eq!(FileName::parse(&output.to_string()), Some(output));
        assert_eq!(key.start_unix_nanos(), Some(1_795_784_400_000_000_000));
    }

    #[test]
    fn odd_workloads_and_times_are_safe() {
        let exchange = Exchange {
            workload: "a/b c=ü".into(),
            start_unix_nanos: 0,
            ..Default::default()
        };
        let key = PartitionKey::of(&exchange);
        assert_eq!(key.service, "a_b_c___");
        assert_eq!((key.date.as_str(), key.hour.as_str()), ("1970-01-01", "00"));
        assert_eq!(sanitize_service(""), "unknown");
    }

    #[test]
    fn the_calendar_is_right_across_leap_years() {
        for (days, expected) in [
            (0, "1970-01-01"),
            (11_016, "2000-02-29"),
            (19_782, "2024-02-29"),
            (20_419, "2025-11-27"),
        ] {
            let (date, _) = date_hour(days as u64 * 86_400 * 1_000_000_000);
            assert_eq!(date, expected);
            assert_eq!(days_from_civil_str(&date), Some(days));
        }
    }

    #[test]
    fn foreign_paths_are_not_data_files() {
        for path in [
            "exchanges/service=a/date=2026-11-27/hour=13/x.parquet",
            "exchanges/service=a/date=2026-11-27/hour=13/00000000000000ab-00000000000000000007.parquet.tmp",
            "exchanges/service=a/date=2026-13-27/hour=13/00000000000000ab-00000000000000000007.parquet",
            "exchanges/service=a/date=2026-11-27/hour=24/00000000000000ab-00000000000000000007.parquet",
            "other/service=a/date=2026-11-27/hour=13/00000000000000ab-00000000000000000007.parquet",
            "exchanges/service=a/date=2026-11-27/00000000000000ab-00000000000000000007.parquet",
        ] {
            assert_eq!(parse_file_path(&Path::from(path)), None, "{path}");
        }
    }
}
