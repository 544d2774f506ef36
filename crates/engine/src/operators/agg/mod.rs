//! Incremental aggregation: the grouped operator and the retractable
//! accumulators it needs beyond DataFusion's own.

mod changes;
mod group_cache;
mod grouped;
mod hash_agg;
mod hop_agg;
mod keyed_agg;
mod keyed_states;
mod keyed_windows;
mod min_max;
mod session_agg;
mod session_ends;
mod slice_groups;
mod window_changes;

pub use hash_agg::HashAgg;
pub use hop_agg::{HopAgg, HopAggSpec};
pub use keyed_agg::KeyedAgg;
pub use min_max::RetractableMinMax;
pub use session_agg::{SessionAgg, SessionAggSpec};

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use arrow::compute::{prep_null_mask_filter, take};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
use tidemark_plan::AggCall;
use tidemark_types::{Op, StreamChunk, Watermark};

use crate::Result;

/// A `FILTER (WHERE …)` predicate over `batch`, NULL counting as false.
fn filter_mask(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<BooleanArray> {
    let array = expr.evaluate(batch)?.into_array(batch.num_rows())?;
    let mask = array.as_boolean().clone();
    Ok(if mask.null_count() > 0 {
        prep_null_mask_filter(&mask)
    } else {
        mask
    })
}

/// Output rows as one chunk of `schema` (`None` when there are none).
fn rows_to_chunk(
    schema: &SchemaRef,
    rows: Vec<(Op, Vec<ScalarValue>)>,
) -> Result<Option<StreamChunk>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let ops: Vec<Op> = rows.iter().map(|(op, _)| *op).collect();
    let columns = (0..schema.fields().len())
        .map(|c| ScalarValue::iter_to_array(rows.iter().map(|(_, r)| r[c].clone())))
        .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
    let batch = changes::columns_to_batch(schema, columns)?;
    Ok(Some(StreamChunk::with_ops(batch, ops)))
}

/// `wm` on each output column that the (input, output) pairs of `map` derive
/// from its column.
fn forward_watermark(map: &[(usize, usize)], wm: Watermark) -> Vec<Watermark> {
    map.iter()
        .filter(|(input, _)| *input == wm.column)
        .map(|&(_, column)| Watermark {
            column,
            value: wm.value,
        })
        .collect()
}

/// One aggregate's argument columns at `rows`, less the rows its `FILTER`
/// rejects; `None` when no row is left.
fn selected_args(
    args: &[ArrayRef],
    filter: Option<&BooleanArray>,
    rows: &[u32],
) -> Result<Option<Vec<ArrayRef>>> {
    let selected: Vec<u32> = match filter {
        Some(m) => rows
            .iter()
            .copied()
            .filter(|&r| m.value(r as usize))
            .collect(),
        None => rows.to_vec(),
    };
    let Some(&first) = selected.first() else {
        return Ok(None);
    };
    // Consecutive rows in order (always so for one row): a zero-copy slice.
    if selected.windows(2).all(|w| w[1] == w[0] + 1) {
        let (offset, len) = (first as usize, selected.len());
        return Ok(Some(args.iter().map(|c| c.slice(offset, len)).collect()));
    }
    let indices = UInt32Array::from(selected);
    Ok(Some(
        args.iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()?,
    ))
}

/// `exprs` over every row of `batch`, a column each (grouping keys, an
/// aggregate's arguments).
fn evaluate_columns(exprs: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    let n = batch.num_rows();
    Ok(exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(n))
        .collect::<datafusion::error::Result<Vec<_>>>()?)
}

/// Each aggregate's argument columns and its `FILTER` mask, over `batch`.
type AggInputs = (Vec<Vec<ArrayRef>>, Vec<Option<BooleanArray>>);

fn evaluate_agg_inputs(
    args: &[Vec<Arc<dyn PhysicalExpr>>],
    aggs: &[AggCall],
    batch: &RecordBatch,
) -> Result<AggInputs> {
    let values = args
        .iter()
        .map(|exprs| evaluate_columns(exprs, batch))
        .collect::<Result<Vec<_>>>()?;
    let filters = aggs
        .iter()
        .map(|a| a.filter.as_ref().map(|f| filter_mask(f, batch)).transpose())
        .collect::<Result<Vec<_>>>()?;
    Ok((values, filters))
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;

    use super::*;

    fn selected(rows: &[u32], filter: Option<&BooleanArray>) -> Option<Vec<i64>> {
        let column: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10i64));
        let got = selected_args(&[column], filter, rows).unwrap()?;
        Some(
            got[0]
                .as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .to_vec(),
        )
    }

    #[test]
    fn selected_rows_keep_their_order_and_set() {
        assert_eq!(selected(&[2, 3, 4], None), Some(vec![2, 3, 4]));
        assert_eq!(selected(&[7], None), Some(vec![7]));
        // as many rows as the span from first to last, but not consecutive
        assert_eq!(selected(&[5, 0, 9, 8], None), Some(vec![5, 0, 9, 8]));
        assert_eq!(selected(&[4, 3], None), Some(vec![4, 3]));
        let odd = BooleanArray::from_iter((0..10).map(|i| Some(i % 2 == 1)));
        assert_eq!(selected(&[1, 2, 3], Some(&odd)), Some(vec![1, 3]));
        assert_eq!(selected(&[2, 4], Some(&odd)), None);
    }
}
