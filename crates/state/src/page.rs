//! Reading a prefix's put and counted entries together, in key order, and
//! the page a snapshot read hands back.

use crate::relation::decode_count;
use crate::store::table_of;
use crate::{Error, Result};

/// Entries in one buffer: a page costs two allocations, not two per entry
/// (which, freed on another thread than the reader's, were most of a scan).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Page {
    bytes: Vec<u8>,
    /// Per entry: where its key ends and where its value ends in `bytes`.
    ends: Vec<(usize, usize)>,
}

impl Page {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Entry `i`: its full key and its value.
    pub fn entry(&self, i: usize) -> (&[u8], &[u8]) {
        let start = if i == 0 { 0 } else { self.ends[i - 1].1 };
        let (key_end, value_end) = self.ends[i];
        (&self.bytes[start..key_end], &self.bytes[key_end..value_end])
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        (0..self.len()).map(|i| self.entry(i))
    }

    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.extend_from_slice(key);
        let key_end = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.ends.push((key_end, self.bytes.len()));
    }
}

/// A position in one key-ordered run of entries (a RocksDB iterator, a
/// range of a map), read without copying.
pub(crate) trait Run {
    /// The entry here; `None` past the end.
    fn entry(&self) -> Option<(&[u8], &[u8])>;
    fn advance(&mut self) -> Result<()>;
}

/// A run over an iterator of borrowed entries.
pub(crate) struct IterRun<'a, I: Iterator<Item = (&'a [u8], &'a [u8])>> {
    rest: I,
    here: Option<(&'a [u8], &'a [u8])>,
}

impl<'a, I: Iterator<Item = (&'a [u8], &'a [u8])>> IterRun<'a, I> {
    pub(crate) fn new(mut rest: I) -> Self {
        let here = rest.next();
        Self { rest, here }
    }
}

impl<'a, I: Iterator<Item = (&'a [u8], &'a [u8])>> Run for IterRun<'a, I> {
    fn entry(&self) -> Option<(&[u8], &[u8])> {
        self.here
    }

    fn advance(&mut self) -> Result<()> {
        self.here = self.rest.next();
        Ok(())
    }
}

/// Hands `out` up to `limit` entries of a prefix's put and counted runs
/// merged in key order, without counts of 0 (which read as absent). A key
/// in both fails as corrupt, as does a count of another size.
pub(crate) fn merge_runs(
    puts: &mut impl Run,
    counts: &mut impl Run,
    limit: usize,
    mut out: impl FnMut(&[u8], &[u8]),
) -> Result<()> {
    skip_zero_counts(counts)?;
    for _ in 0..limit {
        let take_put = match (puts.entry(), counts.entry()) {
            (Some(p), Some(c)) if p.0 == c.0 => {
                return Err(Error::Corrupt {
                    table: table_of(p.0),
                    reason: "a key holds both a row and a count".into(),
                })
            }
            (Some(p), Some(c)) => p.0 < c.0,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_put {
            if let Some((key, value)) = puts.entry() {
                out(key, value);
            }
            puts.advance()?;
        } else {
            if let Some((key, value)) = counts.entry() {
                out(key, value);
            }
            counts.advance()?;
            skip_zero_counts(counts)?;
        }
    }
    Ok(())
}

fn skip_zero_counts(counts: &mut impl Run) -> Result<()> {
    while let Some((key, value)) = counts.entry() {
        if decode_count(table_of(key), value)? != 0 {
            return Ok(());
        }
        counts.advance()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relation::encode_count;

    fn run<'a>(entries: &'a [(&'a str, Vec<u8>)]) -> impl Run + 'a {
        IterRun::new(entries.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())))
    }

    fn merged(puts: &[(&str, Vec<u8>)], counts: &[(&str, Vec<u8>)], limit: usize) -> Result<Page> {
        let mut page = Page::default();
        merge_runs(&mut run(puts), &mut run(counts), limit, |k, v| {
            page.push(k, v)
        })?;
        Ok(page)
    }

    #[test]
    fn puts_and_counts_merge_in_key_order_without_zeros() {
        let puts = [("a", b"x".to_vec()), ("d", b"y".to_vec())];
        let counts = [
            ("b", encode_count(2)),
            ("c", encode_count(0)),
            ("e", encode_count(-1)),
        ];
        let page = merged(&puts, &counts, usize::MAX).unwrap();
        let got: Vec<(&[u8], &[u8])> = page.iter().collect();
        let two = encode_count(2);
        let minus = encode_count(-1);
        let want: Vec<(&[u8], &[u8])> =
            vec![(b"a", b"x"), (b"b", &two), (b"d", b"y"), (b"e", &minus)];
        assert_eq!(got, want);
        assert_eq!(merged(&puts, &counts, 2).unwrap().len(), 2);
        let first = merged(&puts, &counts, 3).unwrap();
        assert_eq!(first.iter().collect::<Vec<_>>(), want[..3]);

        let both = merged(&[("a", b"x".to_vec())], &[("a", encode_count(1))], 10);
        assert!(matches!(both, Err(Error::Corrupt { .. })), "{both:?}");
        let bad = merged(&[], &[("a", b"xyz".to_vec())], 10);
        assert!(matches!(bad, Err(Error::Corrupt { .. })), "{bad:?}");
    }
}
