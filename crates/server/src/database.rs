//! The database a session talks to: catalog, streaming runtime, store, and
//! statement dispatch.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::sqlparser::ast;
use tidemark_engine::{Runtime, RuntimeConfig, ViewStart};
use tidemark_sql::{RelationInfo, RelationKind, Statement};
use tidemark_state::{MemoryStore, StateStore};

use crate::catalog::Catalog;
use crate::classify::{datafusion_error, engine_error, sql_error};
use crate::error::{PgError, PgResult};
use crate::result::{Described, StatementResult};

/// Which [`tidemark_state::StateStore`] keeps state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateBackend {
    Memory,
    RocksDb,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub data_dir: PathBuf,
    pub parallelism: usize,
    pub checkpoint_interval: Duration,
    pub state_backend: StateBackend,
    /// Bytes of the RocksDB block cache.
    pub state_cache_bytes: usize,
    /// Bytes of keyed state all operators of the server keep in memory.
    pub operator_cache_bytes: usize,
    /// Rows of an existing relation a new view receives per checkpoint.
    pub backfill_rows: usize,
    /// A savepoint to start from; the data directory must hold no state.
    pub restore_from: Option<PathBuf>,
    /// Copies of recent checkpoints kept in the data directory (RocksDB only).
    pub retain: crate::RetainPolicy,
}

pub struct Database {
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) runtime: Runtime,
    pub(crate) catalog: Arc<RwLock<Catalog>>,
    /// Catalog changes one at a time.
    pub(crate) ddl: tokio::sync::Mutex<()>,
    /// Where retained checkpoints are kept, when they are.
    pub(crate) retained: Option<crate::retained::Copies>,
}

/// One parsed statement with the text it came from, for error positions.
pub(crate) struct Request<'a> {
    pub sql: &'a str,
    /// The statement's own text, which the catalog stores for a new relation.
    pub text: &'a str,
    pub params: Option<&'a [ScalarValue]>,
    /// Set when a stored statement is run again at start: the relation's id.
    pub restoring: Option<tidemark_plan::RelationId>,
}

impl Request<'_> {
    pub fn df(&self, e: datafusion::error::DataFusionError) -> PgError {
        datafusion_error(self.sql, &e)
    }

    pub fn plan(&self, e: tidemark_sql::Error) -> PgError {
        sql_error(self.sql, e)
    }

    pub fn engine(&self, e: tidemark_engine::Error) -> PgError {
        engine_error(self.sql, &e)
    }
}

impl<'a> Request<'a> {
    pub fn new(sql: &'a str, text: &'a str, params: Option<&'a [ScalarValue]>) -> Self {
        Self {
            sql,
            text,
            params,
            restoring: None,
        }
    }
}

/// The schema of a result with one text column (SHOW, EXPLAIN of a view).
fn text_schema(column: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, false)]))
}

pub(crate) fn text_rows(column: &str, values: Vec<String>) -> StatementResult {
    let schema = text_schema(column);
    let array: ArrayRef = Arc::new(StringArray::from(values));
    let batches = match RecordBatch::try_new(Arc::clone(&schema), vec![array]) {
        Ok(b) => vec![b],
        Err(_) => Vec::new(),
    };
    StatementResult::Rows { schema, batches }
}

pub(crate) fn object_name(name: &ast::ObjectName) -> PgResult<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p.as_ident() {
            Some(ident) if ident.quote_style.is_some() => ident.value.clone(),
            Some(ident) => ident.value.to_lowercase(),
            None => p.to_string(),
        })
        .collect();
    match parts.as_slice() {
        [name] => Ok(name.clone()),
        [schema, name] if schema == "public" => Ok(name.clone()),
        _ => Err(PgError::new(
            "3F000",
            format!("schema of \"{name}\" does not exist"),
        )),
    }
}

