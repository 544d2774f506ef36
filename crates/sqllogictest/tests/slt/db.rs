//! [`sqllogictest::AsyncDB`] over tokio-postgres' simple query protocol, so
//! results are compared in exactly the text format psql shows.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// A client error, displayed like the published sqllogictest CLI's Postgres
/// engine (`db error: ERROR: message`, then `DETAIL:` / `HINT:` lines), so
/// that `statement error <regex>` patterns carry over.
#[derive(Debug)]
pub struct DbError(tokio_postgres::Error);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "db error: {db}"),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for DbError {}

impl From<tokio_postgres::Error> for DbError {
    fn from(err: tokio_postgres::Error) -> Self {
        Self(err)
    }
}

/// Where the server under test listens, and how many times it has been
/// started: a session opened before the latest start reconnects.
#[derive(Debug, Default)]
pub struct Target {
    current: std::sync::Mutex<Option<(SocketAddr, u64)>>,
}

impl Target {
    pub fn set(&self, addr: SocketAddr) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let generation = current.map_or(0, |(_, g)| g + 1);
        *current = Some((addr, generation));
    }

    fn get(&self) -> (SocketAddr, u64) {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.expect("the server has started")
    }
}

/// One session with the server under test.
pub struct TidemarkDb {
    client: Client,
    connection: tokio::task::JoinHandle<()>,
    target: std::sync::Arc<Target>,
    generation: u64,
}

impl TidemarkDb {
    pub async fn open(target: std::sync::Arc<Target>) -> Result<Self, DbError> {
        let (addr, generation) = target.get();
        let (client, connection) = Self::connect(addr).await?;
        Ok(Self {
            client,
            connection,
            target,
            generation,
        })
    }

    async fn connect(addr: SocketAddr) -> Result<(Client, tokio::task::JoinHandle<()>), DbError> {
        let config = format!(
            "host={} port={} user=tidemark dbname=tidemark",
            addr.ip(),
            addr.port()
        );
        let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
        let connection = tokio::spawn(async move {
            // The error also reaches the client's next call; nothing to add here.
            let _ = connection.await;
        });
        Ok((client, connection))
    }
}

#[async_trait]
impl AsyncDB for TidemarkDb {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    /// Runs `sql` (possibly several statements); the answer is the last
    /// result set when any statement returned rows, else the last count.
    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let (addr, generation) = self.target.get();
        if generation != self.generation {
            (self.client, self.connection) = Self::connect(addr).await?;
            self.generation = generation;
        }
        let messages = self.client.simple_query(sql).await?;
        let mut current: Option<(usize, Vec<Vec<String>>)> = None;
        let mut rows_output = None;
        let mut last_count = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(columns) => {
                    current = Some((columns.len(), Vec::new()))
                }
                SimpleQueryMessage::Row(row) => {
                    let values = (0..row.len())
                        .map(|i| match row.get(i) {
                            None => "NULL".to_string(),
                            Some("") => "(empty)".to_string(),
                            Some(v) => v.to_string(),
                        })
                        .collect();
                    current
                        .get_or_insert_with(|| (row.len(), Vec::new()))
                        .1
                        .push(values);
                }
                SimpleQueryMessage::CommandComplete(count) => {
                    last_count = count;
                    if let Some((ncols, rows)) = current.take() {
                        rows_output = Some(DBOutput::Rows {
                            types: vec![DefaultColumnType::Any; ncols],
                            rows,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(rows_output.unwrap_or(DBOutput::StatementComplete(last_count)))
    }

    async fn shutdown(&mut self) {
        self.connection.abort();
    }

    fn engine_name(&self) -> &str {
        "tidemark"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await
    }

    fn error_sql_state(err: &DbError) -> Option<String> {
        err.0.code().map(|code| code.code().to_string())
    }
}
