//! Incremental aggregation: the grouped operator and the retractable
//! accumulators it needs beyond DataFusion's own.

mod hash_agg;
mod min_max;
mod session_agg;

pub use hash_agg::HashAgg;
pub use min_max::RetractableMinMax;
pub use session_agg::{SessionAgg, SessionAggSpec};
