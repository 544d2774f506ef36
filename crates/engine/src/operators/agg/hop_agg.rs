//! HOP windows aggregated by slices: each row is added once, to the
//! slide-long slice it falls in, and a window's rows are the groups of the
//! slices it covers merged — no copy of a row per window.
//!
//! A slice's groups are keyed state, keyed by the slice's start and then the
//! group's key, held in a cache within the server's budget like
//! [`super::KeyedAgg`]'s: neither the slices nor a window need fit in
//! memory. A closing window merges its slices' groups in key order, a part
//! at a time ([`SliceGroups`]); with continuous emission, each barrier
//! merges the epoch's rows into their slices and emits, per window they
//! change, the group's old and new rows, both computed from its slices.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::{concat, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
// Keyed by group: foldhash, not std's SipHash, on this hot path.
use datafusion::common::HashMap;
use datafusion::physical_expr::PhysicalExpr;
use tidemark_plan::{AggCall, SessionKey, WindowKey};
use tidemark_state::{RowCodec, WriteBatch};
use tidemark_types::{Epoch, StreamChunk, Watermark};

use super::changes::{columns_to_batch, matched_changes};
use super::evaluate_agg_inputs;
use super::group_cache::Bucket;
use super::grouped::{merge_by_group, Grouped, GroupedState};
use super::keyed_agg::{parts, FLUSH_GROUPS};
use super::keyed_states::{merge_stored, KeyedStates};
use super::keyed_windows::KeyedWindows;
use super::slice_groups::SliceGroups;
use super::window_changes::WindowChanges;
use crate::cache_budget::CacheBudget;
use crate::durable::{time_key, KeyedReader, StateEntries};
use crate::event_time::{micros_array, timestamps_array, END_OF_TIME};
use crate::metrics::JobMetrics;
use crate::{Error, Operator, Result};

/// What the operator is built from. `size` is a whole multiple of `slide`.
pub struct HopAggSpec {
    /// Input columns of the plain group keys.
    pub partition: Vec<usize>,
    pub time: usize,
    pub slide: i64,
    pub size: i64,
    pub offset: i64,
    pub aggs: Vec<AggCall>,
    /// The output's key columns, in order.
    pub keys: Vec<SessionKey>,
    pub emit_on_close: bool,
    pub schema: SchemaRef,
}

/// Rows `rows` of each of `columns`.
fn take_all(columns: &[ArrayRef], rows: &[u32]) -> Result<Vec<ArrayRef>> {
    let rows = UInt32Array::from(rows.to_vec());
    columns
        .iter()
        .map(|c| Ok(take(c.as_ref(), &rows, None)?))
        .collect()
}

/// Groups of windows to emit: group `j` is the window starting at
/// `windows[j]` of the group whose key row is `keys[j]`; `parts` are its
/// slices' states, (j, state), oldest slice first.
#[derive(Default)]
struct WindowGroups<'a> {
    windows: Vec<i64>,
    keys: Vec<Cow<'a, [u8]>>,
    parts: Vec<(usize, Cow<'a, [u8]>)>,
}

/// `GROUP BY` keys, window over `HOP(…, slide, size)`. A window is final
/// once the watermark reaches its end: it is emitted then (when emitting on
/// close); a slice is purged with the last window that covers it. A row
/// whose newest window is final is late.
pub struct HopAgg {
    spec: HopAggSpec,
    args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    /// Encodes the plain group keys: a group's key row.
    key_codec: RowCodec,
    time_type: DataType,
    /// The rows since the last barrier, aggregated by slice (a timestamp
    /// column first), then the plain group keys.
    epoch_rows: Grouped,
    slice_schema: SchemaRef,
    /// Each slice's groups' states.
    states: KeyedStates,
    /// The slices with groups, and the late rows. Its watermark is the
    /// first slice still open: its newest window ends `size` after it.
    slices: KeyedWindows,
    metrics: Arc<JobMetrics>,
}

