//! The options of `connector = 'datagen'` (RisingWave-like keys) and the
//! generator they choose for each column:
//!
//! - `rows_per_second` (alias `datagen.rows.per.second`), `number_of_rows`,
//!   `seed`, `splits` (alias `datagen.split.num`);
//! - `fields.<column>.kind` = 'sequence' | 'random', with `start`/`end` for
//!   sequences, `min`/`max` for random numbers and dates, `length` for random
//!   text, and `start`/`rate`/`max_disorder` for timestamps. An option that
//!   does not apply to the column's type and kind is an error.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::compute::kernels::cast_utils::{parse_decimal, string_to_timestamp_nanos, Parser};
use arrow::datatypes::{DataType, Date32Type, Decimal128Type, SchemaRef};

use crate::error::{ConnectorError, Result};
use crate::options::{parse_duration, parse_u64, OptionSet};

const MAX_SPLITS: u64 = 4096;
const MAX_TEXT_LENGTH: u64 = 1 << 20;

/// `connector = 'datagen'`: synthetic rows for tests and benchmarks.
///
/// Every value is a pure function of (`seed`, column index, row number), so
/// any split can generate any share of the rows and resume from a row count.
#[derive(Debug, Clone, PartialEq)]
pub struct DatagenConfig {
    /// Rows per second over all splits (`rows_per_second`, alias
    /// `datagen.rows.per.second`); `None`: as fast as they are read.
    pub rows_per_second: Option<u64>,
    /// Rows in total over all splits; `None`: unbounded unless a sequence ends.
    pub number_of_rows: Option<u64>,
    pub seed: u64,
    /// Split `k` of `splits` generates rows `k, k + splits, k + 2 * splits, …`
    /// (`splits`, alias `datagen.split.num`; default 1).
    pub splits: u32,
    /// One generator per column, in schema order.
    pub columns: Vec<ColumnGen>,
}

impl DatagenConfig {
    /// Rows the source produces in total: the smallest of `number_of_rows`
    /// and the length of every sequence (a sequence ends the source).
    pub fn total_rows(&self) -> Option<u64> {
        let sequences = self.columns.iter().filter_map(|c| match c {
            ColumnGen::Sequence { start, end } => {
                Some(u64::try_from(i128::from(*end) - i128::from(*start) + 1).unwrap_or(u64::MAX))
            }
            _ => None,
        });
        self.number_of_rows.into_iter().chain(sequences).min()
    }
}

/// How one column's values are made (`fields.<column>.kind` and friends).
///
/// The default kind is `random` for every type except timestamps, which are
/// always event time (ascending, with optional disorder), since a stream
/// without a usable event time is rarely what a test wants.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnGen {
    /// Row `n` is `start + n`, up to `end` inclusive (default: the largest
    /// value of the column type). Integers, floats, decimals (whole numbers),
    /// text (the number as digits) and dates (`start`/`end` as dates; stored
    /// here as days since 1970-01-01).
    Sequence {
        start: i64,
        end: i64,
    },
    /// Uniform in `[min, max]` (default 0 and 1000); integers, and dates
    /// (days since 1970-01-01, default 2024-01-01 to 2024-12-31).
    RandomInt {
        min: i64,
        max: i64,
    },
    /// Uniform in `[min, max]` (default 0 and 1000).
    RandomFloat {
        min: f64,
        max: f64,
    },
    /// Uniform over the scaled values in `[min, max]` (default 0 and 1000,
    /// or the largest value of the precision if smaller).
    RandomDecimal {
        min: i128,
        max: i128,
    },
    /// `length` random lowercase letters (default 10).
    RandomText {
        length: usize,
    },
    RandomBool,
    /// Row `n` is at `start + n / rate` seconds (`rate` default 1000, i.e. one
    /// millisecond apart), minus a uniform random amount in
    /// `[0, max_disorder]` (default 0: in order).
    EventTime {
        start_nanos: i64,
        rate: u64,
        max_disorder: Duration,
    },
}

