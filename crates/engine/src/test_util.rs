//! Readable chunks for operator tests: `"I T\n+ 1 a\n- 2 ."` is a chunk of an
//! Int64 and a Utf8 column with an insert of (1, 'a') and a delete of (2, NULL).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::array_value_to_string;
use tidemark_types::{Op, StreamChunk};

fn data_type(code: &str) -> DataType {
    match code {
        "I" => DataType::Int64,
        "i" => DataType::Int32,
        "F" => DataType::Float64,
        "T" => DataType::Utf8,
        other => panic!("unknown column type code {other}"),
    }
}

/// The schema named `c0, c1, …` for the type codes of a pretty chunk.
pub fn schema_of(codes: &str) -> SchemaRef {
    let fields: Vec<Field> = codes
        .split_whitespace()
        .enumerate()
        .map(|(i, c)| Field::new(format!("c{i}"), data_type(c), true))
        .collect();
    Arc::new(Schema::new(fields))
}

pub fn chunk_from_pretty(text: &str) -> StreamChunk {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let schema = schema_of(lines.next().expect("a header line of type codes"));
    let mut ops = Vec::new();
    let mut cells: Vec<Vec<Option<String>>> = vec![Vec::new(); schema.fields().len()];
    for line in lines {
        let mut parts = line.split_whitespace();
        ops.push(match parts.next() {
            Some("+") => Op::Insert,
            Some("-") => Op::Delete,
            other => panic!("each row starts with + or -, not {other:?}"),
        });
        for (c, v) in parts.enumerate() {
            cells[c].push((v != ".").then(|| v.to_string()));
        }
    }
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .zip(cells)
        .map(|(f, vals)| -> ArrayRef {
            match f.data_type() {
                DataType::Int64 => Arc::new(Int64Array::from_iter(
                    vals.iter()
                        .map(|v| v.as_ref().map(|s| s.parse::<i64>().unwrap())),
                )),
                DataType::Int32 => Arc::new(Int32Array::from_iter(
                    vals.iter()
                        .map(|v| v.as_ref().map(|s| s.parse::<i32>().unwrap())),
                )),
                DataType::Float64 => Arc::new(Float64Array::from_iter(
                    vals.iter()
                        .map(|v| v.as_ref().map(|s| s.parse::<f64>().unwrap())),
                )),
                _ => Arc::new(StringArray::from_iter(vals.iter().cloned())),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema, columns).expect("consistent pretty chunk");
    StreamChunk::with_ops(batch, ops)
}

/// Renders chunks one row per line, `+ 1 a` / `- 2 NULL`, for comparing.
pub fn pretty(chunks: &[StreamChunk]) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in chunks {
        for row in 0..chunk.num_rows() {
            let op = match chunk.op(row) {
                Op::Insert => "+",
                Op::Delete => "-",
            };
            let values: Vec<String> = chunk
                .batch()
                .columns()
                .iter()
                .map(|c| {
                    if c.is_null(row) {
                        "NULL".to_string()
                    } else {
                        array_value_to_string(c, row).unwrap_or_default()
                    }
                })
                .collect();
            out.push(format!("{op} {}", values.join(" ")));
        }
    }
    out
}
