/// Errors of the streaming runtime and its operators.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    State(#[from] tidemark_state::Error),
    /// A user-facing constraint violation (e.g. a duplicate primary key).
    #[error("{message}")]
    Constraint {
        code: &'static str,
        message: String,
        detail: Option<String>,
    },
    #[error("streaming job {0} has failed: {1}")]
    JobFailed(String, String),
    /// A source could not be read (a missing file, or a malformed line with
    /// `on_error = 'fail'`).
    #[error("{0}")]
    Source(String),
    #[error("the streaming runtime has shut down")]
    Shutdown,
    /// The store refused a checkpoint: no later epoch commits after it.
    #[error("checkpoint {epoch} could not be committed: {reason}")]
    CommitFailed { epoch: u64, reason: String },
    #[error("{0}")]
    Unsupported(String),
    /// A bug: something that should not happen did.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;
