use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use arrow::array::ArrayRef;
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

    fn state(&mut self) -> datafusion::error::Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, _states: &[ArrayRef]) -> datafusion::error::Result<()> {
        Err(DataFusionError::NotImplemented(
            "merging retractable min/max states".to_string(),
        ))
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
}
