//! The page's filter: a SQL predicate on `exchanges` plus a time range, turned into a `WHERE`
//! clause. A predicate is accepted only when it parses as exactly one SQL expression, so it can
//! narrow the rows but never change the statement around it (no `;`, no closing parenthesis
//! followed by `UNION …`, no comment hiding the `LIMIT`); the statement built around it is then
//! checked by the collector's read-only guard like any other query.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use serde::Deserialize;
use tapedeck_har::time;

/// Why a filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The predicate is not one SQL expression.
    #[error("filter: {0}")]
    Predicate(String),
    /// A time of the range does not parse.
    #[error("{0}")]
    Time(String),
}

/// The filter of every list, map, export and cut: what the page's filter box and time range
/// hold (and what its URL carries).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// A SQL predicate over the columns of `exchanges`.
    #[serde(default)]
    pub q: Option<String>,
    /// Start of the range, inclusive: RFC 3339, a duration ago (`30m`), or `now`.
    #[serde(default)]
    pub from: Option<String>,
    /// End of the range, exclusive, in the same forms.
    #[serde(default)]
    pub to: Option<String>,
}

/// Checks that `predicate` is one SQL expression and nothing more; returns it trimmed.
pub fn check_predicate(predicate: &str) -> Result<String, FilterError> {
    let trimmed = predicate.trim();
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(trimmed)
        .map_err(|error| FilterError::Predicate(error.to_string()))?;
    parser
        .parse_expr()
        .map_err(|error| FilterError::Predicate(error.to_string()))?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(FilterError::Predicate(format!(
            "expected one expression, found {} after it",
            next.token
        )));
    }
    Ok(trimmed.to_owned())
}

impl Filter {
    /// The time range as nanoseconds since the epoch, resolved against `now`.
    pub fn range(&self, now: u64) -> Result<(Option<u64>, Option<u64>), FilterError> {
        let parse = |flag: &'static str, value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    tapedeck_analyzer::cut::parse_time(flag, v, now)
                        .map_err(|error| FilterError::Time(error.to_string()))
                })
                .transpose()
        };
        Ok((parse("from", &self.from)?, parse("to", &self.to)?))
    }

    /// The predicate, checked, when there is one.
    pub fn predicate(&self) -> Result<Option<String>, FilterError> {
        self.q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(check_predicate)
            .transpose()
    }

    /// The conditions of the filter (predicate and range), to be joined with `AND`; `now`
    /// resolves relative times.
    pub fn conditions(&self, now: u64) -> Result<Vec<String>, FilterError> {
        let mut parts = Vec::new();
        if let Some(predicate) = self.predicate()? {
            parts.push(format!("({predicate})"));
        }
        let (from, to) = self.range(now)?;
        if let Some(from) = from {
            parts.push(format!("start_time >= {}", timestamp(from)));
        }
        if let Some(to) = to {
            parts.push(format!("start_time < {}", timestamp(to)));
        }
        Ok(parts)
    }
}

/// A timestamp literal for nanoseconds since the epoch.
pub fn timestamp(unix_nanos: u64) -> String {
    format!("TIMESTAMP '{}'", time::format_exact(unix_nanos))
}

/// `WHERE a AND b …`, or nothing.
pub fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// A string literal: `'it''s'`.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_predicate_is_one_expression_and_nothing_more() {
        assert_eq!(
            check_predicate(" status >= 500 AND path LIKE '/orders%' ").as_deref(),
            Ok("status >= 500 AND path LIKE '/orders%'")
        );
        assert!(check_predicate("header(request_headers, 'x') = 'a'").is_ok());
        for bad in [
            "1=1; DROP TABLE exchanges",
            "1=1) UNION SELECT * FROM exchanges WHERE (1=1",
            "status = 200 LIMIT 5",
            "",
            "status = ",
        ] {
            assert!(check_predicate(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_filter_becomes_conditions_with_absolute_times() {
        let filter = Filter {
            q: Some("status = 500".into()),
            from: Some("2026-11-27T13:00:00Z".into()),
            to: Some("30m".into()),
        };
        let now = 1_795_000_000_000_000_000;
        let parts = filter.conditions(now).expect("conditions");
        assert_eq!(parts[0], "(status = 500)");
        assert_eq!(parts[1], "start_time >= TIMESTAMP '2026-11-27T13:00:00Z'");
        assert!(
            parts[2].starts_with("start_time < TIMESTAMP '"),
            "{}",
            parts[2]
        );
        assert!(
            Filter {
                from: Some("yesterday-ish".into()),
                ..Filter::default()
            }
            .conditions(now)
            .is_err()
        );
    }
}
