//! Where the page's queries run: the offline engine over a data directory, or a running
//! collector through Flight SQL (with its token). Either way the collector's read-only guard
//! checks every statement, and its limits apply.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray as _, BinaryArray, BooleanArray, FixedSizeBinaryArray, Float64Array,
    Int32Array, Int64Array, LargeBinaryArray, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value};
use tapedeck_collector::query::QueryEngine;
use tapedeck_proto::arrow_array::RecordBatch;

/// The engine the page's queries run on.
#[derive(Debug, Clone)]
pub struct Backend {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Offline {
        engine: Arc<QueryEngine>,
        describe: String,
    },
    Remote {
        address: String,
        token: Option<String>,
    },
    /// No traffic to read (`tapedeck ui --report DIR` alone): only the replay pages work.
    Nothing,
}

/// A query that failed, with a message for the page.
#[derive(Debug)]
pub struct QueryFailed {
    /// What failed, as the collector or engine said it.
    pub message: String,
    /// The query's own fault (bad SQL, a refused statement, a limit), as opposed to the store's
    /// or the collector's.
    pub user_error: bool,
}

impl Backend {
    /// Queries run here, on an engine opened over a data directory or store.
    pub fn offline(engine: QueryEngine, describe: String) -> Self {
        Self {
            kind: Kind::Offline {
                engine: Arc::new(engine),
                describe,
            },
        }
    }

    /// Queries run on the collector at `address` (Flight SQL), with `token`.
    pub fn remote(address: String, token: Option<String>) -> Self {
        Self {
            kind: Kind::Remote { address, token },
        }
    }

    /// No traffic source: every query answers that none was given.
    pub fn nothing() -> Self {
        Self {
            kind: Kind::Nothing,
        }
    }

    /// Where the rows come from, for the page and messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Offline { describe, .. } => describe.clone(),
            Kind::Remote { address, .. } => format!("the collector at {address}"),
            Kind::Nothing => "no traffic (replay reports only)".to_owned(),
        }
    }

    /// Whether there is traffic to query (not [`Backend::nothing`]).
    pub fn has_traffic(&self) -> bool {
        !matches!(self.kind, Kind::Nothing)
    }

    fn nothing_to_query() -> QueryFailed {
        QueryFailed {
            message: "no traffic to query: start `tapedeck ui` with --data DIR or --collector URL"
                .to_owned(),
            user_error: true,
        }
    }

    /// Runs one read-only statement and returns its batches.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryFailed> {
        tracing::debug!(sql, "ui query");
        match &self.kind {
            Kind::Offline { engine, .. } => engine
                .sql(sql)
                .await
                .map(|(_, batches)| batches)
                .map_err(|error| QueryFailed {
                    user_error: error.is_user_error(),
                    message: error.to_string(),
                }),
            Kind::Remote { address, token } => {
                tapedeck_collector::flight::query_remote(address, token.as_deref(), sql)
                    .await
                    .map(|(_, batches)| batches)
                    .map_err(|error| {
                        let user_error = matches!(
                            error.code(),
                            Some(
                                tonic_code::INVALID_ARGUMENT
                                    | tonic_code::PERMISSION_DENIED
                                    | tonic_code::RESOURCE_EXHAUSTED
                                    | tonic_code::DEADLINE_EXCEEDED
                            )
                        );
                        QueryFailed {
                            message: error.to_string(),
                            user_error,
                        }
                    })
            }
            Kind::Nothing => Err(Self::nothing_to_query()),
        }
    }

    /// Plans a statement without running it (offline), or runs it (remote: the caller sends a
    /// `LIMIT 0` statement).
    pub async fn check(&self, sql: &str) -> Result<(), QueryFailed> {
        match &self.kind {
            Kind::Offline { engine, .. } => {
                engine
                    .schema(sql)
                    .await
                    .map(|_| ())
                    .map_err(|error| QueryFailed {
                        user_error: error.is_user_error(),
                        message: error.to_string(),
                    })
            }
            Kind::Remote { .. } | Kind::Nothing => self.query(sql).await.map(|_| ()),
        }
    }
}

/// The gRPC codes a collector answers a bad query with.
mod tonic_code {
    use tapedeck_proto::tonic::Code;
    pub(super) const INVALID_ARGUMENT: Code = Code::InvalidArgument;
    pub(super) const PERMISSION_DENIED: Code = Code::PermissionDenied;
    pub(super) const RESOURCE_EXHAUSTED: Code = Code::ResourceExhausted;
    pub(super) const DEADLINE_EXCEEDED: Code = Code::DeadlineExceeded;
}

