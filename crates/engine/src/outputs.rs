//! The sending side of an actor, with the barrier protocol every actor follows.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

use futures::FutureExt;
use tidemark_state::StateStore;
use tidemark_state::WriteBatch;
use tidemark_types::{ActorId, Barrier, Epoch, Message, Mutation, StreamChunk, Watermark};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use tracing::Instrument;

use crate::backfill::Backfill;
use crate::dispatch::Dispatcher;
use crate::operator::{SnapshotCursor, SnapshotKeys, SnapshotPages};
use crate::{Error, Result};

/// What actors tell the checkpoint coordinator.
#[derive(Debug)]
pub enum ActorEvent {
    /// The actor passed the barrier of `epoch`; `batch` holds its state
    /// changes. `backfilled`: the snapshots it finished sending with this
    /// epoch, by the epoch that started each (see [`Backfill`]).
    Ack {
        actor: ActorId,
        epoch: Epoch,
        batch: WriteBatch,
        backfilled: Vec<Epoch>,
    },
    /// The actor stopped on an error; its job has failed.
    Failed { actor: ActorId, error: Error },
    /// A source reader has read as much as it may ahead of the last commit
    /// and waits: a checkpoint now, rather than at the next interval, lets
    /// what it read since the last barrier commit.
    CheckpointWanted,
}

/// The text a panic was raised with.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Runs an actor's loop as a task on the actor threads. When it ends with an
/// error, or panics (a bug), the coordinator hears of it, so the job fails
/// visibly instead of stalling every later checkpoint.
pub fn supervise(
    actor: ActorId,
    shared: Arc<Shared>,
    span: tracing::Span,
    work: impl Future<Output = Result<()>> + Send + 'static,
) {
    let threads = shared.actor_threads.clone();
    let task = async move {
        let error = match AssertUnwindSafe(work).catch_unwind().await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(panic) => Error::Internal(format!(
                "operator panicked: {}",
                panic_message(panic.as_ref())
            )),
        };
        tracing::warn!(%error, "actor failed");
        shared.report(ActorEvent::Failed { actor, error });
    };
    threads.spawn(task.instrument(span));
}

/// State shared by the runtime and its actors.
pub struct Shared {
    /// Outputs registered for an actor, picked up at the barrier whose
    /// `AddOutputs` mutation names it.
    pending_outputs: Mutex<HashMap<ActorId, Vec<Dispatcher>>>,
    events: UnboundedSender<ActorEvent>,
    store: Arc<dyn StateStore>,
    /// The last epoch whose commit was attempted (committed, or failed).
    settled: watch::Sender<Epoch>,
    /// Where actors run (see `actor_threads`).
    actor_threads: tokio::runtime::Handle,
    /// Rows of a snapshot an actor sends per epoch (see [`Backfill`]).
    backfill_rows: usize,
    /// Whether source readers wait (passing barriers on) instead of
    /// reading: while a restart restores its views one barrier each.
    sources_held: AtomicBool,
}

impl Shared {
    pub fn new(
        events: UnboundedSender<ActorEvent>,
        store: Arc<dyn StateStore>,
        actor_threads: tokio::runtime::Handle,
        backfill_rows: usize,
    ) -> Self {
        let (settled, _) = watch::channel(store.committed_epoch());
        Self {
            pending_outputs: Mutex::new(HashMap::new()),
            events,
            store,
            settled,
            actor_threads,
            backfill_rows: backfill_rows.max(1),
            sources_held: AtomicBool::new(false),
        }
    }

    /// Holds source readers back (or lets them go): each reader waits,
    /// still passing barriers on, so barriers are not queued behind input.
    pub fn hold_sources(&self, held: bool) {
        self.sources_held.store(held, Ordering::Relaxed);
    }

    pub fn sources_held(&self) -> bool {
        self.sources_held.load(Ordering::Relaxed)
    }

    pub fn store(&self) -> &dyn StateStore {
        self.store.as_ref()
    }

    /// The store, for what reads it on its own (an operator's keyed state).
    pub fn store_handle(&self) -> Arc<dyn StateStore> {
        Arc::clone(&self.store)
    }

