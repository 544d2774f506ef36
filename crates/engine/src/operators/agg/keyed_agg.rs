//! `GROUP BY` over append-only input, plain or by TUMBLE window, vectorized:
//! the rows of an epoch are aggregated by DataFusion's group accumulators,
//! then merged into the groups' stored states at the barrier.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, UInt32Array};
use arrow::compute::{min, take};
use arrow::datatypes::{Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::HashSet;
use datafusion::physical_expr::PhysicalExpr;
use tidemark_plan::{AggCall, WindowKey};
use tidemark_state::{RowCodec, WriteBatch};
use tidemark_types::{Epoch, StreamChunk, Watermark};

use super::changes::{columns_to_batch, matched_changes};
use super::grouped::{Grouped, GroupedState};
use super::keyed_states::{merge_stored, KeyedStates};
use super::keyed_windows::{for_each_stored_page, KeyedWindows};
use super::{evaluate_agg_inputs, evaluate_columns, forward_watermark};
use crate::cache_budget::CacheBudget;
use crate::durable::{KeyedReader, StateEntries};
use crate::event_time::micros_array;
use crate::metrics::JobMetrics;
use crate::{Error, Operator, Result};

/// Groups merged and emitted at a time: what bounds the memory a merge
/// needs (reads of stored states, merges, the emitted chunk). An epoch's
/// rows are merged once they reach this many groups, else at the barrier.
pub(super) const FLUSH_GROUPS: usize = 4096;

/// The form of [`super::HashAgg`] for a plain or TUMBLE-windowed `GROUP
/// BY` over input that only inserts: the same results, computed a batch at
/// a time. A group's stored state is its accumulators' states, as the
/// group accumulators give them.
///
/// Rows go into a partial aggregate; at each barrier (before a watermark it
/// passes on that some of its rows precede, and whenever it reaches
/// [`FLUSH_GROUPS`] groups) that partial
/// is merged with the stored states of the groups it touched, and the groups
/// whose rows changed emit a delete of the old row and an insert of the new
/// one. Memory holds the recently
/// used groups' states within a budget; the others are read back from the
/// store when a barrier needs them (see [`KeyedStates`]).
///
/// Windowed, a group's key starts with its window's start: rows of closed
/// windows are late, and a watermark that closes a window emits its groups
/// (when the view emits on close, read from memory and the store) and
/// deletes them.
pub struct KeyedAgg {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggs: Vec<AggCall>,
    args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    schema: SchemaRef,
    key_schema: SchemaRef,
    key_codec: RowCodec,
    /// The rows since the last barrier, aggregated.
    epoch_rows: Grouped,
    /// Each group's state as of the last barrier.
    states: KeyedStates,
    /// (input column, output column): watermarks passed on.
    watermark_map: Vec<(usize, usize)>,
    metrics: Arc<JobMetrics>,
    windows: Option<KeyedWindows>,
    /// Per grouping column that carries a watermark, the least value (µs)
    /// among the rows held back in `epoch_rows`: a watermark above it must
    /// wait for them to go out.
    earliest: HashMap<usize, i64>,
    /// Groups of closing windows emitted by the last flush, when the store
    /// may hold them too: the close must not emit them again.
    emitted: HashSet<Vec<u8>>,
}

impl KeyedAgg {
    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        aggs: Vec<AggCall>,
        schema: SchemaRef,
        watermark_map: Vec<(usize, usize)>,
        metrics: Arc<JobMetrics>,
    ) -> Result<Self> {
        let key_schema = Arc::new(Schema::new(schema.fields()[..group_exprs.len()].to_vec()));
        let key_codec = RowCodec::new(key_schema.fields().iter().map(|f| f.data_type().clone()))?;
        Ok(Self {
            args: aggs.iter().map(|a| a.expr.expressions()).collect(),
            epoch_rows: Grouped::new(Arc::clone(&key_schema), &aggs)?,
            states: KeyedStates::new(&aggs, Arc::clone(&metrics))?,
            group_exprs,
            aggs,
            schema,
            key_schema,
            key_codec,
            watermark_map,
            metrics,
            windows: None,
            earliest: HashMap::new(),
            emitted: HashSet::default(),
        })
    }

    /// Groups by `window` too (a TUMBLE window's start among the keys).
    pub fn with_window(mut self, window: WindowKey) -> Self {
        self.windows = Some(KeyedWindows::new(window));
        self.states = self.states.by_window();
        self
    }

    /// Whether changed groups are emitted as they change (else once, when
    /// their window closes).
    fn emits_changes(&self) -> bool {
        self.windows
            .as_ref()
            .is_none_or(|w| !w.window.emit_on_close)
    }

    /// The keys of groups, from their key columns.
    fn encode_keys(&self, keys: &[ArrayRef]) -> Result<Vec<Vec<u8>>> {
        let encoded = self.key_codec.encode(keys)?;
        match &self.windows {
            Some(w) => w.window_keys(keys, encoded),
            None => Ok(encoded),
        }
    }

    /// Lowers [`Self::earliest`] to the rows `rows` (all when `None`) of a
    /// batch's grouping columns `keys`.
    fn note_earliest(&mut self, keys: &[ArrayRef], rows: Option<&UInt32Array>) -> Result<()> {
        for &(_, column) in &self.watermark_map {
            let Some(key) = keys.get(column) else {
                continue;
            };
            let least = match micros_array(key.as_ref()) {
                Some(times) => match rows {
                    Some(rows) => min(take(&times, rows, None)?.as_primitive::<Int64Type>()),
                    None => min(&times),
                },
                // A watermark on a column of another type: always flush.
                None => Some(i64::MIN),
            };
            if let Some(least) = least {
                let e = self.earliest.entry(column).or_insert(least);
                *e = (*e).min(least);
            }
        }
        Ok(())
    }

    /// Keeps its groups within its share of `budget`.
    pub fn with_cache_budget(mut self, budget: Arc<CacheBudget>) -> Self {
        self.states.set_budget(budget);
        self
    }

    /// Merges the epoch's rows into their groups' states and emits the rows
    /// of the groups that changed.
    fn flush(&mut self, out: &mut Vec<StreamChunk>) -> Result<()> {
        self.earliest.clear();
        if self.epoch_rows.num_groups() == 0 {
            return Ok(());
        }
        let added = self.epoch_rows.take()?;
        for part in parts(added) {
            self.flush_part(part, out)?;
        }
        Ok(())
    }

    /// [`Self::flush`] for some of the epoch's groups.
    fn flush_part(&mut self, added: GroupedState, out: &mut Vec<StreamChunk>) -> Result<()> {
        let keys = self.encode_keys(&added.keys)?;
        let emits = self.emits_changes();
        let (at, old, merged) = match self.states.stored(&keys, &added.keys)? {
            // All new groups: the epoch's states are theirs.
            None => (
                Vec::new(),
                RecordBatch::new_empty(Arc::clone(&self.schema)),
                added,
            ),
            Some((at, stored)) => {
                let old = match emits {
                    true => columns_to_batch(&self.schema, self.epoch_rows.evaluate(&stored)?)?,
                    false => RecordBatch::new_empty(Arc::clone(&self.schema)),
                };
                let merged = merge_stored(&self.key_schema, &self.aggs, &stored, &added)?;
                (at, old, merged)
            }
        };

        if emits {
            let new = columns_to_batch(&self.schema, self.epoch_rows.evaluate(&merged)?)?;
            let old_rows: Vec<u32> = (0..at.len() as u32).collect();
            let mut is_old = vec![false; keys.len()];
            for &i in &at {
                is_old[i as usize] = true;
            }
            let new_groups: Vec<u32> = (0..keys.len() as u32)
                .filter(|&i| !is_old[i as usize])
                .collect();
            if let Some(chunk) = matched_changes(&old, &old_rows, &new, &at, &new_groups)? {
                out.push(chunk);
            }
        }

        let (keys, merged) = self.emit_closing(keys, merged, out)?;
        self.states.put(keys, &merged.states)
    }

    /// With `EMIT ON WINDOW CLOSE`, emits the merged groups (`keys`,
    /// `merged`) of windows the watermark has closed, as they are, without
    /// caching them; returns the others. [`Self::close_window`] then emits
    /// the closed windows' groups this flush did not touch.
    fn emit_closing(
        &mut self,
        keys: Vec<Vec<u8>>,
        merged: GroupedState,
        out: &mut Vec<StreamChunk>,
    ) -> Result<(Vec<Vec<u8>>, GroupedState)> {
        let Some(below) = self
            .windows
            .as_ref()
            .filter(|w| w.window.emit_on_close)
            .and_then(KeyedWindows::closed_prefix)
        else {
            return Ok((keys, merged));
        };
        // A key starts with its window's start, in an order bytes keep.
        let (mut closing, mut open) = (Vec::new(), Vec::new());
        for (i, key) in keys.iter().enumerate() {
            match key[..8] < below[..] {
                true => closing.push(i as u32),
                false => open.push(i as u32),
            }
        }
        if closing.is_empty() {
            return Ok((keys, merged));
        }
        let closing = UInt32Array::from(closing);
        let done = merged.rows(&closing)?;
        let columns = self.epoch_rows.evaluate(&done)?;
        out.push(StreamChunk::inserts(columns_to_batch(
            &self.schema,
            columns,
        )?));
        let mut keys: Vec<Option<Vec<u8>>> = keys.into_iter().map(Some).collect();
        let elsewhere = self.states.elsewhere().is_some();
        for &i in closing.values() {
            let key = keys[i as usize].take().expect("each group once");
            self.states.forget(&key);
            if elsewhere {
                self.emitted.insert(key);
            }
        }
        let rest = merged.rows(&UInt32Array::from(open))?;
        Ok((keys.into_iter().flatten().collect(), rest))
    }

    /// The window starting at `start` closed: its groups leave memory, and
    /// when the view emits on close, they are emitted, with those only the
    /// store holds (read a page at a time). Their stored states are
    /// deleted at the next checkpoint.
    fn close_window(&mut self, start: i64, out: &mut Vec<StreamChunk>) -> Result<()> {
        let prefix = KeyedWindows::prefix(start);
        let cached = self.states.take_prefix(&prefix);
        if self.emits_changes() {
            return Ok(());
        }
        for part in cached.chunks(FLUSH_GROUPS) {
            self.emit_groups(part, out)?;
        }
        let Some(keyed) = self.states.elsewhere() else {
            return Ok(());
        };
        let in_memory: HashSet<&[u8]> = cached
            .iter()
            .map(|(k, _)| k.as_slice())
            .chain(self.emitted.iter().map(Vec::as_slice))
            .collect();
        for_each_stored_page(keyed, start, |page| {
            let groups: Vec<(Vec<u8>, Vec<u8>)> = page
                .into_iter()
                .filter(|(k, _)| !in_memory.contains(k.as_slice()))
                .collect();
            self.metrics.add_groups_read_back(groups.len());
            self.emit_groups(&groups, out)
        })
    }

    /// Emits the final rows of windowed groups: (key, stored state).
    fn emit_groups(&self, groups: &[(Vec<u8>, Vec<u8>)], out: &mut Vec<StreamChunk>) -> Result<()> {
        if groups.is_empty() {
            return Ok(());
        }
        // A windowed key is the window's start (8 bytes), then the key row.
        let keys = self.key_codec.decode(groups.iter().map(|(k, _)| &k[8..]))?;
        let bytes: Vec<&[u8]> = groups.iter().map(|(_, s)| s.as_slice()).collect();
        let states = self.states.decode(&bytes)?;
        let rows = self.epoch_rows.evaluate(&GroupedState { keys, states })?;
        out.push(StreamChunk::inserts(columns_to_batch(&self.schema, rows)?));
        Ok(())
    }
}

