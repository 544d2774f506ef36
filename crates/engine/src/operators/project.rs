use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::physical_expr::PhysicalExpr;
use tidemark_types::StreamChunk;

use crate::{Operator, Result};

/// `SELECT` list: computes the output columns; ops pass through unchanged.
pub struct Project {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl Project {
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        Self { exprs, schema }
    }
}

impl Operator for Project {
    fn name(&self) -> &'static str {
        "Project"
    }

    fn on_chunk(&mut self, chunk: StreamChunk, out: &mut Vec<StreamChunk>) -> Result<()> {
        let (batch, ops) = chunk.into_parts();
        let rows = batch.num_rows();
        let columns = self
            .exprs
            .iter()
            .map(|e| e.evaluate(&batch)?.into_array(rows))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let projected =
            RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        out.push(match ops {
            None => StreamChunk::inserts(projected),
            Some(ops) => StreamChunk::with_ops(projected, ops),
        });
        Ok(())
    }
}
