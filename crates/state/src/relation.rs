//! How a table's or view's rows are laid out in its state table, and how a reader
//! turns committed entries back into Arrow batches.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use std::collections::HashMap;

use crate::keys::table_prefix;
use crate::{Error, Result, RowCodec, TableId};

/// Lists `row` `count` times (none for a count below one): a counted row
/// as the rows it stands for.
pub fn repeat_row<'a>(rows: &mut Vec<&'a [u8]>, row: &'a [u8], count: i64) {
    for _ in 0..count.max(0) {
        rows.push(row);
    }
}

/// The layout of a relation's state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationLayout {
    /// Key: the encoded primary key; value: the encoded row.
    Keyed,
    /// Key: the encoded row; value: its multiplicity (i64, big-endian). Tables
    /// without a primary key, where equal rows are interchangeable.
    Multiset,
    /// Key: the arrival number (statement u64, row u32, big-endian); value:
    /// the encoded row. Append-only tables with `WATERMARK FOR`, whose rows'
    /// order decides which are late: a view attached later, or restored,
    /// replays them in the order they arrived.
    Sequenced,
}

impl RelationLayout {
    /// The layout of a table with or without a primary key and event time.
    pub fn of_table(primary_key: bool, event_time: bool) -> Self {
        match (primary_key, event_time) {
            (true, _) => RelationLayout::Keyed,
            (false, true) => RelationLayout::Sequenced,
            (false, false) => RelationLayout::Multiset,
        }
    }
}

// A view's layout: key: the writer's partition (u16, big-endian), then the
// encoded row; value: its multiplicity. Each of a view's parallel writers
// counts its own rows under its own partition, so it can read them back alone
// (the snapshot for a new downstream); a reader sums a row's counts over the
// partitions.

/// Bytes of the partition in a view's key.
pub(crate) const PARTITION_BYTES: usize = 2;

/// The key prefix of one writer's rows of view `table`.
pub fn view_partition_prefix(table: TableId, partition: u16) -> Vec<u8> {
    let mut key = table_prefix(table);
    key.extend_from_slice(&partition.to_be_bytes());
    key
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
    let entries = entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
    decode_entries(&codec, table, layout, schema, entries)
}

/// [`decode_relation`] of borrowed entries, with the schema's codec.
pub(crate) fn decode_entries<'a>(
    codec: &RowCodec,
    table: TableId,
    layout: RelationLayout,
    schema: &SchemaRef,
    entries: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<RecordBatch> {
    let mut rows: Vec<&[u8]> = Vec::with_capacity(entries.len());
    match layout {
        RelationLayout::Keyed | RelationLayout::Sequenced => rows.extend(entries.map(|(_, v)| v)),
        RelationLayout::Multiset => {
            for (key, value) in entries {
                let count = decode_count(table, value)?;
                repeat_row(&mut rows, &key[4..], count);
            }
        }
    }
    rows_to_batch(codec, schema, rows)
}

/// Decodes committed entries of a view into one batch of its rows, in row order.
pub fn decode_view(
    table: TableId,
    schema: &SchemaRef,
    entries: &[(Vec<u8>, Vec<u8>)],
) -> Result<RecordBatch> {
    let codec = RowCodec::for_schema(schema)?;
    let mut counts: HashMap<&[u8], i64> = HashMap::with_capacity(entries.len());
    for (key, value) in entries {
        let row = key
            .get(4 + PARTITION_BYTES..)
            .ok_or_else(|| Error::Corrupt {
                table,
                reason: format!("view key of {} bytes", key.len()),
            })?;
        *counts.entry(row).or_default() += decode_count(table, value)?;
    }
    let mut counted: Vec<(&[u8], i64)> = counts.into_iter().collect();
    counted.sort_unstable();
    let mut rows: Vec<&[u8]> = Vec::with_capacity(counted.len());
    for (row, count) in counted {
        repeat_row(&mut rows, row, count);
    }
    rows_to_batch(&codec, schema, rows)
}

fn rows_to_batch(codec: &RowCodec, schema: &SchemaRef, rows: Vec<&[u8]>) -> Result<RecordBatch> {
    if rows.is_empty() {
        return Ok(RecordBatch::new_empty(Arc::clone(schema)));
    }
    let columns = codec.decode(rows)?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}
