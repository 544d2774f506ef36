//! Event-time values: watermarks are microseconds since the Unix epoch,
//! whatever unit a timestamp column stores.

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::compute::kernels::aggregate::max;
use arrow::datatypes::{
    DataType, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::ScalarValue;

/// The watermark that closes everything: a bounded input has ended.
pub const END_OF_TIME: i64 = i64::MAX;

fn to_micros(value: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => value.saturating_mul(1_000_000),
        TimeUnit::Millisecond => value.saturating_mul(1000),
        TimeUnit::Microsecond => value,
        TimeUnit::Nanosecond => value.div_euclid(1000),
    }
}

/// `micros` in `unit`, rounded up so the value is never before `micros`.
fn from_micros(micros: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => {
            micros.div_euclid(1_000_000) + i64::from(micros.rem_euclid(1_000_000) != 0)
        }
        TimeUnit::Millisecond => micros.div_euclid(1000) + i64::from(micros.rem_euclid(1000) != 0),
        TimeUnit::Microsecond => micros,
        TimeUnit::Nanosecond => micros.saturating_mul(1000),
    }
}

/// The latest non-null time in a timestamp column, in microseconds.
pub fn max_micros(array: &ArrayRef) -> Option<i64> {
    let DataType::Timestamp(unit, _) = array.data_type() else {
        return None;
    };
    let value = match unit {
        TimeUnit::Second => max(array.as_primitive::<TimestampSecondType>()),
        TimeUnit::Millisecond => max(array.as_primitive::<TimestampMillisecondType>()),
        TimeUnit::Microsecond => max(array.as_primitive::<TimestampMicrosecondType>()),
        TimeUnit::Nanosecond => max(array.as_primitive::<TimestampNanosecondType>()),
    }?;
    Some(to_micros(value, *unit))
}

/// Each row's time in microseconds (`None` for NULL or a non-timestamp column).
pub fn micros_at(array: &dyn Array, row: usize) -> Option<i64> {
    if array.is_null(row) {
        return None;
    }
    let DataType::Timestamp(unit, _) = array.data_type() else {
        return None;
    };
    let value = match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(row),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row),
    };
    Some(to_micros(value, *unit))
}

/// A timestamp column's times in microseconds, NULLs kept (`None` for a
/// column that is not a timestamp).
pub fn micros_array(array: &dyn Array) -> Option<Int64Array> {
    let DataType::Timestamp(unit, _) = array.data_type() else {
        return None;
    };
    let unit = *unit;
    Some(match unit {
        TimeUnit::Second => array
            .as_primitive::<TimestampSecondType>()
            .unary(|v| to_micros(v, unit)),
        TimeUnit::Millisecond => array
            .as_primitive::<TimestampMillisecondType>()
            .unary(|v| to_micros(v, unit)),
        TimeUnit::Microsecond => array
            .as_primitive::<TimestampMicrosecondType>()
            .reinterpret_cast::<Int64Type>(),
        TimeUnit::Nanosecond => array
            .as_primitive::<TimestampNanosecondType>()
            .unary(|v| to_micros(v, unit)),
    })
}

/// A timestamp scalar's time in microseconds.
pub fn scalar_micros(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => Some(to_micros(*v, TimeUnit::Second)),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some(to_micros(*v, TimeUnit::Millisecond)),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(to_micros(*v, TimeUnit::Nanosecond)),
        _ => None,
    }
}

/// A one-value array of `data_type` (a timestamp) holding `micros`.
pub fn timestamp_array(micros: i64, data_type: &DataType) -> Option<ArrayRef> {
    let DataType::Timestamp(unit, tz) = data_type else {
        return None;
    };
    let v = Some(from_micros(micros, *unit));
    let scalar = match unit {
        TimeUnit::Second => ScalarValue::TimestampSecond(v, tz.clone()),
        TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(v, tz.clone()),
        TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(v, tz.clone()),
        TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(v, tz.clone()),
    };
    scalar.to_array().ok()
}

/// Timestamps of type `data_type` at each of `micros` (µs since the epoch);
/// `None` when `data_type` is not a timestamp.
pub fn timestamps_array(
    micros: impl IntoIterator<Item = i64>,
    data_type: &DataType,
) -> Option<ArrayRef> {
    let DataType::Timestamp(unit, _) = data_type else {
        return None;
    };
    let values = Int64Array::from_iter_values(micros.into_iter().map(|m| from_micros(m, *unit)));
    // From integers, a cast keeps the values and takes the time zone.
    arrow::compute::cast(&values, data_type).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_round_trip_without_moving_earlier() {
        assert_eq!(to_micros(-1, TimeUnit::Nanosecond), -1);
        assert_eq!(from_micros(1, TimeUnit::Millisecond), 1);
        assert_eq!(from_micros(-1500, TimeUnit::Millisecond), -1);
        assert_eq!(
            to_micros(
                from_micros(7_000, TimeUnit::Nanosecond),
                TimeUnit::Nanosecond
            ),
            7_000
        );
    }
}
