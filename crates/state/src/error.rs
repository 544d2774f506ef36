/// Errors of the state layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot encode or decode rows: {0}")]
    Codec(#[from] arrow::error::ArrowError),
    #[error("corrupt state entry in table {table}: {reason}")]
    Corrupt { table: u32, reason: String },
    #[error("epoch {epoch} is not after the committed epoch {committed}")]
    EpochOrder { epoch: u64, committed: u64 },
}

pub type Result<T> = std::result::Result<T, Error>;
