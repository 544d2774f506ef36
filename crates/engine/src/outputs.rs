//! The sending side of an actor, with the barrier protocol every actor follows.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::Mutex;

use futures::FutureExt;
use tidemark_state::StateStore;
use tidemark_state::WriteBatch;
use tidemark_types::{ActorId, Barrier, Epoch, Message, Mutation, StreamChunk, Watermark};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use tracing::Instrument;

use crate::dispatch::Dispatcher;
use crate::{Error, Result};

/// What actors tell the checkpoint coordinator.
#[derive(Debug)]
pub enum ActorEvent {
    /// The actor passed the barrier of `epoch`; `batch` holds its state changes.
    Ack {
        actor: ActorId,
        epoch: Epoch,
        batch: WriteBatch,
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
}

impl Shared {
    pub fn new(
        events: UnboundedSender<ActorEvent>,
        store: Arc<dyn StateStore>,
        actor_threads: tokio::runtime::Handle,
    ) -> Self {
        let (settled, _) = watch::channel(store.committed_epoch());
        Self {
            pending_outputs: Mutex::new(HashMap::new()),
            events,
            store,
            settled,
            actor_threads,
        }
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
    /// The last watermark sent per column, which downstreams attached later
    /// receive after their snapshot.
    watermarks: BTreeMap<usize, i64>,
}

impl Outputs {
    pub fn new(actor: ActorId, dispatchers: Vec<Dispatcher>) -> Self {
        Self {
            actor,
            dispatchers,
            watermarks: BTreeMap::new(),
        }
    }

    /// Records a watermark already reached (a restored table's) without
    /// sending it: new downstreams get it after their snapshot.
    pub fn reached(&mut self, wm: Watermark) {
        self.watermarks.insert(wm.column, wm.value);
    }

    pub async fn send_watermark(&mut self, wm: Watermark) {
        self.watermarks.insert(wm.column, wm.value);
        self.broadcast(Message::Watermark(wm)).await;
    }

    pub async fn send(&self, chunks: Vec<StreamChunk>) -> Result<()> {
        for chunk in chunks {
            if chunk.is_empty() {
                continue;
            }
            for d in &self.dispatchers {
                d.send_chunk(chunk.clone()).await?;
            }
        }
        Ok(())
    }

    pub async fn broadcast(&self, msg: Message) {
        for d in &self.dispatchers {
            d.broadcast(&msg).await;
        }
    }

    /// Whether `barrier` attaches new downstreams that start from a snapshot.
    pub fn snapshots_for(&self, barrier: &Barrier) -> bool {
        barrier.snapshots_for(self.actor)
    }

    /// The watermarks last sent, by column: part of a restored actor's state.
    pub fn watermarks(&self) -> &BTreeMap<usize, i64> {
        &self.watermarks
    }

    /// The barrier protocol, after the actor has collected its state changes:
    /// attach new downstreams (sending them the pages `snapshot` gives until
    /// `None`, when the barrier asks for one, then the current watermarks),
    /// drop stopped ones, acknowledge the epoch, and pass the barrier on.
    /// Returns whether the actor itself stops here.
    pub async fn pass_barrier(
        &mut self,
        barrier: Barrier,
        batch: WriteBatch,
        shared: &Shared,
        mut snapshot: impl FnMut() -> Result<Option<Vec<Message>>>,
    ) -> Result<bool> {
        if barrier.adds_outputs_to(self.actor) {
            let added = shared.take_outputs(self.actor);
            if barrier.snapshots_for(self.actor) {
                while let Some(messages) = snapshot()? {
                    for d in &added {
                        for message in &messages {
                            match message {
                                Message::Chunk(chunk) => d.send_chunk(chunk.clone()).await?,
                                other => d.broadcast(other).await,
                            }
                        }
                    }
                }
            }
            for d in &added {
                for (&column, &value) in &self.watermarks {
                    d.broadcast(&Message::Watermark(Watermark { column, value }))
                        .await;
                }
            }
            self.dispatchers.extend(added);
        }
        shared.report(ActorEvent::Ack {
            actor: self.actor,
            epoch: barrier.epoch,
            batch,
        });
        let stop = barrier.stops(self.actor);
        let stopped = match &barrier.mutation {
            Some(Mutation::Stop(stopped)) => stopped.clone(),
            _ => Vec::new(),
        };
        // Stopping downstreams still need this barrier: it is what stops them.
        self.broadcast(Message::Barrier(barrier)).await;
        if !stopped.is_empty() {
            self.dispatchers.retain_mut(|d| d.retain(&stopped));
        }
        Ok(stop)
    }
}