    /// Called by the coordinator after each commit attempt.
    pub fn settle(&self, epoch: Epoch) {
        self.settled.send_replace(epoch);
    }

    /// Waits until the commit of `epoch` has been attempted; then the store
    /// holds it, unless that commit failed.
    pub async fn settled(&self, epoch: Epoch) {
        let mut rx = self.settled.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|&e| e >= epoch).await;
    }

    pub fn register_output(&self, actor: ActorId, dispatcher: Dispatcher) {
        let mut pending = self
            .pending_outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        pending.entry(actor).or_default().push(dispatcher);
    }

    fn take_outputs(&self, actor: ActorId) -> Vec<Dispatcher> {
        let mut pending = self
            .pending_outputs
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        pending.remove(&actor).unwrap_or_default()
    }

    pub fn report(&self, event: ActorEvent) {
        let _ = self.events.send(event);
    }
}

/// An actor's downstream dispatchers.
pub struct Outputs {
    actor: ActorId,
    dispatchers: Vec<Dispatcher>,
    /// Downstreams still receiving their snapshot, oldest first; only the
    /// first is sent pages, the others wait their turn.
    backfills: Vec<Backfill>,
    /// The last watermark sent per column, which downstreams attached later
    /// receive after their snapshot.
    watermarks: BTreeMap<usize, i64>,
}

impl Outputs {
    pub fn new(actor: ActorId, dispatchers: Vec<Dispatcher>) -> Self {
        Self {
            actor,
            dispatchers,
            backfills: Vec::new(),
            watermarks: BTreeMap::new(),
        }
    }

    /// Records a watermark already reached (a restored table's) without
    /// sending it: new downstreams get it after their snapshot.
    pub fn reached(&mut self, wm: Watermark) {
        self.watermarks.insert(wm.column, wm.value);
    }

    /// Sends a watermark to the downstreams that have their snapshot: the
    /// others would take its rows still to come as late.
    pub async fn send_watermark(&mut self, wm: Watermark) {
        self.watermarks.insert(wm.column, wm.value);
        let msg = Message::Watermark(wm);
        for d in &self.dispatchers {
            d.broadcast(&msg).await;
        }
    }

