//! `SHOW JOBS`: each materialized view's streaming job, with its progress.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::MemTable;
use tidemark_sql::RelationKind;

use crate::database::Database;
use crate::result::StatementResult;

pub(crate) fn jobs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("rows_in", DataType::Int64, false),
        Field::new("late_rows_dropped", DataType::Int64, false),
        Field::new("malformed_rows_skipped", DataType::Int64, false),
        Field::new(
            "watermark",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("cached_groups", DataType::Int64, false),
        Field::new("cached_group_bytes", DataType::Int64, false),
        Field::new("groups_read_back", DataType::Int64, false),
    ]))
}

/// The schema holding system views, as `tidemark_catalog.streaming_jobs`.
const SYSTEM_SCHEMA: &str = "tidemark_catalog";

impl Database {
    /// Makes `tidemark_catalog.streaming_jobs` (what `SHOW JOBS` shows),
    /// `tidemark_catalog.checkpoints` and
    /// `tidemark_catalog.retained_checkpoints` queryable in `ctx`.
    pub(crate) fn register_system_views(
        &self,
        ctx: &datafusion::prelude::SessionContext,
    ) -> datafusion::error::Result<()> {
        let StatementResult::Rows { schema, batches } = self.show_jobs() else {
            return Ok(());
        };
        let schema_provider = Arc::new(MemorySchemaProvider::new());
        let table = MemTable::try_new(schema, vec![batches])?;
        schema_provider.register_table("streaming_jobs".to_string(), Arc::new(table))?;
        schema_provider.register_table(
            "checkpoints".to_string(),
            Arc::new(self.checkpoints_table()?),
        )?;
        schema_provider.register_table(
            "retained_checkpoints".to_string(),
            Arc::new(self.retained_checkpoints_table()?),
        )?;
        schema_provider.register_table("memory".to_string(), Arc::new(self.memory_table()?))?;
        if let Some(catalog) = ctx.catalog("datafusion") {
            catalog.register_schema(SYSTEM_SCHEMA, schema_provider)?;
        }
        Ok(())
    }

    pub(crate) fn show_jobs(&self) -> StatementResult {
        let views: Vec<_> = self
            .catalog()
            .all()
            .filter(|r| matches!(r.kind, RelationKind::MaterializedView))
            .cloned()
            .collect();
        let mut names = Vec::new();
        let mut status = Vec::new();
        let mut rows_in = Vec::new();
        let mut late = Vec::new();
        let mut malformed = Vec::new();
        let mut watermark = Vec::new();
        let mut cached_groups = Vec::new();
        let mut cached_bytes = Vec::new();
        let mut read_back = Vec::new();
        for v in views {
            let stats = self.runtime.job_stats(v.id).unwrap_or_default();
            names.push(v.name.clone());
            status.push(match self.runtime.failure(v.id) {
                Some(_) => "failed",
                None => "running",
            });
            rows_in.push(stats.rows_in as i64);
            late.push(stats.late_rows as i64);
            malformed.push(stats.malformed_rows as i64);
            // A bounded input that ended closes all time: shown as the
            // largest timestamp clients handle.
            watermark.push(stats.watermark.map(|w| w.min(MAX_TIMESTAMP_MICROS)));
            cached_groups.push(stats.cached_groups);
            cached_bytes.push(stats.cached_bytes);
            read_back.push(stats.groups_read_back as i64);
        }
        let schema = jobs_schema();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(status)),
            Arc::new(Int64Array::from(rows_in)),
            Arc::new(Int64Array::from(late)),
            Arc::new(Int64Array::from(malformed)),
            Arc::new(TimestampMicrosecondArray::from(watermark)),
            Arc::new(Int64Array::from(cached_groups)),
            Arc::new(Int64Array::from(cached_bytes)),
            Arc::new(Int64Array::from(read_back)),
        ];
        let batches = RecordBatch::try_new(Arc::clone(&schema), columns)
            .map(|b| vec![b])
            .unwrap_or_default();
        StatementResult::Rows { schema, batches }
    }
}

/// 9999-12-31 23:59:59.999999.
const MAX_TIMESTAMP_MICROS: i64 = 253_402_300_799_999_999;
