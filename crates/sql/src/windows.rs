//! Window table functions in `FROM`: `TUMBLE(src, ts, size [, offset])` adds
//! `window_start` and `window_end` to every row of `src`. Each call becomes an
//! ordinary plan over the relation (inlined by DataFusion like a view), so
//! batch queries and streaming views see the same rows.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, ScalarValue};
use datafusion::datasource::{provider_as_source, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::functions::datetime::expr_fn::date_bin;
use datafusion::logical_expr::{col, lit, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::ExecutionPlan;

use crate::window_node::{WindowNode, WindowSpec};

/// The relations a statement may window, by name.
pub(crate) type Relations = Arc<HashMap<String, Arc<dyn TableProvider>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WindowKind {
    Tumble,
    Hop,
    Session,
}

impl WindowKind {
    pub(crate) const ALL: [(&'static str, WindowKind); 3] = [
        ("tumble", WindowKind::Tumble),
        ("hop", WindowKind::Hop),
        ("session", WindowKind::Session),
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            WindowKind::Tumble => "TUMBLE",
            WindowKind::Hop => "HOP",
            WindowKind::Session => "SESSION",
        }
    }
}

#[derive(Debug)]
pub(crate) struct WindowFunction {
    pub kind: WindowKind,
    pub relations: Relations,
}

fn invalid(message: String) -> DataFusionError {
    DataFusionError::Plan(format!("invalid window argument: {message}"))
}

/// A fixed interval in microseconds; months have no fixed length, so they are
/// refused.
pub(crate) fn interval_micros(expr: &Expr, what: &str) -> DfResult<i64> {
    let value = match expr {
        Expr::Literal(v, _) => v,
        Expr::Cast(c) => return interval_micros(&c.expr, what),
        _ => return Err(invalid(format!("{what} must be an interval literal"))),
    };
    let micros = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            v.days as i64 * 86_400_000_000 + v.nanoseconds / 1000
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            v.days as i64 * 86_400_000_000 + v.milliseconds as i64 * 1000
        }
        ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_)) => {
            return Err(invalid(format!(
                "{what} cannot use months or years, which have no fixed length"
            )))
        }
        _ => return Err(invalid(format!("{what} must be an interval literal"))),
    };
    Ok(micros)
}

/// A timestamp `micros` after the Unix epoch, in `unit`.
fn timestamp_literal(micros: i64, unit: TimeUnit) -> ScalarValue {
    match unit {
        TimeUnit::Second => ScalarValue::TimestampSecond(Some(micros / 1_000_000), None),
        TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(Some(micros / 1000), None),
        TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(micros), None),
        TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(Some(micros * 1000), None),
    }
}

fn is_window_column(name: &str) -> bool {
    name == "window_start" || name == "window_end"
}

fn interval_literal(micros: i64) -> Expr {
    lit(ScalarValue::new_interval_mdn(0, 0, micros * 1000))
}

impl WindowFunction {
    fn relation(&self, arg: &Expr) -> DfResult<(String, Arc<dyn TableProvider>)> {
        let Expr::Column(c) = arg else {
            return Err(invalid(format!(
                "the first argument of {} must be a table, source or view name",
                self.kind.name()
            )));
        };
        let name = match &c.relation {
            Some(r) => format!("{r}.{}", c.name),
            None => c.name.clone(),
        };
        match self.relations.get(&name) {
            Some(p) => Ok((name, Arc::clone(p))),
            None => plan_err!("table '{name}' not found"),
        }
    }

    fn time_column(&self, arg: &Expr, schema: &SchemaRef) -> DfResult<(String, TimeUnit)> {
        let Expr::Column(c) = arg else {
            return Err(invalid(format!(
                "the time argument of {} must be a column name",
                self.kind.name()
            )));
        };
        let field = schema.field_with_name(&c.name).map_err(|_| {
            DataFusionError::SchemaError(
                Box::new(datafusion::common::SchemaError::FieldNotFound {
                    field: Box::new(c.clone()),
                    valid_fields: Vec::new(),
                }),
                Box::new(None),
            )
        })?;
        match field.data_type() {
            DataType::Timestamp(unit, None) => Ok((c.name.clone(), *unit)),
            other => Err(DataFusionError::Plan(format!(
                "Cannot automatically convert column \"{}\" of type {other} to a timestamp for {}",
                c.name,
                self.kind.name()
            ))),
        }
    }

