//! A table's rows as its writer owns them: DML is checked and applied here, in
//! one place, in the order statements arrive, and turned into a changelog.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use arrow::compute::{concat_batches, prep_null_mask_filter, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use datafusion::physical_expr::PhysicalExpr;
use tidemark_plan::RelationId;
use tidemark_state::{
    decode_count, encode_count, RelationLayout, RowCodec, StateStore, StateTable, WriteBatch,
};
use tidemark_types::{Message, Op, StreamChunk, Watermark};

use crate::operator::{SnapshotCursor, SnapshotKeys, SnapshotPages};
use crate::operators::SNAPSHOT_CHUNK_ROWS;
use crate::{Error, Result};

/// What the runtime needs to know of a table.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub id: RelationId,
    pub name: String,
    pub schema: SchemaRef,
    pub primary_key: Option<Vec<usize>>,
    pub append_only: bool,
    /// `WATERMARK FOR`: inserted rows advance the table's watermark.
    pub event_time: Option<tidemark_plan::EventTime>,
}

impl TableSpec {
    pub fn layout(&self) -> RelationLayout {
        RelationLayout::of_table(self.primary_key.is_some(), self.event_time.is_some())
    }
}

/// One DML statement against a table. Expressions are evaluated over the
/// table's rows (its schema, in column order).
#[derive(Debug, Clone)]
pub enum DmlRequest {
    /// Rows already cast to the table's schema.
    Insert(RecordBatch),
    Delete {
        filter: Option<Arc<dyn PhysicalExpr>>,
    },
    /// `columns` gives every column's new value, in table order.
    Update {
        filter: Option<Arc<dyn PhysicalExpr>>,
        columns: Vec<Arc<dyn PhysicalExpr>>,
    },
}

pub struct TableState {
    spec: TableSpec,
    state: StateTable,
    /// The next statement's arrival number (`RelationLayout::Sequenced`).
    next_statement: u64,
    /// The watermark the stored rows imply, at restore.
    stored_watermark: Option<Watermark>,
    row_codec: RowCodec,
    key_codec: Option<RowCodec>,
}

/// Entries a statement's scan or a snapshot reads from the store at a time.
const SCAN_PAGE_ENTRIES: usize = 4096;

fn constraint(code: &'static str, message: String, detail: Option<String>) -> Error {
    Error::Constraint {
        code,
        message,
        detail,
    }
}

/// Where a snapshot of a table read in arrival order (`Sequenced` with event
/// time) has got to: the statement being sent, the latest event time of its
/// rows so far, and the last watermark sent.
#[derive(Debug, Default, Clone)]
pub struct ArrivalCursor {
    statement: Option<Vec<u8>>,
    statement_latest: Option<i64>,
    watermark: Option<i64>,
}

/// A table's rows from a cursor on, page by page, so a view attached to a
/// large table never needs the table in memory at once.
pub struct TablePages<'a> {
    table: &'a mut TableState,
    cursor: SnapshotCursor,
}

impl TableState {
    pub fn event_time(&self) -> Option<tidemark_plan::EventTime> {
        self.spec.event_time
    }

    /// The table over the rows the store committed for it (none for a new
    /// one). Reads nothing but, with arrival order, where the rows end.
    pub fn restore(spec: TableSpec, store: Arc<dyn StateStore>) -> Result<Self> {
        let key_codec = spec
            .primary_key
            .as_ref()
            .map(|pk| RowCodec::for_columns(&spec.schema, pk))
            .transpose()?;
        let mut table = Self {
            state: StateTable::new(spec.id, store),
            next_statement: 0,
            stored_watermark: None,
            row_codec: RowCodec::for_schema(&spec.schema)?,
            key_codec,
            spec,
        };
        if table.spec.layout() == RelationLayout::Sequenced {
            table.resume_arrivals()?;
        }
        Ok(table)
    }

