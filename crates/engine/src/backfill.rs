//! A snapshot sent to new downstreams over several epochs, so that creating
//! a view over a large relation holds one epoch's part of it in memory, not
//! all of it.
//!
//! The upstream sends its rows in its own key order, a bounded part at each
//! barrier, read as of that barrier. Between barriers, a change to a row the
//! snapshot has passed goes to the new downstreams, since they have that
//! row; a change to a row not reached yet does not, since the part that
//! reaches it is read later and includes it. The downstreams so see every
//! row once, as it stands, and every later change to it once.

use arrow::array::BooleanArray;
use tidemark_types::{Epoch, Message, StreamChunk};

use crate::dispatch::Dispatcher;
use crate::operator::{SnapshotCursor, SnapshotKeys};
use crate::Result;

/// Rows a snapshot sends per epoch unless configured otherwise: about
/// 100 MB of a new view's pending changes at the 5M-row measure.
pub const DEFAULT_BACKFILL_ROWS: usize = 256 * 1024;

/// Downstreams receiving a snapshot that is not all sent.
pub struct Backfill {
    /// The epoch whose barrier attached them: names this backfill to the
    /// coordinator, which waits for every upstream to finish it.
    pub started: Epoch,
    pub dispatchers: Vec<Dispatcher>,
    pub cursor: SnapshotCursor,
}

impl Backfill {
    /// The rows of `chunk` whose keys the snapshot has passed, if any.
    pub fn passed(&self, chunk: &StreamChunk, keys: &SnapshotKeys) -> Result<Option<StreamChunk>> {
        let (Some(after), SnapshotKeys::Rows(keys)) = (&self.cursor.after, keys) else {
            return Ok(None);
        };
        let keep: BooleanArray = keys
            .iter()
            .map(|k| Some(k.as_slice() <= after.as_slice()))
            .collect();
        match keep.true_count() {
            0 => Ok(None),
            n if n == chunk.num_rows() => Ok(Some(chunk.clone())),
            _ => Ok(Some(chunk.filter(&keep)?)),
        }
    }

    /// Sends snapshot messages (rows and a table's watermarks).
    pub async fn send(&self, messages: Vec<Message>) -> Result<()> {
        for d in &self.dispatchers {
            for message in &messages {
                match message {
                    Message::Chunk(chunk) => d.send_chunk(chunk.clone()).await?,
                    other => d.broadcast(other).await,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{chunk_from_pretty, pretty};

    fn backfill(after: Option<&[u8]>) -> Backfill {
        Backfill {
            started: 1,
            dispatchers: Vec::new(),
            cursor: SnapshotCursor {
                after: after.map(<[u8]>::to_vec),
                ..SnapshotCursor::default()
            },
        }
    }

    #[test]
    fn changes_pass_up_to_the_last_key_sent() {
        let chunk = chunk_from_pretty(
            "I I
             + 1 10
             - 2 20
             + 3 30",
        );
        let keys = || SnapshotKeys::Rows(vec![vec![1], vec![2], vec![3]]);
        let passed = |after: Option<&[u8]>| {
            backfill(after)
                .passed(&chunk, &keys())
                .unwrap()
                .map(|c| pretty(&[c]))
        };
        assert_eq!(passed(None), None, "nothing sent yet");
        assert_eq!(passed(Some(&[0])), None);
        assert_eq!(passed(Some(&[2])).unwrap(), vec!["+ 1 10", "- 2 20"]);
        assert_eq!(passed(Some(&[2, 0])).unwrap(), vec!["+ 1 10", "- 2 20"]);
        assert_eq!(passed(Some(&[9])).unwrap().len(), 3);
        let new_arrivals = backfill(Some(&[9]))
            .passed(&chunk, &SnapshotKeys::AfterAll)
            .unwrap();
        assert!(new_arrivals.is_none());
    }
}
