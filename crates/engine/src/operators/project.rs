use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
use tidemark_types::{StreamChunk, Watermark};

use crate::event_time::{scalar_micros, timestamp_array, END_OF_TIME};
use crate::{Operator, Result};

/// `SELECT` list: computes the output columns; ops pass through unchanged.
pub struct Project {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    /// (output column, input column) pairs whose output rises with the input.
    watermarks: Vec<(usize, usize)>,
    /// Types of input columns, learned from the chunks seen.
    input_types: Vec<DataType>,
}

impl Project {
    pub fn new(
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
        watermarks: Vec<(usize, usize)>,
    ) -> Self {
        Self {
            exprs,
            schema,
            watermarks,
            input_types: Vec::new(),
        }
    }

    /// The output expression evaluated where its input column equals the
    /// watermark: since the output never falls as that column rises, no later
    /// row can have a smaller output.
    fn derive(&self, output: usize, input: usize, micros: i64) -> Result<Option<i64>> {
        if micros == END_OF_TIME {
            return Ok(Some(END_OF_TIME));
        }
        // Before any row, the output's type stands in for the input's: the
        // derivations keep the timestamp type, or cast between timestamps.
        let input_type = self
            .input_types
            .get(input)
            .unwrap_or_else(|| self.schema.field(output).data_type());
        let Some(value) = timestamp_array(micros, input_type) else {
            return Ok(None);
        };
        let mut fields = Vec::with_capacity(input + 1);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(input + 1);
        for i in 0..input {
            fields.push(Field::new(format!("c{i}"), DataType::Null, true));
            columns.push(new_null_array(&DataType::Null, 1));
        }
        fields.push(Field::new("w", input_type.clone(), true));
        columns.push(value);
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let result = self.exprs[output].evaluate(&batch)?.into_array(1)?;
        Ok(scalar_micros(&ScalarValue::try_from_array(&result, 0)?))
    }
}

impl Operator for Project {
    fn name(&self) -> &'static str {
        "Project"
    }

    fn durability(&self) -> crate::Durability {
        crate::Durability::Stateless
    }

    fn on_chunk(&mut self, chunk: StreamChunk, out: &mut Vec<StreamChunk>) -> Result<()> {
        let (batch, ops) = chunk.into_parts();
        if self.input_types.is_empty() && !self.watermarks.is_empty() {
            self.input_types = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect();
        }
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

    fn on_watermark(
        &mut self,
        wm: Watermark,
        _out: &mut Vec<StreamChunk>,
    ) -> Result<Vec<Watermark>> {
        let mut derived = Vec::new();
        for &(output, input) in &self.watermarks {
            if input != wm.column {
                continue;
            }
            if let Some(value) = self.derive(output, input, wm.value)? {
                derived.push(Watermark {
                    column: output,
                    value,
                });
            }
        }
        Ok(derived)
    }
}
