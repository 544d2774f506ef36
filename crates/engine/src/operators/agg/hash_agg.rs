use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::{take, take_record_batch};
use arrow::datatypes::DataType;
use arrow::datatypes::SchemaRef;
// DataFusion's maps hash with foldhash: keyed by group, they are on the
// hot path, where std's SipHash costs several percent.
use datafusion::common::{HashMap, HashSet, ScalarValue};
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::PhysicalExpr;
use tidemark_plan::{AggCall, WindowKey};
use tidemark_state::{RowCodec, WriteBatch};
use tidemark_types::{Epoch, Op, StreamChunk, Watermark};

use super::group_cache::GroupCache;
use super::keyed_agg::FLUSH_GROUPS;
use super::keyed_windows::{for_each_stored_page, KeyedWindows};
use super::{
    evaluate_agg_inputs, evaluate_columns, forward_watermark, rows_to_chunk, selected_args,
    RetractableMinMax,
};
use crate::cache_budget::CacheBudget;
use crate::durable::{merge_row, time_key, KeyedReader, ScalarRows, StateEntries};
use crate::metrics::JobMetrics;
use crate::{Operator, Result};

/// A retractable accumulator for `call`: DataFusion's sliding accumulators
/// (count, sum, avg, count distinct, …) and our own for MIN and MAX.
pub fn retractable_accumulator(call: &AggCall) -> datafusion::error::Result<Box<dyn Accumulator>> {
    let expr = &call.expr;
    let name = expr.fun().name();
    if name == "min" || name == "max" {
        let data_type = expr.field().data_type().clone();
        return Ok(Box::new(RetractableMinMax::new(name == "max", data_type)?));
    }
    expr.create_sliding_accumulator()
}

struct Group {
    key: Vec<ScalarValue>,
    /// Net number of input rows in the group.
    rows: i64,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// The row last emitted for this group.
    emitted: Option<Vec<ScalarValue>>,
}

/// Incremental `GROUP BY`. Every input insert or delete updates (or retracts
/// from) the group's accumulators; after each chunk, every group that changed
/// emits a delete of its previous row and an insert of its new one. A group
/// whose rows are all deleted disappears. Without GROUP BY there is exactly one
/// group, present even when empty, as SQL requires.
///
/// A `GROUP BY` whose state restores keeps its groups as keyed state:
/// memory holds the recently used ones within a budget, and a row for
/// another reads its group back from the store (see [`GroupCache`]). A
/// windowed one keys its groups by window start first, so a closing
/// window's groups are one bucket of the cache and one key range of the
/// store, read a page at a time and deleted as a range.
pub struct HashAgg {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggs: Vec<AggCall>,
    args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    schema: SchemaRef,
    key_codec: RowCodec,
    groups: GroupCache<Group>,
    global: bool,
    /// A windowed aggregate's windows: late rows, open windows, and the
    /// closed ones whose stored groups a checkpoint deletes.
    windows: Option<KeyedWindows>,
    /// (input column, output column): watermarks passed on.
    watermark_map: Vec<(usize, usize)>,
    metrics: Option<Arc<JobMetrics>>,
    /// Groups changed (or gone) since the last checkpoint.
    unsaved: HashSet<Vec<u8>>,
    /// How a group's row count and accumulator states are stored; `None`
    /// when some aggregate's state cannot be restored (see [`restorable`]).
    state_rows: Option<ScalarRows>,
    append_only: bool,
    /// Where groups that left memory are read back from; `None` when the
    /// aggregate is not placed in a job (tests).
    keyed: Option<Box<dyn KeyedReader>>,
    /// The epoch of the checkpoint being taken.
    epoch: Epoch,
    /// Whether the store may hold groups memory does not: after a restore,
    /// or once one was evicted. Until then nothing is read: a new job's
    /// keyed table may still hold a recomputed job's groups, whose delete
    /// commits with the job's first epoch.
    stored_elsewhere: bool,
}

