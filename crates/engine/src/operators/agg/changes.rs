//! The changes between two evaluations of the same groups, for aggregates
//! that recompute their rows and emit only what differs.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, UInt32Array};
use arrow::compute::kernels::boolean::or;
use arrow::compute::kernels::cmp::distinct;
use arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use arrow::record_batch::RecordBatch;
use tidemark_types::{Op, StreamChunk};

use crate::Result;

/// Which rows of `old` and `new` (same length) differ in any column.
fn differing(old: &RecordBatch, new: &RecordBatch) -> Result<BooleanArray> {
    let mut mask = BooleanArray::from(vec![false; old.num_rows()]);
    for (a, b) in old.columns().iter().zip(new.columns()) {
        let column = match distinct(a, b) {
            Ok(m) => m,
            // Types the kernel cannot compare count as changed.
            Err(_) => BooleanArray::from(vec![true; old.num_rows()]),
        };
        mask = or(&mask, &column)?;
    }
    Ok(mask)
}

/// The deletes and inserts that turn rows `old_matched` of `old` into rows
/// `new_matched` of `new` (the same groups, pairwise), and add rows `added`
/// of `new`: deletes first, then inserts, only of rows that differ.
pub fn matched_changes(
    old: &RecordBatch,
    old_matched: &[u32],
    new: &RecordBatch,
    new_matched: &[u32],
    added: &[u32],
) -> Result<Option<StreamChunk>> {
    let before = take_record_batch(old, &UInt32Array::from(old_matched.to_vec()))?;
    let after = take_record_batch(new, &UInt32Array::from(new_matched.to_vec()))?;
    let changed = differing(&before, &after)?;
    let deletes = filter_record_batch(&before, &changed)?;
    let updates = filter_record_batch(&after, &changed)?;
    let inserts = take_record_batch(new, &UInt32Array::from(added.to_vec()))?;
    let rows = deletes.num_rows() + updates.num_rows() + inserts.num_rows();
    if rows == 0 {
        return Ok(None);
    }
    let mut ops = vec![Op::Delete; deletes.num_rows()];
    ops.resize(rows, Op::Insert);
    let batch = concat_batches(&new.schema(), [&deletes, &updates, &inserts])?;
    Ok(Some(StreamChunk::with_ops(batch, ops)))
}

/// `columns` as a batch of `schema`, cast where an aggregate's result type
/// differs from the declared one.
pub fn columns_to_batch(
    schema: &arrow::datatypes::SchemaRef,
    columns: Vec<ArrayRef>,
) -> Result<RecordBatch> {
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                arrow::compute::cast(&c, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{chunk_from_pretty, pretty};

    #[test]
    fn only_changed_and_new_groups_are_emitted() {
        let old = chunk_from_pretty("I I\n+ 1 10\n+ 2 20\n+ 3 30");
        let new = chunk_from_pretty("I I\n+ 3 31\n+ 4 40\n+ 1 10\n+ 2 20");
        let out = matched_changes(old.batch(), &[0, 1, 2], new.batch(), &[2, 3, 0], &[1])
            .unwrap()
            .unwrap();
        assert_eq!(pretty(&[out]), vec!["- 3 30", "+ 3 31", "+ 4 40"]);
        let same = matched_changes(new.batch(), &[0, 1], new.batch(), &[0, 1], &[]).unwrap();
        assert!(same.is_none());
    }
}
