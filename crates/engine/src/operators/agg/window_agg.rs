//! Windowed `GROUP BY` over append-only input, vectorized: one grouped
//! state per window, updated a batch at a time and closed by the watermark.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, UInt32Array};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;
use tidemark_plan::{AggCall, WindowKey};
use tidemark_state::WriteBatch;
use tidemark_types::{Epoch, StreamChunk, Watermark};

use super::changes::{changes, columns_to_batch};
use super::grouped::Grouped;
use super::{evaluate_agg_inputs, evaluate_columns, forward_watermark};
use crate::durable::{grouped_bytes, window_of_key, Progress, StateEntries, StoredWindows};
use crate::event_time::micros_array;
use crate::metrics::JobMetrics;
use crate::{Error, Operator, Result};

/// Where rows whose window key is NULL are kept: no watermark closes it.
const NULL_WINDOW: i64 = i64::MAX;

struct Window {
    grouped: Grouped,
    /// The rows last emitted (continuous emission only).
    emitted: Option<RecordBatch>,
    /// Changed since the rows were last emitted.
    dirty: bool,
}

/// Rows of a batch taken apart by window: `None` when all rows are in one.
type Parts = Vec<(i64, Option<UInt32Array>)>;

/// Rows by window (`times` holds each row's), with the number of late rows
/// left out: those of windows before `first_open`, and those without a
/// window unless `keep_nulls` (which puts them in [`NULL_WINDOW`]).
pub(super) fn split_by_window(
    times: &arrow::array::Int64Array,
    first_open: Option<i64>,
    keep_nulls: bool,
) -> (Parts, usize) {
    let window = |r: usize| {
        if times.is_null(r) {
            keep_nulls.then_some(NULL_WINDOW)
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
    if first.is_some() && (1..n).all(|r| window(r) == first) {
        return (vec![(first.unwrap_or(NULL_WINDOW), None)], 0);
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

/// The windowed form of [`super::HashAgg`] for input that only inserts: the
/// same results, computed by DataFusion's vectorized group accumulators.
/// Continuous emission sends each window's changed rows at every barrier
/// rather than after every chunk.
pub struct WindowAgg {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggs: Vec<AggCall>,
    args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    schema: SchemaRef,
    key_schema: SchemaRef,
    window: WindowKey,
    /// (input column, output column): watermarks passed on.
    watermark_map: Vec<(usize, usize)>,
    metrics: Arc<JobMetrics>,
    /// The watermark windows close by, and the late rows dropped,
    /// restored ones included.
    progress: Progress,
    windows: BTreeMap<i64, Window>,
    stored: StoredWindows,
}

impl WindowAgg {
    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        aggs: Vec<AggCall>,
        schema: SchemaRef,
        window: WindowKey,
        watermark_map: Vec<(usize, usize)>,
        metrics: Arc<JobMetrics>,
    ) -> Self {
        let key_schema = Arc::new(Schema::new(schema.fields()[..group_exprs.len()].to_vec()));
        Self {
            args: aggs.iter().map(|a| a.expr.expressions()).collect(),
            group_exprs,
            aggs,
            schema,
            key_schema,
            window,
            watermark_map,
            metrics,
            progress: Progress::default(),
            windows: BTreeMap::new(),
            stored: StoredWindows::default(),
        }
    }

    /// Emits the changes of a window's rows since it last emitted.
    fn emit_changes(&self, window: &mut Window, out: &mut Vec<StreamChunk>) -> Result<()> {
        if !window.dirty {
            return Ok(());
        }
        let state = window.grouped.state()?;
        let rows = columns_to_batch(&self.schema, window.grouped.evaluate(&state)?)?;
        if let Some(chunk) = changes(self.group_exprs.len(), window.emitted.as_ref(), &rows)? {
            out.push(chunk);
        }
        window.emitted = Some(rows);
        window.dirty = false;
        Ok(())
    }

    /// Closes the windows below `watermark`: emitted once now when the view
    /// emits on close, else their last changes flushed; then purged.
    fn close_windows(&mut self, watermark: i64, out: &mut Vec<StreamChunk>) -> Result<()> {
        let open = self.windows.split_off(&watermark);
        let closed = std::mem::replace(&mut self.windows, open);
        for (start, mut window) in closed {
            self.stored.closed(start);
            if self.window.emit_on_close {
                let rows = columns_to_batch(&self.schema, window.grouped.finish()?)?;
                if rows.num_rows() > 0 {
                    out.push(StreamChunk::inserts(rows));
                }
            } else {
                self.emit_changes(&mut window, out)?;
            }
        }
        Ok(())
    }
}

impl Operator for WindowAgg {
    fn name(&self) -> &'static str {
        "WindowAgg"
    }

    fn durability(&self) -> crate::Durability {
        crate::Durability::Checkpointed
    }

    fn checkpoint_state(&mut self, state: &mut WriteBatch) -> Result<()> {
        self.progress.put(state);
        let windows = &mut self.windows;
        self.stored
            .write(state, |start| match windows.get_mut(&start) {
                Some(window) => Ok(Some(grouped_bytes::encode(&window.grouped.state()?)?)),
                None => Ok(None),
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
                Grouped::restored(Arc::clone(&self.key_schema), &self.aggs, &value)?;
            // What continuous emission last sent: every change was sent at
            // the checkpoint that stored this state.
            let emitted = if self.window.emit_on_close {
                None
            } else {
                Some(columns_to_batch(&self.schema, grouped.evaluate(&state)?)?)
            };
            self.windows.insert(
                start,
                Window {
                    grouped,
                    emitted,
                    dirty: false,
                },
            );
            self.stored.restored(start);
        }
        Ok(())
    }

    fn on_chunk(&mut self, chunk: StreamChunk, _out: &mut Vec<StreamChunk>) -> Result<()> {
        if chunk.has_deletes() {
            return Err(Error::Internal(
                "a windowed aggregate over append-only input received a delete".into(),
            ));
        }
        let batch = chunk.batch();
        let n = batch.num_rows();
        let keys = evaluate_columns(&self.group_exprs, batch)?;
        let times = micros_array(keys[self.window.key].as_ref())
            .ok_or_else(|| Error::Internal("a window key that is not a timestamp".into()))?;
        let (parts, late) = split_by_window(&times, self.progress.watermark, true);
        if late > 0 {
            self.metrics.add_late_rows(late);
            self.progress.late += late as u64;
        }
        if parts.is_empty() {
            return Ok(());
        }
        let (args, filters) = evaluate_agg_inputs(&self.args, &self.aggs, batch)?;
        for (start, rows) in parts {
            self.stored.changed(start);
            let window = match self.windows.entry(start) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(Window {
                    grouped: Grouped::new(Arc::clone(&self.key_schema), &self.aggs)?,
                    emitted: None,
                    dirty: false,
                }),
            };
            window
                .grouped
                .update_rows(&keys, &args, &filters, rows.as_ref(), n)?;
            window.dirty = true;
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        wm: Watermark,
        out: &mut Vec<StreamChunk>,
    ) -> Result<Vec<Watermark>> {
        if self.window.input_column == wm.column
            && self.progress.watermark.is_none_or(|w| wm.value > w)
        {
            self.progress.watermark = Some(wm.value);
            self.close_windows(wm.value, out)?;
        }
        Ok(forward_watermark(&self.watermark_map, wm))
    }

    fn on_checkpoint(
        &mut self,
        _epoch: Epoch,
        _batch: &mut WriteBatch,
        out: &mut Vec<StreamChunk>,
    ) -> Result<()> {
        if self.window.emit_on_close {
            return Ok(());
        }
        let mut windows = std::mem::take(&mut self.windows);
        for window in windows.values_mut() {
            self.emit_changes(window, out)?;
        }
        self.windows = windows;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field, TimeUnit};
    use datafusion::functions_aggregate::{count::count_udaf, min_max::min_udaf};
    use datafusion::physical_expr::expressions::Column;

    use super::*;
    use crate::test_util::{agg_call, key_value_time_schema, restores_over_random_streams};

    /// count and min per (k, ts): each distinct time is a window of its own.
    fn window_agg(emit_on_close: bool, metrics: Arc<JobMetrics>) -> WindowAgg {
        let input = key_value_time_schema();
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("n", DataType::Int64, false),
            Field::new("low", DataType::Int64, true),
        ]));
        WindowAgg::new(
            vec![
                Arc::new(Column::new("k", 0)),
                Arc::new(Column::new("ts", 2)),
            ],
            vec![
                agg_call(count_udaf(), 1, &input, "n"),
                agg_call(min_udaf(), 1, &input, "low"),
            ],
            schema,
            WindowKey {
                key: 1,
                input_column: 2,
                emit_on_close,
            },
            vec![(2, 1)],
            metrics,
        )
    }

    #[test]
    fn a_restored_operator_continues_as_if_never_stopped() {
        restores_over_random_streams(|emit_on_close, m| Box::new(window_agg(emit_on_close, m)));
    }
}
