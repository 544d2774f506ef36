use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::hash_map::Entry;
use datafusion::common::HashMap;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tidemark_state::{
    decode_count, repeat_row, view_partition_prefix, RowCodec, StateStore, TableId, Write,
    WriteBatch,
};
use tidemark_types::{Epoch, Message, Op, StreamChunk};

use crate::operator::{SnapshotCursor, SnapshotKeys, SnapshotPages, SnapshotSource};
use crate::{Error, Operator, Result};

/// Rows per chunk of a snapshot handed to a new downstream.
pub(crate) const SNAPSHOT_CHUNK_ROWS: usize = 4096;

/// The end of a view's chain: counts the view's rows in the store, where
/// `SELECT` reads them once an epoch commits, and passes the changes on to
/// views built on this one.
///
/// Keeps no copy of the rows: each change becomes a count delta the store adds
/// up at commit, so a view costs memory only for its current epoch's changes.
/// Those are summed per row as they come, so a row inserted and deleted in one
/// epoch (a group updated twice) costs the commit nothing.
/// Each parallel instance writes under its own partition, which is what it
/// reads back for a new downstream's snapshot.
pub struct Materialize {
    table: TableId,
    prefix: Vec<u8>,
    codec: RowCodec,
    schema: SchemaRef,
    /// This epoch's count change per encoded row; none is 0.
    pending: HashMap<Vec<u8>, i64>,
}

impl Materialize {
    /// `partition`: this instance's index among the view's parallel writers.
    pub fn new(table: TableId, partition: u16, schema: SchemaRef) -> Result<Self> {
        Ok(Self {
            table,
            prefix: view_partition_prefix(table, partition),
            codec: RowCodec::for_schema(&schema)?,
            schema,
            pending: HashMap::default(),
        })
    }
}

impl Operator for Materialize {
    fn name(&self) -> &'static str {
        "Materialize"
    }

    /// The rows are the store's; nothing else outlives a checkpoint.
    fn durability(&self) -> crate::Durability {
        crate::Durability::Checkpointed
    }

    fn on_chunk(&mut self, chunk: StreamChunk, out: &mut Vec<StreamChunk>) -> Result<()> {
        let keys = self
            .codec
            .encode_with_prefix(&self.prefix, chunk.batch().columns())?;
        for (i, key) in keys.into_iter().enumerate() {
            let delta = match chunk.op(i) {
                Op::Insert => 1,
                Op::Delete => -1,
            };
            match self.pending.entry(key) {
                Entry::Occupied(mut sum) => {
                    *sum.get_mut() += delta;
                    if *sum.get() == 0 {
                        sum.remove();
                    }
                }
                Entry::Vacant(sum) => {
                    sum.insert(delta);
                }
            }
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
        batch.writes.reserve(self.pending.len());
        batch.writes.extend(
            self.pending
                .drain()
                .map(|(key, delta)| (key, Write::AddCount(delta))),
        );
        Ok(())
    }

    fn snapshot(
        &self,
        from: &SnapshotSource<'_>,
        cursor: SnapshotCursor,
    ) -> Result<Box<dyn SnapshotPages>> {
        let committed = from.store.committed_epoch();
        if committed != from.committed {
            return Err(Error::Internal(format!(
                "view {} read for a snapshot as of epoch {committed}, expected {}",
                self.table, from.committed
            )));
        }
        // Changes to rows sent in earlier epochs went out as they came.
        let after = cursor.after;
        let pending =
            |key: &Vec<u8>| key.starts_with(&self.prefix) && after.as_ref().is_none_or(|a| key > a);
        let mut uncommitted: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (key, write) in &from.uncommitted.writes {
            if let (true, Write::AddCount(delta)) = (pending(key), write) {
                *uncommitted.entry(key.clone()).or_default() += delta;
            }
        }
        Ok(Box::new(ViewPages {
            table: self.table,
            store: Arc::clone(&from.store),
            prefix: self.prefix.clone(),
            codec: RowCodec::for_schema(&self.schema)?,
            schema: Arc::clone(&self.schema),
            after,
            done: cursor.done,
            uncommitted,
        }))
    }

    /// A row's key is its place in the store: this partition's prefix and
    /// the encoded row, the order a snapshot reads them in.
    fn snapshot_keys(&self, chunk: &StreamChunk) -> Result<SnapshotKeys> {
        Ok(SnapshotKeys::Rows(self.codec.encode_with_prefix(
            &self.prefix,
            chunk.batch().columns(),
        )?))
    }
}