    /// Reads a restored `Sequenced` table through once, page by page: the
    /// next arrival number follows the last stored, and the watermark resumes
    /// where its rows' latest event time puts it (rows only advance it, and
    /// such a table only takes inserts).
    fn resume_arrivals(&mut self) -> Result<()> {
        let mut cursor = None;
        let mut latest: Option<i64> = None;
        while let Some(entries) = self.state.next_page(&mut cursor, SCAN_PAGE_ENTRIES)? {
            let last = cursor.as_deref().and_then(|k| k.get(..8));
            if let Some(statement) = last.and_then(|b| b.try_into().ok()) {
                self.next_statement = u64::from_be_bytes(statement) + 1;
            }
            if let Some(t) = self.spec.event_time {
                let (rows, _) = self.decode_page(entries)?;
                if let Some(l) = crate::event_time::max_micros(rows.column(t.column)) {
                    latest = Some(latest.map_or(l, |m| m.max(l)));
                }
            }
        }
        if let (Some(t), Some(latest)) = (self.spec.event_time, latest) {
            self.stored_watermark = Some(Watermark {
                column: t.column,
                value: latest.saturating_sub(t.delay_us),
            });
        }
        Ok(())
    }

    /// Applies one statement; returns the number of rows it affected and the
    /// changes to send downstream. Nothing is applied when it fails.
    pub fn apply(&mut self, request: DmlRequest) -> Result<(u64, Option<StreamChunk>)> {
        match request {
            DmlRequest::Insert(batch) => self.insert(batch),
            DmlRequest::Delete { filter } => {
                self.check_mutable("DELETE FROM")?;
                let (old, keys) = self.select(filter.as_ref())?;
                self.remove_rows(&keys)?;
                let n = old.num_rows() as u64;
                let ops = vec![Op::Delete; old.num_rows()];
                Ok((n, (n > 0).then(|| StreamChunk::with_ops(old, ops))))
            }
            DmlRequest::Update { filter, columns } => {
                self.check_mutable("UPDATE")?;
                let (old, keys) = self.select(filter.as_ref())?;
                if old.num_rows() == 0 {
                    return Ok((0, None));
                }
                let new_columns = columns
                    .iter()
                    .map(|e| e.evaluate(&old)?.into_array(old.num_rows()))
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                let new = RecordBatch::try_new(Arc::clone(&self.spec.schema), new_columns)?;
                self.check_not_null(&new)?;
                let new_keys = self.keys_of(&new)?;
                if self.key_codec.is_some() {
                    let leaving: HashSet<&Vec<u8>> = keys.iter().collect();
                    self.check_unique(&new, &new_keys, |k| leaving.contains(k))?;
                }
                self.remove_rows(&keys)?;
                self.add_rows(&new, new_keys)?;
                let n = old.num_rows();
                let changes = concat_batches(&self.spec.schema, [&old, &new])?;
                let mut ops = vec![Op::Delete; n];
                ops.extend(std::iter::repeat_n(Op::Insert, n));
                Ok((n as u64, Some(StreamChunk::with_ops(changes, ops))))
            }
        }
    }

    fn check_mutable(&self, verb: &str) -> Result<()> {
        if self.spec.append_only {
            return Err(constraint(
                "42809",
                format!(
                    "cannot {verb} table \"{}\" because it is append-only",
                    self.spec.name
                ),
                None,
            ));
        }
        Ok(())
    }

    fn insert(&mut self, batch: RecordBatch) -> Result<(u64, Option<StreamChunk>)> {
        self.check_not_null(&batch)?;
        let keys = self.keys_of(&batch)?;
        if self.key_codec.is_some() {
            self.check_unique(&batch, &keys, |_| false)?;
        }
        self.add_rows(&batch, keys)?;
        let n = batch.num_rows() as u64;
        Ok((n, (n > 0).then(|| StreamChunk::inserts(batch))))
    }

