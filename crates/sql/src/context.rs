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
    for (name, provider) in relations {
        ctx.register_table(name.as_str(), provider)?;
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
    Ok(refs.into_iter().map(|r| r.table().to_string()).collect())
}