    /// Sends changes on. Downstreams still receiving a snapshot get the
    /// changes to rows it has passed, by the keys `keys` gives each chunk
    /// (asked only then, before the returned future is first polled).
    pub fn send(
        &self,
        chunks: Vec<StreamChunk>,
        keys: &mut dyn FnMut(&StreamChunk) -> Result<SnapshotKeys>,
    ) -> impl Future<Output = Result<()>> + Send + '_ {
        let passed = self.passed(&chunks, keys);
        async move {
            let passed = passed?;
            for chunk in chunks {
                if chunk.is_empty() {
                    continue;
                }
                for d in &self.dispatchers {
                    d.send_chunk(chunk.clone()).await?;
                }
            }
            for (i, part) in passed {
                for d in &self.backfills[i].dispatchers {
                    d.send_chunk(part.clone()).await?;
                }
            }
            Ok(())
        }
    }

    /// The parts of `chunks` each snapshot being sent has passed, by its
    /// index in `backfills`.
    fn passed(
        &self,
        chunks: &[StreamChunk],
        keys: &mut dyn FnMut(&StreamChunk) -> Result<SnapshotKeys>,
    ) -> Result<Vec<(usize, StreamChunk)>> {
        let mut passed = Vec::new();
        if self.backfills.is_empty() {
            return Ok(passed);
        }
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            let keys = keys(chunk)?;
            for (i, b) in self.backfills.iter().enumerate() {
                if let Some(part) = b.passed(chunk, &keys)? {
                    passed.push((i, part));
                }
            }
        }
        Ok(passed)
    }

    /// Sends a barrier to every downstream, snapshot sent or not.
    async fn broadcast_barrier(&self, barrier: Barrier) {
        let msg = Message::Barrier(barrier);
        let backfilling = self.backfills.iter().flat_map(|b| &b.dispatchers);
        for d in self.dispatchers.iter().chain(backfilling) {
            d.broadcast(&msg).await;
        }
    }

    /// Where the snapshot to send at `barrier` resumes, if one is being sent
    /// (or `barrier` starts one): read it from there, then hand the pages
    /// to [`Self::pass_barrier`].
    pub fn backfill_cursor(&self, barrier: &Barrier) -> Option<SnapshotCursor> {
        match self.backfills.first() {
            Some(b) => Some(b.cursor.clone()),
            None => barrier
                .snapshots_for(self.actor)
                .then(SnapshotCursor::default),
        }
    }

    /// The watermarks last sent, by column: part of a restored actor's state.
    pub fn watermarks(&self) -> &BTreeMap<usize, i64> {
        &self.watermarks
    }

    /// The barrier protocol, after the actor has collected its state changes:
    /// attach new downstreams, send the current snapshot its next pages (up
    /// to the configured rows) from `pages` (read where
    /// [`Self::backfill_cursor`] said), and a snapshot's downstreams their
    /// watermarks once it is all sent; drop stopped downstreams, acknowledge
    /// the epoch, and pass the barrier on. Returns whether the actor itself
    /// stops here.
    pub async fn pass_barrier(
        &mut self,
        barrier: Barrier,
        batch: WriteBatch,
        shared: &Shared,
        pages: Option<Box<dyn SnapshotPages + '_>>,
    ) -> Result<bool> {
        if barrier.adds_outputs_to(self.actor) {
            let added = shared.take_outputs(self.actor);
            if barrier.snapshots_for(self.actor) {
                self.backfills.push(Backfill {
                    started: barrier.epoch,
                    dispatchers: added,
                    cursor: SnapshotCursor::default(),
                });
            } else {
                self.attach(added).await;
            }
        }
        let mut backfilled = Vec::new();
        if !self.backfills.is_empty() {
            let mut pages = pages.ok_or_else(|| {
                Error::Internal("a snapshot is being sent, and no pages were read".into())
            })?;
            let mut rows = 0;
            while rows < shared.backfill_rows {
                let Some(messages) = pages.next_page()? else {
                    break;
                };
                rows += messages
                    .iter()
                    .map(|m| match m {
                        Message::Chunk(c) => c.num_rows(),
                        _ => 0,
                    })
                    .sum::<usize>();
                self.backfills[0].send(messages).await?;
            }
            let cursor = pages.cursor();
            drop(pages);
            if cursor.done {
                let finished = self.backfills.remove(0);
                backfilled.push(finished.started);
                self.attach(finished.dispatchers).await;
            } else {
                self.backfills[0].cursor = cursor;
            }
        }
        shared.report(ActorEvent::Ack {
            actor: self.actor,
            epoch: barrier.epoch,
            batch,
            backfilled,
        });
        if !self.backfills.is_empty() {
            // The rest is sent at the next barriers: sooner than the interval.
            shared.report(ActorEvent::CheckpointWanted);
        }
        let stop = barrier.stops(self.actor);
        let stopped = match &barrier.mutation {
            Some(Mutation::Stop(stopped)) => stopped.clone(),
            _ => Vec::new(),
        };
        // Stopping downstreams still need this barrier: it is what stops them.
        self.broadcast_barrier(barrier).await;
        if !stopped.is_empty() {
            self.dispatchers.retain_mut(|d| d.retain(&stopped));
            for b in &mut self.backfills {
                b.dispatchers.retain_mut(|d| d.retain(&stopped));
            }
            self.backfills.retain(|b| !b.dispatchers.is_empty());
        }
        Ok(stop)
    }

    /// Adds downstreams that have their snapshot (or need none): they get
    /// the current watermarks, then everything sent.
    async fn attach(&mut self, added: Vec<Dispatcher>) {
        for d in &added {
            for (&column, &value) in &self.watermarks {
                d.broadcast(&Message::Watermark(Watermark { column, value }))
                    .await;
            }
        }
        self.dispatchers.extend(added);
    }
}
