use std::sync::Arc;

use tidemark_state::{StateStore, WriteBatch};
use tidemark_types::{Epoch, StreamChunk, Watermark};

use crate::durable::{Durability, KeyedReader, StateEntries};
use crate::Result;

/// One step of a fused operator chain.
///
/// The runtime calls `on_chunk`, `on_watermark` and `on_checkpoint` in stream
/// order, one at a time, with inputs already aligned: barriers of all inputs meet
/// before `on_checkpoint`, and a watermark arrives only once every input has
/// passed it. An operator never sees channels, tasks or other actors.
///
/// Output goes to `out`, in order; the runtime hands it to the next operator of
/// the chain (or the exchange) after the call returns.
pub trait Operator: Send {
    fn name(&self) -> &'static str;

    /// A batch of changes arrived.
    fn on_chunk(&mut self, chunk: StreamChunk, out: &mut Vec<StreamChunk>) -> Result<()>;

    /// Event time advanced on one input column; returns the watermarks to
    /// forward, on output columns (none to hold it back, several when more
    /// than one output column derives from it).
    fn on_watermark(
        &mut self,
        wm: Watermark,
        _out: &mut Vec<StreamChunk>,
    ) -> Result<Vec<Watermark>> {
        Ok(vec![wm])
    }

    /// The barrier of `epoch` reached this operator: write the state changed since
    /// the previous checkpoint into `batch`, which the coordinator commits once
    /// every actor has acknowledged the epoch.
    fn on_checkpoint(
        &mut self,
        _epoch: Epoch,
        _batch: &mut WriteBatch,
        _out: &mut Vec<StreamChunk>,
    ) -> Result<()> {
        Ok(())
    }

    /// Whether the state this operator keeps survives a restart. The
    /// default is the safe answer for an operator that says nothing: a job
    /// holding it is recomputed.
    fn durability(&self) -> Durability {
        Durability::Recompute(format!("{} does not checkpoint its state", self.name()))
    }

    /// Called after `on_checkpoint` of every epoch: write the state changed
    /// since the previous call into `state`, keys relative to this
    /// operator's own key space (the chain adds its prefix).
    fn checkpoint_state(&mut self, _state: &mut WriteBatch) -> Result<()> {
        Ok(())
    }

    /// Gives the operator its keyed state (see [`KeyedReader`]), before
    /// `restore`; operators that keep none ignore it.
    fn attach_keyed(&mut self, _keyed: Box<dyn KeyedReader>) {}

    /// Called after `checkpoint_state`: write the keyed state changed since
    /// the previous call into `keyed`, keys relative to the operator's own
    /// keyed space. Committed with the epoch, like the rest.
    fn checkpoint_keyed(&mut self, _keyed: &mut WriteBatch) -> Result<()> {
        Ok(())
    }

    /// Loads what `checkpoint_state` wrote, as of the last committed epoch,
    /// before the first chunk: keys relative, in key order.
    fn restore(&mut self, _entries: StateEntries) -> Result<()> {
        Ok(())
    }

    /// The full current contents this operator would have emitted so far, as
    /// inserts, a page at a time: what a newly attached downstream starts
    /// from. Only meaningful for the last operator of a relation's chain.
    /// Called after `on_checkpoint` of the epoch that attaches the downstream.
    fn snapshot(&self, _from: &SnapshotSource<'_>) -> Result<Box<dyn SnapshotPages>> {
        Ok(Box::new(NoPages))
    }
}

/// An operator's snapshot, handed out a page at a time so neither side
/// holds it whole.
pub trait SnapshotPages: Send {
    /// The next rows, as inserts; `None` once all are given.
    fn next_page(&mut self) -> Result<Option<Vec<StreamChunk>>>;
}

/// The snapshot of an operator that emits nothing of its own.
pub(crate) struct NoPages;

impl SnapshotPages for NoPages {
    fn next_page(&mut self) -> Result<Option<Vec<StreamChunk>>> {
        Ok(None)
    }
}

/// Where a snapshot is read from, for operators that keep their contents in
/// the store rather than in memory.
pub struct SnapshotSource<'a> {
    pub store: Arc<dyn StateStore>,
    /// The epoch before the attaching one, committed when the snapshot is
    /// taken; no later one commits before the snapshot is all read, since
    /// the attaching epoch waits for this actor.
    pub committed: Epoch,
    /// The changes this actor hands in for the attaching epoch.
    pub uncommitted: &'a WriteBatch,
}
