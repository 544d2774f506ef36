use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

/// What one statement returns to the client.
#[derive(Debug, Clone)]
pub enum StatementResult {
    /// Rows, with the schema of their columns (also when there are none).
    Rows {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
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
