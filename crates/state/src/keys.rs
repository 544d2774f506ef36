//! Key layout: `[table id: u32 big-endian][user key]`, where the user key is a
//! memcomparable encoding (see [`crate::RowCodec`]), so byte order is value order
//! and one table is one contiguous key range.

/// Identifies a state table in the store.
pub type TableId = u32;

/// The table that holds the stored DDL.
pub const CATALOG_TABLE_ID: TableId = 0;

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
