//! Errors as a Postgres client sees them: SQLSTATE, message, detail, hint and
//! the character position in the query text.

use std::fmt;

/// A user-facing error, already classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    /// Five-character SQLSTATE, e.g. `42P01`.
    pub code: String,
    /// Lower-case message, no trailing period (Postgres style).
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based character position in the query string, where known.
    pub position: Option<usize>,
}

impl PgError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
            detail: None,
            hint: None,
            position: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_position(mut self, position: Option<usize>) -> Self {
        self.position = position;
        self
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for PgError {}

pub type PgResult<T> = std::result::Result<T, PgError>;