impl Database {
    /// Opens the store, starts the streaming runtime and recreates every
    /// relation the store holds; must be called in a tokio runtime.
    pub async fn start(config: DatabaseConfig) -> PgResult<Self> {
        let store = open_store(&config)?;
        let runtime = Runtime::start(
            Arc::clone(&store),
            RuntimeConfig {
                parallelism: config.parallelism.max(1),
                checkpoint_interval: config.checkpoint_interval,
                operator_cache_bytes: config.operator_cache_bytes,
                backfill_rows: config.backfill_rows,
            },
        )
        .map_err(|e| PgError::new("58000", e.to_string()))?;
        let retained = (config.state_backend == StateBackend::RocksDb && config.retain.keep > 0)
            .then(|| crate::retained::Copies {
                dir: crate::retained::retained_dir(&config.data_dir),
                keep: config.retain.keep,
            });
        let db = Self {
            store,
            runtime,
            catalog: Arc::new(RwLock::new(Catalog::new())),
            ddl: tokio::sync::Mutex::new(()),
            retained,
        };
        db.restore_catalog().await?;
        if let Some(copies) = &db.retained {
            crate::retained::spawn(Arc::clone(&db.store), copies.dir.clone(), config.retain);
        }
        Ok(db)
    }

    /// A clean stop's last checkpoint, so what was written before it is kept.
    /// Gives up after `patience` (a job stalled behind a slow view must not
    /// hold the stop forever); returns the committed epoch.
    pub async fn final_checkpoint(&self, patience: std::time::Duration) -> PgResult<u64> {
        match tokio::time::timeout(patience, self.runtime.checkpoint()).await {
            Ok(Ok(epoch)) => Ok(epoch),
            Ok(Err(e)) => Err(PgError::new("XX000", e.to_string())),
            Err(_) => Err(PgError::new(
                "57P01",
                format!("the final checkpoint did not commit within {patience:?}"),
            )),
        }
    }

    /// The last thing a clean stop does, after its final checkpoint: stops
    /// the streaming runtime's threads, then the store's background work.
    pub async fn shutdown(&self) {
        self.runtime.stop().await;
        self.store.close();
    }

    /// The id of the relation a statement creates: the stored one when it is
    /// being restored, else a new one.
    pub(crate) fn relation_id(&self, req: &Request<'_>) -> tidemark_plan::RelationId {
        let mut catalog = self.catalog_mut();
        match req.restoring {
            Some(id) => {
                catalog.reserve_id(id);
                id
            }
            None => catalog.allocate_id(),
        }
    }

    pub(crate) fn catalog(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn catalog_mut(&self) -> std::sync::RwLockWriteGuard<'_, Catalog> {
        write(&self.catalog)
    }

    /// Runs every statement of a simple-protocol query string in order; stops
    /// after the first error, which is then the last element.
    pub async fn execute(&self, sql: &str) -> Vec<PgResult<StatementResult>> {
        let statements = match tidemark_sql::parse_with_text(sql) {
            Ok(s) => s,
            Err(e) => return vec![Err(sql_error(sql, e))],
        };
        if statements.is_empty() {
            return vec![Ok(StatementResult::Empty)];
        }
        let mut results = Vec::with_capacity(statements.len());
        for (statement, text) in statements {
            let result = self
                .run_guarded(&Request::new(sql, &text, None), statement)
                .await;
            let failed = result.is_err();
            results.push(result);
            if failed {
                break;
            }
        }
        results
    }

    fn single(sql: &str) -> PgResult<Option<Statement>> {
        let mut statements = tidemark_sql::parse(sql).map_err(|e| sql_error(sql, e))?;
        match statements.len() {
            0 => Ok(None),
            1 => Ok(statements.pop()),
            _ => Err(PgError::new(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            )),
        }
    }

    /// Parameter and result types of a single statement, for Parse/Describe.
    pub async fn describe(&self, sql: &str) -> PgResult<Described> {
        let request = Request::new(sql, sql, None);
        match Self::single(sql)? {
            None => Ok(Described {
                params: Vec::new(),
                columns: None,
            }),
            Some(statement) => self.describe_statement(&request, statement).await,
        }
    }

    /// Runs a single statement with `$n` parameters bound to `params`.
    pub async fn execute_prepared(
        &self,
        sql: &str,
        params: &[ScalarValue],
    ) -> PgResult<StatementResult> {
        match Self::single(sql)? {
            None => Ok(StatementResult::Empty),
            Some(statement) => {
                let params = (!params.is_empty()).then_some(params);
                self.run_guarded(&Request::new(sql, sql, params), statement)
                    .await
            }
        }
    }

