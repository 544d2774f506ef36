//! The durable store: RocksDB in `<data dir>/state`. One commit is one RocksDB
//! write batch holding the epoch's changes and the new committed epoch, written
//! with a synced WAL, so after a crash the store is exactly at some committed
//! epoch. Readers scan from one RocksDB snapshot, which sees whole epochs.
//!
//! Counted keys (view rows) live in their own column family, whose merge
//! operator adds the deltas up: a commit writes a count change without
//! reading the count, and a count at 0 is skipped by scans and dropped by
//! compaction.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, ErrorKind, Options,
    PrefixRange, ReadOptions, WriteOptions, DB,
};
use tidemark_types::Epoch;

use crate::keys::key_after;
use crate::page::{merge_runs, Page, Run};
use crate::relation::{decode_count, encode_count};
use crate::store::{table_of, Entries, Write};
use crate::{Error, Result, Snapshot, StateStore, WriteBatch};

/// Column family of the store's own records (epoch, format).
const META_CF: &str = "tidemark_meta";
/// Column family of the counted keys ([`Write::AddCount`]).
const COUNTS_CF: &str = "tidemark_counts";
const COMMITTED_KEY: &[u8] = b"committed_epoch";
const FORMAT_KEY: &[u8] = b"format";

/// The on-disk format this build reads and writes. A store written by a build
/// with another format is refused at open rather than misread. 4: a plain
/// `GROUP BY` over input that only inserts stores its groups' states as
/// DataFusion's group accumulators give them, without a row count (3's
/// states would read back wrongly: an average of no values as NaN). 5: a
/// TUMBLE aggregate keeps each group as keyed state, by window start then
/// key, instead of each window whole. 6: a SESSION aggregate keeps each
/// partition's sessions as keyed state, and only their starts and ends with
/// the state restored whole. 7: a HOP aggregate keeps each slice's groups
/// as keyed state, by slice start then key, instead of each slice whole;
/// SESSION's index of session ends is keyed state, not restored whole.
pub const STORE_FORMAT: u32 = 8;

/// How the RocksDB store is tuned.
#[derive(Debug, Clone)]
pub struct RocksDbOptions {
    /// Bytes of the block cache, shared by every table: what bounds the
    /// memory reads use, whatever the state's size.
    pub cache_bytes: usize,
}

impl Default for RocksDbOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 256 << 20,
        }
    }
}

pub struct RocksDbStore {
    db: DB,
    path: PathBuf,
    committed: AtomicU64,
    /// Commits one at a time, in epoch order.
    commit_lock: Mutex<()>,
    /// Why the store stopped accepting commits (a write failed midway).
    broken: Mutex<Option<String>>,
    /// Set by [`StateStore::close`]: snapshot readers end, none start.
    closing: Arc<AtomicBool>,
    /// The snapshot reader threads, joined at close: a thread that used
    /// RocksDB must not end while the process exits.
    readers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for RocksDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbStore")
            .field("path", &self.path)
            .field("committed", &self.committed)
            .finish()
    }
}

fn storage(path: &Path, what: &str, e: rocksdb::Error) -> Error {
    Error::Storage {
        path: path.to_path_buf(),
        reason: format!("{what}: {e}"),
    }
}

/// A write batch record's bytes besides key and value: its type, column
/// family and two length varints, at most.
const RECORD_OVERHEAD: usize = 1 + 5 + 5 + 5;

