//! Rows of scalars (an aggregate group's or session's accumulator states) as
//! stored bytes, through Arrow's row format, a batch of rows at a time.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;

use crate::{Error, Result};

pub struct ScalarRows {
    types: Vec<DataType>,
    converter: RowConverter,
}

impl ScalarRows {
    pub fn new(types: Vec<DataType>) -> Result<Self> {
        let fields = types.iter().map(|t| SortField::new(t.clone())).collect();
        Ok(Self {
            converter: RowConverter::new(fields)?,
            types,
        })
    }

    /// One byte string per row; every row has one scalar per type.
    pub fn encode(&self, rows: &[Vec<ScalarValue>]) -> Result<Vec<Vec<u8>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let columns = (0..self.types.len())
            .map(|c| {
                Ok(ScalarValue::iter_to_array(
                    rows.iter().map(|r| r[c].clone()),
                )?)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        self.encode_columns(&columns)
    }

    /// One byte string per row of `columns`, one column per type (cast to
    /// it where it differs).
    pub fn encode_columns(&self, columns: &[ArrayRef]) -> Result<Vec<Vec<u8>>> {
        let columns = columns
            .iter()
            .zip(&self.types)
            .map(|(array, t)| {
                if array.data_type() == t {
                    Ok(Arc::clone(array))
                } else {
                    Ok(arrow::compute::cast(array, t)?)
                }
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let converted = self.converter.convert_columns(&columns)?;
        Ok(converted.iter().map(|r| r.as_ref().to_vec()).collect())
    }

    /// The rows of [`ScalarRows::encode`] back, as columns.
    pub fn decode(&self, rows: &[&[u8]]) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        let columns = self
            .converter
            .convert_rows(rows.iter().map(|b| parser.parse(b)))
            .map_err(|e| Error::Internal(format!("stored aggregate state does not decode: {e}")))?;
        Ok(columns)
    }
}

/// Merges row `row` of decoded accumulator states into fresh accumulators,
/// each taking as many columns as its state has, from `first` on.
pub fn merge_row(
    accumulators: &mut [Box<dyn Accumulator>],
    columns: &[ArrayRef],
    first: usize,
    row: usize,
) -> Result<()> {
    let mut column = first;
    for acc in accumulators {
        let width = acc.state()?.len();
        let states: Vec<ArrayRef> = columns
            .get(column..column + width)
            .ok_or_else(|| Error::Internal("stored aggregate state has too few columns".into()))?
            .iter()
            .map(|c| c.slice(row, 1))
            .collect();
        acc.merge_batch(&states)?;
        column += width;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;

    use super::*;

    #[test]
    fn scalar_rows_round_trip() {
        let rows = ScalarRows::new(vec![DataType::Int64, DataType::Utf8]).unwrap();
        let data = vec![
            vec![ScalarValue::Int64(Some(5)), ScalarValue::Utf8(None)],
            vec![
                ScalarValue::Int64(None),
                ScalarValue::Utf8(Some("x".into())),
            ],
        ];
        let bytes = rows.encode(&data).unwrap();
        let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
        let columns = rows.decode(&refs).unwrap();
        let ints = columns[0].as_primitive::<Int64Type>();
        assert_eq!(ints.value(0), 5);
        assert!(ints.is_null(1));
        assert_eq!(columns[1].as_string::<i32>().value(1), "x");
    }
}
