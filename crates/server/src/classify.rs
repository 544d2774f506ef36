//! Maps errors from planning, the engine and DataFusion to Postgres errors
//! with a SQLSTATE and, where known, the position in the query.

use arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use tidemark_sql::char_position;

use crate::error::PgError;

fn strip_prefix(message: &str) -> String {
    const PREFIXES: [&str; 7] = [
        "Error during planning: ",
        "Schema error: ",
        "Arrow error: ",
        "Execution error: ",
        "This feature is not implemented: ",
        "Invalid argument error: ",
        "Optimizer rule",
    ];
    let mut m = message.trim().to_string();
    for p in PREFIXES {
        if let Some(rest) = m.strip_prefix(p) {
            m = rest.to_string();
        }
    }
    m.trim_end_matches('.').to_string()
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if chars.clone().next().is_some_and(|n| n.is_lowercase()) => {
            c.to_lowercase().chain(chars).collect()
        }
        Some(c) => std::iter::once(c).chain(chars).collect(),
        None => String::new(),
    }
}

/// Postgres' words for a string that is not a value of a type, from
/// Arrow's "Cannot cast string 'abc' to value of Int32 type".
fn invalid_input(message: &str) -> Option<String> {
    let rest = message.strip_prefix("Cannot cast string '")?;
    let (value, rest) = rest.rsplit_once("' to value of ")?;
    let arrow_type = rest.strip_suffix(" type")?;
    let name = match arrow_type {
        "Int16" => "smallint",
        "Int32" => "integer",
        "Int64" => "bigint",
        "Float32" => "real",
        "Float64" => "double precision",
        "Boolean" => "boolean",
        "Date32" => "date",
        t if t.starts_with("Timestamp(") => "timestamp",
        t if t.starts_with("Decimal128(") => "numeric",
        _ => return None,
    };
    Some(format!("invalid input syntax for type {name}: \"{value}\""))
}

/// A DataFusion error as the client should see it.
pub fn datafusion_error(sql: &str, e: &DataFusionError) -> PgError {
    let position = e
        .diagnostic()
        .and_then(|d| d.span)
        .and_then(|s| char_position(sql, s.start.line, s.start.column));
    let root = e.find_root();
    let err = match root {
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::DivideByZero => PgError::new("22012", "division by zero"),
            ArrowError::ArithmeticOverflow(m) => PgError::new("22003", lowercase_first(m)),
            ArrowError::CastError(m) => PgError::new(
                "22P02",
                invalid_input(m).unwrap_or_else(|| lowercase_first(m)),
            ),
            ArrowError::ParseError(m) => PgError::new("22P02", lowercase_first(m)),
            other => PgError::new("22000", lowercase_first(&strip_prefix(&other.to_string()))),
        },
        DataFusionError::SchemaError(s, _) => match s.as_ref() {
            SchemaError::FieldNotFound { field, .. } => {
                PgError::new("42703", format!("column \"{}\" does not exist", field.name))
            }
            SchemaError::AmbiguousReference { field } => PgError::new(
                "42702",
                format!("column reference \"{}\" is ambiguous", field.name),
            ),
            other => PgError::new("42000", lowercase_first(&strip_prefix(&other.to_string()))),
        },
        DataFusionError::Plan(m) => plan_error(m),
        DataFusionError::NotImplemented(m) => {
            PgError::new("0A000", lowercase_first(&strip_prefix(m)))
        }
        DataFusionError::Execution(m) if m.contains("Divide by zero") => {
            PgError::new("22012", "division by zero")
        }
        DataFusionError::Execution(m) => PgError::new("22000", lowercase_first(&strip_prefix(m))),
        DataFusionError::SQL(p, _) => PgError::new("42601", lowercase_first(&p.to_string())),
        other => PgError::new("XX000", strip_prefix(&other.to_string())),
    };
    err.with_position(position)
}

