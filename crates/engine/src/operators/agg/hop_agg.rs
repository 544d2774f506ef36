//! HOP windows aggregated by slices: each row is added once, to the
//! slide-long slice it falls in, and a window's rows are the slices it
//! covers merged — no copy of a row per window.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::physical_expr::PhysicalExpr;
use tidemark_plan::{AggCall, SessionKey};
use tidemark_state::WriteBatch;
use tidemark_types::{Epoch, StreamChunk, Watermark};

use super::changes::{changes, columns_to_batch};
use super::evaluate_agg_inputs;
use super::grouped::{Grouped, GroupedState};
use crate::durable::{grouped_bytes, window_of_key, Progress, StateEntries, StoredWindows};
use crate::event_time::{micros_array, timestamp_array, END_OF_TIME};
use crate::metrics::JobMetrics;
use crate::{Error, Operator, Result};

/// Rows of a batch taken apart by window: `None` when all rows are in one.
type Parts = Vec<(i64, Option<UInt32Array>)>;

/// Rows by window (`times` holds each row's), with the number of late rows
/// left out: those of windows before `first_open`, and those without a
/// window.
fn split_by_window(times: &arrow::array::Int64Array, first_open: Option<i64>) -> (Parts, usize) {
    let window = |r: usize| {
        if times.is_null(r) {
            None
        } else {
            let t = times.value(r);
            first_open.is_none_or(|w| t >= w).then_some(t)
        }
    };
    let n = times.len();
    if n == 0 {
        return (Vec::new(), 0);
    }
    let first = window(0);
    if let Some(w) = first.filter(|_| (1..n).all(|r| window(r) == first)) {
        return (vec![(w, None)], 0);
    }
    let mut order = Vec::new();
    let mut rows: HashMap<i64, Vec<u32>> = HashMap::new();
    let mut late = 0;
    for r in 0..n {
        match window(r) {
            Some(w) => rows
                .entry(w)
                .or_insert_with(|| {
                    order.push(w);
                    Vec::new()
                })
                .push(r as u32),
            None => late += 1,
        }
    }
    let parts = order
        .into_iter()
        .map(|w| (w, rows.remove(&w).map(UInt32Array::from)))
        .collect();
    (parts, late)
}

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

struct Slice {
    grouped: Grouped,
    /// The slice's partial aggregates as of its last change, reused by every
    /// window that covers it.
    state: Option<GroupedState>,
}