/// Integers above this lose precision in JavaScript numbers; they are sent as strings.
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

fn int(value: i64) -> Value {
    if value.abs() <= MAX_SAFE_INTEGER {
        Value::from(value)
    } else {
        Value::from(value.to_string())
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The value of `array` at `row` as JSON: numbers as numbers (as strings above 2^53),
/// timestamps as nanoseconds since the epoch (strings), binary as hex, text as text, anything
/// else as Arrow prints it.
pub fn cell(array: &ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Value::from(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Value::from(array.as_string::<i64>().value(row)),
        DataType::Utf8View => Value::from(array.as_string_view().value(row)),
        DataType::Boolean => Value::from(
            array
                .as_any()
                .downcast_ref::<BooleanArray>()
                .map(|a| a.value(row)),
        ),
        DataType::Int64 => array
            .as_any()
            .downcast_ref::<Int64Array>()
            .map_or(Value::Null, |a| int(a.value(row))),
        DataType::Int32 => array
            .as_any()
            .downcast_ref::<Int32Array>()
            .map_or(Value::Null, |a| Value::from(a.value(row))),
        DataType::UInt64 => array
            .as_any()
            .downcast_ref::<UInt64Array>()
            .map_or(Value::Null, |a| {
                int(i64::try_from(a.value(row)).unwrap_or(i64::MAX))
            }),
        DataType::Float64 => array
            .as_any()
            .downcast_ref::<Float64Array>()
            .map_or(Value::Null, |a| {
                serde_json::Number::from_f64(a.value(row)).map_or(Value::Null, Value::Number)
            }),
        DataType::Binary => array
            .as_any()
            .downcast_ref::<BinaryArray>()
            .map_or(Value::Null, |a| Value::from(hex(a.value(row)))),
        DataType::LargeBinary => array
            .as_any()
            .downcast_ref::<LargeBinaryArray>()
            .map_or(Value::Null, |a| Value::from(hex(a.value(row)))),
        DataType::FixedSizeBinary(_) => array
            .as_any()
            .downcast_ref::<FixedSizeBinaryArray>()
            .map_or(Value::Null, |a| Value::from(hex(a.value(row)))),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => cast(array, &DataType::Int64)
            .ok()
            .and_then(|ints| {
                ints.as_any()
                    .downcast_ref::<Int64Array>()
                    .map(|a| Value::from(a.value(row).to_string()))
            })
            .unwrap_or(Value::Null),
        DataType::Int8
        | DataType::Int16
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => cast(array, &DataType::Int64)
            .ok()
            .and_then(|ints| {
                ints.as_any()
                    .downcast_ref::<Int64Array>()
                    .map(|a| int(a.value(row)))
            })
            .unwrap_or(Value::Null),
        _ => {
            let options = FormatOptions::default();
            ArrayFormatter::try_new(array.as_ref(), &options)
                .map(|formatter| Value::from(formatter.value(row).to_string()))
                .unwrap_or(Value::Null)
        }
    }
}

/// Every row of `batches` as a JSON object keyed by column name.
pub fn rows(batches: &[RecordBatch]) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        for row in 0..batch.num_rows() {
            let mut object = Map::new();
            for (field, column) in schema.fields().iter().zip(batch.columns()) {
                object.insert(field.name().clone(), cell(column, row));
            }
            out.push(object);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{StringArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn cells_keep_precision_and_show_bytes_as_hex() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("n", DataType::Int64, false),
            Field::new("b", DataType::Binary, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(
                    TimestampNanosecondArray::from(vec![1_795_000_000_123_456_789])
                        .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from(vec![MAX_SAFE_INTEGER + 1])),
                Arc::new(BinaryArray::from(vec![&[0u8, 0xff][..]])),
                Arc::new(StringArray::from(vec![None::<&str>])),
            ],
        )
        .expect("batch");
        let rows = rows(&[batch]);
        assert_eq!(rows[0]["t"], "1795000000123456789");
        assert_eq!(rows[0]["n"], (MAX_SAFE_INTEGER + 1).to_string());
        assert_eq!(rows[0]["b"], "00ff");
        assert_eq!(rows[0]["s"], Value::Null);
    }
}