impl RocksDbStore {
    /// Opens the store in `path`, creating it when the directory is absent or
    /// empty. Refuses a directory that holds something else, a store of
    /// another format, one that is corrupt, and one another process has open.
    pub fn open(path: &Path, options: &RocksDbOptions) -> Result<Self> {
        let exists = path.join("CURRENT").exists();
        if !exists && dir_has_entries(path)? {
            return Err(Error::NotAStore {
                path: path.to_path_buf(),
            });
        }
        let mut db_options = Options::default();
        db_options.create_if_missing(!exists);
        db_options.create_missing_column_families(!exists);
        db_options.increase_parallelism(2);
        db_options.set_compression_type(DBCompressionType::Lz4);
        db_options.set_bottommost_compression_type(DBCompressionType::Zstd);
        db_options.set_write_buffer_size(64 << 20);
        // The small meta column family is written by every commit and would
        // otherwise keep every WAL file alive: a kill -9 then replays them
        // all at start. Past this size RocksDB flushes the column families
        // that hold the oldest WAL back.
        db_options.set_max_total_wal_size(256 << 20);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(options.cache_bytes));
        table.set_bloom_filter(10.0, false);
        db_options.set_block_based_table_factory(&table);
        let mut counts_options = db_options.clone();
        counts_options.set_merge_operator_associative("tidemark_add_count", add_counts);
        counts_options.set_compaction_filter("tidemark_drop_zero_counts", drop_zero_counts);
        let known = [
            (rocksdb::DEFAULT_COLUMN_FAMILY_NAME, db_options.clone()),
            (META_CF, Options::default()),
            (COUNTS_CF, counts_options),
        ];
        // A store of an older format may lack a family this one has: open
        // what it has, so the format check below names the mismatch.
        let present = if exists {
            DB::list_cf(&db_options, path).map_err(|e| open_error(path, e))?
        } else {
            known.iter().map(|(name, _)| name.to_string()).collect()
        };
        let mut families = Vec::with_capacity(present.len());
        for name in &present {
            match known.iter().find(|(known, _)| known == name) {
                Some((name, options)) => {
                    families.push(ColumnFamilyDescriptor::new(*name, options.clone()))
                }
                None => {
                    return Err(Error::NotAStore {
                        path: path.to_path_buf(),
                    })
                }
            }
        }
        let db = DB::open_cf_descriptors(&db_options, path, families)
            .map_err(|e| open_error(path, e))?;
        let store = Self {
            db,
            path: path.to_path_buf(),
            committed: AtomicU64::new(0),
            commit_lock: Mutex::new(()),
            broken: Mutex::new(None),
            closing: Arc::default(),
            readers: Mutex::default(),
        };
        store.check_format(exists)?;
        store.counts()?;
        let committed = store.read_committed()?;
        store.committed.store(committed, Ordering::SeqCst);
        tracing::info!(path = %path.display(), committed, "state store open");
        Ok(store)
    }

    fn meta(&self) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(META_CF).ok_or_else(|| Error::NotAStore {
            path: self.path.clone(),
        })
    }

    /// The column family of the state tables.
    fn data(&self) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .ok_or_else(|| Error::NotAStore {
                path: self.path.clone(),
            })
    }

    /// The column family of the counted keys.
    fn counts(&self) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(COUNTS_CF).ok_or_else(|| Error::Corrupt {
            table: 0,
            reason: format!("{}: no {COUNTS_CF} column family", self.path.display()),
        })
    }

    fn check_format(&self, existed: bool) -> Result<()> {
        let meta = self.meta()?;
        let found = self
            .db
            .get_cf(meta, FORMAT_KEY)
            .map_err(|e| storage(&self.path, "reading the format", e))?;
        match found {
            None if !existed => {
                let mut options = WriteOptions::default();
                options.set_sync(true);
                let mut batch = rocksdb::WriteBatch::default();
                batch.put_cf(meta, FORMAT_KEY, STORE_FORMAT.to_be_bytes());
                batch.put_cf(meta, COMMITTED_KEY, 0u64.to_be_bytes());
                self.db
                    .write_opt(batch, &options)
                    .map_err(|e| storage(&self.path, "writing the format", e))
            }
            None => Err(Error::NotAStore {
                path: self.path.clone(),
            }),
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| Error::Corrupt {
                        table: 0,
                        reason: format!("format record of {} bytes", bytes.len()),
                    })?;
                if found == STORE_FORMAT {
                    Ok(())
                } else {
                    Err(Error::Incompatible {
                        path: self.path.clone(),
                        found,
                        expected: STORE_FORMAT,
                    })
                }
            }
        }
    }

    fn read_committed(&self) -> Result<Epoch> {
        let bytes = self
            .db
            .get_cf(self.meta()?, COMMITTED_KEY)
            .map_err(|e| storage(&self.path, "reading the committed epoch", e))?;
        decode_epoch(bytes.as_deref())
    }

    fn check(&self) -> Result<()> {
        match &*self.broken.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(reason) => Err(Error::Storage {
                path: self.path.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn copy_to(&self, dir: &Path) -> Result<Epoch> {
        let _commits = self.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.check()?;
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db)
            .map_err(|e| storage(&self.path, "starting a savepoint", e))?;
        checkpoint
            .create_checkpoint(dir)
            .map_err(|e| storage(dir, "writing a savepoint", e))?;
        Ok(self.committed.load(Ordering::SeqCst))
    }

    /// The RocksDB batch of one commit. Writes apply in order; nothing is
    /// read, since counts are merged by RocksDB.
    fn build_batch(&self, epoch: Epoch, batch: WriteBatch) -> Result<rocksdb::WriteBatch> {
        // Reserved whole: grown by doubling, copying the batch's hundreds of
        // MiB took a third of a large commit.
        let reserve: usize = batch
            .writes
            .iter()
            .map(|(k, w)| RECORD_OVERHEAD + k.len() + w.value_len())
            .sum();
        let mut out = rocksdb::WriteBatch::with_capacity_bytes(reserve + 64);
        let data = self.data()?;
        let counts = self.counts()?;
        for prefix in &batch.delete_prefixes {
            for family in [data, counts] {
                match prefix_end(prefix) {
                    Some(end) => out.delete_range_cf(family, prefix.as_slice(), end.as_slice()),
                    None => {
                        for item in self.db.prefix_iterator_cf(family, prefix) {
                            let (key, _) = item.map_err(|e| storage(&self.path, "scanning", e))?;
                            if !key.starts_with(prefix) {
                                break;
                            }
                            out.delete_cf(family, key);
                        }
                    }
                }
            }
        }
        for (key, write) in batch.writes {
            match write {
                Write::Put(value) => out.put_cf(data, key, value),
                Write::Delete => out.delete_cf(data, key),
                Write::AddCount(delta) => out.merge_cf(counts, key, delta.to_be_bytes()),
            }
        }
        out.put_cf(self.meta()?, COMMITTED_KEY, epoch.to_be_bytes());
        Ok(out)
    }

    /// The committed epoch `snapshot` sees.
    fn epoch_at(&self, snapshot: &rocksdb::Snapshot<'_>) -> Result<Epoch> {
        let committed = snapshot
            .get_cf(self.meta()?, COMMITTED_KEY)
            .map_err(|e| storage(&self.path, "reading the committed epoch", e))?;
        decode_epoch(committed.as_deref())
    }

    /// Hands `out` up to `limit` entries under `prefix` from `from` on, put
    /// and counted, in key order, read from `snapshot` (the last committed
    /// epoch, when `None`). Entries are borrowed from RocksDB's blocks, not
    /// copied until `out` copies them.
    fn read_merged(
        &self,
        snapshot: Option<&rocksdb::Snapshot<'_>>,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
        out: impl FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        let run = |family| {
            let mut options = ReadOptions::default();
            options.set_iterate_range(PrefixRange(prefix.to_vec()));
            if let Some(snapshot) = snapshot {
                options.set_snapshot(snapshot);
            }
            let mut iter = self.db.raw_iterator_cf_opt(family, options);
            iter.seek(from);
            let run = RawRun {
                iter,
                path: &self.path,
            };
            run.status().map(|()| run)
        };
        let mut puts = run(self.data()?)?;
        let mut counts = run(self.counts()?)?;
        merge_runs(&mut puts, &mut counts, limit, out)
    }
}

/// A RocksDB iterator as a [`Run`].
struct RawRun<'a> {
    iter: rocksdb::DBRawIteratorWithThreadMode<'a, DB>,
    path: &'a Path,
}

