//! HOP and SESSION windows in a batch `SELECT`: the plan's window nodes
//! rewritten into plain DataFusion plans with the streaming operators'
//! semantics. HOP becomes a cross join with the window numbers; SESSION, a
//! gaps-and-islands pass with window functions, partitioned by the GROUP BY
//! columns of the aggregate above it, as the streaming `SessionAgg` does.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef, ScalarValue};
use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::functions_window::lead_lag::lag_udwf;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::{
    cast, col, lit, when, Aggregate, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder,
    SubqueryAlias, WindowFrame, WindowFrameBound, WindowFrameUnits, WindowFunctionDefinition,
};

use crate::session_planner::{unqualified, window_below};
use crate::window_node::{as_window, WindowNode, WindowSpec};
use crate::{Error, Result};

/// `plan` without HOP or SESSION nodes, for DataFusion to run.
pub fn expand_windows(plan: LogicalPlan) -> Result<LogicalPlan> {
    let plan = plan
        .transform_up(|node| {
            if let LogicalPlan::Aggregate(agg) = &node {
                if let Some(rewritten) = session_aggregate(agg).map_err(to_df)? {
                    return Ok(Transformed::yes(rewritten));
                }
            }
            match as_window(&node) {
                Some(w) if matches!(w.spec, WindowSpec::Hop { .. }) => {
                    Ok(Transformed::yes(hop(w).map_err(to_df)?))
                }
                _ => Ok(Transformed::no(node)),
            }
        })
        .map_err(from_df)?
        .data;
    let session_left = plan.exists(|p| Ok(as_window(p).is_some()))?;
    if session_left {
        return Err(Error::unsupported(
            "a SESSION window must be aggregated: GROUP BY its key columns and window_start or window_end",
        ));
    }
    Ok(plan)
}

/// Our own errors, back out of DataFusion's.
fn from_df(e: datafusion::error::DataFusionError) -> Error {
    match e {
        datafusion::error::DataFusionError::External(inner) => match inner.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) => Error::DataFusion(datafusion::error::DataFusionError::External(other)),
        },
        other => Error::DataFusion(other),
    }
}

fn to_df(e: Error) -> datafusion::error::DataFusionError {
    match e {
        Error::DataFusion(e) => e,
        other => datafusion::error::DataFusionError::External(Box::new(other)),
    }
}

/// Every input column of `schema`'s first `n` fields, as column expressions.
fn columns(schema: &DFSchemaRef, n: usize) -> Vec<Expr> {
    schema
        .iter()
        .take(n)
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
        .collect()
}

/// The time column `time` of `input` in microseconds since the epoch (Int64).
fn micros(input: &LogicalPlan, time: usize) -> Result<(Expr, DataType)> {
    let (q, field) = input.schema().qualified_field(time);
    let tz = match field.data_type() {
        DataType::Timestamp(_, tz) => tz.clone(),
        other => {
            return Err(Error::unsupported(format!(
                "a window over a column of type {other}"
            )))
        }
    };
    let us = DataType::Timestamp(TimeUnit::Microsecond, tz);
    let column = Expr::Column(Column::new(q.cloned(), field.name()));
    Ok((cast(cast(column, us.clone()), DataType::Int64), us))
}

/// Microseconds back to the window columns' type.
fn to_time(expr: Expr, us: &DataType, target: &DataType) -> Expr {
    cast(cast(expr, us.clone()), target.clone())
}

/// The node's output columns, qualified as the node declared them, from
/// `exprs` in order.
fn as_node_schema(node: &WindowNode, exprs: Vec<Expr>) -> Vec<Expr> {
    exprs
        .into_iter()
        .zip(node.schema.iter())
        .map(|(e, (q, f))| e.alias_qualified(q.cloned(), f.name()))
        .collect()
}

/// HOP: each row once per window containing it.
fn hop(node: &WindowNode) -> Result<LogicalPlan> {
    let WindowSpec::Hop {
        slide,
        size,
        offset,
    } = node.spec
    else {
        return Err(Error::unsupported("not a HOP window"));
    };
    let n = node.input.schema().fields().len();
    let (ts, us) = micros(&node.input, node.time)?;
    let target = node.schema.field(n).data_type().clone();
    // The start of the newest window holding the row (floor division).
    let rem = ((ts.clone() - lit(offset)) % lit(slide) + lit(slide)) % lit(slide);
    let mut exprs = columns(node.input.schema(), n);
    exprs.push((ts - rem).alias("__hop_last"));
    let numbers: Vec<Vec<Expr>> = (0..size / slide).map(|k| vec![lit(k)]).collect();
    let numbers = LogicalPlanBuilder::values(numbers)?
        .alias("__hop_k")?
        .build()?;
    let expanded = LogicalPlanBuilder::from(node.input.clone())
        .project(exprs)?
        .filter(col("__hop_last").is_not_null())?
        .cross_join(numbers)?
        .build()?;
    let start =
        col("__hop_last") - Expr::Column(Column::new(Some("__hop_k"), "column1")) * lit(slide);
    let mut out = columns(node.input.schema(), n);
    out.push(to_time(start.clone(), &us, &target));
    out.push(to_time(start + lit(size), &us, &target));
    Ok(LogicalPlanBuilder::from(expanded)
        .project(as_node_schema(node, out))?
        .build()?)
}

