//! Helpers shared by the tests: temporary directories, schemas from short
//! type names, and batches rendered as `a|b|c` rows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::{ReadOutcome, SplitReader};

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "tidemark-connectors-{}-{name}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Writes (replaces) a file and returns its path as text.
    pub(crate) fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// Appends to a file.
    pub(crate) fn append(&self, name: &str, contents: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.0.join(name))
            .unwrap();
        file.write_all(contents.as_bytes()).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A schema of nullable columns from `(name, type)` with SQL-ish type names.
pub(crate) fn schema(columns: &[(&str, &str)]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, ty)| {
            let data_type = match *ty {
                "smallint" => DataType::Int16,
                "int" => DataType::Int32,
                "bigint" => DataType::Int64,
                "real" => DataType::Float32,
                "double" => DataType::Float64,
                "decimal" => DataType::Decimal128(10, 2),
                "text" => DataType::Utf8,
                "bool" => DataType::Boolean,
                "date" => DataType::Date32,
                "timestamp" => DataType::Timestamp(TimeUnit::Nanosecond, None),
                "timestamp_ms" => DataType::Timestamp(TimeUnit::Millisecond, None),
                other => panic!("unknown test type {other}"),
            };
            Field::new(*name, data_type, true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Each row as its values joined by `|`, nulls as `NULL`.
pub(crate) fn rows(batch: &RecordBatch) -> Vec<String> {
    let options = FormatOptions::default().with_null("NULL");
    let formatters: Vec<ArrayFormatter<'_>> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// Reads batches of `max_rows` until the reader is not ready, returning the
/// rows and whether it finished.
pub(crate) fn drain(reader: &mut dyn SplitReader, max_rows: usize) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    loop {
        match reader.next_batch(max_rows).unwrap() {
            ReadOutcome::Batch(batch) => {
                assert!(batch.num_rows() <= max_rows);
                out.extend(rows(&batch));
            }
            ReadOutcome::Pending => return (out, false),
            ReadOutcome::Finished => return (out, true),
        }
    }
}
