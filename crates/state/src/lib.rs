//! Where Tidemark keeps state: the [`StateStore`] trait with its backends, the key
//! layout, the row codec, and the [`StateTable`] an operator or table writes
//! through. Knows nothing of operators; see `docs/state.md`.

mod error;
mod keys;
mod memory;
mod page;
mod relation;
mod relation_reader;
mod rocks;
mod row_codec;
mod snapshot;
mod state_table;
mod store;

pub use error::{Error, Result};
pub use keys::{
    job_keyed_table, job_state_table, relation_prefixes, table_key, table_prefix, TableId,
    CATALOG_TABLE_ID, JOB_KEYED_BIT, JOB_STATE_BIT, MAX_RELATION_ID,
};
pub use memory::MemoryStore;
pub use page::Page;
pub use relation::{
    decode_count, decode_relation, decode_view, encode_count, repeat_row, view_partition_prefix,
    RelationLayout,
};
pub use relation_reader::{RelationReader, RelationShape};
pub use rocks::{RocksDbOptions, RocksDbStore, STORE_FORMAT};
pub use row_codec::RowCodec;
pub use snapshot::{PendingPage, Snapshot};
pub use state_table::StateTable;
pub use store::{Entries, StateStore, Write, WriteBatch};