impl HopAgg {
    pub fn new(spec: HopAggSpec, metrics: Arc<JobMetrics>) -> Result<Self> {
        let mut partition = vec![None; spec.partition.len()];
        let mut time_type = None;
        for (key, field) in spec.keys.iter().zip(spec.schema.fields()) {
            match key {
                SessionKey::Partition(i) => partition[*i] = Some(field.as_ref().clone()),
                _ => time_type = Some(field.data_type().clone()),
            }
        }
        let time_type = time_type
            .ok_or_else(|| Error::Internal("HOP aggregate without a window key".into()))?;
        let partition: Vec<Field> = partition.into_iter().flatten().collect();
        let key_codec = RowCodec::new(partition.iter().map(|f| f.data_type().clone()))?;
        let slice = Field::new(
            "slice",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        );
        let slice_schema = Arc::new(Schema::new(
            std::iter::once(slice).chain(partition).collect::<Vec<_>>(),
        ));
        let slices = KeyedWindows::for_slices(WindowKey {
            key: 0,
            input_column: spec.time,
            emit_on_close: spec.emit_on_close,
        });
        Ok(Self {
            args: spec.aggs.iter().map(|a| a.expr.expressions()).collect(),
            epoch_rows: Grouped::new(Arc::clone(&slice_schema), &spec.aggs)?,
            states: KeyedStates::new(&spec.aggs, Arc::clone(&metrics))?.by_window(),
            spec,
            key_codec,
            time_type,
            slice_schema,
            slices,
            metrics,
        })
    }

    /// Keeps its groups within its share of `budget`.
    pub fn with_cache_budget(mut self, budget: Arc<CacheBudget>) -> Self {
        self.states.set_budget(budget);
        self
    }

    /// The start of the newest window (and of the slice) holding time `t`.
    fn slice_of(&self, t: i64) -> i64 {
        let HopAggSpec { slide, offset, .. } = self.spec;
        t.saturating_sub(offset)
            .div_euclid(slide)
            .saturating_mul(slide)
            .saturating_add(offset)
    }

    /// Whether the window starting at `start` has ended.
    fn is_final(&self, start: i64) -> bool {
        self.slices
            .watermark()
            .is_some_and(|first_open| start < first_open)
    }

