use datafusion::error::DataFusionError;

/// Errors of parsing and planning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed SQL; `position` is the 1-based character offset in the query.
    #[error("{message}")]
    Syntax {
        message: String,
        detail: String,
        position: Option<usize>,
    },
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// A well-formed request Tidemark refuses, with its SQLSTATE.
    #[error("{message}")]
    User { code: &'static str, message: String },
}

impl Error {
    pub fn unsupported(message: impl Into<String>) -> Self {
        Error::User {
            code: "0A000",
            message: message.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