    /// Runs a statement; a panic inside (a bug, ours or a library's) becomes an
    /// internal error for this statement instead of ending the session.
    async fn run_guarded(
        &self,
        req: &Request<'_>,
        statement: Statement,
    ) -> PgResult<StatementResult> {
        use futures::FutureExt;
        match std::panic::AssertUnwindSafe(self.run(req, statement))
            .catch_unwind()
            .await
        {
            Ok(result) => result,
            Err(panic) => {
                let what = tidemark_engine::panic_message(panic.as_ref());
                tracing::error!(sql = req.sql, panic = %what, "statement panicked");
                Err(PgError::new("XX000", format!("internal error: {what}")))
            }
        }
    }

    pub(crate) async fn run(
        &self,
        req: &Request<'_>,
        statement: Statement,
    ) -> PgResult<StatementResult> {
        match statement {
            Statement::Flush => {
                self.runtime.flush().await.map_err(|e| req.engine(e))?;
                Ok(StatementResult::Command("FLUSH".into()))
            }
            Statement::ShowTables => Ok(self.show(|r| r.is_table())),
            Statement::ShowMaterializedViews => {
                Ok(self.show(|r| matches!(r.kind, RelationKind::MaterializedView)))
            }
            Statement::ShowSources => Ok(self.show(|r| r.is_source())),
            Statement::ShowJobs => Ok(self.show_jobs()),
            Statement::CreateSavepoint(dir) => self.create_savepoint(req, &dir).await,
            Statement::CreateTable {
                create,
                append_only,
                watermark,
            } => {
                self.create_table(req, &create, append_only, watermark)
                    .await
            }
            Statement::CreateSource(source) => self.create_source(req, source).await,
            Statement::DropSource {
                names,
                if_exists,
                cascade,
            } => {
                self.drop(req, DropKind::Source, if_exists, &names, cascade)
                    .await
            }
            Statement::Sql(stmt) => self.run_sql(req, *stmt, false).await,
            Statement::SqlEmitOnClose(stmt) => self.run_sql(req, *stmt, true).await,
        }
    }

    fn show(&self, which: impl Fn(&RelationInfo) -> bool) -> StatementResult {
        let names = self
            .catalog()
            .all()
            .filter(|r| which(r))
            .map(|r| r.name.clone())
            .collect();
        text_rows("name", names)
    }

    async fn run_sql(
        &self,
        req: &Request<'_>,
        stmt: ast::Statement,
        emit_on_close: bool,
    ) -> PgResult<StatementResult> {
        match stmt {
            ast::Statement::Query(_) => self.select(req, &stmt).await,
            ast::Statement::Insert(_) => self.insert(req, &stmt).await,
            ast::Statement::Update(_) | ast::Statement::Delete(_) => {
                self.update_or_delete(req, &stmt).await
            }
            ast::Statement::CreateView(view) if view.materialized => {
                self.create_view(req, &view, false, emit_on_close).await
            }
            ast::Statement::CreateView(_) => Err(PgError::new(
                "0A000",
                "plain views are not supported; use CREATE MATERIALIZED VIEW",
            )),
            ast::Statement::Explain { statement, .. } => match *statement {
                ast::Statement::CreateView(view) if view.materialized => {
                    self.create_view(req, &view, true, emit_on_close).await
                }
                other => {
                    let explain = ast::Statement::Explain {
                        describe_alias: ast::DescribeAlias::Explain,
                        analyze: false,
                        verbose: false,
                        query_plan: false,
                        estimate: false,
                        statement: Box::new(other),
                        format: None,
                        options: None,
                    };
                    self.select(req, &explain).await
                }
            },
            ast::Statement::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => {
                let kind = match object_type {
                    ast::ObjectType::Table => DropKind::Table,
                    ast::ObjectType::MaterializedView => DropKind::MaterializedView,
                    other => {
                        return Err(PgError::new(
                            "0A000",
                            format!("DROP {other} is not supported"),
                        ))
                    }
                };
                self.drop(req, kind, if_exists, &names, cascade).await
            }
            ast::Statement::StartTransaction { .. } => Ok(StatementResult::Command("BEGIN".into())),
            ast::Statement::Commit { .. } => Ok(StatementResult::Command("COMMIT".into())),
            ast::Statement::Rollback { .. } => Ok(StatementResult::Command("ROLLBACK".into())),
            ast::Statement::Set(_) => Ok(StatementResult::Command("SET".into())),
            other => Err(PgError::new(
                "0A000",
                format!(
                    "statement not supported: {}",
                    first_words(&other.to_string())
                ),
            )),
        }
    }

