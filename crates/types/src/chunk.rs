use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// The kind of change a row of a chunk carries. An update travels as a
/// `Delete` of the old row followed by an `Insert` of the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Insert,
    Delete,
}

/// A vectorized batch of changes: an Arrow batch plus, for changelog streams, one
/// op per row. Append-only streams carry no ops (every row is an insert), so the
/// common case costs nothing extra.
#[derive(Debug, Clone)]
pub struct StreamChunk {
    batch: RecordBatch,
    ops: Option<Vec<Op>>,
}

impl StreamChunk {
    /// A chunk of inserts only.
    pub fn inserts(batch: RecordBatch) -> Self {
        Self { batch, ops: None }
    }

    /// A changelog chunk; `ops` must have one entry per row of `batch`.
    pub fn with_ops(batch: RecordBatch, ops: Vec<Op>) -> Self {
        assert_eq!(batch.num_rows(), ops.len(), "one op per row");
        if ops.iter().all(|op| *op == Op::Insert) {
            return Self::inserts(batch);
        }
        Self {
            batch,
            ops: Some(ops),
        }
    }

    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// Per-row ops, or `None` when every row is an insert.
    pub fn ops(&self) -> Option<&[Op]> {
        self.ops.as_deref()
    }

    /// Whether any row is a delete (what an append-only consumer refuses).
    pub fn has_deletes(&self) -> bool {
        self.ops().is_some_and(|ops| ops.contains(&Op::Delete))
    }

    pub fn op(&self, row: usize) -> Op {
        self.ops.as_ref().map_or(Op::Insert, |ops| ops[row])
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// The rows `keep` is true for (one entry per row, no nulls), ops kept.
    pub fn filter(&self, keep: &BooleanArray) -> Result<Self, ArrowError> {
        let batch = filter_record_batch(&self.batch, keep)?;
        let ops = self.ops.as_ref().map(|ops| {
            ops.iter()
                .zip(keep.values().iter())
                .filter_map(|(op, kept)| kept.then_some(*op))
                .collect()
        });
        Ok(match ops {
            Some(ops) => Self::with_ops(batch, ops),
            None => Self::inserts(batch),
        })
    }

    pub fn into_parts(self) -> (RecordBatch, Option<Vec<Op>>) {
        (self.batch, self.ops)
    }
}
