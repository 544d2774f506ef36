//! The actor that reads a source for one job: it pulls batches from the
//! source's splits in turn, stamps event time (a watermark per split, merged
//! as the minimum), runs the fused chain, and takes barriers from the
//! coordinator between batches, so a checkpoint cuts the input at a batch
//! boundary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidemark_connectors::{ReadOutcome, SplitReader};
use tidemark_plan::EventTime;
use tidemark_types::{ActorId, Barrier, StreamChunk, Watermark};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::chain::Chain;
use crate::durable::{ActorRecord, SourceRecord, SplitRecord};
use crate::event_time::{max_micros, END_OF_TIME};
use crate::metrics::JobMetrics;
use crate::outputs::{supervise, ActorEvent, Outputs, Shared};
use crate::uncommitted::Uncommitted;
use crate::{Error, Result};

/// Rows asked of a split per read.
const BATCH_ROWS: usize = 8192;

/// How long to wait before asking splits that had nothing again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

struct Split {
    reader: Box<dyn SplitReader>,
    /// Latest event time read, µs.
    max_time: Option<i64>,
    last_active: Instant,
    finished: bool,
    skipped: u64,
}

pub struct SourceActor {
    pub id: ActorId,
    pub source: String,
    splits: Vec<Split>,
    event_time: Option<EventTime>,
    idle_timeout: Option<Duration>,
    barriers: UnboundedReceiver<Barrier>,
    chain: Chain,
    outputs: Outputs,
    shared: Arc<Shared>,
    metrics: Arc<JobMetrics>,
    /// Whether the input ends (every split finishes).
    bounded: bool,
    /// FLUSH waits for this reader until it has caught up: read a bounded
    /// input to its end, or everything an unbounded one held when it started
    /// (so a view restored at start is complete again before it is read).
    catching_up: bool,
    /// Caught up; counted at the next barrier, which covers the rows read.
    caught_up: bool,
    watermark: Option<i64>,
    /// Rows read, restored ones included.
    rows_in: u64,
    /// Malformed rows skipped before the splits were (re)opened.
    malformed_before: u64,
    /// Input read that no committed checkpoint holds yet.
    uncommitted: Uncommitted,
    /// Asked the coordinator for a checkpoint since the last barrier.
    asked_for_checkpoint: bool,
}

/// What a source actor is built from.
pub struct SourceActorParts {
    pub id: ActorId,
    pub source: String,
    pub readers: Vec<Box<dyn SplitReader>>,
    pub event_time: Option<EventTime>,
    pub idle_timeout: Option<Duration>,
    pub bounded: bool,
    /// Whether FLUSH waits for it to catch up (see `SourceActor::catching_up`).
    pub catches_up: bool,
    pub barriers: UnboundedReceiver<Barrier>,
    pub chain: Chain,
    pub outputs: Outputs,
    pub shared: Arc<Shared>,
    pub metrics: Arc<JobMetrics>,
    /// Where a restored reader resumes: `readers` were opened at its split
    /// positions, and the rest of its progress comes back from here.
    pub restored: Option<ActorRecord>,
}

impl SourceActor {
    pub fn new(parts: SourceActorParts) -> Self {
        let now = Instant::now();
        if parts.catches_up {
            parts.metrics.reader_started();
        }
        let record = parts.restored.unwrap_or_default();
        let source = record.source.clone().unwrap_or_default();
        let mut outputs = parts.outputs;
        for (&column, &value) in &record.sent {
            outputs.reached(tidemark_types::Watermark { column, value });
        }
        parts.metrics.add_rows_in(record.rows_in as usize);
        parts.metrics.set_malformed_rows(0, source.malformed);
        if let Some(w) = source.watermark {
            parts.metrics.set_watermark(w);
        }
        Self {
            id: parts.id,
            source: parts.source,
            splits: parts
                .readers
                .into_iter()
                .enumerate()
                .map(|(i, reader)| {
                    let split = source.splits.get(i).cloned().unwrap_or_default();
                    Split {
                        reader,
                        max_time: split.max_time,
                        last_active: now,
                        finished: split.finished,
                        skipped: 0,
                    }
                })
                .collect(),
            event_time: parts.event_time,
            idle_timeout: parts.idle_timeout,
            barriers: parts.barriers,
            chain: parts.chain,
            outputs,
            shared: parts.shared,
            metrics: parts.metrics,
            bounded: parts.bounded,
            catching_up: parts.catches_up,
            caught_up: false,
            watermark: source.watermark,
            rows_in: record.rows_in,
            malformed_before: source.malformed,
            uncommitted: Uncommitted::default(),
            asked_for_checkpoint: false,
        }
    }

    pub fn spawn(mut self, job: String) {
        let span = tracing::info_span!("source", id = self.id, source = %self.source, job = %job);
        let (id, shared) = (self.id, Arc::clone(&self.shared));
        supervise(id, shared, span, async move { self.run().await });
    }

