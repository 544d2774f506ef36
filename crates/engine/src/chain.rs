//! A fused chain of operators: what an actor runs between its input and its
//! outputs. Shared by the actors that merge channels and those that read sources.

use tidemark_state::WriteBatch;
use tidemark_types::{Barrier, Message, StreamChunk, Watermark};

use crate::operator::SnapshotSource;
use crate::outputs::{Outputs, Shared};
use crate::{Operator, Result};

pub struct Chain {
    operators: Vec<Box<dyn Operator>>,
}

impl Chain {
    pub fn new(operators: Vec<Box<dyn Operator>>) -> Self {
        Self { operators }
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
        outputs.send(out).await
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
                outputs.send(out).await?;
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
    pub async fn on_barrier(
        &mut self,
        barrier: Barrier,
        outputs: &mut Outputs,
        shared: &Shared,
    ) -> Result<bool> {
        let mut batch = WriteBatch::default();
        for i in 0..self.operators.len() {
            let mut emitted = Vec::new();
            self.operators[i].on_checkpoint(barrier.epoch, &mut batch, &mut emitted)?;
            let out = self.push_through(i + 1, emitted)?;
            outputs.send(out).await?;
        }
        // Computed here, not inside `pass_barrier`: operators need not be
        // `Sync`, so `self` cannot be borrowed across its awaits.
        let snapshot = if outputs.adds_outputs(&barrier) {
            // The previous epoch commits without this actor: it has acknowledged
            // it, and this one cannot commit before this actor does.
            let committed = barrier.epoch - 1;
            shared.settled(committed).await;
            self.snapshot(&SnapshotSource {
                store: shared.store(),
                committed,
                uncommitted: &batch,
            })?
            .into_iter()
            .map(Message::Chunk)
            .collect()
        } else {
            Vec::new()
        };
        outputs
            .pass_barrier(barrier, batch, shared, || Ok(snapshot))
            .await
    }

    /// What the last operator would have emitted so far (see [`Operator::snapshot`]).
    fn snapshot(&self, from: &SnapshotSource<'_>) -> Result<Vec<StreamChunk>> {
        match self.operators.last() {
            Some(op) => op.snapshot(from),
            None => Ok(Vec::new()),
        }
    }
}
