//! A table's rows as its writer owns them: DML is checked and applied here, in
//! one place, in the order statements arrive, and turned into a changelog.

use std::collections::HashSet;
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
    row_codec: RowCodec,
    key_codec: Option<RowCodec>,
}

fn constraint(code: &'static str, message: String, detail: Option<String>) -> Error {
    Error::Constraint {
        code,
        message,
        detail,
    }
}

impl TableState {
    pub fn event_time(&self) -> Option<tidemark_plan::EventTime> {
        self.spec.event_time
    }

    #[cfg(test)]
    pub fn new(spec: TableSpec) -> Result<Self> {
        let state = StateTable::new(spec.id);
        Self::with_state(spec, state)
    }

    /// The table with the rows the store committed for it (none for a new one).
    pub fn restore(spec: TableSpec, store: &dyn StateStore) -> Result<Self> {
        let state = StateTable::restore(spec.id, store)?;
        Self::with_state(spec, state)
    }

    fn with_state(spec: TableSpec, state: StateTable) -> Result<Self> {
        let next_statement = match spec.layout() {
            RelationLayout::Sequenced => state
                .iter()
                .filter_map(|(k, _)| k.get(..8)?.try_into().ok().map(u64::from_be_bytes))
                .max()
                .map_or(0, |n| n + 1),
            _ => 0,
        };
        let key_codec = spec
            .primary_key
            .as_ref()
            .map(|pk| RowCodec::new(pk.iter().map(|&i| spec.schema.field(i).data_type().clone())))
            .transpose()?;
        Ok(Self {
            state,
            next_statement,
            row_codec: RowCodec::for_schema(&spec.schema)?,
            key_codec,
            spec,
        })
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
        Ok(match (&self.key_codec, &self.spec.primary_key) {
            (Some(codec), Some(pk)) => {
                let cols: Vec<ArrayRef> = pk.iter().map(|&i| Arc::clone(batch.column(i))).collect();
                codec.encode(&cols)?
            }
            _ => self.row_codec.encode(batch.columns())?,
        })
    }

    fn check_unique(
        &self,
        batch: &RecordBatch,
        keys: &[Vec<u8>],
        vacated: impl Fn(&Vec<u8>) -> bool,
    ) -> Result<()> {
        let mut seen = HashSet::with_capacity(keys.len());
        for (row, key) in keys.iter().enumerate() {
            let taken = self.state.get(key).is_some() && !vacated(key);
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
            RelationLayout::Multiset => {
                for key in keys {
                    let count = self.count(&key)?;
                    self.state.insert(key, encode_count(count + 1));
                }
            }
        }
        Ok(())
    }

    fn remove_rows(&mut self, keys: &[Vec<u8>]) -> Result<()> {
        for key in keys {
            match self.spec.layout() {
                RelationLayout::Keyed | RelationLayout::Sequenced => {
                    self.state.remove(key);
                }
                RelationLayout::Multiset => {
                    let count = self.count(key)? - 1;
                    if count <= 0 {
                        self.state.remove(key);
                    } else {
                        self.state.insert(key.clone(), encode_count(count));
                    }
                }
            }
        }
        Ok(())
    }

    fn count(&self, key: &[u8]) -> Result<i64> {
        Ok(match self.state.get(key) {
            Some(v) => decode_count(self.spec.id, v)?,
            None => 0,
        })
    }

    /// Every current row, with its state key, in key order (so a statement's
    /// changes come out in the same order every time).
    fn all_rows(&self) -> Result<(RecordBatch, Vec<Vec<u8>>)> {
        let mut rows: Vec<&[u8]> = Vec::with_capacity(self.state.len());
        let mut keys = Vec::with_capacity(self.state.len());
        let mut entries: Vec<(&Vec<u8>, &Vec<u8>)> = self.state.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (key, value) in entries {
            match self.spec.layout() {
                RelationLayout::Keyed | RelationLayout::Sequenced => {
                    rows.push(value);
                    keys.push(key.clone());
                }
                RelationLayout::Multiset => {
                    for _ in 0..decode_count(self.spec.id, value)?.max(0) {
                        rows.push(key);
                        keys.push(key.clone());
                    }
                }
            }
        }
        if rows.is_empty() {
            return Ok((RecordBatch::new_empty(Arc::clone(&self.spec.schema)), keys));
        }
        let columns = self.row_codec.decode(rows)?;
        Ok((
            RecordBatch::try_new(Arc::clone(&self.spec.schema), columns)?,
            keys,
        ))
    }

