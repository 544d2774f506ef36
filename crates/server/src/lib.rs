//! The Tidemark server: catalog, sessions over the Postgres wire protocol,
//! statement dispatch, and batch SELECT over committed state.

mod batch;
mod catalog;
mod checkpoints;
mod classify;
mod database;
mod dml;
mod error;
mod jobs;
mod memory;
pub mod pgwire;
mod result;
mod retained;
mod savepoint;
mod source;
mod stored_catalog;
mod stored_relation;

pub use database::{Database, DatabaseConfig, StateBackend};
pub use error::{PgError, PgResult};
pub use result::{Described, StatementResult};
pub use retained::RetainPolicy;
pub use tidemark_engine::DEFAULT_BACKFILL_ROWS;
