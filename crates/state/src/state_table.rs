use std::collections::{HashMap, HashSet};

use crate::keys::{table_key, table_prefix};
use crate::{Result, StateStore, TableId, WriteBatch};

/// One table of keyed state as its single owner (an operator instance or a table
/// writer) sees it: all of it in memory, plus the keys changed since the last
/// checkpoint, which [`StateTable::take_delta`] hands to the epoch's commit.
#[derive(Debug)]
pub struct StateTable {
    id: TableId,
    rows: HashMap<Vec<u8>, Vec<u8>>,
    dirty: HashSet<Vec<u8>>,
}

impl StateTable {
    pub fn new(id: TableId) -> Self {
        Self {
            id,
            rows: HashMap::new(),
            dirty: HashSet::new(),
        }
    }

    /// The table as the store last committed it, nothing dirty.
    pub fn restore(id: TableId, store: &dyn StateStore) -> Result<Self> {
        let prefix = table_prefix(id);
        let (_, mut entries) = store.scan_prefixes(std::slice::from_ref(&prefix))?;
        let rows = entries
            .pop()
            .unwrap_or_default()
            .into_iter()
            .map(|(mut k, v)| (k.split_off(prefix.len()), v))
            .collect();
        Ok(Self {
            id,
            rows,
            dirty: HashSet::new(),
        })
    }

    pub fn id(&self) -> TableId {
        self.id
    }

    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.rows.get(key)
    }

    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.dirty.insert(key.clone());
        self.rows.insert(key, value);
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let old = self.rows.remove(key);
        if old.is_some() {
            self.dirty.insert(key.to_vec());
        }
        old
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Replaces the value of `key` with what `f` makes of the current one
    /// (`None`: absent), in one lookup.
    pub fn update(&mut self, key: Vec<u8>, f: impl FnOnce(Option<&[u8]>) -> Option<Vec<u8>>) {
        use std::collections::hash_map::Entry;
        match self.rows.entry(key) {
            Entry::Occupied(mut e) => match f(Some(e.get())) {
                Some(v) => {
                    self.dirty.insert(e.key().clone());
                    *e.get_mut() = v;
                }
                None => {
                    let (key, _) = e.remove_entry();
                    self.dirty.insert(key);
                }
            },
            Entry::Vacant(e) => {
                if let Some(v) = f(None) {
                    self.dirty.insert(e.key().clone());
                    e.insert(v);
                }
            }
        }
    }

    /// All entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.rows.iter()
    }

    /// Moves the changes since the last call into `batch`.
    pub fn take_delta(&mut self, batch: &mut WriteBatch) {
        for key in std::mem::take(&mut self.dirty) {
            let full = table_key(self.id, &key);
            match self.rows.get(&key) {
                Some(v) => batch.put(full, v.clone()),
                None => batch.delete(full),
            }
        }
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

    #[test]
    fn delta_carries_only_changes_since_last_checkpoint() {
        let store = MemoryStore::new();
        let mut t = StateTable::new(7);
        t.insert(b"k1".to_vec(), b"v1".to_vec());
        t.insert(b"k2".to_vec(), b"v2".to_vec());
        let mut b = WriteBatch::default();
        t.take_delta(&mut b);
        assert_eq!(b.writes.len(), 2);
        store.commit(1, b).unwrap();

        t.remove(b"k1");
        let mut b = WriteBatch::default();
        t.take_delta(&mut b);
        assert_eq!(b.writes.len(), 1);
        store.commit(2, b).unwrap();
        let (_, rows) = store.scan_prefixes(&[table_prefix(7)]).unwrap();
        assert_eq!(rows[0].len(), 1);
        assert!(rows[0][0].0.ends_with(b"k2"));

        let restored = StateTable::restore(7, &store).unwrap();
        assert_eq!(restored.len(), 1);
        assert_eq!(restored.get(b"k2"), Some(&b"v2".to_vec()));
        let mut b = WriteBatch::default();
        let mut restored = restored;
        restored.take_delta(&mut b);
        assert!(b.is_empty());
    }
}
