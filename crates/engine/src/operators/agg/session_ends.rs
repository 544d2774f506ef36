//! Where a SESSION aggregate finds the sessions a watermark closes: an
//! index of (end, start, partition) entries, keyed state like the
//! partitions, so neither memory nor a restart holds one entry per open
//! session. Memory keeps only the entries the store may not have yet.
//!
//! An entry is filed when a session gets its start or end, and is never
//! updated: an extended, moved or merged session leaves a stale entry,
//! which the watermark reaching it finds out (and the aggregate re-files
//! the session at its new end). Every entry filed ends at or after the
//! watermark of its time, so a close at watermark `w` takes the entries
//! ending before `w`, and the store's entries before the last close's
//! watermark were all taken: each close reads only the store's new range.

use std::collections::BTreeSet;

use tidemark_state::WriteBatch;
use tidemark_types::Epoch;

use crate::durable::{time_key, KeyedReader};
use crate::{Error, Result};

/// The tag of the index's keys in the aggregate's keyed state (its
/// partitions' keys start with `1`).
const TAG: u8 = 2;

/// Entries scanned from the store at a time.
const PAGE: usize = 1024;

/// (end, start, partition key).
type Entry = (i64, i64, Vec<u8>);

fn stored_key((end, start, key): &Entry) -> Vec<u8> {
    [&[TAG][..], &time_key(*end), &time_key(*start), key].concat()
}

fn entry_of(stored: &[u8]) -> Result<Entry> {
    let time = |at: usize| -> Result<i64> {
        let bytes: [u8; 8] = stored
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Internal("a stored session end of too few bytes".into()))?;
        Ok(crate::durable::time_of_key(&bytes))
    };
    Ok((time(1)?, time(9)?, stored[17..].to_vec()))
}

#[derive(Default)]
pub(super) struct SessionEnds {
    /// Filed since the last checkpoint: not in the store.
    new: BTreeSet<Entry>,
    /// Written by a checkpoint (at that epoch) that may not have committed:
    /// the store's reads may not see them yet.
    saved: Vec<(Epoch, BTreeSet<Entry>)>,
    /// Taken from the store (or written to it) since the last checkpoint:
    /// its next checkpoint deletes them.
    taken: Vec<Entry>,
    /// No entry of the store not yet taken ends before this; `None` when it
    /// holds none.
    stored_from: Option<i64>,
}

impl SessionEnds {
    pub fn file(&mut self, end: i64, start: i64, key: &[u8]) {
        self.new.insert((end, start, key.to_vec()));
    }

    /// After a restore: the store holds every entry.
    pub fn restored(&mut self) {
        self.stored_from = Some(i64::MIN);
    }

    /// Takes the entries ending before `watermark`, by end: (partition key,
    /// start) of each session that may close.
    pub fn take_before(
        &mut self,
        watermark: i64,
        keyed: Option<&dyn KeyedReader>,
    ) -> Result<Vec<(Vec<u8>, i64)>> {
        let bound = (watermark, i64::MIN, Vec::new());
        let mut taken = split_below(&mut self.new, &bound);
        let mut stored = BTreeSet::new();
        for (_, entries) in &mut self.saved {
            stored.append(&mut split_below(entries, &bound));
        }
        if let Some(keyed) = keyed {
            stored.append(&mut self.scan_below(watermark, keyed)?);
        }
        self.taken.extend(stored.iter().cloned());
        taken.append(&mut stored);
        Ok(taken
            .into_iter()
            .map(|(_, start, key)| (key, start))
            .collect())
    }

    /// The store's entries ending before `watermark`; notes where its
    /// next one ends.
    fn scan_below(&mut self, watermark: i64, keyed: &dyn KeyedReader) -> Result<BTreeSet<Entry>> {
        let mut found = BTreeSet::new();
        let Some(from) = self.stored_from.filter(|&f| f < watermark) else {
            return Ok(found);
        };
        // Keys with an end at `from` are longer than this, so after it.
        let mut after = [&[TAG][..], &time_key(from)].concat();
        self.stored_from = None;
        loop {
            let page = keyed.scan_page(&[TAG], Some(&after), PAGE)?;
            let Some((last, _)) = page.last() else {
                return Ok(found);
            };
            after = last.clone();
            for (key, _) in &page {
                let entry = entry_of(key)?;
                if entry.0 >= watermark {
                    self.stored_from = Some(entry.0);
                    return Ok(found);
                }
                found.insert(entry);
            }
        }
    }

    /// Writes the entries filed since the last checkpoint (of `epoch`) and
    /// deletes those taken from the store.
    pub fn checkpoint(&mut self, epoch: Epoch, keyed: &mut WriteBatch) {
        for entry in self.taken.drain(..) {
            keyed.delete(stored_key(&entry));
        }
        let new = std::mem::take(&mut self.new);
        if new.is_empty() {
            return;
        }
        for entry in &new {
            keyed.put(stored_key(entry), Vec::new());
        }
        self.saved.push((epoch, new));
    }

