use std::path::PathBuf;

/// Errors of the state layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot encode or decode rows: {0}")]
    Codec(#[from] arrow::error::ArrowError),
    #[error("corrupt state entry in table {table}: {reason}")]
    Corrupt { table: u32, reason: String },
    #[error("epoch {epoch} is not after the committed epoch {committed}")]
    EpochOrder { epoch: u64, committed: u64 },
    #[error("state store {}: {reason}", path.display())]
    Storage { path: PathBuf, reason: String },
    #[error("state store {} is in use by another process (is another server running on this data directory?)", path.display())]
    Locked { path: PathBuf },
    #[error("{} holds files that are not a Tidemark state store", path.display())]
    NotAStore { path: PathBuf },
    #[error("{0}")]
    Unsupported(String),
    #[error("the state store has closed (the server is stopping)")]
    Closed,
    #[error("cannot start a snapshot reader thread: {0}")]
    Thread(std::io::Error),
    #[error("state store {} has format {found}; this build reads format {expected}", path.display())]
    Incompatible {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
}

pub type Result<T> = std::result::Result<T, Error>;
