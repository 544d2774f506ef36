//! Which windows (or slices) of a windowed operator the store holds, and
//! which changed since the last checkpoint: what the next one writes.

use std::collections::BTreeSet;

use tidemark_state::WriteBatch;

use super::window_key;
use crate::Result;

#[derive(Default)]
pub struct StoredWindows {
    /// Changed since the last checkpoint…
    unsaved: BTreeSet<i64>,
    /// …held by the store…
    saved: BTreeSet<i64>,
    /// …and closed since, whose stored state goes.
    purged: Vec<i64>,
}

impl StoredWindows {
    /// Rows reached the window starting at `start`.
    pub fn changed(&mut self, start: i64) {
        self.unsaved.insert(start);
    }

    /// The window starting at `start` is gone from the operator.
    pub fn closed(&mut self, start: i64) {
        self.unsaved.remove(&start);
        if self.saved.remove(&start) {
            self.purged.push(start);
        }
    }

    /// The store holds the window starting at `start` (read back at restore).
    pub fn restored(&mut self, start: i64) {
        self.saved.insert(start);
    }

    /// Writes the changed windows, as `encode` gives their state (`None`:
    /// gone), and deletes the closed ones.
    pub fn write(
        &mut self,
        state: &mut WriteBatch,
        mut encode: impl FnMut(i64) -> Result<Option<Vec<u8>>>,
    ) -> Result<()> {
        for start in self.purged.drain(..) {
            state.delete(window_key(start));
        }
        for start in std::mem::take(&mut self.unsaved) {
            if let Some(bytes) = encode(start)? {
                state.put(window_key(start), bytes);
                self.saved.insert(start);
            }
        }
        Ok(())
    }
}