    /// The starts of the windows covering the slice at `slice`, oldest first.
    fn windows_of(&self, slice: i64) -> impl Iterator<Item = i64> + '_ {
        let n = self.spec.size / self.spec.slide;
        (0..n)
            .rev()
            .map(move |k| slice.saturating_sub(k.saturating_mul(self.spec.slide)))
    }

    /// The starts of the slices the window starting at `start` covers that
    /// have groups, oldest first.
    fn slices_in(&self, start: i64) -> Vec<i64> {
        self.slices
            .open_in(start..start.saturating_add(self.spec.size))
            .collect()
    }

    /// The keys of groups, from their key columns (the slice first).
    fn encode_keys(&self, keys: &[ArrayRef]) -> Result<Vec<Vec<u8>>> {
        let rows = match keys.len() {
            // No plain group keys: one group per slice.
            1 => vec![Vec::new(); keys[0].len()],
            _ => self.key_codec.encode(&keys[1..])?,
        };
        self.slices.window_keys(keys, rows)
    }

    /// The final rows of `groups`.
    fn window_rows(&self, groups: &WindowGroups) -> Result<RecordBatch> {
        let bytes: Vec<&[u8]> = groups.parts.iter().map(|(_, s)| s.as_ref()).collect();
        let states = self.states.decode(&bytes)?;
        let numbers: Vec<usize> = groups.parts.iter().map(|(j, _)| *j).collect();
        let keys: Vec<&[u8]> = groups.keys.iter().map(|k| k.as_ref()).collect();
        self.rows_of(&groups.windows, &keys, &states, &numbers)
    }

    /// The final rows of groups: group `j` is the window starting at
    /// `windows[j]` of the group whose key row is `keys[j]`; row `i` of
    /// each aggregate's `states` is a part of group `numbers[i]`.
    fn rows_of(
        &self,
        windows: &[i64],
        keys: &[&[u8]],
        states: &[Vec<ArrayRef>],
        numbers: &[usize],
    ) -> Result<RecordBatch> {
        let columns = self.key_columns(windows, keys)?;
        self.rows_with(columns, states, numbers)
    }

    /// The output's key columns of groups: group `j` is the window starting
    /// at `windows[j]` of the group whose key row is `keys[j]`.
    fn key_columns(&self, windows: &[i64], keys: &[&[u8]]) -> Result<Vec<ArrayRef>> {
        let partition = match self.spec.partition.len() {
            0 => Vec::new(),
            _ => self.key_codec.decode(keys.iter().copied())?,
        };
        let times = |shift: i64| {
            let starts = windows.iter().map(|w| w.saturating_add(shift));
            timestamps_array(starts, &self.time_type)
                .ok_or_else(|| Error::Internal("HOP over a column that is not a timestamp".into()))
        };
        let mut columns = Vec::with_capacity(self.spec.schema.fields().len());
        for key in &self.spec.keys {
            columns.push(match key {
                SessionKey::Partition(i) => Arc::clone(&partition[*i]),
                SessionKey::WindowStart => times(0)?,
                SessionKey::WindowEnd => times(self.spec.size)?,
            });
        }
        Ok(columns)
    }

    /// The final rows of the groups whose key columns are `columns`: row
    /// `i` of each aggregate's `states` is a part of group `numbers[i]`.
    fn rows_with(
        &self,
        mut columns: Vec<ArrayRef>,
        states: &[Vec<ArrayRef>],
        numbers: &[usize],
    ) -> Result<RecordBatch> {
        let groups = columns.first().map_or(0, |c| c.len());
        columns.extend(merge_by_group(&self.spec.aggs, states, numbers, groups)?);
        columns_to_batch(&self.spec.schema, columns)
    }

    /// Merges the epoch's rows into their slices' groups, and, with
    /// continuous emission, emits the rows of the windows they change.
    fn flush(&mut self, out: &mut Vec<StreamChunk>) -> Result<()> {
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
        if self.spec.emit_on_close {
            let stored = self.states.stored(&keys, &added.keys)?;
            return self
                .merge_part(keys, added, stored.map(|(_, s)| s))
                .map(drop);
        }
        // The open windows the part changes, per group, and every slice
        // state those windows' rows are made of, each looked up once.
        let mut changes = WindowChanges::new(
            &keys,
            |slice| {
                self.windows_of(slice)
                    .filter(|&w| !self.is_final(w))
                    .collect()
            },
            |range| self.slices.open_in(range).collect(),
            self.spec.size,
        );
        if self.states.elsewhere().is_some() {
            let needed = changes.cell_keys();
            self.states.load_missing(needed.iter().map(Vec::as_slice))?;
        }
        let states = &self.states;
        let mut windows: Vec<Option<Bucket<Vec<u8>>>> =
            (0..changes.slices().len()).map(|_| None).collect();
        let bytes = changes.read_before(|i, slice, key| {
            let window = windows[i].get_or_insert_with(|| states.window(slice));
            window.get(key).map(Vec::as_slice)
        });
        let before_rows = bytes.len() as u32;
        let before = self.states.decode(&bytes)?;
        // The part merged into the states its groups had before.
        let stored = match changes.part_before() {
            Some((at, _)) if at.is_empty() => None,
            Some((at, rows)) => Some(GroupedState {
                keys: take_all(&added.keys, &at)?,
                states: before
                    .iter()
                    .map(|columns| take_all(columns, &rows))
                    .collect::<Result<_>>()?,
            }),
            None => self.states.stored(&keys, &added.keys)?.map(|(_, s)| s),
        };
        self.states.next_tick();
        let merged = self.merge_part(keys, added, stored)?;
        changes.merged_at(before_rows);
        let after = before
            .iter()
            .zip(&merged)
            .map(|(before, merged)| {
                before
                    .iter()
                    .zip(merged)
                    .map(|(b, m)| Ok(concat(&[b.as_ref(), m.as_ref()])?))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        // Each changed row before and after.
        let (windows, groups): (Vec<i64>, Vec<&[u8]>) = changes.pairs().unzip();
        let key_columns = self.key_columns(&windows, &groups)?;
        let rows = |states: &[Vec<ArrayRef>], after: bool| {
            let (rows, numbers) = changes.parts(after);
            let states = states
                .iter()
                .map(|columns| take_all(columns, &rows))
                .collect::<Result<Vec<_>>>()?;
            let batch = self.rows_with(key_columns.clone(), &states, &numbers)?;
            Ok::<_, Error>((batch, numbers))
        };
        let (old, had) = rows(&before, false)?;
        let (new, _) = rows(&after, true)?;
        let mut found = vec![false; windows.len()];
        for j in had {
            found[j] = true;
        }
        let (matched, added): (Vec<u32>, Vec<u32>) =
            (0..windows.len() as u32).partition(|&j| found[j as usize]);
        if let Some(chunk) = matched_changes(&old, &matched, &new, &matched, &added)? {
            out.push(chunk);
        }
        Ok(())
    }

    /// Merges `added` (whose groups' keys are `keys`) into the slices'
    /// groups, whose `stored` states are those of the groups that had one
    /// (numbered as in `added`): the merged states, one row per group.
    fn merge_part(
        &mut self,
        keys: Vec<Vec<u8>>,
        added: GroupedState,
        stored: Option<GroupedState>,
    ) -> Result<Vec<Vec<ArrayRef>>> {
        let merged = match stored {
            None => added,
            Some(stored) => merge_stored(&self.slice_schema, &self.spec.aggs, &stored, &added)?,
        };
        self.states.put(keys, &merged.states)?;
        Ok(merged.states)
    }

    /// Emits the rows of the window starting at `start`, which has ended:
    /// its slices' groups merged in key order, [`FLUSH_GROUPS`] at a time.
    fn emit_window(&self, start: i64, out: &mut Vec<StreamChunk>) -> Result<()> {
        if self.states.elsewhere().is_none() {
            return self.emit_resident_window(start, out);
        }
        let slices = self.slices_in(start);
        let metrics = self.states.metrics();
        let mut streams = Vec::with_capacity(slices.len());
        for slice in slices {
            streams.push(SliceGroups::new(
                slice,
                self.states.resident(&time_key(slice)).into_iter(),
                self.states.elsewhere(),
                metrics,
            )?);
        }
        loop {
            let mut groups = WindowGroups::default();
            while groups.keys.len() < FLUSH_GROUPS {
                let Some(least) = streams.iter().filter_map(SliceGroups::next_key).min() else {
                    break;
                };
                let least = least.to_vec();
                let j = groups.keys.len();
                for stream in &mut streams {
                    if stream.next_key() == Some(least.as_slice()) {
                        let state = stream.pop(metrics)?.expect("a next group");
                        groups.parts.push((j, state));
                    }
                }
                groups.windows.push(start);
                groups.keys.push(Cow::Owned(least));
            }
            if groups.keys.is_empty() {
                return Ok(());
            }
            out.push(StreamChunk::inserts(self.window_rows(&groups)?));
        }
    }

    /// [`Self::emit_window`] when memory holds every group: its slices'
    /// groups matched by key through a hash map, not put in order.
    fn emit_resident_window(&self, start: i64, out: &mut Vec<StreamChunk>) -> Result<()> {
        let mut groups = WindowGroups::default();
        let mut numbers: HashMap<&[u8], usize> = HashMap::default();
        for slice in self.slices_in(start) {
            for (key, state) in self.states.resident_in(slice) {
                let j = *numbers.entry(&key[8..]).or_insert_with(|| {
                    groups.windows.push(start);
                    groups.keys.push(Cow::Borrowed(&key[8..]));
                    groups.keys.len() - 1
                });
                groups.parts.push((j, Cow::Borrowed(state)));
            }
        }
        if groups.keys.is_empty() {
            return Ok(());
        }
        let rows = self.window_rows(&groups)?;
        for offset in (0..rows.num_rows()).step_by(FLUSH_GROUPS) {
            let len = FLUSH_GROUPS.min(rows.num_rows() - offset);
            out.push(StreamChunk::inserts(rows.slice(offset, len)));
        }
        Ok(())
    }
}

impl Operator for HopAgg {
    fn name(&self) -> &'static str {
        "HopAgg"
    }

    fn durability(&self) -> crate::Durability {
        crate::Durability::Checkpointed
    }

    fn attach_keyed(&mut self, keyed: Box<dyn KeyedReader>) {
        self.states.attach(keyed);
    }

    fn checkpoint_state(&mut self, state: &mut WriteBatch) -> Result<()> {
        self.slices.checkpoint_state(state)
    }

    fn checkpoint_keyed(&mut self, keyed: &mut WriteBatch) -> Result<()> {
        self.slices.checkpoint_keyed(keyed);
        let slices = &mut self.slices;
        self.states.checkpoint(keyed, |key| slices.writes(key))
    }

    fn restore(&mut self, entries: StateEntries) -> Result<()> {
        // Groups are read back as rows and closing windows reach them: the
        // state restored whole is the progress and the slices with groups.
        self.states.restored();
        for (key, value) in &entries {
            self.slices.restore(key, value, &self.metrics)?;
        }
        Ok(())
    }

    fn on_chunk(&mut self, chunk: StreamChunk, out: &mut Vec<StreamChunk>) -> Result<()> {
        if chunk.has_deletes() {
            return Err(Error::Internal(
                "a HOP aggregate over append-only input received a delete".into(),
            ));
        }
        let batch = chunk.batch();
        let times = micros_array(batch.column(self.spec.time).as_ref())
            .ok_or_else(|| Error::Internal("HOP over a column that is not a timestamp".into()))?;
        // Rows go to their slice; a row is late when its slice's newest
        // window (the one starting with the slice) is final, and a row
        // without a time is in no window.
        let slices: ArrayRef = Arc::new(TimestampMicrosecondArray::from_iter(
            times.iter().map(|t| t.map(|t| self.slice_of(t))),
        ));
        let mut keys = vec![slices];
        keys.extend(
            self.spec
                .partition
                .iter()
                .map(|&i| Arc::clone(batch.column(i))),
        );
        let rows = self.slices.admit(&keys, &self.metrics)?;
        if rows.as_ref().is_some_and(|r| r.is_empty()) {
            return Ok(());
        }
        let (args, filters) = evaluate_agg_inputs(&self.args, &self.spec.aggs, batch)?;
        self.epoch_rows
            .update_rows(&keys, &args, &filters, rows.as_ref(), batch.num_rows())?;
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
        if wm.column != self.spec.time {
            return Ok(Vec::new());
        }
        // The first slice whose newest window is still open.
        let first_open = wm.value.saturating_sub(self.spec.size).saturating_add(1);
        let previous = self.slices.watermark();
        if previous.is_none_or(|p| first_open > p) {
            let ending: BTreeSet<i64> = self
                .slices
                .open_in(i64::MIN..first_open.saturating_add(self.spec.size))
                .flat_map(|s| self.windows_of(s).collect::<Vec<_>>())
                .filter(|&w| w < first_open && previous.is_none_or(|p| w >= p))
                .collect();
            if !ending.is_empty() {
                // The epoch's rows are in the windows ending now: they go
                // out (or into the slices) before the watermark.
                self.flush(out)?;
                if self.spec.emit_on_close {
                    for &start in &ending {
                        self.emit_window(start, out)?;
                    }
                }
            }
            for slice in self.slices.advance(first_open) {
                self.states.take_prefix(&time_key(slice));
            }
        }
        let start = if wm.value == END_OF_TIME {
            END_OF_TIME
        } else {
            wm.value.saturating_sub(self.spec.size)
        };
        Ok(self
            .spec
            .keys
            .iter()
            .enumerate()
            .filter_map(|(column, k)| match k {
                SessionKey::WindowStart => Some(Watermark {
                    column,
                    value: start,
                }),
                SessionKey::WindowEnd => Some(Watermark {
                    column,
                    value: wm.value,
                }),
                SessionKey::Partition(_) => None,
            })
            .collect())
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
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, TimeUnit};
    use datafusion::functions_aggregate::{count::count_udaf, sum::sum_udaf};

    use std::collections::BTreeMap;

    use super::*;
    use crate::test_util::{
        agg_call, applied_pretty, applied_rows as emitted, key_value_time_chunk as chunk,
        key_value_time_schema, random_steps, restores_over_random_streams, run_in_store, Lcg, Step,
    };

    const SLIDE: i64 = 2;
    const SIZE: i64 = 6;
    const DELAY: i64 = 10;

    fn hop_agg(emit_on_close: bool) -> HopAgg {
        hop_agg_with(emit_on_close, Arc::new(JobMetrics::default()))
    }

    fn hop_agg_in(emit_on_close: bool, budget: usize, m: Arc<JobMetrics>) -> Box<dyn Operator> {
        Box::new(hop_agg_with(emit_on_close, m).with_cache_budget(CacheBudget::new(budget)))
    }

    fn hop_agg_with(emit_on_close: bool, metrics: Arc<JobMetrics>) -> HopAgg {
        let input = key_value_time_schema();
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let schema = Arc::new(Schema::new(vec![
            Field::new("window_start", ts.clone(), true),
            Field::new("k", DataType::Int64, true),
            Field::new("window_end", ts, true),
            Field::new("n", DataType::Int64, false),
            Field::new("total", DataType::Int64, true),
        ]));
        HopAgg::new(
            HopAggSpec {
                partition: vec![0],
                time: 2,
                slide: SLIDE,
                size: SIZE,
                offset: 1,
                aggs: vec![
                    agg_call(count_udaf(), 1, &input, "n"),
                    agg_call(sum_udaf(), 1, &input, "total"),
                ],
                keys: vec![
                    SessionKey::WindowStart,
                    SessionKey::Partition(0),
                    SessionKey::WindowEnd,
                ],
                emit_on_close,
                schema,
            },
            metrics,
        )
        .unwrap()
    }

    /// Every window of every row, by brute force: (start, key, end, count, sum).
    fn expected(rows: &[(i64, i64, i64)]) -> Vec<(i64, i64, i64, i64, i64)> {
        let mut windows: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
        for &(k, v, t) in rows {
            let mut start = (t - 1).div_euclid(SLIDE) * SLIDE + 1;
            while start + SIZE > t {
                let w = windows.entry((start, k)).or_default();
                w.0 += 1;
                w.1 += v;
                start -= SLIDE;
            }
        }
        windows
            .into_iter()
            .map(|((s, k), (n, total))| (s, k, s + SIZE, n, total))
            .collect()
    }

    #[test]
    fn windows_equal_brute_force_for_any_arrival_order() {
        for (seed, emit_on_close) in (0..40u64).flat_map(|s| [(s, true), (s, false)]) {
            let mut lcg = Lcg::new(seed);
            let mut next = |m: u64| lcg.next(m);
            // Times rise with disorder below DELAY, so no row is late.
            let rows: Vec<(i64, i64, i64)> = (0..80)
                .map(|i| {
                    let t = i + next(DELAY as u64) as i64 - 20;
                    (next(3) as i64, next(100) as i64, t)
                })
                .collect();
            let mut agg = hop_agg(emit_on_close);
            let mut out = Vec::new();
            let mut i = 0;
            let mut newest = i64::MIN;
            while i < rows.len() {
                let end = (i + 1 + next(7) as usize).min(rows.len());
                agg.on_chunk(chunk(&rows[i..end]), &mut out).unwrap();
                newest = rows[i..end].iter().map(|r| r.2).fold(newest, i64::max);
                i = end;
                let wm = Watermark {
                    column: 2,
                    value: newest - DELAY,
                };
                agg.on_watermark(wm, &mut out).unwrap();
                if next(3) == 0 {
                    agg.on_checkpoint(0, &mut WriteBatch::default(), &mut out)
                        .unwrap();
                }
            }
            agg.on_checkpoint(0, &mut WriteBatch::default(), &mut out)
                .unwrap();
            let wm = Watermark {
                column: 2,
                value: END_OF_TIME,
            };
            agg.on_watermark(wm, &mut out).unwrap();
            assert_eq!(
                emitted(&out),
                expected(&rows),
                "seed {seed} {emit_on_close}"
            );
            assert_eq!(agg.slices.open_in(i64::MIN..i64::MAX).count(), 0);
            assert_eq!(agg.states.resident(&[]).len(), 0, "all purged");
            if emit_on_close {
                assert!(out.iter().all(|c| c.ops().is_none()), "only inserts");
            }
        }
    }

    #[test]
    fn rows_of_final_windows_are_late() {
        let mut agg = hop_agg(true);
        let mut out = Vec::new();
        let wm = Watermark {
            column: 2,
            value: 13,
        };
        agg.on_watermark(wm, &mut out).unwrap();
        // 12's newest window [11, 17) is open; 10's newest, [9, 15), too;
        // 8's newest, [7, 13), is final.
        agg.on_chunk(chunk(&[(1, 5, 12), (1, 6, 10), (1, 7, 8)]), &mut out)
            .unwrap();
        assert_eq!(agg.metrics.stats().late_rows, 1);
        agg.on_watermark(
            Watermark {
                column: 2,
                value: END_OF_TIME,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(
            emitted(&out),
            vec![(9, 1, 15, 2, 11), (11, 1, 17, 1, 5)],
            "[7, 13) was final before its rows came"
        );
    }

    #[test]
    fn a_restored_operator_continues_as_if_never_stopped() {
        for budget in [usize::MAX, 0] {
            restores_over_random_streams(|emit_on_close, m| hop_agg_in(emit_on_close, budget, m));
        }
    }

    /// With no memory for groups, every slice's groups leave memory once
    /// their checkpoint commits, and are read back by rows, by the windows
    /// a change reaches and by closing windows: the rows are the same.
    #[test]
    fn slices_evicted_to_the_store_are_read_back() {
        let mut read_back = 0;
        for seed in 0..30u64 {
            let steps = random_steps(seed, 80, 6, 8);
            for emit_on_close in [true, false] {
                let run = |budget| {
                    let m = Arc::new(JobMetrics::default());
                    let (out, read) =
                        run_in_store(hop_agg_in(emit_on_close, budget, Arc::clone(&m)), &steps);
                    (applied_pretty(&out), m.stats().late_rows, read)
                };
                let (expected, late, none_read) = run(usize::MAX);
                assert_eq!(none_read, 0);
                let (got, got_late, read) = run(0);
                assert_eq!(got, expected, "seed {seed}, emit on close {emit_on_close}");
                assert_eq!(got_late, late, "seed {seed}");
                read_back += read;
            }
        }
        assert!(read_back > 200, "only {read_back} groups were read back");
    }

    /// A closing window whose slices' groups are partly in memory, partly
    /// only in the store, and both (a stale stored copy) merges them in key
    /// order: each group once, with its newest state.
    #[test]
    fn a_closing_window_merges_memory_and_store_in_key_order() {
        let first = [(1, 1, 1), (2, 2, 1), (3, 3, 3), (5, 5, 5)];
        // After the first is evicted: some groups come back changed, one new.
        let then = [(2, 10, 2), (4, 4, 4), (5, 50, 6)];
        let steps = vec![
            Step::Chunk(chunk(&first)),
            Step::Checkpoint,
            Step::Checkpoint,
            Step::Chunk(chunk(&then)),
            Step::Watermark(Watermark {
                column: 2,
                value: END_OF_TIME,
            }),
        ];
        let m = Arc::new(JobMetrics::default());
        let (out, read) = run_in_store(hop_agg_in(true, 0, Arc::clone(&m)), &steps);
        assert!(read >= first.len(), "read back {read}");
        let rows: Vec<(i64, i64, i64)> = first.iter().chain(&then).copied().collect();
        assert_eq!(emitted(&out), expected(&rows));
    }
}
