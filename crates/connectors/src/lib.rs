//! Source connectors: they turn the WITH options of a `CREATE SOURCE` into a
//! typed [`SourceConfig`] ([`parse_options`]) and read the source's rows as
//! Arrow record batches through one [`SplitReader`] per split
//! ([`open_splits`]).
//!
//! A source is divided into splits that are read independently (a file per
//! split, or a share of the generated rows). Each split reports a `u64`
//! position after the rows it returned; opening the splits again with those
//! positions resumes exactly after them, which is what checkpoints store.
//!
//! Readers are synchronous and never sleep: when nothing is available they
//! return [`ReadOutcome::Pending`] and the caller decides when to ask again.

mod datagen;
mod decode;
mod error;
mod file;
mod glob;
mod options;
#[cfg(test)]
mod test_util;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

pub use datagen::{ColumnGen, DatagenConfig};
pub use error::{ConnectorError, Result};
pub use options::{parse_options, ConnectorConfig, FileConfig, FileFormat, OnError, SourceConfig};

/// Reads one split of a source.
///
/// Call [`next_batch`](Self::next_batch) repeatedly: each call returns at
/// most `max_rows` rows, [`ReadOutcome::Pending`] when nothing is available
/// yet, or [`ReadOutcome::Finished`] once a bounded split is exhausted (and
/// on every call after that). An error is final: drop the reader. Between
/// calls, [`position`](Self::position) is where a reader opened by
/// [`open_splits`] would resume to produce exactly the rows not yet returned.
pub trait SplitReader: Send {
    /// Reads up to `max_rows` rows (0 is treated as 1).
    ///
    /// Synchronous and short: it is called from an async task between other
    /// work, so it reads what is there and never sleeps or waits. Every batch
    /// has exactly the schema given to [`open_splits`] and at least one row.
    fn next_batch(&mut self, max_rows: usize) -> Result<ReadOutcome>;

    /// Resume position after the rows returned so far: for a file, the byte
    /// offset just past the last complete line consumed (including skipped
    /// and empty lines); for datagen, the number of rows generated.
    fn position(&self) -> u64;

    /// Malformed lines skipped so far (`on_error = 'skip'`).
    fn skipped_rows(&self) -> u64;

    /// Human-readable split name for errors and logs (a file path, or
    /// `datagen-<index>`).
    fn name(&self) -> &str;
}

/// What one [`SplitReader::next_batch`] call produced.
#[derive(Debug)]
pub enum ReadOutcome {
    Batch(RecordBatch),
    /// Nothing available now (a watched file has not grown, datagen is ahead
    /// of its rate); call again later.
    Pending,
    /// Bounded input exhausted; no more rows will come.
    Finished,
}

