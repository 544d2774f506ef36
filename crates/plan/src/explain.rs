use std::fmt;

use crate::explain_expr::expr_text;
use crate::{Distribution, Exchange, FragmentInput, OperatorSpec, StreamGraph};

fn exchange(e: &Exchange, schema_names: &[String]) -> String {
    match e {
        Exchange::Single => "single".to_string(),
        Exchange::Hash(cols) => {
            let names: Vec<&str> = cols
                .iter()
                .map(|&c| schema_names.get(c).map_or("?", |s| s.as_str()))
                .collect();
            format!("hash({})", names.join(", "))
        }
    }
}

impl StreamGraph {
    /// EXPLAIN text, one line per fragment and operator, with the parallelism the
    /// server would run it at.
    pub fn explain(&self, parallelism: usize) -> Vec<String> {
        let mut lines = Vec::new();
        for f in &self.fragments {
            let par = match f.distribution {
                Distribution::Single => 1,
                Distribution::Hashed => parallelism,
            };
            lines.push(format!("Fragment {} (parallelism {par})", f.id));
            for input in &f.inputs {
                let line = match input {
                    FragmentInput::Relation {
                        name,
                        exchange: e,
                        schema,
                        ..
                    } => {
                        let names: Vec<String> =
                            schema.fields().iter().map(|f| f.name().clone()).collect();
                        format!("  input: {name} via {}", exchange(e, &names))
                    }
                    FragmentInput::Fragment { id, exchange: e } => {
                        let names: Vec<String> = self
                            .fragments
                            .iter()
                            .find(|u| u.id == *id)
                            .map(|u| u.schema.fields().iter().map(|f| f.name().clone()).collect())
                            .unwrap_or_default();
                        format!("  input: fragment {id} via {}", exchange(e, &names))
                    }
                    FragmentInput::Source {
                        name,
                        event_time,
                        schema,
                        ..
                    } => match event_time {
                        Some(t) => format!(
                            "  source: {name} (watermark: {} - {})",
                            schema.field(t.column).name(),
                            duration(t.delay_us)
                        ),
                        None => format!("  source: {name}"),
                    },
                };
                lines.push(line);
            }
            for (i, op) in f.operators.iter().enumerate() {
                match f.watermarks.get(i) {
                    Some(w) if !w.is_empty() => {
                        lines.push(format!("  {op} (watermark: {})", w.join(", ")))
                    }
                    _ => lines.push(format!("  {op}")),
                }
            }
        }
        lines
    }
}

/// A duration in the largest unit that divides it: `2s`, `500ms`.
fn duration(micros: i64) -> String {
    for (unit, name) in [
        (3_600_000_000, "h"),
        (60_000_000, "min"),
        (1_000_000, "s"),
        (1000, "ms"),
    ] {
        if micros != 0 && micros % unit == 0 {
            return format!("{}{name}", micros / unit);
        }
    }
    format!("{micros}us")
}

impl fmt::Display for OperatorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OperatorSpec::Filter { predicate } => write!(f, "Filter: {}", expr_text(predicate)),
            OperatorSpec::Project { exprs, .. } => {
                let list: Vec<String> = exprs
                    .iter()
                    .map(|(e, n)| format!("{} AS {n}", expr_text(e)))
                    .collect();
                write!(f, "Project: {}", list.join(", "))
            }
            OperatorSpec::HashAgg {
                group_exprs,
                aggs,
                window,
                ..
            } => {
                let groups: Vec<String> = group_exprs.iter().map(|(e, _)| expr_text(e)).collect();
                let calls: Vec<String> = aggs.iter().map(|a| a.expr.name().to_string()).collect();
                write!(
                    f,
                    "HashAgg: group by [{}], aggregates [{}]",
                    groups.join(", "),
                    calls.join(", ")
                )?;
                match window {
                    Some(w) => write!(
                        f,
                        ", window key {}, emit {}",
                        group_exprs[w.key].1,
                        if w.emit_on_close {
                            "on window close"
                        } else {
                            "on update"
                        }
                    ),
                    None => Ok(()),
                }
            }
            OperatorSpec::HopExpand {
                slide_us, size_us, ..
            } => write!(
                f,
                "HopExpand: slide {}, size {}",
                duration(*slide_us),
                duration(*size_us)
            ),
            OperatorSpec::SessionAgg {
                gap_us,
                aggs,
                emit_on_close,
                schema,
                keys,
                ..
            } => {
                write!(f, "SessionAgg: gap {}, ", duration(*gap_us))?;
                keyed_aggregate(f, schema, keys.len(), aggs, *emit_on_close)
            }
            OperatorSpec::HopAgg {
                slide_us,
                size_us,
                aggs,
                emit_on_close,
                schema,
                keys,
                ..
            } => {
                write!(
                    f,
                    "HopAgg: slide {}, size {}, ",
                    duration(*slide_us),
                    duration(*size_us)
                )?;
                keyed_aggregate(f, schema, keys.len(), aggs, *emit_on_close)
            }
            OperatorSpec::Materialize { name, .. } => write!(f, "Materialize: {name}"),
        }
    }
}

/// `group by [...], aggregates [...], emit ...` of a window aggregate whose
/// first `keys` output columns are its group columns.
fn keyed_aggregate(
    f: &mut fmt::Formatter<'_>,
    schema: &arrow::datatypes::Schema,
    keys: usize,
    aggs: &[crate::AggCall],
    emit_on_close: bool,
) -> fmt::Result {
    let groups: Vec<&str> = schema
        .fields()
        .iter()
        .take(keys)
        .map(|f| f.name().as_str())
        .collect();
    let calls: Vec<String> = aggs.iter().map(|a| a.expr.name().to_string()).collect();
    write!(
        f,
        "group by [{}], aggregates [{}], emit {}",
        groups.join(", "),
        calls.join(", "),
        if emit_on_close {
            "on window close"
        } else {
            "on update"
        }
    )
}
