//! Values of one generated column for a list of row numbers: a pure function
//! of (seed, column index, row number), so any split can make any row.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};

use super::config::ColumnGen;

/// The splitmix64 finalizer: a cheap, well-mixed 64-bit hash step.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random word of one cell.
pub(crate) fn cell_hash(seed: u64, column: usize, row: u64) -> u64 {
    splitmix64(splitmix64(splitmix64(seed).wrapping_add(column as u64)).wrapping_add(row))
}

/// Uniform in `[min, max]` (requires `min <= max`).
fn uniform_i64(hash: u64, min: i64, max: i64) -> i64 {
    let range = (i128::from(max) - i128::from(min) + 1) as u128;
    let offset = (u128::from(hash) * range) >> 64;
    (i128::from(min) + offset as i128) as i64
}

fn uniform_f64(hash: u64, min: f64, max: f64) -> f64 {
    let unit = (hash >> 11) as f64 / (1_u64 << 53) as f64;
    min + unit * (max - min)
}

fn uniform_i128(hash: u64, min: i128, max: i128) -> i128 {
    let range = max.abs_diff(min).saturating_add(1);
    let wide = (u128::from(hash) << 64) | u128::from(splitmix64(hash));
    min.wrapping_add_unsigned(wide % range)
}

fn letters(hash: u64, length: usize) -> String {
    let mut text = String::with_capacity(length);
    let mut word = 0;
    for i in 0..length {
        if i % 12 == 0 {
            word = splitmix64(hash.wrapping_add(i as u64));
        }
        text.push(char::from(b'a' + (word % 26) as u8));
        word /= 26;
    }
    text
}

/// Builds the column for global `rows`; an error message when a value does
/// not fit the column type (only possible for event times far in the future).
pub(crate) fn generate(
    generator: &ColumnGen,
    data_type: &DataType,
    seed: u64,
    column: usize,
    rows: &[u64],
) -> Result<ArrayRef, String> {
    let hashes = || rows.iter().map(|&row| cell_hash(seed, column, row));
    let array: ArrayRef = match generator {
        ColumnGen::Sequence { start, .. } => {
            // The reader never goes past the sequence's end.
            let values = rows.iter().map(|&row| start.saturating_add_unsigned(row));
            match data_type {
                DataType::Int16 => Arc::new(Int16Array::from_iter_values(values.map(|v| v as i16))),
                DataType::Int32 => Arc::new(Int32Array::from_iter_values(values.map(|v| v as i32))),
                DataType::Int64 => Arc::new(Int64Array::from_iter_values(values)),
                DataType::Float32 => {
                    Arc::new(Float32Array::from_iter_values(values.map(|v| v as f32)))
                }
                DataType::Float64 => {
                    Arc::new(Float64Array::from_iter_values(values.map(|v| v as f64)))
                }
                DataType::Decimal128(precision, scale) => {
                    let unit = 10_i128.saturating_pow(u32::from(scale.unsigned_abs()));
                    let values = values.map(|v| i128::from(v).saturating_mul(unit));
                    decimal(values, *precision, *scale)?
                }
                DataType::Utf8 => {
                    Arc::new(StringArray::from_iter_values(values.map(|v| v.to_string())))
                }
                DataType::Date32 => {
                    Arc::new(Date32Array::from_iter_values(values.map(|v| v as i32)))
                }
                other => return Err(format!("cannot generate a sequence of type {other}")),
            }
        }
        ColumnGen::RandomInt { min, max } => {
            let values = hashes().map(|h| uniform_i64(h, *min, *max));
            match data_type {
                DataType::Int16 => Arc::new(Int16Array::from_iter_values(values.map(|v| v as i16))),
                DataType::Int32 => Arc::new(Int32Array::from_iter_values(values.map(|v| v as i32))),
                DataType::Int64 => Arc::new(Int64Array::from_iter_values(values)),
                DataType::Date32 => {
                    Arc::new(Date32Array::from_iter_values(values.map(|v| v as i32)))
                }
                other => return Err(format!("cannot generate random integers of type {other}")),
            }
        }
        ColumnGen::RandomFloat { min, max } => {
            let values = hashes().map(|h| uniform_f64(h, *min, *max));
            match data_type {
                DataType::Float32 => {
                    Arc::new(Float32Array::from_iter_values(values.map(|v| v as f32)))
                }
                _ => Arc::new(Float64Array::from_iter_values(values)),
            }
        }
        ColumnGen::RandomDecimal { min, max } => match data_type {
            DataType::Decimal128(precision, scale) => decimal(
                hashes().map(|h| uniform_i128(h, *min, *max)),
                *precision,
                *scale,
            )?,
            other => return Err(format!("cannot generate decimals of type {other}")),
        },
        ColumnGen::RandomText { length } => Arc::new(StringArray::from_iter_values(
            hashes().map(|h| letters(h, *length)),
        )),
        ColumnGen::RandomBool => {
            Arc::new(BooleanArray::from_iter(hashes().map(|h| Some(h & 1 == 1))))
        }
        ColumnGen::EventTime {
            start_nanos,
            rate,
            max_disorder,
        } => {
            let DataType::Timestamp(unit, None) = data_type else {
                return Err(format!("cannot generate event times of type {data_type}"));
            };
            let max_disorder = max_disorder.as_nanos();
            let divisor: i128 = match unit {
                TimeUnit::Second => 1_000_000_000,
                TimeUnit::Millisecond => 1_000_000,
                TimeUnit::Microsecond => 1_000,
                TimeUnit::Nanosecond => 1,
            };
            let values = rows
                .iter()
                .zip(hashes())
                .map(|(&row, hash)| {
                    let in_order = i128::from(*start_nanos)
                        + i128::from(row) * 1_000_000_000 / i128::from(*rate);
                    let disorder = if max_disorder == 0 {
                        0
                    } else {
                        (u128::from(splitmix64(hash)) % (max_disorder + 1)) as i128
                    };
                    let value = (in_order - disorder).div_euclid(divisor);
                    i64::try_from(value).map_err(|_| {
                        format!("event time of row {row} is out of the timestamp range")
                    })
                })
                .collect::<Result<Vec<i64>, String>>()?;
            match unit {
                TimeUnit::Second => Arc::new(TimestampSecondArray::from(values)),
                TimeUnit::Millisecond => Arc::new(TimestampMillisecondArray::from(values)),
                TimeUnit::Microsecond => Arc::new(TimestampMicrosecondArray::from(values)),
                TimeUnit::Nanosecond => Arc::new(TimestampNanosecondArray::from(values)),
            }
        }
    };
    Ok(array)
}

fn decimal(
    values: impl Iterator<Item = i128>,
    precision: u8,
    scale: i8,
) -> Result<ArrayRef, String> {
    let array = Decimal128Array::from_iter_values(values)
        .with_precision_and_scale(precision, scale)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_stays_in_range() {
        for row in 0..1000 {
            let h = cell_hash(7, 1, row);
            assert!((-3..=3).contains(&uniform_i64(h, -3, 3)));
            assert!((0.5..=1.5).contains(&uniform_f64(h, 0.5, 1.5)));
            assert!((-99..=99).contains(&uniform_i128(h, -99, 99)));
        }
        assert_eq!(uniform_i64(u64::MAX, i64::MIN, i64::MAX), i64::MAX);
        assert_eq!(uniform_i64(0, i64::MIN, i64::MAX), i64::MIN);
        let text = letters(cell_hash(0, 0, 0), 30);
        assert_eq!(text.len(), 30);
        assert!(text.bytes().all(|b| b.is_ascii_lowercase()));
    }
}