    fn check_not_null(&self, batch: &RecordBatch) -> Result<()> {
        for (field, column) in self.spec.schema.fields().iter().zip(batch.columns()) {
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(constraint(
                    "23502",
                    format!(
                        "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                        field.name(),
                        self.spec.name
                    ),
                    None,
                ));
            }
        }
        Ok(())
    }

    /// The state key of each row: its primary key, its arrival number, or
    /// the whole row.
    fn keys_of(&mut self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        if self.spec.layout() == RelationLayout::Sequenced {
            let statement = self.next_statement;
            self.next_statement += 1;
            return Ok((0..batch.num_rows() as u32)
                .map(|row| {
                    let mut key = statement.to_be_bytes().to_vec();
                    key.extend_from_slice(&row.to_be_bytes());
                    key
                })
                .collect());
        }
        self.value_keys(batch)
    }

    /// The state key of each row of a table not in arrival order: its
    /// primary key, or the whole row.
    fn value_keys(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
        Ok(match (&self.key_codec, &self.spec.primary_key) {
            (Some(codec), Some(pk)) => {
                let cols: Vec<ArrayRef> = pk.iter().map(|&i| Arc::clone(batch.column(i))).collect();
                codec.encode(&cols)?
            }
            _ => self.row_codec.encode(batch.columns())?,
        })
    }

    /// Fails on the first row whose key is taken (by a stored row that is not
    /// `vacated`, or by an earlier row of the statement); one read of the
    /// store for the whole statement.
    fn check_unique(
        &mut self,
        batch: &RecordBatch,
        keys: &[Vec<u8>],
        vacated: impl Fn(&Vec<u8>) -> bool,
    ) -> Result<()> {
        let stored = self.state.get_many(keys)?;
        let mut seen = HashSet::with_capacity(keys.len());
        for (row, (key, stored)) in keys.iter().zip(stored).enumerate() {
            let taken = stored.is_some() && !vacated(key);
            if taken || !seen.insert(key) {
                return Err(self.duplicate_key(batch, row));
            }
        }
        Ok(())
    }

    fn duplicate_key(&self, batch: &RecordBatch, row: usize) -> Error {
        let pk = self.spec.primary_key.clone().unwrap_or_default();
        let names: Vec<&str> = pk
            .iter()
            .map(|&i| self.spec.schema.field(i).name().as_str())
            .collect();
        let values: Vec<String> = pk
            .iter()
            .map(|&i| array_value_to_string(batch.column(i), row).unwrap_or_default())
            .collect();
        constraint(
            "23505",
            format!(
                "duplicate key value violates unique constraint \"{}_pkey\"",
                self.spec.name
            ),
            Some(format!(
                "Key ({})=({}) already exists.",
                names.join(", "),
                values.join(", ")
            )),
        )
    }

    fn add_rows(&mut self, batch: &RecordBatch, keys: Vec<Vec<u8>>) -> Result<()> {
        match self.spec.layout() {
            RelationLayout::Keyed | RelationLayout::Sequenced => {
                let rows = self.row_codec.encode(batch.columns())?;
                for (key, row) in keys.into_iter().zip(rows) {
                    self.state.insert(key, row);
                }
            }
            RelationLayout::Multiset => self.add_counts(keys, 1)?,
        }
        Ok(())
    }

    fn remove_rows(&mut self, keys: &[Vec<u8>]) -> Result<()> {
        match self.spec.layout() {
            RelationLayout::Keyed | RelationLayout::Sequenced => {
                for key in keys {
                    self.state.remove(key.clone());
                }
            }
            RelationLayout::Multiset => self.add_counts(keys.to_vec(), -1)?,
        }
        Ok(())
    }

    /// Adds `delta` to the multiplicity of each of `keys` (a key may come
    /// several times), reading the current ones in one go.
    fn add_counts(&mut self, keys: Vec<Vec<u8>>, delta: i64) -> Result<()> {
        let mut counts: HashMap<Vec<u8>, i64> = HashMap::with_capacity(keys.len());
        for key in keys {
            *counts.entry(key).or_default() += delta;
        }
        let (keys, deltas): (Vec<Vec<u8>>, Vec<i64>) = counts.into_iter().unzip();
        let stored = self.state.get_many(&keys)?;
        for ((key, delta), stored) in keys.into_iter().zip(deltas).zip(stored) {
            let current = match stored {
                Some(v) => decode_count(self.spec.id, &v)?,
                None => 0,
            };
            let count = current + delta;
            if count <= 0 {
                self.state.remove(key);
            } else {
                self.state.insert(key, encode_count(count));
            }
        }
        Ok(())
    }

    /// One page of entries as rows, with each row's state key (a multiset
    /// row once per copy).
    fn decode_page(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(RecordBatch, Vec<Vec<u8>>)> {
        let (stored_keys, values): (Vec<Vec<u8>>, Vec<Vec<u8>>) = entries.into_iter().unzip();
        let mut rows: Vec<&[u8]> = Vec::with_capacity(values.len());
        let keys = match self.spec.layout() {
            RelationLayout::Keyed | RelationLayout::Sequenced => {
                rows.extend(values.iter().map(Vec::as_slice));
                stored_keys
            }
            RelationLayout::Multiset => {
                let mut keys = Vec::with_capacity(stored_keys.len());
                for (key, value) in stored_keys.iter().zip(&values) {
                    for _ in 0..decode_count(self.spec.id, value)?.max(0) {
                        rows.push(key);
                        keys.push(key.clone());
                    }
                }
                keys
            }
        };
        if rows.is_empty() {
            return Ok((RecordBatch::new_empty(Arc::clone(&self.spec.schema)), keys));
        }
        let columns = self.row_codec.decode(rows)?;
        Ok((
            RecordBatch::try_new(Arc::clone(&self.spec.schema), columns)?,
            keys,
        ))
    }

    /// The rows matching `filter`, with their state keys, in key order (so a
    /// statement's changes come out in the same order every time). Reads the
    /// table a page at a time: memory holds the matching rows, not the table.
    fn select(
        &mut self,
        filter: Option<&Arc<dyn PhysicalExpr>>,
    ) -> Result<(RecordBatch, Vec<Vec<u8>>)> {
        let mut batches = Vec::new();
        let mut keys = Vec::new();
        if let Some(entries) = self.pinned_rows(filter)? {
            let (rows, row_keys) = self.decode_page(entries)?;
            keep_matching(filter, rows, row_keys, &mut batches, &mut keys)?;
            return Ok((concat_batches(&self.spec.schema, &batches)?, keys));
        }
        let mut cursor = None;
        while let Some(entries) = self.state.next_page(&mut cursor, SCAN_PAGE_ENTRIES)? {
            let (page, page_keys) = self.decode_page(entries)?;
            keep_matching(filter, page, page_keys, &mut batches, &mut keys)?;
        }
        Ok((concat_batches(&self.spec.schema, &batches)?, keys))
    }

    /// The stored entries of the primary keys `filter` pins down, in key
    /// order, when it pins them (`pinned_keys`): a statement on a few keys
    /// reads those, not the table.
    fn pinned_rows(
        &mut self,
        filter: Option<&Arc<dyn PhysicalExpr>>,
    ) -> Result<Option<tidemark_state::Entries>> {
        let (Some(filter), Some(pk), Some(codec)) =
            (filter, &self.spec.primary_key, &self.key_codec)
        else {
            return Ok(None);
        };
        let Some(keys) =
            crate::pinned_keys::pinned_key_bytes(filter, pk, &self.spec.schema, codec)?
        else {
            return Ok(None);
        };
        let values = self.state.get_many(&keys)?;
        Ok(Some(
            keys.into_iter()
                .zip(values)
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
        ))
    }

    /// Where a restored table's watermark resumes (see `resume_arrivals`).
    pub fn stored_watermark(&self) -> Option<Watermark> {
        self.stored_watermark
    }

    /// The table's rows from `cursor` on (see [`TablePages`]).
    pub fn snapshot(&mut self, cursor: SnapshotCursor) -> TablePages<'_> {
        TablePages {
            table: self,
            cursor,
        }
    }

    /// Where each row of `chunk` (changes this table sent) falls in its
    /// snapshot's order: its state key, except a `Sequenced` table's rows,
    /// which are all new arrivals (it only takes inserts).
    pub fn snapshot_keys(&self, chunk: &StreamChunk) -> Result<SnapshotKeys> {
        Ok(match self.spec.layout() {
            RelationLayout::Sequenced => SnapshotKeys::AfterAll,
            _ => SnapshotKeys::Rows(self.value_keys(chunk.batch())?),
        })
    }

    pub fn take_delta(&mut self, epoch: tidemark_types::Epoch, batch: &mut WriteBatch) {
        self.state.take_delta(epoch, batch);
    }
}

