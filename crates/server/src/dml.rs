//! INSERT, UPDATE and DELETE: planned here, applied by the table's actor.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::{cast, concat_batches};
use arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::sql::sqlparser::ast;
use tidemark_engine::DmlRequest;
use tidemark_sql::RelationInfo;

use crate::database::{Database, Request};
use crate::error::{PgError, PgResult};
use crate::result::StatementResult;

fn target_table(
    info: Option<Arc<RelationInfo>>,
    name: &str,
    verb: &str,
) -> PgResult<Arc<RelationInfo>> {
    match info {
        None => Err(PgError::new(
            "42P01",
            format!("relation \"{name}\" does not exist"),
        )),
        Some(info) if info.is_source() => Err(PgError::new(
            "42809",
            format!("cannot {verb} source \"{name}\""),
        )
        .with_hint("A source's rows come from its connector. To write rows yourself, use CREATE TABLE … APPEND ONLY with a WATERMARK FOR clause.")),
        Some(info) if !info.is_table() => Err(PgError::new(
            "42809",
            format!("cannot {verb} materialized view \"{name}\""),
        )
        .with_hint("Materialized views change only through the tables they read.")),
        Some(info) => Ok(info),
    }
}

/// Whether a `VALUES` list holds a subquery, which DataFusion cannot run
/// there (it fails with an internal error instead).
fn values_with_subquery(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::Expr;
    let mut found = false;
    let _ = plan.apply(|node| {
        if let LogicalPlan::Values(v) = node {
            found = v.values.iter().flatten().any(|e| {
                e.exists(|e| {
                    Ok(matches!(
                        e,
                        Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
                    ))
                })
                .unwrap_or(false)
            });
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

impl Database {
    async fn plan_dml(
        &self,
        req: &Request<'_>,
        ctx: &datafusion::prelude::SessionContext,
        stmt: &ast::Statement,
    ) -> PgResult<datafusion::logical_expr::DmlStatement> {
        match self.bound_plan(req, ctx, stmt).await? {
            LogicalPlan::Dml(dml) => Ok(dml),
            _ => Err(PgError::new("XX000", "expected a data modification plan")),
        }
    }

    pub(crate) async fn insert(
        &self,
        req: &Request<'_>,
        stmt: &ast::Statement,
    ) -> PgResult<StatementResult> {
        let ast::Statement::Insert(insert) = stmt else {
            return Err(PgError::new("XX000", "expected INSERT"));
        };
        let name = match &insert.table {
            ast::TableObject::TableName(n) => {
                n.0.last()
                    .map(|p| p.to_string().to_lowercase())
                    .unwrap_or_default()
            }
            other => {
                return Err(PgError::new(
                    "0A000",
                    format!("INSERT INTO {other} is not supported"),
                ))
            }
        };
        let info = target_table(self.catalog().get(&name), &name, "insert into")?;
        // Only what the rows are computed from is read: the target alone is
        // known by its schema, not scanned (it may be larger than memory).
        let read = match &insert.source {
            Some(query) => self.referenced(req, &ast::Statement::Query(query.clone()))?,
            None => Vec::new(),
        };
        // INSERT … SELECT reads what earlier statements wrote.
        if !read.is_empty()
            || insert
                .source
                .as_ref()
                .is_some_and(|q| !matches!(*q.body, ast::SetExpr::Values(_)))
        {
            self.runtime.flush().await.map_err(|e| req.engine(e))?;
        }
        let mut providers = self.snapshot(req, &read)?;
        if !read.iter().any(|r| r.id == info.id) {
            providers.push(self.insert_target(req, &info)?);
        }
        let ctx = tidemark_sql::session(providers).map_err(|e| req.df(e))?;
        let dml = self.plan_dml(req, &ctx, stmt).await?;
        if values_with_subquery(&dml.input) {
            return Err(
                PgError::new("0A000", "subqueries in INSERT … VALUES are not supported").with_hint(
                    "Write the rows as INSERT INTO … SELECT …, which may use subqueries.",
                ),
            );
        }
        let df = ctx
            .execute_logical_plan(dml.input.as_ref().clone())
            .await
            .map_err(|e| req.df(e))?;
        let batches = df.collect().await.map_err(|e| req.df(e))?;
        let schema = &info.schema;
        let mut rows = Vec::with_capacity(batches.len());
        for batch in batches {
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
            for (field, column) in schema.fields().iter().zip(batch.columns()) {
                if !field.is_nullable() && column.null_count() > 0 {
                    return Err(PgError::new(
                        "23502",
                        format!(
                            "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                            field.name(),
                            info.name
                        ),
                    ));
                }
                let column = if column.data_type() == field.data_type() {
                    Arc::clone(column)
                } else {
                    cast(column, field.data_type()).map_err(|e| req.df(e.into()))?
                };
                columns.push(column);
            }
            rows.push(
                RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| req.df(e.into()))?,
            );
        }
        let batch = concat_batches(schema, &rows).map_err(|e| req.df(e.into()))?;
        let n = self
            .runtime
            .dml(info.id, DmlRequest::Insert(batch))
            .await
            .map_err(|e| req.engine(e))?;
        Ok(StatementResult::Command(format!("INSERT 0 {n}")))
    }

    pub(crate) async fn update_or_delete(
        &self,
        req: &Request<'_>,
        stmt: &ast::Statement,
    ) -> PgResult<StatementResult> {
        let ctx = self.planning_session().map_err(|e| req.df(e))?;
        let dml = self.plan_dml(req, &ctx, stmt).await?;
        let name = dml.table_name.table().to_string();
        let (verb, tag) = if dml.op == WriteOp::Update {
            ("update", "UPDATE")
        } else {
            ("delete from", "DELETE")
        };
        let info = target_table(self.catalog().get(&name), &name, verb)?;
        let change = tidemark_sql::plan_row_change(&dml).map_err(|e| req.plan(e))?;
        let request = match change.columns {
            Some(columns) => DmlRequest::Update {
                filter: change.filter,
                columns,
            },
            None => DmlRequest::Delete {
                filter: change.filter,
            },
        };
        let n = self
            .runtime
            .dml(info.id, request)
            .await
            .map_err(|e| req.engine(e))?;
        Ok(StatementResult::Command(format!("{tag} {n}")))
    }
}
