//! One split of a datagen source: every `splits`-th row, paced by the clock.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;

use super::column::generate;
use super::config::DatagenConfig;
use crate::error::{ConnectorError, Result};
use crate::{ReadOutcome, SplitReader};

/// The most rows one call generates, whatever the caller asks.
const MAX_BATCH_ROWS: usize = 1 << 20;

/// Split `index` of `splits` generates global rows `index + i * splits` for
/// `i = 0, 1, …`; its position is `i` of the next row.
pub(crate) struct DatagenSplit {
    name: String,
    schema: SchemaRef,
    config: Arc<DatagenConfig>,
    index: u64,
    splits: u64,
    /// Rows generated, counting those before a resume.
    generated: u64,
    /// `generated` when this reader started, for pacing.
    resumed_at: u64,
    /// This split's share of the total rows, if bounded.
    total: Option<u64>,
    started: Instant,
}

/// How many of the global rows `0..global` belong to split `index` of `splits`.
fn share(global: u64, index: u64, splits: u64) -> u64 {
    if global > index {
        (global - index - 1) / splits + 1
    } else {
        0
    }
}

impl DatagenSplit {
    pub(crate) fn open(
        config: Arc<DatagenConfig>,
        schema: SchemaRef,
        index: u32,
        position: u64,
    ) -> Result<Self> {
        let splits = u64::from(config.splits.max(1));
        let index = u64::from(index);
        let total = config.total_rows().map(|t| share(t, index, splits));
        let name = format!("datagen-{index}");
        if let Some(total) = total.filter(|&t| position > t) {
            return Err(ConnectorError::Resume(format!(
                "position {position} of split \"{name}\" is past its {total} rows"
            )));
        }
        Ok(Self {
            name,
            schema,
            config,
            index,
            splits,
            generated: position,
            resumed_at: position,
            total,
            started: Instant::now(),
        })
    }

