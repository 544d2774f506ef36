//! The receiving side of an actor: merges the channels of all upstream actors,
//! aligns barriers and merges watermarks, so operators see one ordered stream.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::task::Poll;

use tidemark_types::{Barrier, Message, Watermark};
use tokio::sync::mpsc::Receiver;

/// Per watermark column, each input's last watermark.
pub type InputWatermarks = BTreeMap<usize, Vec<Option<i64>>>;

/// Upstream channels of one actor.
pub struct Merge {
    inputs: Vec<Receiver<Message>>,
    /// Inputs that delivered the current barrier and wait for the others.
    blocked: Vec<bool>,
    closed: Vec<bool>,
    barrier: Option<Barrier>,
    watermarks: InputWatermarks,
    /// Per watermark column: the last merged watermark forwarded.
    emitted: BTreeMap<usize, i64>,
    start: usize,
}

impl Merge {
    pub fn new(inputs: Vec<Receiver<Message>>) -> Self {
        let n = inputs.len();
        Self {
            inputs,
            blocked: vec![false; n],
            closed: vec![false; n],
            barrier: None,
            watermarks: BTreeMap::new(),
            emitted: BTreeMap::new(),
            start: 0,
        }
    }

    /// The next message in aligned order: a barrier only once every open input
    /// has delivered it (inputs that delivered it are not read meanwhile); a
    /// watermark only when the minimum over all inputs advances. `None` once
    /// every input has closed.
    pub async fn next(&mut self) -> Option<Message> {
        poll_fn(|cx| {
            let n = self.inputs.len();
            if n == 0 {
                return Poll::Ready(None);
            }
            for k in 0..n {
                let i = (self.start + k) % n;
                if self.blocked[i] || self.closed[i] {
                    continue;
                }
                loop {
                    match self.inputs[i].poll_recv(cx) {
                        Poll::Pending => break,
                        Poll::Ready(None) => {
                            self.closed[i] = true;
                            if let Some(b) = self.try_release() {
                                return Poll::Ready(Some(Message::Barrier(b)));
                            }
                            break;
                        }
                        Poll::Ready(Some(Message::Chunk(c))) => {
                            self.start = (i + 1) % n;
                            return Poll::Ready(Some(Message::Chunk(c)));
                        }
                        Poll::Ready(Some(Message::Watermark(w))) => {
                            if let Some(merged) = self.merge_watermark(i, w) {
                                self.start = (i + 1) % n;
                                return Poll::Ready(Some(Message::Watermark(merged)));
                            }
                        }
                        Poll::Ready(Some(Message::Barrier(b))) => {
                            self.blocked[i] = true;
                            self.barrier = Some(b);
                            if let Some(b) = self.try_release() {
                                return Poll::Ready(Some(Message::Barrier(b)));
                            }
                            break;
                        }
                    }
                }
            }
            if self.closed.iter().all(|c| *c) {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    /// Per watermark column, each input's last watermark and the merged one
    /// passed on: what a restored actor resumes from.
    pub fn watermarks(&self) -> (InputWatermarks, BTreeMap<usize, i64>) {
        (self.watermarks.clone(), self.emitted.clone())
    }

    /// Resumes from [`Merge::watermarks`] of the same inputs, in the same order.
    pub fn restore_watermarks(
        &mut self,
        inputs: InputWatermarks,
        merged: BTreeMap<usize, i64>,
    ) -> crate::Result<()> {
        if let Some(values) = inputs.values().find(|v| v.len() != self.inputs.len()) {
            return Err(crate::Error::Internal(format!(
                "restored watermarks of {} inputs for an actor with {}",
                values.len(),
                self.inputs.len()
            )));
        }
        self.watermarks = inputs;
        self.emitted = merged;
        Ok(())
    }

    fn try_release(&mut self) -> Option<Barrier> {
        let aligned = (0..self.inputs.len()).all(|i| self.blocked[i] || self.closed[i]);
        if !aligned || self.barrier.is_none() {
            return None;
        }
        self.blocked.iter_mut().for_each(|b| *b = false);
        self.barrier.take()
    }

    fn merge_watermark(&mut self, input: usize, wm: Watermark) -> Option<Watermark> {
        let n = self.inputs.len();
        let per_input = self
            .watermarks
            .entry(wm.column)
            .or_insert_with(|| vec![None; n]);
        per_input[input] = Some(per_input[input].map_or(wm.value, |v| v.max(wm.value)));
        let min = per_input
            .iter()
            .zip(&self.closed)
            .filter(|(_, closed)| !**closed)
            .map(|(v, _)| *v)
            .collect::<Option<Vec<i64>>>()?
            .into_iter()
            .min()?;
        let last = self.emitted.get(&wm.column).copied();
        if last.is_some_and(|l| l >= min) {
            return None;
        }
        self.emitted.insert(wm.column, min);
        Some(Watermark {
            column: wm.column,
            value: min,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use tidemark_types::StreamChunk;
    use tokio::sync::mpsc::channel;

    use super::*;

    fn chunk(v: i64) -> Message {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![v]))]).unwrap();
        Message::Chunk(StreamChunk::inserts(batch))
    }

    #[tokio::test]
    async fn barrier_waits_for_every_input_and_blocks_early_ones() {
        let (tx1, rx1) = channel(8);
        let (tx2, rx2) = channel(8);
        let mut merge = Merge::new(vec![rx1, rx2]);
        tx1.send(Message::Barrier(Barrier::new(1))).await.unwrap();
        tx1.send(chunk(10)).await.unwrap();
        tx2.send(chunk(20)).await.unwrap();
        // input 1 is blocked behind its barrier: only input 2's chunk comes out
        assert!(matches!(merge.next().await, Some(Message::Chunk(c)) if c.num_rows() == 1));
        tx2.send(Message::Barrier(Barrier::new(1))).await.unwrap();
        assert!(matches!(merge.next().await, Some(Message::Barrier(b)) if b.epoch == 1));
        assert!(matches!(merge.next().await, Some(Message::Chunk(_))));
        drop(tx1);
        drop(tx2);
        assert!(merge.next().await.is_none());
    }

    #[tokio::test]
    async fn watermark_is_the_minimum_over_inputs() {
        let (tx1, rx1) = channel(8);
        let (tx2, rx2) = channel(8);
        let mut merge = Merge::new(vec![rx1, rx2]);
        let wm = |value| Message::Watermark(Watermark { column: 0, value });
        tx1.send(wm(100)).await.unwrap();
        tx2.send(wm(50)).await.unwrap();
        tx2.send(wm(200)).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            if let Some(Message::Watermark(w)) = merge.next().await {
                seen.push(w.value);
            }
        }
        assert_eq!(seen, vec![50, 100]);
    }
}
