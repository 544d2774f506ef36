//! Key layout: `[table id: u32 big-endian][user key]`, where the user key is a
//! memcomparable encoding (see [`crate::RowCodec`]), so byte order is value order
//! and one table is one contiguous key range.

/// Identifies a state table in the store.
pub type TableId = u32;

/// The table that holds the stored DDL.
pub const CATALOG_TABLE_ID: TableId = 0;

/// Relation ids stay below this bit; table `JOB_STATE_BIT | id` holds the
/// operator state of relation `id`'s streaming job, apart from its rows, so
/// reading a view never meets it and dropping the view deletes both.
pub const JOB_STATE_BIT: TableId = 1 << 31;

/// The state table of relation `relation`'s job (see [`JOB_STATE_BIT`]).
pub fn job_state_table(relation: TableId) -> TableId {
    relation | JOB_STATE_BIT
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
