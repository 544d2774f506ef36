use std::pin::Pin;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::Stream;

use crate::error::PgResult;

/// What one statement returns to the client.
#[derive(Debug)]
pub enum StatementResult {
    /// Rows, with the schema of their columns (also when there are none).
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    /// Rows read while they are sent (a `SELECT`'s answer), so an answer
    /// larger than memory can be sent; an error can come after some rows.
    Stream { schema: SchemaRef, rows: RowStream },
    /// A command tag such as `CREATE TABLE`, `INSERT 0 3`, `DELETE 2`.
    Command(String),
    /// The statement was empty (only comments).
    Empty,
}

/// What a prepared statement takes and returns, for the extended protocol.
#[derive(Debug, Clone)]
pub struct Described {
    /// One Arrow type per `$n` parameter, in order (`Utf8` where nothing
    /// constrains it).
    pub params: Vec<arrow::datatypes::DataType>,
    /// The result columns, or `None` for statements that return no rows.
    pub columns: Option<SchemaRef>,
}

/// Batches of rows read as they are asked for.
pub struct RowStream(pub Pin<Box<dyn Stream<Item = PgResult<RecordBatch>> + Send>>);

impl std::fmt::Debug for RowStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RowStream")
    }
}

impl StatementResult {
    /// The rows, all read (a stream to its end); for callers that need
    /// them whole.
    pub async fn collected(self) -> PgResult<Self> {
        use futures::TryStreamExt;
        match self {
            Self::Stream { schema, rows } => {
                let batches = rows.0.try_collect().await?;
                Ok(Self::Rows { schema, batches })
            }
            other => Ok(other),
        }
    }
}
