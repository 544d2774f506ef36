//! `tidemark_catalog.checkpoints`: the figures of recent checkpoints.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;

use crate::database::Database;

impl Database {
    /// One row per recent checkpoint (the last 100), oldest first.
    pub(crate) fn checkpoints_table(&self) -> datafusion::error::Result<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("epoch", DataType::Int64, false),
            Field::new("status", DataType::Utf8, false),
            Field::new(
                "committed_at",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("duration_ms", DataType::Float64, false),
            Field::new("aligned_ms", DataType::Float64, false),
            Field::new("write_ms", DataType::Float64, false),
            Field::new("writes", DataType::Int64, false),
            Field::new("bytes", DataType::Int64, false),
        ]));
        let recent = self.runtime.checkpoints();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                recent.iter().map(|c| c.epoch as i64),
            )),
            Arc::new(StringArray::from_iter_values(recent.iter().map(|c| {
                if c.ok {
                    "committed"
                } else {
                    "failed"
                }
            }))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                recent.iter().map(|c| micros(c.committed_at)),
            )),
            Arc::new(Float64Array::from_iter_values(
                recent.iter().map(|c| c.duration.as_secs_f64() * 1000.0),
            )),
            Arc::new(Float64Array::from_iter_values(
                recent.iter().map(|c| c.aligned.as_secs_f64() * 1000.0),
            )),
            Arc::new(Float64Array::from_iter_values(
                recent.iter().map(|c| c.write.as_secs_f64() * 1000.0),
            )),
            Arc::new(Int64Array::from_iter_values(
                recent.iter().map(|c| c.writes as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                recent.iter().map(|c| c.bytes as i64),
            )),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        MemTable::try_new(schema, vec![vec![batch]])
    }
}

impl Database {
    /// `tidemark_catalog.retained_checkpoints`: the copies of checkpoints kept
    /// in the data directory, oldest first, each a directory a server can
    /// start from with `--restore-from`.
    pub(crate) fn retained_checkpoints_table(&self) -> datafusion::error::Result<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("epoch", DataType::Int64, false),
            Field::new("path", DataType::Utf8, false),
            Field::new(
                "taken_at",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
        ]));
        let retained = self
            .retained
            .as_ref()
            .map(crate::retained::Copies::list)
            .unwrap_or_default();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                retained.iter().map(|r| r.epoch as i64),
            )),
            Arc::new(StringArray::from_iter_values(
                retained.iter().map(|r| r.path.display().to_string()),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                retained.iter().map(|r| micros(r.taken_at)),
            )),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        MemTable::try_new(schema, vec![vec![batch]])
    }
}

/// Microseconds since the Unix epoch.
fn micros(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
