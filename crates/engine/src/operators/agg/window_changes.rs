//! What a flush of HOP slices changes in windows that are still open, for
//! continuous emission: the (window, group) rows it changes, and the slice
//! states each row is made of before and after the flush.
//!
//! Each slice state is looked up once per flush however many windows cover
//! it (a group changed in one slice is in `n` windows that cover `2n - 1`
//! slices, not `n²` lookups), and the states after the flush are the ones
//! before, except the changed slices', which the flush's merge gives.

use std::ops::Range;

// Keyed by group: foldhash, not std's SipHash, on this hot path.
use datafusion::common::HashMap;

use crate::durable::{time_key, time_of_key};

/// One slice state of a group, as a row of the decoded states before and
/// after the flush.
#[derive(Clone, Copy)]
struct Cell {
    /// The slice, an index into [`WindowChanges::slices`].
    slice: u32,
    old: Option<u32>,
    new: Option<u32>,
}

/// The rows a flush of a part of slice groups changes. A part's key is the
/// slice's time key then the group's key row.
pub(super) struct WindowChanges {
    /// The distinct group key rows of the part.
    groups: Vec<Vec<u8>>,
    /// The changed rows: (window start, index into `groups`).
    pairs: Vec<(i64, u32)>,
    /// The cells each pair's window covers, a range of `cells`.
    pair_cells: Vec<Range<u32>>,
    /// The open slices the pairs' windows cover, oldest first.
    slices: Vec<i64>,
    /// Per group, the slices its pairs cover, in slice order; groups one
    /// after the other.
    cells: Vec<Cell>,
    /// The group of each run of `cells`.
    cell_groups: Vec<(Range<u32>, u32)>,
    /// The cell of each of the part's keys.
    part_cells: Vec<Option<u32>>,
}

impl WindowChanges {
    /// The rows changed by a part with keys `keys`: `windows_of(slice)`
    /// gives the open windows covering a slice, `open_in(range)` the open
    /// slices with groups that start in `range`, oldest first, and `size`
    /// is the windows' size.
    pub fn new<W, O>(keys: &[Vec<u8>], windows_of: W, open_in: O, size: i64) -> Self
    where
        W: Fn(i64) -> Vec<i64>,
        O: Fn(Range<i64>) -> Vec<i64>,
    {
        // The part's keys by group, then slice.
        let mut numbers: HashMap<&[u8], u32> = HashMap::default();
        let mut groups = Vec::new();
        let mut changed: Vec<(u32, i64, u32)> = Vec::with_capacity(keys.len());
        for (k, key) in keys.iter().enumerate() {
            let group = *numbers.entry(&key[8..]).or_insert_with(|| {
                groups.push(key[8..].to_vec());
                groups.len() as u32 - 1
            });
            changed.push((group, time_of_key(key), k as u32));
        }
        changed.sort_unstable();
        // Each group's changed windows, oldest first.
        let mut pairs = Vec::new();
        let mut group_pairs = Vec::with_capacity(groups.len());
        let mut windows = Vec::new();
        for run in changed.chunk_by(|a, b| a.0 == b.0) {
            windows.clear();
            windows.extend(run.iter().flat_map(|&(_, slice, _)| windows_of(slice)));
            windows.sort_unstable();
            windows.dedup();
            let first = pairs.len();
            pairs.extend(windows.iter().map(|&w| (w, run[0].0)));
            group_pairs.push(first..pairs.len());
        }
        let slices = match (
            pairs.iter().map(|p| p.0).min(),
            pairs.iter().map(|p| p.0).max(),
        ) {
            (Some(first), Some(last)) => open_in(first..last.saturating_add(size)),
            _ => Vec::new(),
        };
        let covered = |window: i64| {
            let from = slices.partition_point(|&s| s < window);
            let to = slices.partition_point(|&s| s < window.saturating_add(size));
            from as u32..to as u32
        };
        // Each group's cells: the union of its windows' slices, which are
        // runs of `slices` starting and ending in order.
        let mut cells = Vec::new();
        let mut cell_groups = Vec::with_capacity(groups.len());
        let mut pair_cells = Vec::with_capacity(pairs.len());
        for range in group_pairs {
            let first = cells.len() as u32;
            let group = pairs[range.start].1;
            let mut next = 0;
            for &(window, _) in &pairs[range] {
                let slices = covered(window);
                let from = slices.start.max(next);
                cells.extend((from..slices.end).map(|slice| Cell {
                    slice,
                    old: None,
                    new: None,
                }));
                next = next.max(slices.end);
                let run = &cells[first as usize..];
                let at = |s: u32| first + run.partition_point(|c| c.slice < s) as u32;
                pair_cells.push(at(slices.start)..at(slices.end));
            }
            cell_groups.push((first..cells.len() as u32, group));
        }
        // The cell of each part key: its slice is covered by the window
        // starting with it, which is open, or the row would have been late.
        let mut part_cells = vec![None; keys.len()];
        let mut runs = cell_groups.iter().peekable();
        for &(group, slice, k) in &changed {
            while runs.next_if(|(_, g)| *g < group).is_some() {}
            let Some((range, _)) = runs.peek().filter(|(_, g)| *g == group) else {
                continue;
            };
            let run = &cells[range.start as usize..range.end as usize];
            let at = run.partition_point(|c| slices[c.slice as usize] < slice);
            if run
                .get(at)
                .is_some_and(|c| slices[c.slice as usize] == slice)
            {
                part_cells[k as usize] = Some(range.start + at as u32);
            }
        }
        Self {
            groups,
            pairs,
            pair_cells,
            slices,
            cells,
            cell_groups,
            part_cells,
        }
    }

