//! SQL for Tidemark: parsing (sqlparser plus our statements), binding and
//! logical planning through DataFusion, and lowering to a streaming job.
//! Runs nothing: it compiles without the engine, the store or tokio.

mod batch_windows;
mod column_names;
mod context;
mod create_source;
mod dml;
mod error;
mod parser;
mod relation;
mod session_planner;
mod stream_planner;
mod watermarks;
mod window_node;
mod window_syntax;
mod windows;

pub use batch_windows::expand_windows;
pub use column_names::postgres_column_names;
pub use context::{logical_plan, referenced_relations, session};
pub use create_source::{CreateSource, WatermarkClause};
pub use dml::{plan_row_change, RowChange};
pub use error::{Error, Result};
pub use parser::{char_position, parse, parse_with_text, Statement};
pub use relation::{RelationInfo, RelationKind, RelationProvider};
pub use stream_planner::{plan_view, PlannedView};
pub use watermarks::event_time;
