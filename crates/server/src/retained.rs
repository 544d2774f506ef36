//! Retained checkpoints: every `--retain-interval` the server writes a copy
//! of the last committed checkpoint to `<data dir>/checkpoints/epoch-<E>` (a
//! RocksDB checkpoint: SST files hard-linked where the file system allows)
//! and keeps the newest `--retained-checkpoints` of them. Any of them can
//! start a new server (`--restore-from`), like a savepoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tidemark_state::StateStore;

/// How many checkpoint copies to keep, and how often to take one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainPolicy {
    /// 0 keeps none.
    pub keep: usize,
    pub every: Duration,
}

impl Default for RetainPolicy {
    fn default() -> Self {
        Self {
            keep: 3,
            every: Duration::from_secs(60),
        }
    }
}

/// Where the copies of a data directory go.
pub(crate) fn retained_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("checkpoints")
}

const PREFIX: &str = "epoch-";
const TAKING: &str = ".taking-";

/// One retained copy.
pub(crate) struct Retained {
    pub epoch: u64,
    pub path: PathBuf,
    pub taken_at: SystemTime,
}

/// Where a server keeps its copies, and how many.
#[derive(Debug, Clone)]
pub(crate) struct Copies {
    pub dir: PathBuf,
    pub keep: usize,
}

impl Copies {
    /// The retained copies, oldest first: the newest `keep` in the folder.
    /// Older ones are being deleted after a new copy came in.
    pub(crate) fn list(&self) -> Vec<Retained> {
        let mut all = list(&self.dir);
        all.drain(..all.len().saturating_sub(self.keep));
        all
    }
}

/// Every copy in `dir`, oldest first.
fn list(dir: &Path) -> Vec<Retained> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Retained> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let epoch = name.strip_prefix(PREFIX)?.parse().ok()?;
            let taken_at = e.metadata().and_then(|m| m.modified()).ok()?;
            Some(Retained {
                epoch,
                path: e.path(),
                taken_at,
            })
        })
        .collect();
    out.sort_by_key(|r| r.epoch);
    out
}

/// Writes a copy of the last committed checkpoint unless it is already
/// retained, then deletes all but the newest `keep`; returns the new copy's
/// epoch.
fn take(store: &dyn StateStore, dir: &Path, keep: usize) -> std::io::Result<Option<u64>> {
    let committed = store.committed_epoch();
    let existing = list(dir);
    if committed == 0 || existing.last().is_some_and(|r| r.epoch >= committed) {
        return Ok(None);
    }
    std::fs::create_dir_all(dir)?;
    let taking = dir.join(format!("{TAKING}{committed}"));
    if taking.exists() {
        std::fs::remove_dir_all(&taking)?;
    }
    let epoch = store
        .savepoint(&taking)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let done = dir.join(format!("{PREFIX}{epoch:020}"));
    if done.exists() {
        std::fs::remove_dir_all(&taking)?;
    } else {
        std::fs::rename(&taking, &done)?;
    }
    let all = list(dir);
    for old in &all[..all.len().saturating_sub(keep)] {
        std::fs::remove_dir_all(&old.path)?;
    }
    Ok(Some(epoch))
}

/// Removes copies a stopped server left half written.
fn clear_unfinished(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        if e.file_name().to_string_lossy().starts_with(TAKING) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Takes a copy every `policy.every` for as long as the server runs.
pub(crate) fn spawn(store: Arc<dyn StateStore>, dir: PathBuf, policy: RetainPolicy) {
    if policy.keep == 0 {
        return;
    }
    clear_unfinished(&dir);
    tokio::spawn(async move {
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + policy.every, policy.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let (store, dir) = (Arc::clone(&store), dir.clone());
            let taken =
                tokio::task::spawn_blocking(move || take(store.as_ref(), &dir, policy.keep)).await;
            match taken {
                Ok(Ok(Some(epoch))) => tracing::debug!(epoch, "checkpoint retained"),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot retain a checkpoint"),
                Err(e) => tracing::warn!(error = %e, "retaining a checkpoint did not complete"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use tidemark_state::{RocksDbOptions, RocksDbStore, WriteBatch};

    use super::*;

    #[test]
    fn keeps_the_newest_copies_and_skips_an_unchanged_store() {
        let root = std::env::temp_dir().join(format!("tidemark-retain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = RocksDbStore::open(&root.join("state"), &RocksDbOptions::default()).unwrap();
        let dir = root.join("checkpoints");
        assert_eq!(
            take(&store, &dir, 2).unwrap(),
            None,
            "nothing committed yet"
        );
        for epoch in 1..=3 {
            let mut batch = WriteBatch::default();
            batch.put(vec![0, 0, 0, 9, epoch as u8], vec![1]);
            store.commit(epoch, batch).unwrap();
            assert_eq!(take(&store, &dir, 2).unwrap(), Some(epoch));
        }
        assert_eq!(take(&store, &dir, 2).unwrap(), None, "epoch 3 is retained");
        let kept: Vec<u64> = list(&dir).iter().map(|r| r.epoch).collect();
        assert_eq!(kept, vec![2, 3]);
        let copy = RocksDbStore::open(&list(&dir)[0].path, &RocksDbOptions::default()).unwrap();
        assert_eq!(copy.committed_epoch(), 2);
        drop(copy);
        let _ = std::fs::remove_dir_all(&root);
    }
}