impl SnapshotPages for TablePages<'_> {
    /// The next part of the table (`None` once all is sent): inserts, and
    /// for a table with event time, its rows statement by statement in
    /// arrival order, each followed by the watermark it moved to, so rows
    /// that were late when they arrived are late for the new view too.
    fn next_page(&mut self) -> Result<Option<Vec<Message>>> {
        if self.cursor.done {
            return Ok(None);
        }
        let table = &mut *self.table;
        let snap = &mut self.cursor;
        let mut out = Vec::new();
        let Some(entries) = table.state.next_page(&mut snap.after, SCAN_PAGE_ENTRIES)? else {
            snap.done = true;
            if let Some(t) = table.spec.event_time {
                finish_statement(&mut snap.arrival, t, &mut out);
            }
            return Ok((!out.is_empty()).then_some(out));
        };
        let (rows, keys) = table.decode_page(entries)?;
        match (table.spec.layout(), table.spec.event_time) {
            (RelationLayout::Sequenced, Some(t)) => {
                let arrival = &mut snap.arrival;
                let mut start = 0;
                while start < rows.num_rows() {
                    let statement = &keys[start][..8];
                    let mut end = start + 1;
                    while end < rows.num_rows() && &keys[end][..8] == statement {
                        end += 1;
                    }
                    if arrival.statement.as_deref() != Some(statement) {
                        finish_statement(arrival, t, &mut out);
                        arrival.statement = Some(statement.to_vec());
                    }
                    let part = rows.slice(start, end - start);
                    if let Some(l) = crate::event_time::max_micros(part.column(t.column)) {
                        arrival.statement_latest =
                            Some(arrival.statement_latest.map_or(l, |m| m.max(l)));
                    }
                    push_chunks(&mut out, &part);
                    start = end;
                }
            }
            _ => push_chunks(&mut out, &rows),
        }
        Ok(Some(out))
    }

    fn cursor(&self) -> SnapshotCursor {
        self.cursor.clone()
    }
}

