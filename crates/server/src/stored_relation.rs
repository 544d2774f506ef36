//! A relation as a SELECT reads it: its committed rows, streamed from the
//! query's store snapshot a page at a time; for a table with a primary key
//! whose filter pins the key (`id = 5`, `id IN (1, 2)`), only those rows.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::LexOrdering;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::ExecutionPlan;
use tidemark_state::{RelationLayout, RelationReader, RelationShape, RowCodec, Snapshot, TableId};

/// A table's primary key: its columns and their encoding in store keys.
#[derive(Debug)]
pub(crate) struct PrimaryKey {
    pub columns: Vec<usize>,
    pub codec: RowCodec,
}

#[derive(Debug)]
pub(crate) struct StoredRelation {
    pub snapshot: Arc<Snapshot>,
    pub table: TableId,
    pub shape: RelationShape,
    /// Every column nullable (see `batch::nullable`).
    pub schema: SchemaRef,
    pub primary_key: Option<PrimaryKey>,
}

#[async_trait]
impl TableProvider for StoredRelation {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters only narrow what a keyed table reads; DataFusion still
    /// applies every one of them to the rows read.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let support = match self.primary_key {
            Some(_) => TableProviderFilterPushDown::Inexact,
            None => TableProviderFilterPushDown::Unsupported,
        };
        Ok(vec![support; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = StoredRows {
            snapshot: Arc::clone(&self.snapshot),
            table: self.table,
            shape: self.shape,
            schema: Arc::clone(&self.schema),
            keys: self.pinned_keys(state, filters)?,
        };
        let exec = StreamingTableExec::try_new(
            Arc::clone(&self.schema),
            vec![Arc::new(rows)],
            projection,
            None::<LexOrdering>,
            false,
            limit,
        )?;
        Ok(Arc::new(exec))
    }
}

impl StoredRelation {
    /// The encoded primary keys of every row `filters` can hold for, when
    /// they pin the key (see `tidemark_engine::pinned_keys`).
    fn pinned_keys(&self, state: &dyn Session, filters: &[Expr]) -> Result<Option<Vec<Vec<u8>>>> {
        let Some(key) = &self.primary_key else {
            return Ok(None);
        };
        let Some(filter) = conjunction(filters.iter().cloned().map(unnormalize_col)) else {
            return Ok(None);
        };
        let columns = DFSchema::try_from(Arc::clone(&self.schema))?;
        // What cannot be evaluated here is left to DataFusion, over every row.
        let Ok(filter) = state.create_physical_expr(filter, &columns) else {
            return Ok(None);
        };
        tidemark_engine::pinned_key_bytes(&filter, &key.columns, &self.schema, &key.codec)
            .map_err(|e| DataFusionError::External(Box::new(e)))
    }
}

/// One scan of a relation's committed rows (of some keys, when `keys`).
#[derive(Debug)]
struct StoredRows {
    snapshot: Arc<Snapshot>,
    table: TableId,
    shape: RelationShape,
    schema: SchemaRef,
    keys: Option<Vec<Vec<u8>>>,
}

impl StoredRows {
    fn reader(&self) -> tidemark_state::Result<RelationReader> {
        let snapshot = Arc::clone(&self.snapshot);
        let schema = Arc::clone(&self.schema);
        match (&self.keys, self.shape) {
            (Some(keys), RelationShape::Table(layout @ RelationLayout::Keyed)) => {
                RelationReader::of_keys(snapshot, self.table, layout, schema, keys.clone())
            }
            _ => RelationReader::new(snapshot, self.table, self.shape, schema),
        }
    }
}

impl PartitionStream for StoredRows {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = Arc::clone(&self.schema);
        let reader = match self.reader() {
            Ok(reader) => reader,
            Err(e) => {
                let failed = futures::stream::once(async move { Err(external(e)) });
                return Box::pin(RecordBatchStreamAdapter::new(schema, failed));
            }
        };
        let batches = futures::stream::try_unfold(reader, |mut reader| async move {
            let batch = reader.next_batch().await.map_err(external)?;
            Ok(batch.map(|batch| (batch, reader)))
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }
}

fn external(e: tidemark_state::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}
