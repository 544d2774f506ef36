use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tidemark_state::{decode_count, encode_count, RowCodec, StateTable, TableId, WriteBatch};
use tidemark_types::{Epoch, Op, StreamChunk};

use crate::{Operator, Result};

/// Rows per chunk of a snapshot handed to a new downstream.
pub(crate) const SNAPSHOT_CHUNK_ROWS: usize = 4096;

/// The end of a view's chain: keeps the view's rows as a multiset (row → count)
/// in its state table, which is what `SELECT` reads once an epoch commits, and
/// passes the changes on to views built on this one.
pub struct Materialize {
    table: StateTable,
    codec: RowCodec,
    schema: SchemaRef,
}

impl Materialize {
    pub fn new(id: TableId, schema: SchemaRef) -> Result<Self> {
        Ok(Self {
            table: StateTable::new(id),
            codec: RowCodec::for_schema(&schema)?,
            schema,
        })
    }
}

impl Operator for Materialize {
    fn name(&self) -> &'static str {
        "Materialize"
    }

    fn on_chunk(&mut self, chunk: StreamChunk, out: &mut Vec<StreamChunk>) -> Result<()> {
        let rows = self.codec.encode(chunk.batch().columns())?;
        let id = self.table.id();
        let mut result = Ok(());
        for (i, row) in rows.into_iter().enumerate() {
            let delta = match chunk.op(i) {
                Op::Insert => 1,
                Op::Delete => -1,
            };
            self.table.update(row, |old| {
                let old = match old.map(|v| decode_count(id, v)).transpose() {
                    Ok(old) => old.unwrap_or(0),
                    Err(e) => {
                        result = Err(e);
                        return old.map(<[u8]>::to_vec);
                    }
                };
                let new = old + delta;
                if new < 0 {
                    tracing::warn!(table = id, "view row deleted more often than inserted");
                }
                (new != 0).then(|| encode_count(new))
            });
        }
        result?;
        out.push(chunk);
        Ok(())
    }

    fn on_checkpoint(
        &mut self,
        _epoch: Epoch,
        batch: &mut WriteBatch,
        _out: &mut Vec<StreamChunk>,
    ) -> Result<()> {
        self.table.take_delta(batch);
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<StreamChunk>> {
        let mut chunks = Vec::new();
        let mut pending: Vec<&[u8]> = Vec::new();
        for (row, count) in self.table.iter() {
            let count = decode_count(self.table.id(), count)?;
            for _ in 0..count.max(0) {
                pending.push(row);
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
