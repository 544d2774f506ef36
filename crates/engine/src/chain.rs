//! A fused chain of operators: what an actor runs between its input and its
//! outputs. Shared by the actors that merge channels and those that read sources.

use std::collections::BTreeMap;

use std::sync::Arc;
use tidemark_plan::{FragmentId, RelationId};

use tidemark_state::{StateStore, WriteBatch};
use tidemark_types::{Barrier, StreamChunk, Watermark};

use crate::durable::{
    keyed_prefix, operator_prefix, ActorRecord, StateEntries, StoreKeyed, ACTOR_RECORD,
};
use crate::operator::{NoPages, SnapshotCursor, SnapshotPages, SnapshotSource};
use crate::outputs::{Outputs, Shared};
use crate::write_order::sort_tail;
use crate::{Error, Operator, Result};

/// Where a chain's operators keep their state: one actor of one fragment of a job.
#[derive(Debug, Clone, Copy)]
pub struct ChainPlace {
    pub job: RelationId,
    pub fragment: FragmentId,
    pub partition: u16,
}

impl ChainPlace {
    fn prefix(&self, operator: u16) -> Vec<u8> {
        operator_prefix(self.job, self.fragment, operator, self.partition)
    }

    fn keyed_prefix(&self, operator: u16) -> Vec<u8> {
        keyed_prefix(self.job, self.fragment, operator, self.partition)
    }
}

pub struct Chain {
    operators: Vec<Box<dyn Operator>>,
    /// `None` in tests: state is not written.
    place: Option<ChainPlace>,
}

/// The committed entries under `prefix`, with the prefix cut off.
fn entries_under(all: &BTreeMap<Vec<u8>, Vec<u8>>, prefix: &[u8]) -> StateEntries {
    all.range(prefix.to_vec()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k[prefix.len()..].to_vec(), v.clone()))
        .collect()
}

impl Chain {
    pub fn new(operators: Vec<Box<dyn Operator>>) -> Self {
        Self {
            operators,
            place: None,
        }
    }

    /// Makes the chain write its operators' state (and its actor's record)
    /// at every checkpoint, under `place` in `store`, where operators read
    /// their keyed state back from.
    pub fn at(mut self, place: ChainPlace, store: Arc<dyn StateStore>) -> Self {
        for (i, op) in self.operators.iter_mut().enumerate() {
            let prefix = place.keyed_prefix(i as u16);
            op.attach_keyed(Box::new(StoreKeyed::new(Arc::clone(&store), prefix)));
        }
        self.place = Some(place);
        self
    }

