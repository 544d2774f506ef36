//! The groups of the slices a HOP window covers, merged in key order: each
//! slice's groups in memory (sorted) and those only the store holds (read a
//! page at a time), so a closing window's rows go out a part at a time
//! without all of them, or all of a slice, in memory.

use std::borrow::Cow;
use std::collections::VecDeque;

use super::hash_agg::group_key;
use super::keyed_agg::FLUSH_GROUPS;
use crate::durable::{time_key, KeyedReader};
use crate::metrics::JobMetrics;
use crate::Result;

/// A group's key (a slice's start, then the group's key row) and state.
type Entry<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// One slice's stored groups, in key order, a page at a time.
struct StoredPages<'a> {
    keyed: &'a dyn KeyedReader,
    /// The stored keys of the slice's groups start with this.
    prefix: Vec<u8>,
    page: VecDeque<(Vec<u8>, Vec<u8>)>,
    after: Option<Vec<u8>>,
    done: bool,
}

impl StoredPages<'_> {
    /// The next stored group's key (without the store's tag byte).
    fn peek(&mut self) -> Result<Option<&[u8]>> {
        if self.page.is_empty() && !self.done {
            let page = self
                .keyed
                .scan_page(&self.prefix, self.after.as_deref(), FLUSH_GROUPS)?;
            self.done = page.is_empty();
            self.after = page.last().map(|(k, _)| k.clone());
            self.page = page.into();
        }
        Ok(self.page.front().map(|(k, _)| &k[1..]))
    }
}

/// One slice's groups in key order: those in memory, and those only the
/// store holds (a group in both is as memory has it).
pub(super) struct SliceGroups<'a, I: Iterator<Item = (&'a [u8], &'a [u8])>> {
    cached: std::iter::Peekable<I>,
    stored: Option<StoredPages<'a>>,
    head: Option<Entry<'a>>,
}

impl<'a, I: Iterator<Item = (&'a [u8], &'a [u8])>> SliceGroups<'a, I> {
    /// The groups of the slice starting at `start`: `cached` in key order,
    /// and, when `keyed` is given, those of the store too.
    pub fn new(
        start: i64,
        cached: I,
        keyed: Option<&'a dyn KeyedReader>,
        metrics: &JobMetrics,
    ) -> Result<Self> {
        let mut groups = Self {
            cached: cached.peekable(),
            stored: keyed.map(|keyed| StoredPages {
                keyed,
                prefix: group_key(&time_key(start)),
                page: VecDeque::new(),
                after: None,
                done: false,
            }),
            head: None,
        };
        groups.advance(metrics)?;
        Ok(groups)
    }

    /// The key row (after the slice's start) of the next group.
    pub fn next_key(&self) -> Option<&[u8]> {
        self.head.as_ref().map(|(k, _)| &k[8..])
    }

    /// Takes the next group's state.
    pub fn pop(&mut self, metrics: &JobMetrics) -> Result<Option<Cow<'a, [u8]>>> {
        let head = self.head.take();
        self.advance(metrics)?;
        Ok(head.map(|(_, state)| state))
    }

    fn advance(&mut self, metrics: &JobMetrics) -> Result<()> {
        let cached = self.cached.peek().map(|(k, _)| *k);
        let stored = match &mut self.stored {
            Some(s) => s.peek()?,
            None => None,
        };
        // Which one goes next: the stored group (`Some(true)`), the cached
        // one (`Some(false)`, dropping a stored copy of it).
        let (take_stored, drop_stored) = match (cached, stored) {
            (None, None) => {
                self.head = None;
                return Ok(());
            }
            (None, Some(_)) => (true, false),
            (Some(_), None) => (false, false),
            (Some(c), Some(s)) => (s < c, s == c),
        };
        if drop_stored {
            self.stored.as_mut().and_then(|s| s.page.pop_front());
        }
        self.head = if take_stored {
            let (key, state) = self
                .stored
                .as_mut()
                .and_then(|s| s.page.pop_front())
                .expect("peeked");
            metrics.add_groups_read_back(1);
            Some((Cow::Owned(key[1..].to_vec()), Cow::Owned(state)))
        } else {
            let (key, state) = self.cached.next().expect("peeked");
            Some((Cow::Borrowed(key), Cow::Borrowed(state)))
        };
        Ok(())
    }
}
