//! The windows of a TUMBLE aggregate whose groups are keyed state
//! ([`super::KeyedAgg`]): which rows are late, which windows are open, and
//! what a checkpoint writes of them. A group's key starts with its window's
//! start, so a window's groups are one key range of the keyed state: read in
//! pages when the window closes, deleted as a range after.

use std::collections::BTreeSet;

use arrow::array::{Array, ArrayRef, Int64Array, UInt32Array};
use tidemark_plan::WindowKey;
use tidemark_state::WriteBatch;

use super::hash_agg::group_key;
use super::keyed_agg::FLUSH_GROUPS;
use crate::durable::{time_key, time_of_key, window_of_key, KeyedReader, Progress, StoredWindows};
use crate::event_time::micros_array;
use crate::metrics::JobMetrics;
use crate::{Error, Result};

/// Calls `each` with the groups the store holds of the window (or slice)
/// starting at `start`, a page of [`FLUSH_GROUPS`] at a time, in key order:
/// (key, stored state), keys as the caches hold them.
pub(super) fn for_each_stored_page(
    keyed: &dyn KeyedReader,
    start: i64,
    mut each: impl FnMut(Vec<(Vec<u8>, Vec<u8>)>) -> Result<()>,
) -> Result<()> {
    let prefix = group_key(&time_key(start));
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = keyed.scan_page(&prefix, after.as_deref(), FLUSH_GROUPS)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = Some(last.clone());
        // Stored keys are `group_key`s: a tag byte, then the group's key.
        each(
            page.into_iter()
                .map(|(k, v)| (k[1..].to_vec(), v))
                .collect(),
        )?;
    }
}

/// Where rows whose window key is NULL are kept: no watermark closes it.
const NULL_WINDOW: i64 = i64::MAX;

/// The window of row `r`: its start, or [`NULL_WINDOW`].
fn start_at(starts: &Int64Array, r: usize) -> i64 {
    if starts.is_null(r) {
        NULL_WINDOW
    } else {
        starts.value(r)
    }
}

pub(super) struct KeyedWindows {
    pub window: WindowKey,
    /// The watermark windows close by, and the late rows dropped,
    /// restored ones included.
    progress: Progress,
    /// Windows that have groups, by start.
    open: BTreeSet<i64>,
    /// Which of them the operator's restored state lists.
    stored: StoredWindows,
    /// Closed since the last checkpoint: their groups' states go.
    closed: Vec<i64>,
    /// Windows the store may hold groups of (a checkpoint wrote some, or
    /// they were restored): only their key ranges need deleting.
    written: BTreeSet<i64>,
    /// Whether rows without a window are late (else kept in a window no
    /// watermark closes).
    nulls_late: bool,
}

impl KeyedWindows {
    pub fn new(window: WindowKey) -> Self {
        Self {
            window,
            progress: Progress::default(),
            open: BTreeSet::new(),
            stored: StoredWindows::default(),
            closed: Vec::new(),
            written: BTreeSet::new(),
            nulls_late: false,
        }
    }

    /// The slices of HOP windows: the rows of a slice whose newest window
    /// is final are late, so its "watermark" is the first slice still open;
    /// a row without a time is in no window, and late.
    pub fn for_slices(window: WindowKey) -> Self {
        Self {
            nulls_late: true,
            ..Self::new(window)
        }
    }

    /// The watermark windows closed by.
    pub fn watermark(&self) -> Option<i64> {
        self.progress.watermark
    }

