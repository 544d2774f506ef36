//! The DataFusion session every statement is planned in.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::config::Dialect;
use datafusion::error::Result as DfResult;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;

use crate::windows::{WindowFunction, WindowKind};

/// A session holding exactly `relations`, configured for Postgres semantics:
/// PostgreSQL dialect, spans on errors, plain UTF-8 strings.
pub fn session(
    relations: impl IntoIterator<Item = (String, Arc<dyn TableProvider>)>,
) -> DfResult<SessionContext> {
    let mut config = SessionConfig::new()
        .with_information_schema(false)
        .with_target_partitions(2);
    {
        let sql = &mut config.options_mut().sql_parser;
        sql.dialect = Dialect::PostgreSQL;
        sql.collect_spans = true;
        sql.map_string_types_to_utf8view = false;
        sql.enable_ident_normalization = true;
    }
    // TIMESTAMPTZ values are instants, shown in UTC.
    config.options_mut().execution.time_zone = Some("+00:00".to_string());
    let ctx = SessionContext::new_with_config(config);
    let mut by_name = std::collections::HashMap::new();
    for (name, provider) in relations {
        ctx.register_table(name.as_str(), Arc::clone(&provider))?;
        by_name.insert(name, provider);
    }
    let relations = Arc::new(by_name);
    for (name, kind) in WindowKind::ALL {
        let function = WindowFunction {
            kind,
            relations: Arc::clone(&relations),
        };
        ctx.register_udtf(name, Arc::new(function));
    }
    Ok(ctx)
}

/// Plans one statement and runs DataFusion's analyzer (type coercion), but not
/// its optimizer: streaming planning wants the plan as written.
pub async fn logical_plan(
    ctx: &SessionContext,
    statement: &ast::Statement,
) -> DfResult<LogicalPlan> {
    let state = ctx.state();
    let plan = state
        .statement_to_plan(DfStatement::Statement(Box::new(statement.clone())))
        .await?;
    state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})
}

/// Names of the relations a statement reads or writes (CTEs excluded).
pub fn referenced_relations(
    ctx: &SessionContext,
    statement: &ast::Statement,
) -> DfResult<Vec<String>> {
    let refs = ctx
        .state()
        .resolve_table_references(&DfStatement::Statement(Box::new(statement.clone())))?;
    let mut names: Vec<String> = refs.into_iter().map(|r| r.table().to_string()).collect();
    names.extend(windowed_relations(statement));
    Ok(names)
}

/// Relations named as the first argument of a window call in `FROM`
/// (`TUMBLE(bids, …)`), which DataFusion sees as arguments, not relations.
fn windowed_relations(statement: &ast::Statement) -> Vec<String> {
    use datafusion::sql::sqlparser::ast::{
        FunctionArg, FunctionArgExpr, TableFactor, Visit, Visitor,
    };
    use std::ops::ControlFlow;

    struct Windows(Vec<String>);
    impl Visitor for Windows {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table {
                name,
                args: Some(args),
                ..
            } = factor
            {
                let function = name.to_string().to_lowercase();
                let is_window = WindowKind::ALL.iter().any(|(n, _)| *n == function);
                if let (true, Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))) =
                    (is_window, args.args.first())
                {
                    let ident = match e {
                        ast::Expr::Identifier(id) => Some(id),
                        ast::Expr::CompoundIdentifier(ids) => ids.last(),
                        _ => None,
                    };
                    if let Some(id) = ident {
                        self.0.push(match id.quote_style {
                            Some(_) => id.value.clone(),
                            None => id.value.to_lowercase(),
                        });
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut visitor = Windows(Vec::new());
    let _ = statement.visit(&mut visitor);
    visitor.0
}
