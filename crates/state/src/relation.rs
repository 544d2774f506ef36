//! How a table's or view's rows are laid out in its state table, and how a reader
//! turns committed entries back into Arrow batches.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::{Error, Result, RowCodec, TableId};

/// The layout of a relation's state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationLayout {
    /// Key: the encoded primary key; value: the encoded row.
    Keyed,
    /// Key: the encoded row; value: its multiplicity (i64, big-endian). Views and
    /// tables without a primary key, where equal rows are interchangeable.
    Multiset,
}

/// The multiplicity value stored for a multiset row.
pub fn encode_count(count: i64) -> Vec<u8> {
    count.to_be_bytes().to_vec()
}

pub fn decode_count(table: TableId, value: &[u8]) -> Result<i64> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| Error::Corrupt {
        table,
        reason: format!("multiplicity of {} bytes", value.len()),
    })?;
    Ok(i64::from_be_bytes(bytes))
}

/// Decodes committed entries (full store keys, table prefix included) of a
/// relation into one batch of its rows.
pub fn decode_relation(
    table: TableId,
    layout: RelationLayout,
    schema: &SchemaRef,
    entries: &[(Vec<u8>, Vec<u8>)],
) -> Result<RecordBatch> {
    let codec = RowCodec::for_schema(schema)?;
    let mut rows: Vec<&[u8]> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        match layout {
            RelationLayout::Keyed => rows.push(value),
            RelationLayout::Multiset => {
                let count = decode_count(table, value)?;
                let row = &key[4..];
                for _ in 0..count.max(0) {
                    rows.push(row);
                }
            }
        }
    }
    if rows.is_empty() {
        return Ok(RecordBatch::new_empty(Arc::clone(schema)));
    }
    let columns = codec.decode(rows)?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}
