//! One Arrow cell as the Postgres value we send for it.
//!
//! [`types::pg_type`](super::types::pg_type) picks the Postgres type of a
//! column and [`cell_value`] the [`Value`] variant of its cells; the two agree,
//! so a binary-format cell always carries the Rust type its column's OID
//! promises (pgwire does not check that).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Decimal256Type, Decimal32Type, Decimal64Type,
    DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType, DurationSecondType,
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    IntervalDayTimeType, IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

use super::text;
use crate::error::{PgError, PgResult};

/// A cell, typed as Postgres sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Float4(f32),
    Float8(f64),
    /// `unscaled * 10^-scale`; `unscaled` is decimal digits with an optional `-`.
    Numeric {
        unscaled: String,
        scale: i8,
    },
    Text(String),
    Bytea(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Interval {
        months: i32,
        days: i32,
        micros: i64,
    },
}

impl Value {
    /// The Postgres text format of the value; `None` for SQL NULL.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => if *b { "t" } else { "f" }.to_string(),
            Value::Int2(v) => v.to_string(),
            Value::Int4(v) => v.to_string(),
            Value::Int8(v) => v.to_string(),
            Value::Float4(v) => text::format_f32(*v),
            Value::Float8(v) => text::format_f64(*v),
            Value::Numeric { unscaled, scale } => text::format_decimal(unscaled, *scale),
            Value::Text(s) => s.clone(),
            Value::Bytea(b) => text::format_bytea(b),
            Value::Date(d) => text::format_date(*d),
            Value::Time(t) => text::format_time(*t),
            Value::Timestamp(ts) => text::format_timestamp(*ts),
            Value::TimestampTz(ts) => text::format_timestamptz(*ts),
            Value::Interval {
                months,
                days,
                micros,
            } => text::format_interval(*months, *days, *micros),
        })
    }
}

/// Replaces dictionary-encoded columns by their plain values, so that
/// [`cell_value`] sees the same type [`super::types::pg_type`] describes.
pub fn normalize_column(array: &ArrayRef) -> PgResult<ArrayRef> {
    match array.data_type() {
        DataType::Dictionary(_, value_type) => arrow::compute::cast(array, value_type)
            .map_err(|e| PgError::new("XX000", format!("cannot decode dictionary column: {e}"))),
        _ => Ok(Arc::clone(array)),
    }
}

/// The value of `array[row]`; `array` must have passed [`normalize_column`].
pub fn cell_value(array: &dyn Array, row: usize) -> PgResult<Value> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    Ok(match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Value::Int2(i16::from(array.as_primitive::<Int8Type>().value(row))),
        DataType::Int16 => Value::Int2(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::Int4(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::Int8(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::Int2(i16::from(array.as_primitive::<UInt8Type>().value(row))),
        DataType::UInt16 => Value::Int4(i32::from(array.as_primitive::<UInt16Type>().value(row))),
        DataType::UInt32 => Value::Int8(i64::from(array.as_primitive::<UInt32Type>().value(row))),
        DataType::UInt64 => Value::Numeric {
            unscaled: array.as_primitive::<UInt64Type>().value(row).to_string(),
            scale: 0,
        },
        DataType::Float16 => Value::Float4(array.as_primitive::<Float16Type>().value(row).to_f32()),
        DataType::Float32 => Value::Float4(array.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => Value::Float8(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal32(_, s) => numeric(array.as_primitive::<Decimal32Type>().value(row), *s),
        DataType::Decimal64(_, s) => numeric(array.as_primitive::<Decimal64Type>().value(row), *s),
        DataType::Decimal128(_, s) => {
            numeric(array.as_primitive::<Decimal128Type>().value(row), *s)
        }
        DataType::Decimal256(_, s) => {
            numeric(array.as_primitive::<Decimal256Type>().value(row), *s)
        }
        DataType::Utf8 => Value::Text(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::Text(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::Text(array.as_string_view().value(row).to_string()),
        DataType::Binary => Value::Bytea(array.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => Value::Bytea(array.as_binary::<i64>().value(row).to_vec()),
        DataType::BinaryView => Value::Bytea(array.as_binary_view().value(row).to_vec()),
        DataType::FixedSizeBinary(_) => {
            Value::Bytea(array.as_fixed_size_binary().value(row).to_vec())
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            Value::Date(date_from_days(i64::from(days))?)
        }
        DataType::Date64 => {
            let millis = array.as_primitive::<Date64Type>().value(row);
            Value::Date(date_from_days(millis.div_euclid(86_400_000))?)
        }
        DataType::Time32(unit) => {
            let v = i64::from(match unit {
                TimeUnit::Second => array.as_primitive::<Time32SecondType>().value(row),
                _ => array.as_primitive::<Time32MillisecondType>().value(row),
            });
            Value::Time(time_from_micros(to_micros(v, unit)?)?)
        }
        DataType::Time64(unit) => {
            let v = match unit {
                TimeUnit::Nanosecond => array.as_primitive::<Time64NanosecondType>().value(row),
                _ => array.as_primitive::<Time64MicrosecondType>().value(row),
            };
            Value::Time(time_from_micros(to_micros(v, unit)?)?)
        }
        DataType::Timestamp(unit, tz) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row)
                }
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
            };
            let utc = DateTime::from_timestamp_micros(to_micros(v, unit)?)
                .ok_or_else(|| out_of_range("timestamp"))?;
            match tz {
                Some(_) => Value::TimestampTz(utc),
                None => Value::Timestamp(utc.naive_utc()),
            }
        }
        DataType::Duration(unit) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<DurationSecondType>().value(row),
                TimeUnit::Millisecond => array.as_primitive::<DurationMillisecondType>().value(row),
                TimeUnit::Microsecond => array.as_primitive::<DurationMicrosecondType>().value(row),
                TimeUnit::Nanosecond => array.as_primitive::<DurationNanosecondType>().value(row),
            };
            Value::Interval {
                months: 0,
                days: 0,
                micros: to_micros(v, unit)?,
            }
        }
        DataType::Interval(IntervalUnit::YearMonth) => Value::Interval {
            months: array.as_primitive::<IntervalYearMonthType>().value(row),
            days: 0,
            micros: 0,
        },
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(row);
            Value::Interval {
                months: 0,
                days: v.days,
                micros: i64::from(v.milliseconds) * 1000,
            }
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            Value::Interval {
                months: v.months,
                days: v.days,
                micros: round_nanos(v.nanoseconds),
            }
        }
        _ => Value::Text(display_cell(array, row)?),
    })
}