    /// Whether a new relation's name is in use: the command's result with
    /// `IF NOT EXISTS`, else 42P07; `None` when the name is free.
    pub(crate) fn name_taken(
        &self,
        name: &str,
        if_not_exists: bool,
        tag: &str,
    ) -> PgResult<Option<StatementResult>> {
        if self.catalog().get(name).is_none() {
            return Ok(None);
        }
        if if_not_exists {
            return Ok(Some(StatementResult::Command(tag.into())));
        }
        Err(PgError::new(
            "42P07",
            format!("relation \"{name}\" already exists"),
        ))
    }

    /// The columns of a `CREATE TABLE` (or `CREATE SOURCE`), typed as
    /// DataFusion types them, and its primary key.
    pub(crate) async fn declared_columns(
        &self,
        req: &Request<'_>,
        create: &ast::Statement,
    ) -> PgResult<(SchemaRef, Option<Vec<usize>>)> {
        let ctx = tidemark_sql::session([]).map_err(|e| req.df(e))?;
        let plan = tidemark_sql::logical_plan(&ctx, create)
            .await
            .map_err(|e| req.df(e))?;
        let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(table)) = plan else {
            return Err(PgError::new("0A000", "unsupported form of CREATE TABLE"));
        };
        let mut primary_key = None;
        for c in table.constraints.iter() {
            match c {
                datafusion::common::Constraint::PrimaryKey(cols) => {
                    primary_key = Some(cols.clone())
                }
                datafusion::common::Constraint::Unique(_) => {
                    return Err(PgError::new(
                        "0A000",
                        "UNIQUE constraints are not supported yet",
                    ))
                }
            }
        }
        let input_schema = table.input.schema().as_arrow().clone();
        let fields: Vec<Field> = input_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let in_pk = primary_key.as_ref().is_some_and(|pk| pk.contains(&i));
                // Timestamps keep microseconds, as in Postgres.
                let data_type = match f.data_type() {
                    DataType::Timestamp(_, tz) => {
                        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, tz.clone())
                    }
                    other => other.clone(),
                };
                f.as_ref()
                    .clone()
                    .with_data_type(data_type)
                    .with_nullable(f.is_nullable() && !in_pk)
            })
            .collect();
        Ok((Arc::new(Schema::new(fields)), primary_key))
    }

    async fn create_table(
        &self,
        req: &Request<'_>,
        create: &ast::Statement,
        append_only: bool,
        watermark: Option<tidemark_sql::WatermarkClause>,
    ) -> PgResult<StatementResult> {
        let ast::Statement::CreateTable(ct) = create else {
            return Err(PgError::new("XX000", "expected CREATE TABLE"));
        };
        let name = object_name(&ct.name)?;
        let _ddl = self.ddl.lock().await;
        if let Some(done) = self.name_taken(&name, ct.if_not_exists, "CREATE TABLE")? {
            return Ok(done);
        }
        if ct.query.is_some() {
            return Err(PgError::new(
                "0A000",
                "CREATE TABLE AS is not supported yet",
            ));
        }
        let (schema, primary_key) = self.declared_columns(req, create).await?;
        if append_only && primary_key.is_some() {
            return Err(PgError::new(
                "42P16",
                "an APPEND ONLY table cannot have a primary key",
            ));
        }
        let event_time = match &watermark {
            Some(_) if !append_only => {
                return Err(PgError::new(
                    "0A000",
                    "WATERMARK FOR needs an APPEND ONLY table: updates and deletes could move event time backwards",
                ))
            }
            Some(w) => Some(tidemark_sql::event_time(w, &schema).map_err(|e| req.plan(e))?),
            None => None,
        };
        let id = self.relation_id(req);
        let spec = tidemark_engine::TableSpec {
            id,
            name: name.clone(),
            schema: Arc::clone(&schema),
            primary_key: primary_key.clone(),
            append_only,
            event_time,
        };
        let info = RelationInfo {
            id,
            name,
            kind: RelationKind::Table {
                primary_key,
                append_only,
            },
            schema,
            event_time,
            watermark_columns: event_time.iter().map(|t| t.column).collect(),
        };
        let (runtime, catalog) = (self.runtime.clone(), Arc::clone(&self.catalog));
        let record = crate::stored_catalog::created(req, id);
        detached(async move {
            runtime.create_table(spec, record).await?;
            write(&catalog).insert(info, Vec::new());
            Ok(())
        })
        .await?
        .map_err(|e| req.engine(e))?;
        Ok(StatementResult::Command("CREATE TABLE".into()))
    }

    async fn create_view(
        &self,
        req: &Request<'_>,
        view: &ast::CreateView,
        explain: bool,
        emit_on_close: bool,
    ) -> PgResult<StatementResult> {
        let name = object_name(&view.name)?;
        let _ddl = self.ddl.lock().await;
        if !explain {
            let tag = "CREATE MATERIALIZED VIEW";
            if let Some(done) = self.name_taken(&name, view.if_not_exists, tag)? {
                return Ok(done);
            }
        }
        let ctx = self.planning_session().map_err(|e| req.df(e))?;
        let query = ast::Statement::Query(view.query.clone());
        let plan = tidemark_sql::logical_plan(&ctx, &query)
            .await
            .map_err(|e| req.df(e))?;
        let columns: Vec<String> = if view.columns.is_empty() {
            tidemark_sql::postgres_column_names(&view.query).unwrap_or_default()
        } else {
            view.columns.iter().map(|c| c.name.value.clone()).collect()
        };
        let id = if explain { 0 } else { self.relation_id(req) };
        let planned = tidemark_sql::plan_view(id, &name, &plan, &columns, emit_on_close)
            .map_err(|e| req.plan(e))?;
        let graph = planned.graph;
        if explain {
            return Ok(text_rows(
                "QUERY PLAN",
                graph.explain(self.runtime.parallelism()),
            ));
        }
        let upstreams: Vec<u32> = graph
            .fragments
            .iter()
            .flat_map(|f| &f.inputs)
            .filter_map(|i| match i {
                tidemark_plan::FragmentInput::Relation { id, .. }
                | tidemark_plan::FragmentInput::Source { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        let info = RelationInfo {
            id,
            name,
            kind: RelationKind::MaterializedView,
            schema: planned.schema,
            event_time: None,
            watermark_columns: planned.watermark_columns,
        };
        let (runtime, catalog) = (self.runtime.clone(), Arc::clone(&self.catalog));
        let record = crate::stored_catalog::created(req, id);
        let restoring = req.restoring.is_some();
        let created = detached(async move {
            match runtime
                .create_view(id, &info.name, &graph, record, restoring)
                .await
            {
                Ok(start) => {
                    match start {
                        ViewStart::Created => {}
                        ViewStart::Resumed => {
                            tracing::info!(view = %info.name, "resumed from its checkpoint")
                        }
                        ViewStart::Recomputed(reason) => {
                            tracing::info!(view = %info.name, %reason, "recomputing from its inputs")
                        }
                    }
                    write(&catalog).insert(info, upstreams);
                    Ok(())
                }
                Err(e) if restoring => {
                    // A view that fails again as it is restored stays, failed,
                    // for its owner to see and drop; it must not vanish.
                    tracing::warn!(view = %info.name, error = %e, "restored view failed");
                    runtime.inherit_failure(id, &upstreams);
                    write(&catalog).insert(info, upstreams);
                    Ok(())
                }
                Err(e) => {
                    let cause = runtime.failure(id);
                    let _ = runtime
                        .drop_relation(id, crate::stored_catalog::dropped(id))
                        .await;
                    Err((e, cause))
                }
            }
        })
        .await?;
        if let Err((e, cause)) = created {
            return Err(match cause {
                Some(cause) => engine_error(req.sql, &cause),
                None => req.engine(e),
            });
        }
        Ok(StatementResult::Command("CREATE MATERIALIZED VIEW".into()))
    }

    async fn drop(
        &self,
        req: &Request<'_>,
        kind: DropKind,
        if_exists: bool,
        names: &[ast::ObjectName],
        cascade: bool,
    ) -> PgResult<StatementResult> {
        let (tag, noun) = match kind {
            DropKind::Table => ("DROP TABLE", "table"),
            DropKind::MaterializedView => ("DROP MATERIALIZED VIEW", "materialized view"),
            DropKind::Source => ("DROP SOURCE", "source"),
        };
        let _ddl = self.ddl.lock().await;
        for name in names {
            let name = object_name(name)?;
            let Some(info) = self.catalog().get(&name) else {
                if if_exists {
                    continue;
                }
                return Err(PgError::new(
                    "42P01",
                    format!("{noun} \"{name}\" does not exist"),
                ));
            };
            let actual = DropKind::of(&info);
            if actual != kind {
                let hint = format!("Use {} to remove a {}.", actual.statement(), actual.noun());
                return Err(
                    PgError::new("42809", format!("\"{name}\" is not a {noun}")).with_hint(hint)
                );
            }
            let order = self.catalog().drop_order(info.id);
            if order.len() > 1 && !cascade {
                let dependents = self.catalog().dependents(info.id);
                let detail: Vec<String> = dependents
                    .iter()
                    .map(|d| format!("materialized view {} depends on {noun} {name}", d.name))
                    .collect();
                return Err(PgError::new(
                    "2BP01",
                    format!("cannot drop {noun} {name} because other objects depend on it"),
                )
                .with_detail(detail.join("\n"))
                .with_hint("Use DROP ... CASCADE to drop the dependent objects too."));
            }
            let (runtime, catalog) = (self.runtime.clone(), Arc::clone(&self.catalog));
            detached(async move {
                for relation in order {
                    let record = crate::stored_catalog::dropped(relation.id);
                    runtime.drop_relation(relation.id, record).await?;
                    write(&catalog).remove(&relation.name);
                }
                Ok(())
            })
            .await?
            .map_err(|e| req.engine(e))?;
        }
        Ok(StatementResult::Command(tag.into()))
    }

    async fn describe_statement(
        &self,
        req: &Request<'_>,
        statement: Statement,
    ) -> PgResult<Described> {
        let none = |columns| Described {
            params: Vec::new(),
            columns,
        };
        let stmt = match statement {
            Statement::ShowTables | Statement::ShowMaterializedViews | Statement::ShowSources => {
                return Ok(none(Some(text_schema("name"))))
            }
            Statement::ShowJobs => return Ok(none(Some(crate::jobs::jobs_schema()))),
            Statement::Flush
            | Statement::CreateSavepoint(_)
            | Statement::CreateTable { .. }
            | Statement::CreateSource(_)
            | Statement::DropSource { .. } => return Ok(none(None)),
            Statement::Sql(stmt) | Statement::SqlEmitOnClose(stmt) => *stmt,
        };
        match &stmt {
            ast::Statement::Explain { statement, .. } if matches!(statement.as_ref(), ast::Statement::CreateView(v) if v.materialized) => {
                Ok(none(Some(text_schema("QUERY PLAN"))))
            }
            ast::Statement::Query(_)
            | ast::Statement::Explain { .. }
            | ast::Statement::Insert(_)
            | ast::Statement::Update(_)
            | ast::Statement::Delete(_) => {
                let ctx = self.planning_session().map_err(|e| req.df(e))?;
                let plan = tidemark_sql::logical_plan(&ctx, &stmt)
                    .await
                    .map_err(|e| req.df(e))?;
                let mut types = plan.get_parameter_types().map_err(|e| req.df(e))?;
                for (name, t) in cast_parameter_types(&plan) {
                    if let Some(slot @ None) = types.get_mut(&name) {
                        *slot = Some(t);
                    }
                }
                let mut params: Vec<(usize, DataType)> = types
                    .into_iter()
                    .filter_map(|(name, t)| {
                        let n = name
                            .trim_start_matches('$')
                            .parse::<usize>()
                            .ok()
                            .filter(|n| *n >= 1)?;
                        Some((n, t.unwrap_or(DataType::Utf8)))
                    })
                    .collect();
                params.sort_by_key(|(n, _)| *n);
                let count = params.last().map_or(0, |(n, _)| *n);
                let mut ordered = vec![DataType::Utf8; count];
                for (n, t) in params {
                    ordered[n - 1] = t;
                }
                let returns_rows = matches!(
                    stmt,
                    ast::Statement::Query(_) | ast::Statement::Explain { .. }
                ) && !matches!(plan, LogicalPlan::Dml(_));
                let mut columns = plan.schema().as_arrow().clone();
                if let ast::Statement::Query(q) = &stmt {
                    if let Some(names) = tidemark_sql::postgres_column_names(q) {
                        if names.len() == columns.fields().len() {
                            let fields: Vec<Field> = columns
                                .fields()
                                .iter()
                                .zip(&names)
                                .map(|(f, n)| f.as_ref().clone().with_name(n))
                                .collect();
                            columns = Schema::new(fields);
                        }
                    }
                }
                Ok(Described {
                    params: ordered,
                    columns: returns_rows.then(|| Arc::new(columns)),
                })
            }
            _ => Ok(none(None)),
        }
    }

    /// A planning session that knows every relation by its schema.
    pub(crate) fn planning_session(
        &self,
    ) -> datafusion::error::Result<datafusion::prelude::SessionContext> {
        let relations: Vec<_> = self
            .catalog()
            .all()
            .map(|r| {
                let provider: Arc<dyn datafusion::catalog::TableProvider> =
                    Arc::new(tidemark_sql::RelationProvider(Arc::clone(r)));
                (r.name.clone(), provider)
            })
            .collect();
        tidemark_sql::session(relations)
    }
}

/// Types of parameters that appear as `$n::type`, which DataFusion leaves
/// untyped: a cast says what the client should send.
fn cast_parameter_types(plan: &LogicalPlan) -> Vec<(String, DataType)> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Cast, Expr, TryCast};
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) = e
                {
                    if let Expr::Placeholder(p) = expr.as_ref() {
                        found.push((p.id.clone(), field.data_type().clone()));
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// What a DROP statement names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropKind {
    Table,
    MaterializedView,
    Source,
}

impl DropKind {
    fn of(info: &RelationInfo) -> Self {
        match info.kind {
            RelationKind::Table { .. } => DropKind::Table,
            RelationKind::MaterializedView => DropKind::MaterializedView,
            RelationKind::Source { .. } => DropKind::Source,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            DropKind::Table => "table",
            DropKind::MaterializedView => "materialized view",
            DropKind::Source => "source",
        }
    }

    fn statement(self) -> &'static str {
        match self {
            DropKind::Table => "DROP TABLE",
            DropKind::MaterializedView => "DROP MATERIALIZED VIEW",
            DropKind::Source => "DROP SOURCE",
        }
    }
}

