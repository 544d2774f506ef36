//! The groups of a `GROUP BY` held in memory: all of them, or, when the
//! aggregate keeps its groups as keyed state, a cache of the recently used
//! ones within its share of the server's budget ([`CacheBudget`]); the rest
//! are read back from the store when a row for them arrives.
//!
//! A group may leave memory only once the store holds it as it is: it has
//! not changed since the last checkpoint, and that checkpoint's epoch has
//! committed. So a group read back is always the group evicted. A group
//! deleted (its last row retracted) is remembered until its delete commits,
//! so a row for it meanwhile starts a new group instead of reading back the
//! committed, older one.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use datafusion::common::HashMap;

use tidemark_types::Epoch;

use crate::cache_budget::CacheBudget;
use crate::durable::KeyedReader;
use crate::metrics::JobMetrics;
use crate::Result;

/// Bookkeeping of one resident group.
struct Slot<G> {
    group: G,
    /// The epoch whose checkpoint last stored it (0: as read from the store).
    saved: Epoch,
    /// When it was last used, in chunks.
    used: u64,
    /// Its estimated bytes.
    size: usize,
}

/// The resident groups of one bucket, for many lookups in it.
pub(crate) struct Bucket<'c, G>(Option<&'c HashMap<Vec<u8>, Slot<G>>>);

impl<'c, G> Bucket<'c, G> {
    /// The group of `key`, whose first bytes are the bucket's.
    pub fn get(&self, key: &[u8]) -> Option<&'c G> {
        self.0?.get(key).map(|s| &s.group)
    }
}

pub(crate) struct GroupCache<G> {
    /// The resident groups, by the first `bucket_len` bytes of their keys:
    /// for groups keyed by window, a window's groups are one bucket.
    buckets: BTreeMap<Vec<u8>, HashMap<Vec<u8>, Slot<G>>>,
    bucket_len: usize,
    /// How many groups are resident.
    groups: usize,
    /// The bytes the resident groups take, as last estimated.
    resident: usize,
    /// What all caches of the server share.
    budget: Arc<CacheBudget>,
    /// The resident bytes as last reported to the budget.
    shared: usize,
    /// The chunk count: what "recently used" is measured in.
    tick: u64,
    /// Deleted groups whose delete was stored at this epoch, not yet committed.
    gone: HashMap<Vec<u8>, Epoch>,
    /// The groups and bytes last reported to the job's metrics.
    reported: (i64, i64),
}

impl<G> GroupCache<G> {
    /// A cache that evicts when the caches sharing `budget` are over it.
    pub fn new(budget: Arc<CacheBudget>) -> Self {
        Self {
            buckets: BTreeMap::new(),
            bucket_len: 0,
            groups: 0,
            resident: 0,
            budget,
            shared: 0,
            tick: 0,
            gone: HashMap::default(),
            reported: (0, 0),
        }
    }

    /// Buckets groups by the first `len` bytes of their keys (a window's
    /// start): a window's groups are then found and taken out without
    /// looking at the others'. Before any group is added.
    pub fn with_buckets(mut self, len: usize) -> Self {
        self.bucket_len = len;
        self
    }