/// A view partition's rows as of the epoch that sends them: the committed
/// counts after a cursor, read a page at a time, plus this actor's changes
/// not committed yet.
struct ViewPages {
    table: TableId,
    store: Arc<dyn StateStore>,
    prefix: Vec<u8>,
    codec: RowCodec,
    schema: SchemaRef,
    /// The last key sent.
    after: Option<Vec<u8>>,
    done: bool,
    /// Count changes of keys not reached yet.
    uncommitted: BTreeMap<Vec<u8>, i64>,
}

impl SnapshotPages for ViewPages {
    fn cursor(&self) -> SnapshotCursor {
        SnapshotCursor {
            after: self.after.clone(),
            done: self.done,
            ..SnapshotCursor::default()
        }
    }

    fn next_page(&mut self) -> Result<Option<Vec<Message>>> {
        if self.done {
            return Ok(None);
        }
        let page =
            self.store
                .scan_page(&self.prefix, self.after.as_deref(), SNAPSHOT_CHUNK_ROWS)?;
        // The changes up to this page's last key go with it; the last page
        // takes the rest.
        let reached = if page.len() < SNAPSHOT_CHUNK_ROWS {
            self.done = true;
            std::mem::take(&mut self.uncommitted)
        } else {
            let last = page.entry(page.len() - 1).0.to_vec();
            let mut beyond = self.uncommitted.split_off(&last);
            if let Some(delta) = beyond.remove(&last) {
                self.uncommitted.insert(last.clone(), delta);
            }
            self.after = Some(last);
            std::mem::replace(&mut self.uncommitted, beyond)
        };
        // Both in key order: merged as they go.
        let row_at = self.prefix.len();
        let mut rows: Vec<&[u8]> = Vec::with_capacity(page.len());
        let mut changes = reached.iter().peekable();
        for (key, value) in page.iter() {
            while let Some((changed, delta)) = changes.next_if(|(k, _)| k.as_slice() < key) {
                repeat_row(&mut rows, &changed[row_at..], *delta);
            }
            let mut count = decode_count(self.table, value)?;
            if let Some((_, delta)) = changes.next_if(|(k, _)| k.as_slice() == key) {
                count += delta;
            }
            repeat_row(&mut rows, &key[row_at..], count);
        }
        for (changed, delta) in changes {
            repeat_row(&mut rows, &changed[row_at..], *delta);
        }
        if rows.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let columns = self.codec.decode(rows)?;
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        Ok(Some(vec![Message::Chunk(StreamChunk::inserts(batch))]))
    }
}

#[cfg(test)]
mod tests {
    use tidemark_state::{decode_view, table_prefix, MemoryStore, StateStore};

    use super::*;
    use crate::test_util::{chunk_from_pretty, pretty, schema_of};

    fn feed(m: &mut Materialize, text: &str, batch: &mut WriteBatch) {
        m.on_chunk(chunk_from_pretty(text), &mut Vec::new())
            .unwrap();
        m.on_checkpoint(0, batch, &mut Vec::new()).unwrap();
    }

    /// Every row of `m`'s snapshot, and how many pages it took.
    fn snapshot_rows(m: &Materialize, from: &SnapshotSource<'_>) -> (Vec<String>, usize) {
        let mut pages = m.snapshot(from, SnapshotCursor::default()).unwrap();
        let (mut rows, mut count) = (Vec::new(), 0);
        while let Some(messages) = pages.next_page().unwrap() {
            rows.extend(pretty(&chunks_of(messages)));
            count += 1;
        }
        (rows, count)
    }

    /// The same, each page read by a new snapshot from where the last one
    /// stopped, as a snapshot sent over several epochs is.
    fn resumed_rows(m: &Materialize, from: &SnapshotSource<'_>) -> (Vec<String>, usize) {
        let (mut rows, mut count, mut cursor) = (Vec::new(), 0, SnapshotCursor::default());
        loop {
            let mut pages = m.snapshot(from, cursor).unwrap();
            let Some(messages) = pages.next_page().unwrap() else {
                return (rows, count);
            };
            rows.extend(pretty(&chunks_of(messages)));
            count += 1;
            cursor = pages.cursor();
        }
    }

    fn chunks_of(messages: Vec<Message>) -> Vec<StreamChunk> {
        messages
            .into_iter()
            .map(|m| match m {
                Message::Chunk(c) => c,
                other => panic!("a view's snapshot sent {other:?}"),
            })
            .collect()
    }