/// Opens the splits of a source, in a stable order.
///
/// A file source has one split per matched file, sorted by path; the files
/// are listed once, here: files created later are not picked up, and a glob
/// that matches nothing is an error even with `watch`. A datagen source has
/// `splits` splits, split `k` generating rows `k, k + splits, …`.
///
/// `positions`, when given, must hold one position per split (from
/// [`SplitReader::position`], in this order); each split resumes there.
/// Resuming a file source assumes the same set of files still matches.
pub fn open_splits(
    config: &SourceConfig,
    schema: SchemaRef,
    positions: Option<&[u64]>,
) -> Result<Vec<Box<dyn SplitReader>>> {
    let check_count = |count: usize| match positions {
        Some(p) if p.len() != count => Err(ConnectorError::Resume(format!(
            "{} positions given for {count} splits",
            p.len()
        ))),
        _ => Ok(()),
    };
    let position = |i: usize| positions.map_or(0, |p| p[i]);
    match &config.connector {
        ConnectorConfig::File(file_config) => {
            let paths = glob::expand(&file_config.path)?;
            check_count(paths.len())?;
            paths
                .iter()
                .enumerate()
                .map(|(i, path)| {
                    let split =
                        file::FileSplit::open(path, file_config, schema.clone(), position(i))?;
                    Ok(Box::new(split) as Box<dyn SplitReader>)
                })
                .collect()
        }
        ConnectorConfig::Datagen(datagen_config) => {
            let splits = datagen_config.splits.max(1);
            check_count(splits as usize)?;
            let shared = Arc::new(datagen_config.clone());
            (0..splits)
                .map(|i| {
                    let split = datagen::DatagenSplit::open(
                        shared.clone(),
                        schema.clone(),
                        i,
                        position(i as usize),
                    )?;
                    Ok(Box::new(split) as Box<dyn SplitReader>)
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::test_util::{drain, schema, TempDir};

    fn source(options: &[(&str, &str)], schema: &SchemaRef) -> SourceConfig {
        let options: BTreeMap<String, String> = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_options(&options, schema).unwrap()
    }

    #[test]
    fn glob_over_several_files_and_resume() {
        let dir = TempDir::new("lib-glob");
        dir.write("bids-2.csv", "id,price\n3,30.5\n");
        dir.write("bids-1.csv", "id,price\n1,10\n2,20.25\n");
        dir.write("asks-1.csv", "id,price\n9,1\n");
        let schema = schema(&[("id", "int"), ("price", "decimal")]);
        let pattern = format!("{}/bids-*.csv", dir.path().display());
        let config = source(
            &[
                ("connector", "file"),
                ("path", &pattern),
                ("header", "true"),
            ],
            &schema,
        );
        let mut splits = open_splits(&config, schema.clone(), None).unwrap();
        let names: Vec<&str> = splits.iter().map(|s| s.name()).collect();
        assert!(names[0].ends_with("/bids-1.csv") && names[1].ends_with("/bids-2.csv"));
        let first = drain(splits[0].as_mut(), 1);
        assert_eq!(first, (vec!["1|10.00".into(), "2|20.25".into()], true));
        assert_eq!(drain(splits[1].as_mut(), 1), (vec!["3|30.50".into()], true));

        let positions = [14, 0];
        let mut resumed = open_splits(&config, schema.clone(), Some(&positions)).unwrap();
        assert_eq!(drain(resumed[0].as_mut(), 10).0, ["2|20.25"]);
        assert_eq!(drain(resumed[1].as_mut(), 10).0, ["3|30.50"]);

        let err = open_splits(&config, schema, Some(&[0])).err().unwrap();
        assert_eq!(
            err.to_string(),
            "cannot resume source: 1 positions given for 2 splits"
        );
    }

    #[test]
    fn missing_files_fail_at_open() {
        let dir = TempDir::new("lib-missing");
        let schema = schema(&[("id", "int")]);
        let pattern = format!("{}/none-*.csv", dir.path().display());
        let config = source(
            &[("connector", "file"), ("path", &pattern), ("watch", "true")],
            &schema,
        );
        let err = open_splits(&config, schema.clone(), None).err().unwrap();
        assert_eq!(err.to_string(), format!("no file matches \"{pattern}\""));

        let path = format!("{}/none.csv", dir.path().display());
        let config = source(&[("connector", "file"), ("path", &path)], &schema);
        let err = open_splits(&config, schema, None).err().unwrap();
        assert!(err
            .to_string()
            .starts_with(&format!("could not open \"{path}\": ")));
    }

    #[test]
    fn json_lines_source() {
        let dir = TempDir::new("lib-json");
        let path = dir.write(
            "events.jsonl",
            "{\"id\": 1, \"ok\": true, \"day\": \"2024-03-01\", \"extra\": {\"a\": 1}}\n\n{\"ok\": false}\n",
        );
        let schema = schema(&[("id", "smallint"), ("ok", "bool"), ("day", "date")]);
        let config = source(
            &[("connector", "file"), ("path", &path), ("format", "json")],
            &schema,
        );
        let mut splits = open_splits(&config, schema, None).unwrap();
        assert_eq!(
            drain(splits[0].as_mut(), 10),
            (
                vec!["1|true|2024-03-01".into(), "NULL|false|NULL".into()],
                true
            )
        );
    }

    #[test]
    fn datagen_splits_and_positions() {
        let schema = schema(&[("id", "bigint"), ("v", "double"), ("flag", "bool")]);
        let config = source(
            &[
                ("connector", "datagen"),
                ("splits", "2"),
                ("fields.id.kind", "sequence"),
                ("fields.id.end", "5"),
                ("fields.v.min", "-1"),
                ("fields.v.max", "1"),
            ],
            &schema,
        );
        let mut splits = open_splits(&config, schema.clone(), None).unwrap();
        let (rows, finished) = drain(splits[0].as_mut(), 10);
        assert!(finished);
        let ids: Vec<&str> = rows.iter().map(|r| r.split('|').next().unwrap()).collect();
        assert_eq!(ids, ["1", "3", "5"]);
        assert_eq!(splits[0].position(), 3);

        let mut resumed = open_splits(&config, schema, Some(&[3, 1])).unwrap();
        assert!(matches!(
            resumed[0].next_batch(10).unwrap(),
            ReadOutcome::Finished
        ));
        let (rows, _) = drain(resumed[1].as_mut(), 10);
        let ids: Vec<&str> = rows.iter().map(|r| r.split('|').next().unwrap()).collect();
        assert_eq!(ids, ["4"]);
    }
}