fn numeric(unscaled: impl ToString, scale: i8) -> Value {
    Value::Numeric {
        unscaled: unscaled.to_string(),
        scale,
    }
}

/// Arrow's own rendering, for types Postgres has no plain equivalent of
/// (lists, structs, maps, ...), sent as `text`.
fn display_cell(array: &dyn Array, row: usize) -> PgResult<String> {
    let formatter = ArrayFormatter::try_new(array, &FormatOptions::default())
        .map_err(|e| PgError::new("XX000", format!("cannot format column: {e}")))?;
    Ok(formatter.value(row).to_string())
}

/// Postgres keeps microseconds; it rounds finer input to the nearest one.
fn round_nanos(nanos: i64) -> i64 {
    nanos.div_euclid(1000) + i64::from(nanos.rem_euclid(1000) >= 500)
}

fn to_micros(v: i64, unit: &TimeUnit) -> PgResult<i64> {
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000),
        TimeUnit::Millisecond => v.checked_mul(1000),
        TimeUnit::Microsecond => Some(v),
        TimeUnit::Nanosecond => Some(round_nanos(v)),
    }
    .ok_or_else(|| out_of_range("timestamp"))
}

fn date_from_days(days: i64) -> PgResult<NaiveDate> {
    let days = i32::try_from(days).map_err(|_| out_of_range("date"))?;
    NaiveDate::from_num_days_from_ce_opt(
        days.checked_add(719_163)
            .ok_or_else(|| out_of_range("date"))?,
    )
    .ok_or_else(|| out_of_range("date"))
}

fn time_from_micros(micros: i64) -> PgResult<NaiveTime> {
    let secs = u32::try_from(micros.div_euclid(1_000_000)).map_err(|_| out_of_range("time"))?;
    let nanos =
        u32::try_from(micros.rem_euclid(1_000_000) * 1000).map_err(|_| out_of_range("time"))?;
    NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos).ok_or_else(|| out_of_range("time"))
}

fn out_of_range(what: &str) -> PgError {
    PgError::new("22008", format!("{what} out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BooleanArray, Date32Array, Decimal128Array, Float64Array, IntervalMonthDayNanoArray,
        StringArray, TimestampMicrosecondArray, TimestampNanosecondArray,
    };
    use arrow::datatypes::IntervalMonthDayNano;

    fn texts(array: &dyn Array) -> Vec<Option<String>> {
        (0..array.len())
            .map(|i| cell_value(array, i).expect("cell").to_text())
            .collect()
    }

    #[test]
    fn arrow_cells_as_postgres_text() {
        let b = BooleanArray::from(vec![Some(true), Some(false), None]);
        assert_eq!(texts(&b), vec![Some("t".into()), Some("f".into()), None]);

        let f = Float64Array::from(vec![3.0, 0.1]);
        assert_eq!(texts(&f), vec![Some("3".into()), Some("0.1".into())]);

        let d = Decimal128Array::from(vec![12345, -5])
            .with_precision_and_scale(10, 2)
            .expect("valid decimal");
        assert_eq!(texts(&d), vec![Some("123.45".into()), Some("-0.05".into())]);

        let s = StringArray::from(vec![Some(""), Some("x"), None]);
        assert_eq!(texts(&s), vec![Some("".into()), Some("x".into()), None]);

        let dates = Date32Array::from(vec![19723]);
        assert_eq!(texts(&dates), vec![Some("2024-01-01".into())]);

        let ts = TimestampMicrosecondArray::from(vec![1_704_067_205_500_000]);
        assert_eq!(texts(&ts), vec![Some("2024-01-01 00:00:05.5".into())]);

        let tstz =
            TimestampNanosecondArray::from(vec![1_704_067_205_000_000_000]).with_timezone("UTC");
        assert_eq!(texts(&tstz), vec![Some("2024-01-01 00:00:05+00".into())]);

        let iv = IntervalMonthDayNanoArray::from(vec![IntervalMonthDayNano::new(
            0,
            1,
            7_200_000_000_000,
        )]);
        assert_eq!(texts(&iv), vec![Some("1 day 02:00:00".into())]);
    }

    #[test]
    fn nanoseconds_round_to_micros() {
        assert_eq!(round_nanos(1499), 1);
        assert_eq!(round_nanos(1500), 2);
        assert_eq!(round_nanos(-1500), -1);
        assert_eq!(round_nanos(-1501), -2);
    }
}
