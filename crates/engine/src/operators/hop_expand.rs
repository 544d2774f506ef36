use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use tidemark_types::{StreamChunk, Watermark};

use crate::durable::{Progress, StateEntries};
use crate::event_time::{micros_at, timestamp_array, END_OF_TIME};
use crate::metrics::JobMetrics;
use crate::{Error, Operator, Result};

/// HOP windows: every row once for each window that contains it (`size /
/// slide` windows), with `window_start` and `window_end` appended. Windows
/// start every `slide` from the Unix epoch plus `offset`.
///
/// A row is late when even the newest window containing it is closed (the
/// watermark reached its end): it is dropped and counted. Copies for windows
/// already closed are left out, so the aggregate downstream never sees them.
pub struct HopExpand {
    time: usize,
    slide: i64,
    size: i64,
    offset: i64,
    schema: SchemaRef,
    /// The watermark windows close by, and the late rows dropped,
    /// restored ones included.
    progress: Progress,
    metrics: Arc<JobMetrics>,
}

impl HopExpand {
    pub fn new(
        time: usize,
        (slide, size, offset): (i64, i64, i64),
        schema: SchemaRef,
        metrics: Arc<JobMetrics>,
    ) -> Self {
        Self {
            time,
            slide,
            size,
            offset,
            schema,
            progress: Progress::default(),
            metrics,
        }
    }

    /// The start of the last window containing `t`.
    fn last_start(&self, t: i64) -> i64 {
        (t - self.offset).div_euclid(self.slide) * self.slide + self.offset
    }
}

impl Operator for HopExpand {
    fn name(&self) -> &'static str {
        "HopExpand"
    }

    fn durability(&self) -> crate::Durability {
        crate::Durability::Checkpointed
    }

    fn checkpoint_state(&mut self, state: &mut tidemark_state::WriteBatch) -> Result<()> {
        self.progress.put(state);
        Ok(())
    }

    fn restore(&mut self, entries: StateEntries) -> Result<()> {
        for (key, value) in entries {
            if key.is_empty() {
                self.progress = Progress::restore(&value, Some(&self.metrics))?;
            }
        }
        Ok(())
    }

    fn on_chunk(&mut self, chunk: StreamChunk, out: &mut Vec<StreamChunk>) -> Result<()> {
        let batch = chunk.batch();
        let times = batch.column(self.time);
        let copies = (self.size / self.slide) as usize;
        let mut rows = Vec::with_capacity(batch.num_rows() * copies);
        let mut starts = Vec::with_capacity(batch.num_rows() * copies);
        let mut ops = Vec::with_capacity(batch.num_rows() * copies);
        let closed = |start: i64| {
            self.progress
                .watermark
                .is_some_and(|w| start + self.size <= w)
        };
        let mut late = 0;
        for r in 0..batch.num_rows() {
            // A row without a time is in no window.
            let Some(t) = micros_at(times.as_ref(), r) else {
                late += 1;
                continue;
            };
            let last = self.last_start(t);
            if closed(last) {
                late += 1;
                continue;
            }
            for i in 0..copies {
                let start = last - i as i64 * self.slide;
                if closed(start) {
                    break;
                }
                rows.push(r as u32);
                starts.push(start);
                ops.push(chunk.op(r));
            }
        }
        if late > 0 {
            self.metrics.add_late_rows(late);
            self.progress.late += late as u64;
        }
        if rows.is_empty() {
            return Ok(());
        }
        let indices = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<_, _>>()?;
        let time_type = times.data_type();
        for shift in [0, self.size] {
            let values: Vec<ArrayRef> = starts
                .iter()
                .map(|s| {
                    timestamp_array(s + shift, time_type)
                        .ok_or_else(|| Error::Internal("HOP over a non-timestamp column".into()))
                })
                .collect::<Result<_>>()?;
            let refs: Vec<&dyn arrow::array::Array> = values.iter().map(|a| a.as_ref()).collect();
            columns.push(arrow::compute::concat(&refs)?);
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        out.push(StreamChunk::with_ops(batch, ops));
        Ok(())
    }

    fn on_watermark(
        &mut self,
        wm: Watermark,
        _out: &mut Vec<StreamChunk>,
    ) -> Result<Vec<Watermark>> {
        if wm.column != self.time {
            return Ok(vec![wm]);
        }
        self.progress.watermark = Some(
            self.progress
                .watermark
                .map_or(wm.value, |w| w.max(wm.value)),
        );
        let n = self.schema.fields().len();
        let (start, end) = if wm.value == END_OF_TIME {
            (END_OF_TIME, END_OF_TIME)
        } else {
            // Rows at or after the watermark fall in no window starting
            // before the earliest window of the watermark itself.
            let first = self.last_start(wm.value) - self.size + self.slide;
            (first, first + self.size)
        };
        Ok(vec![
            wm,
            Watermark {
                column: n - 2,
                value: start,
            },
            Watermark {
                column: n - 1,
                value: end,
            },
        ])
    }
}