/// Parses the datagen options of a source with the given columns.
pub(crate) fn parse_datagen(opts: &mut OptionSet<'_>, schema: &SchemaRef) -> Result<DatagenConfig> {
    let rows_per_second = opts
        .take_aliased("rows_per_second", "datagen.rows.per.second")?
        .map(|(key, v)| parse_u64(key, v, 1))
        .transpose()?;
    let number_of_rows = opts
        .take("number_of_rows")
        .map(|v| parse_u64("number_of_rows", v, 0))
        .transpose()?;
    let seed = opts
        .take("seed")
        .map(|v| parse_u64("seed", v, 0))
        .transpose()?
        .unwrap_or(0);
    let splits = match opts.take_aliased("splits", "datagen.split.num")? {
        None => 1,
        Some((key, v)) => match v.trim().parse::<u32>() {
            Ok(n) if (1..=MAX_SPLITS).contains(&u64::from(n)) => n,
            _ => {
                return Err(ConnectorError::invalid_value(
                    key,
                    v,
                    format!("expected an integer between 1 and {MAX_SPLITS}"),
                ))
            }
        },
    };

    let mut per_column: Vec<BTreeMap<&str, (&str, &str)>> =
        vec![BTreeMap::new(); schema.fields().len()];
    for key in opts.keys_with_prefix("fields.") {
        let value = opts.take(key).unwrap_or_default();
        let Some((column, attribute)) = key["fields.".len()..].rsplit_once('.') else {
            return Err(ConnectorError::invalid_option(
                key,
                "is not a datagen field option: expected fields.<column>.<attribute>",
            ));
        };
        let index = column_index(schema, column).ok_or_else(|| {
            ConnectorError::invalid_option(key, format!("refers to unknown column \"{column}\""))
        })?;
        per_column[index].insert(attribute, (key, value));
    }

    let columns = schema
        .fields()
        .iter()
        .zip(per_column)
        .map(|(field, attributes)| {
            let mut column = ColumnOptions {
                name: field.name(),
                data_type: field.data_type(),
                attributes,
            };
            let generator = column.generator()?;
            column.finish(&generator)?;
            Ok(generator)
        })
        .collect::<Result<Vec<_>>>()?;

    Ok(DatagenConfig {
        rows_per_second,
        number_of_rows,
        seed,
        splits,
        columns,
    })
}

/// The column a `fields.<column>` key names: exactly, or else ignoring case
/// (keys arrive lower-cased) when that is unambiguous.
fn column_index(schema: &SchemaRef, column: &str) -> Option<usize> {
    let fields = schema.fields();
    if let Some(i) = fields.iter().position(|f| f.name() == column) {
        return Some(i);
    }
    let mut matching = fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name().eq_ignore_ascii_case(column));
    match (matching.next(), matching.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

/// The `fields.<column>.*` options of one column.
struct ColumnOptions<'a> {
    name: &'a str,
    data_type: &'a DataType,
    /// attribute → (full key, value); taken as they are used.
    attributes: BTreeMap<&'a str, (&'a str, &'a str)>,
}

#[derive(PartialEq)]
enum Kind {
    Sequence,
    Random,
}

impl<'a> ColumnOptions<'a> {
    fn take(&mut self, attribute: &str) -> Option<(&'a str, &'a str)> {
        self.attributes.remove(attribute)
    }

    fn kind(&mut self, default: Kind) -> Result<Kind> {
        match self.take("kind") {
            None => Ok(default),
            Some((_, v)) if v.eq_ignore_ascii_case("sequence") => Ok(Kind::Sequence),
            Some((_, v)) if v.eq_ignore_ascii_case("random") => Ok(Kind::Random),
            Some((key, v)) => Err(ConnectorError::invalid_value(
                key,
                v,
                "expected 'sequence' or 'random'",
            )),
        }
    }