    fn bucket<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        &key[..self.bucket_len.min(key.len())]
    }

    fn slot(&self, key: &[u8]) -> Option<&Slot<G>> {
        self.buckets.get(self.bucket(key))?.get(key)
    }

    fn slot_mut(&mut self, key: &[u8]) -> Option<&mut Slot<G>> {
        let bucket = self.bucket(key);
        self.buckets.get_mut(bucket)?.get_mut(key)
    }

    pub fn set_budget(&mut self, budget: Arc<CacheBudget>) {
        self.budget.resized(self.shared, 0);
        self.shared = 0;
        self.budget = budget;
    }

    /// Starts the next chunk: what it touches is newer than all before.
    pub fn next_tick(&mut self) {
        self.tick += 1;
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.slot(key).is_some()
    }

    /// Whether `key` was deleted by a checkpoint not yet committed: the store
    /// still holds its older state, which must not be read back.
    pub fn is_gone(&self, key: &[u8]) -> bool {
        self.gone.contains_key(key)
    }

    pub fn get(&self, key: &[u8]) -> Option<&G> {
        self.slot(key).map(|s| &s.group)
    }

    /// The group, marked as just used.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut G> {
        let tick = self.tick;
        let slot = self.slot_mut(key)?;
        slot.used = tick;
        Some(&mut slot.group)
    }

    /// Adds a group of `size` bytes; `saved`: the epoch the store holds it
    /// as of (0 for one read back, or for a new one).
    pub fn insert(&mut self, key: Vec<u8>, group: G, size: usize, saved: Epoch) {
        self.resident += size;
        let slot = Slot {
            group,
            saved,
            used: self.tick,
            size,
        };
        let bucket = self.bucket(&key);
        let slots = match self.buckets.get_mut(bucket) {
            Some(slots) => slots,
            None => self.buckets.entry(bucket.to_vec()).or_default(),
        };
        match slots.insert(key, slot) {
            Some(old) => self.resident -= old.size,
            None => self.groups += 1,
        }
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<G> {
        let bucket = self.bucket(key);
        let slots = self.buckets.get_mut(bucket)?;
        let slot = slots.remove(key)?;
        if slots.is_empty() {
            self.buckets.remove(bucket);
        }
        self.groups -= 1;
        self.resident -= slot.size;
        Some(slot.group)
    }

    /// Reads the groups of `keys` that left memory from `keyed`, where
    /// `stored_key` gives their keys: each once, and only those the store
    /// holds as they were evicted (not resident, not `changed` since the
    /// last checkpoint, not deleted by a checkpoint not yet committed).
    /// Returns (key, stored value) of the ones found.
    pub fn read_back<'a>(
        &self,
        keyed: &dyn KeyedReader,
        keys: impl Iterator<Item = &'a [u8]>,
        changed: impl Fn(&[u8]) -> bool,
        stored_key: impl Fn(&[u8]) -> Vec<u8>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut missing: Vec<&[u8]> = keys
            .filter(|k| !self.contains(k) && !self.is_gone(k) && !changed(k))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let stored = keyed.get_many(&missing.iter().map(|k| stored_key(k)).collect::<Vec<_>>())?;
        Ok(missing
            .into_iter()
            .zip(stored)
            .filter_map(|(k, v)| Some((k.to_vec(), v?)))
            .collect())
    }

    /// The bucket `bucket` (the first bytes of its keys), looked up once.
    pub fn bucket_of(&self, bucket: &[u8]) -> Bucket<'_, G> {
        Bucket(self.buckets.get(bucket))
    }

    /// The resident groups of the bucket `bucket` (the first bytes of
    /// their keys, as many as [`Self::with_buckets`] said), in no order.
    pub fn in_bucket(&self, bucket: &[u8]) -> impl Iterator<Item = (&[u8], &G)> {
        self.buckets
            .get(bucket)
            .into_iter()
            .flat_map(|slots| slots.iter())
            .map(|(k, s)| (k.as_slice(), &s.group))
    }

    /// The resident groups whose keys start with `prefix`, in key order.
    /// Looks at the groups of the buckets `prefix` may reach only.
    pub fn with_prefix(&self, prefix: &[u8]) -> Vec<(&[u8], &G)> {
        let start = self.bucket(prefix);
        let mut found: Vec<(&[u8], &G)> = self
            .buckets
            .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
            .take_while(|(bucket, _)| bucket.starts_with(start))
            .flat_map(|(_, slots)| slots.iter())
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, s)| (k.as_slice(), &s.group))
            .collect();
        found.sort_unstable_by_key(|(k, _)| *k);
        found
    }

    /// Takes out every group whose key starts with `prefix` (a window's
    /// groups, when it closes): a whole bucket when `prefix` is one.
    pub fn take_prefix(&mut self, prefix: &[u8]) -> Vec<(Vec<u8>, G)> {
        if prefix.len() != self.bucket_len {
            let keys: Vec<Vec<u8>> = self
                .with_prefix(prefix)
                .into_iter()
                .map(|(k, _)| k.to_vec())
                .collect();
            return keys
                .into_iter()
                .filter_map(|k| self.remove(&k).map(|group| (k, group)))
                .collect();
        }
        let taken: Vec<(Vec<u8>, Slot<G>)> = self
            .buckets
            .remove(prefix)
            .map(|slots| slots.into_iter().collect())
            .unwrap_or_default();
        self.groups -= taken.len();
        self.resident -= taken.iter().map(|(_, s)| s.size).sum::<usize>();
        taken.into_iter().map(|(k, s)| (k, s.group)).collect()
    }

    /// Records that the checkpoint of `epoch` stored `key` as it is now,
    /// `size` bytes, or its delete when it is not resident.
    pub fn saved(&mut self, key: &[u8], epoch: Epoch, size: Option<usize>) {
        match (self.slot_mut(key), size) {
            (Some(slot), Some(size)) => {
                slot.saved = epoch;
                let old = std::mem::replace(&mut slot.size, size);
                self.resident = self.resident - old + size;
            }
            _ => {
                self.gone.insert(key.to_vec(), epoch);
            }
        }
    }

    /// After the checkpoint of `epoch`: forgets the deletes that have
    /// committed, reports its size to the budget and, when the caches are
    /// over it, evicts the least recently used groups the store holds as
    /// they are, down to the share of its bytes the budget says it keeps.
    /// Returns how many left memory.
    pub fn settle(&mut self, epoch: Epoch, committed: Epoch) -> usize {
        self.gone.retain(|_, e| *e > committed);
        self.report_to_budget();
        let kept = self.budget.share_kept(epoch);
        if kept >= 1.0 {
            return 0;
        }
        let target = (self.resident as f64 * kept) as usize;
        let mut candidates: Vec<(u64, usize, &Vec<u8>)> = self
            .buckets
            .values()
            .flat_map(|slots| slots.iter())
            .filter(|(_, s)| s.saved <= committed)
            .map(|(k, s)| (s.used, s.size, k))
            .collect();
        candidates.sort_unstable_by_key(|(used, _, _)| *used);
        let mut doomed = Vec::new();
        let mut resident = self.resident;
        for (_, size, key) in candidates {
            if resident <= target {
                break;
            }
            resident -= size;
            doomed.push(key.clone());
        }
        for key in &doomed {
            self.remove(key);
        }
        self.report_to_budget();
        doomed.len()
    }

    fn report_to_budget(&mut self) {
        self.budget.resized(self.shared, self.resident);
        self.shared = self.resident;
    }

    /// [`Self::settle`], then reports to `metrics` how the resident groups
    /// and bytes changed since the last report.
    fn settle_and_report(
        &mut self,
        epoch: Epoch,
        committed: Epoch,
        metrics: Option<&JobMetrics>,
    ) -> usize {
        let evicted = self.settle(epoch, committed);
        let now = (self.len() as i64, self.resident_bytes() as i64);
        if let Some(m) = metrics {
            m.add_cached(now.0 - self.reported.0, now.1 - self.reported.1);
        }
        self.reported = now;
        if evicted > 0 {
            tracing::debug!(
                evicted,
                resident = self.len(),
                bytes = self.resident_bytes(),
                "groups left memory"
            );
        }
        evicted
    }

    /// [`Self::settle_and_report`] after the checkpoint of `epoch`, with
    /// the committed epoch of the store `keyed` reads (none: nothing has
    /// committed). Returns whether any group left memory: the store then
    /// holds groups memory does not.
    pub fn settle_after(
        &mut self,
        epoch: Epoch,
        keyed: Option<&dyn KeyedReader>,
        metrics: Option<&JobMetrics>,
    ) -> bool {
        let committed = keyed.map_or(0, |k| k.committed_epoch());
        self.settle_and_report(epoch, committed, metrics) > 0
    }

    pub fn len(&self) -> usize {
        self.groups
    }

    pub fn resident_bytes(&self) -> usize {
        self.resident
    }
}

