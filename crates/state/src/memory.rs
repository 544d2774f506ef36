use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use tidemark_types::Epoch;

use crate::store::Entries;
use crate::{Error, Result, StateStore, WriteBatch};

/// An in-memory store for tests and ephemeral servers. Commits take a write lock,
/// so a scan under the read lock always sees whole epochs.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    committed: Epoch,
    data: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

fn prefix_range<'a>(
    data: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    prefix: &'a [u8],
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a {
    data.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

impl StateStore for MemoryStore {
    fn commit(&self, epoch: Epoch, batch: WriteBatch) -> Result<()> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if epoch <= inner.committed {
            return Err(Error::EpochOrder {
                epoch,
                committed: inner.committed,
            });
        }
        for prefix in &batch.delete_prefixes {
            let doomed: Vec<Vec<u8>> = prefix_range(&inner.data, prefix)
                .map(|(k, _)| k.clone())
                .collect();
            for key in doomed {
                inner.data.remove(&key);
            }
        }
        for (key, value) in batch.writes {
            match value {
                Some(v) => inner.data.insert(key, v),
                None => inner.data.remove(&key),
            };
        }
        inner.committed = epoch;
        Ok(())
    }

    fn committed_epoch(&self) -> Epoch {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .committed
    }

    fn scan_prefixes(&self, prefixes: &[Vec<u8>]) -> Result<(Epoch, Vec<Entries>)> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let out = prefixes
            .iter()
            .map(|p| {
                prefix_range(&inner.data, p)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .collect();
        Ok((inner.committed, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_is_atomic_and_ordered() {
        let store = MemoryStore::new();
        let mut b = WriteBatch::default();
        b.put(b"a1".to_vec(), b"x".to_vec());
        b.put(b"a2".to_vec(), b"y".to_vec());
        b.put(b"b1".to_vec(), b"z".to_vec());
        store.commit(1, b).unwrap();
        let (epoch, rows) = store.scan_prefixes(&[b"a".to_vec()]).unwrap();
        assert_eq!(epoch, 1);
        assert_eq!(rows[0].len(), 2);

        let mut b = WriteBatch::default();
        b.delete_prefixes.push(b"a".to_vec());
        b.put(b"a3".to_vec(), b"w".to_vec());
        store.commit(2, b).unwrap();
        let (_, rows) = store
            .scan_prefixes(&[b"a".to_vec(), b"b".to_vec()])
            .unwrap();
        assert_eq!(rows[0], vec![(b"a3".to_vec(), b"w".to_vec())]);
        assert_eq!(rows[1].len(), 1);

        assert!(store.commit(2, WriteBatch::default()).is_err());
        assert_eq!(store.committed_epoch(), 2);
    }
}
