use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use tidemark_types::Epoch;

use crate::keys::{table_key, table_prefix};
use crate::{Entries, Result, StateStore, TableId, WriteBatch};

/// One table of keyed state as its single writer (a table's actor) sees it:
/// the store's committed entries, overlaid with the changes no committed
/// epoch holds yet. Memory holds only those changes, whatever the table's
/// size; reads go to the store for the rest.
///
/// A change is kept until the epoch that wrote it commits. Until then it
/// hides the key's committed value, which may be older; after, the store has
/// it. Each key is read either from the changes or from some committed epoch
/// no older than the last one pruned, so reads are exact even while commits
/// go on between them.
pub struct StateTable {
    id: TableId,
    prefix: Vec<u8>,
    store: Arc<dyn StateStore>,
    /// Every key changed since the last committed epoch that wrote it.
    pending: BTreeMap<Vec<u8>, Pending>,
    /// Keys changed since the last [`StateTable::take_delta`].
    dirty: Vec<Vec<u8>>,
    /// The keys each checkpointed, not yet committed epoch wrote, oldest first.
    written: VecDeque<(Epoch, Vec<Vec<u8>>)>,
}

#[derive(Debug)]
struct Pending {
    /// `None`: deleted.
    value: Option<Vec<u8>>,
    /// The epoch whose checkpoint wrote it; `None` until the next one.
    epoch: Option<Epoch>,
}

