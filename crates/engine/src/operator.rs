use std::sync::Arc;

use tidemark_state::{StateStore, WriteBatch};
use tidemark_types::{Epoch, Message, StreamChunk, Watermark};

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
    /// inserts, a page at a time, from `cursor` on: what a newly attached
    /// downstream starts from, sent over as many epochs as it takes. Only
    /// meaningful for the last operator of a relation's chain. Called after
    /// `on_checkpoint` of each epoch that sends part of it.
    fn snapshot(
        &self,
        _from: &SnapshotSource<'_>,
        _cursor: SnapshotCursor,
    ) -> Result<Box<dyn SnapshotPages>> {
        Ok(Box::new(NoPages))
    }

    /// The key each row of `chunk` (this operator's output) has in the order
    /// its snapshot is sent: while a snapshot is part sent, changes to rows
    /// it has passed go to the new downstream, and the others wait for it.
    fn snapshot_keys(&self, _chunk: &StreamChunk) -> Result<SnapshotKeys> {
        Err(crate::Error::Internal(format!(
            "{} sends no snapshot in parts",
            self.name()
        )))
    }
}

/// Where each row of a chunk falls in a snapshot's order.
pub enum SnapshotKeys {
    /// One key per row.
    Rows(Vec<Vec<u8>>),
    /// Every row falls after any key a snapshot has sent (a table's new
    /// arrivals): a part-sent snapshot reaches them itself.
    AfterAll,
}

/// How far a snapshot has been sent to the downstreams it is for.
#[derive(Debug, Default, Clone)]
pub struct SnapshotCursor {
    /// The last key sent (`None`: nothing yet).
    pub after: Option<Vec<u8>>,
    /// Everything is sent.
    pub done: bool,
    /// A table read in arrival order: where its statements' watermarks are.
    pub arrival: crate::table::ArrivalCursor,
}

/// An operator's snapshot, handed out a page at a time so neither side
/// holds it whole.
pub trait SnapshotPages: Send {
    /// The next rows, as inserts (and, for a table read in arrival order,
    /// the watermarks between them); `None` once all are given.
    fn next_page(&mut self) -> Result<Option<Vec<Message>>>;

    /// Where the pages given so far end: the next epoch's pages start there.
    /// Once `next_page` has said `None`, the cursor is `done`.
    fn cursor(&self) -> SnapshotCursor;
}

/// The snapshot of an operator that emits nothing of its own.
pub(crate) struct NoPages;

impl SnapshotPages for NoPages {
    fn next_page(&mut self) -> Result<Option<Vec<Message>>> {
        Ok(None)
    }

    fn cursor(&self) -> SnapshotCursor {
        SnapshotCursor {
            done: true,
            ..SnapshotCursor::default()
        }
    }
}

/// Where a snapshot is read from, for operators that keep their contents in
/// the store rather than in memory.
pub struct SnapshotSource<'a> {
    pub store: Arc<dyn StateStore>,
    /// The epoch before the one whose barrier sends the pages, committed
    /// when they are read; no later one commits before they are all read,
    /// since that epoch waits for this actor.
    pub committed: Epoch,
    /// The changes this actor hands in for the attaching epoch.
    pub uncommitted: &'a WriteBatch,
}
