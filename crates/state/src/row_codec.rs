use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};

use crate::Result;

/// Encodes rows of given column types to bytes whose order is the order of the
/// values (memcomparable), and decodes them back. Used for state keys (so a table
/// scans in key order) and, with all columns, as the stored form of a row.
#[derive(Debug)]
pub struct RowCodec {
    converter: RowConverter,
}

impl RowCodec {
    pub fn new(types: impl IntoIterator<Item = DataType>) -> Result<Self> {
        let fields = types.into_iter().map(SortField::new).collect();
        Ok(Self {
            converter: RowConverter::new(fields)?,
        })
    }

    pub fn for_schema(schema: &SchemaRef) -> Result<Self> {
        Self::new(schema.fields().iter().map(|f| f.data_type().clone()))
    }

    /// The codec of some of `schema`'s columns (a primary key's, in key order).
    pub fn for_columns(schema: &Schema, columns: &[usize]) -> Result<Self> {
        Self::new(columns.iter().map(|&i| schema.field(i).data_type().clone()))
    }

    /// One encoded row per row of `columns`.
    pub fn encode(&self, columns: &[ArrayRef]) -> Result<Vec<Vec<u8>>> {
        let rows = self.converter.convert_columns(columns)?;
        Ok(rows.iter().map(|r| r.as_ref().to_vec()).collect())
    }

    /// Like [`Self::encode`], each row preceded by `prefix` (a store key).
    pub fn encode_with_prefix(&self, prefix: &[u8], columns: &[ArrayRef]) -> Result<Vec<Vec<u8>>> {
        let rows = self.converter.convert_columns(columns)?;
        Ok(rows
            .iter()
            .map(|r| {
                let row = r.as_ref();
                let mut key = Vec::with_capacity(prefix.len() + row.len());
                key.extend_from_slice(prefix);
                key.extend_from_slice(row);
                key
            })
            .collect())
    }

    /// Columns holding the decoded `rows`, which must come from [`Self::encode`]
    /// of a codec with the same types.
    pub fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        let parsed: Vec<_> = rows.into_iter().map(|r| parser.parse(r)).collect();
        Ok(self.converter.convert_rows(parsed)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};

    use super::*;

    #[test]
    fn round_trip_keeps_values_and_order() {
        let codec = RowCodec::new([DataType::Int64, DataType::Utf8]).unwrap();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(5), None, Some(-3)])),
            Arc::new(StringArray::from(vec![Some("b"), Some("a"), None])),
        ];
        let rows = codec.encode(&cols).unwrap();
        let mut sorted = rows.clone();
        sorted.sort();
        // nulls first, then -3, then 5
        assert_eq!(
            sorted,
            vec![rows[1].clone(), rows[2].clone(), rows[0].clone()]
        );
        let back = codec.decode(rows.iter().map(|r| r.as_slice())).unwrap();
        assert_eq!(&back[0], &cols[0]);
        assert_eq!(&back[1], &cols[1]);
    }
}
