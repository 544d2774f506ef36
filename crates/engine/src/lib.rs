//! The streaming runtime: actors (one task per fragment instance) joined by
//! bounded channels that carry chunks, watermarks and barriers; hash exchanges
//! by key group; the checkpoint coordinator; and the operators.
//!
//! The runtime does not know what an operator computes, and operators do not
//! know how they are scheduled: they meet at the [`Operator`] trait.

mod actor;
mod actor_threads;
mod backfill;
pub use backfill::DEFAULT_BACKFILL_ROWS;
mod builder;
mod cache_budget;
pub use cache_budget::CacheBudget;
mod chain;
mod checkpoints;
mod committer;
mod coordinator;
mod dispatch;
mod durable;
mod error;
pub mod event_time;
mod merge;
mod metrics;
mod operator;
pub mod operators;
mod outputs;
mod pinned_keys;
pub use pinned_keys::{pinned_key_bytes, pinned_keys};
mod runtime;
mod source_actor;
mod table;
mod table_actor;
#[cfg(test)]
pub(crate) mod test_util;
mod uncommitted;
mod write_order;

pub use checkpoints::{CheckpointStats, KEPT_CHECKPOINTS};
pub use dispatch::{key_groups, owner_of, KEY_GROUPS};
pub use durable::Durability;
pub use error::{Error, Result};
pub use metrics::JobStats;
pub use operator::{Operator, SnapshotPages, SnapshotSource};
pub use outputs::panic_message;
pub use runtime::{Runtime, RuntimeConfig, ViewStart, CHANNEL_CAPACITY};
pub use table::{DmlRequest, TableSpec};
