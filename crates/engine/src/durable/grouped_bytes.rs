//! Partial aggregates of a group set as stored bytes: one Arrow IPC stream
//! holding the key columns and each aggregate's state columns, named so the
//! columns find their aggregate again when read back.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::operators::GroupedState;
use crate::{Error, Result};

const KEY: &str = "k";

fn corrupt(reason: impl std::fmt::Display) -> Error {
    Error::Internal(format!("stored aggregate state does not decode: {reason}"))
}

pub fn encode(state: &GroupedState) -> Result<Vec<u8>> {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for key in &state.keys {
        fields.push(Field::new(KEY, key.data_type().clone(), true));
        columns.push(Arc::clone(key));
    }
    for (a, states) in state.states.iter().enumerate() {
        for s in states {
            fields.push(Field::new(format!("a{a}"), s.data_type().clone(), true));
            columns.push(Arc::clone(s));
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let options = RecordBatchOptions::new().with_row_count(Some(state.num_groups()));
    let batch = RecordBatch::try_new_with_options(Arc::clone(&schema), columns, &options)?;
    let mut writer = StreamWriter::try_new(Vec::new(), &schema)?;
    writer.write(&batch)?;
    Ok(writer.into_inner()?)
}

/// The state of `aggs` aggregates written by [`encode`].
pub fn decode(bytes: &[u8], aggs: usize) -> Result<GroupedState> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(corrupt)?;
    let schema = reader.schema();
    let mut batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(corrupt)?;
    let batch = match (batches.pop(), batches.is_empty()) {
        (Some(b), true) => b,
        _ => return Err(corrupt("expected one batch")),
    };
    let mut state = GroupedState {
        keys: Vec::new(),
        states: vec![Vec::new(); aggs],
    };
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name();
        if name == KEY {
            state.keys.push(Arc::clone(column));
            continue;
        }
        let a: usize = name
            .strip_prefix('a')
            .and_then(|n| n.parse().ok())
            .filter(|&a| a < aggs)
            .ok_or_else(|| corrupt(format!("column \"{name}\"")))?;
        state.states[a].push(Arc::clone(column));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray, UInt64Array};

    use super::*;

    #[test]
    fn grouped_state_round_trips() {
        let state = GroupedState {
            keys: vec![Arc::new(StringArray::from(vec![Some("a"), None]))],
            states: vec![
                vec![Arc::new(UInt64Array::from(vec![3, 1]))],
                vec![
                    Arc::new(Int64Array::from(vec![Some(10), None])),
                    Arc::new(UInt64Array::from(vec![2, 0])),
                ],
            ],
        };
        let back = decode(&encode(&state).unwrap(), 2).unwrap();
        assert_eq!(back.keys.len(), 1);
        assert_eq!(back.keys[0].as_ref(), state.keys[0].as_ref());
        for (a, b) in back.states.iter().zip(&state.states) {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert_eq!(x.as_ref(), y.as_ref());
            }
        }
        assert!(decode(&encode(&state).unwrap(), 1).is_err());
        assert!(decode(b"junk", 2).is_err());
    }
}