/// Why the accumulators of `aggs` cannot be restored, if they cannot. A
/// group's state is restored by merging each accumulator's stored state into
/// a fresh one. Over input that only inserts, that is DataFusion's partial
/// aggregation, which every aggregate supports. Otherwise the restored
/// accumulator must still retract any row: true of these, whose state is
/// their whole content (our MIN and MAX keep every value).
fn restorable(aggs: &[AggCall], append_only: bool) -> Option<String> {
    if append_only {
        return None;
    }
    aggs.iter().find_map(|a| {
        let name = a.expr.fun().name();
        let whole = matches!(name, "count" | "sum" | "avg" | "min" | "max");
        (!whole || a.expr.is_distinct())
            .then(|| format!("its {name} aggregate is not checkpointed"))
    })
}

/// The estimated bytes of a group of key `key` in memory.
fn group_size(key: &[u8], group: &Group) -> usize {
    let scalars = |s: &[ScalarValue]| s.iter().map(ScalarValue::size).sum::<usize>();
    std::mem::size_of::<Group>()
        + 2 * key.len()
        + scalars(&group.key)
        + group.emitted.as_deref().map_or(0, scalars)
        + group.accumulators.iter().map(|a| a.size()).sum::<usize>()
}

/// The key of a group's state; the empty key holds the [`Progress`].
pub(super) fn group_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(1);
    k.extend_from_slice(key);
    k
}

