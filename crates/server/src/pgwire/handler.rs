//! The pgwire handlers: simple and extended query protocol on top of
//! [`Database`], and a startup handler that lets everyone in.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::StartupHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type, DEFAULT_NAME};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{Describe, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::PgWireBackendMessage;

use super::encode::{self, error_info, wire_error};
use super::types;
use crate::database::Database;
use crate::result::Described;

/// A statement prepared by Parse: its text and what describe said about it.
#[derive(Debug, Clone)]
pub struct Prepared {
    sql: String,
    described: Described,
}

impl Prepared {
    /// One type per parameter: the client's from Parse where it gave one,
    /// else the inferred one (`unknown` when neither exists).
    fn param_types(&self, declared: &[Option<Type>]) -> Vec<Type> {
        let inferred = &self.described.params;
        (0..declared.len().max(inferred.len()))
            .map(|i| {
                declared
                    .get(i)
                    .cloned()
                    .flatten()
                    .or_else(|| inferred.get(i).map(types::pg_type))
                    .unwrap_or(Type::UNKNOWN)
            })
            .collect()
    }
}

/// Describes each statement once, at Parse, so that Describe and Bind agree
/// and a missing table fails the Parse as it does in Postgres.
pub struct Parser {
    db: Arc<Database>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if is_blank_sql(sql) {
            return Ok(None);
        }
        let described = self.db.describe(sql).await.map_err(wire_error)?;
        Ok(Some(Prepared {
            sql: sql.to_string(),
            described,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.described.params.iter().map(types::pg_type).collect())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match &stmt.described.columns {
            Some(schema) => types::fields(schema, format.unwrap_or(&Format::UnifiedText)),
            None => Vec::new(),
        })
    }
}

/// Serves both query protocols of every connection.
pub struct Handler {
    db: Arc<Database>,
    parser: Arc<Parser>,
}

impl Handler {
    pub fn new(db: Arc<Database>) -> Self {
        let parser = Arc::new(Parser {
            db: Arc::clone(&db),
        });
        Self { db, parser }
    }
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut responses = Vec::new();
        for result in self.db.execute(query).await {
            // Earlier results stay in the answer; the error ends it, as in Postgres.
            match result.and_then(|r| encode::response(r, &Format::UnifiedText)) {
                Ok(response) => responses.push(response),
                Err(err) => {
                    responses.push(Response::Error(Box::new(error_info(err))));
                    break;
                }
            }
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    /// pgwire answers a statement with parameters but no result columns with
    /// an empty RowDescription; Postgres (and JDBC's `executeUpdate`) expect
    /// NoData, so that case is answered here.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            if let Some(Entry::Value(stmt)) = client.portal_store().get_statement(name) {
                if stmt.statement.described.columns.is_none() {
                    let oids = stmt
                        .statement
                        .param_types(&stmt.parameter_types)
                        .iter()
                        .map(Type::oid)
                        .collect();
                    client
                        .send(PgWireBackendMessage::ParameterDescription(
                            ParameterDescription::new(oids),
                        ))
                        .await?;
                    client
                        .send(PgWireBackendMessage::NoData(NoData::new()))
                        .await?;
                    return Ok(());
                }
            }
        }
        self._on_describe(client, message).await
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stmt = &portal.statement;
        let param_types = stmt.statement.param_types(&stmt.parameter_types);
        let params = types::decode_params(portal, &param_types, &stmt.statement.described.params)
            .map_err(wire_error)?;
        let result = self
            .db
            .execute_prepared(&stmt.statement.sql, &params)
            .await
            .map_err(wire_error)?;
        encode::response(result, &portal.result_column_format).map_err(wire_error)
    }
}

/// Accepts any user and database without a password: Tidemark has no users yet.
pub struct Startup;

impl NoopStartupHandler for Startup {}

/// What pgwire asks for per connection; all connections share the handlers.
pub struct Handlers {
    query: Arc<Handler>,
    startup: Arc<Startup>,
}

impl Handlers {
    pub fn new(db: Arc<Database>) -> Self {
        Self {
            query: Arc::new(Handler::new(db)),
            startup: Arc::new(Startup),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.query)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.query)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }
}

/// Whether `sql` holds no statement: only whitespace, `;` and comments
/// (`--` to end of line, nestable `/* */`). Postgres answers such a Parse
/// with an empty statement rather than an error.
fn is_blank_sql(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b';' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::is_blank_sql;

    #[test]
    fn blank_sql() {
        assert!(is_blank_sql(""));
        assert!(is_blank_sql(
            " ; -- only a comment\n /* block /* nested */ */ ;"
        ));
        assert!(!is_blank_sql("-- comment\nSELECT 1"));
        assert!(!is_blank_sql("/* c */ SELECT 1"));
        assert!(!is_blank_sql("- 1"));
    }
}