/// An epoch's groups, [`FLUSH_GROUPS`] at a time.
pub(super) fn parts(added: GroupedState) -> impl Iterator<Item = GroupedState> {
    let groups = added.num_groups();
    (0..groups).step_by(FLUSH_GROUPS).map(move |start| {
        let len = FLUSH_GROUPS.min(groups - start);
        let slice = |columns: &[ArrayRef]| -> Vec<ArrayRef> {
            columns.iter().map(|c| c.slice(start, len)).collect()
        };
        GroupedState {
            keys: slice(&added.keys),
            states: added.states.iter().map(|s| slice(s)).collect(),
        }
    })
}

impl Operator for KeyedAgg {
    fn name(&self) -> &'static str {
        "KeyedAgg"
    }

    fn on_chunk(&mut self, chunk: StreamChunk, out: &mut Vec<StreamChunk>) -> Result<()> {
        if chunk.has_deletes() {
            return Err(Error::Internal(
                "an aggregate over append-only input received a delete".into(),
            ));
        }
        let batch = chunk.batch();
        let n = batch.num_rows();
        let keys = evaluate_columns(&self.group_exprs, batch)?;
        let rows = match &mut self.windows {
            Some(w) => w.admit(&keys, &self.metrics)?,
            None => None,
        };
        if rows.as_ref().is_some_and(|r| r.is_empty()) {
            return Ok(());
        }
        self.note_earliest(&keys, rows.as_ref())?;
        let (args, filters) = evaluate_agg_inputs(&self.args, &self.aggs, batch)?;
        self.epoch_rows
            .update_rows(&keys, &args, &filters, rows.as_ref(), n)?;
        // Many groups are merged as they come, not all at the barrier: the
        // barrier then passes at once, and epochs stay short.
        if self.epoch_rows.num_groups() >= FLUSH_GROUPS {
            self.flush(out)?;
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        wm: Watermark,
        out: &mut Vec<StreamChunk>,
    ) -> Result<Vec<Watermark>> {
        let passed = forward_watermark(&self.watermark_map, wm);
        let closed = match &mut self.windows {
            Some(w) if w.window.input_column == wm.column => w.advance(wm.value),
            _ => Vec::new(),
        };
        // The rows before a watermark go out before it; rows held back at
        // or past it may wait.
        let behind = passed
            .iter()
            .any(|w| self.earliest.get(&w.column).is_some_and(|e| *e < w.value));
        if !closed.is_empty() || behind {
            self.flush(out)?;
        }
        for start in closed {
            self.close_window(start, out)?;
        }
        self.emitted.clear();
        Ok(passed)
    }

    fn on_checkpoint(
        &mut self,
        epoch: Epoch,
        _batch: &mut WriteBatch,
        out: &mut Vec<StreamChunk>,
    ) -> Result<()> {
        self.states.start_epoch(epoch);
        self.flush(out)
    }

    fn durability(&self) -> crate::Durability {
        crate::Durability::Checkpointed
    }

    fn attach_keyed(&mut self, keyed: Box<dyn KeyedReader>) {
        self.states.attach(keyed);
    }

    fn checkpoint_state(&mut self, state: &mut WriteBatch) -> Result<()> {
        match &mut self.windows {
            Some(w) => w.checkpoint_state(state),
            None => Ok(()),
        }
    }

    fn checkpoint_keyed(&mut self, keyed: &mut WriteBatch) -> Result<()> {
        let mut windows = self.windows.as_mut();
        if let Some(w) = windows.as_deref_mut() {
            w.checkpoint_keyed(keyed);
        }
        self.states.checkpoint(keyed, |key| {
            if let Some(w) = windows.as_deref_mut() {
                w.writes(key);
            }
        })
    }

    fn restore(&mut self, entries: StateEntries) -> Result<()> {
        // Groups are read back as rows reach them: the keyed state is all
        // but the windows' progress.
        self.states.restored();
        if let Some(w) = &mut self.windows {
            for (key, value) in &entries {
                w.restore(key, value, &self.metrics)?;
            }
            return Ok(());
        }
        match entries.first() {
            Some((key, _)) => Err(Error::Internal(format!(
                "a stored aggregate key of {} bytes outside its keyed state",
                key.len()
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field};
    use datafusion::functions_aggregate::{
        average::avg_udaf, count::count_udaf, min_max::max_udaf, sum::sum_udaf,
    };
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::operators::HashAgg;
    use crate::test_util::{
        agg_call, applied_pretty, assert_restores, chunk_from_pretty, run_in_store, schema_of, Lcg,
        Step,
    };

    /// `c0, count(c1), max(c1), sum(c1), avg(c2) … GROUP BY c0` over
    /// `I I F` rows.
    fn parts() -> (Vec<Arc<dyn PhysicalExpr>>, Vec<AggCall>, SchemaRef) {
        let input = schema_of("I I F");
        let schema = Arc::new(Schema::new(vec![
            Field::new("c0", DataType::Int64, true),
            Field::new("n", DataType::Int64, false),
            Field::new("top", DataType::Int64, true),
            Field::new("total", DataType::Int64, true),
            Field::new("mean", DataType::Float64, true),
        ]));
        let aggs = vec![
            agg_call(count_udaf(), 1, &input, "n"),
            agg_call(max_udaf(), 1, &input, "top"),
            agg_call(sum_udaf(), 1, &input, "total"),
            agg_call(avg_udaf(), 2, &input, "mean"),
        ];
        (vec![Arc::new(Column::new("c0", 0))], aggs, schema)
    }

    fn keyed_agg(budget: usize, metrics: Arc<JobMetrics>) -> Box<dyn Operator> {
        let (keys, aggs, schema) = parts();
        Box::new(
            KeyedAgg::new(keys, aggs, schema, vec![(0, 0)], metrics)
                .unwrap()
                .with_cache_budget(CacheBudget::new(budget)),
        )
    }

    fn hash_agg() -> Box<dyn Operator> {
        let (keys, aggs, schema) = parts();
        Box::new(HashAgg::new(keys, aggs, schema, true).unwrap())
    }

    /// Random inserts over `keys` keys (NULL among them), a checkpoint
    /// after some chunks and a watermark on the key after others.
    fn inserting_steps(seed: u64, keys: u64) -> Vec<Step> {
        let mut lcg = Lcg::new(seed);
        let mut steps = Vec::new();
        for _ in 0..40 {
            let mut text = String::from("I I F");
            for _ in 0..1 + lcg.next(6) {
                let key = lcg.next(keys + 1);
                let key = if key == keys {
                    ".".into()
                } else {
                    key.to_string()
                };
                let value = match lcg.next(8) {
                    0 => ".".to_string(),
                    v => (v * 7 + lcg.next(50)).to_string(),
                };
                text.push_str(&format!("\n+ {key} {value} {value}"));
            }
            steps.push(Step::Chunk(chunk_from_pretty(&text)));
            match lcg.next(5) {
                0 | 1 => steps.push(Step::Checkpoint),
                2 => steps.push(Step::Watermark(Watermark {
                    column: 0,
                    value: 0,
                })),
                _ => {}
            }
        }
        steps
    }

    #[test]
    fn groups_equal_the_row_at_a_time_aggregate() {
        let mut read_back = 0;
        for seed in 0..60u64 {
            let steps = inserting_steps(seed, 1 + seed % 9);
            let (expected, _) = run_in_store(hash_agg(), &steps);
            for budget in [usize::MAX, 0] {
                let metrics = Arc::new(JobMetrics::default());
                let (got, read) = run_in_store(keyed_agg(budget, metrics), &steps);
                assert_eq!(
                    applied_pretty(&got),
                    applied_pretty(&expected),
                    "seed {seed}, budget {budget}"
                );
                if budget == usize::MAX {
                    assert_eq!(read, 0);
                }
                read_back += read;
            }
        }
        // A budget of 0 evicts every group once its checkpoint commits.
        assert!(read_back > 100, "only {read_back} groups were read back");
    }

    #[test]
    fn a_restored_aggregate_continues_where_it_stopped() {
        for seed in 0..12u64 {
            let steps = inserting_steps(seed, 4);
            for cut in (0..steps.len()).step_by(4) {
                for budget in [usize::MAX, 0] {
                    assert_restores(|m| keyed_agg(budget, m), &steps, cut);
                }
            }
        }
    }

    #[test]
    fn an_epoch_of_more_groups_than_a_part_is_merged_part_by_part() {
        let rows = |keys: std::ops::Range<usize>, value: usize| {
            let mut text = String::from("I I F");
            for k in keys {
                text.push_str(&format!("\n+ {k} {value} {value}"));
            }
            Step::Chunk(chunk_from_pretty(&text))
        };
        let n = FLUSH_GROUPS * 2 + 100;
        let steps = vec![
            rows(0..n, 1),
            // The second commits the first, so a budget of 0 evicts all.
            Step::Checkpoint,
            Step::Checkpoint,
            rows(n / 2..n + n / 2, 2),
            rows(0..10, 3),
        ];
        let (expected, _) = run_in_store(hash_agg(), &steps);
        for budget in [usize::MAX, 0] {
            let metrics = Arc::new(JobMetrics::default());
            let (got, read) = run_in_store(keyed_agg(budget, metrics), &steps);
            assert!(got.iter().all(|c| c.num_rows() <= 2 * FLUSH_GROUPS));
            assert_eq!(applied_pretty(&got), applied_pretty(&expected));
            if budget == 0 {
                assert_eq!(read, n - n / 2 + 10);
            }
        }
    }

    #[test]
    fn changes_go_out_before_a_watermark_on_a_key() {
        let mut agg = keyed_agg(usize::MAX, Arc::new(JobMetrics::default()));
        let mut out = Vec::new();
        agg.on_chunk(chunk_from_pretty("I I F\n+ 1 10 10\n+ 1 20 20"), &mut out)
            .unwrap();
        assert!(out.is_empty(), "rows wait for the barrier");
        let wm = Watermark {
            column: 0,
            value: 1,
        };
        assert_eq!(agg.on_watermark(wm, &mut out).unwrap().len(), 1);
        assert_eq!(crate::test_util::pretty(&out), vec!["+ 1 2 20 30 15.0"]);
    }
}
