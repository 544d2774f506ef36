//! What the planner knows of a table or view, and how it shows one to
//! DataFusion while planning a streaming job.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use tidemark_plan::{EventTime, RelationId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelationKind {
    Table {
        primary_key: Option<Vec<usize>>,
        append_only: bool,
    },
    MaterializedView,
    /// An unmaterialized stream: each view over it reads it with its own reader.
    Source {
        /// `WITH` options, keys lower-cased.
        options: Vec<(String, String)>,
    },
}

/// A table or materialized view of the catalog.
#[derive(Debug, Clone)]
pub struct RelationInfo {
    pub id: RelationId,
    pub name: String,
    pub kind: RelationKind,
    pub schema: SchemaRef,
    /// For tables and sources with `WATERMARK FOR`: where event time comes from.
    pub event_time: Option<EventTime>,
    /// Columns whose watermark the relation's changelog carries.
    pub watermark_columns: Vec<usize>,
}

impl RelationInfo {
    /// The columns that route a changelog row of this relation to an actor, so
    /// that every change to one row takes the same path and stays in order:
    /// the primary key, or the whole row.
    pub fn stream_key(&self) -> Vec<usize> {
        match &self.kind {
            RelationKind::Table {
                primary_key: Some(pk),
                ..
            } => pk.clone(),
            _ => (0..self.schema.fields().len()).collect(),
        }
    }

    pub fn is_table(&self) -> bool {
        matches!(self.kind, RelationKind::Table { .. })
    }

    /// Rows are only ever inserted: a source or an `APPEND ONLY` table.
    pub fn is_append_only(&self) -> bool {
        matches!(
            self.kind,
            RelationKind::Source { .. }
                | RelationKind::Table {
                    append_only: true,
                    ..
                }
        )
    }

    pub fn is_source(&self) -> bool {
        matches!(self.kind, RelationKind::Source { .. })
    }
}

/// A relation as a DataFusion table, for planning only: the streaming planner
/// finds it again in the plan's `TableScan` to learn which relation is read.
#[derive(Debug)]
pub struct RelationProvider(pub Arc<RelationInfo>);

#[async_trait]
impl TableProvider for RelationProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.0.schema)
    }

    fn table_type(&self) -> TableType {
        match self.0.kind {
            RelationKind::Table { .. } => TableType::Base,
            RelationKind::MaterializedView | RelationKind::Source { .. } => TableType::View,
        }
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.0.schema.project(p)?),
            None => Arc::clone(&self.0.schema),
        };
        Ok(Arc::new(EmptyExec::new(schema)))
    }
}
