//! Statement results as pgwire responses: rows as DataRows in the text or
//! binary format each column was asked in, tags and errors as-is.

use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use pg_interval::Interval;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use rust_decimal::Decimal;

use super::types;
use super::value::{cell_value, normalize_column, Value};
use crate::error::{PgError, PgResult};
use crate::result::{RowStream, StatementResult};

/// The response for one statement's result; `format` picks text or binary
/// per result column (always text in the simple protocol).
pub fn response(result: StatementResult, format: &Format) -> PgResult<Response> {
    Ok(match result {
        StatementResult::Rows { schema, batches } => {
            Response::Query(query_response(&schema, &batches, format)?)
        }
        StatementResult::Stream { schema, rows } => {
            Response::Query(streamed_response(&schema, rows, format))
        }
        // A tag without rows or OID goes out verbatim, so the client sees
        // exactly the tag the database chose (`INSERT 0 3`, `CREATE TABLE`).
        StatementResult::Command(tag) => Response::Execution(Tag::new(&tag)),
        StatementResult::Empty => Response::EmptyQuery,
    })
}

/// Encodes all rows up front: results are already materialized, and an
/// encoding error must become an ErrorResponse before any DataRow is sent.
fn query_response(
    schema: &Schema,
    batches: &[RecordBatch],
    format: &Format,
) -> PgResult<QueryResponse> {
    let fields = Arc::new(types::fields(schema, format));
    let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
    let mut rows: Vec<PgWireResult<DataRow>> = Vec::new();
    for batch in batches {
        rows.extend(
            encode_batch(&mut encoder, &fields, batch)?
                .into_iter()
                .map(Ok),
        );
    }
    Ok(QueryResponse::new(fields, futures::stream::iter(rows)))
}

/// Encodes each batch as it is read: the answer is never held whole. An
/// error reading or encoding a batch ends the rows with an ErrorResponse.
fn streamed_response(schema: &Schema, rows: RowStream, format: &Format) -> QueryResponse {
    let fields = Arc::new(types::fields(schema, format));
    let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
    let encoded = Arc::clone(&fields);
    let rows = rows
        .0
        .map(move |batch| {
            let rows: Vec<PgWireResult<DataRow>> =
                match batch.and_then(|b| encode_batch(&mut encoder, &encoded, &b)) {
                    Ok(rows) => rows.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(wire_error(e))],
                };
            futures::stream::iter(rows)
        })
        .flatten();
    QueryResponse::new(fields, rows)
}

/// One batch's rows as DataRows.
fn encode_batch(
    encoder: &mut DataRowEncoder,
    fields: &[FieldInfo],
    batch: &RecordBatch,
) -> PgResult<Vec<DataRow>> {
    let columns = batch
        .columns()
        .iter()
        .map(normalize_column)
        .collect::<PgResult<Vec<_>>>()?;
    if columns.len() != fields.len() {
        return Err(PgError::new(
            "XX000",
            format!(
                "result has {} columns, schema {}",
                columns.len(),
                fields.len()
            ),
        ));
    }
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for (column, field) in columns.iter().zip(fields.iter()) {
            let value = cell_value(column.as_ref(), row)?;
            encode_value(encoder, field, &value)?;
        }
        rows.push(encoder.take_row());
    }
    Ok(rows)
}

fn encode_value(encoder: &mut DataRowEncoder, field: &FieldInfo, value: &Value) -> PgResult<()> {
    let result = match field.format() {
        FieldFormat::Text => encoder.encode_field(&value.to_text()),
        FieldFormat::Binary => encode_binary(encoder, value)?,
    };
    result.map_err(|e| {
        PgError::new(
            "XX000",
            format!("cannot encode column {}: {e}", field.name()),
        )
    })
}

/// Binary format: the Rust type must be exactly the one for the column's OID
/// (see [`types::pg_type`]), as pgwire writes it unchecked.
fn encode_binary(encoder: &mut DataRowEncoder, value: &Value) -> PgResult<PgWireResult<()>> {
    Ok(match value {
        Value::Null => encoder.encode_field(&None::<i32>),
        Value::Bool(v) => encoder.encode_field(v),
        Value::Int2(v) => encoder.encode_field(v),
        Value::Int4(v) => encoder.encode_field(v),
        Value::Int8(v) => encoder.encode_field(v),
        Value::Float4(v) => encoder.encode_field(v),
        Value::Float8(v) => encoder.encode_field(v),
        Value::Numeric { .. } => {
            let text = value.to_text().unwrap_or_default();
            let decimal = Decimal::from_str_exact(&text).map_err(|_| {
                PgError::new(
                    "22003",
                    format!(
                        "numeric value {text} does not fit the binary format (at most 28 digits)"
                    ),
                )
            })?;
            encoder.encode_field(&decimal)
        }
        Value::Text(v) => encoder.encode_field(v),
        Value::Bytea(v) => encoder.encode_field(v),
        Value::Date(v) => encoder.encode_field(v),
        Value::Time(v) => encoder.encode_field(v),
        Value::Timestamp(v) => encoder.encode_field(v),
        Value::TimestampTz(v) => encoder.encode_field(v),
        Value::Interval {
            months,
            days,
            micros,
        } => encoder.encode_field(&Interval::new(*months, *days, *micros)),
    })
}

/// A [`PgError`] as the ErrorResponse fields a client sees.
pub fn error_info(err: PgError) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".to_string(), err.code, err.message);
    info.detail = err.detail;
    info.hint = err.hint;
    info.position = err.position.map(|p| p.to_string());
    info
}

/// A [`PgError`] as the error an extended-protocol handler returns.
pub fn wire_error(err: PgError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(err)))
}
