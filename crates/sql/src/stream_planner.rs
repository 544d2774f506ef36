//! Lowers a DataFusion logical plan to a [`StreamGraph`]: stateless operators
//! fuse into the current fragment; a `GROUP BY` ends it with a hash exchange on
//! the group key and starts the aggregate's fragment; the last fragment ends
//! in the view's `Materialize`.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Aggregate, Distinct, Expr, LogicalPlan, TableScan};
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
use tidemark_plan::{
    AggCall, Distribution, Exchange, Fragment, FragmentId, FragmentInput, OperatorSpec, RelationId,
    StreamGraph, WindowKey,
};

use crate::relation::{RelationInfo, RelationKind, RelationProvider};
use crate::session_planner::window_below;
use crate::watermarks::monotone_source;
use crate::window_node::as_window;
use crate::{Error, Result};

/// The fragment being built: operators are appended until an exchange closes it.
pub(crate) struct Open {
    pub(crate) inputs: Vec<FragmentInput>,
    pub(crate) operators: Vec<OperatorSpec>,
    /// Per operator, its output columns that carry a watermark, by name.
    operator_watermarks: Vec<Vec<String>>,
    pub(crate) distribution: Distribution,
    pub(crate) schema: DFSchemaRef,
    /// Columns of `schema` that carry a watermark.
    pub(crate) watermarks: Vec<usize>,
    /// The stream only inserts: a source, an append-only table, and what
    /// projections and filters make of them.
    pub(crate) append_only: bool,
}

impl Open {
    pub(crate) fn new(
        inputs: Vec<FragmentInput>,
        distribution: Distribution,
        schema: DFSchemaRef,
        watermarks: Vec<usize>,
    ) -> Self {
        Self {
            inputs,
            operators: Vec::new(),
            operator_watermarks: Vec::new(),
            distribution,
            schema,
            watermarks,
            append_only: false,
        }
    }

    fn append_only(mut self) -> Self {
        self.append_only = true;
        self
    }

    /// Appends an operator whose output is `schema`, with `watermarks`.
    pub(crate) fn push(&mut self, op: OperatorSpec, schema: DFSchemaRef, watermarks: Vec<usize>) {
        self.operator_watermarks.push(
            watermarks
                .iter()
                .map(|&i| schema.field(i).name().clone())
                .collect(),
        );
        self.operators.push(op);
        self.schema = schema;
        self.watermarks = watermarks;
    }

    /// Appends an operator that keeps the schema (a filter, the sink).
    pub(crate) fn push_same(&mut self, op: OperatorSpec) {
        let (schema, watermarks) = (Arc::clone(&self.schema), self.watermarks.clone());
        self.push(op, schema, watermarks);
    }
}

/// A planned `CREATE MATERIALIZED VIEW`.
pub struct PlannedView {
    pub graph: StreamGraph,
    /// The view's columns (renamed to the given column names).
    pub schema: SchemaRef,
    /// Columns of the view whose watermark its changelog carries.
    pub watermark_columns: Vec<usize>,
}

pub(crate) struct Planner {
    fragments: Vec<Fragment>,
    pub(crate) props: ExecutionProps,
    pub(crate) ctx: PhysicalPlanningContext,
}

/// The streaming job of `CREATE MATERIALIZED VIEW view AS <plan>`, with
/// column names `columns` when given; `emit_on_close` makes its windowed
/// aggregate emit each window once, when the watermark closes it.
pub fn plan_view(
    view: RelationId,
    name: &str,
    plan: &LogicalPlan,
    columns: &[String],
    emit_on_close: bool,
) -> Result<PlannedView> {
    let mut planner = Planner {
        fragments: Vec::new(),
        props: ExecutionProps::new(),
        ctx: PhysicalPlanningContext::default(),
    };
    let mut open = planner.lower(plan)?;
    if open.inputs.is_empty() {
        return Err(Error::unsupported(
            "a materialized view must read at least one table, source or materialized view",
        ));
    }
    if emit_on_close {
        let last_agg = open.operators.iter_mut().rev().find(|op| {
            matches!(
                op,
                OperatorSpec::HashAgg { .. }
                    | OperatorSpec::SessionAgg { .. }
                    | OperatorSpec::HopAgg { .. }
            )
        });
        match last_agg {
            Some(
                OperatorSpec::SessionAgg { emit_on_close, .. }
                | OperatorSpec::HopAgg { emit_on_close, .. },
            ) => *emit_on_close = true,
            Some(OperatorSpec::HashAgg {
                window: Some(window),
                ..
            }) => window.emit_on_close = true,
            _ => {
                return Err(Error::unsupported(
                    "EMIT ON WINDOW CLOSE needs the view to end in a GROUP BY on a window (window_start or window_end) or another column with a watermark",
                ))
            }
        }
    }
    let schema = view_schema(open.schema.as_arrow(), columns)?;
    // Equal rows computed by different actors must meet in one Materialize, or
    // their counts would overwrite each other in the view's state table.
    if open.distribution == Distribution::Hashed {
        let all_columns = (0..schema.fields().len()).collect();
        let df_schema = Arc::clone(&open.schema);
        let watermarks = open.watermarks.clone();
        let upstream = planner.close(open);
        open = Open::new(
            vec![FragmentInput::Fragment {
                id: upstream,
                exchange: Exchange::Hash(all_columns),
            }],
            Distribution::Hashed,
            df_schema,
            watermarks,
        );
    }
    let watermark_columns = open.watermarks.clone();
    let watermarks = open.watermarks.clone();
    open.push(
        OperatorSpec::Materialize {
            relation: view,
            name: name.to_string(),
        },
        Arc::new(DFSchema::try_from(Arc::clone(&schema))?),
        watermarks,
    );
    planner.close(open);
    Ok(PlannedView {
        graph: StreamGraph {
            fragments: planner.fragments,
        },
        schema,
        watermark_columns,
    })
}

