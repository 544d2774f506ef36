//! The accumulator states of an aggregate's groups as keyed state, shared by
//! the vectorized aggregates ([`super::KeyedAgg`], [`super::HopAgg`]): a
//! cache of the recently used groups within the server's budget, the others
//! read back from the store; the groups changed since the last checkpoint
//! are written by the next one.

use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::SchemaRef;
use datafusion::common::HashSet;
use tidemark_plan::AggCall;
use tidemark_state::WriteBatch;
use tidemark_types::Epoch;

use super::group_cache::{Bucket, GroupCache};
use super::grouped::{Grouped, GroupedState};
use super::hash_agg::group_key;
use crate::cache_budget::CacheBudget;
use crate::durable::{time_key, KeyedReader, ScalarRows};
use crate::metrics::JobMetrics;
use crate::{Error, Result};

/// The estimated bytes of a cached group: its key and stored state, each
/// with the allocator's header, and its entry in the map, which is up to
/// half empty after it grows.
fn cached_size(key: &[u8], state: &[u8]) -> usize {
    const ENTRY: usize = std::mem::size_of::<(Vec<u8>, usize, u64, u64, Vec<u8>)>();
    key.len() + state.len() + 2 * 16 + 2 * ENTRY
}

/// The groups of `added` with their `stored` states (those that have one)
/// merged in: numbered as `added` is, stored states first, so an aggregate
/// that keeps its input's order sees the older rows first.
pub(super) fn merge_stored(
    key_schema: &SchemaRef,
    aggs: &[AggCall],
    stored: &GroupedState,
    added: &GroupedState,
) -> Result<GroupedState> {
    let mut merged = Grouped::new(Arc::clone(key_schema), aggs)?;
    merged.intern_keys(&added.keys)?;
    merged.merge(stored)?;
    merged.merge(added)?;
    merged.take()
}

pub(super) struct KeyedStates {
    /// Each aggregate's state columns, in order.
    state_rows: ScalarRows,
    /// How many state columns each aggregate has.
    state_widths: Vec<usize>,
    /// Each group's stored state as of its last change.
    groups: GroupCache<Vec<u8>>,
    /// Groups changed since the last checkpoint.
    unsaved: HashSet<Vec<u8>>,
    keyed: Option<Box<dyn KeyedReader>>,
    /// Whether the store may hold groups memory does not: after a restore,
    /// or once one was evicted.
    stored_elsewhere: bool,
    /// The epoch of the last barrier.
    epoch: Epoch,
    metrics: Arc<JobMetrics>,
}

impl KeyedStates {
    pub fn new(aggs: &[AggCall], metrics: Arc<JobMetrics>) -> Result<Self> {
        let mut types = Vec::new();
        let mut state_widths = Vec::new();
        for a in aggs {
            let fields = a.expr.state_fields()?;
            state_widths.push(fields.len());
            types.extend(fields.iter().map(|f| f.data_type().clone()));
        }
        Ok(Self {
            state_rows: ScalarRows::new(types)?,
            state_widths,
            groups: GroupCache::new(CacheBudget::new(usize::MAX)),
            unsaved: HashSet::default(),
            keyed: None,
            stored_elsewhere: false,
            epoch: 0,
            metrics,
        })
    }

    /// Groups keyed by window: their keys start with its start (8 bytes).
    pub fn by_window(mut self) -> Self {
        self.groups = self.groups.with_buckets(8);
        self
    }

    pub fn set_budget(&mut self, budget: Arc<CacheBudget>) {
        self.groups.set_budget(budget);
    }

    pub fn attach(&mut self, keyed: Box<dyn KeyedReader>) {
        self.keyed = Some(keyed);
    }

    /// After a restore: every group is in the store, none in memory.
    pub fn restored(&mut self) {
        self.stored_elsewhere = true;
    }

    pub fn start_epoch(&mut self, epoch: Epoch) {
        self.epoch = epoch;
    }

    /// The store, when it may hold groups memory does not.
    pub fn elsewhere(&self) -> Option<&dyn KeyedReader> {
        self.keyed.as_deref().filter(|_| self.stored_elsewhere)
    }

    pub fn metrics(&self) -> &JobMetrics {
        &self.metrics
    }

    /// Stored states, as columns: each aggregate's.
    pub fn decode(&self, bytes: &[&[u8]]) -> Result<Vec<Vec<ArrayRef>>> {
        let columns = self.state_rows.decode(bytes)?;
        let mut states = Vec::new();
        let mut column = 0;
        for width in &self.state_widths {
            states.push(columns[column..column + width].to_vec());
            column += width;
        }
        Ok(states)
    }

