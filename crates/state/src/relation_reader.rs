//! A relation's committed rows as Arrow batches, read page by page from a
//! [`Snapshot`]: a query holds a page of each relation it reads, not the
//! relation.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::keys::{key_after, table_key, table_prefix};
use crate::page::Page;
use crate::relation::{decode_count, decode_entries, view_partition_prefix, PARTITION_BYTES};
use crate::snapshot::PendingPage;
use crate::{Error, RelationLayout, Result, RowCodec, Snapshot, TableId};

/// Entries read per request, and about the rows per batch.
const PAGE_ENTRIES: usize = 4096;

/// How a relation's rows are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationShape {
    Table(RelationLayout),
    /// Counted rows under each writer's partition, summed by the reader.
    View,
}

/// Reads one relation's rows, in key order (a view's: in row order).
pub struct RelationReader {
    snapshot: Arc<Snapshot>,
    table: TableId,
    schema: SchemaRef,
    codec: RowCodec,
    source: Source,
}

enum Source {
    Table(RelationLayout, Cursor),
    /// The rows of some keys of a table (full store keys, in key order),
    /// those not read yet.
    Keys(RelationLayout, std::vec::IntoIter<Vec<u8>>),
    /// One cursor per partition, once the partitions are found.
    View(Option<Vec<Cursor>>),
}

/// Where a read of one prefix stands.
struct Cursor {
    prefix: Vec<u8>,
    /// The next page, asked for as soon as the one before came back full;
    /// `None` once the prefix is read through.
    next: Option<Next>,
    page: Page,
    /// The next entry of `page`.
    at: usize,
}

enum Next {
    /// Not asked for yet: the first key it starts at.
    From(Vec<u8>),
    Asked(PendingPage),
}

impl Cursor {
    fn new(prefix: Vec<u8>) -> Self {
        Self {
            next: Some(Next::From(prefix.clone())),
            prefix,
            page: Page::default(),
            at: 0,
        }
    }

    /// Reads the next page when the last one is used up; false when there
    /// is nothing left. A full page asks for the one after at once, so the
    /// reader reads it while this one is decoded.
    async fn fill(&mut self, snapshot: &Snapshot) -> Result<bool> {
        if self.at == self.page.len() {
            let page = match self.next.take() {
                Some(Next::From(from)) => snapshot.page(&self.prefix, &from, PAGE_ENTRIES).await?,
                Some(Next::Asked(pending)) => pending.wait().await?,
                None => return Ok(false),
            };
            self.page = page;
            self.at = 0;
            if self.page.len() == PAGE_ENTRIES {
                let from = key_after(self.page.entry(PAGE_ENTRIES - 1).0);
                self.next = Some(Next::Asked(snapshot.request(
                    &self.prefix,
                    &from,
                    PAGE_ENTRIES,
                )));
            }
        }
        Ok(self.at < self.page.len())
    }

    /// The next entry, if the page holds one.
    fn head(&self) -> Option<(&[u8], &[u8])> {
        (self.at < self.page.len()).then(|| self.page.entry(self.at))
    }
}

impl RelationReader {
    /// Rows of `table` as `schema` (whose types are the stored ones; its
    /// nullability is the reader's to choose).
    pub fn new(
        snapshot: Arc<Snapshot>,
        table: TableId,
        shape: RelationShape,
        schema: SchemaRef,
    ) -> Result<Self> {
        let source = match shape {
            RelationShape::Table(layout) => Source::Table(layout, Cursor::new(table_prefix(table))),
            RelationShape::View => Source::View(None),
        };
        Ok(Self {
            codec: RowCodec::for_schema(&schema)?,
            snapshot,
            table,
            schema,
            source,
        })
    }

    /// Only the rows of a table stored under `keys` (user keys, such as a
    /// primary key's encoding): a query that pins its keys reads those.
    pub fn of_keys(
        snapshot: Arc<Snapshot>,
        table: TableId,
        layout: RelationLayout,
        schema: SchemaRef,
        keys: Vec<Vec<u8>>,
    ) -> Result<Self> {
        let mut keys: Vec<Vec<u8>> = keys.iter().map(|k| table_key(table, k)).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut reader = Self::new(snapshot, table, RelationShape::Table(layout), schema)?;
        reader.source = Source::Keys(layout, keys.into_iter());
        Ok(reader)
    }