    /// The rows matching `filter`, with their state keys.
    fn select(
        &self,
        filter: Option<&Arc<dyn PhysicalExpr>>,
    ) -> Result<(RecordBatch, Vec<Vec<u8>>)> {
        let (all, keys) = self.all_rows()?;
        let Some(filter) = filter else {
            return Ok((all, keys));
        };
        if all.num_rows() == 0 {
            return Ok((all, keys));
        }
        let mask = filter.evaluate(&all)?.into_array(all.num_rows())?;
        let mut mask = mask.as_boolean().clone();
        if mask.null_count() > 0 {
            mask = prep_null_mask_filter(&mask);
        }
        let indices: Vec<u32> = (0..all.num_rows())
            .filter(|&i| mask.value(i))
            .map(|i| i as u32)
            .collect();
        let selected_keys = indices.iter().map(|&i| keys[i as usize].clone()).collect();
        let selected = take_record_batch(&all, &UInt32Array::from(indices))?;
        Ok((selected, selected_keys))
    }

    /// The watermark the stored rows imply (the latest event time minus the
    /// delay): where a restored table's watermark resumes. Rows only advance
    /// it, and a table with `WATERMARK FOR` only takes inserts.
    pub fn stored_watermark(&self) -> Result<Option<tidemark_types::Watermark>> {
        let Some(t) = self.spec.event_time else {
            return Ok(None);
        };
        if self.state.is_empty() {
            return Ok(None);
        }
        let (all, _) = self.all_rows()?;
        Ok(
            crate::event_time::max_micros(all.column(t.column)).map(|latest| {
                tidemark_types::Watermark {
                    column: t.column,
                    value: latest.saturating_sub(t.delay_us),
                }
            }),
        )
    }

    /// The whole table as a view attached to it starts from: inserts, and
    /// for a table with event time, its rows statement by statement in
    /// arrival order, each followed by the watermark it moved to, so rows
    /// that were late when they arrived are late for the new view too.
    pub fn snapshot(&self) -> Result<Vec<Message>> {
        let (all, keys) = self.all_rows()?;
        let mut out = Vec::new();
        match (self.spec.layout(), self.spec.event_time) {
            (RelationLayout::Sequenced, Some(t)) => {
                let mut watermark: Option<i64> = None;
                let mut start = 0;
                while start < all.num_rows() {
                    let statement = &keys[start][..8];
                    let mut end = start + 1;
                    while end < all.num_rows() && &keys[end][..8] == statement {
                        end += 1;
                    }
                    let rows = all.slice(start, end - start);
                    let latest = crate::event_time::max_micros(rows.column(t.column));
                    push_chunks(&mut out, &rows);
                    if let Some(value) = latest.map(|l| l.saturating_sub(t.delay_us)) {
                        if watermark.is_none_or(|w| value > w) {
                            watermark = Some(value);
                            out.push(Message::Watermark(Watermark {
                                column: t.column,
                                value,
                            }));
                        }
                    }
                    start = end;
                }
            }
            _ => push_chunks(&mut out, &all),
        }
        Ok(out)
    }

    pub fn take_delta(&mut self, batch: &mut WriteBatch) {
        self.state.take_delta(batch);
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
    use datafusion::physical_expr::expressions::{binary, col, lit};

    use super::*;
    use crate::test_util::pretty;

    fn table(primary_key: Option<Vec<usize>>) -> TableState {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, primary_key.is_none()),
            Field::new("v", DataType::Int64, true),
        ]));
        TableState::new(TableSpec {
            id: 9,
            name: "t".into(),
            schema,
            primary_key,
            append_only: false,
            event_time: None,
        })
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
        assert_eq!(t.all_rows().unwrap().0.num_rows(), 2);
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
        assert_eq!(t.all_rows().unwrap().0.num_rows(), 1);
    }
}