/// Appends the rows of `page` that `filter` is true for (all without one),
/// with their keys.
fn keep_matching(
    filter: Option<&Arc<dyn PhysicalExpr>>,
    page: RecordBatch,
    page_keys: Vec<Vec<u8>>,
    batches: &mut Vec<RecordBatch>,
    keys: &mut Vec<Vec<u8>>,
) -> Result<()> {
    let Some(filter) = filter else {
        batches.push(page);
        keys.extend(page_keys);
        return Ok(());
    };
    if page.num_rows() == 0 {
        return Ok(());
    }
    let mask = filter.evaluate(&page)?.into_array(page.num_rows())?;
    let mut mask = mask.as_boolean().clone();
    if mask.null_count() > 0 {
        mask = prep_null_mask_filter(&mask);
    }
    let indices: Vec<u32> = (0..page.num_rows())
        .filter(|&i| mask.value(i))
        .map(|i| i as u32)
        .collect();
    if indices.is_empty() {
        return Ok(());
    }
    keys.extend(indices.iter().map(|&i| page_keys[i as usize].clone()));
    batches.push(take_record_batch(&page, &UInt32Array::from(indices))?);
    Ok(())
}

/// The watermark after the statement a snapshot has sent all rows of, if it
/// moved the table's.
fn finish_statement(snap: &mut ArrivalCursor, t: tidemark_plan::EventTime, out: &mut Vec<Message>) {
    let Some(latest) = snap.statement_latest.take() else {
        return;
    };
    let value = latest.saturating_sub(t.delay_us);
    if snap.watermark.is_none_or(|w| value > w) {
        snap.watermark = Some(value);
        out.push(Message::Watermark(Watermark {
            column: t.column,
            value,
        }));
    }
}