    /// `next_batch` with the clock passed in, so that pacing is testable.
    fn next_batch_at(&mut self, max_rows: usize, now: Instant) -> Result<ReadOutcome> {
        let mut count = u64::try_from(max_rows.clamp(1, MAX_BATCH_ROWS)).unwrap_or(1);
        if let Some(total) = self.total {
            if self.generated >= total {
                return Ok(ReadOutcome::Finished);
            }
            count = count.min(total - self.generated);
        }
        if let Some(rate) = self.config.rows_per_second {
            let elapsed = now.saturating_duration_since(self.started).as_nanos();
            let due_global =
                u64::try_from(elapsed * u128::from(rate) / 1_000_000_000).unwrap_or(u64::MAX);
            let due = share(due_global, self.index, self.splits);
            count = count.min(due.saturating_sub(self.generated - self.resumed_at));
            if count == 0 {
                return Ok(ReadOutcome::Pending);
            }
        }
        let rows: Vec<u64> = (self.generated..self.generated + count)
            .map(|i| self.index.wrapping_add(i.wrapping_mul(self.splits)))
            .collect();
        let columns = self
            .schema
            .fields()
            .iter()
            .zip(&self.config.columns)
            .enumerate()
            .map(|(column, (field, generator))| {
                generate(
                    generator,
                    field.data_type(),
                    self.config.seed,
                    column,
                    &rows,
                )
                .map_err(|message| ConnectorError::Overflow {
                    split: self.name.clone(),
                    message: format!("column \"{}\": {message}", field.name()),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|source| ConnectorError::Internal {
                split: self.name.clone(),
                source,
            })?;
        self.generated += count;
        Ok(ReadOutcome::Batch(batch))
    }
}

impl SplitReader for DatagenSplit {
    fn next_batch(&mut self, max_rows: usize) -> Result<ReadOutcome> {
        self.next_batch_at(max_rows, Instant::now())
    }

    fn position(&self) -> u64 {
        self.generated
    }

    fn skipped_rows(&self) -> u64 {
        0
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::datagen::ColumnGen;
    use crate::test_util::{drain, rows, schema};

    fn config(
        rows_per_second: Option<u64>,
        number_of_rows: Option<u64>,
        splits: u32,
    ) -> Arc<DatagenConfig> {
        Arc::new(DatagenConfig {
            rows_per_second,
            number_of_rows,
            seed: 42,
            splits,
            columns: vec![
                ColumnGen::Sequence {
                    start: 1,
                    end: i64::MAX,
                },
                ColumnGen::RandomInt { min: 0, max: 9 },
                ColumnGen::RandomText { length: 4 },
                ColumnGen::EventTime {
                    start_nanos: 0,
                    rate: 1000,
                    max_disorder: Duration::from_millis(5),
                },
            ],
        })
    }

    fn test_schema() -> SchemaRef {
        schema(&[
            ("id", "bigint"),
            ("n", "int"),
            ("s", "text"),
            ("ts", "timestamp_ms"),
        ])
    }

    fn split(config: &Arc<DatagenConfig>, index: u32, position: u64) -> DatagenSplit {
        DatagenSplit::open(config.clone(), test_schema(), index, position).unwrap()
    }

    #[test]
    fn deterministic_and_resumable() {
        let config = config(None, Some(10), 1);
        let (all, finished) = drain(&mut split(&config, 0, 0), 3);
        assert!(finished);
        assert_eq!(all.len(), 10);
        assert_eq!(drain(&mut split(&config, 0, 0), 100).0, all);
        assert_eq!(drain(&mut split(&config, 0, 6), 100).0, all[6..]);
        assert!(all[0].starts_with("1|"));
        assert!(all[9].starts_with("10|"));

        let other_seed = Arc::new(DatagenConfig {
            seed: 43,
            ..(*config).clone()
        });
        assert_ne!(drain(&mut split(&other_seed, 0, 0), 100).0, all);
    }

    #[test]
    fn splits_are_disjoint_shares_of_the_same_rows() {
        let (single, _) = drain(&mut split(&config(None, Some(10), 1), 0, 0), 100);
        let config = config(None, Some(10), 3);
        let mut union = Vec::new();
        for index in 0..3 {
            let mut reader = split(&config, index, 0);
            assert_eq!(reader.name(), format!("datagen-{index}"));
            let (rows, finished) = drain(&mut reader, 2);
            assert!(finished);
            assert_eq!(rows.len(), [4, 3, 3][index as usize]);
            union.extend(rows);
        }
        union.sort_by_key(|row| row.split('|').next().unwrap().parse::<u64>().unwrap());
        assert_eq!(union, single);
    }

    #[test]
    fn rate_paces_rows_and_reports_pending() {
        let config = config(Some(10), None, 2);
        let mut first = split(&config, 0, 0);
        let mut second = split(&config, 1, 0);
        let start = first.started;
        assert!(matches!(
            first.next_batch_at(100, start).unwrap(),
            ReadOutcome::Pending
        ));
        let at = |s: f64| start + Duration::from_secs_f64(s);
        let ReadOutcome::Batch(batch) = first.next_batch_at(100, at(1.0)).unwrap() else {
            panic!("expected a batch");
        };
        assert_eq!(batch.num_rows(), 5);
        assert!(matches!(
            first.next_batch_at(100, at(1.0)).unwrap(),
            ReadOutcome::Pending
        ));
        let ReadOutcome::Batch(batch) = first.next_batch_at(2, at(2.0)).unwrap() else {
            panic!("expected a batch");
        };
        assert_eq!(rows(&batch).len(), 2);
        assert_eq!(first.position(), 7);

        second.started = start;
        let ReadOutcome::Batch(batch) = second.next_batch_at(100, at(0.25)).unwrap() else {
            panic!("expected a batch");
        };
        // Global rows 0 and 1 are due; row 1 is this split's.
        assert_eq!(rows(&batch).len(), 1);
        assert!(rows(&batch)[0].starts_with("2|"));
    }

    #[test]
    fn event_time_advances_by_rate_with_bounded_disorder() {
        let config = config(None, Some(2000), 1);
        let (all, _) = drain(&mut split(&config, 0, 0), 500);
        let schema = test_schema();
        let mut reader = DatagenSplit::open(config, schema, 0, 0).unwrap();
        let ReadOutcome::Batch(batch) = reader.next_batch(2000).unwrap() else {
            panic!("expected a batch");
        };
        let ts = batch
            .column(3)
            .as_any()
            .downcast_ref::<arrow::array::TimestampMillisecondArray>()
            .unwrap();
        let mut disordered = 0;
        for (row, value) in ts.values().iter().enumerate() {
            let in_order = row as i64;
            assert!(
                (in_order - 5..=in_order).contains(value),
                "row {row}: {value}"
            );
            disordered += usize::from(*value != in_order);
        }
        assert!(disordered > 1000);
        assert_eq!(all.len(), 2000);
    }
}