/// Runs a catalog change to completion even if the client goes away meanwhile,
/// so the catalog and the running jobs never disagree.
pub(crate) async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> PgResult<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| PgError::new("XX000", format!("catalog change did not complete: {e}")))
}

pub(crate) fn write(catalog: &RwLock<Catalog>) -> std::sync::RwLockWriteGuard<'_, Catalog> {
    catalog.write().unwrap_or_else(|e| e.into_inner())
}

/// The store `config` asks for.
fn open_store(config: &DatabaseConfig) -> PgResult<Arc<dyn StateStore>> {
    match config.state_backend {
        StateBackend::Memory if config.restore_from.is_some() => Err(PgError::new(
            "0A000",
            "--restore-from needs the rocksdb state backend",
        )),
        StateBackend::Memory => Ok(Arc::new(MemoryStore::new())),
        StateBackend::RocksDb => {
            let path = config.data_dir.join("state");
            if let Some(savepoint) = &config.restore_from {
                crate::savepoint::restore_from(savepoint, &path)?;
            }
            let options = tidemark_state::RocksDbOptions {
                cache_bytes: config.state_cache_bytes,
            };
            let store = tidemark_state::RocksDbStore::open(&path, &options)
                .map_err(crate::classify::store_open_error)?;
            Ok(Arc::new(store))
        }
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
