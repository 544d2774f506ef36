//! Batch SELECT: DataFusion over one consistent snapshot of committed state.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::sql::sqlparser::ast;
use tidemark_sql::{RelationInfo, RelationKind};
use tidemark_state::{table_prefix, RelationLayout, RelationShape, RowCodec};

use futures::StreamExt;

use crate::classify::{datafusion_error, engine_error};
use crate::database::{Database, Request};
use crate::error::{PgError, PgResult};
use crate::result::{RowStream, StatementResult};
use crate::stored_relation::{PrimaryKey, StoredRelation};

pub(crate) type Providers = Vec<(String, Arc<dyn TableProvider>)>;

impl Database {
    /// The relations a statement names that exist in the catalog.
    pub(crate) fn referenced(
        &self,
        req: &Request<'_>,
        stmt: &ast::Statement,
    ) -> PgResult<Vec<Arc<RelationInfo>>> {
        let ctx = tidemark_sql::session([]).map_err(|e| req.df(e))?;
        let names = tidemark_sql::referenced_relations(&ctx, stmt).map_err(|e| req.df(e))?;
        let catalog = self.catalog();
        let mut found: BTreeMap<u32, Arc<RelationInfo>> = BTreeMap::new();
        for name in names {
            if let Some(info) = catalog.get(&name) {
                found.insert(info.id, info);
            }
        }
        Ok(found.into_values().collect())
    }

    /// The last committed contents of `relations`, all read from the same
    /// epoch (one store snapshot, held while the query runs) and streamed
    /// page by page: a query holds pages, not relations.
    pub(crate) fn snapshot(
        &self,
        req: &Request<'_>,
        relations: &[Arc<RelationInfo>],
    ) -> PgResult<Providers> {
        for r in relations {
            if r.is_source() {
                return Err(crate::source::source_not_queryable(&r.name));
            }
            if let Some(cause) = self.runtime.failure(r.id) {
                let inner = engine_error(req.sql, &cause);
                if matches!(*cause, tidemark_engine::Error::CommitFailed { .. }) {
                    // Every relation is affected, not this one alone.
                    return Err(inner);
                }
                return Err(PgError::new(
                    &inner.code,
                    format!(
                        "materialized view \"{}\" has failed: {}",
                        r.name, inner.message
                    ),
                )
                .with_hint(format!("Drop it with DROP MATERIALIZED VIEW {}.", r.name)));
            }
        }
        let prefixes: Vec<Vec<u8>> = relations.iter().map(|r| table_prefix(r.id)).collect();
        let snapshot = Arc::new(
            Arc::clone(&self.store)
                .snapshot(prefixes)
                .map_err(|e| PgError::new("XX000", e.to_string()))?,
        );
        let mut providers: Providers = Vec::with_capacity(relations.len());
        for r in relations {
            let (shape, primary_key) = match &r.kind {
                RelationKind::Table { primary_key, .. } => {
                    let layout =
                        RelationLayout::of_table(primary_key.is_some(), r.event_time.is_some());
                    let key = match primary_key {
                        Some(columns) => Some(PrimaryKey {
                            codec: RowCodec::for_columns(&r.schema, columns)
                                .map_err(|e| PgError::new("XX000", e.to_string()))?,
                            columns: columns.clone(),
                        }),
                        None => None,
                    };
                    (RelationShape::Table(layout), key)
                }
                _ => (RelationShape::View, None),
            };
            let table = StoredRelation {
                snapshot: Arc::clone(&snapshot),
                table: r.id,
                shape,
                schema: nullable(&r.schema),
                primary_key,
            };
            providers.push((r.name.clone(), Arc::new(table)));
        }
        Ok(providers)
    }

    /// The table an INSERT writes, known to DataFusion by its schema alone
    /// when the statement does not read it: nothing of it is scanned.
    pub(crate) fn insert_target(
        &self,
        req: &Request<'_>,
        info: &RelationInfo,
    ) -> PgResult<(String, Arc<dyn TableProvider>)> {
        let table =
            MemTable::try_new(nullable(&info.schema), vec![Vec::new()]).map_err(|e| req.df(e))?;
        Ok((info.name.clone(), Arc::new(table)))
    }

    /// The statement's logical plan with the request's parameters bound.
    pub(crate) async fn bound_plan(
        &self,
        req: &Request<'_>,
        ctx: &datafusion::prelude::SessionContext,
        stmt: &ast::Statement,
    ) -> PgResult<datafusion::logical_expr::LogicalPlan> {
        let plan = tidemark_sql::logical_plan(ctx, stmt)
            .await
            .map_err(|e| req.df(e))?;
        match req.params {
            Some(params) => plan
                .with_param_values(params.to_vec())
                .map_err(|e| req.df(e)),
            None => Ok(plan),
        }
    }

    pub(crate) async fn select(
        &self,
        req: &Request<'_>,
        stmt: &ast::Statement,
    ) -> PgResult<StatementResult> {
        let relations = self.referenced(req, stmt)?;
        let providers = self.snapshot(req, &relations)?;
        let ctx = tidemark_sql::session(providers).map_err(|e| req.df(e))?;
        self.register_system_views(&ctx).map_err(|e| req.df(e))?;
        let plan = self.bound_plan(req, &ctx, stmt).await?;
        let plan = tidemark_sql::expand_windows(plan).map_err(|e| req.plan(e))?;
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| req.df(e))?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let names = match stmt {
            ast::Statement::Query(q) => tidemark_sql::postgres_column_names(q),
            _ => None,
        };
        let schema = match names {
            Some(names) if names.len() == schema.fields().len() => renamed(&schema, &names),
            _ => schema,
        };
        let mut stream = df.execute_stream().await.map_err(|e| req.df(e))?;
        // The first batch is read here, so that an error in it (most are)
        // comes with the statement's position and before any row is sent.
        let first = stream.next().await.transpose().map_err(|e| req.df(e))?;
        let sql = req.sql.to_string();
        let out = Arc::clone(&schema);
        let rows = futures::stream::iter(first.map(Ok))
            .chain(stream)
            .map(move |batch| {
                let batch = batch.map_err(|e| datafusion_error(&sql, &e))?;
                RecordBatch::try_new(Arc::clone(&out), batch.columns().to_vec())
                    .map_err(|e| datafusion_error(&sql, &e.into()))
            });
        Ok(StatementResult::Stream {
            schema,
            rows: RowStream(Box::pin(rows)),
        })
    }
}

/// The same columns under Postgres' names.
fn renamed(schema: &Schema, names: &[String]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(f, n)| f.as_ref().clone().with_name(n))
        .collect();
    Arc::new(Schema::new(fields))
}

/// A relation's schema for DataFusion. Constraints are the table actor's to
/// enforce: DataFusion sees every column as nullable, so INSERT reaches our
/// own checks (with Postgres' messages).
fn nullable(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}
