//! One consistent read of committed state, shared by every relation a query
//! reads, served page by page so the query holds pages in memory, not
//! relations.
//!
//! A RocksDB snapshot borrows the database, so it cannot travel with a query
//! through DataFusion's streams: a reader thread holds it and answers page
//! requests until the last handle is dropped or the store closes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use tidemark_types::Epoch;
use tokio::sync::oneshot;

use crate::page::Page;
use crate::{Error, Result};

/// How often an idle reader checks whether its store is closing.
const CLOSING_POLL: Duration = Duration::from_millis(50);

/// The committed state as of one epoch, for the prefixes it was taken for.
#[derive(Debug)]
pub struct Snapshot {
    epoch: Epoch,
    requests: mpsc::Sender<PageRequest>,
}

#[derive(Debug)]
struct PageRequest {
    prefix: Vec<u8>,
    what: Wanted,
    reply: oneshot::Sender<Result<Page>>,
}

#[derive(Debug)]
enum Wanted {
    /// Up to `limit` entries from `from` on.
    From { from: Vec<u8>, limit: usize },
    /// The entries of these keys that are there.
    Keys(Vec<Vec<u8>>),
}

impl Snapshot {
    /// The committed epoch every page is read from.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Up to `limit` entries under `prefix` with keys from `from` on, in key
    /// order: put entries and counted ones (those at 0 not at all), as
    /// [`crate::StateStore::scan_prefixes`] reads them. Fewer than `limit`
    /// means there are no more. The key after `k` is `k` followed by a 0 byte.
    pub async fn page(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Page> {
        self.request(prefix, from, limit).wait().await
    }

    /// Asks for a [`Self::page`] without waiting for it: the reader reads
    /// it while the caller works on the page before.
    pub fn request(&self, prefix: &[u8], from: &[u8], limit: usize) -> PendingPage {
        let from = from.to_vec();
        self.ask(prefix, Wanted::From { from, limit })
    }

    /// The entries of those of `keys` (full keys under `prefix`) that are
    /// there, in the order asked: one request for them all.
    pub async fn get_many(&self, prefix: &[u8], keys: Vec<Vec<u8>>) -> Result<Page> {
        self.ask(prefix, Wanted::Keys(keys)).wait().await
    }

    fn ask(&self, prefix: &[u8], what: Wanted) -> PendingPage {
        let (reply, answer) = oneshot::channel();
        let request = PageRequest {
            prefix: prefix.to_vec(),
            what,
            reply,
        };
        // A reader that is gone drops the reply: `wait` says so.
        let _ = self.requests.send(request);
        PendingPage(answer)
    }
}

/// A page asked for with [`Snapshot::request`].
#[derive(Debug)]
pub struct PendingPage(oneshot::Receiver<Result<Page>>);

impl PendingPage {
    pub async fn wait(self) -> Result<Page> {
        self.0.await.map_err(|_| Error::Closed)?
    }
}

/// The reader thread's end of a [`Snapshot`].
pub(crate) struct Reader {
    opened: mpsc::SyncSender<Result<Epoch>>,
    requests: mpsc::Receiver<PageRequest>,
    prefixes: Vec<Vec<u8>>,
    closing: Arc<AtomicBool>,
}

impl Reader {
    /// Answers page requests with `read` (prefix, first key, limit) from the
    /// snapshot of `epoch` until every handle is dropped or the store
    /// closes. A prefix the snapshot was not taken for fails.
    pub(crate) fn serve(
        self,
        epoch: Result<Epoch>,
        mut read: impl FnMut(&[u8], &[u8], usize) -> Result<Page>,
    ) {
        let epoch_ok = epoch.is_ok();
        if self.opened.send(epoch).is_err() || !epoch_ok {
            return;
        }
        loop {
            match self.requests.recv_timeout(CLOSING_POLL) {
                Ok(request) => {
                    let page = if self.closing.load(Ordering::SeqCst) {
                        Err(Error::Closed)
                    } else if !self.prefixes.iter().any(|p| request.prefix.starts_with(p)) {
                        Err(Error::Unsupported(
                            "a snapshot read outside the prefixes it was taken for".into(),
                        ))
                    } else {
                        serve_one(&request.prefix, &request.what, &mut read)
                    };
                    // The query may have stopped waiting: nothing to do.
                    let _ = request.reply.send(page);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if self.closing.load(Ordering::SeqCst) {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// One request's page, read with `read` (prefix, first key, limit).
fn serve_one(
    prefix: &[u8],
    what: &Wanted,
    read: &mut impl FnMut(&[u8], &[u8], usize) -> Result<Page>,
) -> Result<Page> {
    match what {
        Wanted::From { from, limit } => {
            // A key before the prefix would start the read elsewhere.
            read(prefix, from.as_slice().max(prefix), *limit)
        }
        Wanted::Keys(keys) => {
            let mut found = Page::default();
            for key in keys.iter().filter(|k| k.starts_with(prefix)) {
                let page = read(prefix, key, 1)?;
                if page.len() == 1 && page.entry(0).0 == key.as_slice() {
                    found.push(key, page.entry(0).1);
                }
            }
            Ok(found)
        }
    }
}

/// Starts a reader thread running `body`, which takes the store's snapshot
/// and calls [`Reader::serve`]; returns once the snapshot is taken. The
/// thread ends soon after `closing` is set.
pub(crate) fn start(
    prefixes: Vec<Vec<u8>>,
    closing: Arc<AtomicBool>,
    body: impl FnOnce(Reader) + Send + 'static,
) -> Result<(Snapshot, JoinHandle<()>)> {
    if closing.load(Ordering::SeqCst) {
        return Err(Error::Closed);
    }
    let (opened, epoch) = mpsc::sync_channel(1);
    let (requests, incoming) = mpsc::channel();
    let reader = Reader {
        opened,
        requests: incoming,
        prefixes,
        closing,
    };
    let thread = std::thread::Builder::new()
        .name("tidemark-snapshot".into())
        .spawn(move || body(reader))
        .map_err(Error::Thread)?;
    let epoch = epoch.recv().map_err(|_| Error::Closed)??;
    Ok((Snapshot { epoch, requests }, thread))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::relation::encode_count;
    use crate::store::Entries;
    use crate::{MemoryStore, RocksDbOptions, RocksDbStore, StateStore, WriteBatch};

    use super::*;

    fn stores(dir: &std::path::Path) -> Vec<(&'static str, Arc<dyn StateStore>)> {
        let rocks = RocksDbStore::open(dir, &RocksDbOptions::default()).unwrap();
        vec![
            (
                "memory",
                Arc::new(MemoryStore::new()) as Arc<dyn StateStore>,
            ),
            ("rocksdb", Arc::new(rocks)),
        ]
    }

    fn owned(page: &Page) -> Entries {
        page.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
    }

    async fn read(snapshot: &Snapshot, prefix: &[u8], from: &[u8], limit: usize) -> Entries {
        owned(&snapshot.page(prefix, from, limit).await.unwrap())
    }

    async fn all(snapshot: &Snapshot, prefix: &[u8], limit: usize) -> Entries {
        let mut out: Entries = Vec::new();
        let mut from = prefix.to_vec();
        loop {
            let page = read(snapshot, prefix, &from, limit).await;
            assert!(page.len() <= limit);
            let more = page.len() == limit;
            if let Some((last, _)) = page.last() {
                from = last.clone();
                from.push(0);
            }
            out.extend(page);
            if !more {
                return out;
            }
        }
    }

    /// Pages of any size read one epoch's entries, puts and counts merged,
    /// whatever commits land meanwhile; other prefixes are refused.
    #[tokio::test]
    async fn pages_read_one_epoch_whatever_commits_follow() {
        let dir = crate::rocks::tests::tempdir("snapshot-pages");
        for (name, store) in stores(&dir) {
            let mut b = WriteBatch::default();
            b.put(b"a0".to_vec(), b"before".to_vec());
            for k in ["b1", "b3", "b5"] {
                b.put(k.as_bytes().to_vec(), k.as_bytes().to_vec());
            }
            for (k, n) in [("b2", 2), ("b4", 1), ("b6", 3)] {
                b.add_count(k.as_bytes().to_vec(), n);
            }
            b.put(b"c0".to_vec(), b"after".to_vec());
            store.commit(1, b).unwrap();
            let snapshot = Arc::clone(&store).snapshot(vec![b"b".to_vec()]).unwrap();
            assert_eq!(snapshot.epoch(), 1, "{name}");

            let mut b = WriteBatch::default();
            b.delete(b"b1".to_vec());
            b.put(b"b3".to_vec(), b"changed".to_vec());
            b.add_count(b"b4".to_vec(), -1);
            b.add_count(b"b7".to_vec(), 1);
            store.commit(2, b).unwrap();

            let (_, mut whole) = store.scan_prefixes(&[b"b".to_vec()]).unwrap();
            assert_eq!(whole.pop().unwrap().len(), 5, "{name}: epoch 2");
            let want: Entries = vec![
                (b"b1".to_vec(), b"b1".to_vec()),
                (b"b2".to_vec(), encode_count(2)),
                (b"b3".to_vec(), b"b3".to_vec()),
                (b"b4".to_vec(), encode_count(1)),
                (b"b5".to_vec(), b"b5".to_vec()),
                (b"b6".to_vec(), encode_count(3)),
            ];
            for limit in 1..=7 {
                assert_eq!(all(&snapshot, b"b", limit).await, want, "{name} {limit}");
            }
            let from_b4 = read(&snapshot, b"b", b"b4", 2).await;
            assert_eq!(from_b4, want[3..5], "{name}");
            let before = read(&snapshot, b"b", b"a", 1).await;
            assert_eq!(before, want[..1], "{name}: a key before the prefix");
            // Keys in the order asked, absent ones and other prefixes' left out.
            let asked = ["b6", "b1", "bx", "c0", "b3"].map(|k| k.as_bytes().to_vec());
            let got = owned(&snapshot.get_many(b"b", asked.to_vec()).await.unwrap());
            assert_eq!(
                got,
                [want[5].clone(), want[0].clone(), want[2].clone()],
                "{name}"
            );
            let other = snapshot.page(b"c", b"c", 10).await;
            assert!(matches!(other, Err(Error::Unsupported(_))), "{name}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Closing the store ends its readers; their snapshots then fail.
    #[tokio::test]
    async fn closing_the_store_ends_its_readers() {
        let dir = crate::rocks::tests::tempdir("snapshot-close");
        let store = Arc::new(RocksDbStore::open(&dir, &RocksDbOptions::default()).unwrap());
        let mut b = WriteBatch::default();
        b.put(b"k".to_vec(), b"v".to_vec());
        store.commit(1, b).unwrap();
        let snapshot = Arc::clone(&store).snapshot(vec![Vec::new()]).unwrap();
        assert_eq!(snapshot.page(b"", b"", 10).await.unwrap().len(), 1);
        store.close();
        let page = snapshot.page(b"", b"", 10).await;
        assert!(matches!(page, Err(Error::Closed)), "{page:?}");
        let again = Arc::clone(&store).snapshot(vec![Vec::new()]);
        assert!(matches!(again, Err(Error::Closed)), "{again:?}");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