fn plan_error(message: &str) -> PgError {
    let m = strip_prefix(message);
    if let Some(rest) = m.strip_prefix("table '") {
        if let Some(name) = rest.strip_suffix("' not found") {
            let short = name.rsplit('.').next().unwrap_or(name);
            return PgError::new("42P01", format!("relation \"{short}\" does not exist"));
        }
    }
    const MISMATCH: [&str; 7] = [
        "Cannot infer common argument type",
        "Cannot coerce arithmetic expression",
        "Cannot create filter with non-boolean predicate",
        "Failed to coerce arguments",
        "Cannot get result type",
        "Cannot automatically convert",
        "expressions have incompatible types",
    ];
    if MISMATCH.iter().any(|p| m.contains(p)) {
        return PgError::new("42804", lowercase_first(&m));
    }
    if let Some(rest) = m.strip_prefix("Invalid function '") {
        let name = rest.split('\'').next().unwrap_or(rest);
        let err = PgError::new("42883", format!("function {name} does not exist"));
        return match m.lines().nth(1) {
            Some(suggestion) => err.with_hint(suggestion.trim().to_string()),
            None => err,
        };
    }
    if m.contains("No function matches") {
        let first = m
            .lines()
            .next()
            .unwrap_or(&m)
            .trim_end_matches('.')
            .to_string();
        return PgError::new("42883", lowercase_first(&first));
    }
    PgError::new("42000", lowercase_first(&m))
}

/// A planner error.
pub fn sql_error(sql: &str, e: tidemark_sql::Error) -> PgError {
    match e {
        tidemark_sql::Error::Syntax {
            message,
            detail,
            position,
        } => PgError::new("42601", message)
            .with_detail(detail)
            .with_position(position),
        tidemark_sql::Error::DataFusion(e) => datafusion_error(sql, &e),
        tidemark_sql::Error::User { code, message } => PgError::new(code, message),
    }
}

/// A runtime error.
pub fn engine_error(sql: &str, e: &tidemark_engine::Error) -> PgError {
    use tidemark_engine::Error as E;
    match e {
        E::Constraint {
            code,
            message,
            detail,
        } => {
            let err = PgError::new(code, message.clone());
            match detail {
                Some(d) => err.with_detail(d.clone()),
                None => err,
            }
        }
        E::DataFusion(d) => datafusion_error(sql, d),
        E::Arrow(a) => datafusion_error(
            sql,
            &DataFusionError::ArrowError(Box::new(clone_arrow(a)), None),
        ),
        E::Unsupported(m) => PgError::new("0A000", m.clone()),
        E::JobFailed(name, m) => PgError::new(
            "55000",
            format!("materialized view \"{name}\" has failed: {m}"),
        )
        .with_hint(format!("Drop it with DROP MATERIALIZED VIEW {name}.")),
        E::Shutdown => PgError::new("57P01", "the server is shutting down"),
        // system_error: the store, not the statement, is at fault.
        E::CommitFailed { .. } => PgError::new("58000", e.to_string()),
        other => PgError::new("XX000", other.to_string()),
    }
}

fn clone_arrow(e: &ArrowError) -> ArrowError {
    match e {
        ArrowError::DivideByZero => ArrowError::DivideByZero,
        ArrowError::CastError(m) => ArrowError::CastError(m.clone()),
        ArrowError::ArithmeticOverflow(m) => ArrowError::ArithmeticOverflow(m.clone()),
        other => ArrowError::ComputeError(other.to_string()),
    }
}

/// Why the state store did not open, as the server reports it at start.
pub fn store_open_error(e: tidemark_state::Error) -> PgError {
    use tidemark_state::Error as E;
    let code = match &e {
        // object_in_use
        E::Locked { .. } => "55006",
        // data_corrupted
        E::Corrupt { .. } => "XX001",
        // io_error
        E::Storage { .. } => "58030",
        _ => "58000",
    };
    PgError::new(code, e.to_string())
}
