//! Key layout: `[table id: u32 big-endian][user key]`, where the user key is a
//! memcomparable encoding (see [`crate::RowCodec`]), so byte order is value order
//! and one table is one contiguous key range.

/// Identifies a state table in the store.
pub type TableId = u32;

/// The table that holds the stored DDL.
pub const CATALOG_TABLE_ID: TableId = 0;

/// Table `JOB_STATE_BIT | id` holds the operator state of relation `id`'s
/// streaming job that a restart reads back whole, apart from its rows, so
/// reading a view never meets it and dropping the view deletes both.
pub const JOB_STATE_BIT: TableId = 1 << 31;

/// Table `JOB_KEYED_BIT | id` holds the state of relation `id`'s job that
/// operators read back one key at a time, when they need it (groups of a
/// `GROUP BY`): a restart does not scan it, and memory holds only a cache.
pub const JOB_KEYED_BIT: TableId = 1 << 30;

/// Relation ids stay below this: the bits above mark a relation's other tables.
pub const MAX_RELATION_ID: TableId = JOB_KEYED_BIT - 1;

/// The state table of relation `relation`'s job (see [`JOB_STATE_BIT`]).
pub fn job_state_table(relation: TableId) -> TableId {
    relation | JOB_STATE_BIT
}

/// The keyed state table of relation `relation`'s job (see [`JOB_KEYED_BIT`]).
pub fn job_keyed_table(relation: TableId) -> TableId {
    relation | JOB_KEYED_BIT
}

/// The prefixes of every table relation `relation` owns: its rows and its
/// job's state, all deleted when it is dropped or recomputed.
pub fn relation_prefixes(relation: TableId) -> [Vec<u8>; 3] {
    [
        table_prefix(relation),
        table_prefix(job_state_table(relation)),
        table_prefix(job_keyed_table(relation)),
    ]
}

/// The prefix every key of `table` starts with.
pub fn table_prefix(table: TableId) -> Vec<u8> {
    table.to_be_bytes().to_vec()
}

/// The full store key of `user_key` in `table`.
pub fn table_key(table: TableId, user_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + user_key.len());
    key.extend_from_slice(&table.to_be_bytes());
    key.extend_from_slice(user_key);
    key
}

/// The first key after `key` in byte order.
pub(crate) fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}