    async fn run(&mut self) -> Result<()> {
        // Nothing is read before the barrier that starts the job.
        let Some(first) = self.barriers.recv().await else {
            return Ok(());
        };
        if self.on_barrier(first).await? {
            return Ok(());
        }
        let mut next = 0;
        let mut ended = false;
        loop {
            loop {
                match self.barriers.try_recv() {
                    Ok(b) => {
                        if self.on_barrier(b).await? {
                            return Ok(());
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Ok(()),
                }
            }
            if self.splits.iter().all(|s| s.finished) {
                if !ended {
                    ended = true;
                    self.caught_up = true;
                    self.advance_watermark(END_OF_TIME).await?;
                }
                let Some(b) = self.barriers.recv().await else {
                    return Ok(());
                };
                if self.on_barrier(b).await? {
                    return Ok(());
                }
                continue;
            }
            self.uncommitted
                .committed(self.shared.store().committed_epoch());
            let held = self.shared.sources_held();
            if held || self.uncommitted.too_far_ahead() {
                // Checkpoints lag (or a restart restores views): wait,
                // still passing barriers on.
                if !held && !self.asked_for_checkpoint {
                    self.asked_for_checkpoint = true;
                    self.shared.report(ActorEvent::CheckpointWanted);
                }
                let paused = Instant::now();
                tokio::select! {
                    b = self.barriers.recv() => match b {
                        Some(b) => if self.on_barrier(b).await? { return Ok(()) },
                        None => return Ok(()),
                    },
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                }
                self.paused_for(paused.elapsed());
                continue;
            }
            if !self.read_one(&mut next).await? {
                if !self.bounded {
                    self.caught_up = true;
                }
                self.update_watermark().await?;
                tokio::select! {
                    b = self.barriers.recv() => match b {
                        Some(b) => if self.on_barrier(b).await? { return Ok(()) },
                        None => return Ok(()),
                    },
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                }
            }
        }
    }

    /// A pause to let commits catch up is not idleness: splits count as
    /// active as long after it as they were before.
    fn paused_for(&mut self, pause: Duration) {
        let now = Instant::now();
        for s in &mut self.splits {
            s.last_active = (s.last_active + pause).min(now);
        }
    }

    /// Reads one batch from the next split that has one; returns whether any
    /// split made progress.
    async fn read_one(&mut self, next: &mut usize) -> Result<bool> {
        let n = self.splits.len();
        for k in 0..n {
            let i = (*next + k) % n;
            let split = &mut self.splits[i];
            if split.finished {
                continue;
            }
            let outcome = split
                .reader
                .next_batch(BATCH_ROWS)
                .map_err(|e| Error::Source(format!("source \"{}\": {e}", self.source)))?;
            let skipped = split.reader.skipped_rows();
            self.metrics.set_malformed_rows(split.skipped, skipped);
            split.skipped = skipped;
            match outcome {
                ReadOutcome::Batch(batch) => {
                    *next = i + 1;
                    split.last_active = Instant::now();
                    if let Some(t) = self.event_time {
                        if let Some(m) = max_micros(batch.column(t.column)) {
                            split.max_time = Some(split.max_time.map_or(m, |x| x.max(m)));
                        }
                    }
                    self.metrics.add_rows_in(batch.num_rows());
                    self.rows_in += batch.num_rows() as u64;
                    self.uncommitted.read(batch.get_array_memory_size());
                    self.chain
                        .on_chunk(StreamChunk::inserts(batch), &self.outputs)
                        .await?;
                    self.update_watermark().await?;
                    return Ok(true);
                }
                ReadOutcome::Finished => {
                    split.finished = true;
                    *next = i + 1;
                    return Ok(true);
                }
                ReadOutcome::Pending => {}
            }
        }
        Ok(false)
    }

    /// The minimum over splits still running and not idle of each split's
    /// latest time minus the delay.
    async fn update_watermark(&mut self) -> Result<()> {
        let Some(t) = self.event_time else {
            return Ok(());
        };
        let now = Instant::now();
        let mut min: Option<i64> = None;
        let mut any_active = false;
        for s in &self.splits {
            if s.finished {
                continue;
            }
            let idle = self
                .idle_timeout
                .is_some_and(|d| now.duration_since(s.last_active) >= d);
            if idle {
                continue;
            }
            any_active = true;
            match s.max_time {
                Some(m) => {
                    let w = m.saturating_sub(t.delay_us);
                    min = Some(min.map_or(w, |x| x.min(w)));
                }
                // A split that has read nothing yet holds the watermark back.
                None => return Ok(()),
            }
        }
        match min {
            Some(w) if any_active => self.advance_watermark(w).await,
            _ => Ok(()),
        }
    }

    async fn advance_watermark(&mut self, value: i64) -> Result<()> {
        let Some(t) = self.event_time else {
            return Ok(());
        };
        if self.watermark.is_some_and(|w| w >= value) {
            return Ok(());
        }
        self.watermark = Some(value);
        self.metrics.set_watermark(value);
        let wm = Watermark {
            column: t.column,
            value,
        };
        self.chain.on_watermark(wm, &mut self.outputs).await
    }

    /// Returns whether the actor stops at this barrier.
    async fn on_barrier(&mut self, barrier: Barrier) -> Result<bool> {
        let epoch = barrier.epoch;
        self.uncommitted.barrier(epoch);
        self.asked_for_checkpoint = false;
        let source = SourceRecord {
            watermark: self.watermark,
            malformed: self.malformed_before + self.splits.iter().map(|s| s.skipped).sum::<u64>(),
            splits: self
                .splits
                .iter()
                .map(|s| SplitRecord {
                    position: s.reader.position(),
                    max_time: s.max_time,
                    finished: s.finished,
                })
                .collect(),
        };
        let rows_in = self.rows_in;
        let record = |outputs: &Outputs| ActorRecord {
            rows_in,
            sent: outputs.watermarks().clone(),
            source: Some(source),
            ..ActorRecord::default()
        };
        let stop = self
            .chain
            .on_barrier(barrier, &mut self.outputs, &self.shared, record)
            .await?;
        if self.catching_up && self.caught_up {
            self.catching_up = false;
            self.metrics.reader_finished(epoch);
        }
        Ok(stop)
    }
}
