//! Figures of recent checkpoints, for `tidemark_catalog.checkpoints`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tidemark_state::WriteBatch;
use tidemark_types::Epoch;

/// How many recent checkpoints are kept.
pub const KEPT_CHECKPOINTS: usize = 100;

/// One checkpoint's commit.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointStats {
    pub epoch: Epoch,
    pub committed_at: SystemTime,
    /// From the barrier's injection to the end of its commit.
    pub duration: Duration,
    /// From the barrier's injection until every actor had acknowledged it
    /// (what a slow or backed-up view adds).
    pub aligned: Duration,
    /// Writing the epoch to the store.
    pub write: Duration,
    /// Keys written, counts added or deleted.
    pub writes: u64,
    /// Bytes of keys and values written.
    pub bytes: u64,
    /// Whether the store took the commit.
    pub ok: bool,
}

/// The written keys and bytes of `batch`.
pub fn batch_size(batch: &WriteBatch) -> (u64, u64) {
    let bytes: usize = batch
        .writes
        .iter()
        .map(|(k, w)| k.len() + w.value_len())
        .sum();
    (batch.writes.len() as u64, bytes as u64)
}

/// The last [`KEPT_CHECKPOINTS`] commits, oldest first.
#[derive(Debug, Clone, Default)]
pub struct CheckpointLog {
    recent: Arc<Mutex<VecDeque<CheckpointStats>>>,
}

impl CheckpointLog {
    pub fn record(&self, stats: CheckpointStats) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == KEPT_CHECKPOINTS {
            recent.pop_front();
        }
        recent.push_back(stats);
    }

    pub fn recent(&self) -> Vec<CheckpointStats> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_sizes_batches() {
        let log = CheckpointLog::default();
        for epoch in 1..=(KEPT_CHECKPOINTS as u64 + 5) {
            log.record(CheckpointStats {
                epoch,
                committed_at: SystemTime::UNIX_EPOCH,
                duration: Duration::ZERO,
                aligned: Duration::ZERO,
                write: Duration::ZERO,
                writes: 0,
                bytes: 0,
                ok: true,
            });
        }
        let recent = log.recent();
        assert_eq!(recent.len(), KEPT_CHECKPOINTS);
        assert_eq!(recent[0].epoch, 6);

        let mut batch = WriteBatch::default();
        batch.put(b"ab".to_vec(), b"xyz".to_vec());
        batch.delete(b"c".to_vec());
        batch.add_count(b"de".to_vec(), 1);
        assert_eq!(batch_size(&batch), (3, 5 + 1 + 10));
    }
}
