//! What a source reader has read that no committed checkpoint holds yet.
//! Everything downstream keeps that input's changes (view rows to count,
//! groups it may not evict) until their epoch commits; epochs last as long
//! as the slowest job takes to pass a barrier and the commit takes. So a
//! reader that is too far ahead of the last commit stops reading until
//! commits catch up: the input in flight per reader is bounded however slow
//! checkpoints are (what it becomes downstream is several times its size).

use std::collections::VecDeque;

use tidemark_types::Epoch;

/// Bytes of input a source reader may have read beyond the last committed
/// checkpoint. Healthy checkpoints (a commit every interval) stay well
/// below it at full speed.
pub(crate) const MAX_UNCOMMITTED_BYTES: usize = 256 << 20;

#[derive(Debug, Default)]
pub(crate) struct Uncommitted {
    /// Bytes read before each barrier passed, by its epoch, oldest first.
    sealed: VecDeque<(Epoch, usize)>,
    /// Bytes read since the last barrier.
    open: usize,
    total: usize,
}

impl Uncommitted {
    pub fn read(&mut self, bytes: usize) {
        self.open += bytes;
        self.total += bytes;
    }

    /// The barrier of `epoch` passed: what was read before it commits with it.
    pub fn barrier(&mut self, epoch: Epoch) {
        let bytes = std::mem::take(&mut self.open);
        self.sealed.push_back((epoch, bytes));
    }

    /// Forgets what epochs up to `committed` hold.
    pub fn committed(&mut self, committed: Epoch) {
        while let Some(&(epoch, bytes)) = self.sealed.front() {
            if epoch > committed {
                break;
            }
            self.total -= bytes;
            self.sealed.pop_front();
        }
    }

    /// Whether the reader should wait for commits before reading more.
    pub fn too_far_ahead(&self) -> bool {
        self.total >= MAX_UNCOMMITTED_BYTES
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_counts_until_its_epoch_commits() {
        let mut u = Uncommitted::default();
        u.read(10);
        u.barrier(3);
        u.read(5);
        u.barrier(4);
        u.read(1);
        assert_eq!(u.bytes(), 16);
        u.committed(2);
        assert_eq!(u.bytes(), 16);
        u.committed(3);
        assert_eq!(u.bytes(), 6);
        // what was read after the last barrier commits with the next one
        u.committed(9);
        assert_eq!(u.bytes(), 1);
        u.barrier(10);
        u.committed(10);
        assert_eq!(u.bytes(), 0);
        u.read(MAX_UNCOMMITTED_BYTES);
        assert!(u.too_far_ahead());
    }
}