/// `rows` as insert chunks of at most `SNAPSHOT_CHUNK_ROWS`.
fn push_chunks(out: &mut Vec<Message>, rows: &RecordBatch) {
    let mut offset = 0;
    while offset < rows.num_rows() {
        let len = SNAPSHOT_CHUNK_ROWS.min(rows.num_rows() - offset);
        out.push(Message::Chunk(StreamChunk::inserts(
            rows.slice(offset, len),
        )));
        offset += len;
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator as BinOp;
    use datafusion::physical_expr::expressions::{binary, col, in_list, lit};

    use super::*;
    use crate::test_util::pretty;

    fn table(primary_key: Option<Vec<usize>>) -> TableState {
        table_on(primary_key, Arc::new(tidemark_state::MemoryStore::new()))
    }

    fn table_on(primary_key: Option<Vec<usize>>, store: Arc<dyn StateStore>) -> TableState {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, primary_key.is_none()),
            Field::new("v", DataType::Int64, true),
        ]));
        TableState::restore(
            TableSpec {
                id: 9,
                name: "t".into(),
                schema,
                primary_key,
                append_only: false,
                event_time: None,
            },
            store,
        )
        .unwrap()
    }

    fn rows(t: &TableState, k: Vec<i64>, v: Vec<i64>) -> RecordBatch {
        RecordBatch::try_new(
            Arc::clone(&t.spec.schema),
            vec![Arc::new(Int64Array::from(k)), Arc::new(Int64Array::from(v))],
        )
        .unwrap()
    }

    fn changes(result: (u64, Option<StreamChunk>)) -> (u64, Vec<String>) {
        (result.0, pretty(&result.1.into_iter().collect::<Vec<_>>()))
    }

    #[test]
    fn updating_keys_onto_vacated_keys_is_allowed_and_atomic() {
        let mut t = table(Some(vec![0]));
        t.apply(DmlRequest::Insert(rows(&t, vec![1, 2], vec![10, 20])))
            .unwrap();
        let schema = Arc::clone(&t.spec.schema);
        let k_plus_1 = binary(col("k", &schema).unwrap(), BinOp::Plus, lit(1i64), &schema).unwrap();
        let shift = DmlRequest::Update {
            filter: None,
            columns: vec![k_plus_1, col("v", &schema).unwrap()],
        };
        let (n, out) = changes(t.apply(shift).unwrap());
        assert_eq!(n, 2);
        assert_eq!(out, vec!["- 1 10", "- 2 20", "+ 2 10", "+ 3 20"]);

        // a duplicate anywhere in the statement rejects all of it
        let err = t
            .apply(DmlRequest::Insert(rows(&t, vec![5, 3], vec![0, 0])))
            .unwrap_err();
        assert!(matches!(err, Error::Constraint { code: "23505", .. }));
        assert_eq!(t.select(None).unwrap().0.num_rows(), 2);
    }

    #[test]
    fn tables_without_a_key_keep_and_delete_duplicates() {
        let mut t = table(None);
        t.apply(DmlRequest::Insert(rows(&t, vec![1, 1, 2], vec![7, 7, 8])))
            .unwrap();
        let schema = Arc::clone(&t.spec.schema);
        let is_one = binary(col("k", &schema).unwrap(), BinOp::Eq, lit(1i64), &schema).unwrap();
        let (n, out) = changes(
            t.apply(DmlRequest::Delete {
                filter: Some(is_one),
            })
            .unwrap(),
        );
        assert_eq!(n, 2);
        assert_eq!(out, vec!["- 1 7", "- 1 7"]);
        assert_eq!(t.select(None).unwrap().0.num_rows(), 1);
    }

    /// What a snapshot sends, in order: rows per statement (counted), and
    /// watermarks. Each page is read from the previous page's cursor, as a
    /// snapshot sent over several epochs is.
    fn sent(t: &mut TableState) -> Vec<String> {
        let mut cursor = SnapshotCursor::default();
        let mut out: Vec<String> = Vec::new();
        let mut rows = 0;
        loop {
            let mut pages = t.snapshot(cursor);
            let page = pages.next_page().unwrap();
            cursor = pages.cursor();
            let Some(page) = page else { break };
            for message in page {
                match message {
                    Message::Chunk(c) => rows += c.num_rows(),
                    Message::Watermark(w) => {
                        out.push(format!("{rows} rows"));
                        rows = 0;
                        out.push(format!("watermark {}", w.value));
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        if rows > 0 {
            out.push(format!("{rows} rows"));
        }
        out
    }

    /// Statements larger than a page, committed or not, come out whole and
    /// in arrival order, each followed by the watermark it moved the table
    /// to; a restart resumes the arrival numbers and the watermark.
    #[test]
    fn arrival_order_survives_pages_and_restarts() {
        use arrow::array::TimestampMicrosecondArray;
        use tidemark_state::MemoryStore;
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("v", DataType::Int64, true),
        ]));
        let spec = TableSpec {
            id: 4,
            name: "events".into(),
            schema: Arc::clone(&schema),
            primary_key: None,
            append_only: true,
            event_time: Some(tidemark_plan::EventTime {
                column: 0,
                delay_us: 10,
            }),
        };
        let batch = |times: std::ops::Range<i64>| {
            let n = times.end - times.start;
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(TimestampMicrosecondArray::from_iter_values(times)),
                    Arc::new(Int64Array::from_iter_values(0..n)),
                ],
            )
            .unwrap()
        };
        let store = Arc::new(MemoryStore::new());
        let mut t = TableState::restore(spec.clone(), Arc::clone(&store) as _).unwrap();
        t.apply(DmlRequest::Insert(batch(0..5000))).unwrap();
        t.apply(DmlRequest::Insert(batch(100..3100))).unwrap();
        let mut b = WriteBatch::default();
        t.take_delta(1, &mut b);
        store.commit(1, b).unwrap();
        t.apply(DmlRequest::Insert(batch(9000..9010))).unwrap();
        let want = ["5000 rows", "watermark 4989", "3010 rows", "watermark 8999"];
        assert_eq!(sent(&mut t), want);
        let mut b = WriteBatch::default();
        t.take_delta(2, &mut b);
        store.commit(2, b).unwrap();
        assert_eq!(sent(&mut t), want);

        let mut restored = TableState::restore(spec, Arc::clone(&store) as _).unwrap();
        assert_eq!(restored.stored_watermark().map(|w| w.value), Some(8999));
        assert_eq!(sent(&mut restored), want);
        restored
            .apply(DmlRequest::Insert(batch(20000..20001)))
            .unwrap();
        let mut b = WriteBatch::default();
        restored.take_delta(3, &mut b);
        let arrival = b.writes[0].0[4..12].to_vec();
        assert_eq!(arrival, 3u64.to_be_bytes(), "the fourth statement");
    }

    /// A table without a key spread over several pages: a DELETE reads every
    /// page, committed and not, and removes each copy once.
    #[test]
    fn deletes_find_rows_on_every_page() {
        let store = Arc::new(tidemark_state::MemoryStore::new());
        let mut t = table_on(None, Arc::clone(&store) as _);
        let n = 10_000;
        let keys: Vec<i64> = (0..n).map(|i| i % 5000).collect();
        t.apply(DmlRequest::Insert(rows(&t, keys, vec![1; n as usize])))
            .unwrap();
        let mut b = WriteBatch::default();
        t.take_delta(1, &mut b);
        assert_eq!(b.writes.len(), 5000, "one multiplicity per distinct row");
        store.commit(1, b).unwrap();
        t.apply(DmlRequest::Insert(rows(&t, vec![4999, 7000], vec![1, 1])))
            .unwrap();
        let schema = Arc::clone(&t.spec.schema);
        let big = binary(
            col("k", &schema).unwrap(),
            BinOp::GtEq,
            lit(4990i64),
            &schema,
        )
        .unwrap();
        let (n, _) = t.apply(DmlRequest::Delete { filter: Some(big) }).unwrap();
        assert_eq!(n, 10 * 2 + 2);
        assert_eq!(t.select(None).unwrap().0.num_rows(), 4990 * 2);
    }

    /// Statements whose filters pin primary keys read those rows by key; the
    /// same statements with filters that pin nothing (`… OR false`) scan the
    /// table. Both must change the same rows the same way.
    #[test]
    fn key_lookups_change_what_scans_change() {
        use crate::test_util::Lcg;
        for seed in 0..20 {
            let mut rng = Lcg::new(seed);
            let mut by_key = table(Some(vec![0]));
            let mut by_scan = table(Some(vec![0]));
            let schema = Arc::clone(&by_key.spec.schema);
            let k = || col("k", &schema).unwrap();
            let v = || col("v", &schema).unwrap();
            let keys: Vec<i64> = (0..40).collect();
            let values: Vec<i64> = keys.iter().map(|k| k % 7).collect();
            for t in [&mut by_key, &mut by_scan] {
                t.apply(DmlRequest::Insert(rows(t, keys.clone(), values.clone())))
                    .unwrap();
            }
            for step in 0..60 {
                let c = rng.next(45) as i64;
                let filter = match rng.next(4) {
                    0 => binary(k(), BinOp::Eq, lit(c), &schema).unwrap(),
                    1 => binary(lit(c), BinOp::Eq, k(), &schema).unwrap(),
                    2 => in_list(k(), vec![lit(c), lit(c + 3), lit(c)], &false, &schema).unwrap(),
                    _ => binary(
                        binary(k(), BinOp::Eq, lit(c), &schema).unwrap(),
                        BinOp::And,
                        binary(v(), BinOp::Lt, lit(4i64), &schema).unwrap(),
                        &schema,
                    )
                    .unwrap(),
                };
                let unpinned = binary(Arc::clone(&filter), BinOp::Or, lit(false), &schema).unwrap();
                assert!(by_key.pinned_rows(Some(&filter)).unwrap().is_some());
                assert!(by_scan.pinned_rows(Some(&unpinned)).unwrap().is_none());
                let kind = rng.next(3);
                let a = by_key.apply(request(kind, &schema, filter));
                let b = by_scan.apply(request(kind, &schema, unpinned));
                match (a, b) {
                    (Ok(a), Ok(b)) => assert_eq!(changes(a), changes(b), "seed {seed} step {step}"),
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                    (a, b) => panic!("seed {seed} step {step}: {a:?} against {b:?}"),
                }
            }
            let all =
                |t: &mut TableState| pretty(&[StreamChunk::inserts(t.select(None).unwrap().0)]);
            assert_eq!(all(&mut by_key), all(&mut by_scan));
        }
    }

    /// A DELETE (`kind` 0) or an UPDATE that moves the key by `kind * 50`.
    fn request(kind: u64, schema: &SchemaRef, filter: Arc<dyn PhysicalExpr>) -> DmlRequest {
        let k = col("k", schema).unwrap();
        let v = col("v", schema).unwrap();
        match kind {
            0 => DmlRequest::Delete {
                filter: Some(filter),
            },
            n => DmlRequest::Update {
                filter: Some(filter),
                columns: vec![
                    binary(k, BinOp::Plus, lit(n as i64 * 50), schema).unwrap(),
                    binary(v, BinOp::Plus, lit(1i64), schema).unwrap(),
                ],
            },
        }
    }
}