fn view_schema(schema: &Schema, columns: &[String]) -> Result<SchemaRef> {
    if !columns.is_empty() && columns.len() != schema.fields().len() {
        return Err(Error::User {
            code: "42601",
            message: format!(
                "the view has {} columns but {} column names were given",
                schema.fields().len(),
                columns.len()
            ),
        });
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match columns.get(i) {
            Some(name) => f.as_ref().clone().with_name(name),
            None => f.as_ref().clone(),
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for f in &fields {
        if !seen.insert(f.name().clone()) {
            return Err(Error::User {
                code: "42701",
                message: format!("column \"{}\" specified more than once", f.name()),
            });
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// The catalog relation a scan reads.
pub(crate) fn relation_of(scan: &TableScan) -> Result<Arc<RelationInfo>> {
    let provider: Arc<dyn TableProvider> = source_as_provider(&scan.source)?;
    match provider.downcast_ref::<RelationProvider>() {
        Some(RelationProvider(info)) => Ok(Arc::clone(info)),
        None => Err(unsupported("this kind of table")),
    }
}

pub(crate) fn unsupported(what: &str) -> Error {
    Error::unsupported(format!("materialized views do not support {what} yet"))
}

impl Planner {
    pub(crate) fn physical(&self, expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(create_physical_expr(expr, schema, &self.props, &self.ctx)?)
    }

    pub(crate) fn close(&mut self, open: Open) -> FragmentId {
        let id = self.fragments.len() as FragmentId;
        self.fragments.push(Fragment {
            id,
            inputs: open.inputs,
            operators: open.operators,
            watermarks: open.operator_watermarks,
            distribution: open.distribution,
            schema: Arc::new(open.schema.as_arrow().clone()),
        });
        id
    }

    pub(crate) fn lower(&mut self, plan: &LogicalPlan) -> Result<Open> {
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(scan),
            LogicalPlan::Projection(p) => {
                let mut open = self.lower(&p.input)?;
                let exprs = p
                    .expr
                    .iter()
                    .zip(p.schema.fields())
                    .map(|(e, f)| Ok((self.physical(e, &open.schema)?, f.name().clone())))
                    .collect::<Result<Vec<_>>>()?;
                let derived: Vec<(usize, usize)> = p
                    .expr
                    .iter()
                    .enumerate()
                    .filter_map(|(i, e)| {
                        monotone_source(e, &open.schema, &open.watermarks).map(|c| (i, c))
                    })
                    .collect();
                let spec = OperatorSpec::Project {
                    exprs,
                    schema: Arc::new(p.schema.as_arrow().clone()),
                    watermarks: derived.clone(),
                };
                open.push(
                    spec,
                    Arc::clone(&p.schema),
                    derived.iter().map(|(o, _)| *o).collect(),
                );
                Ok(open)
            }
            LogicalPlan::Filter(f) => {
                let mut open = self.lower(&f.input)?;
                let predicate = self.physical(&f.predicate, &open.schema)?;
                open.push_same(OperatorSpec::Filter { predicate });
                Ok(open)
            }
            LogicalPlan::SubqueryAlias(a) => {
                let mut open = self.lower(&a.input)?;
                open.schema = Arc::clone(&a.schema);
                Ok(open)
            }
            LogicalPlan::Aggregate(agg) => match window_below(&agg.input) {
                Some((node, filters)) => match self.window_aggregate(agg, node, &filters)? {
                    Some(open) => Ok(open),
                    None => self.aggregate(agg),
                },
                None => self.aggregate(agg),
            },
            LogicalPlan::Extension(_) => match as_window(plan) {
                Some(node) => self.hop(node),
                None => Err(unsupported(&format!("{} plans", plan.display()))),
            },
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let group_expr: Vec<Expr> = input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                let agg = Aggregate::try_new(Arc::clone(input), group_expr, Vec::new())?;
                self.aggregate(&agg)
            }
            // A view has no order; ORDER BY without LIMIT does not change its rows.
            LogicalPlan::Sort(s) if s.fetch.is_none() => self.lower(&s.input),
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => Err(unsupported("LIMIT")),
            LogicalPlan::Join(_) => Err(unsupported("joins")),
            LogicalPlan::Union(_) => Err(unsupported("UNION")),
            LogicalPlan::Window(_) => Err(unsupported("window functions")),
            LogicalPlan::Distinct(Distinct::On(_)) => Err(unsupported("DISTINCT ON")),
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => Ok(Open::new(
                Vec::new(),
                Distribution::Single,
                Arc::clone(plan.schema()),
                Vec::new(),
            )
            .append_only()),
            other => Err(unsupported(&format!("{} plans", other.display()))),
        }
    }

    fn scan(&mut self, scan: &TableScan) -> Result<Open> {
        let info = relation_of(scan)?;
        let full = Arc::new(DFSchema::try_from_qualified_schema(
            scan.table_name.clone(),
            &info.schema,
        )?);
        let mut open = match &info.kind {
            RelationKind::Source { options } => Open::new(
                vec![FragmentInput::Source {
                    id: info.id,
                    name: info.name.clone(),
                    schema: Arc::clone(&info.schema),
                    options: options.clone(),
                    event_time: info.event_time,
                }],
                Distribution::Single,
                full,
                info.watermark_columns.clone(),
            ),
            _ => Open::new(
                vec![FragmentInput::Relation {
                    id: info.id,
                    name: info.name.clone(),
                    schema: Arc::clone(&info.schema),
                    exchange: Exchange::Hash(info.stream_key()),
                }],
                Distribution::Hashed,
                full,
                info.watermark_columns.clone(),
            ),
        };
        open.append_only = info.is_append_only();
        if let Some(projection) = &scan.projection {
            let exprs = projection
                .iter()
                .map(|&i| {
                    let name = info.schema.field(i).name().clone();
                    (
                        Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                        name,
                    )
                })
                .collect();
            let derived: Vec<(usize, usize)> = projection
                .iter()
                .enumerate()
                .filter(|(_, c)| open.watermarks.contains(c))
                .map(|(o, c)| (o, *c))
                .collect();
            open.push(
                OperatorSpec::Project {
                    exprs,
                    schema: Arc::new(scan.projected_schema.as_arrow().clone()),
                    watermarks: derived.clone(),
                },
                Arc::clone(&scan.projected_schema),
                derived.iter().map(|(o, _)| *o).collect(),
            );
        }
        for filter in &scan.filters {
            let predicate = self.physical(filter, &open.schema)?;
            open.push_same(OperatorSpec::Filter { predicate });
        }
        Ok(open)
    }

    /// `input` as the input of a new fragment through `exchange`. An input
    /// fragment that would only pass rows on is skipped: the new fragment
    /// reads the relation through the exchange directly.
    pub(crate) fn exchange_input(&mut self, input: Open, exchange: Exchange) -> Vec<FragmentInput> {
        match (input.operators.is_empty(), input.inputs.as_slice()) {
            (
                true,
                [FragmentInput::Relation {
                    id, name, schema, ..
                }],
            ) => vec![FragmentInput::Relation {
                id: *id,
                name: name.clone(),
                schema: Arc::clone(schema),
                exchange,
            }],
            _ => vec![FragmentInput::Fragment {
                id: self.close(input),
                exchange,
            }],
        }
    }

    /// The aggregate calls of `agg`, bound to its input's `schema`.
    pub(crate) fn agg_calls(&self, agg: &Aggregate, schema: &DFSchema) -> Result<Vec<AggCall>> {
        agg.aggr_expr
            .iter()
            .map(|expr| {
                let lowered = LoweredAggregateBuilder::new(
                    expr,
                    schema,
                    schema.as_arrow(),
                    &self.props,
                    &self.ctx,
                )
                .build()?;
                if !lowered.order_bys.is_empty() {
                    return Err(unsupported("ordered aggregates"));
                }
                Ok(AggCall {
                    expr: lowered.aggregate,
                    filter: lowered.filter,
                })
            })
            .collect()
    }

    fn aggregate(&mut self, agg: &Aggregate) -> Result<Open> {
        let mut input = self.lower(&agg.input)?;
        let in_schema = Arc::clone(&input.schema);
        if agg
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return Err(unsupported("GROUPING SETS, ROLLUP or CUBE"));
        }
        let mut aggs = Vec::with_capacity(agg.aggr_expr.len());
        for call in self.agg_calls(agg, &in_schema)? {
            let name = call.expr.fun().name().to_string();
            if name != "min" && name != "max" && call.expr.create_sliding_accumulator().is_err() {
                return Err(Error::unsupported(format!(
                    "aggregate {}() is not supported in materialized views: it cannot be updated when rows are deleted",
                    name
                )));
            }
            aggs.push(call);
        }

        // Group keys must be columns to hash on: computed keys are appended to
        // the input rows by a projection before the exchange.
        let n_in = in_schema.fields().len();
        let mut key_columns = Vec::with_capacity(agg.group_expr.len());
        let mut computed: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::new();
        let mut derived: Vec<(usize, usize)> = Vec::new();
        for (i, g) in agg.group_expr.iter().enumerate() {
            match g {
                Expr::Column(c) => key_columns.push(in_schema.index_of_column(c)?),
                other => {
                    let out = n_in + computed.len();
                    if let Some(c) = monotone_source(other, &in_schema, &input.watermarks) {
                        derived.push((out, c));
                    }
                    key_columns.push(out);
                    computed.push((self.physical(other, &in_schema)?, format!("__group_{i}")));
                }
            }
        }
        let mut agg_input_schema = Arc::new(in_schema.as_arrow().clone());
        if !computed.is_empty() {
            let arrow_in = in_schema.as_arrow();
            let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = arrow_in
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    (
                        Arc::new(Column::new(f.name(), i)) as Arc<dyn PhysicalExpr>,
                        f.name().clone(),
                    )
                })
                .collect();
            let mut fields: Vec<Field> = arrow_in
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            for (e, name) in &computed {
                fields.push(Field::new(
                    name,
                    e.data_type(arrow_in)?,
                    e.nullable(arrow_in)?,
                ));
            }
            exprs.extend(computed);
            agg_input_schema = Arc::new(Schema::new(fields));
            let kept: Vec<(usize, usize)> = input.watermarks.iter().map(|&c| (c, c)).collect();
            let watermarks: Vec<(usize, usize)> = kept.into_iter().chain(derived).collect();
            input.push(
                OperatorSpec::Project {
                    exprs,
                    schema: Arc::clone(&agg_input_schema),
                    watermarks: watermarks.clone(),
                },
                Arc::new(DFSchema::try_from(Arc::clone(&agg_input_schema))?),
                watermarks.iter().map(|(o, _)| *o).collect(),
            );
        }
        // Group keys on watermarked columns pass the watermark on; the first
        // one is the window that closes groups.
        let key_watermarks: Vec<(usize, usize)> = key_columns
            .iter()
            .enumerate()
            .filter(|(_, c)| input.watermarks.contains(c))
            .map(|(j, c)| (*c, j))
            .collect();
        let window = key_watermarks
            .first()
            .map(|&(input_column, key)| WindowKey {
                key,
                input_column,
                emit_on_close: false,
            });
        let append_only_input = input.append_only;
        let global = agg.group_expr.is_empty();
        let exchange = if global {
            Exchange::Single
        } else {
            Exchange::Hash(key_columns.clone())
        };
        let inputs = self.exchange_input(input, exchange);
        let group_exprs = key_columns
            .iter()
            .map(|&i| {
                let name = agg_input_schema.field(i).name().clone();
                (
                    Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                    name,
                )
            })
            .collect();
        let mut open = Open::new(
            inputs,
            if global {
                Distribution::Single
            } else {
                Distribution::Hashed
            },
            Arc::clone(&agg.schema),
            Vec::new(),
        );
        open.push(
            OperatorSpec::HashAgg {
                group_exprs,
                aggs,
                schema: Arc::new(agg.schema.as_arrow().clone()),
                window,
                watermarks: key_watermarks.clone(),
                append_only_input,
            },
            Arc::clone(&agg.schema),
            key_watermarks.iter().map(|(_, j)| *j).collect(),
        );
        Ok(open)
    }
}
