//! The WITH options of `CREATE SOURCE`, parsed once into typed configs so that
//! every mistake is reported at definition time, naming the option.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use arrow::datatypes::{DataType, SchemaRef};

use crate::datagen::{parse_datagen, DatagenConfig};
use crate::error::{ConnectorError, Result};
use crate::glob;

const KNOWN_CONNECTORS: &str = "'file', 'datagen'";

/// Parsed, validated WITH options of a `CREATE SOURCE`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    pub connector: ConnectorConfig,
    /// How long a source may produce nothing before the runtime treats it as
    /// idle (so it does not hold back watermarks); `None`: never idle.
    pub idle_timeout: Option<Duration>,
}

/// Which connector reads the source, with its own options.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectorConfig {
    File(FileConfig),
    Datagen(DatagenConfig),
}

/// `connector = 'file'`: one or more local files of CSV or JSON lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// A file path, or a glob whose wildcards (`*`, `?`) are in the file name only.
    pub path: String,
    pub format: FileFormat,
    /// Keep reading appended lines at end of file instead of finishing.
    pub watch: bool,
    pub on_error: OnError,
}

/// How the lines of a file are decoded. Every record is exactly one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// `header`: the first non-empty line of each file names the columns and
    /// is skipped (columns are matched by position, not by name).
    Csv { header: bool, delimiter: u8 },
    /// One JSON object per line; keys are matched to column names, missing
    /// keys are null, extra keys are ignored; numbers and booleans are
    /// accepted for text columns.
    Json,
}

/// What to do with a line that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Drop the line, count it and log a (rate-limited) warning.
    Skip,
    /// Stop the source with an error naming the file and line.
    Fail,
}

/// Validates the WITH options of a source against its columns.
///
/// Keys must already be lower-cased; values are the raw strings. Unknown keys
/// are refused so that typos do not silently fall back to defaults.
pub fn parse_options(
    options: &BTreeMap<String, String>,
    schema: &SchemaRef,
) -> Result<SourceConfig> {
    let mut opts = OptionSet::new(options);
    let connector = opts
        .take("connector")
        .ok_or_else(|| ConnectorError::MissingOption {
            option: "connector".to_string(),
        })?;
    let idle_timeout = opts
        .take("idle_timeout")
        .map(|v| parse_duration("idle_timeout", v, false))
        .transpose()?;
    let connector = match connector.to_ascii_lowercase().as_str() {
        "file" => {
            check_types("file", schema)?;
            ConnectorConfig::File(parse_file(&mut opts)?)
        }
        "datagen" => {
            check_types("datagen", schema)?;
            ConnectorConfig::Datagen(parse_datagen(&mut opts, schema)?)
        }
        _ => {
            return Err(ConnectorError::UnknownConnector {
                name: connector.to_string(),
                known: KNOWN_CONNECTORS,
            })
        }
    };
    let name = match connector {
        ConnectorConfig::File(_) => "file",
        ConnectorConfig::Datagen(_) => "datagen",
    };
    opts.finish(name)?;
    Ok(SourceConfig {
        connector,
        idle_timeout,
    })
}

fn parse_file(opts: &mut OptionSet<'_>) -> Result<FileConfig> {
    let path = opts
        .take("path")
        .ok_or_else(|| ConnectorError::MissingOption {
            option: "path".to_string(),
        })?;
    if path.trim().is_empty() {
        return Err(ConnectorError::invalid_value(
            "path",
            path,
            "expected a file path or a glob such as '/data/bids-*.csv'",
        ));
    }
    glob::validate(path)?;
    let csv = match opts.take("format") {
        None => true,
        Some(v) if v.eq_ignore_ascii_case("csv") => true,
        Some(v) if v.eq_ignore_ascii_case("json") => false,
        Some(v) => {
            return Err(ConnectorError::invalid_value(
                "format",
                v,
                "expected 'csv' or 'json'",
            ))
        }
    };
    let header = opts.take("header").map(|v| parse_bool("header", v));
    let delimiter = opts
        .take("delimiter")
        .map(|v| parse_delimiter("delimiter", v));
    let format = if csv {
        FileFormat::Csv {
            header: header.transpose()?.unwrap_or(false),
            delimiter: delimiter.transpose()?.unwrap_or(b','),
        }
    } else {
        for (option, given) in [
            ("header", header.is_some()),
            ("delimiter", delimiter.is_some()),
        ] {
            if given {
                return Err(ConnectorError::invalid_option(
                    option,
                    "only applies to format 'csv'",
                ));
            }
        }
        FileFormat::Json
    };
    let watch = opts
        .take("watch")
        .map(|v| parse_bool("watch", v))
        .transpose()?
        .unwrap_or(false);
    let on_error = match opts.take("on_error") {
        None => OnError::Skip,
        Some(v) if v.eq_ignore_ascii_case("skip") => OnError::Skip,
        Some(v) if v.eq_ignore_ascii_case("fail") => OnError::Fail,
        Some(v) => {
            return Err(ConnectorError::invalid_value(
                "on_error",
                v,
                "expected 'skip' or 'fail'",
            ))
        }
    };
    Ok(FileConfig {
        path: path.to_string(),
        format,
        watch,
        on_error,
    })
}