    /// The changed rows: (window start, group key row).
    pub fn pairs(&self) -> impl Iterator<Item = (i64, &[u8])> {
        self.pairs
            .iter()
            .map(|&(w, g)| (w, self.groups[g as usize].as_slice()))
    }

    /// The keys of every slice state the changed rows are made of.
    pub fn cell_keys(&self) -> Vec<Vec<u8>> {
        let mut keys = Vec::with_capacity(self.cells.len());
        for (range, group) in &self.cell_groups {
            for cell in &self.cells[range.start as usize..range.end as usize] {
                let slice = time_key(self.slices[cell.slice as usize]);
                keys.push([slice.as_slice(), &self.groups[*group as usize]].concat());
            }
        }
        keys
    }

    /// Looks up each slice state before the flush, through `lookup(slice,
    /// key)` (the slice's start and the state's key): the states found,
    /// numbered as the rows of the states before.
    pub fn read_before<'s>(
        &mut self,
        mut lookup: impl FnMut(usize, i64, &[u8]) -> Option<&'s [u8]>,
    ) -> Vec<&'s [u8]> {
        let mut found = Vec::new();
        let mut key = Vec::new();
        for (range, group) in &self.cell_groups {
            for cell in &mut self.cells[range.start as usize..range.end as usize] {
                let slice = self.slices[cell.slice as usize];
                key.clear();
                key.extend_from_slice(&time_key(slice));
                key.extend_from_slice(&self.groups[*group as usize]);
                if let Some(state) = lookup(cell.slice as usize, slice, &key) {
                    cell.old = Some(found.len() as u32);
                    found.push(state);
                }
            }
        }
        found
    }

    /// The part's keys that had a state before, and its row; `None` if
    /// a key's slice is in no open window (so was not looked up).
    pub fn part_before(&self) -> Option<(Vec<u32>, Vec<u32>)> {
        let mut before = (Vec::new(), Vec::new());
        for (k, c) in self.part_cells.iter().enumerate() {
            if let Some(row) = self.cells[(*c)? as usize].old {
                before.0.push(k as u32);
                before.1.push(row);
            }
        }
        Some(before)
    }

    /// The states after the flush: those before, except the part's keys',
    /// which are rows `merged + k` (`k`: the key's position in the part).
    pub fn merged_at(&mut self, merged: u32) {
        for cell in &mut self.cells {
            cell.new = cell.old;
        }
        for (k, c) in self.part_cells.iter().enumerate() {
            if let Some(c) = c {
                self.cells[*c as usize].new = Some(merged + k as u32);
            }
        }
    }

    /// The changed rows' parts, before (`after`: after) the flush: the
    /// rows of the states, and the pair each is a part of.
    pub fn parts(&self, after: bool) -> (Vec<u32>, Vec<usize>) {
        let (mut rows, mut numbers) = (Vec::new(), Vec::new());
        for (j, range) in self.pair_cells.iter().enumerate() {
            for cell in &self.cells[range.start as usize..range.end as usize] {
                if let Some(row) = if after { cell.new } else { cell.old } {
                    rows.push(row);
                    numbers.push(j);
                }
            }
        }
        (rows, numbers)
    }

    /// The open slices the changed rows cover, oldest first.
    pub fn slices(&self) -> &[i64] {
        &self.slices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLIDE: i64 = 2;
    const SIZE: i64 = 6;

    fn key(slice: i64, group: u8) -> Vec<u8> {
        [time_key(slice).as_slice(), &[group]].concat()
    }

    /// Windows of size 6, slide 2; windows before `first_open` are final;
    /// `open` slices have groups.
    fn changes(keys: &[Vec<u8>], first_open: i64, open: &[i64]) -> WindowChanges {
        WindowChanges::new(
            keys,
            |s| {
                (0..SIZE / SLIDE)
                    .map(|k| s - k * SLIDE)
                    .filter(|&w| w >= first_open)
                    .collect()
            },
            |r| open.iter().copied().filter(|s| r.contains(s)).collect(),
            SIZE,
        )
    }

    #[test]
    fn each_slice_state_is_read_once_per_group() {
        let keys = vec![key(4, 1), key(6, 1), key(4, 2)];
        let open = [0, 2, 4, 6, 8, 10, 12];
        let mut c = changes(&keys, 2, &open);
        let pairs: Vec<(i64, u8)> = c.pairs().map(|(w, g)| (w, g[0])).collect();
        assert_eq!(
            pairs,
            vec![(2, 1), (4, 1), (6, 1), (2, 2), (4, 2)],
            "windows before 2 are final"
        );
        let mut read = Vec::new();
        let states = [
            b"a".as_slice(),
            b"b",
            b"c",
            b"d",
            b"e",
            b"f",
            b"g",
            b"h",
            b"i",
        ];
        let found = c.read_before(|_, slice, key| {
            read.push((slice, key[8]));
            (slice != 6).then(|| states[read.len() - 1])
        });
        assert_eq!(
            read,
            vec![
                (2, 1),
                (4, 1),
                (6, 1),
                (8, 1),
                (10, 1),
                (2, 2),
                (4, 2),
                (6, 2),
                (8, 2)
            ]
        );
        assert_eq!(found.len(), 7);
        let before = c.part_before();
        assert_eq!(before, Some((vec![0, 2], vec![1, 5])), "(4, 1) and (4, 2)");
        let (rows, numbers) = c.parts(false);
        assert_eq!(numbers, vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
        assert_eq!(rows, vec![0, 1, 1, 2, 2, 3, 4, 5, 5, 6]);
        c.merged_at(100);
        let (rows, numbers) = c.parts(true);
        assert_eq!(numbers, vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4]);
        assert_eq!(
            rows,
            vec![0, 100, 101, 100, 101, 2, 101, 2, 3, 4, 102, 102, 6]
        );
        assert_eq!(c.slices(), &[2, 4, 6, 8, 10]);
        assert_eq!(c.cell_keys().len(), 9);
    }
}
