//! Puts an operator's checkpoint writes in key order before they go to the
//! store.
//!
//! RocksDB inserts a run of sorted keys each next to the one before; unsorted,
//! every insert searches the memtable (a fifth of the HOP bench's time). Runs
//! are enough: each operator's writes are sorted apart, not the epoch's. And
//! sorting by whole keys spends its time in `memcmp` over the bytes every key
//! of a run shares (table, partition, the high bytes of the first column): a
//! quarter of all CPU with a plain projection view. So the sort compares 16
//! bytes past that shared prefix as one integer, and whole keys only on ties.

use tidemark_state::Write;

/// Sorts `writes[start..]` by key, stably: writes to one key keep their order.
pub(crate) fn sort_tail(writes: &mut Vec<(Vec<u8>, Write)>, start: usize) {
    let tail = writes.len().saturating_sub(start);
    if tail < 2 {
        return;
    }
    let mut run = writes.split_off(writes.len() - tail);
    sort_by_key(&mut run);
    writes.append(&mut run);
}

/// Sorts `writes` by key, stably: writes to one key keep their order.
fn sort_by_key(writes: &mut Vec<(Vec<u8>, Write)>) {
    if writes.len() < 2 {
        return;
    }
    let shared = shared_prefix(writes);
    let mut order: Vec<(u128, u32)> = writes
        .iter()
        .enumerate()
        .map(|(i, (key, _))| (word_at(key, shared), i as u32))
        .collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| writes[a.1 as usize].0.cmp(&writes[b.1 as usize].0))
            .then(a.1.cmp(&b.1))
    });
    let mut slots: Vec<Option<(Vec<u8>, Write)>> = writes.drain(..).map(Some).collect();
    writes.extend(order.iter().filter_map(|&(_, i)| slots[i as usize].take()));
}

/// The length of the prefix every key shares.
fn shared_prefix(writes: &[(Vec<u8>, Write)]) -> usize {
    let first = &writes[0].0;
    writes[1..].iter().fold(first.len(), |shared, (key, _)| {
        first[..shared]
            .iter()
            .zip(key)
            .take_while(|(a, b)| a == b)
            .count()
    })
}

/// Bytes `at..at + 16` of `key` as a big-endian integer, zero-padded: keys
/// whose words differ are in the words' order.
fn word_at(key: &[u8], at: usize) -> u128 {
    let mut word = [0u8; 16];
    let tail = key.get(at..).unwrap_or(&[]);
    let n = tail.len().min(16);
    word[..n].copy_from_slice(&tail[..n]);
    u128::from_be_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Lcg;

    #[test]
    fn orders_as_a_stable_sort_by_whole_keys() {
        for seed in 0..200 {
            let mut lcg = Lcg::new(seed);
            // Keys over a small alphabet, with a long shared prefix, some a
            // prefix of others, some equal (written twice, in order).
            let shared: Vec<u8> = (0..lcg.next(24)).map(|_| 7).collect();
            let mut writes: Vec<(Vec<u8>, Write)> = (0..lcg.next(60))
                .map(|i| {
                    let mut key = shared.clone();
                    key.extend((0..lcg.next(20)).map(|_| lcg.next(3) as u8));
                    (key, Write::AddCount(i as i64))
                })
                .collect();
            let start = lcg.next(writes.len() as u64 + 1) as usize;
            let mut expected = writes.clone();
            expected[start..].sort_by(|a, b| a.0.cmp(&b.0));
            sort_tail(&mut writes, start);
            assert_eq!(writes, expected, "seed {seed}");
        }
    }
}
