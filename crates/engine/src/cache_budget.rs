//! The memory all operator caches of a server share (`--operator-cache-size`).
//! A user sizes one number for the server, whatever the number of views and
//! their parallelism. Each cache reports its size when it settles after a
//! checkpoint; when their sum is over the budget, every cache settling at
//! that checkpoint gives up the same share of its bytes, so the sum comes
//! back to three quarters of the budget (big caches give up the most, and
//! eviction does not run at every checkpoint).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tidemark_types::Epoch;

#[derive(Debug)]
pub struct CacheBudget {
    limit: usize,
    /// The bytes of every cache, as each last reported them.
    used: AtomicUsize,
    /// The share caches keep at one checkpoint, fixed by the first to ask.
    round: Mutex<(Epoch, f64)>,
}

impl CacheBudget {
    /// A budget of `limit` bytes (`usize::MAX`: caches never evict).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            round: Mutex::new((0, 1.0)),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The bytes the caches hold, as of their last checkpoints.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// A cache's size went from `before` to `after` bytes.
    pub(crate) fn resized(&self, before: usize, after: usize) {
        if after >= before {
            self.used.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.used.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// The share of its bytes a cache settling after the checkpoint of
    /// `epoch` keeps: 1 within budget; over it, the share that brings the
    /// caches back to three quarters of the budget, the same for every
    /// cache of that checkpoint (the first to settle fixes it).
    pub(crate) fn share_kept(&self, epoch: Epoch) -> f64 {
        let mut round = self.round.lock().unwrap_or_else(|e| e.into_inner());
        if round.0 != epoch {
            let used = self.used();
            let share = if used <= self.limit {
                1.0
            } else {
                (self.limit / 4 * 3) as f64 / used as f64
            };
            *round = (epoch, share);
        }
        round.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cache_of_a_checkpoint_keeps_the_same_share() {
        let budget = CacheBudget::new(1000);
        budget.resized(0, 1500);
        budget.resized(0, 500);
        // 2000 used: keep 750 of them
        assert_eq!(budget.share_kept(3), 0.375);
        // the first cache gave up its share: the second keeps the same
        budget.resized(1500, 562);
        assert_eq!(budget.share_kept(3), 0.375);
        budget.resized(500, 187);
        assert_eq!(budget.used(), 749);
        assert_eq!(budget.share_kept(4), 1.0);
    }

    #[test]
    fn a_budget_of_nothing_keeps_nothing() {
        let budget = CacheBudget::new(0);
        budget.resized(0, 1);
        assert_eq!(budget.share_kept(1), 0.0);
    }
}