/// `GROUP BY` keys, window over `HOP(…, slide, size)`. A window is final
/// once the watermark reaches its end: it is emitted then (when emitting on
/// close); a slice is purged with the last window that covers it. A row
/// whose newest window is final is late.
pub struct HopAgg {
    spec: HopAggSpec,
    args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    partition_schema: SchemaRef,
    time_type: arrow::datatypes::DataType,
    slices: BTreeMap<i64, Slice>,
    /// Continuous emission: rows last emitted per open window, by start…
    emitted: BTreeMap<i64, RecordBatch>,
    /// …and the windows changed since.
    dirty: BTreeSet<i64>,
    /// The watermark windows close by, and the late rows dropped,
    /// restored ones included.
    progress: Progress,
    metrics: Arc<JobMetrics>,
    /// Slices the store holds or the next checkpoint writes.
    stored: StoredWindows,
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
        let partition_schema = Arc::new(Schema::new(
            partition.into_iter().flatten().collect::<Vec<_>>(),
        ));
        let time_type = time_type
            .ok_or_else(|| Error::Internal("HOP aggregate without a window key".into()))?;
        Ok(Self {
            args: spec.aggs.iter().map(|a| a.expr.expressions()).collect(),
            spec,
            partition_schema,
            time_type,
            slices: BTreeMap::new(),
            emitted: BTreeMap::new(),
            dirty: BTreeSet::new(),
            progress: Progress::default(),
            metrics,
            stored: StoredWindows::default(),
        })
    }

    /// The start of the newest window (and of the slice) holding time `t`.
    fn slice_of(&self, t: i64) -> i64 {
        let HopAggSpec { slide, offset, .. } = self.spec;
        t.saturating_sub(offset)
            .div_euclid(slide)
            .saturating_mul(slide)
            .saturating_add(offset)
    }

    fn is_final(&self, window_start: i64) -> bool {
        self.progress
            .watermark
            .is_some_and(|w| window_start.saturating_add(self.spec.size) <= w)
    }

    /// The starts of the windows covering the slice at `slice`, oldest first.
    fn windows_of(&self, slice: i64) -> impl Iterator<Item = i64> + '_ {
        let n = self.spec.size / self.spec.slide;
        (0..n)
            .rev()
            .map(move |k| slice.saturating_sub(k.saturating_mul(self.spec.slide)))
    }

    fn timestamp(&self, micros: i64, rows: usize) -> Result<ArrayRef> {
        let one = timestamp_array(micros, &self.time_type)
            .ok_or_else(|| Error::Internal("HOP over a column that is not a timestamp".into()))?;
        Ok(ScalarValue::try_from_array(&one, 0)?.to_array_of_size(rows)?)
    }

    /// The rows of the window starting at `start`: its slices merged.
    fn window_rows(&mut self, start: i64) -> Result<Option<RecordBatch>> {
        let mut merged = Grouped::new(Arc::clone(&self.partition_schema), &self.spec.aggs)?;
        for (_, slice) in self
            .slices
            .range_mut(start..start.saturating_add(self.spec.size))
        {
            if slice.state.is_none() {
                slice.state = Some(slice.grouped.state()?);
            }
            if let Some(state) = &slice.state {
                merged.merge(state)?;
            }
        }
        let rows = merged.num_groups();
        if rows == 0 {
            return Ok(None);
        }
        let mut values = merged.finish()?;
        let aggregates = values.split_off(self.spec.partition.len());
        let mut columns = Vec::with_capacity(self.spec.schema.fields().len());
        for key in &self.spec.keys {
            columns.push(match key {
                SessionKey::Partition(i) => Arc::clone(&values[*i]),
                SessionKey::WindowStart => self.timestamp(start, rows)?,
                SessionKey::WindowEnd => {
                    self.timestamp(start.saturating_add(self.spec.size), rows)?
                }
            });
        }
        columns.extend(aggregates);
        Ok(Some(columns_to_batch(&self.spec.schema, columns)?))
    }

    /// Emits the changes of the windows changed since the last call.
    fn emit_changes(&mut self, out: &mut Vec<StreamChunk>) -> Result<()> {
        let keys = self.spec.keys.len();
        for start in std::mem::take(&mut self.dirty) {
            let Some(rows) = self.window_rows(start)? else {
                continue;
            };
            if let Some(chunk) = changes(keys, self.emitted.get(&start), &rows)? {
                out.push(chunk);
            }
            self.emitted.insert(start, rows);
        }
        Ok(())
    }

    /// Windows ending at or before `watermark` become final: emitted (on
    /// close) or flushed, then forgotten with the slices no open window covers.
    fn close(&mut self, watermark: i64, out: &mut Vec<StreamChunk>) -> Result<()> {
        let previous = self.progress.watermark.replace(watermark);
        let size = self.spec.size;
        if self.spec.emit_on_close {
            let newly_final: BTreeSet<i64> = self
                .slices
                .keys()
                .flat_map(|&s| self.windows_of(s).collect::<Vec<_>>())
                .filter(|&w| {
                    w.saturating_add(size) <= watermark
                        && previous.is_none_or(|p| w.saturating_add(size) > p)
                })
                .collect();
            for start in newly_final {
                if let Some(rows) = self.window_rows(start)? {
                    out.push(StreamChunk::inserts(rows));
                }
            }
        } else {
            self.emit_changes(out)?;
        }
        // A slice's newest window starts with it.
        let stored = &mut self.stored;
        self.slices.retain(|&s, _| {
            let keep = s.saturating_add(size) > watermark;
            if !keep {
                stored.closed(s);
            }
            keep
        });
        self.emitted
            .retain(|&w, _| w.saturating_add(size) > watermark);
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

    fn checkpoint_state(&mut self, state: &mut WriteBatch) -> Result<()> {
        self.progress.put(state);
        let slices = &mut self.slices;
        self.stored.write(state, |start| {
            let Some(slice) = slices.get_mut(&start) else {
                return Ok(None);
            };
            if slice.state.is_none() {
                slice.state = Some(slice.grouped.state()?);
            }
            slice.state.as_ref().map(grouped_bytes::encode).transpose()
        })
    }

    fn restore(&mut self, entries: StateEntries) -> Result<()> {
        for (key, value) in entries {
            if key.is_empty() {
                self.progress = Progress::restore(&value, Some(&self.metrics))?;
                continue;
            }
            let start = window_of_key(&key)?;
            let (grouped, state) =
                Grouped::restored(Arc::clone(&self.partition_schema), &self.spec.aggs, &value)?;
            self.slices.insert(
                start,
                Slice {
                    grouped,
                    state: Some(state),
                },
            );
            self.stored.restored(start);
        }
        // What continuous emission last sent: every open window's rows, as
        // of the checkpoint that stored these slices.
        if !self.spec.emit_on_close {
            let open: BTreeSet<i64> = self
                .slices
                .keys()
                .flat_map(|&s| self.windows_of(s).collect::<Vec<_>>())
                .filter(|&w| !self.is_final(w))
                .collect();
            for start in open {
                if let Some(rows) = self.window_rows(start)? {
                    self.emitted.insert(start, rows);
                }
            }
        }
        Ok(())
    }

    fn on_chunk(&mut self, chunk: StreamChunk, _out: &mut Vec<StreamChunk>) -> Result<()> {
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
        let slices =
            arrow::array::Int64Array::from_iter(times.iter().map(|t| t.map(|t| self.slice_of(t))));
        let first_open = self
            .progress
            .watermark
            .map(|w| w.saturating_sub(self.spec.size).saturating_add(1));
        let (parts, late) = split_by_window(&slices, first_open);
        if late > 0 {
            self.metrics.add_late_rows(late);
            self.progress.late += late as u64;
        }
        if parts.is_empty() {
            return Ok(());
        }
        let n = batch.num_rows();
        let keys: Vec<ArrayRef> = self
            .spec
            .partition
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        let (args, filters) = evaluate_agg_inputs(&self.args, &self.spec.aggs, batch)?;
        for (start, rows) in parts {
            self.stored.changed(start);
            let slice = match self.slices.entry(start) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(Slice {
                    grouped: Grouped::new(Arc::clone(&self.partition_schema), &self.spec.aggs)?,
                    state: None,
                }),
            };
            slice
                .grouped
                .update_rows(&keys, &args, &filters, rows.as_ref(), n)?;
            slice.state = None;
            if !self.spec.emit_on_close {
                let open: Vec<i64> = self
                    .windows_of(start)
                    .filter(|&w| !self.is_final(w))
                    .collect();
                self.dirty.extend(open);
            }
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
        if self.progress.watermark.is_none_or(|w| wm.value > w) {
            self.close(wm.value, out)?;
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
        _epoch: Epoch,
        _batch: &mut WriteBatch,
        out: &mut Vec<StreamChunk>,
    ) -> Result<()> {
        if !self.spec.emit_on_close {
            self.emit_changes(out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, TimeUnit};
    use datafusion::functions_aggregate::{count::count_udaf, sum::sum_udaf};

    use super::*;
    use crate::test_util::{
        agg_call, applied_rows as emitted, key_value_time_chunk as chunk, key_value_time_schema,
        restores_over_random_streams, Lcg,
    };

    const SLIDE: i64 = 2;
    const SIZE: i64 = 6;
    const DELAY: i64 = 10;

    fn hop_agg(emit_on_close: bool) -> HopAgg {
        hop_agg_with(emit_on_close, Arc::new(JobMetrics::default()))
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
            assert!(
                agg.slices.is_empty() && agg.emitted.is_empty(),
                "all purged"
            );
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
        restores_over_random_streams(|emit_on_close, m| Box::new(hop_agg_with(emit_on_close, m)));
    }
}
