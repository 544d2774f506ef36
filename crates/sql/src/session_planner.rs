//! Lowering of HOP and SESSION window nodes to their operators.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Column as LogicalColumn;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan};
use datafusion::physical_expr::utils::collect_columns;
use tidemark_plan::{Distribution, Exchange, OperatorSpec, SessionKey};

use crate::stream_planner::{relation_of, Open, Planner};
use crate::window_node::{as_window, WindowNode, WindowSpec};
use crate::{Error, Result};

/// The HOP or SESSION node an aggregate reads, through aliases and
/// filters, with those filters' predicates.
pub(crate) fn window_below(plan: &LogicalPlan) -> Option<(&WindowNode, Vec<Expr>)> {
    let mut filters = Vec::new();
    let mut current = plan;
    loop {
        match current {
            LogicalPlan::SubqueryAlias(a) => current = &a.input,
            LogicalPlan::Filter(f) => {
                filters.push(f.predicate.clone());
                current = &f.input;
            }
            other => return Some((as_window(other)?, filters)),
        }
    }
}

fn reads_window_columns(expr: &Expr) -> bool {
    expr.column_refs()
        .iter()
        .any(|c| c.name == "window_start" || c.name == "window_end")
}

/// Whether the stream of `plan` only inserts rows, as [`Open::append_only`]
/// says once it is lowered.
fn inserts_only(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => relation_of(scan).is_ok_and(|info| info.is_append_only()),
        LogicalPlan::Projection(p) => inserts_only(&p.input),
        LogicalPlan::Filter(f) => inserts_only(&f.input),
        LogicalPlan::SubqueryAlias(a) => inserts_only(&a.input),
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => true,
        other => as_window(other)
            .is_some_and(|w| matches!(w.spec, WindowSpec::Hop { .. }) && inserts_only(&w.input)),
    }
}

/// The predicate with column qualifiers dropped, to bind it to the session's input.
pub(crate) fn unqualified(expr: &Expr) -> Result<Expr> {
    Ok(expr
        .clone()
        .transform(|e| match e {
            Expr::Column(c) => Ok(Transformed::yes(Expr::Column(
                LogicalColumn::new_unqualified(c.name),
            ))),
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

impl Planner {
    /// HOP not directly under an aggregate: rows copied into each window.
    pub(crate) fn hop(&mut self, node: &WindowNode) -> Result<Open> {
        let WindowSpec::Hop {
            slide,
            size,
            offset,
        } = node.spec
        else {
            return Err(Error::unsupported(
                "a SESSION window must be aggregated: GROUP BY its key columns and window_start or window_end",
            ));
        };
        let mut open = self.lower(&node.input)?;
        let n = open.schema.fields().len();
        let mut watermarks = open.watermarks.clone();
        if watermarks.contains(&node.time) {
            watermarks.extend([n, n + 1]);
        }
        open.push(
            OperatorSpec::HopExpand {
                time: node.time,
                slide_us: slide,
                size_us: size,
                offset_us: offset,
                schema: Arc::new(node.schema.as_arrow().clone()),
            },
            Arc::clone(&node.schema),
            watermarks,
        );
        Ok(open)
    }

    /// GROUP BY over HOP or SESSION windows: the window's aggregate
    /// operator, partitioned by the group's plain columns. `None` for a HOP
    /// the slicing operator cannot take (input that deletes, filters or
    /// aggregates over the window columns, computed group keys): rows are
    /// then copied into each window and grouped as usual.
    pub(crate) fn window_aggregate(
        &mut self,
        agg: &Aggregate,
        node: &WindowNode,
        filters: &[Expr],
    ) -> Result<Option<Open>> {
        if let WindowSpec::Hop { .. } = node.spec {
            let sliceable = filters.iter().all(|f| !reads_window_columns(f))
                && agg.group_expr.iter().all(|g| matches!(g, Expr::Column(_)))
                && agg.group_expr.iter().any(reads_window_columns)
                && agg.aggr_expr.iter().all(|a| !reads_window_columns(a));
            if !sliceable || !inserts_only(&node.input) {
                return Ok(None);
            }
        }
        let mut input = self.lower(&node.input)?;
        let n_in = input.schema.fields().len();
        let in_schema = Arc::clone(agg.input.schema());
        for predicate in filters {
            if reads_window_columns(predicate) {
                return Err(Error::unsupported(
                    "a filter on window_start or window_end of a SESSION window: filter the view's output instead",
                ));
            }
            let physical = self.physical(&unqualified(predicate)?, &input.schema)?;
            input.push_same(OperatorSpec::Filter {
                predicate: physical,
            });
        }
        let mut partition = Vec::new();
        let mut keys = Vec::new();
        for g in &agg.group_expr {
            let Expr::Column(c) = g else {
                return Err(Error::unsupported(
                    "a SESSION window can only be grouped by columns (and window_start or window_end)",
                ));
            };
            let i = in_schema.index_of_column(c)?;
            keys.push(match i {
                i if i < n_in => {
                    partition.push(i);
                    SessionKey::Partition(partition.len() - 1)
                }
                i if i == n_in => SessionKey::WindowStart,
                _ => SessionKey::WindowEnd,
            });
        }
        if !keys
            .iter()
            .any(|k| matches!(k, SessionKey::WindowStart | SessionKey::WindowEnd))
        {
            return Err(Error::unsupported(
                "a SESSION window must be grouped by window_start or window_end",
            ));
        }
        let aggs = self.agg_calls(agg, &in_schema)?;
        for call in &aggs {
            let reads_window = call
                .expr
                .expressions()
                .iter()
                .chain(call.filter.iter())
                .flat_map(collect_columns)
                .any(|c| c.index() >= n_in);
            if reads_window {
                return Err(Error::unsupported(
                    "aggregates over window_start or window_end of a SESSION window",
                ));
            }
        }
        let closes = input.watermarks.contains(&node.time);
        let (exchange, distribution) = if partition.is_empty() {
            (Exchange::Single, Distribution::Single)
        } else {
            (Exchange::Hash(partition.clone()), Distribution::Hashed)
        };
        // Window ends carry the input's watermark on; HOP window starts too.
        let watermarks: Vec<usize> = if closes {
            keys.iter()
                .enumerate()
                .filter(|(_, k)| match k {
                    SessionKey::WindowEnd => true,
                    SessionKey::WindowStart => matches!(node.spec, WindowSpec::Hop { .. }),
                    SessionKey::Partition(_) => false,
                })
                .map(|(j, _)| j)
                .collect()
        } else {
            Vec::new()
        };
        let inputs = self.exchange_input(input, exchange);
        let mut open = Open::new(inputs, distribution, Arc::clone(&agg.schema), Vec::new());
        let schema = Arc::new(agg.schema.as_arrow().clone());
        let spec = match node.spec {
            WindowSpec::Session { gap } => OperatorSpec::SessionAgg {
                partition,
                time: node.time,
                gap_us: gap,
                aggs,
                keys,
                emit_on_close: false,
                schema,
            },
            WindowSpec::Hop {
                slide,
                size,
                offset,
            } => OperatorSpec::HopAgg {
                partition,
                time: node.time,
                slide_us: slide,
                size_us: size,
                offset_us: offset,
                aggs,
                keys,
                emit_on_close: false,
                schema,
            },
        };
        open.push(spec, Arc::clone(&agg.schema), watermarks);
        Ok(Some(open))
    }
}
