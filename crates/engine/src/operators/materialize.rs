use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tidemark_state::{decode_count, view_partition_prefix, RowCodec, TableId, Write, WriteBatch};
use tidemark_types::{Epoch, Op, StreamChunk};

use crate::operator::SnapshotSource;
use crate::{Error, Operator, Result};

/// Rows per chunk of a snapshot handed to a new downstream.
pub(crate) const SNAPSHOT_CHUNK_ROWS: usize = 4096;

/// The end of a view's chain: counts the view's rows in the store, where
/// `SELECT` reads them once an epoch commits, and passes the changes on to
/// views built on this one.
///
/// Keeps no copy of the rows: each change becomes a count delta the store adds
/// up at commit, so a view costs memory only for its current epoch's changes.
/// Each parallel instance writes under its own partition, which is what it
/// reads back for a new downstream's snapshot.
pub struct Materialize {
    table: TableId,
    prefix: Vec<u8>,
    codec: RowCodec,
    schema: SchemaRef,
    pending: Vec<(Vec<u8>, Write)>,
}

impl Materialize {
    /// `partition`: this instance's index among the view's parallel writers.
    pub fn new(table: TableId, partition: u16, schema: SchemaRef) -> Result<Self> {
        Ok(Self {
            table,
            prefix: view_partition_prefix(table, partition),
            codec: RowCodec::for_schema(&schema)?,
            schema,
            pending: Vec::new(),
        })
    }
}

impl Operator for Materialize {
    fn name(&self) -> &'static str {
        "Materialize"
    }

    fn on_chunk(&mut self, chunk: StreamChunk, out: &mut Vec<StreamChunk>) -> Result<()> {
        let keys = self
            .codec
            .encode_with_prefix(&self.prefix, chunk.batch().columns())?;
        self.pending.reserve(keys.len());
        for (i, key) in keys.into_iter().enumerate() {
            let delta = match chunk.op(i) {
                Op::Insert => 1,
                Op::Delete => -1,
            };
            self.pending.push((key, Write::AddCount(delta)));
        }
        out.push(chunk);
        Ok(())
    }

    fn on_checkpoint(
        &mut self,
        _epoch: Epoch,
        batch: &mut WriteBatch,
        _out: &mut Vec<StreamChunk>,
    ) -> Result<()> {
        batch.writes.append(&mut self.pending);
        Ok(())
    }

    fn snapshot(&self, from: &SnapshotSource<'_>) -> Result<Vec<StreamChunk>> {
        let (epoch, mut scanned) = from.store.scan_prefixes(&[self.prefix.clone()])?;
        if epoch != from.committed {
            return Err(Error::Internal(format!(
                "view {} read for a snapshot as of epoch {epoch}, expected {}",
                self.table, from.committed
            )));
        }
        let mut counts: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (key, value) in scanned.pop().unwrap_or_default() {
            let count = decode_count(self.table, &value)?;
            counts.insert(key, count);
        }
        for (key, write) in &from.uncommitted.writes {
            if let (true, Write::AddCount(delta)) = (key.starts_with(&self.prefix), write) {
                *counts.entry(key.clone()).or_default() += delta;
            }
        }
        let mut chunks = Vec::new();
        let mut pending: Vec<&[u8]> = Vec::new();
        for (key, &count) in &counts {
            for _ in 0..count.max(0) {
                pending.push(&key[self.prefix.len()..]);
            }
            if pending.len() >= SNAPSHOT_CHUNK_ROWS {
                chunks.push(self.decode(std::mem::take(&mut pending))?);
            }
        }
        if !pending.is_empty() {
            chunks.push(self.decode(pending)?);
        }
        Ok(chunks)
    }
}

impl Materialize {
    fn decode(&self, rows: Vec<&[u8]>) -> Result<StreamChunk> {
        let columns = self.codec.decode(rows)?;
        Ok(StreamChunk::inserts(RecordBatch::try_new(
            Arc::clone(&self.schema),
            columns,
        )?))
    }
}
