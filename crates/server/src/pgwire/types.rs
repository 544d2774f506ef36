//! Arrow types as Postgres type OIDs, result columns as `FieldInfo`s, and
//! bound parameters as `ScalarValue`s.

use arrow::datatypes::{DataType, IntervalMonthDayNano, Schema};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use datafusion::common::ScalarValue;
use pg_interval::Interval;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::PgWireError;
use rust_decimal::Decimal;

use crate::error::{PgError, PgResult};

/// The Postgres type a column of `dt` is sent as.
pub fn pg_type(dt: &DataType) -> Type {
    match dt {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64 => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Interval(_) | DataType::Duration(_) => Type::INTERVAL,
        DataType::Dictionary(_, value) => pg_type(value),
        // Utf8 / LargeUtf8 / Utf8View, Null, and anything sent as its display text.
        _ => Type::TEXT,
    }
}

/// `format.format_for(idx)`, but text rather than a panic when the client
/// sent fewer per-column codes than there are columns.
pub fn column_format(format: &Format, idx: usize) -> FieldFormat {
    match format {
        Format::Individual(codes) => codes
            .get(idx)
            .map_or(FieldFormat::Text, |code| FieldFormat::from(*code)),
        other => other.format_for(idx),
    }
}

/// The RowDescription of `schema`, each column in the format the client asked for.
pub fn fields(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                column_format(format, i),
            )
        })
        .collect()
}

/// The parameters bound to `portal`, as the statement expects them.
///
/// `types` are the parameter types given at Parse or inferred by describe,
/// one per `$n`; `expected` the Arrow types describe inferred (used to cast a
/// value the client sent under another type, e.g. `int8` for an `int4` slot).
pub fn decode_params<S: Clone>(
    portal: &Portal<S>,
    types: &[Type],
    expected: &[DataType],
) -> PgResult<Vec<ScalarValue>> {
    if portal.parameter_len() != types.len() {
        return Err(PgError::new(
            "08P01",
            format!(
                "bind message supplies {} parameters, but prepared statement requires {}",
                portal.parameter_len(),
                types.len()
            ),
        ));
    }
    types
        .iter()
        .enumerate()
        .map(|(i, ty)| {
            let value = decode_param(portal, i, ty)?;
            match expected.get(i) {
                Some(want) if value.data_type() != *want => value.cast_to(want).map_err(|e| {
                    PgError::new(
                        "22P02",
                        format!("invalid value for parameter ${}: {e}", i + 1),
                    )
                }),
                _ => Ok(value),
            }
        })
        .collect()
}

fn decode_param<S: Clone>(portal: &Portal<S>, idx: usize, ty: &Type) -> PgResult<ScalarValue> {
    let bad = |e: PgWireError| {
        PgError::new(
            if portal.parameter_format.is_binary(idx) {
                "22P03"
            } else {
                "22P02"
            },
            format!(
                "invalid value for parameter ${} of type {}: {e}",
                idx + 1,
                ty.name()
            ),
        )
    };
    Ok(match *ty {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(idx, ty).map_err(bad)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(idx, ty).map_err(bad)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(idx, ty).map_err(bad)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(idx, ty).map_err(bad)?),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(idx, ty).map_err(bad)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(idx, ty).map_err(bad)?),
        Type::NUMERIC => match portal.parameter::<Decimal>(idx, ty).map_err(bad)? {
            // rust_decimal keeps at most 28 fractional digits, so the scale fits.
            Some(d) => ScalarValue::Decimal128(Some(d.mantissa()), 38, d.scale() as i8),
            None => ScalarValue::Decimal128(None, 38, 10),
        },
        Type::DATE => ScalarValue::Date32(
            portal
                .parameter::<NaiveDate>(idx, ty)
                .map_err(bad)?
                .map(|d| (d - epoch_date()).num_days() as i32),
        ),
        Type::TIME => ScalarValue::Time64Microsecond(
            portal
                .parameter::<NaiveTime>(idx, ty)
                .map_err(bad)?
                .map(|t| (t - NaiveTime::MIN).num_microseconds().unwrap_or(0)),
        ),
        Type::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<NaiveDateTime>(idx, ty)
                .map_err(bad)?
                .map(|ts| ts.and_utc().timestamp_micros()),
            None,
        ),
        Type::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            portal
                .parameter::<DateTime<FixedOffset>>(idx, ty)
                .map_err(bad)?
                .map(|ts| ts.timestamp_micros()),
            Some("+00:00".into()),
        ),
        Type::INTERVAL => ScalarValue::IntervalMonthDayNano(
            portal
                .parameter::<Interval>(idx, ty)
                .map_err(bad)?
                .map(|iv| {
                    IntervalMonthDayNano::new(
                        iv.months,
                        iv.days,
                        iv.microseconds.saturating_mul(1000),
                    )
                }),
        ),
        Type::BYTEA => ScalarValue::Binary(portal.parameter::<Vec<u8>>(idx, ty).map_err(bad)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            ScalarValue::Utf8(portal.parameter::<String>(idx, ty).map_err(bad)?)
        }
        _ => {
            return Err(PgError::new(
                "0A000",
                format!("parameters of type {} are not supported", ty.name()),
            ))
        }
    })
}

fn epoch_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN)
}