impl RawRun<'_> {
    /// An iterator that stops early says why here.
    fn status(&self) -> Result<()> {
        self.iter
            .status()
            .map_err(|e| storage(self.path, "scanning", e))
    }
}

impl Run for RawRun<'_> {
    fn entry(&self) -> Option<(&[u8], &[u8])> {
        self.iter.item()
    }

    fn advance(&mut self) -> Result<()> {
        self.iter.next();
        self.status()
    }
}

/// The merge operator of the counts family: the stored count (absent: 0) plus
/// every delta, all i64 big-endian. A value of another size fails the read
/// (RocksDB reports it as corruption) rather than be misread.
fn add_counts(
    key: &[u8],
    existing: Option<&[u8]>,
    deltas: &rocksdb::MergeOperands,
) -> Option<Vec<u8>> {
    let decode = |bytes: &[u8]| decode_count(table_of(key), bytes).ok();
    let mut sum = match existing {
        Some(bytes) => decode(bytes)?,
        None => 0,
    };
    for delta in deltas.iter() {
        sum = sum.checked_add(decode(delta)?)?;
    }
    Some(encode_count(sum))
}

/// Drops counts that came to 0 (they read as absent). RocksDB turns a removed
/// value into a deletion, so an older count below cannot resurface.
fn drop_zero_counts(
    _level: u32,
    _key: &[u8],
    value: &[u8],
) -> rocksdb::compaction_filter::Decision {
    if value == [0u8; 8] {
        rocksdb::compaction_filter::Decision::Remove
    } else {
        rocksdb::compaction_filter::Decision::Keep
    }
}

