//! Exchanges on the sending side: which downstream actor gets which rows.

use arrow::array::UInt32Array;
use arrow::compute::take_record_batch;
use datafusion::common::hash_utils::{create_hashes, RandomState};
use tidemark_types::{ActorId, Message, Op, StreamChunk};
use tokio::sync::mpsc::Sender;

use crate::Result;

/// Number of key groups: the unit in which keyed state is spread over actors, so
/// a change of parallelism moves whole key groups.
pub const KEY_GROUPS: usize = 256;

/// A channel to one downstream actor.
#[derive(Debug, Clone)]
pub struct Output {
    pub actor: ActorId,
    pub tx: Sender<Message>,
}

/// Routes an actor's output to the actors of one downstream fragment.
#[derive(Debug)]
pub enum Dispatcher {
    /// Rows go to the actor owning the key group of their key columns' hash.
    Hash {
        key: Vec<usize>,
        outputs: Vec<Output>,
    },
    /// Everything goes to one actor.
    Single(Output),
}

/// The key group of each row, by a hash that is the same in every process.
pub fn key_groups(chunk: &StreamChunk, key: &[usize]) -> Result<Vec<usize>> {
    let batch = chunk.batch();
    let mut hashes = vec![0u64; batch.num_rows()];
    let columns: Vec<_> = key.iter().map(|&i| batch.column(i).clone()).collect();
    create_hashes(&columns, &RandomState::with_seed(0x7469_6465), &mut hashes)?;
    Ok(hashes
        .iter()
        .map(|h| (*h % KEY_GROUPS as u64) as usize)
        .collect())
}

/// The actor index (of `n`) that owns a key group: contiguous ranges of groups.
pub fn owner_of(key_group: usize, n: usize) -> usize {
    key_group * n / KEY_GROUPS
}

impl Dispatcher {
    pub fn outputs(&self) -> Vec<&Output> {
        match self {
            Dispatcher::Hash { outputs, .. } => outputs.iter().collect(),
            Dispatcher::Single(o) => vec![o],
        }
    }

    /// Drops channels to actors that are being stopped; returns whether any is left.
    pub fn retain(&mut self, stopped: &[ActorId]) -> bool {
        match self {
            Dispatcher::Hash { outputs, .. } => {
                outputs.retain(|o| !stopped.contains(&o.actor));
                !outputs.is_empty()
            }
            Dispatcher::Single(o) => !stopped.contains(&o.actor),
        }
    }

    /// Sends a chunk; a downstream that has gone away (its job failed or was
    /// dropped) is skipped.
    pub async fn send_chunk(&self, chunk: StreamChunk) -> Result<()> {
        match self {
            Dispatcher::Single(o) => {
                let _ = o.tx.send(Message::Chunk(chunk)).await;
            }
            Dispatcher::Hash { key, outputs } => {
                if outputs.len() == 1 {
                    let _ = outputs[0].tx.send(Message::Chunk(chunk)).await;
                    return Ok(());
                }
                let groups = key_groups(&chunk, key)?;
                let mut rows: Vec<Vec<u32>> = vec![Vec::new(); outputs.len()];
                for (row, g) in groups.iter().enumerate() {
                    rows[owner_of(*g, outputs.len())].push(row as u32);
                }
                for (target, indices) in rows.into_iter().enumerate() {
                    if indices.is_empty() {
                        continue;
                    }
                    let part = if indices.len() == chunk.num_rows() {
                        chunk.clone()
                    } else {
                        let batch =
                            take_record_batch(chunk.batch(), &UInt32Array::from(indices.clone()))?;
                        match chunk.ops() {
                            None => StreamChunk::inserts(batch),
                            Some(ops) => {
                                let ops: Vec<Op> =
                                    indices.iter().map(|&i| ops[i as usize]).collect();
                                StreamChunk::with_ops(batch, ops)
                            }
                        }
                    };
                    let _ = outputs[target].tx.send(Message::Chunk(part)).await;
                }
            }
        }
        Ok(())
    }

    /// Sends a watermark or barrier to every downstream actor.
    pub async fn broadcast(&self, msg: &Message) {
        for o in self.outputs() {
            let _ = o.tx.send(msg.clone()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_cover_all_actors_contiguously() {
        for n in 1..=8 {
            let owners: Vec<usize> = (0..KEY_GROUPS).map(|g| owner_of(g, n)).collect();
            assert_eq!(owners[0], 0);
            assert_eq!(owners[KEY_GROUPS - 1], n - 1);
            assert!(owners.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1));
        }
    }
}
