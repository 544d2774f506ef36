//! The operators, one file each, named for the SQL concept they implement.

mod agg;
mod filter;
mod hop_expand;
mod materialize;
mod project;

pub use agg::{
    HashAgg, HopAgg, HopAggSpec, KeyedAgg, RetractableMinMax, SessionAgg, SessionAggSpec,
};
pub use filter::Filter;
pub use hop_expand::HopExpand;
pub use materialize::Materialize;
pub(crate) use materialize::SNAPSHOT_CHUNK_ROWS;
pub use project::Project;
