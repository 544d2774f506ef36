//! Lowering of HOP and SESSION window nodes to their operators.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Column as LogicalColumn;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan};
use datafusion::physical_expr::utils::collect_columns;
use tidemark_plan::{Distribution, Exchange, FragmentInput, OperatorSpec, SessionKey};

use crate::stream_planner::{unsupported, Open, Planner};
use crate::window_node::{as_window, WindowNode, WindowSpec};
use crate::{Error, Result};

/// The SESSION node an aggregate reads, through aliases and filters, with
/// those filters' predicates.
pub(crate) fn session_below(plan: &LogicalPlan) -> Option<(&WindowNode, Vec<Expr>)> {
    let mut filters = Vec::new();
    let mut current = plan;
    loop {
        match current {
            LogicalPlan::SubqueryAlias(a) => current = &a.input,
            LogicalPlan::Filter(f) => {
                filters.push(f.predicate.clone());
                current = &f.input;
            }
            other => {
                let node = as_window(other)?;
                return matches!(node.spec, WindowSpec::Session { .. }).then_some((node, filters));
            }
        }
    }
}

/// The predicate with column qualifiers dropped, to bind it to the session's input.
fn unqualified(expr: &Expr) -> Result<Expr> {
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

    /// GROUP BY over SESSION windows: the session operator, partitioned by
    /// the group's plain columns.
    pub(crate) fn session_aggregate(
        &mut self,
        agg: &Aggregate,
        node: &WindowNode,
        filters: &[Expr],
    ) -> Result<Open> {
        let WindowSpec::Session { gap } = node.spec else {
            return Err(unsupported("this window"));
        };
        let mut input = self.lower(&node.input)?;
        let n_in = input.schema.fields().len();
        let in_schema = Arc::clone(agg.input.schema());
        for predicate in filters {
            let refs = predicate.column_refs();
            if refs
                .iter()
                .any(|c| c.name == "window_start" || c.name == "window_end")
            {
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
        let upstream = self.close(input);
        let watermarks: Vec<usize> = if closes {
            keys.iter()
                .enumerate()
                .filter(|(_, k)| matches!(k, SessionKey::WindowEnd))
                .map(|(j, _)| j)
                .collect()
        } else {
            Vec::new()
        };
        let mut open = Open::new(
            vec![FragmentInput::Fragment {
                id: upstream,
                exchange,
            }],
            distribution,
            Arc::clone(&agg.schema),
            Vec::new(),
        );
        open.push(
            OperatorSpec::SessionAgg {
                partition,
                time: node.time,
                gap_us: gap,
                aggs,
                keys,
                emit_on_close: false,
                schema: Arc::new(agg.schema.as_arrow().clone()),
            },
            Arc::clone(&agg.schema),
            watermarks,
        );
        Ok(open)
    }
}
