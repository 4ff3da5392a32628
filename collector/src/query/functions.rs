//! SQL functions for exchanges: `header(headers, name)` and `body_text(body)`.
//!
//! The JSON functions (`json_get_str`, `json_get_int`, `json_contains`, `->`, `->>` …) come from
//! `datafusion-functions-json` and are registered next to these in [`super::QueryEngine`].

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The name of the header lookup function.
pub const HEADER: &str = "header";
/// The name of the body-as-text function.
pub const BODY_TEXT: &str = "body_text";

/// `header(headers, name)`: the value of the first header called `name` (ASCII
/// case-insensitive) in a `request_headers`, `response_headers`, `request_trailers` or
/// `response_trailers` column, or NULL when there is none.
pub fn header_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(Header {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

/// `body_text(body)`: a body as UTF-8 text; bytes that are not valid UTF-8 become U+FFFD.
pub fn body_text_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(BodyText {
        signature: Signature::user_defined(Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Header {
    signature: Signature,
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

/// Whether a type is a list of structs with `name` and `value` fields (the header columns).
fn is_header_list(data_type: &DataType) -> bool {
    let item = match data_type {
        DataType::List(item) | DataType::LargeList(item) => item,
        _ => return false,
    };
    match item.data_type() {
        DataType::Struct(fields) => ["name", "value"].iter().all(|name| {
            fields
                .find(name)
                .is_some_and(|(_, field)| is_text(field.data_type()))
        }),
        _ => false,
    }
}

impl ScalarUDFImpl for Header {
    fn name(&self) -> &str {
        HEADER
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [headers, name] if is_header_list(headers) && is_text(name) => {
                Ok(vec![headers.clone(), DataType::Utf8])
            }
            [DataType::Null, name] if is_text(name) => Ok(vec![DataType::Null, DataType::Utf8]),
            _ => plan_err!(
                "header(headers, name) takes a header column (request_headers, response_headers, \
                 request_trailers or response_trailers) and a text name, got {}",
                type_list(arg_types)
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [headers, names] = args.args.as_slice() else {
            return exec_err!("header() takes 2 arguments, got {}", args.args.len());
        };
        let headers = headers.to_array(rows)?;
        let names = cast(&names.to_array(rows)?, &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(rows, rows * 16);
        if headers.data_type() == &DataType::Null {
            (0..rows).for_each(|_| out.append_null());
            return Ok(ColumnarValue::Array(Arc::new(out.finish())));
        }
        // Offsets of each row's headers, and the flattened entries.
        let (entries, ranges): (ArrayRef, Vec<Option<(usize, usize)>>) = match headers.data_type() {
            DataType::List(_) => {
                let list = headers.as_list::<i32>();
                let ranges = (0..rows)
                    .map(|row| {
                        list.is_valid(row).then(|| {
                            let offsets = list.value_offsets();
                            (offsets[row] as usize, offsets[row + 1] as usize)
                        })
                    })
                    .collect();
                (list.values().clone(), ranges)
            }
            DataType::LargeList(_) => {
                let list = headers.as_list::<i64>();
                let ranges = (0..rows)
                    .map(|row| {
                        list.is_valid(row).then(|| {
                            let offsets = list.value_offsets();
                            (offsets[row] as usize, offsets[row + 1] as usize)
                        })
                    })
                    .collect();
                (list.values().clone(), ranges)
            }
            other => return exec_err!("header(): expected a list of headers, got {other}"),
        };
        let entries = entries.as_struct();
        let field = |name: &str| -> Result<ArrayRef> {
            match entries.column_by_name(name) {
                Some(column) => Ok(cast(column, &DataType::Utf8)?),
                None => exec_err!("header(): header entries have no {name} field"),
            }
        };
        let (entry_names, entry_values) = (field("name")?, field("value")?);
        let (entry_names, entry_values) = (
            entry_names.as_string::<i32>(),
            entry_values.as_string::<i32>(),
        );
        for (row, range) in ranges.into_iter().enumerate() {
            let (Some((start, end)), true) = (range, names.is_valid(row)) else {
                out.append_null();
                continue;
            };
            let wanted = names.value(row);
            let found = (start..end).find(|&i| {
                entry_names.is_valid(i) && entry_names.value(i).eq_ignore_ascii_case(wanted)
            });
            match found {
                Some(i) if entry_values.is_valid(i) => out.append_value(entry_values.value(i)),
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct BodyText {
    signature: Signature,
}

impl ScalarUDFImpl for BodyText {
    fn name(&self) -> &str {
        BODY_TEXT
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [
                DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::FixedSizeBinary(_)
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Null,
            ] => Ok(vec![DataType::Binary]),
            _ => plan_err!(
                "body_text(body) takes a binary column such as request_body or response_body, \
                 got {}",
                type_list(arg_types)
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [body] = args.args.as_slice() else {
            return exec_err!("body_text() takes 1 argument, got {}", args.args.len());
        };
        let bodies = cast(&body.to_array(rows)?, &DataType::Binary)?;
        let bodies = bodies.as_binary::<i32>();
        let mut out = StringBuilder::with_capacity(rows, bodies.values().len());
        for body in bodies {
            match body {
                Some(bytes) => out.append_value(String::from_utf8_lossy(bytes)),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn type_list(types: &[DataType]) -> String {
    let names: Vec<String> = types.iter().map(ToString::to_string).collect();
    format!("({})", names.join(", "))
}

/// The functions whose output size the caller chooses by an argument: `repeat(text, n)`,
/// `lpad(text, n[, fill])` and `rpad(text, n[, fill])`.
pub(super) const SIZED_BY_ARGUMENT: [&str; 3] = ["repeat", "lpad", "rpad"];

/// `inner` (one of [`SIZED_BY_ARGUMENT`]) refusing a call whose output would be larger than
/// `limit` bytes before it builds it. The query's memory pool does not see a scalar function's
/// output and its timeout cannot interrupt a running kernel, so `repeat('x', 2147483647)` built
/// 2 GiB in 31 s under a 64 MiB, 2 s limit (found by the `collector_sql` fuzz target).
pub(super) fn bounded(inner: Arc<ScalarUDF>, limit: u64) -> ScalarUDF {
    let repeat = inner.name() == "repeat";
    ScalarUDF::new_from_impl(Bounded {
        inner,
        limit,
        repeat,
    })
}

#[derive(Debug)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    limit: u64,
    /// `repeat` multiplies the text's length; the pads build `n` characters.
    repeat: bool,
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.inner.name() == other.inner.name() && self.limit == other.limit
    }
}

impl Eq for Bounded {}

impl std::hash::Hash for Bounded {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
        self.limit.hash(state);
    }
}

impl Bounded {
    /// An upper bound of the bytes the call builds: the sum over rows of the text's length times
    /// `n` for `repeat`, of `n` (characters, at most 4 bytes each) for the pads.
    fn output_bytes(&self, args: &ScalarFunctionArgs) -> Result<u128> {
        use datafusion::arrow::compute::kernels::length::length;
        use datafusion::arrow::datatypes::Int64Type;
        let rows = args.number_rows;
        let [text, count, ..] = args.args.as_slice() else {
            return Ok(0);
        };
        let counts = cast(&count.to_array(rows)?, &DataType::Int64)?;
        let counts = counts.as_primitive::<Int64Type>();
        let lengths = if self.repeat {
            let text = text.to_array(rows)?;
            if text.data_type() == &DataType::Null {
                return Ok(0);
            }
            Some(cast(&length(&text)?, &DataType::Int64)?)
        } else {
            None
        };
        let lengths = lengths.as_ref().map(|l| l.as_primitive::<Int64Type>());
        let mut total: u128 = 0;
        for row in 0..counts.len() {
            if counts.is_null(row) {
                continue;
            }
            let n = u128::try_from(counts.value(row).max(0)).unwrap_or(0);
            let per = match lengths {
                Some(lengths) if lengths.is_null(row) => 0,
                Some(lengths) => u128::try_from(lengths.value(row).max(0)).unwrap_or(0),
                None => 4,
            };
            total = total.saturating_add(n.saturating_mul(per));
        }
        Ok(total)
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs<'_>,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.output_bytes(&args)?;
        if bytes > u128::from(self.limit) {
            return exec_err!(
                "{}() would build {bytes} bytes, more than the query memory limit of {} bytes \
                 (--query-memory)",
                self.inner.name(),
                self.limit
            );
        }
        self.inner.invoke_with_args(args)
    }
}