impl HashAgg {
    /// `append_only`: the input only inserts, so plain DataFusion
    /// accumulators do (no retraction, smaller state).
    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        aggs: Vec<AggCall>,
        schema: SchemaRef,
        append_only: bool,
    ) -> Result<Self> {
        let key_types = schema
            .fields()
            .iter()
            .take(group_exprs.len())
            .map(|f| f.data_type().clone());
        let args = aggs.iter().map(|a| a.expr.expressions()).collect();
        let global = group_exprs.is_empty();
        let mut agg = Self {
            key_codec: RowCodec::new(key_types)?,
            group_exprs,
            aggs,
            args,
            schema,
            groups: GroupCache::new(CacheBudget::new(usize::MAX)),
            global,
            windows: None,
            watermark_map: Vec::new(),
            metrics: None,
            unsaved: HashSet::default(),
            state_rows: None,
            append_only,
            keyed: None,
            epoch: 0,
            stored_elsewhere: false,
        };
        if restorable(&agg.aggs, append_only).is_none() {
            let probe = agg.new_group(Vec::new())?;
            let mut types = vec![arrow::datatypes::DataType::Int64];
            for mut acc in probe.accumulators {
                types.extend(acc.state()?.iter().map(|s| s.data_type()));
            }
            agg.state_rows = Some(ScalarRows::new(types)?);
        }
        if agg.global {
            let group = agg.new_group(Vec::new())?;
            agg.insert_group(Vec::new(), group, 0);
        }
        Ok(agg)
    }

    /// Keeps its groups within its share of `budget` when they are keyed
    /// state (see [`Self::keeps_groups_keyed`]); the default keeps all.
    pub fn with_cache_budget(mut self, budget: Arc<CacheBudget>) -> Self {
        self.groups.set_budget(budget);
        self
    }

    /// Whether groups are stored as keyed state, read back when needed,
    /// rather than with the state restored whole (a global aggregate has
    /// one group).
    fn keeps_groups_keyed(&self) -> bool {
        self.state_rows.is_some()
            && !self.global
            && (self.keyed.is_some() || self.windows.is_some())
    }

    /// The key row of a group's key: after its window's start, if windowed.
    fn key_row<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        match self.windows {
            Some(_) => &key[8..],
            None => key,
        }
    }

    fn insert_group(&mut self, key: Vec<u8>, group: Group, saved: Epoch) {
        let size = group_size(&key, &group);
        self.groups.insert(key, group, size, saved);
    }

    /// Reads back the groups of `order` that left memory; the others are new.
    fn load_missing(&mut self, order: &[Vec<u8>]) -> Result<()> {
        let Some(keyed) = self.keyed.as_ref().filter(|_| self.stored_elsewhere) else {
            return Ok(());
        };
        let unsaved = &self.unsaved;
        let stored = self.groups.read_back(
            keyed.as_ref(),
            order.iter().map(Vec::as_slice),
            |k| unsaved.contains(k),
            group_key,
        )?;
        let (keys, values): (Vec<Vec<u8>>, Vec<Vec<u8>>) = stored.into_iter().unzip();
        if let Some(m) = &self.metrics {
            m.add_groups_read_back(keys.len());
        }
        let values: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        self.load_groups(keys, &values)
    }

    /// Rebuilds the stored groups `keys` (group keys) from their `values`.
    fn load_groups(&mut self, keys: Vec<Vec<u8>>, values: &[&[u8]]) -> Result<()> {
        let groups = self.stored_groups(&keys, values)?;
        for (key, group) in keys.into_iter().zip(groups) {
            self.insert_group(key, group, 0);
        }
        Ok(())
    }

    /// The groups of `keys` as their stored `values` give them.
    fn stored_groups(&self, keys: &[Vec<u8>], values: &[&[u8]]) -> Result<Vec<Group>> {
        let Some(state_rows) = &self.state_rows else {
            return Err(crate::Error::Internal(
                "restoring an aggregate whose state is not checkpointed".into(),
            ));
        };
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let columns = state_rows.decode(values)?;
        let key_columns = if self.global {
            Vec::new()
        } else {
            self.key_codec
                .decode(keys.iter().map(|k| self.key_row(k)))?
        };
        let counts = columns[0]
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .ok_or_else(|| crate::Error::Internal("stored group row count is not Int64".into()))?
            .clone();
        let mut groups = Vec::with_capacity(keys.len());
        for i in 0..keys.len() {
            let mut group = self.group_at(&key_columns, i)?;
            group.rows = counts.value(i);
            merge_row(&mut group.accumulators, &columns, 1, i)?;
            // Every change was emitted by the checkpoint that stored this.
            if !self.emits_on_close() {
                group.emitted = Self::output_row(&mut group, self.global)?;
            }
            groups.push(group);
        }
        Ok(groups)
    }

    /// Writes the groups changed since the last checkpoint (and deletes of
    /// those gone) into `out`.
    fn write_unsaved(&mut self, out: &mut WriteBatch) -> Result<()> {
        let Some(state_rows) = &self.state_rows else {
            return Ok(());
        };
        // Deletes matter to the cache only when groups are read back.
        let keyed = self.keeps_groups_keyed();
        let mut keys = Vec::new();
        let mut rows = Vec::new();
        for key in std::mem::take(&mut self.unsaved) {
            let stored = match self.groups.get_mut(&key) {
                Some(group) => {
                    let mut row = vec![ScalarValue::Int64(Some(group.rows))];
                    for acc in &mut group.accumulators {
                        row.extend(acc.state()?);
                    }
                    rows.push(row);
                    Some(group_size(&key, group))
                }
                None => None,
            };
            if stored.is_some() || keyed {
                self.groups.saved(&key, self.epoch, stored);
            }
            match stored {
                Some(_) => {
                    if let Some(w) = &mut self.windows {
                        w.writes(&key);
                    }
                    keys.push(key)
                }
                None => out.delete(group_key(&key)),
            }
        }
        for (key, value) in keys.iter().zip(state_rows.encode(&rows)?) {
            out.put(group_key(key), value);
        }
        Ok(())
    }

    /// Makes the aggregate windowed: rows for closed groups are late (dropped
    /// and counted), and closed groups are purged (after being emitted, when
    /// the window emits on close). A window column that is not a timestamp
    /// has no times, so its windows never close.
    pub fn with_window(
        mut self,
        window: Option<WindowKey>,
        watermark_map: Vec<(usize, usize)>,
        metrics: Arc<JobMetrics>,
    ) -> Self {
        let timed = |w: &WindowKey| {
            matches!(
                self.schema.fields().get(w.key).map(|f| f.data_type()),
                Some(DataType::Timestamp(..))
            )
        };
        if let Some(window) = window.filter(timed) {
            self.windows = Some(KeyedWindows::new(window));
            // Still empty: a window key is a group key, so the aggregate is
            // not global (the one that starts with a group).
            self.groups = GroupCache::new(CacheBudget::new(usize::MAX)).with_buckets(8);
        }
        self.watermark_map = watermark_map;
        self.metrics = Some(metrics);
        self
    }

    fn emits_on_close(&self) -> bool {
        self.windows
            .as_ref()
            .is_some_and(|w| w.window.emit_on_close)
    }

    /// The rows of `chunk` whose window is still open, with their key
    /// columns; the others are late, dropped and counted.
    fn admit(
        &mut self,
        chunk: StreamChunk,
        key_columns: Vec<ArrayRef>,
    ) -> Result<(StreamChunk, Vec<ArrayRef>)> {
        let (Some(windows), Some(metrics)) = (&mut self.windows, &self.metrics) else {
            return Ok((chunk, key_columns));
        };
        let Some(rows) = windows.admit(&key_columns, metrics)? else {
            return Ok((chunk, key_columns));
        };
        let batch = take_record_batch(chunk.batch(), &rows)?;
        let key_columns = key_columns
            .iter()
            .map(|c| take(c.as_ref(), &rows, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let chunk = match chunk.ops() {
            Some(ops) => StreamChunk::with_ops(
                batch,
                rows.values().iter().map(|&r| ops[r as usize]).collect(),
            ),
            None => StreamChunk::inserts(batch),
        };
        Ok((chunk, key_columns))
    }

    /// The window starting at `start` closed: its groups leave memory and,
    /// when the view emits on close, are emitted, with those only the store
    /// holds (read a page at a time). Their stored states are deleted, as
    /// a range, by the next checkpoint.
    fn close_window(&mut self, start: i64, out: &mut Vec<StreamChunk>) -> Result<()> {
        let prefix = time_key(start);
        let mut taken = self.groups.take_prefix(&prefix);
        for (key, _) in &taken {
            self.unsaved.remove(key);
        }
        if !self.emits_on_close() {
            return Ok(());
        }
        for part in taken.chunks_mut(FLUSH_GROUPS) {
            let mut rows = Vec::with_capacity(part.len());
            for (_, group) in part {
                if let Some(row) = Self::output_row(group, false)? {
                    rows.push((Op::Insert, row));
                }
            }
            if let Some(chunk) = rows_to_chunk(&self.schema, rows)? {
                out.push(chunk);
            }
        }
        let Some(keyed) = self.keyed.as_ref().filter(|_| self.stored_elsewhere) else {
            return Ok(());
        };
        // The groups only the store holds: not resident, not deleted since
        // it was written.
        let resident: HashSet<&[u8]> = taken.iter().map(|(k, _)| k.as_slice()).collect();
        for_each_stored_page(keyed.as_ref(), start, |page| {
            let (keys, values): (Vec<Vec<u8>>, Vec<Vec<u8>>) = page
                .into_iter()
                .filter(|(k, _)| {
                    !resident.contains(k.as_slice())
                        && !self.unsaved.contains(k)
                        && !self.groups.is_gone(k)
                })
                .unzip();
            if let Some(m) = &self.metrics {
                m.add_groups_read_back(keys.len());
            }
            let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            let mut rows = Vec::with_capacity(keys.len());
            for mut group in self.stored_groups(&keys, &values)? {
                if let Some(row) = Self::output_row(&mut group, false)? {
                    rows.push((Op::Insert, row));
                }
            }
            if let Some(chunk) = rows_to_chunk(&self.schema, rows)? {
                out.push(chunk);
            }
            Ok(())
        })
    }

    /// A new, empty group whose key values are row `row` of `key_columns`.
    fn group_at(&self, key_columns: &[ArrayRef], row: usize) -> Result<Group> {
        let scalars = key_columns
            .iter()
            .map(|c| ScalarValue::try_from_array(c, row))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        self.new_group(scalars)
    }

    fn new_group(&self, key: Vec<ScalarValue>) -> Result<Group> {
        let accumulators = self
            .aggs
            .iter()
            .map(|a| {
                if self.append_only {
                    a.expr.create_accumulator()
                } else {
                    retractable_accumulator(a)
                }
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(Group {
            key,
            rows: 0,
            accumulators,
            emitted: None,
        })
    }

    fn output_row(group: &mut Group, global: bool) -> Result<Option<Vec<ScalarValue>>> {
        if group.rows <= 0 && !global {
            return Ok(None);
        }
        let mut row = group.key.clone();
        for acc in &mut group.accumulators {
            row.push(acc.evaluate()?);
        }
        Ok(Some(row))
    }

    /// Emits the change of each listed group since its last emitted row.
    fn emit(&mut self, touched: Vec<Vec<u8>>, out: &mut Vec<StreamChunk>) -> Result<()> {
        let mut rows = Vec::new();
        for key in touched {
            let Some(group) = self.groups.get_mut(&key) else {
                continue;
            };
            let new = Self::output_row(group, self.global)?;
            if new == group.emitted {
                continue;
            }
            if let Some(old) = group.emitted.take() {
                rows.push((Op::Delete, old));
            }
            if let Some(new) = new {
                rows.push((Op::Insert, new.clone()));
                group.emitted = Some(new);
            }
            if group.rows <= 0 && !self.global {
                self.groups.remove(&key);
            }
        }
        if let Some(chunk) = rows_to_chunk(&self.schema, rows)? {
            out.push(chunk);
        }
        Ok(())
    }
}

impl Operator for HashAgg {
    fn name(&self) -> &'static str {
        "HashAgg"
    }

    fn on_chunk(&mut self, chunk: StreamChunk, out: &mut Vec<StreamChunk>) -> Result<()> {
        let key_columns = evaluate_columns(&self.group_exprs, chunk.batch())?;
        let (chunk, key_columns) = self.admit(chunk, key_columns)?;
        let batch = chunk.batch();
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys = match &self.windows {
            _ if self.global => vec![Vec::new(); n],
            Some(w) => w.window_keys(&key_columns, self.key_codec.encode(&key_columns)?)?,
            None => self.key_codec.encode(&key_columns)?,
        };
        let (args, filters) = evaluate_agg_inputs(&self.args, &self.aggs, batch)?;

        // Row indices per group, inserts and deletes apart, in first-seen order.
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut by_group: HashMap<&[u8], (Vec<u32>, Vec<u32>)> = HashMap::default();
        for (row, key) in keys.iter().enumerate() {
            let entry = by_group.entry(key.as_slice()).or_insert_with(|| {
                order.push(key.clone());
                (Vec::new(), Vec::new())
            });
            match chunk.op(row) {
                Op::Insert => entry.0.push(row as u32),
                Op::Delete => entry.1.push(row as u32),
            }
        }

        self.groups.next_tick();
        if self.keeps_groups_keyed() {
            self.load_missing(&order)?;
        }
        for key in &order {
            self.unsaved.insert(key.clone());
            let (inserts, deletes) = &by_group[key.as_slice()];
            if !self.groups.contains(key) {
                let first = inserts.first().or(deletes.first()).copied().unwrap_or(0) as usize;
                let group = self.group_at(&key_columns, first)?;
                self.insert_group(key.clone(), group, 0);
            }
            let Some(group) = self.groups.get_mut(key) else {
                continue;
            };
            group.rows += inserts.len() as i64 - deletes.len() as i64;
            // Inserts first, so no accumulator sees more deletes than values.
            for (rows, retract) in [(inserts, false), (deletes, true)] {
                for (a, acc) in group.accumulators.iter_mut().enumerate() {
                    let Some(values) = selected_args(&args[a], filters[a].as_ref(), rows)? else {
                        continue;
                    };
                    if retract {
                        acc.retract_batch(&values)?;
                    } else {
                        acc.update_batch(&values)?;
                    }
                }
            }
        }
        if self.emits_on_close() {
            return Ok(());
        }
        self.emit(order, out)
    }

    fn on_watermark(
        &mut self,
        wm: Watermark,
        out: &mut Vec<StreamChunk>,
    ) -> Result<Vec<Watermark>> {
        if let Some(windows) = &mut self.windows {
            if windows.window.input_column == wm.column {
                for start in windows.advance(wm.value) {
                    self.close_window(start, out)?;
                }
            }
        }
        Ok(forward_watermark(&self.watermark_map, wm))
    }

    fn durability(&self) -> crate::Durability {
        match restorable(&self.aggs, self.append_only) {
            None => crate::Durability::Checkpointed,
            Some(why) => crate::Durability::Recompute(why),
        }
    }

    fn checkpoint_state(&mut self, state: &mut WriteBatch) -> Result<()> {
        if self.state_rows.is_none() {
            return Ok(());
        }
        if let Some(windows) = &mut self.windows {
            return windows.checkpoint_state(state);
        }
        if self.keeps_groups_keyed() {
            return Ok(());
        }
        self.write_unsaved(state)
    }

    fn attach_keyed(&mut self, keyed: Box<dyn KeyedReader>) {
        self.keyed = Some(keyed);
    }

    fn checkpoint_keyed(&mut self, keyed: &mut WriteBatch) -> Result<()> {
        if !self.keeps_groups_keyed() {
            return Ok(());
        }
        if let Some(windows) = &mut self.windows {
            windows.checkpoint_keyed(keyed);
        }
        self.write_unsaved(keyed)?;
        self.stored_elsewhere |=
            self.groups
                .settle_after(self.epoch, self.keyed.as_deref(), self.metrics.as_deref());
        Ok(())
    }

    fn restore(&mut self, entries: StateEntries) -> Result<()> {
        self.stored_elsewhere = true;
        if let (Some(windows), Some(metrics)) = (&mut self.windows, &self.metrics) {
            // Groups are read back as rows and closing windows reach them:
            // the state restored whole is the progress and the open windows.
            for (key, value) in &entries {
                windows.restore(key, value, metrics)?;
            }
            return Ok(());
        }
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for (key, value) in &entries {
            match key.split_first() {
                Some((1, group)) => {
                    keys.push(group.to_vec());
                    values.push(value.as_slice());
                }
                _ => {
                    return Err(crate::Error::Internal(format!(
                        "a stored aggregate key of {} bytes",
                        key.len()
                    )))
                }
            }
        }
        self.load_groups(keys, &values)
    }

    fn on_checkpoint(
        &mut self,
        epoch: Epoch,
        _batch: &mut WriteBatch,
        out: &mut Vec<StreamChunk>,
    ) -> Result<()> {
        self.epoch = epoch;
        // The single group of a global aggregate exists from the start.
        if self.global {
            let emitted = self.groups.get(&[]).is_some_and(|g| g.emitted.is_some());
            if !emitted {
                self.emit(vec![Vec::new()], out)?;
                // Stored, so a restored job knows it was emitted.
                self.unsaved.insert(Vec::new());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::functions_aggregate::{count::count_udaf, min_max::max_udaf};
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::test_util::{agg_call, chunk_from_pretty, pretty, schema_of, Step};

    fn count_and_max() -> HashAgg {
        count_and_max_over(false)
    }

    fn count_and_max_over(append_only: bool) -> HashAgg {
        let input = schema_of("I I");
        let schema = Arc::new(Schema::new(vec![
            Field::new("c0", DataType::Int64, true),
            Field::new("n", DataType::Int64, false),
            Field::new("top", DataType::Int64, true),
        ]));
        HashAgg::new(
            vec![Arc::new(Column::new("c0", 0))],
            vec![
                agg_call(count_udaf(), 1, &input, "n"),
                agg_call(max_udaf(), 1, &input, "top"),
            ],
            schema,
            append_only,
        )
        .unwrap()
    }

    fn run(agg: &mut HashAgg, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        agg.on_chunk(chunk_from_pretty(text), &mut out).unwrap();
        pretty(&out)
    }

    #[test]
    fn retractions_update_and_remove_groups() {
        let mut agg = count_and_max();
        assert_eq!(
            run(&mut agg, "I I\n+ 1 10\n+ 1 30\n+ 2 5"),
            vec!["+ 1 2 30", "+ 2 1 5"]
        );
        assert_eq!(
            run(&mut agg, "I I\n- 1 30\n- 2 5"),
            vec!["- 1 2 30", "+ 1 1 10", "- 2 1 5"]
        );
        // an insert and its delete in one chunk change nothing
        assert!(run(&mut agg, "I I\n+ 1 99\n- 1 99").is_empty());
        // nulls form their own group
        assert_eq!(run(&mut agg, "I I\n+ . 7"), vec!["+ NULL 1 7"]);
    }

    /// Random inserts and deletes of (key, value) rows over `keys` keys,
    /// with checkpoints between some chunks.
    fn retracting_steps(seed: u64, keys: u64) -> Vec<crate::test_util::Step> {
        use crate::test_util::{Lcg, Step};
        let mut lcg = Lcg::new(seed);
        let mut live: Vec<(i64, i64)> = Vec::new();
        let mut steps = Vec::new();
        for _ in 0..40 {
            let mut text = String::from("I I");
            for _ in 0..1 + lcg.next(4) {
                if !live.is_empty() && lcg.next(3) == 0 {
                    let (k, v) = live.remove(lcg.next(live.len() as u64) as usize);
                    text.push_str(&format!("\n- {k} {v}"));
                } else {
                    let row = (lcg.next(keys) as i64, lcg.next(50) as i64);
                    live.push(row);
                    text.push_str(&format!("\n+ {} {}", row.0, row.1));
                }
            }
            steps.push(Step::Chunk(chunk_from_pretty(&text)));
            if lcg.next(3) == 0 {
                steps.push(Step::Checkpoint);
            }
        }
        steps
    }

    #[test]
    fn a_restored_aggregate_still_retracts_what_it_had() {
        use crate::test_util::assert_restores;
        for seed in 0..20u64 {
            let steps = retracting_steps(seed, 4);
            for cut in (0..steps.len()).step_by(3) {
                for budget in [usize::MAX, 0] {
                    let make = |_| -> Box<dyn Operator> {
                        Box::new(count_and_max().with_cache_budget(CacheBudget::new(budget)))
                    };
                    assert_restores(make, &steps, cut);
                }
            }
        }
    }

    #[test]
    fn groups_that_leave_memory_are_read_back_as_they_were() {
        use crate::test_util::run_in_store;
        let mut read_back = 0;
        for seed in 0..60u64 {
            let steps = retracting_steps(seed, 2 + seed % 7);
            let (all_in_memory, none_read) = run_in_store(Box::new(count_and_max()), &steps);
            assert_eq!(none_read, 0);
            // A budget of 0 evicts every group once its checkpoint commits.
            let evicting = Box::new(count_and_max().with_cache_budget(CacheBudget::new(0)));
            let (evicted, read) = run_in_store(evicting, &steps);
            assert_eq!(pretty(&evicted), pretty(&all_in_memory), "seed {seed}");
            read_back += read;
        }
        assert!(read_back > 100, "only {read_back} groups were read back");
    }

    #[test]
    fn an_append_only_aggregate_restores_with_plain_accumulators() {
        use crate::test_util::{assert_restores, Lcg, Step};
        let mut lcg = Lcg::new(3);
        let mut steps = Vec::new();
        for _ in 0..40 {
            let mut text = String::from("I I");
            for _ in 0..1 + lcg.next(4) {
                text.push_str(&format!("\n+ {} {}", lcg.next(4), lcg.next(50)));
            }
            steps.push(Step::Chunk(chunk_from_pretty(&text)));
            if lcg.next(3) == 0 {
                steps.push(Step::Checkpoint);
            }
        }
        for cut in 0..steps.len() {
            for budget in [usize::MAX, 0] {
                let make = |_| -> Box<dyn Operator> {
                    Box::new(count_and_max_over(true).with_cache_budget(CacheBudget::new(budget)))
                };
                assert_restores(make, &steps, cut);
            }
        }
    }

    /// `k, ts, count(v), min(v) … GROUP BY k, ts`, windowed by `ts`.
    fn windowed(emit_on_close: bool, budget: usize, metrics: Arc<JobMetrics>) -> Box<dyn Operator> {
        let (keys, aggs, schema) = crate::test_util::count_min_by_key_and_time();
        let window = crate::test_util::time_window(emit_on_close);
        Box::new(
            HashAgg::new(keys, aggs, schema, false)
                .unwrap()
                .with_window(Some(window), vec![(2, 1)], metrics)
                .with_cache_budget(CacheBudget::new(budget)),
        )
    }

    /// Random inserts and deletes of (k, v, ts) rows, times rising with up
    /// to 20 of disorder, a watermark 12 behind the newest (some rows and
    /// deletes are late), checkpoints between; with the rows each group is
    /// left with (count, min) and the late rows, as a brute force sees them.
    #[allow(clippy::type_complexity)]
    fn windowed_steps(seed: u64) -> (Vec<Step>, Vec<(i64, i64, i64, i64, i64)>, u64) {
        use crate::test_util::{key_value_time_chunk, Lcg};
        use std::collections::BTreeMap;
        let mut lcg = Lcg::new(seed);
        let (mut steps, mut sent) = (Vec::new(), Vec::new());
        let mut groups: BTreeMap<(i64, i64), Vec<i64>> = BTreeMap::new();
        let (mut watermark, mut newest, mut late) = (i64::MIN, i64::MIN, 0);
        for i in 0..60i64 {
            let (mut rows, mut ops) = (Vec::new(), Vec::new());
            for _ in 0..1 + lcg.next(4) {
                let row = if !sent.is_empty() && lcg.next(3) == 0 {
                    ops.push(Op::Delete);
                    sent.remove(lcg.next(sent.len() as u64) as usize)
                } else {
                    ops.push(Op::Insert);
                    let t = i * 2 + lcg.next(21) as i64 - 20;
                    let row = (lcg.next(3) as i64, lcg.next(100) as i64, t);
                    sent.push(row);
                    row
                };
                rows.push(row);
                newest = newest.max(row.2);
            }
            for (&(k, v, t), op) in rows.iter().zip(&ops) {
                if t < watermark {
                    late += 1;
                    continue;
                }
                let values = groups.entry((k, t)).or_default();
                match op {
                    Op::Insert => values.push(v),
                    Op::Delete => {
                        let at = values.iter().position(|x| *x == v).unwrap();
                        values.remove(at);
                    }
                }
            }
            let batch = key_value_time_chunk(&rows).batch().clone();
            steps.push(Step::Chunk(StreamChunk::with_ops(batch, ops)));
            watermark = watermark.max(newest - 12);
            steps.push(Step::Watermark(Watermark {
                column: 2,
                value: watermark,
            }));
            if lcg.next(3) == 0 {
                steps.push(Step::Checkpoint);
            }
        }
        steps.push(Step::Watermark(Watermark {
            column: 2,
            value: crate::event_time::END_OF_TIME,
        }));
        let rows = groups
            .into_iter()
            .filter(|(_, values)| !values.is_empty())
            .map(|((k, t), values)| (k, t, values.len() as i64, *values.iter().min().unwrap(), -1))
            .collect();
        (steps, rows, late)
    }

    #[test]
    fn windows_over_retracting_input_equal_brute_force() {
        use crate::test_util::{applied_rows, run_in_store};
        let mut read_back = 0;
        for seed in 0..30u64 {
            let (steps, expected, late) = windowed_steps(seed);
            for emit_on_close in [true, false] {
                for budget in [usize::MAX, 0] {
                    let m = Arc::new(JobMetrics::default());
                    let op = windowed(emit_on_close, budget, Arc::clone(&m));
                    let (got, read) = run_in_store(op, &steps);
                    let case = format!("seed {seed}, on close {emit_on_close}, budget {budget}");
                    assert_eq!(applied_rows(&got), expected, "{case}");
                    assert_eq!(m.stats().late_rows, late, "{case}");
                    read_back += read;
                }
            }
        }
        assert!(read_back > 100, "only {read_back} groups were read back");
    }

    #[test]
    fn a_restored_windowed_aggregate_still_retracts_what_it_had() {
        use crate::test_util::assert_restores;
        for seed in 0..8u64 {
            let (steps, _, _) = windowed_steps(seed);
            for cut in (0..steps.len()).step_by(7) {
                for emit_on_close in [true, false] {
                    for budget in [usize::MAX, 0] {
                        let make = |m| windowed(emit_on_close, budget, m);
                        assert_restores(make, &steps, cut);
                    }
                }
            }
        }
    }

    #[test]
    fn closed_windows_leave_only_the_progress_stored() {
        use crate::test_util::stored_after;
        let (steps, _, _) = windowed_steps(5);
        for emit_on_close in [true, false] {
            let op = windowed(emit_on_close, 0, Arc::new(JobMetrics::default()));
            let (state, keyed) = stored_after(op, &steps);
            assert_eq!(state.len(), 1, "{state:?}");
            assert!(keyed.is_empty(), "{keyed:?}");
        }
    }
}
