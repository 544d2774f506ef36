use tidemark_types::Epoch;

use crate::{Page, Result, Snapshot};

/// One change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put(Vec<u8>),
    Delete,
    /// Adds to a multiplicity (i64 big-endian, absent = 0); a key whose sum is
    /// 0 reads as absent. Lets writers change a count without reading it, and
    /// lets the store add it up without reading it either (RocksDB merges
    /// them), so a view's rows need not be kept in memory to be counted.
    ///
    /// A key is counted or put, never both: the counts live apart (in RocksDB,
    /// their own column family), and a scan that meets one key both ways
    /// fails as corrupt.
    AddCount(i64),
}

impl Write {
    /// Bytes of the value it writes (a count is 8).
    pub fn value_len(&self) -> usize {
        match self {
            Write::Put(v) => v.len(),
            Write::Delete => 0,
            Write::AddCount(_) => 8,
        }
    }
}

/// The changes of one epoch, applied all at once or not at all.
#[derive(Debug, Default)]
pub struct WriteBatch {
    /// Applied in order.
    pub writes: Vec<(Vec<u8>, Write)>,
    /// Key prefixes whose every entry is deleted (dropped tables), before `writes`.
    pub delete_prefixes: Vec<Vec<u8>>,
}

impl WriteBatch {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.push((key, Write::Put(value)));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.push((key, Write::Delete));
    }

    pub fn add_count(&mut self, key: Vec<u8>, delta: i64) {
        self.writes.push((key, Write::AddCount(delta)));
    }

    pub fn append(&mut self, mut other: WriteBatch) {
        self.writes.append(&mut other.writes);
        self.delete_prefixes.append(&mut other.delete_prefixes);
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.delete_prefixes.is_empty()
    }
}

/// Committed entries (full key, value) of one prefix, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Durable, epoch-committed key-value state. Readers only ever see whole epochs:
/// everything a commit writes becomes visible at once, together with its epoch.
pub trait StateStore: Send + Sync + 'static {
    /// Applies `batch` atomically and records `epoch` as the committed epoch.
    /// Epochs must increase.
    fn commit(&self, epoch: Epoch, batch: WriteBatch) -> Result<()>;

    /// The last committed epoch (0 before the first commit).
    fn committed_epoch(&self) -> Epoch;

    /// The committed entries under each prefix, in key order, all read from the
    /// same committed epoch (returned alongside). Counted keys come with their
    /// count, those at 0 not at all.
    fn scan_prefixes(&self, prefixes: &[Vec<u8>]) -> Result<(Epoch, Vec<Entries>)>;

    /// The committed values of put `keys` (`None`: absent), in order; counted
    /// keys are read by scans only. A commit running meanwhile is seen whole
    /// or not at all for each key.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Up to `limit` committed entries under `prefix` with keys after
    /// `after` (from the first, when `None`), in key order, put and counted
    /// as [`Self::scan_prefixes`] reads them: a table read in pages, so a
    /// reader holds one page in memory, not the table. Each page is read
    /// from one committed epoch; successive pages may see later ones.
    fn scan_page(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Page>;

    /// A consistent read of the last committed epoch under `prefixes`, held
    /// until dropped: every relation one query reads, read page by page.
    fn snapshot(self: std::sync::Arc<Self>, prefixes: Vec<Vec<u8>>) -> Result<Snapshot>;

    /// Stops the store's background work (RocksDB's flushes and
    /// compactions), waiting for what runs, before the process exits: exiting
    /// while it runs can crash the process. Committed data is in the log.
    fn close(&self) {}

    /// What the store's own memory holds, by part, in bytes: where a
    /// server's memory goes, next to its operators'.
    fn memory_usage(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Writes a consistent copy of the last committed epoch to `dir` (which
    /// must not exist yet), from which a server can start; returns its epoch.
    fn savepoint(&self, _dir: &std::path::Path) -> Result<Epoch> {
        Err(crate::Error::Unsupported(
            "savepoints need the rocksdb state backend".into(),
        ))
    }
}

/// The table a full store key belongs to, for error messages.
pub(crate) fn table_of(key: &[u8]) -> u32 {
    key.get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0)
}