    /// Forgets the entries written by checkpoints up to `committed`: the
    /// store's reads see them now.
    pub fn settle(&mut self, committed: Epoch) {
        let stored_from = &mut self.stored_from;
        self.saved.retain(|(epoch, entries)| {
            let keep = *epoch > committed;
            if let (false, Some((end, _, _))) = (keep, entries.first()) {
                *stored_from = Some(stored_from.map_or(*end, |f| f.min(*end)));
            }
            keep
        });
    }

    /// Entries in memory.
    #[cfg(test)]
    pub fn resident(&self) -> usize {
        self.new.len() + self.saved.iter().map(|(_, e)| e.len()).sum::<usize>()
    }
}

/// Takes the entries of `set` before `bound` out of it.
fn split_below(set: &mut BTreeSet<Entry>, bound: &Entry) -> BTreeSet<Entry> {
    let rest = set.split_off(bound);
    std::mem::replace(set, rest)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use tidemark_state::Write;

    use super::*;
    use crate::test_util::Lcg;

    /// A store whose reads see what has committed.
    #[derive(Default)]
    struct Store {
        map: BTreeMap<Vec<u8>, Vec<u8>>,
        committed: Epoch,
        pending: Option<(Epoch, WriteBatch)>,
    }

    impl Store {
        fn commit(&mut self) {
            if let Some((epoch, batch)) = self.pending.take() {
                for (key, write) in batch.writes {
                    match write {
                        Write::Put(v) => self.map.insert(key, v),
                        _ => self.map.remove(&key),
                    };
                }
                self.committed = epoch;
            }
        }
    }

    struct Reader(Arc<Mutex<Store>>);

    impl KeyedReader for Reader {
        fn get_many(&self, _: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
            unreachable!("the index is only scanned")
        }

        fn scan_page(
            &self,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            let store = self.0.lock().unwrap();
            let after = after.unwrap_or(prefix).to_vec();
            Ok(store
                .map
                .range(after.clone()..)
                .filter(|(k, _)| **k != after)
                .take_while(|(k, _)| k.starts_with(prefix))
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }

        fn committed_epoch(&self) -> Epoch {
            self.0.lock().unwrap().committed
        }
    }

    /// Against a model holding every entry: a close takes exactly the
    /// entries ending before its watermark, across checkpoints, commits
    /// that lag them, and restarts; memory keeps only uncommitted entries.
    #[test]
    fn takes_what_was_filed_before_the_watermark_once() {
        let mut most_resident = 0;
        for seed in 0..40u64 {
            let mut lcg = Lcg::new(seed);
            let store = Arc::new(Mutex::new(Store::default()));
            let mut ends = SessionEnds::default();
            let mut model: BTreeSet<Entry> = BTreeSet::new();
            let (mut watermark, mut epoch) = (0i64, 0);
            for step in 0..300 {
                match lcg.next(6) {
                    0..=2 => {
                        let end = watermark + lcg.next(40) as i64;
                        let start = end - lcg.next(10) as i64;
                        let key = vec![lcg.next(4) as u8; lcg.next(3) as usize];
                        ends.file(end, start, &key);
                        model.insert((end, start, key));
                    }
                    3 => {
                        watermark += lcg.next(12) as i64;
                        let reader = Reader(Arc::clone(&store));
                        let got = ends.take_before(watermark, Some(&reader)).unwrap();
                        let rest = model.split_off(&(watermark, i64::MIN, Vec::new()));
                        let want: Vec<(Vec<u8>, i64)> =
                            model.into_iter().map(|(_, s, k)| (k, s)).collect();
                        model = rest;
                        assert_eq!(got, want, "seed {seed}, step {step}");
                    }
                    4 => {
                        let mut store = store.lock().unwrap();
                        // Commits lag a checkpoint, as the committer's do.
                        if lcg.next(2) == 0 {
                            store.commit();
                        }
                        if store.pending.is_none() {
                            epoch += 1;
                            let mut batch = WriteBatch::default();
                            ends.checkpoint(epoch, &mut batch);
                            store.pending = Some((epoch, batch));
                        }
                        ends.settle(store.committed);
                    }
                    _ => {
                        // A clean stop: a last checkpoint, committed, then
                        // a restart from the store alone.
                        let mut store = store.lock().unwrap();
                        store.commit();
                        epoch += 1;
                        let mut batch = WriteBatch::default();
                        ends.checkpoint(epoch, &mut batch);
                        store.pending = Some((epoch, batch));
                        store.commit();
                        ends = SessionEnds::default();
                        ends.restored();
                    }
                }
                most_resident = most_resident.max(ends.resident());
            }
        }
        assert!(most_resident < 150, "{most_resident} entries in memory");
    }
}