    fn generator(&mut self) -> Result<ColumnGen> {
        match self.data_type {
            DataType::Int16 => self.integer(i64::from(i16::MIN), i64::from(i16::MAX)),
            DataType::Int32 => self.integer(i64::from(i32::MIN), i64::from(i32::MAX)),
            DataType::Int64 => self.integer(i64::MIN, i64::MAX),
            DataType::Float32 | DataType::Float64 => match self.kind(Kind::Random)? {
                Kind::Sequence => self.sequence(i64::MIN, i64::MAX),
                Kind::Random => {
                    let min = self.float("min", 0.0)?;
                    let max = self.float("max", 1000.0)?;
                    self.check_order("min", min, "max", max)?;
                    Ok(ColumnGen::RandomFloat { min, max })
                }
            },
            DataType::Decimal128(precision, scale) => self.decimal(*precision, *scale),
            DataType::Utf8 => match self.kind(Kind::Random)? {
                Kind::Sequence => self.sequence(i64::MIN, i64::MAX),
                Kind::Random => {
                    let length = match self.take("length") {
                        None => 10,
                        Some((key, v)) => match v.trim().parse::<u64>() {
                            Ok(n) if n <= MAX_TEXT_LENGTH => n as usize,
                            _ => {
                                return Err(ConnectorError::invalid_value(
                                    key,
                                    v,
                                    format!("expected an integer between 0 and {MAX_TEXT_LENGTH}"),
                                ))
                            }
                        },
                    };
                    Ok(ColumnGen::RandomText { length })
                }
            },
            DataType::Boolean => match self.kind(Kind::Random)? {
                Kind::Random => Ok(ColumnGen::RandomBool),
                Kind::Sequence => Err(self.unsupported_kind("sequence", "random")),
            },
            DataType::Date32 => self.date(),
            DataType::Timestamp(_, None) => self.event_time(),
            other => Err(ConnectorError::UnsupportedType {
                connector: "datagen",
                column: self.name.to_string(),
                data_type: other.clone(),
            }),
        }
    }

    fn integer(&mut self, lo: i64, hi: i64) -> Result<ColumnGen> {
        match self.kind(Kind::Random)? {
            Kind::Sequence => self.sequence(lo, hi),
            Kind::Random => {
                let min = self.int("min", 0.clamp(lo, hi), lo, hi)?;
                let max = self.int("max", 1000.clamp(lo, hi), lo, hi)?;
                self.check_order("min", min, "max", max)?;
                Ok(ColumnGen::RandomInt { min, max })
            }
        }
    }

    /// A sequence of whole numbers within `[lo, hi]`; `end` defaults to `hi`.
    fn sequence(&mut self, lo: i64, hi: i64) -> Result<ColumnGen> {
        let start = self.int("start", 1.clamp(lo, hi), lo, hi)?;
        let end = self.int("end", hi, lo, hi)?;
        self.check_order("start", start, "end", end)?;
        Ok(ColumnGen::Sequence { start, end })
    }

    fn decimal(&mut self, precision: u8, scale: i8) -> Result<ColumnGen> {
        // The largest scaled value the precision holds, and its whole part.
        let max_raw = 10_i128
            .checked_pow(u32::from(precision))
            .map_or(i128::MAX, |p| p - 1);
        let unit = if scale >= 0 {
            10_i128.checked_pow(scale.unsigned_abs().into())
        } else {
            None
        };
        match self.kind(Kind::Random)? {
            Kind::Sequence => {
                let Some(unit) = unit else {
                    return Err(self.unsupported_kind("sequence", "random"));
                };
                let hi = i64::try_from(max_raw / unit).unwrap_or(i64::MAX);
                self.sequence(-hi, hi)
            }
            Kind::Random => {
                let default_max = unit
                    .and_then(|u| u.checked_mul(1000))
                    .map_or(max_raw, |v| v.min(max_raw));
                let parse = |this: &mut Self, attribute: &str, default: i128| match this
                    .take(attribute)
                {
                    None => Ok(default),
                    Some((key, v)) => parse_decimal::<Decimal128Type>(v.trim(), precision, scale)
                        .map_err(|_| {
                            ConnectorError::invalid_value(
                                key,
                                v,
                                format!(
                                    "expected a number that fits decimal({precision}, {scale})"
                                ),
                            )
                        }),
                };
                let min = parse(self, "min", 0)?;
                let max = parse(self, "max", default_max)?;
                self.check_order("min", min, "max", max)?;
                Ok(ColumnGen::RandomDecimal { min, max })
            }
        }
    }

