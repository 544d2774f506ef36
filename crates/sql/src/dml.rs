//! UPDATE and DELETE: DataFusion plans them as a projection (UPDATE) over a
//! filter over a scan of the table; we keep the expressions, to be evaluated
//! by the table's owner over its current rows.

use std::sync::Arc;

use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, WriteOp};
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};

use crate::{Error, Result};

/// The row-level part of an UPDATE or DELETE, over the table's columns.
#[derive(Debug)]
pub struct RowChange {
    pub table: String,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// For UPDATE: every column's new value, in table order.
    pub columns: Option<Vec<Arc<dyn PhysicalExpr>>>,
}

pub fn plan_row_change(dml: &DmlStatement) -> Result<RowChange> {
    let props = ExecutionProps::new();
    let ctx = PhysicalPlanningContext::default();
    let mut projection: Option<&Vec<Expr>> = None;
    let mut predicates: Vec<&Expr> = Vec::new();
    let mut node = dml.input.as_ref();
    // Expressions were planned against the (possibly aliased) scan, whose
    // columns are the table's, in order.
    let schema = loop {
        match node {
            LogicalPlan::Projection(p) if projection.is_none() => {
                projection = Some(&p.expr);
                node = &p.input;
            }
            LogicalPlan::Filter(f) => {
                predicates.push(&f.predicate);
                node = &f.input;
            }
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::TableScan(scan) if scan.projection.is_none() => break Arc::clone(&scan.projected_schema),
            _ => {
                return Err(Error::unsupported(
                    "UPDATE and DELETE may only refer to the target table (no FROM, USING or subqueries)",
                ))
            }
        }
    };
    let filter = predicates
        .into_iter()
        .cloned()
        .reduce(|a, b| a.and(b))
        .map(|p| create_physical_expr(&p, &schema, &props, &ctx))
        .transpose()?;
    let columns = match (&dml.op, projection) {
        (WriteOp::Update, Some(exprs)) => Some(
            exprs
                .iter()
                .map(|e| create_physical_expr(e, &schema, &props, &ctx))
                .collect::<datafusion::error::Result<Vec<_>>>()?,
        ),
        (WriteOp::Delete, _) => None,
        _ => return Err(Error::unsupported("this kind of data modification")),
    };
    Ok(RowChange {
        table: dml.table_name.table().to_string(),
        filter,
        columns,
    })
}