    /// The next batch of rows, never empty; `None` after the last.
    pub async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            let batch = match &mut self.source {
                Source::Table(layout, cursor) => {
                    if !cursor.fill(&self.snapshot).await? {
                        return Ok(None);
                    }
                    let entries = cursor.page.iter().skip(cursor.at);
                    let batch =
                        decode_entries(&self.codec, self.table, *layout, &self.schema, entries)?;
                    cursor.at = cursor.page.len();
                    batch
                }
                Source::Keys(layout, keys) => {
                    if keys.as_slice().is_empty() {
                        return Ok(None);
                    }
                    let prefix = table_prefix(self.table);
                    let asked = keys.by_ref().take(PAGE_ENTRIES).collect();
                    let found = self.snapshot.get_many(&prefix, asked).await?;
                    decode_entries(&self.codec, self.table, *layout, &self.schema, found.iter())?
                }
                Source::View(partitions) => {
                    let cursors = match partitions {
                        Some(cursors) => cursors,
                        None => {
                            partitions.insert(find_partitions(&self.snapshot, self.table).await?)
                        }
                    };
                    let rows = merge_partitions(&self.snapshot, self.table, cursors).await?;
                    if rows.is_empty() {
                        return Ok(None);
                    }
                    let columns = self.codec.decode(rows.iter())?;
                    RecordBatch::try_new(Arc::clone(&self.schema), columns)?
                }
            };
            if batch.num_rows() > 0 {
                return Ok(Some(batch));
            }
        }
    }
}

/// A cursor for each partition a view's writers have rows under.
async fn find_partitions(snapshot: &Snapshot, table: TableId) -> Result<Vec<Cursor>> {
    let prefix = table_prefix(table);
    let mut cursors = Vec::new();
    let mut next: u32 = 0;
    while next <= u32::from(u16::MAX) {
        let from = view_partition_prefix(table, next as u16);
        let first = snapshot.page(&prefix, &from, 1).await?;
        if first.is_empty() {
            break;
        }
        let (key, _) = first.entry(0);
        let partition = key
            .get(prefix.len()..prefix.len() + PARTITION_BYTES)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_be_bytes)
            .ok_or_else(|| Error::Corrupt {
                table,
                reason: format!("view key of {} bytes", key.len()),
            })?;
        cursors.push(Cursor::new(view_partition_prefix(table, partition)));
        next = u32::from(partition) + 1;
    }
    Ok(cursors)
}

/// The next rows of a view, about a page of them: each row as often as
/// its counts over the partitions add up to, in row order.
async fn merge_partitions(
    snapshot: &Snapshot,
    table: TableId,
    cursors: &mut [Cursor],
) -> Result<Rows> {
    let row_at = 4 + PARTITION_BYTES;
    let mut rows = Rows::default();
    while rows.len() < PAGE_ENTRIES {
        // Every partition's next row must be in view to pick the least.
        for cursor in cursors.iter_mut() {
            cursor.fill(snapshot).await?;
        }
        let least = cursors
            .iter()
            .filter_map(|c| c.head().map(|(key, _)| key.get(row_at..)))
            .min();
        let Some(least) = least else {
            break;
        };
        let least = least.ok_or_else(|| Error::Corrupt {
            table,
            reason: "a view key shorter than its partition".into(),
        })?;
        let mut count = 0i64;
        let row = rows.add(least);
        for cursor in cursors.iter_mut() {
            if let Some((key, value)) = cursor.head() {
                if key.get(row_at..) == Some(rows.bytes(row)) {
                    count += decode_count(table, value)?;
                    cursor.at += 1;
                }
            }
        }
        rows.repeat(row, count);
    }
    Ok(rows)
}

/// Rows in one buffer, each listed as often as it is counted.
#[derive(Default)]
struct Rows {
    bytes: Vec<u8>,
    listed: Vec<(usize, usize)>,
}

impl Rows {
    fn len(&self) -> usize {
        self.listed.len()
    }

    fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// Stores `row`, not listed yet; returns where it is.
    fn add(&mut self, row: &[u8]) -> (usize, usize) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(row);
        (start, self.bytes.len())
    }

    fn bytes(&self, (start, end): (usize, usize)) -> &[u8] {
        &self.bytes[start..end]
    }

    /// Lists the stored `row` `count` times (none below one).
    fn repeat(&mut self, row: (usize, usize), count: i64) {
        for _ in 0..count.max(0) {
            self.listed.push(row);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.listed.iter().map(|&row| self.bytes(row))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::compute::concat_batches;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::store::Entries;
    use crate::{
        decode_relation, decode_view, table_key, MemoryStore, RocksDbOptions, RocksDbStore,
        StateStore, WriteBatch,
    };

    const VIEW: TableId = 5;
    const KEYED: TableId = 6;
    const MULTISET: TableId = 7;
    const EMPTY: TableId = 8;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]))
    }

    /// Encoded rows `(i, "s{i % 7}")` for each `i`.
    fn rows(codec: &RowCodec, ids: &[i64]) -> Vec<Vec<u8>> {
        let a: ArrayRef = Arc::new(Int64Array::from(ids.to_vec()));
        let b: ArrayRef = Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("s{}", i % 7)),
        ));
        codec.encode(&[a, b]).unwrap()
    }

    async fn read_all(
        snapshot: &Arc<Snapshot>,
        table: TableId,
        shape: RelationShape,
    ) -> RecordBatch {
        let mut reader = RelationReader::new(Arc::clone(snapshot), table, shape, schema()).unwrap();
        let mut batches = Vec::new();
        while let Some(batch) = reader.next_batch().await.unwrap() {
            assert!(batch.num_rows() > 0);
            batches.push(batch);
        }
        concat_batches(&schema(), &batches).unwrap()
    }

    /// Relations of several pages, a view's rows counted under partitions
    /// on both sides of a byte boundary with counts that cancel, read page
    /// by page equal the same relations decoded whole.
    #[tokio::test]
    async fn pages_read_what_a_whole_scan_reads() {
        let dir = crate::rocks::tests::tempdir("relation-reader");
        let rocks = RocksDbStore::open(&dir, &RocksDbOptions::default()).unwrap();
        let stores: Vec<Arc<dyn StateStore>> = vec![Arc::new(MemoryStore::new()), Arc::new(rocks)];
        let codec = RowCodec::for_schema(&schema()).unwrap();
        for (seed, store) in (1u64..).zip(stores) {
            let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move |n: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % n
            };
            let mut b = WriteBatch::default();
            let ids: Vec<i64> = (0..9000).collect();
            for (i, row) in rows(&codec, &ids).into_iter().enumerate() {
                for _ in 0..next(3) {
                    let partition = [0u16, 3, 255, 256, 300][next(5) as usize];
                    let mut key = view_partition_prefix(VIEW, partition);
                    key.extend_from_slice(&row);
                    b.add_count(key, next(5) as i64 - 1);
                }
                let pk = (i as u64).to_be_bytes();
                b.put(table_key(KEYED, &pk), row.clone());
                if next(4) == 0 {
                    b.add_count(table_key(MULTISET, &row), 1 + next(3) as i64);
                }
            }
            store.commit(1, b).unwrap();
            let prefixes = vec![
                table_prefix(VIEW),
                table_prefix(KEYED),
                table_prefix(MULTISET),
            ];
            let mut taken = prefixes.clone();
            taken.push(table_prefix(EMPTY));
            let snapshot = Arc::new(Arc::clone(&store).snapshot(taken).unwrap());
            let (_, whole) = store.scan_prefixes(&prefixes).unwrap();

            let want = decode_view(VIEW, &schema(), &whole[0]).unwrap();
            assert!(want.num_rows() > 2 * PAGE_ENTRIES, "{}", want.num_rows());
            assert_eq!(read_all(&snapshot, VIEW, RelationShape::View).await, want);
            for (table, layout, entries) in [
                (KEYED, RelationLayout::Keyed, &whole[1]),
                (MULTISET, RelationLayout::Multiset, &whole[2]),
            ] {
                let want = decode_relation(table, layout, &schema(), entries).unwrap();
                let got = read_all(&snapshot, table, RelationShape::Table(layout)).await;
                assert_eq!(got, want, "table {table}");
            }
            // Keys read one by one: present, absent, repeated, unordered.
            let wanted: Vec<u64> = vec![4096, 5, 9000, 5, 0, 8999];
            let keys = wanted.iter().map(|k| k.to_be_bytes().to_vec()).collect();
            let mut reader = RelationReader::of_keys(
                Arc::clone(&snapshot),
                KEYED,
                RelationLayout::Keyed,
                schema(),
                keys,
            )
            .unwrap();
            let got = reader.next_batch().await.unwrap().unwrap();
            assert!(reader.next_batch().await.unwrap().is_none());
            let stored: Entries = [0u64, 5, 4096, 8999]
                .iter()
                .map(|k| whole[1][*k as usize].clone())
                .collect();
            let want = decode_relation(KEYED, RelationLayout::Keyed, &schema(), &stored).unwrap();
            assert_eq!(got, want);

            let empty = read_all(&snapshot, EMPTY, RelationShape::View).await;
            assert_eq!(empty.num_rows(), 0);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
