use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::Accumulator;
use tidemark_state::RowCodec;

/// MIN or MAX that stays right under arbitrary deletes: it keeps every value
/// with its multiplicity (ordered by the memcomparable encoding), so removing the
/// current extreme reveals the next one. DataFusion's sliding min/max assume
/// values leave in arrival order, which a changelog does not promise.
#[derive(Debug)]
pub struct RetractableMinMax {
    is_max: bool,
    data_type: DataType,
    codec: RowCodec,
    values: BTreeMap<Vec<u8>, i64>,
}

fn state_err(e: tidemark_state::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl RetractableMinMax {
    pub fn new(is_max: bool, data_type: DataType) -> datafusion::error::Result<Self> {
        Ok(Self {
            is_max,
            codec: RowCodec::new([data_type.clone()]).map_err(state_err)?,
            data_type,
            values: BTreeMap::new(),
        })
    }

    fn apply(&mut self, values: &[ArrayRef], delta: i64) -> datafusion::error::Result<()> {
        let column = &values[0];
        let encoded = self
            .codec
            .encode(std::slice::from_ref(column))
            .map_err(state_err)?;
        for (i, key) in encoded.into_iter().enumerate() {
            if column.is_null(i) {
                continue;
            }
            match self.values.entry(key) {
                Entry::Occupied(mut e) => {
                    *e.get_mut() += delta;
                    if *e.get() == 0 {
                        e.remove();
                    }
                }
                Entry::Vacant(v) => {
                    v.insert(delta);
                }
            }
        }
        Ok(())
    }
}

impl Accumulator for RetractableMinMax {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.apply(values, 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> datafusion::error::Result<()> {
        self.apply(values, -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> datafusion::error::Result<ScalarValue> {
        let extreme = if self.is_max {
            self.values.iter().rev().find(|(_, c)| **c > 0)
        } else {
            self.values.iter().find(|(_, c)| **c > 0)
        };
        match extreme {
            None => ScalarValue::try_from(&self.data_type),
            Some((key, _)) => {
                let columns = self.codec.decode([key.as_slice()]).map_err(state_err)?;
                ScalarValue::try_from_array(&columns[0], 0)
            }
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.keys().map(|k| k.len() + 24).sum::<usize>()
    }

    /// Every value with its multiplicity (encoded values, counts), so a
    /// merged state can still retract any of them.
    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        let keys: Vec<ScalarValue> = self
            .values
            .keys()
            .map(|k| ScalarValue::Binary(Some(k.clone())))
            .collect();
        let counts: Vec<ScalarValue> = self
            .values
            .values()
            .map(|&c| ScalarValue::Int64(Some(c)))
            .collect();
        Ok(vec![
            ScalarValue::List(ScalarValue::new_list_nullable(&keys, &DataType::Binary)),
            ScalarValue::List(ScalarValue::new_list_nullable(&counts, &DataType::Int64)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::error::Result<()> {
        let (Some(keys), Some(counts)) = (
            states.first().and_then(|a| a.as_list_opt::<i32>()),
            states.get(1).and_then(|a| a.as_list_opt::<i32>()),
        ) else {
            return Err(DataFusionError::Internal(
                "retractable min/max state of unexpected types".to_string(),
            ));
        };
        for row in 0..keys.len() {
            if keys.is_null(row) || counts.is_null(row) {
                continue;
            }
            let row_keys = keys.value(row);
            let row_counts = counts.value(row);
            let (Some(row_keys), Some(row_counts)) = (
                row_keys.as_binary_opt::<i32>(),
                row_counts.as_primitive_opt::<arrow::datatypes::Int64Type>(),
            ) else {
                return Err(DataFusionError::Internal(
                    "retractable min/max state of unexpected types".to_string(),
                ));
            };
            for (key, count) in row_keys.iter().zip(row_counts.iter()) {
                if let (Some(key), Some(count)) = (key, count) {
                    let entry = self.values.entry(key.to_vec()).or_insert(0);
                    *entry += count;
                    if *entry == 0 {
                        self.values.remove(key);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;

    use super::*;

    #[test]
    fn deleting_the_extreme_reveals_the_next_one() {
        let mut max = RetractableMinMax::new(true, DataType::Int64).unwrap();
        let vals: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(3),
            Some(9),
            None,
            Some(9),
            Some(-1),
        ]));
        max.update_batch(&[vals]).unwrap();
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int64(Some(9)));
        let nine: ArrayRef = Arc::new(Int64Array::from(vec![9]));
        max.retract_batch(std::slice::from_ref(&nine)).unwrap();
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int64(Some(9)));
        max.retract_batch(&[nine]).unwrap();
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int64(Some(3)));
        let rest: ArrayRef = Arc::new(Int64Array::from(vec![3, -1]));
        max.retract_batch(&[rest]).unwrap();
        assert_eq!(max.evaluate().unwrap(), ScalarValue::Int64(None));
    }

    #[test]
    fn a_merged_state_can_still_retract() {
        let mut min = RetractableMinMax::new(false, DataType::Int64).unwrap();
        let vals: ArrayRef = Arc::new(Int64Array::from(vec![4, 2, 2, 8]));
        min.update_batch(&[vals]).unwrap();
        let state: Vec<ArrayRef> = min
            .state()
            .unwrap()
            .iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        let mut restored = RetractableMinMax::new(false, DataType::Int64).unwrap();
        restored.merge_batch(&state).unwrap();
        assert_eq!(restored.evaluate().unwrap(), ScalarValue::Int64(Some(2)));
        let two: ArrayRef = Arc::new(Int64Array::from(vec![2, 2]));
        restored.retract_batch(&[two]).unwrap();
        assert_eq!(restored.evaluate().unwrap(), ScalarValue::Int64(Some(4)));
    }
}