fn decode_epoch(bytes: Option<&[u8]>) -> Result<Epoch> {
    match bytes {
        None => Ok(0),
        Some(b) => <[u8; 8]>::try_from(b)
            .map(u64::from_be_bytes)
            .map_err(|_| Error::Corrupt {
                table: 0,
                reason: format!("committed epoch of {} bytes", b.len()),
            }),
    }
}

fn open_error(path: &Path, e: rocksdb::Error) -> Error {
    let text = e.to_string();
    match e.kind() {
        ErrorKind::IOError if text.contains("lock") || text.contains("LOCK") => Error::Locked {
            path: path.to_path_buf(),
        },
        ErrorKind::Corruption => Error::Corrupt {
            table: 0,
            reason: format!("{}: {text}", path.display()),
        },
        ErrorKind::InvalidArgument if text.contains("Column famil") => Error::NotAStore {
            path: path.to_path_buf(),
        },
        _ => Error::Storage {
            path: path.to_path_buf(),
            reason: format!("opening: {text}"),
        },
    }
}

fn dir_has_entries(path: &Path) -> Result<bool> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::Storage {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// The first key after every key starting with `prefix` (`None`: there is none).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl StateStore for RocksDbStore {
    fn commit(&self, epoch: Epoch, batch: WriteBatch) -> Result<()> {
        let _commits = self.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.check()?;
        let committed = self.committed.load(Ordering::SeqCst);
        if epoch <= committed {
            return Err(Error::EpochOrder { epoch, committed });
        }
        let write = self.build_batch(epoch, batch)?;
        let mut options = WriteOptions::default();
        options.set_sync(true);
        if let Err(e) = self.db.write_opt(write, &options) {
            // Whether any of it reached the disk is unknown: stop, and let a
            // restart recover from the log.
            let reason = format!("epoch {epoch} was not written: {e}");
            *self.broken.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
            return Err(Error::Storage {
                path: self.path.clone(),
                reason,
            });
        }
        self.committed.store(epoch, Ordering::SeqCst);
        Ok(())
    }

    fn committed_epoch(&self) -> Epoch {
        self.committed.load(Ordering::SeqCst)
    }

    fn savepoint(&self, dir: &Path) -> Result<Epoch> {
        self.copy_to(dir)
    }

    fn scan_prefixes(&self, prefixes: &[Vec<u8>]) -> Result<(Epoch, Vec<Entries>)> {
        self.check()?;
        let snapshot = self.db.snapshot();
        let committed = self.epoch_at(&snapshot)?;
        let mut out = Vec::with_capacity(prefixes.len());
        for prefix in prefixes {
            let mut entries = Vec::new();
            self.read_merged(Some(&snapshot), prefix, prefix, usize::MAX, |k, v| {
                entries.push((k.to_vec(), v.to_vec()))
            })?;
            out.push(entries);
        }
        Ok((committed, out))
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        self.check()?;
        let data = self.data()?;
        self.db
            .batched_multi_get_cf(data, keys.iter(), false)
            .into_iter()
            .map(|got| match got {
                Ok(v) => Ok(v.map(|v| v.to_vec())),
                Err(e) => Err(storage(&self.path, "reading a key", e)),
            })
            .collect()
    }

    fn snapshot(self: Arc<Self>, prefixes: Vec<Vec<u8>>) -> Result<Snapshot> {
        self.check()?;
        // Held while starting, so a close either refuses this reader or
        // joins it.
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        readers.retain(|r| !r.is_finished());
        let store = Arc::clone(&self);
        let (snapshot, thread) =
            crate::snapshot::start(prefixes, Arc::clone(&self.closing), move |reader| {
                let snapshot = store.db.snapshot();
                let epoch = store.epoch_at(&snapshot);
                reader.serve(epoch, |prefix, from, limit| {
                    let mut page = Page::default();
                    store.read_merged(Some(&snapshot), prefix, from, limit, |k, v| {
                        page.push(k, v)
                    })?;
                    Ok(page)
                });
            })?;
        readers.push(thread);
        Ok(snapshot)
    }

    fn memory_usage(&self) -> Vec<(&'static str, u64)> {
        let families = [self.meta(), self.data(), self.counts()];
        // Memtables and table readers are per column family; the block
        // cache is one for all of them.
        let per_family = |property: &str| -> u64 {
            families
                .iter()
                .filter_map(|f| f.as_ref().ok())
                .filter_map(|f| self.db.property_int_value_cf(f, property).ok().flatten())
                .sum()
        };
        let whole = |property: &str| self.db.property_int_value(property).ok().flatten();
        vec![
            (
                "rocksdb block cache",
                whole("rocksdb.block-cache-usage").unwrap_or(0),
            ),
            (
                "rocksdb block cache pinned",
                whole("rocksdb.block-cache-pinned-usage").unwrap_or(0),
            ),
            (
                "rocksdb memtables",
                per_family("rocksdb.cur-size-all-mem-tables"),
            ),
            (
                "rocksdb table readers",
                per_family("rocksdb.estimate-table-readers-mem"),
            ),
        ]
    }

    fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(|e| e.into_inner()));
        for reader in readers {
            // A reader that panicked has nothing left to stop.
            let _ = reader.join();
        }
        self.db.cancel_all_background_work(true);
    }

    fn scan_page(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Page> {
        self.check()?;
        let from = after.map_or_else(|| prefix.to_vec(), key_after);
        let mut page = Page::default();
        self.read_merged(None, prefix, &from, limit, |k, v| page.push(k, v))?;
        Ok(page)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::relation::encode_count;

    fn open(dir: &Path) -> RocksDbStore {
        RocksDbStore::open(dir, &RocksDbOptions::default()).expect("opens")
    }

    fn scan(store: &RocksDbStore, prefix: &[u8]) -> (Epoch, Entries) {
        let (epoch, mut rows) = store.scan_prefixes(&[prefix.to_vec()]).unwrap();
        (epoch, rows.remove(0))
    }

    #[test]
    fn commits_survive_reopening_whole() {
        let dir = tempdir("reopen");
        {
            let store = open(&dir);
            let mut b = WriteBatch::default();
            b.put(b"a1".to_vec(), b"x".to_vec());
            b.put(b"a2".to_vec(), b"y".to_vec());
            b.add_count(b"c1".to_vec(), 2);
            store.commit(1, b).unwrap();
            let mut b = WriteBatch::default();
            b.delete_prefixes.push(b"a".to_vec());
            b.put(b"a3".to_vec(), b"w".to_vec());
            b.add_count(b"c1".to_vec(), 1);
            b.add_count(b"c2".to_vec(), -1);
            b.add_count(b"c2".to_vec(), 1);
            store.commit(2, b).unwrap();
            assert!(store.commit(2, WriteBatch::default()).is_err());
        }
        let store = open(&dir);
        assert_eq!(store.committed_epoch(), 2);
        assert_eq!(
            scan(&store, b"a"),
            (2, vec![(b"a3".to_vec(), b"w".to_vec())])
        );
        assert_eq!(
            scan(&store, b"c").1,
            vec![(b"c1".to_vec(), encode_count(3))]
        );
        let mut b = WriteBatch::default();
        b.add_count(b"c1".to_vec(), -3);
        store.commit(3, b).unwrap();
        assert_eq!(scan(&store, b"c"), (3, Vec::new()));
    }

    #[test]
    fn pages_read_keys_of_one_prefix_after_a_key() {
        let dir = tempdir("pages");
        let rocks: Arc<dyn StateStore> = Arc::new(open(&dir));
        let memory: Arc<dyn StateStore> = Arc::new(crate::MemoryStore::new());
        for store in [rocks, memory] {
            let mut b = WriteBatch::default();
            for k in ["a0", "b1", "b2", "b3", "b4", "c0"] {
                b.put(k.as_bytes().to_vec(), k.as_bytes().to_vec());
            }
            b.add_count(b"b25".to_vec(), 2);
            b.add_count(b"b35".to_vec(), 1);
            b.add_count(b"b35".to_vec(), -1);
            store.commit(1, b).unwrap();
            let keys = |page: Page| -> Vec<String> {
                page.iter()
                    .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
                    .collect()
            };
            assert_eq!(
                keys(store.scan_page(b"b", None, 3).unwrap()),
                ["b1", "b2", "b25"]
            );
            let page = store.scan_page(b"b", Some(b"b2"), 1).unwrap();
            let count = encode_count(2);
            assert_eq!(page.iter().collect::<Vec<_>>(), [(&b"b25"[..], &count[..])]);
            assert_eq!(
                keys(store.scan_page(b"b", Some(b"b25"), 3).unwrap()),
                ["b3", "b4"]
            );
            assert_eq!(
                keys(store.scan_page(b"b", Some(b"b4"), 3).unwrap()),
                Vec::<String>::new()
            );
            assert_eq!(keys(store.scan_page(b"b", Some(b"b"), 1).unwrap()), ["b1"]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_scan_sees_one_epoch_while_commits_go_on() {
        let dir = tempdir("snapshot");
        let store = std::sync::Arc::new(open(&dir));
        let writer = {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || {
                for epoch in 1..=200u64 {
                    let mut b = WriteBatch::default();
                    // Every epoch rewrites both keys with its own number.
                    b.put(b"k1".to_vec(), epoch.to_be_bytes().to_vec());
                    b.put(b"k2".to_vec(), epoch.to_be_bytes().to_vec());
                    store.commit(epoch, b).unwrap();
                }
            })
        };
        while !writer.is_finished() {
            let (epoch, rows) = scan(&store, b"k");
            if epoch > 0 {
                assert_eq!(rows.len(), 2);
                assert_eq!(rows[0].1, epoch.to_be_bytes().to_vec());
                assert_eq!(rows[1].1, epoch.to_be_bytes().to_vec());
            }
        }
        writer.join().unwrap();
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        let dir = tempdir("refuse");
        let store = open(&dir);
        let second = RocksDbStore::open(&dir, &RocksDbOptions::default());
        assert!(matches!(second, Err(Error::Locked { .. })), "{second:?}");
        drop(store);

        let other = tempdir("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("notes.txt"), "mine").unwrap();
        let opened = RocksDbStore::open(&other, &RocksDbOptions::default());
        assert!(matches!(opened, Err(Error::NotAStore { .. })), "{opened:?}");

        {
            let store = open(&dir);
            let mut batch = rocksdb::WriteBatch::default();
            batch.put_cf(store.meta().unwrap(), FORMAT_KEY, 99u32.to_be_bytes());
            store.db.write(batch).unwrap();
        }
        let opened = RocksDbStore::open(&dir, &RocksDbOptions::default());
        assert!(
            matches!(opened, Err(Error::Incompatible { found: 99, .. })),
            "{opened:?}"
        );
    }

    #[test]
    fn a_savepoint_opens_as_a_store_at_its_epoch() {
        let dir = tempdir("save");
        let store = open(&dir);
        let mut b = WriteBatch::default();
        b.put(b"k".to_vec(), b"v".to_vec());
        store.commit(4, b).unwrap();
        let copy = dir.with_extension("copy");
        assert_eq!(store.savepoint(&copy).unwrap(), 4);
        let mut b = WriteBatch::default();
        b.delete(b"k".to_vec());
        store.commit(5, b).unwrap();
        let restored = open(&copy);
        assert_eq!(
            scan(&restored, b"k"),
            (4, vec![(b"k".to_vec(), b"v".to_vec())])
        );
    }

    #[test]
    fn counts_merge_without_reads_and_zeros_leave_at_compaction() {
        let dir = tempdir("counts");
        {
            let store = open(&dir);
            let mut b = WriteBatch::default();
            b.add_count(b"v1".to_vec(), 1);
            b.add_count(b"v1".to_vec(), 1);
            b.add_count(b"v2".to_vec(), 1);
            b.put(b"v3".to_vec(), b"row".to_vec());
            store.commit(1, b).unwrap();
            let mut b = WriteBatch::default();
            b.add_count(b"v2".to_vec(), -1);
            b.add_count(b"v4".to_vec(), -2);
            store.commit(2, b).unwrap();
            assert_eq!(
                scan(&store, b"v").1,
                vec![
                    (b"v1".to_vec(), encode_count(2)),
                    (b"v3".to_vec(), b"row".to_vec()),
                    (b"v4".to_vec(), encode_count(-2)),
                ]
            );
            // A prefix deleted and counted again in one commit starts from 0.
            let mut b = WriteBatch::default();
            b.delete_prefixes.push(b"v1".to_vec());
            b.add_count(b"v1".to_vec(), 5);
            b.add_count(b"v4".to_vec(), 2);
            store.commit(3, b).unwrap();
        }
        let store = open(&dir);
        let expected = vec![
            (b"v1".to_vec(), encode_count(5)),
            (b"v3".to_vec(), b"row".to_vec()),
        ];
        assert_eq!(scan(&store, b"v"), (3, expected.clone()));
        let counts = store.counts().unwrap();
        store.db.flush_cf(counts).unwrap();
        store
            .db
            .compact_range_cf(counts, None::<&[u8]>, None::<&[u8]>);
        // Twice: the first compaction merges v2's and v4's operands to 0, the
        // second meets those zeros as values and drops them.
        store
            .db
            .compact_range_cf(counts, None::<&[u8]>, None::<&[u8]>);
        let raw: Vec<Vec<u8>> = store
            .db
            .iterator_cf(counts, rocksdb::IteratorMode::Start)
            .map(|item| item.unwrap().0.into_vec())
            .collect();
        assert_eq!(raw, vec![b"v1".to_vec()]);
        assert_eq!(scan(&store, b"v"), (3, expected));
    }

    #[test]
    fn a_store_of_the_previous_format_is_refused_by_name() {
        let dir = tempdir("format2");
        {
            let store = open(&dir);
            let mut batch = rocksdb::WriteBatch::default();
            batch.put_cf(store.meta().unwrap(), FORMAT_KEY, 2u32.to_be_bytes());
            store.db.write(batch).unwrap();
            let mut store = store;
            store.db.drop_cf(COUNTS_CF).unwrap();
        }
        let opened = RocksDbStore::open(&dir, &RocksDbOptions::default());
        assert!(
            matches!(opened, Err(Error::Incompatible { found: 2, .. })),
            "{opened:?}"
        );
    }

    /// A fresh directory under the system temp dir, for one test.
    pub(crate) fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tidemark-rocks-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(dir.with_extension("copy"));
        dir
    }
}