impl<G> Drop for GroupCache<G> {
    fn drop(&mut self) {
        self.budget.resized(self.shared, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> Vec<u8> {
        vec![i]
    }

    #[test]
    fn evicts_least_recently_used_groups_the_store_holds() {
        let mut cache = GroupCache::new(CacheBudget::new(400));
        for i in 0..5 {
            cache.next_tick();
            cache.insert(key(i), i, 100, 0);
        }
        // group 0 used again: now the newest
        cache.next_tick();
        cache.get_mut(&key(0));
        // group 1 changed and stored at epoch 7, not committed yet
        cache.saved(&key(1), 7, Some(100));
        assert_eq!(cache.settle(8, 6), 2);
        // 1 stays (uncommitted), 2 and 3 were oldest, 4 and 0 newest
        assert!(cache.contains(&key(1)) && cache.contains(&key(0)) && cache.contains(&key(4)));
        assert!(!cache.contains(&key(2)) && !cache.contains(&key(3)));
        assert_eq!(cache.resident_bytes(), 300);
        // within budget: nothing leaves
        assert_eq!(cache.settle(9, 7), 0);
    }

    /// Groups bucketed by window: a window's groups are found in key order
    /// and taken out whole, and a shorter prefix reaches every bucket.
    #[test]
    fn a_window_of_groups_is_one_bucket() {
        let mut cache = GroupCache::new(CacheBudget::new(usize::MAX)).with_buckets(2);
        for key in [[1, 1, 9], [1, 1, 3], [1, 2, 5], [2, 1, 1], [1, 1, 7]] {
            cache.insert(key.to_vec(), key[2], 10, 0);
        }
        let keys =
            |found: Vec<(&[u8], &u8)>| -> Vec<u8> { found.iter().map(|(_, g)| **g).collect() };
        assert_eq!(keys(cache.with_prefix(&[1, 1])), vec![3, 7, 9]);
        assert_eq!(keys(cache.with_prefix(&[1])), vec![3, 7, 9, 5]);
        assert_eq!(keys(cache.with_prefix(&[1, 1, 7])), vec![7]);
        let taken: Vec<u8> = cache
            .take_prefix(&[1, 1])
            .into_iter()
            .map(|(_, g)| g)
            .collect();
        assert_eq!(taken.len(), 3);
        assert_eq!((cache.len(), cache.resident_bytes()), (2, 20));
        assert_eq!(cache.take_prefix(&[2]).len(), 1);
        assert!(cache.contains(&[1, 2, 5]) && !cache.contains(&[2, 1, 1]));
        assert_eq!((cache.len(), cache.resident_bytes()), (1, 10));
    }

    #[test]
    fn a_delete_is_remembered_until_it_commits() {
        let mut cache = GroupCache::new(CacheBudget::new(usize::MAX));
        cache.insert(key(1), (), 10, 0);
        cache.remove(&key(1));
        cache.saved(&key(1), 3, None);
        assert!(cache.is_gone(&key(1)));
        cache.settle(3, 2);
        assert!(cache.is_gone(&key(1)));
        cache.settle(4, 3);
        assert!(!cache.is_gone(&key(1)));
        assert_eq!(cache.resident_bytes(), 0);
    }

    #[test]
    fn caches_sharing_a_budget_give_up_the_same_share() {
        let budget = CacheBudget::new(1000);
        let mut big = GroupCache::new(Arc::clone(&budget));
        let mut small = GroupCache::new(Arc::clone(&budget));
        for i in 0..12 {
            big.insert(key(i), (), 100, 0);
        }
        for i in 0..4 {
            small.insert(key(i), (), 100, 0);
        }
        // alone, each is within the budget; together they are over it
        assert_eq!(small.settle(1, 0), 0);
        assert_eq!(budget.used(), 400);
        // 1600 used, 750 to keep: each keeps 46.875% of its bytes
        assert_eq!(big.settle(2, 1), 7);
        assert_eq!(small.settle(2, 1), 3);
        assert_eq!((big.resident_bytes(), small.resident_bytes()), (500, 100));
        assert_eq!(budget.used(), 600);
        drop(big);
        assert_eq!(budget.used(), 100);
    }
}
