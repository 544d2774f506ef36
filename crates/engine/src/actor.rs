//! One running instance of a fragment: merged input, a fused operator chain,
//! and outputs, driven by one task.

use std::sync::Arc;

use tidemark_state::WriteBatch;
use tidemark_types::{ActorId, Barrier, Message, StreamChunk, Watermark};

use crate::merge::Merge;
use crate::outputs::{supervise, Outputs, Shared};
use crate::{Operator, Result};

pub struct Actor {
    pub id: ActorId,
    pub merge: Merge,
    pub chain: Vec<Box<dyn Operator>>,
    pub outputs: Outputs,
    pub shared: Arc<Shared>,
}

/// Feeds `chunks` through `chain[from..]`, returning what the last one emits.
fn push_through(
    chain: &mut [Box<dyn Operator>],
    from: usize,
    mut chunks: Vec<StreamChunk>,
) -> Result<Vec<StreamChunk>> {
    for op in chain.iter_mut().skip(from) {
        let mut next = Vec::new();
        for chunk in chunks {
            op.on_chunk(chunk, &mut next)?;
        }
        chunks = next;
    }
    Ok(chunks)
}

impl Actor {
    pub fn spawn(mut self, name: String) {
        let span = tracing::info_span!("actor", id = self.id, job = %name);
        let (id, shared) = (self.id, Arc::clone(&self.shared));
        supervise(id, shared, span, async move { self.run_inner().await });
    }

    async fn run_inner(&mut self) -> Result<()> {
        while let Some(msg) = self.merge.next().await {
            match msg {
                Message::Chunk(chunk) => {
                    let out = push_through(&mut self.chain, 0, vec![chunk])?;
                    self.outputs.send(out).await?;
                }
                Message::Watermark(wm) => {
                    if let Some(wm) = self.on_watermark(wm).await? {
                        self.outputs.broadcast(Message::Watermark(wm)).await;
                    }
                }
                Message::Barrier(barrier) => {
                    if self.on_barrier(barrier).await? {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    async fn on_watermark(&mut self, wm: Watermark) -> Result<Option<Watermark>> {
        let mut current = Some(wm);
        for i in 0..self.chain.len() {
            let Some(wm) = current else { break };
            let mut emitted = Vec::new();
            current = self.chain[i].on_watermark(wm, &mut emitted)?;
            let out = push_through(&mut self.chain, i + 1, emitted)?;
            self.outputs.send(out).await?;
        }
        Ok(current)
    }

    /// Returns whether the actor stops at this barrier.
    async fn on_barrier(&mut self, barrier: Barrier) -> Result<bool> {
        let mut batch = WriteBatch::default();
        for i in 0..self.chain.len() {
            let mut emitted = Vec::new();
            self.chain[i].on_checkpoint(barrier.epoch, &mut batch, &mut emitted)?;
            let out = push_through(&mut self.chain, i + 1, emitted)?;
            self.outputs.send(out).await?;
        }
        let chain = &self.chain;
        self.outputs
            .pass_barrier(barrier, batch, &self.shared, || match chain.last() {
                Some(op) => op.snapshot(),
                None => Ok(Vec::new()),
            })
            .await
    }
}
