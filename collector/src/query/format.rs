//! Query results as text: an aligned table, CSV, or JSON lines (`tapedeck sql --format`).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches_with_schema;
use datafusion::arrow::{csv, json};

/// How [`format_batches`] prints results.
///
/// In every format, binary values (bodies, ids, non-UTF-8 header bytes) print as lowercase hex
/// and timestamps as RFC 3339 in UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table with a header row.
    #[default]
    Table,
    /// CSV with a header row; lists and structs (headers, redactions) are written as their text
    /// form in one cell.
    Csv,
    /// One JSON object per row (JSON lines); nulls are written as `null`.
    Json,
}

/// Formats query results. `schema` is used for the header when there are no rows.
pub fn format_batches(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<String, ArrowError> {
    match format {
        OutputFormat::Table => Ok(format!(
            "{}\n",
            pretty_format_batches_with_schema(schema.clone(), batches)?
        )),
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = csv::WriterBuilder::new().with_header(true).build(&mut out);
                if batches.is_empty() {
                    writer.write(&RecordBatch::new_empty(flat_schema(schema)))?;
                }
                for batch in batches {
                    writer.write(&flatten(batch)?)?;
                }
            }
            String::from_utf8(out).map_err(|error| ArrowError::CsvError(error.to_string()))
        }
        OutputFormat::Json => {
            let mut out = Vec::new();
            {
                let mut writer = json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, json::writer::LineDelimited>(&mut out);
                for batch in batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
            }
            String::from_utf8(out).map_err(|error| ArrowError::JsonError(error.to_string()))
        }
    }
}

/// Whether CSV can hold a column as it is (otherwise it is written as its display text).
fn csv_native(data_type: &DataType) -> bool {
    !(data_type.is_nested()
        || matches!(
            data_type,
            DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::FixedSizeBinary(_)
                | DataType::Dictionary(..)
        ))
}

fn flat_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| {
            if csv_native(field.data_type()) {
                field.as_ref().clone()
            } else {
                Field::new(field.name(), DataType::Utf8, true)
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Replaces the columns CSV cannot hold by their display text (binary as hex).
fn flatten(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let options = FormatOptions::default().with_display_error(true);
    let schema = flat_schema(&batch.schema());
    let columns = batch
        .columns()
        .iter()
        .map(|column| {
            if csv_native(column.data_type()) {
                return Ok(column.clone());
            }
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)?;
            let mut text = StringBuilder::with_capacity(column.len(), column.len() * 16);
            for row in 0..column.len() {
                if column.is_null(row) {
                    text.append_null();
                } else {
                    text.append_value(formatter.value(row).to_string());
                }
            }
            Ok(Arc::new(text.finish()) as ArrayRef)
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    RecordBatch::try_new(schema, columns)
}
