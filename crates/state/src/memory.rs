use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use tidemark_types::Epoch;

use crate::keys::key_after;
use crate::page::{merge_runs, IterRun, Page};
use crate::relation::{decode_count, encode_count};
use crate::store::{table_of, Entries, Write};
use crate::{Error, Result, Snapshot, StateStore, WriteBatch};

/// An in-memory store for tests and ephemeral servers. Commits take a write lock,
/// so a scan under the read lock always sees whole epochs.
///
/// Like RocksDB, keeps counted keys apart from put ones, so a writer that
/// mixes them fails here too. A commit that fails midway leaves the store
/// refusing all further use rather than serving a half-applied epoch.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    committed: Epoch,
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Keys written with [`Write::AddCount`], with their (non-zero) counts.
    counts: BTreeMap<Vec<u8>, Vec<u8>>,
    broken: Option<String>,
}

impl Inner {
    fn check(&self) -> Result<()> {
        match &self.broken {
            Some(reason) => Err(Error::Corrupt {
                table: 0,
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn apply(&mut self, mut batch: WriteBatch) -> Result<()> {
        use std::collections::btree_map::Entry;
        for prefix in &batch.delete_prefixes {
            for map in [&mut self.data, &mut self.counts] {
                let doomed: Vec<Vec<u8>> =
                    prefix_range(map, prefix).map(|(k, _)| k.clone()).collect();
                for key in doomed {
                    map.remove(&key);
                }
            }
        }
        // In key order, the tree nodes one write touches are still in cache for
        // the next. The sort is stable: writes to one key keep their order.
        batch.writes.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, write) in batch.writes {
            match write {
                Write::Put(v) => {
                    self.data.insert(key, v);
                }
                Write::Delete => {
                    self.data.remove(&key);
                }
                Write::AddCount(delta) => match self.counts.entry(key) {
                    Entry::Occupied(mut e) => {
                        let table = table_of(e.key());
                        let count = decode_count(table, e.get())? + delta;
                        if count == 0 {
                            e.remove();
                        } else {
                            *e.get_mut() = encode_count(count);
                        }
                    }
                    Entry::Vacant(e) => {
                        if delta != 0 {
                            e.insert(encode_count(delta));
                        }
                    }
                },
            }
        }
        Ok(())
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the committed entries under `prefixes`, served by a reader
    /// thread like RocksDB's snapshots, so both backends read alike.
    pub fn read_snapshot(&self, prefixes: Vec<Vec<u8>>) -> Result<Snapshot> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.check()?;
        let copy = |map: &BTreeMap<Vec<u8>, Vec<u8>>| -> BTreeMap<Vec<u8>, Vec<u8>> {
            prefixes
                .iter()
                .flat_map(|p| prefix_range(map, p).map(|(k, v)| (k.clone(), v.clone())))
                .collect()
        };
        let (data, counts, epoch) = (copy(&inner.data), copy(&inner.counts), inner.committed);
        drop(inner);
        let (snapshot, _thread) =
            crate::snapshot::start(prefixes, Arc::default(), move |reader| {
                reader.serve(Ok(epoch), |prefix, from, limit| {
                    let mut page = Page::default();
                    read_merged(&data, &counts, prefix, from, limit, |k, v| page.push(k, v))?;
                    Ok(page)
                })
            })?;
        Ok(snapshot)
    }
}

/// Hands `out` up to `limit` entries under `prefix` from `from` on, put
/// (`data`) and counted (`counts`), in key order.
fn read_merged(
    data: &BTreeMap<Vec<u8>, Vec<u8>>,
    counts: &BTreeMap<Vec<u8>, Vec<u8>>,
    prefix: &[u8],
    from: &[u8],
    limit: usize,
    out: impl FnMut(&[u8], &[u8]),
) -> Result<()> {
    let run = |map| {
        IterRun::new(
            prefix_range_from(map, prefix, from).map(|(k, v)| (k.as_slice(), v.as_slice())),
        )
    };
    merge_runs(&mut run(data), &mut run(counts), limit, out)
}

fn prefix_range<'a>(
    data: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    prefix: &'a [u8],
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a {
    prefix_range_from(data, prefix, prefix)
}

/// The entries under `prefix` with keys from `from` on.
fn prefix_range_from<'a>(
    data: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    prefix: &'a [u8],
    from: &'a [u8],
) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a {
    data.range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

impl StateStore for MemoryStore {
    fn commit(&self, epoch: Epoch, batch: WriteBatch) -> Result<()> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.check()?;
        if epoch <= inner.committed {
            return Err(Error::EpochOrder {
                epoch,
                committed: inner.committed,
            });
        }
        if let Err(e) = inner.apply(batch) {
            inner.broken = Some(format!("epoch {epoch} half applied: {e}"));
            return Err(e);
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
        inner.check()?;
        let mut out = Vec::with_capacity(prefixes.len());
        for p in prefixes {
            let mut entries = Vec::new();
            read_merged(&inner.data, &inner.counts, p, p, usize::MAX, |k, v| {
                entries.push((k.to_vec(), v.to_vec()))
            })?;
            out.push(entries);
        }
        Ok((inner.committed, out))
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.check()?;
        Ok(keys.iter().map(|k| inner.data.get(k).cloned()).collect())
    }

    fn snapshot(self: Arc<Self>, prefixes: Vec<Vec<u8>>) -> Result<Snapshot> {
        self.read_snapshot(prefixes)
    }

    fn scan_page(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Page> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.check()?;
        let from = after.map_or_else(|| prefix.to_vec(), key_after);
        let mut page = Page::default();
        read_merged(&inner.data, &inner.counts, prefix, &from, limit, |k, v| {
            page.push(k, v)
        })?;
        Ok(page)
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

    #[test]
    fn counts_add_up_and_vanish_at_zero() {
        let store = MemoryStore::new();
        let mut b = WriteBatch::default();
        b.add_count(b"r".to_vec(), 2);
        b.add_count(b"r".to_vec(), 1);
        b.add_count(b"s".to_vec(), 1);
        store.commit(1, b).unwrap();
        let (_, rows) = store.scan_prefixes(&[Vec::new()]).unwrap();
        assert_eq!(
            rows[0],
            vec![
                (b"r".to_vec(), encode_count(3)),
                (b"s".to_vec(), encode_count(1))
            ]
        );
        let mut b = WriteBatch::default();
        b.add_count(b"s".to_vec(), -1);
        b.add_count(b"t".to_vec(), 0);
        store.commit(2, b).unwrap();
        let (_, rows) = store.scan_prefixes(&[Vec::new()]).unwrap();
        assert_eq!(rows[0], vec![(b"r".to_vec(), encode_count(3))]);
    }

    #[test]
    fn a_key_both_put_and_counted_reads_as_corrupt() {
        let store = MemoryStore::new();
        let mut b = WriteBatch::default();
        b.put(b"r".to_vec(), b"xyz".to_vec());
        b.add_count(b"r".to_vec(), 1);
        store.commit(1, b).unwrap();
        let scanned = store.scan_prefixes(&[Vec::new()]);
        assert!(matches!(scanned, Err(Error::Corrupt { .. })), "{scanned:?}");
        assert_eq!(
            store.get_many(&[b"r".to_vec()]).unwrap(),
            vec![Some(b"xyz".to_vec())]
        );
    }
}