/// Refuses column types the connectors cannot produce, at definition time
/// rather than on the first row.
fn check_types(connector: &'static str, schema: &SchemaRef) -> Result<()> {
    for field in schema.fields() {
        let supported = matches!(
            field.data_type(),
            DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal128(_, _)
                | DataType::Utf8
                | DataType::Boolean
                | DataType::Date32
                | DataType::Timestamp(_, None)
        );
        if !supported {
            return Err(ConnectorError::UnsupportedType {
                connector,
                column: field.name().clone(),
                data_type: field.data_type().clone(),
            });
        }
    }
    Ok(())
}

/// The options of one source, remembering which ones were used so that the
/// rest can be reported as unknown.
pub(crate) struct OptionSet<'a> {
    options: &'a BTreeMap<String, String>,
    used: BTreeSet<&'a str>,
}

impl<'a> OptionSet<'a> {
    fn new(options: &'a BTreeMap<String, String>) -> Self {
        Self {
            options,
            used: BTreeSet::new(),
        }
    }

    /// The value of `key`, marking it used.
    pub(crate) fn take(&mut self, key: &str) -> Option<&'a str> {
        let (key, value) = self.options.get_key_value(key)?;
        self.used.insert(key.as_str());
        Some(value.as_str())
    }

    /// The value of `key` or of its alias (giving both is an error), with the
    /// key that was given.
    pub(crate) fn take_aliased(
        &mut self,
        key: &'static str,
        alias: &'static str,
    ) -> Result<Option<(&'static str, &'a str)>> {
        match (self.take(key), self.take(alias)) {
            (Some(_), Some(_)) => Err(ConnectorError::invalid_option(
                alias,
                format!("conflicts with option \"{key}\": give only one of them"),
            )),
            (Some(v), None) => Ok(Some((key, v))),
            (None, Some(v)) => Ok(Some((alias, v))),
            (None, None) => Ok(None),
        }
    }

    /// Keys starting with `prefix`, in order.
    pub(crate) fn keys_with_prefix(&self, prefix: &str) -> Vec<&'a str> {
        self.options
            .keys()
            .filter(|k| k.starts_with(prefix))
            .map(String::as_str)
            .collect()
    }

    /// Fails on the first option that no parser used.
    fn finish(&self, connector: &'static str) -> Result<()> {
        match self
            .options
            .keys()
            .find(|k| !self.used.contains(k.as_str()))
        {
            Some(option) => Err(ConnectorError::UnknownOption {
                connector,
                option: option.clone(),
            }),
            None => Ok(()),
        }
    }
}

pub(crate) fn parse_bool(option: &str, value: &str) -> Result<bool> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(ConnectorError::invalid_value(
            option,
            value,
            "expected 'true' or 'false'",
        ))
    }
}

/// A duration in humantime syntax ('5s', '500ms', '2 seconds').
pub(crate) fn parse_duration(option: &str, value: &str, allow_zero: bool) -> Result<Duration> {
    let expected = "expected a duration such as '5s', '500ms' or '2 minutes'";
    let duration = humantime::parse_duration(value.trim())
        .map_err(|e| ConnectorError::invalid_value(option, value, format!("{expected} ({e})")))?;
    if duration.is_zero() && !allow_zero {
        return Err(ConnectorError::invalid_value(
            option,
            value,
            "expected a duration greater than zero",
        ));
    }
    Ok(duration)
}

