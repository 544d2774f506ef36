//! State an operator reads back one key at a time, when it needs it, rather
//! than all at once at restore: what lets a `GROUP BY` keep only a cache of
//! its groups in memory. Lives in the job's keyed table
//! (`job_keyed_table`), under the same `[fragment][operator][partition]`
//! prefix as the operator's other state.

use std::sync::Arc;

use tidemark_state::StateStore;
use tidemark_types::Epoch;

use crate::Result;

/// Reads an operator's committed keyed state. Keys are relative to the
/// operator's own key space, as it writes them.
pub trait KeyedReader: Send {
    /// The committed values of `keys` (`None`: absent), in order.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>>;

    /// Up to `limit` committed entries under `prefix`, after the key
    /// `after`, in key order. Each page is read from one committed epoch;
    /// successive pages may see later ones.
    fn scan_page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// The last committed epoch: what an operator wrote at a checkpoint of
    /// this epoch or before is what `get_many` reads.
    fn committed_epoch(&self) -> Epoch;
}

/// The keyed state of one operator of one actor, in the store.
pub struct StoreKeyed {
    store: Arc<dyn StateStore>,
    prefix: Vec<u8>,
}

impl StoreKeyed {
    /// `prefix`: the operator's [`super::keyed_prefix`].
    pub fn new(store: Arc<dyn StateStore>, prefix: Vec<u8>) -> Self {
        Self { store, prefix }
    }
}

impl KeyedReader for StoreKeyed {
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let full: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| [self.prefix.as_slice(), k].concat())
            .collect();
        Ok(self.store.get_many(&full)?)
    }

    fn scan_page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let full = |k: &[u8]| [self.prefix.as_slice(), k].concat();
        let after = after.map(full);
        let page = self
            .store
            .scan_page(&full(prefix), after.as_deref(), limit)?;
        let own = self.prefix.len();
        Ok(page
            .iter()
            .map(|(k, v)| (k[own..].to_vec(), v.to_vec()))
            .collect())
    }

    fn committed_epoch(&self) -> Epoch {
        self.store.committed_epoch()
    }
}
