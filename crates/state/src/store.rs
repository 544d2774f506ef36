use tidemark_types::Epoch;

use crate::Result;

/// One change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put(Vec<u8>),
    Delete,
    /// Adds to a multiplicity (i64 big-endian, absent = 0); a sum of 0 removes
    /// the key. Lets writers change a count without reading it first, so a
    /// view's rows need not be kept in memory to be counted.
    AddCount(i64),
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
    /// same committed epoch (returned alongside).
    fn scan_prefixes(&self, prefixes: &[Vec<u8>]) -> Result<(Epoch, Vec<Entries>)>;
}