pub(crate) fn parse_u64(option: &str, value: &str, min: u64) -> Result<u64> {
    match value.trim().parse::<u64>() {
        Ok(v) if v >= min => Ok(v),
        _ if min == 0 => Err(ConnectorError::invalid_value(
            option,
            value,
            "expected a non-negative integer",
        )),
        _ => Err(ConnectorError::invalid_value(
            option,
            value,
            format!("expected an integer of at least {min}"),
        )),
    }
}

/// One single-byte character; `\t` is accepted for a tab.
fn parse_delimiter(option: &str, value: &str) -> Result<u8> {
    match value.as_bytes() {
        b"\\t" => Ok(b'\t'),
        [b] if b.is_ascii() && !matches!(b, b'\n' | b'\r' | b'"') => Ok(*b),
        _ => Err(ConnectorError::invalid_value(
            option,
            value,
            "expected a single ASCII character other than a quote or line break",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datagen::ColumnGen;
    use crate::test_util::schema;

    fn parse(options: &[(&str, &str)]) -> Result<SourceConfig> {
        let schema = schema(&[
            ("id", "bigint"),
            ("name", "text"),
            ("price", "decimal"),
            ("ts", "timestamp"),
        ]);
        let options: BTreeMap<String, String> = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_options(&options, &schema)
    }

    fn error(options: &[(&str, &str)]) -> String {
        parse(options).unwrap_err().to_string()
    }

    #[test]
    fn file_options_and_defaults() {
        let config = parse(&[("connector", "file"), ("path", "/data/a.csv")]).unwrap();
        assert_eq!(
            config,
            SourceConfig {
                connector: ConnectorConfig::File(FileConfig {
                    path: "/data/a.csv".into(),
                    format: FileFormat::Csv {
                        header: false,
                        delimiter: b','
                    },
                    watch: false,
                    on_error: OnError::Skip,
                }),
                idle_timeout: None,
            }
        );
        let config = parse(&[
            ("connector", "FILE"),
            ("path", "/data/bids-*.tsv"),
            ("header", "TRUE"),
            ("delimiter", "\\t"),
            ("watch", "true"),
            ("on_error", "fail"),
            ("idle_timeout", "2 seconds"),
        ])
        .unwrap();
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(2)));
        let ConnectorConfig::File(file) = config.connector else {
            panic!("expected a file config");
        };
        assert_eq!(
            file.format,
            FileFormat::Csv {
                header: true,
                delimiter: b'\t'
            }
        );
        assert!(file.watch);
        assert_eq!(file.on_error, OnError::Fail);
    }

    #[test]
    fn option_errors_name_the_option() {
        assert_eq!(
            error(&[("path", "/a.csv")]),
            "option \"connector\" is required"
        );
        assert_eq!(
            error(&[("connector", "kafka")]),
            "unknown connector \"kafka\": expected one of 'file', 'datagen'"
        );
        assert_eq!(
            error(&[("connector", "file"), ("pth", "/a.csv"), ("path", "/a.csv")]),
            "unknown option \"pth\" for connector \"file\""
        );
        assert_eq!(
            error(&[("connector", "file")]),
            "option \"path\" is required"
        );
        assert_eq!(
            error(&[
                ("connector", "file"),
                ("path", "/a.csv"),
                ("header", "maybe")
            ]),
            "invalid value \"maybe\" for option \"header\": expected 'true' or 'false'"
        );
        assert_eq!(
            error(&[("connector", "file"), ("path", "/a.csv"), ("format", "xml")]),
            "invalid value \"xml\" for option \"format\": expected 'csv' or 'json'"
        );
        assert_eq!(
            error(&[
                ("connector", "file"),
                ("path", "/a.json"),
                ("format", "json"),
                ("header", "true")
            ]),
            "option \"header\" only applies to format 'csv'"
        );
        assert_eq!(
            error(&[("connector", "file"), ("path", "/a.csv"), ("delimiter", ";;")]),
            "invalid value \";;\" for option \"delimiter\": expected a single ASCII character other than a quote or line break"
        );
        assert_eq!(
            error(&[
                ("connector", "file"),
                ("path", "/a.csv"),
                ("on_error", "ignore")
            ]),
            "invalid value \"ignore\" for option \"on_error\": expected 'skip' or 'fail'"
        );
        assert!(error(&[
            ("connector", "file"),
            ("path", "/a.csv"),
            ("idle_timeout", "soon")
        ])
        .starts_with("invalid value \"soon\" for option \"idle_timeout\": expected a duration"));
        assert!(error(&[("connector", "file"), ("path", "/*/a.csv")])
            .starts_with("invalid path pattern"));
        assert_eq!(
            error(&[("connector", "datagen"), ("path", "/a.csv")]),
            "unknown option \"path\" for connector \"datagen\""
        );
    }

    #[test]
    fn unsupported_column_type() {
        let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("b", DataType::Binary, true),
        ]));
        let options = BTreeMap::from([("connector".to_string(), "datagen".to_string())]);
        assert_eq!(
            parse_options(&options, &schema).unwrap_err().to_string(),
            "column \"b\" has type Binary, which connector \"datagen\" cannot produce"
        );
    }

    #[test]
    fn datagen_options() {
        let config = parse(&[
            ("connector", "datagen"),
            ("datagen.rows.per.second", "100"),
            ("number_of_rows", "1000"),
            ("seed", "7"),
            ("splits", "4"),
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "10"),
            ("fields.name.length", "3"),
            ("fields.price.min", "1.5"),
            ("fields.price.max", "2"),
            ("fields.ts.start", "2024-06-01T00:00:00Z"),
            ("fields.ts.rate", "10"),
            ("fields.ts.max_disorder", "2s"),
        ])
        .unwrap();
        let ConnectorConfig::Datagen(datagen) = config.connector else {
            panic!("expected a datagen config");
        };
        assert_eq!(datagen.rows_per_second, Some(100));
        assert_eq!(datagen.total_rows(), Some(1000));
        assert_eq!((datagen.seed, datagen.splits), (7, 4));
        assert_eq!(
            datagen.columns,
            [
                ColumnGen::Sequence {
                    start: 10,
                    end: i64::MAX
                },
                ColumnGen::RandomText { length: 3 },
                ColumnGen::RandomDecimal { min: 150, max: 200 },
                ColumnGen::EventTime {
                    start_nanos: 1_717_200_000_000_000_000,
                    rate: 10,
                    max_disorder: Duration::from_secs(2),
                },
            ]
        );
    }

    #[test]
    fn datagen_option_errors() {
        assert_eq!(
            error(&[("connector", "datagen"), ("fields.nope.kind", "random")]),
            "option \"fields.nope.kind\" refers to unknown column \"nope\""
        );
        assert_eq!(
            error(&[("connector", "datagen"), ("fields.id.kind", "cyclic")]),
            "invalid value \"cyclic\" for option \"fields.id.kind\": expected 'sequence' or 'random'"
        );
        assert_eq!(
            error(&[("connector", "datagen"), ("fields.id.kind", "sequence"), ("fields.id.min", "1")]),
            "option \"fields.id.min\" does not apply to column \"id\" of type Int64 with kind 'sequence'"
        );
        assert!(
            error(&[("connector", "datagen"), ("fields.id.colour", "red")])
                .starts_with("option \"fields.id.colour\" is not a datagen field option")
        );
        assert_eq!(
            error(&[
                ("connector", "datagen"),
                ("fields.id.min", "5"),
                ("fields.id.max", "1")
            ]),
            "option \"fields.id.min\" must not be greater than option \"fields.id.max\""
        );
        assert_eq!(
            error(&[("connector", "datagen"), ("rows_per_second", "1"), ("datagen.rows.per.second", "2")]),
            "option \"datagen.rows.per.second\" conflicts with option \"rows_per_second\": give only one of them"
        );
        assert_eq!(
            error(&[("connector", "datagen"), ("rows_per_second", "0")]),
            "invalid value \"0\" for option \"rows_per_second\": expected an integer of at least 1"
        );
        assert_eq!(
            error(&[("connector", "datagen"), ("splits", "0")]),
            "invalid value \"0\" for option \"splits\": expected an integer between 1 and 4096"
        );
        assert_eq!(
            error(&[("connector", "datagen"), ("fields.ts.kind", "random")]),
            "invalid value \"random\" for option \"fields.ts.kind\": column \"ts\" of type Timestamp(ns) only supports kind 'sequence'"
        );
        assert_eq!(
            error(&[("connector", "datagen"), ("fields.price.max", "123456789")]),
            "invalid value \"123456789\" for option \"fields.price.max\": expected a number that fits decimal(10, 2)"
        );
        assert_eq!(
            error(&[("connector", "datagen"), ("fields.ts.start", "yesterday")]),
            "invalid value \"yesterday\" for option \"fields.ts.start\": expected a timestamp such as '2024-01-01 00:00:00'"
        );
    }
}