impl std::fmt::Debug for StateTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateTable")
            .field("id", &self.id)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl StateTable {
    /// The table as `store` holds it.
    pub fn new(id: TableId, store: Arc<dyn StateStore>) -> Self {
        Self {
            id,
            prefix: table_prefix(id),
            store,
            pending: BTreeMap::new(),
            dirty: Vec::new(),
            written: VecDeque::new(),
        }
    }

    pub fn id(&self) -> TableId {
        self.id
    }

    /// Changes held in memory (not yet committed).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Forgets the changes of epochs the store has committed since.
    fn prune(&mut self) {
        let committed = self.store.committed_epoch();
        while self.written.front().is_some_and(|(e, _)| *e <= committed) {
            let (epoch, keys) = self.written.pop_front().expect("checked");
            for key in keys {
                if self
                    .pending
                    .get(&key)
                    .is_some_and(|p| p.epoch == Some(epoch))
                {
                    self.pending.remove(&key);
                }
            }
        }
    }

    /// The current values of `keys` (`None`: absent), in order.
    pub fn get_many(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.prune();
        let mut out = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match self.pending.get(key) {
                Some(p) => out.push(p.value.clone()),
                None => {
                    out.push(None);
                    missing.push(i);
                }
            }
        }
        if !missing.is_empty() {
            let full: Vec<Vec<u8>> = missing
                .iter()
                .map(|&i| table_key(self.id, &keys[i]))
                .collect();
            for (i, value) in missing.into_iter().zip(self.store.get_many(&full)?) {
                out[i] = value;
            }
        }
        Ok(out)
    }

    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get_many(&[key.to_vec()])?.pop().flatten())
    }

    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.change(key, Some(value));
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.change(key, None);
    }

    fn change(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        use std::collections::btree_map::Entry;
        match self.pending.entry(key) {
            Entry::Occupied(mut e) => {
                let p = e.get_mut();
                if p.epoch.is_some() {
                    self.dirty.push(e.key().clone());
                }
                *e.get_mut() = Pending { value, epoch: None };
            }
            Entry::Vacant(e) => {
                self.dirty.push(e.key().clone());
                e.insert(Pending { value, epoch: None });
            }
        }
    }

    /// Up to about `limit` current entries with keys after `after` (from the
    /// first, when `None`), in key order; empty at the end. Memory holds one
    /// page of the store at a time.
    pub fn scan_page(&mut self, after: Option<&[u8]>, limit: usize) -> Result<Entries> {
        self.prune();
        let limit = limit.max(1);
        let mut out = Vec::new();
        let mut cursor = after.map(<[u8]>::to_vec);
        loop {
            let full_cursor = cursor.as_ref().map(|c| table_key(self.id, c));
            let stored = self
                .store
                .scan_page(&self.prefix, full_cursor.as_deref(), limit)?;
            let exhausted = stored.len() < limit;
            let prefix_len = self.prefix.len();
            let stored: Entries = stored
                .iter()
                .map(|(k, v)| (k[prefix_len..].to_vec(), v.to_vec()))
                .collect();
            let last_stored = stored.last().map(|(k, _)| k.clone());
            let lower = match &cursor {
                Some(c) => Bound::Excluded(c.as_slice()),
                None => Bound::Unbounded,
            };
            let upper = match &last_stored {
                Some(k) if !exhausted => Bound::Included(k.as_slice()),
                _ => Bound::Unbounded,
            };
            let mut changed = self.pending.range::<[u8], _>((lower, upper)).peekable();
            let mut stored_iter = stored.into_iter().peekable();
            loop {
                let take_stored = match (stored_iter.peek(), changed.peek()) {
                    (Some(s), Some(c)) => s.0 < *c.0,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                if take_stored {
                    out.push(stored_iter.next().expect("peeked"));
                } else {
                    let (k, p) = changed.next().expect("peeked");
                    if stored_iter.peek().is_some_and(|s| s.0 == *k) {
                        stored_iter.next();
                    }
                    if let Some(v) = &p.value {
                        out.push((k.clone(), v.clone()));
                    }
                }
            }
            if exhausted || out.len() >= limit {
                return Ok(out);
            }
            cursor = last_stored;
        }
    }

    /// The next page of a read through the whole table (`None` at its
    /// end): `cursor` starts at `None` and is moved past each page returned.
    pub fn next_page(
        &mut self,
        cursor: &mut Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Option<Entries>> {
        let entries = self.scan_page(cursor.as_deref(), limit)?;
        let Some((last, _)) = entries.last() else {
            return Ok(None);
        };
        *cursor = Some(last.clone());
        Ok(Some(entries))
    }

    /// Moves the changes since the last call into `batch`, which epoch
    /// `epoch` commits.
    pub fn take_delta(&mut self, epoch: Epoch, batch: &mut WriteBatch) {
        // A table that only takes writes (arrival order) reads nothing, so
        // committed changes leave memory here.
        self.prune();
        let keys = std::mem::take(&mut self.dirty);
        if keys.is_empty() {
            return;
        }
        for key in &keys {
            let p = self.pending.get_mut(key).expect("dirty keys are pending");
            p.epoch = Some(epoch);
            let full = table_key(self.id, key);
            match &p.value {
                Some(v) => batch.put(full, v.clone()),
                None => batch.delete(full),
            }
        }
        self.written.push_back((epoch, keys));
    }

    /// A batch that deletes every committed entry of this table.
    pub fn drop_all(id: TableId) -> WriteBatch {
        WriteBatch {
            writes: Vec::new(),
            delete_prefixes: vec![table_prefix(id)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, StateStore};

    fn all(t: &mut StateTable, page: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut cursor = None;
        while let Some(entries) = t.next_page(&mut cursor, page).unwrap() {
            for (k, v) in entries {
                out.push((String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()));
            }
        }
        out
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn delta_carries_only_changes_since_last_checkpoint() {
        let store = Arc::new(MemoryStore::new());
        let mut t = StateTable::new(7, Arc::clone(&store) as Arc<dyn StateStore>);
        t.insert(b"k1".to_vec(), b"v1".to_vec());
        t.insert(b"k2".to_vec(), b"v2".to_vec());
        t.insert(b"k2".to_vec(), b"v2".to_vec());
        let mut b = WriteBatch::default();
        t.take_delta(1, &mut b);
        assert_eq!(b.writes.len(), 2);
        store.commit(1, b).unwrap();

        t.remove(b"k1".to_vec());
        let mut b = WriteBatch::default();
        t.take_delta(2, &mut b);
        assert_eq!(b.writes.len(), 1);
        store.commit(2, b).unwrap();
        let (_, rows) = store.scan_prefixes(&[table_prefix(7)]).unwrap();
        assert_eq!(rows[0].len(), 1);
        assert!(rows[0][0].0.ends_with(b"k2"));

        let mut b = WriteBatch::default();
        t.take_delta(3, &mut b);
        assert!(b.is_empty());
        // Both epochs committed: nothing is left in memory, even for a
        // writer that never reads.
        assert_eq!(t.pending_len(), 0);
        assert_eq!(t.get(b"k2").unwrap(), Some(b"v2".to_vec()));

        let mut restored = StateTable::new(7, store);
        assert_eq!(restored.get(b"k1").unwrap(), None);
        assert_eq!(all(&mut restored, 10), pairs(&[("k2", "v2")]));
    }

    /// Changes of every state (unsaved, checkpointed but not committed,
    /// committed) read back as the table's current entries, whatever the
    /// page size, while commits land between the reads.
    #[test]
    fn reads_overlay_uncommitted_changes_on_the_store() {
        let store = Arc::new(MemoryStore::new());
        let mut t = StateTable::new(3, Arc::clone(&store) as Arc<dyn StateStore>);
        // Another table's keys on both sides must never show.
        let mut other = WriteBatch::default();
        other.put(table_key(2, b"z"), b"x".to_vec());
        other.put(table_key(4, b"a"), b"x".to_vec());
        store.commit(1, other).unwrap();
        for k in ["a", "c", "e", "g", "i"] {
            t.insert(k.into(), format!("{k}1").into_bytes());
        }
        let mut b = WriteBatch::default();
        t.take_delta(2, &mut b);
        store.commit(2, b).unwrap();
        // Epoch 3: checkpointed, not committed yet.
        t.remove(b"c".to_vec());
        t.insert(b"d".to_vec(), b"d3".to_vec());
        t.insert(b"g".to_vec(), b"g3".to_vec());
        let mut epoch3 = WriteBatch::default();
        t.take_delta(3, &mut epoch3);
        // Unsaved.
        t.insert(b"b".to_vec(), b"b4".to_vec());
        t.remove(b"i".to_vec());
        t.insert(b"j".to_vec(), b"j4".to_vec());
        t.remove(b"d".to_vec());
        let want = pairs(&[
            ("a", "a1"),
            ("b", "b4"),
            ("e", "e1"),
            ("g", "g3"),
            ("j", "j4"),
        ]);
        for page in 1..7 {
            assert_eq!(all(&mut t, page), want, "page {page}");
        }
        store.commit(3, epoch3).unwrap();
        for page in 1..7 {
            assert_eq!(all(&mut t, page), want, "page {page}, epoch 3 committed");
        }
        assert_eq!(t.pending_len(), 4, "epoch 3's changes left memory");
        let got = t
            .get_many(&[b"a".to_vec(), b"c".to_vec(), b"d".to_vec(), b"g".to_vec()])
            .unwrap();
        assert_eq!(
            got,
            vec![Some(b"a1".to_vec()), None, None, Some(b"g3".to_vec())]
        );
        // A key changed again after its epoch was checkpointed stays until
        // its own, later epoch commits.
        let mut b = WriteBatch::default();
        t.take_delta(4, &mut b);
        t.insert(b"b".to_vec(), b"b5".to_vec());
        store.commit(4, b).unwrap();
        assert_eq!(t.get(b"b").unwrap(), Some(b"b5".to_vec()));
        assert_eq!(t.pending_len(), 1);
    }

    /// Random changes, checkpoints and commits that lag behind them, and
    /// restarts from the last commit: every read equals a plain map of the
    /// table, and a restart sees the table as of its last committed epoch.
    #[test]
    fn reads_equal_a_map_whatever_commits_lag() {
        for seed in 0..40u64 {
            let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = |m: u64| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % m
            };
            let store = Arc::new(MemoryStore::new());
            let handle = || Arc::clone(&store) as Arc<dyn StateStore>;
            let mut t = StateTable::new(5, handle());
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut epoch = 0;
            // Checkpointed epochs not yet committed: batch, and the table as of it.
            type Table = BTreeMap<Vec<u8>, Vec<u8>>;
            let mut waiting: VecDeque<(Epoch, WriteBatch, Table)> = VecDeque::new();
            let mut committed_model = BTreeMap::new();
            for step in 0..400 {
                let key = format!("k{:02}", next(24)).into_bytes();
                match next(10) {
                    0..=3 => {
                        let value = format!("v{step}").into_bytes();
                        t.insert(key.clone(), value.clone());
                        model.insert(key, value);
                    }
                    4..=5 => {
                        t.remove(key.clone());
                        model.remove(&key);
                    }
                    6 => {
                        epoch += 1;
                        let mut b = WriteBatch::default();
                        t.take_delta(epoch, &mut b);
                        waiting.push_back((epoch, b, model.clone()));
                    }
                    7 => {
                        if let Some((e, b, m)) = waiting.pop_front() {
                            store.commit(e, b).unwrap();
                            committed_model = m;
                        }
                    }
                    8 => {
                        let page = 1 + next(6) as usize;
                        let want: Vec<(String, String)> = model
                            .iter()
                            .map(|(k, v)| {
                                (
                                    String::from_utf8(k.clone()).unwrap(),
                                    String::from_utf8(v.clone()).unwrap(),
                                )
                            })
                            .collect();
                        assert_eq!(all(&mut t, page), want, "seed {seed} step {step}");
                        let got = t.get(&key).unwrap();
                        assert_eq!(got.as_ref(), model.get(&key), "seed {seed} step {step}");
                    }
                    _ => {
                        if next(4) == 0 {
                            // A crash: uncommitted epochs are lost.
                            waiting.clear();
                            epoch = epoch.max(store.committed_epoch());
                            t = StateTable::new(5, handle());
                            model = committed_model.clone();
                        }
                    }
                }
            }
        }
    }
}