    #[test]
    fn partitions_count_their_own_rows_and_readers_sum_them() {
        let schema = schema_of("I");
        let store = Arc::new(MemoryStore::new());
        let mut a = Materialize::new(9, 0, Arc::clone(&schema)).unwrap();
        let mut b = Materialize::new(9, 1, Arc::clone(&schema)).unwrap();
        let mut batch = WriteBatch::default();
        feed(&mut a, "I\n+ 1\n+ 1\n+ 2", &mut batch);
        feed(&mut b, "I\n+ 1\n+ 3", &mut batch);
        store.commit(1, batch).unwrap();

        // Epoch 2, not yet committed: `a` deletes a 1 and a 2, inserts a 4.
        let mut uncommitted = WriteBatch::default();
        feed(&mut a, "I\n- 1\n- 2\n+ 4", &mut uncommitted);
        let from = SnapshotSource {
            store: Arc::clone(&store) as Arc<dyn StateStore>,
            committed: 1,
            uncommitted: &uncommitted,
        };
        assert_eq!(snapshot_rows(&a, &from).0, vec!["+ 1", "+ 4"]);
        assert_eq!(snapshot_rows(&b, &from).0, vec!["+ 1", "+ 3"]);
        let stale = SnapshotSource {
            committed: 0,
            ..from
        };
        assert!(a.snapshot(&stale, SnapshotCursor::default()).is_err());

        store.commit(2, uncommitted).unwrap();
        let (_, entries) = store.scan_prefixes(&[table_prefix(9)]).unwrap();
        let view = decode_view(9, &schema, &entries[0]).unwrap();
        let rows = pretty(&[StreamChunk::inserts(view)]);
        assert_eq!(rows, vec!["+ 1", "+ 1", "+ 3", "+ 4"]);
    }

    /// A snapshot of several pages: each uncommitted change is read with
    /// the page its row falls in (between committed rows, on a page's last
    /// row, past the last one), and the rows are those of the epoch.
    #[test]
    fn a_snapshot_of_many_pages_adds_uncommitted_changes_where_they_fall() {
        let store = Arc::new(MemoryStore::new());
        let mut m = Materialize::new(9, 0, schema_of("I")).unwrap();
        let mut model: BTreeMap<i64, i64> = BTreeMap::new();
        let mut feed_changes = |m: &mut Materialize, changes: &[(i64, i64)]| {
            let mut text = String::from("I\n");
            for &(value, delta) in changes {
                let op = if delta > 0 { '+' } else { '-' };
                for _ in 0..delta.abs() {
                    text.push_str(&format!("{op} {value}\n"));
                }
                *model.entry(value).or_default() += delta;
            }
            let mut batch = WriteBatch::default();
            feed(m, &text, &mut batch);
            batch
        };
        let page = SNAPSHOT_CHUNK_ROWS as i64;
        let committed: Vec<(i64, i64)> = (0..3 * page).map(|i| (2 * i, 1 + i % 2)).collect();
        store.commit(1, feed_changes(&mut m, &committed)).unwrap();
        let mut changes = vec![(1, 1), (2 * page - 2, -1), (2 * page, 1), (2 * page + 1, 3)];
        changes.extend([
            (4 * page - 2, -2),
            (4 * page - 1, 1),
            (6 * page + 7, 2),
            (0, -1),
        ]);
        let uncommitted = feed_changes(&mut m, &changes);
        let from = SnapshotSource {
            store: Arc::clone(&store) as Arc<dyn StateStore>,
            committed: 1,
            uncommitted: &uncommitted,
        };
        let want: Vec<String> = model
            .iter()
            .flat_map(|(v, &n)| std::iter::repeat_n(format!("+ {v}"), n.max(0) as usize))
            .collect();
        let (rows, pages) = snapshot_rows(&m, &from);
        assert_eq!(pages, 4);
        assert_eq!(rows, want);
        let (rows, pages) = resumed_rows(&m, &from);
        assert_eq!(pages, 4);
        assert_eq!(rows, want);
    }

    #[test]
    fn changes_that_cancel_within_an_epoch_are_not_written() {
        let mut m = Materialize::new(9, 0, schema_of("I")).unwrap();
        let mut batch = WriteBatch::default();
        // A group updated twice: its first row comes and goes in this epoch.
        feed(&mut m, "I\n+ 1\n- 1\n+ 2\n+ 2\n- 5", &mut batch);
        let mut writes: Vec<(Vec<u8>, Write)> = batch.writes;
        writes.sort_by(|a, b| a.0.cmp(&b.0));
        let codec = RowCodec::for_schema(&schema_of("I")).unwrap();
        let key = |v: i64| {
            let column: arrow::array::ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![v]));
            let prefix = view_partition_prefix(9, 0);
            codec
                .encode_with_prefix(&prefix, &[column])
                .unwrap()
                .remove(0)
        };
        assert_eq!(
            writes,
            vec![(key(2), Write::AddCount(2)), (key(5), Write::AddCount(-1))]
        );
        // Nothing is carried into the next epoch.
        let mut next = WriteBatch::default();
        m.on_checkpoint(0, &mut next, &mut Vec::new()).unwrap();
        assert!(next.is_empty());
    }
}
