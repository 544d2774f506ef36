use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::compute::{filter_record_batch, prep_null_mask_filter};
use datafusion::physical_expr::PhysicalExpr;
use tidemark_types::{Op, StreamChunk};

use crate::{Operator, Result};

/// `WHERE`: keeps the rows (and their ops) for which the predicate is true.
pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
}

impl Filter {
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        Self { predicate }
    }
}

impl Operator for Filter {
    fn name(&self) -> &'static str {
        "Filter"
    }

    fn durability(&self) -> crate::Durability {
        crate::Durability::Stateless
    }

    fn on_chunk(&mut self, chunk: StreamChunk, out: &mut Vec<StreamChunk>) -> Result<()> {
        let batch = chunk.batch();
        let mask = self
            .predicate
            .evaluate(batch)?
            .into_array(batch.num_rows())?;
        let mut mask = mask.as_boolean().clone();
        if mask.null_count() > 0 {
            mask = prep_null_mask_filter(&mask);
        }
        if mask.true_count() == 0 {
            return Ok(());
        }
        if mask.true_count() == batch.num_rows() {
            out.push(chunk);
            return Ok(());
        }
        let filtered = filter_record_batch(batch, &mask)?;
        let next = match chunk.ops() {
            None => StreamChunk::inserts(filtered),
            Some(ops) => {
                let kept: Vec<Op> = ops
                    .iter()
                    .zip(mask.values().iter())
                    .filter_map(|(op, keep)| keep.then_some(*op))
                    .collect();
                StreamChunk::with_ops(filtered, kept)
            }
        };
        out.push(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::Operator as BinOp;
    use datafusion::physical_expr::expressions::{binary, col, lit};

    use super::*;
    use crate::test_util::{chunk_from_pretty, pretty, schema_of};
    use crate::Operator;

    #[test]
    fn keeps_matching_rows_with_their_ops_and_drops_nulls() {
        let schema = schema_of("I T");
        let predicate = binary(col("c0", &schema).unwrap(), BinOp::Gt, lit(1i64), &schema).unwrap();
        let mut filter = Filter::new(predicate);
        let mut out = Vec::new();
        filter
            .on_chunk(
                chunk_from_pretty("I T\n+ 1 a\n- 2 b\n+ . c\n+ 3 ."),
                &mut out,
            )
            .unwrap();
        assert_eq!(pretty(&out), vec!["- 2 b", "+ 3 NULL"]);
    }
}