/// An aggregate over a SESSION window, with the window assigned by
/// gaps-and-islands; `None` when the aggregate does not read one.
fn session_aggregate(agg: &Aggregate) -> Result<Option<LogicalPlan>> {
    let Some((node, filters)) = window_below(&agg.input) else {
        return Ok(None);
    };
    let WindowSpec::Session { gap } = node.spec else {
        return Ok(None);
    };
    let n = node.input.schema().fields().len();
    let mut partition = Vec::new();
    for g in &agg.group_expr {
        let Expr::Column(c) = g else {
            return Err(Error::unsupported(
                "a SESSION window can only be grouped by columns (and window_start or window_end)",
            ));
        };
        let i = agg.input.schema().index_of_column(c)?;
        if i < n {
            let (q, f) = node.input.schema().qualified_field(i);
            partition.push(Expr::Column(Column::new(q.cloned(), f.name())));
        }
    }
    // Filters between the window and the aggregate pick the rows that form
    // sessions, as in the streaming plan: apply them first.
    let mut input = LogicalPlanBuilder::from(node.input.clone());
    for f in &filters {
        input = input.filter(unqualified(f)?)?;
    }
    let sessions = sessionize(node, input.build()?, partition, gap)?;
    let rebuilt = replace_window(&agg.input, sessions)?;
    Ok(Some(LogicalPlan::Aggregate(Aggregate::try_new(
        Arc::new(rebuilt),
        agg.group_expr.clone(),
        agg.aggr_expr.clone(),
    )?)))
}

/// `plan` (aliases and filters over a window node) with the window node
/// replaced by `with`, and the filters dropped (already applied below it).
fn replace_window(plan: &LogicalPlan, with: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => Ok(LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
            Arc::new(replace_window(&a.input, with)?),
            a.alias.clone(),
        )?)),
        LogicalPlan::Filter(f) => replace_window(&f.input, with),
        _ => Ok(with),
    }
}

/// A window function of the one argument `arg`, partitioned by `partition`.
/// (`lag` with one argument is SQL's `lag(t)`: offset 1, default NULL.)
fn over(
    fun: WindowFunctionDefinition,
    arg: Expr,
    partition: Vec<Expr>,
    order: Option<Expr>,
    frame: Option<WindowFrame>,
) -> Result<Expr> {
    let mut builder = Expr::from(WindowFunction::new(fun, vec![arg])).partition_by(partition);
    if let Some(o) = order {
        builder = builder.order_by(vec![o.sort(true, true)]);
    }
    if let Some(f) = frame {
        builder = builder.window_frame(f);
    }
    Ok(builder.build()?)
}

/// Adds `exprs` (window functions) to `plan`, then keeps `keep` plus each
/// of them under its alias.
fn with_windows(plan: LogicalPlan, keep: &[Expr], exprs: Vec<(Expr, &str)>) -> Result<LogicalPlan> {
    let names: Vec<String> = exprs
        .iter()
        .map(|(e, _)| e.schema_name().to_string())
        .collect();
    let windowed = LogicalPlanBuilder::from(plan)
        .window(exprs.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>())?
        .build()?;
    let mut out = keep.to_vec();
    for (name, (_, alias)) in names.iter().zip(&exprs) {
        out.push(Expr::Column(Column::from_name(name)).alias(*alias));
    }
    Ok(LogicalPlanBuilder::from(windowed).project(out)?.build()?)
}

/// SESSION: a row more than `gap` after the previous row of its partition
/// starts a new session; `window_start` is a session's first time,
/// `window_end` its last time plus `gap`. Rows without a time are in none.
fn sessionize(
    node: &WindowNode,
    input: LogicalPlan,
    partition: Vec<Expr>,
    gap: i64,
) -> Result<LogicalPlan> {
    let n = node.input.schema().fields().len();
    let (ts, us) = micros(&input, node.time)?;
    let target = node.schema.field(n).data_type().clone();
    let mut keep = columns(input.schema(), n);
    let mut timed = keep.clone();
    timed.push(ts.alias("__s_ts"));
    let timed = LogicalPlanBuilder::from(input)
        .project(timed)?
        .filter(col("__s_ts").is_not_null())?
        .build()?;
    keep.push(col("__s_ts"));
    let t = col("__s_ts");
    let prev = over(
        WindowFunctionDefinition::WindowUDF(lag_udwf()),
        t.clone(),
        partition.clone(),
        Some(t.clone()),
        None,
    )?;
    let with_prev = with_windows(timed, &keep, vec![(prev, "__s_prev")])?;
    let starts = when(
        col("__s_prev")
            .is_null()
            .or((t.clone() - col("__s_prev")).gt(lit(gap))),
        lit(1i64),
    )
    .otherwise(lit(0i64))?;
    let mut flagged = keep.clone();
    flagged.push(starts.alias("__s_new"));
    let flagged = LogicalPlanBuilder::from(with_prev)
        .project(flagged)?
        .build()?;
    let running = WindowFrame::new_bounds(
        WindowFrameUnits::Rows,
        WindowFrameBound::Preceding(ScalarValue::UInt64(None)),
        WindowFrameBound::CurrentRow,
    );
    let id = over(
        WindowFunctionDefinition::AggregateUDF(sum_udaf()),
        col("__s_new"),
        partition.clone(),
        Some(t.clone()),
        Some(running),
    )?;
    let numbered = with_windows(flagged, &keep, vec![(id, "__s_id")])?;
    let mut session = partition;
    session.push(col("__s_id"));
    let first = over(
        WindowFunctionDefinition::AggregateUDF(min_udaf()),
        t.clone(),
        session.clone(),
        None,
        None,
    )?;
    let last = over(
        WindowFunctionDefinition::AggregateUDF(max_udaf()),
        t,
        session,
        None,
        None,
    )?;
    let bounded = with_windows(
        numbered,
        &keep,
        vec![(first, "__s_first"), (last, "__s_last")],
    )?;
    let mut out = columns(bounded.schema(), n);
    out.push(to_time(col("__s_first"), &us, &target));
    out.push(to_time(col("__s_last") + lit(gap), &us, &target));
    Ok(LogicalPlanBuilder::from(bounded)
        .project(as_node_schema(node, out))?
        .build()?)
}
