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

    /// The committed values of `keys` (`None`: absent), in order. A commit
    /// running meanwhile is seen whole or not at all for each key.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Writes a consistent copy of the last committed epoch to `dir` (which
    /// must not exist yet), from which a server can start; returns its epoch.
    fn savepoint(&self, _dir: &std::path::Path) -> Result<Epoch> {
        Err(crate::Error::Unsupported(
            "savepoints need the rocksdb state backend".into(),
        ))
    }
}

/// What a commit's writes to one key come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// The key ends with this value (`None`: absent), whatever it held before.
    Set(Option<Vec<u8>>),
    /// The key's committed count changes by this much.
    Add(i64),
}

/// Folds a commit's writes into one effect per key, in key order, so a store
/// reads each counted key at most once. Writes to one key apply in order.
pub(crate) fn coalesce(mut writes: Vec<(Vec<u8>, Write)>) -> Result<Vec<(Vec<u8>, Effect)>> {
    writes.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(Vec<u8>, Effect)> = Vec::with_capacity(writes.len());
    for (key, write) in writes {
        let prior = match out.last_mut() {
            Some((k, effect)) if *k == key => Some(effect),
            _ => None,
        };
        let next = match (prior.as_deref(), write) {
            (_, Write::Put(v)) => Effect::Set(Some(v)),
            (_, Write::Delete) => Effect::Set(None),
            (None, Write::AddCount(d)) => Effect::Add(d),
            (Some(Effect::Add(n)), Write::AddCount(d)) => Effect::Add(n + d),
            (Some(Effect::Set(None)), Write::AddCount(d)) => Effect::Set(count_value(d)),
            (Some(Effect::Set(Some(v))), Write::AddCount(d)) => {
                let n = crate::relation::decode_count(table_of(&key), v)?;
                Effect::Set(count_value(n + d))
            }
        };
        match prior {
            Some(effect) => *effect = next,
            None => out.push((key, next)),
        }
    }
    Ok(out)
}

/// The stored value of a count (`None`: the key goes).
pub(crate) fn count_value(count: i64) -> Option<Vec<u8>> {
    (count != 0).then(|| crate::relation::encode_count(count))
}

/// The table a full store key belongs to, for error messages.
pub(crate) fn table_of(key: &[u8]) -> u32 {
    key.get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_one_key_fold_in_order() {
        let writes = vec![
            (b"b".to_vec(), Write::AddCount(2)),
            (b"a".to_vec(), Write::Put(b"x".to_vec())),
            (b"b".to_vec(), Write::AddCount(-1)),
            (b"a".to_vec(), Write::Delete),
            (b"c".to_vec(), Write::Delete),
            (b"c".to_vec(), Write::AddCount(3)),
            (b"d".to_vec(), Write::Put(crate::relation::encode_count(1))),
            (b"d".to_vec(), Write::AddCount(-1)),
        ];
        assert_eq!(
            coalesce(writes).unwrap(),
            vec![
                (b"a".to_vec(), Effect::Set(None)),
                (b"b".to_vec(), Effect::Add(1)),
                (b"c".to_vec(), Effect::Set(count_value(3))),
                (b"d".to_vec(), Effect::Set(None)),
            ]
        );
    }
}