    /// Reads back the groups of `keys` that left memory.
    pub fn load_missing<'a>(&mut self, keys: impl Iterator<Item = &'a [u8]>) -> Result<()> {
        let Some(keyed) = self.keyed.as_ref().filter(|_| self.stored_elsewhere) else {
            return Ok(());
        };
        let unsaved = &self.unsaved;
        let stored =
            self.groups
                .read_back(keyed.as_ref(), keys, |k| unsaved.contains(k), group_key)?;
        self.metrics.add_groups_read_back(stored.len());
        for (key, value) in stored {
            let size = cached_size(&key, &value);
            self.groups.insert(key, value, size, 0);
        }
        Ok(())
    }

    /// The stored states of the groups of `keys` that have one, read back
    /// from the store when they left memory: their positions in `keys`, and
    /// their key columns (rows of `key_columns`) with their aggregates'
    /// states; `None` when no group has one.
    pub fn stored(
        &mut self,
        keys: &[Vec<u8>],
        key_columns: &[ArrayRef],
    ) -> Result<Option<(Vec<u32>, GroupedState)>> {
        self.load_missing(keys.iter().map(Vec::as_slice))?;
        self.groups.next_tick();
        let at: Vec<u32> = (0..keys.len() as u32)
            .filter(|&i| self.groups.get_mut(&keys[i as usize]).is_some())
            .collect();
        if at.is_empty() {
            return Ok(None);
        }
        let bytes: Vec<&[u8]> = at
            .iter()
            .filter_map(|&i| self.groups.get(&keys[i as usize]).map(Vec::as_slice))
            .collect();
        let states = self.decode(&bytes)?;
        let indices = UInt32Array::from(at.clone());
        let keys = key_columns
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Some((at, GroupedState { keys, states })))
    }

    /// Sets the states of the groups of `keys` to `states` (one row each),
    /// to be written by the next checkpoint.
    pub fn put(&mut self, keys: Vec<Vec<u8>>, states: &[Vec<ArrayRef>]) -> Result<()> {
        let columns: Vec<ArrayRef> = states.iter().flatten().cloned().collect();
        let states = self.state_rows.encode_columns(&columns)?;
        for (key, state) in keys.into_iter().zip(states) {
            let size = cached_size(&key, &state);
            self.groups.insert(key.clone(), state, size, 0);
            self.unsaved.insert(key);
        }
        Ok(())
    }

    /// Forgets a group whose state the store may still hold (one of a
    /// window the next checkpoint deletes as a whole).
    pub fn forget(&mut self, key: &[u8]) {
        self.groups.remove(key);
        self.unsaved.remove(key);
    }

    /// Takes out the resident groups whose keys start with `prefix`; their
    /// stored states, if any, are the caller's to delete.
    pub fn take_prefix(&mut self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let taken = self.groups.take_prefix(prefix);
        for (key, _) in &taken {
            self.unsaved.remove(key);
        }
        taken
    }

    /// The resident groups of the window starting at `start`, for
    /// lookups by key.
    pub fn window(&self, start: i64) -> Bucket<'_, Vec<u8>> {
        self.groups.bucket_of(&time_key(start))
    }

    /// Starts the next chunk: groups it touches are the most recently used.
    pub fn next_tick(&mut self) {
        self.groups.next_tick();
    }

    /// The resident groups of the window starting at `start`: (key,
    /// state), in no order.
    pub fn resident_in(&self, start: i64) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.groups
            .in_bucket(&time_key(start))
            .map(|(k, s)| (k, s.as_slice()))
    }

    /// The resident groups whose keys start with `prefix`: (key, state),
    /// in key order.
    pub fn resident(&self, prefix: &[u8]) -> Vec<(&[u8], &[u8])> {
        self.groups
            .with_prefix(prefix)
            .into_iter()
            .map(|(k, s)| (k, s.as_slice()))
            .collect()
    }

    /// Writes the groups changed since the last checkpoint (calling
    /// `wrote` with each key), then lets groups leave memory if the caches
    /// are over their budget.
    pub fn checkpoint(
        &mut self,
        keyed: &mut WriteBatch,
        mut wrote: impl FnMut(&[u8]),
    ) -> Result<()> {
        for key in std::mem::take(&mut self.unsaved) {
            let state = self
                .groups
                .get(&key)
                .ok_or_else(|| Error::Internal("a changed group left memory unsaved".into()))?;
            let size = cached_size(&key, state);
            wrote(&key);
            keyed.put(group_key(&key), state.clone());
            self.groups.saved(&key, self.epoch, Some(size));
        }
        self.stored_elsewhere |=
            self.groups
                .settle_after(self.epoch, self.keyed.as_deref(), Some(&self.metrics));
        Ok(())
    }
}
