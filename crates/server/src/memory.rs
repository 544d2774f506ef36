//! `tidemark_catalog.memory`: where the server's memory goes, by part.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;

use crate::database::Database;

impl Database {
    /// One row per part: the process's resident memory now and at its
    /// peak (where the system reports them), the views' operator caches (as
    /// estimated), then the store's parts.
    pub(crate) fn memory_table(&self) -> datafusion::error::Result<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("part", DataType::Utf8, false),
            Field::new("bytes", DataType::Int64, false),
        ]));
        let mut parts = process_memory();
        let cached = self.runtime.cache_budget().used();
        parts.push(("operator caches", cached as u64));
        parts.extend(self.store.memory_usage());
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(parts.iter().map(|p| p.0))),
            Arc::new(Int64Array::from_iter_values(
                parts.iter().map(|p| p.1 as i64),
            )),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        MemTable::try_new(schema, vec![vec![batch]])
    }
}

/// Resident memory now and at its peak, from `/proc/self/status` (Linux).
fn process_memory() -> Vec<(&'static str, u64)> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    [
        ("process resident", "VmRSS:"),
        ("process peak resident", "VmHWM:"),
    ]
    .into_iter()
    .filter_map(|(part, field)| Some((part, status_kib(&status, field)? * 1024)))
    .collect()
}

/// The value, in KiB, of a `/proc/<pid>/status` line such as `VmRSS:  1234 kB`.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_lines_in_kib() {
        let status = "Name:\ttidemark\nVmHWM:\t  2048 kB\nVmRSS:\t    512 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(512));
        assert_eq!(status_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }
}
