use arrow::datatypes::DataType;
use arrow::error::ArrowError;

/// Errors of source connectors: invalid WITH options (named by option), I/O
/// (named by path) and malformed input (named by path and line).
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("unknown connector \"{name}\": expected one of {known}")]
    UnknownConnector { name: String, known: &'static str },
    #[error("unknown option \"{option}\" for connector \"{connector}\"")]
    UnknownOption {
        connector: &'static str,
        option: String,
    },
    #[error("option \"{option}\" is required")]
    MissingOption { option: String },
    /// `expected` reads as the end of the sentence, e.g. "expected 'true' or 'false'".
    #[error("invalid value \"{value}\" for option \"{option}\": {expected}")]
    InvalidValue {
        option: String,
        value: String,
        expected: String,
    },
    /// An option that is well-formed but does not fit the rest of the
    /// definition; `message` completes the sentence after the option name.
    #[error("option \"{option}\" {message}")]
    InvalidOption { option: String, message: String },
    #[error(
        "column \"{column}\" has type {data_type}, which connector \"{connector}\" cannot produce"
    )]
    UnsupportedType {
        connector: &'static str,
        column: String,
        data_type: DataType,
    },
    #[error("invalid path pattern \"{pattern}\": {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("no file matches \"{pattern}\"")]
    NoMatch { pattern: String },
    #[error("could not {action} \"{path}\": {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed line {line} in \"{path}\": {message}")]
    Malformed {
        path: String,
        line: u64,
        message: String,
    },
    /// A resume position that does not fit the source (wrong count, past the end).
    #[error("cannot resume source: {0}")]
    Resume(String),
    /// Generated data left the range of the column type.
    #[error("split \"{split}\": {message}")]
    Overflow { split: String, message: String },
    /// A bug: arrow refused data this crate built itself.
    #[error("internal error in split \"{split}\": {source}")]
    Internal {
        split: String,
        #[source]
        source: ArrowError,
    },
}

pub type Result<T> = std::result::Result<T, ConnectorError>;

impl ConnectorError {
    pub(crate) fn invalid_value(option: &str, value: &str, expected: impl Into<String>) -> Self {
        Self::InvalidValue {
            option: option.to_string(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    pub(crate) fn invalid_option(option: &str, message: impl Into<String>) -> Self {
        Self::InvalidOption {
            option: option.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn io(action: &'static str, path: &str, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_string(),
            source,
        }
    }
}