    /// Loads every operator's state from `all` (the job's committed state
    /// entries); returns the actor's record, if one was stored.
    pub fn restore(&mut self, all: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<Option<ActorRecord>> {
        let place = self
            .place
            .ok_or_else(|| Error::Internal("restoring a chain without a place".into()))?;
        for (i, op) in self.operators.iter_mut().enumerate() {
            op.restore(entries_under(all, &place.prefix(i as u16)))?;
        }
        all.get(&place.prefix(ACTOR_RECORD))
            .map(|bytes| ActorRecord::decode(bytes))
            .transpose()
    }

    /// Feeds `chunks` through the operators from `from` on.
    fn push_through(
        &mut self,
        from: usize,
        mut chunks: Vec<StreamChunk>,
    ) -> Result<Vec<StreamChunk>> {
        for op in self.operators.iter_mut().skip(from) {
            let mut next = Vec::new();
            for chunk in chunks {
                op.on_chunk(chunk, &mut next)?;
            }
            chunks = next;
        }
        Ok(chunks)
    }

    pub async fn on_chunk(&mut self, chunk: StreamChunk, outputs: &Outputs) -> Result<()> {
        let out = self.push_through(0, vec![chunk])?;
        self.send(out, outputs).await
    }

    /// Sends what the last operator emitted; downstreams still receiving its
    /// snapshot get changes by the keys it gives them.
    fn send<'o>(
        &self,
        chunks: Vec<StreamChunk>,
        outputs: &'o Outputs,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'o {
        let last = self.operators.last();
        outputs.send(chunks, &mut |chunk| match last {
            Some(op) => op.snapshot_keys(chunk),
            None => Err(Error::Internal("a snapshot of an empty chain".into())),
        })
    }

    /// Passes a watermark down the chain, sending what operators emit on the
    /// way (closed windows) before the watermarks that come out at the end.
    pub async fn on_watermark(&mut self, wm: Watermark, outputs: &mut Outputs) -> Result<()> {
        let mut current = vec![wm];
        for i in 0..self.operators.len() {
            let mut next = Vec::new();
            for wm in current {
                let mut emitted = Vec::new();
                next.extend(self.operators[i].on_watermark(wm, &mut emitted)?);
                let out = self.push_through(i + 1, emitted)?;
                self.send(out, outputs).await?;
            }
            current = next;
        }
        for wm in current {
            outputs.send_watermark(wm).await;
        }
        Ok(())
    }

    /// A barrier reached the chain: every operator emits what the checkpoint
    /// releases and hands its state changes, then the barrier protocol runs
    /// (see [`Outputs::pass_barrier`]). Returns whether the actor stops here.
    /// `record` is the actor's own record for this checkpoint.
    pub async fn on_barrier(
        &mut self,
        barrier: Barrier,
        outputs: &mut Outputs,
        shared: &Shared,
        record: impl FnOnce(&Outputs) -> ActorRecord,
    ) -> Result<bool> {
        // Each operator's writes are sorted apart, in this actor's thread: the
        // commit inserts them as sorted runs (see `write_order`).
        let mut batch = WriteBatch::default();
        for i in 0..self.operators.len() {
            let mut emitted = Vec::new();
            let start = batch.writes.len();
            self.operators[i].on_checkpoint(barrier.epoch, &mut batch, &mut emitted)?;
            sort_tail(&mut batch.writes, start);
            let out = self.push_through(i + 1, emitted)?;
            self.send(out, outputs).await?;
        }
        if let Some(place) = self.place {
            for (i, op) in self.operators.iter_mut().enumerate() {
                let mut state = WriteBatch::default();
                op.checkpoint_state(&mut state)?;
                prefix_writes(&place.prefix(i as u16), state, &mut batch);
                let mut keyed = WriteBatch::default();
                op.checkpoint_keyed(&mut keyed)?;
                prefix_writes(&place.keyed_prefix(i as u16), keyed, &mut batch);
            }
            batch.put(place.prefix(ACTOR_RECORD), record(outputs).encode());
        }
        // Read here, not inside `pass_barrier`: operators need not be
        // `Sync`, so `self` cannot be borrowed across its awaits.
        let pages = match outputs.backfill_cursor(&barrier) {
            Some(cursor) => {
                // The previous epoch commits without this actor: it has
                // acknowledged it, and this one cannot commit before this
                // actor does.
                let committed = barrier.epoch - 1;
                shared.settled(committed).await;
                let from = SnapshotSource {
                    store: shared.store_handle(),
                    committed,
                    uncommitted: &batch,
                };
                Some(self.snapshot(&from, cursor)?)
            }
            None => None,
        };
        outputs.pass_barrier(barrier, batch, shared, pages).await
    }

    /// What the last operator would have emitted so far (see [`Operator::snapshot`]).
    fn snapshot(
        &self,
        from: &SnapshotSource<'_>,
        cursor: SnapshotCursor,
    ) -> Result<Box<dyn SnapshotPages>> {
        match self.operators.last() {
            Some(op) => op.snapshot(from, cursor),
            None => Ok(Box::new(NoPages)),
        }
    }
}

/// Moves `state`'s writes (keys relative to `prefix`) into `batch`, sorted.
fn prefix_writes(prefix: &[u8], state: WriteBatch, batch: &mut WriteBatch) {
    let start = batch.writes.len();
    let full = |key: Vec<u8>| {
        let mut k = Vec::with_capacity(prefix.len() + key.len());
        k.extend_from_slice(prefix);
        k.extend_from_slice(&key);
        k
    };
    for p in state.delete_prefixes {
        batch.delete_prefixes.push(full(p));
    }
    for (key, write) in state.writes {
        batch.writes.push((full(key), write));
    }
    sort_tail(&mut batch.writes, start);
}
