//! `CREATE SOURCE`: a named, typed stream with its connector options. Nothing
//! runs until a view reads it; each view then gets its own reader.

use std::collections::BTreeMap;

use tidemark_sql::{CreateSource, RelationInfo, RelationKind};

use crate::database::{object_name, Database, Request};
use crate::error::{PgError, PgResult};
use crate::result::StatementResult;

impl Database {
    pub(crate) async fn create_source(
        &self,
        req: &Request<'_>,
        source: CreateSource,
    ) -> PgResult<StatementResult> {
        let datafusion::sql::sqlparser::ast::Statement::CreateTable(ct) = source.create.as_ref()
        else {
            return Err(PgError::new("XX000", "expected a column list"));
        };
        let name = object_name(&ct.name)?;
        let _ddl = self.ddl.lock().await;
        if let Some(done) = self.name_taken(&name, ct.if_not_exists, "CREATE SOURCE")? {
            return Ok(done);
        }
        let (schema, primary_key) = self.declared_columns(req, &source.create).await?;
        if primary_key.is_some() {
            return Err(PgError::new(
                "0A000",
                "a source cannot have a primary key: it is an append-only stream",
            ));
        }
        let event_time = source
            .watermark
            .as_ref()
            .map(|w| tidemark_sql::event_time(w, &schema))
            .transpose()
            .map_err(|e| req.plan(e))?;
        let mut options = BTreeMap::new();
        for (key, value) in &source.options {
            if options.insert(key.clone(), value.clone()).is_some() {
                return Err(PgError::new(
                    "42601",
                    format!("option \"{key}\" is given more than once"),
                ));
            }
        }
        if options.is_empty() {
            return Err(PgError::new(
                "42601",
                "CREATE SOURCE needs WITH (connector = '…', …)",
            )
            .with_hint("For example: WITH (connector = 'file', path = '/data/bids.csv', format = 'csv')"));
        }
        tidemark_connectors::parse_options(&options, &schema)
            .map_err(|e| PgError::new("22023", e.to_string()))?;
        let id = self.relation_id(req);
        let info = RelationInfo {
            id,
            name,
            kind: RelationKind::Source {
                options: options.into_iter().collect(),
            },
            schema,
            event_time,
            watermark_columns: event_time.iter().map(|t| t.column).collect(),
        };
        if req.restoring.is_none() {
            let record = crate::stored_catalog::created(req, id);
            self.runtime
                .commit_catalog(record)
                .await
                .map_err(|e| req.engine(e))?;
        }
        crate::database::write(&self.catalog).insert(info, Vec::new());
        Ok(StatementResult::Command("CREATE SOURCE".into()))
    }
}

/// The error for reading a source outside a view.
pub(crate) fn source_not_queryable(name: &str) -> PgError {
    PgError::new(
        "0A000",
        format!("source \"{name}\" cannot be queried directly"),
    )
    .with_hint(format!(
        "A source is a stream, not stored rows: create a materialized view over it, e.g. CREATE MATERIALIZED VIEW v AS SELECT * FROM {name};"
    ))
}
