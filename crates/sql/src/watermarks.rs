//! Event time at planning: the `WATERMARK FOR` clause, and which columns of a
//! plan carry a watermark.

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::sql::sqlparser::ast;
use tidemark_plan::EventTime;

use crate::create_source::WatermarkClause;
use crate::windows::interval_micros;
use crate::{Error, Result};

/// Validates `WATERMARK FOR col AS col [- INTERVAL …]` against the columns.
pub fn event_time(clause: &WatermarkClause, schema: &SchemaRef) -> Result<EventTime> {
    let name = clause.column.value.to_lowercase();
    let name = if clause.column.quote_style.is_some() {
        clause.column.value.clone()
    } else {
        name
    };
    let column = schema.index_of(&name).map_err(|_| Error::User {
        code: "42703",
        message: format!("column \"{name}\" does not exist"),
    })?;
    if !matches!(
        schema.field(column).data_type(),
        DataType::Timestamp(_, None)
    ) {
        return Err(Error::User {
            code: "42804",
            message: format!(
                "the watermark column \"{name}\" must be of type timestamp, not {}",
                schema.field(column).data_type()
            ),
        });
    }
    let same_column = |e: &ast::Expr| match e {
        ast::Expr::Identifier(id) => id.value.eq_ignore_ascii_case(&name),
        _ => false,
    };
    let shape_error = || {
        Error::unsupported(format!(
            "a watermark must be \"{name}\" or \"{name} - INTERVAL '…'\", not {}",
            clause.expr
        ))
    };
    let delay_us = match &clause.expr {
        e if same_column(e) => 0,
        ast::Expr::Nested(inner) if same_column(inner) => 0,
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Minus,
            right,
        } if same_column(left) => {
            let ctx = crate::session([])?;
            let expr = ctx.state().create_logical_expr_from_sql_expr(
                ast::ExprWithAlias {
                    expr: (**right).clone(),
                    alias: None,
                },
                &DFSchema::empty(),
            )?;
            interval_micros(&expr, "the watermark delay").map_err(|_| shape_error())?
        }
        _ => return Err(shape_error()),
    };
    if delay_us < 0 {
        return Err(Error::User {
            code: "22023",
            message: "the watermark delay must not be negative".to_string(),
        });
    }
    Ok(EventTime { column, delay_us })
}

/// If `expr` never decreases as one watermarked input column rises (the column
/// itself, a cast of it, ± a constant, `date_bin` or `date_trunc` of it),
/// that column's index: the output then carries a watermark derived from it.
pub(crate) fn monotone_source(
    expr: &Expr,
    schema: &DFSchema,
    watermarked: &[usize],
) -> Option<usize> {
    match expr {
        Expr::Column(c) => schema
            .index_of_column(c)
            .ok()
            .filter(|i| watermarked.contains(i)),
        Expr::Alias(a) => monotone_source(&a.expr, schema, watermarked),
        Expr::Cast(c) if c.field.data_type().is_temporal() => {
            monotone_source(&c.expr, schema, watermarked)
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            match (op, left.as_ref(), right.as_ref()) {
                (Operator::Plus | Operator::Minus, inner, c) if constant(c) => {
                    monotone_source(inner, schema, watermarked)
                }
                (Operator::Plus, c, inner) if constant(c) => {
                    monotone_source(inner, schema, watermarked)
                }
                _ => None,
            }
        }
        Expr::ScalarFunction(f) => match (f.func.name(), f.args.as_slice()) {
            ("date_bin", [Expr::Literal(..), inner, ..])
            | ("date_trunc", [Expr::Literal(..), inner]) => {
                monotone_source(inner, schema, watermarked)
            }
            _ => None,
        },
        _ => None,
    }
}

fn is_constant(v: &ScalarValue) -> bool {
    !v.is_null()
}

/// A non-null literal, possibly cast (type coercion casts literals).
fn constant(expr: &Expr) -> bool {
    match expr {
        Expr::Literal(v, _) => is_constant(v),
        Expr::Cast(c) => constant(&c.expr),
        Expr::TryCast(c) => constant(&c.expr),
        _ => false,
    }
}