    /// The open windows with groups, whose starts are in `range`, oldest first.
    pub fn open_in(&self, range: std::ops::Range<i64>) -> impl Iterator<Item = i64> + '_ {
        self.open.range(range).copied()
    }

    fn starts(&self, keys: &[ArrayRef]) -> Result<Int64Array> {
        micros_array(keys[self.window.key].as_ref())
            .ok_or_else(|| Error::Internal("a window key that is not a timestamp".into()))
    }

    /// The rows of a batch (its key columns) to aggregate: all (`None`), or
    /// those whose window is still open, the others counted as late. Rows
    /// without a window are kept: no watermark closes theirs.
    pub fn admit(
        &mut self,
        keys: &[ArrayRef],
        metrics: &JobMetrics,
    ) -> Result<Option<UInt32Array>> {
        let starts = self.starts(keys)?;
        let first_open = self.progress.watermark;
        let mut kept = Vec::with_capacity(starts.len());
        let mut last = None;
        for r in 0..starts.len() {
            let start = start_at(&starts, r);
            if first_open.is_some_and(|w| start < w) || (self.nulls_late && starts.is_null(r)) {
                continue;
            }
            if last != Some(start) && self.open.insert(start) {
                self.stored.changed(start);
            }
            last = Some(start);
            kept.push(r as u32);
        }
        let late = starts.len() - kept.len();
        if late == 0 {
            return Ok(None);
        }
        metrics.add_late_rows(late);
        self.progress.late += late as u64;
        Ok(Some(UInt32Array::from(kept)))
    }

    /// The keys of groups (`encoded` from their key columns `keys`), each
    /// after its window's start.
    pub fn window_keys(&self, keys: &[ArrayRef], encoded: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
        let starts = self.starts(keys)?;
        Ok(encoded
            .into_iter()
            .enumerate()
            .map(|(r, key)| [time_key(start_at(&starts, r)).as_slice(), &key].concat())
            .collect())
    }

    /// Takes a watermark on the window column: returns the windows it
    /// closes, oldest first (their groups must be emitted or dropped now).
    pub fn advance(&mut self, watermark: i64) -> Vec<i64> {
        if self.progress.watermark.is_some_and(|w| w >= watermark) {
            return Vec::new();
        }
        self.progress.watermark = Some(watermark);
        let open = self.open.split_off(&watermark);
        let closed: Vec<i64> = std::mem::replace(&mut self.open, open)
            .into_iter()
            .collect();
        for &start in &closed {
            self.stored.closed(start);
            if self.written.remove(&start) {
                self.closed.push(start);
            }
        }
        closed
    }

    /// The keys of closed windows' groups sort before this: the
    /// watermark's window key.
    pub fn closed_prefix(&self) -> Option<[u8; 8]> {
        self.progress.watermark.map(time_key)
    }

    /// The prefix of the keys of the window starting at `start`.
    pub fn prefix(start: i64) -> [u8; 8] {
        time_key(start)
    }

    /// Writes the progress and the open windows.
    pub fn checkpoint_state(&mut self, state: &mut WriteBatch) -> Result<()> {
        self.progress.put(state);
        let open = &self.open;
        self.stored
            .write(state, |start| Ok(open.contains(&start).then(Vec::new)))
    }

    /// Notes that a checkpoint writes the group of `key` (a window's start,
    /// then the group's key).
    pub fn writes(&mut self, key: &[u8]) {
        self.written.insert(time_of_key(key));
    }

    /// Deletes the stored groups of the windows closed since.
    pub fn checkpoint_keyed(&mut self, keyed: &mut WriteBatch) {
        for start in self.closed.drain(..) {
            keyed.delete_prefixes.push(group_key(&time_key(start)));
        }
    }

    /// Reads back one entry of [`Self::checkpoint_state`].
    pub fn restore(&mut self, key: &[u8], value: &[u8], metrics: &JobMetrics) -> Result<()> {
        if key.is_empty() {
            self.progress = Progress::restore(value, Some(metrics))?;
            return Ok(());
        }
        let start = window_of_key(key)?;
        self.open.insert(start);
        self.written.insert(start);
        self.stored.restored(start);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cache_budget::CacheBudget;
    use crate::operators::{HashAgg, KeyedAgg};
    use crate::test_util::{
        applied_pretty, count_min_by_key_and_time, key_value_time_schema, random_steps,
        restores_over_random_streams, run_in_store, stored_after, time_window, Step,
    };
    use crate::Operator;

    fn keyed(emit_on_close: bool, budget: usize, metrics: Arc<JobMetrics>) -> Box<dyn Operator> {
        let (keys, aggs, schema) = count_min_by_key_and_time();
        Box::new(
            KeyedAgg::new(keys, aggs, schema, vec![(2, 1)], metrics)
                .unwrap()
                .with_window(time_window(emit_on_close))
                .with_cache_budget(CacheBudget::new(budget)),
        )
    }

    fn row_at_a_time(emit_on_close: bool, metrics: Arc<JobMetrics>) -> Box<dyn Operator> {
        let (keys, aggs, schema) = count_min_by_key_and_time();
        Box::new(HashAgg::new(keys, aggs, schema, true).unwrap().with_window(
            Some(time_window(emit_on_close)),
            vec![(2, 1)],
            metrics,
        ))
    }

    #[test]
    fn windows_equal_the_row_at_a_time_aggregate() {
        let mut read_back = 0;
        for seed in 0..30u64 {
            // Times of up to 30 of disorder, each a window of its own,
            // mostly open over several checkpoints; a watermark 40 behind:
            // some rows are late.
            let steps = random_steps(seed, 80, 30, 40);
            for emit_on_close in [true, false] {
                let metrics = Arc::new(JobMetrics::default());
                let (expected, _) =
                    run_in_store(row_at_a_time(emit_on_close, Arc::clone(&metrics)), &steps);
                let late = metrics.stats().late_rows;
                for budget in [usize::MAX, 0] {
                    let m = Arc::new(JobMetrics::default());
                    let (got, read) =
                        run_in_store(keyed(emit_on_close, budget, Arc::clone(&m)), &steps);
                    assert_eq!(
                        applied_pretty(&got),
                        applied_pretty(&expected),
                        "seed {seed}, emit on close {emit_on_close}, budget {budget}"
                    );
                    assert_eq!(m.stats().late_rows, late, "seed {seed}");
                    read_back += read;
                }
            }
        }
        assert!(read_back > 100, "only {read_back} groups were read back");
    }

    #[test]
    fn a_restored_windowed_aggregate_continues_as_if_never_stopped() {
        for budget in [usize::MAX, 0] {
            restores_over_random_streams(|emit_on_close, m| keyed(emit_on_close, budget, m));
        }
    }

    #[test]
    fn closed_windows_leave_nothing_stored() {
        let mut steps = random_steps(7, 40, 2, 4);
        // a NULL time: its window never closes
        let null_time = arrow::record_batch::RecordBatch::try_new(
            key_value_time_schema(),
            vec![
                Arc::new(arrow::array::Int64Array::from(vec![1])),
                Arc::new(arrow::array::Int64Array::from(vec![5])),
                Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![None])),
            ],
        )
        .unwrap();
        steps.insert(
            0,
            Step::Chunk(tidemark_types::StreamChunk::inserts(null_time)),
        );
        for emit_on_close in [true, false] {
            let m = Arc::new(JobMetrics::default());
            let (state, keyed) = stored_after(keyed(emit_on_close, 0, m), &steps);
            // the progress and the NULL window, and the NULL window's group
            assert_eq!(state.len(), 2, "{state:?}");
            assert_eq!(keyed.len(), 1, "{keyed:?}");
        }
    }

    /// A closed window's key range is deleted only when the store may hold
    /// groups of it: a checkpoint wrote some, or it was restored.
    #[test]
    fn only_windows_the_store_may_hold_are_deleted() {
        let mut w = KeyedWindows::new(time_window(true));
        let metrics = JobMetrics::default();
        w.restore(&crate::durable::window_key(5), &[], &metrics)
            .unwrap();
        let keys: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 1])),
            Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![10, 20])),
        ];
        assert!(w.admit(&keys, &metrics).unwrap().is_none());
        w.writes(&[time_key(10).as_slice(), &[7]].concat());
        assert_eq!(w.advance(30), vec![5, 10, 20]);
        let mut batch = WriteBatch::default();
        w.checkpoint_keyed(&mut batch);
        let deleted: Vec<Vec<u8>> = [5, 10].map(|s| group_key(&time_key(s))).to_vec();
        assert_eq!(batch.delete_prefixes, deleted);
    }

    /// No row goes out behind a watermark already passed on, though rows
    /// of open windows wait past watermarks that close nothing.
    #[test]
    fn rows_go_out_before_the_watermarks_they_precede() {
        let mut waited = false;
        // by window, and plain, grouped by the time (so rows before a
        // watermark are not late, and must go out before it)
        let plain = || -> Box<dyn Operator> {
            let (keys, aggs, schema) = count_min_by_key_and_time();
            let metrics = Arc::new(JobMetrics::default());
            Box::new(KeyedAgg::new(keys, aggs, schema, vec![(2, 1)], metrics).unwrap())
        };
        for seed in 0..20u64 {
            let steps = random_steps(seed, 80, 30, 40);
            for emit_on_close in [true, false, false] {
                let mut op = match emit_on_close {
                    true => keyed(true, usize::MAX, Arc::new(JobMetrics::default())),
                    false if seed % 2 == 0 => {
                        keyed(false, usize::MAX, Arc::new(JobMetrics::default()))
                    }
                    false => plain(),
                };
                let mut passed: Option<i64> = None;
                for step in &steps {
                    let mut out = Vec::new();
                    // what goes out with a watermark goes out before it
                    let before = passed;
                    match step {
                        Step::Chunk(c) => op.on_chunk(c.clone(), &mut out).unwrap(),
                        Step::Watermark(w) => {
                            for w in op.on_watermark(*w, &mut out).unwrap() {
                                assert_eq!(w.column, 1);
                                passed = Some(w.value);
                            }
                        }
                        Step::Checkpoint => op
                            .on_checkpoint(1, &mut WriteBatch::default(), &mut out)
                            .unwrap(),
                    }
                    if matches!(step, Step::Watermark(_)) && out.is_empty() && !emit_on_close {
                        waited = true;
                    }
                    for chunk in &out {
                        let times = micros_array(chunk.batch().column(1).as_ref()).unwrap();
                        for r in 0..times.len() {
                            let behind = before.is_some_and(|w| times.value(r) < w);
                            assert!(
                                !behind,
                                "seed {seed}: a row at {} after watermark {before:?}",
                                times.value(r)
                            );
                        }
                    }
                }
            }
        }
        assert!(waited, "every watermark flushed");
    }
}
