//! `connector = 'datagen'`: deterministic synthetic rows, optionally paced.

mod column;
mod config;
mod reader;

pub(crate) use config::parse_datagen;
pub use config::{ColumnGen, DatagenConfig};
pub(crate) use reader::DatagenSplit;