    fn date(&mut self) -> Result<ColumnGen> {
        let parse = |this: &mut Self, attribute: &str, default: i64| match this.take(attribute) {
            None => Ok(default),
            Some((key, v)) => Date32Type::parse(v.trim()).map(i64::from).ok_or_else(|| {
                ConnectorError::invalid_value(key, v, "expected a date such as '2024-01-01'")
            }),
        };
        // 2024-01-01 and 2024-12-31 as days since 1970-01-01.
        const JAN_1_2024: i64 = 19723;
        match self.kind(Kind::Random)? {
            Kind::Sequence => {
                let start = parse(self, "start", JAN_1_2024)?;
                let end = parse(self, "end", i64::from(i32::MAX))?;
                self.check_order("start", start, "end", end)?;
                Ok(ColumnGen::Sequence { start, end })
            }
            Kind::Random => {
                let min = parse(self, "min", JAN_1_2024)?;
                let max = parse(self, "max", JAN_1_2024 + 365)?;
                self.check_order("min", min, "max", max)?;
                Ok(ColumnGen::RandomInt { min, max })
            }
        }
    }

    fn event_time(&mut self) -> Result<ColumnGen> {
        if self.kind(Kind::Sequence)? == Kind::Random {
            return Err(self.unsupported_kind("random", "sequence"));
        }
        let start_nanos = match self.take("start") {
            None => string_to_timestamp_nanos("2024-01-01 00:00:00").unwrap_or(0),
            Some((key, v)) => string_to_timestamp_nanos(v.trim()).map_err(|_| {
                ConnectorError::invalid_value(
                    key,
                    v,
                    "expected a timestamp such as '2024-01-01 00:00:00'",
                )
            })?,
        };
        let rate = match self.take("rate") {
            None => 1000,
            Some((key, v)) => parse_u64(key, v, 1)?,
        };
        let max_disorder = match self.take("max_disorder") {
            None => Duration::ZERO,
            Some((key, v)) => parse_duration(key, v, true)?,
        };
        Ok(ColumnGen::EventTime {
            start_nanos,
            rate,
            max_disorder,
        })
    }

    fn int(&mut self, attribute: &str, default: i64, lo: i64, hi: i64) -> Result<i64> {
        match self.take(attribute) {
            None => Ok(default),
            Some((key, v)) => match v.trim().parse::<i64>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => Err(ConnectorError::invalid_value(
                    key,
                    v,
                    format!("expected an integer between {lo} and {hi}"),
                )),
            },
        }
    }

    fn float(&mut self, attribute: &str, default: f64) -> Result<f64> {
        match self.take(attribute) {
            None => Ok(default),
            Some((key, v)) => match v.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(n),
                _ => Err(ConnectorError::invalid_value(
                    key,
                    v,
                    "expected a finite number",
                )),
            },
        }
    }

    fn check_order<T: PartialOrd>(
        &self,
        low: &str,
        low_value: T,
        high: &str,
        high_value: T,
    ) -> Result<()> {
        if low_value > high_value {
            return Err(ConnectorError::invalid_option(
                &format!("fields.{}.{low}", self.name),
                format!(
                    "must not be greater than option \"fields.{}.{high}\"",
                    self.name
                ),
            ));
        }
        Ok(())
    }

    fn unsupported_kind(&self, kind: &str, supported: &str) -> ConnectorError {
        ConnectorError::invalid_value(
            &format!("fields.{}.kind", self.name),
            kind,
            format!(
                "column \"{}\" of type {} only supports kind '{supported}'",
                self.name, self.data_type
            ),
        )
    }

    /// Fails on an attribute the chosen generator did not use.
    fn finish(&self, generator: &ColumnGen) -> Result<()> {
        const KNOWN: [&str; 8] = [
            "kind",
            "start",
            "end",
            "min",
            "max",
            "length",
            "rate",
            "max_disorder",
        ];
        let Some((attribute, (key, _))) = self.attributes.iter().next() else {
            return Ok(());
        };
        if !KNOWN.contains(attribute) {
            return Err(ConnectorError::invalid_option(
                key,
                format!(
                    "is not a datagen field option: expected one of {}",
                    KNOWN.join(", ")
                ),
            ));
        }
        let kind = match generator {
            ColumnGen::Sequence { .. } | ColumnGen::EventTime { .. } => "sequence",
            _ => "random",
        };
        Err(ConnectorError::invalid_option(
            key,
            format!(
                "does not apply to column \"{}\" of type {} with kind '{kind}'",
                self.name, self.data_type
            ),
        ))
    }
}