    fn tumble(&self, args: &[Expr]) -> DfResult<LogicalPlan> {
        if !(3..=4).contains(&args.len()) {
            return Err(invalid(
                "TUMBLE takes (source, time column, size [, offset])".to_string(),
            ));
        }
        let (name, provider) = self.relation(&args[0])?;
        let (ts, unit) = self.time_column(&args[1], &provider.schema())?;
        let size = interval_micros(&args[2], "the TUMBLE size")?;
        let offset = match args.get(3) {
            Some(e) => interval_micros(e, "the TUMBLE offset")?,
            None => 0,
        };
        if size <= 0 {
            return Err(invalid("the TUMBLE size must be positive".to_string()));
        }
        let origin = lit(timestamp_literal(offset.rem_euclid(size), unit));
        let start = date_bin(interval_literal(size), col(ts.as_str()), origin);
        // A window over a windowed relation replaces its window columns.
        let mut exprs: Vec<Expr> = provider
            .schema()
            .fields()
            .iter()
            .filter(|f| !is_window_column(f.name()))
            .map(|f| col(datafusion::common::Column::new_unqualified(f.name())))
            .collect();
        exprs.push(start.clone().alias("window_start"));
        // `date_bin` computes in nanoseconds. A duration is a plain integer
        // add, where an interval would go through calendar arithmetic.
        let size_ns = ScalarValue::DurationNanosecond(Some(size.saturating_mul(1000)));
        exprs.push((start + lit(size_ns)).alias("window_end"));
        LogicalPlanBuilder::scan(name.as_str(), provider_as_source(provider), None)?
            .project(exprs)?
            .build()
    }
}

impl WindowFunction {
    /// HOP(src, ts, slide, size [, offset]) or SESSION(src, ts, gap): a
    /// [`WindowNode`] over the relation.
    fn window_node(&self, args: &[Expr]) -> DfResult<LogicalPlan> {
        let usage = match self.kind {
            WindowKind::Hop => "HOP takes (source, time column, slide, size [, offset])",
            _ => "SESSION takes (source, time column, gap)",
        };
        let arity = match self.kind {
            WindowKind::Hop => 4..=5,
            _ => 3..=3,
        };
        if !arity.contains(&args.len()) {
            return Err(invalid(usage.to_string()));
        }
        let (name, provider) = self.relation(&args[0])?;
        let (ts, _) = self.time_column(&args[1], &provider.schema())?;
        let spec = match self.kind {
            WindowKind::Hop => {
                let slide = interval_micros(&args[2], "the HOP slide")?;
                let size = interval_micros(&args[3], "the HOP size")?;
                let offset = match args.get(4) {
                    Some(e) => interval_micros(e, "the HOP offset")?,
                    None => 0,
                };
                if slide <= 0 || size <= 0 {
                    return Err(invalid(
                        "the HOP slide and size must be positive".to_string(),
                    ));
                }
                if size % slide != 0 {
                    return Err(invalid(
                        "the HOP size must be a whole multiple of its slide".to_string(),
                    ));
                }
                WindowSpec::Hop {
                    slide,
                    size,
                    offset: offset.rem_euclid(slide),
                }
            }
            _ => {
                let gap = interval_micros(&args[2], "the SESSION gap")?;
                if gap <= 0 {
                    return Err(invalid("the SESSION gap must be positive".to_string()));
                }
                WindowSpec::Session { gap }
            }
        };
        if provider
            .schema()
            .fields()
            .iter()
            .any(|f| is_window_column(f.name()))
        {
            return Err(invalid(format!(
                "\"{name}\" already has window_start or window_end columns; rename them in the view that makes them to window it again with {}",
                self.kind.name()
            )));
        }
        let input =
            LogicalPlanBuilder::scan(name.as_str(), provider_as_source(provider), None)?.build()?;
        let time = input
            .schema()
            .index_of_column_by_name(None, &ts)
            .ok_or_else(|| DataFusionError::Plan(format!("column \"{ts}\" does not exist")))?;
        let time_field = input.schema().field(time).clone();
        let mut fields: Vec<(
            Option<datafusion::common::TableReference>,
            Arc<arrow::datatypes::Field>,
        )> = input
            .schema()
            .iter()
            .map(|(q, f)| (q.cloned(), Arc::clone(f)))
            .collect();
        for column in ["window_start", "window_end"] {
            fields.push((
                None,
                Arc::new(time_field.as_ref().clone().with_name(column)),
            ));
        }
        let schema = Arc::new(datafusion::common::DFSchema::new_with_metadata(
            fields,
            HashMap::new(),
        )?);
        Ok(LogicalPlan::Extension(
            datafusion::logical_expr::Extension {
                node: Arc::new(WindowNode {
                    input,
                    time,
                    spec,
                    schema,
                }),
            },
        ))
    }
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn TableProvider>> {
        let plan = match self.kind {
            WindowKind::Tumble => self.tumble(args.exprs())?,
            WindowKind::Hop | WindowKind::Session => self.window_node(args.exprs())?,
        };
        Ok(Arc::new(WindowedRelation { plan }))
    }
}

/// The plan of a window call, which DataFusion inlines where the call is.
#[derive(Debug)]
struct WindowedRelation {
    plan: LogicalPlan,
}

#[async_trait]
impl TableProvider for WindowedRelation {
    fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        Some(Cow::Borrowed(&self.plan))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan_err!("a window call is planned as its query, never scanned")
    }
}
