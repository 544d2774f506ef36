//! The primary keys an `UPDATE` or `DELETE` filter pins down (`id = 5`,
//! `id IN (1, 2)`, `a = 1 AND b = 'x'`), so the table's actor reads those
//! rows by key instead of reading the whole table. The filter is still
//! evaluated on the rows read: this only has to find every row that can
//! match, never to decide which do.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::expressions::{
    BinaryExpr, CastExpr, Column, InListExpr, TryCastExpr,
};
use datafusion::physical_expr::utils::{collect_columns, split_conjunction};
use datafusion::physical_expr::PhysicalExpr;
use tidemark_state::RowCodec;

/// More keys than this are read by a scan instead.
const MAX_PINNED_KEYS: usize = 4096;

/// For each primary-key column (in key order), one value per candidate key:
/// every row `filter` can be true for has one of these keys. `None` when the
/// filter does not pin every key column (or pins too many keys).
pub fn pinned_keys(
    filter: &Arc<dyn PhysicalExpr>,
    primary_key: &[usize],
    schema: &Schema,
) -> Option<Vec<Vec<ScalarValue>>> {
    // Key column -> the values its conjuncts allow (intersected).
    let mut allowed: BTreeMap<usize, Vec<ScalarValue>> = BTreeMap::new();
    for conjunct in split_conjunction(filter) {
        let Some((column, values)) = equality(conjunct, schema) else {
            continue;
        };
        if !primary_key.contains(&column) {
            continue;
        }
        let entry = allowed.entry(column).or_insert_with(|| values.clone());
        entry.retain(|v| values.contains(v));
    }
    let mut tuples: Vec<Vec<ScalarValue>> = vec![Vec::new()];
    for column in primary_key {
        let values = allowed.get(column)?;
        if tuples.len() * values.len() > MAX_PINNED_KEYS {
            return None;
        }
        tuples = tuples
            .iter()
            .flat_map(|t| {
                values.iter().map(move |v| {
                    let mut t = t.clone();
                    t.push(v.clone());
                    t
                })
            })
            .collect();
    }
    // Transposed: one list of values per key column.
    let mut columns = vec![Vec::with_capacity(tuples.len()); primary_key.len()];
    for tuple in tuples {
        for (i, v) in tuple.into_iter().enumerate() {
            columns[i].push(v);
        }
    }
    Some(columns)
}

/// The keys [`pinned_keys`] finds, encoded by `codec` (the key columns'
/// row encoding, as stored), in key order without repeats; `None` when the
/// filter does not pin them.
pub fn pinned_key_bytes(
    filter: &Arc<dyn PhysicalExpr>,
    primary_key: &[usize],
    schema: &Schema,
    codec: &RowCodec,
) -> crate::Result<Option<Vec<Vec<u8>>>> {
    let Some(values) = pinned_keys(filter, primary_key, schema) else {
        return Ok(None);
    };
    if values.first().is_none_or(|v| v.is_empty()) {
        return Ok(Some(Vec::new()));
    }
    let columns = values
        .into_iter()
        .map(ScalarValue::iter_to_array)
        .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
    let mut keys = codec.encode(&columns)?;
    keys.sort_unstable();
    keys.dedup();
    Ok(Some(keys))
}

/// `column = constant` (either way round), `column IN (constants)`, or an
/// `OR` of those on one column (what DataFusion makes of a short `IN`
/// list): the column and the values of its type that can make the
/// conjunct true.
fn equality(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<(usize, Vec<ScalarValue>)> {
    if let Some(b) = expr.downcast_ref::<BinaryExpr>() {
        if *b.op() == Operator::Or {
            let (column, mut values) = equality(b.left(), schema)?;
            let (other, more) = equality(b.right(), schema)?;
            values.extend(more);
            return (column == other).then_some((column, values));
        }
        if *b.op() != Operator::Eq {
            return None;
        }
        let (column, constant) = match column_of(b.left(), schema) {
            Some(c) => (c, b.right()),
            None => (column_of(b.right(), schema)?, b.left()),
        };
        let value = constant_value(constant)?;
        return Some((column, in_column_type(&value, schema, column)?));
    }
    if let Some(list) = expr.downcast_ref::<InListExpr>() {
        if list.negated() {
            return None;
        }
        let column = column_of(list.expr(), schema)?;
        let mut values = Vec::new();
        for item in list.list() {
            values.extend(in_column_type(&constant_value(item)?, schema, column)?);
        }
        return Some((column, values));
    }
    None
}

/// The table column `expr` reads, bare or through a cast that keeps values
/// apart (`CAST(id AS BIGINT)` of an INT column). A cast that merges values
/// (a timestamp to its date, BIGINT to DOUBLE) is not a column here: one
/// value of it stands for many keys.
fn column_of(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<usize> {
    if let Some(c) = expr.downcast_ref::<Column>() {
        return Some(c.index());
    }
    let (inner, to) = match (
        expr.downcast_ref::<CastExpr>(),
        expr.downcast_ref::<TryCastExpr>(),
    ) {
        (Some(c), _) => (c.expr(), c.cast_type()),
        (_, Some(c)) => (c.expr(), c.cast_type()),
        _ => return None,
    };
    let index = inner.downcast_ref::<Column>()?.index();
    let from = schema.fields().get(index)?.data_type();
    keeps_values_apart(from, to).then_some(index)
}

/// Whether casting `from` to `to` maps different values to different ones.
fn keeps_values_apart(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let int = |t: &DataType| match t {
        Int8 => Some((true, 8)),
        Int16 => Some((true, 16)),
        Int32 => Some((true, 32)),
        Int64 => Some((true, 64)),
        UInt8 => Some((false, 8)),
        UInt16 => Some((false, 16)),
        UInt32 => Some((false, 32)),
        UInt64 => Some((false, 64)),
        _ => None,
    };
    if from == to {
        return true;
    }
    match (int(from), int(to)) {
        (Some((signed, width)), Some((to_signed, to_width))) => {
            (signed == to_signed && to_width >= width) || (!signed && to_signed && to_width > width)
        }
        _ => matches!(
            (from, to),
            (Utf8, LargeUtf8) | (Utf8, Utf8View) | (LargeUtf8, Utf8View)
        ),
    }
}

/// The value of an expression that reads no column.
fn constant_value(expr: &Arc<dyn PhysicalExpr>) -> Option<ScalarValue> {
    if !collect_columns(expr).is_empty() {
        return None;
    }
    let empty = Arc::new(Schema::empty());
    let one_row = RecordBatch::try_new_with_options(
        empty,
        Vec::new(),
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .ok()?;
    match expr.evaluate(&one_row).ok()? {
        ColumnarValue::Scalar(s) => Some(s),
        ColumnarValue::Array(a) if a.len() == 1 => ScalarValue::try_from_array(&a, 0).ok(),
        ColumnarValue::Array(_) => None,
    }
}

/// `value` as a value of the column's type: empty when no value of that type
/// equals it (or it is NULL, which equals nothing); `None` when the column's
/// type is one whose equality is not the equality of its encoded key
/// (floats: `0.0 = -0.0`), so the rows must be scanned.
fn in_column_type(value: &ScalarValue, schema: &Schema, column: usize) -> Option<Vec<ScalarValue>> {
    let dtype = schema.fields().get(column)?.data_type();
    let exact = matches!(
        dtype,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Boolean
            | DataType::Date32
            | DataType::Timestamp(_, _)
    );
    if !exact {
        return None;
    }
    if value.is_null() {
        return Some(Vec::new());
    }
    let Ok(cast) = value.cast_to(dtype) else {
        // Out of the column's range, say: no row's key can equal it, but
        // let the scan decide rather than guess why the cast failed.
        return None;
    };
    // A cast that loses something (2.5 to an integer) pins nothing.
    match cast.cast_to(&value.data_type()) {
        Ok(back) if back == *value && !cast.is_null() => Some(vec![cast]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::{binary, cast, col, in_list, lit};

    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("score", DataType::Float64, true),
        ])
    }

    fn eq(l: Arc<dyn PhysicalExpr>, r: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        binary(l, Operator::Eq, r, &schema()).unwrap()
    }

    fn and(l: Arc<dyn PhysicalExpr>, r: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        binary(l, Operator::And, r, &schema()).unwrap()
    }

    fn id() -> Arc<dyn PhysicalExpr> {
        col("id", &schema()).unwrap()
    }

    fn id_as_i64() -> Arc<dyn PhysicalExpr> {
        cast(id(), &schema(), DataType::Int64).unwrap()
    }

    #[test]
    fn equalities_and_in_lists_pin_keys() {
        let s = schema();
        let pinned = pinned_keys(&eq(id_as_i64(), lit(5i64)), &[0], &s).unwrap();
        assert_eq!(pinned, vec![vec![ScalarValue::Int32(Some(5))]]);
        let name = col("name", &s).unwrap();
        let list = in_list(id(), vec![lit(1i32), lit(2i32)], &false, &s).unwrap();
        let f = and(list, eq(lit("x"), name));
        let pinned = pinned_keys(&f, &[0, 1], &s).unwrap();
        assert_eq!(pinned[0].len(), 2);
        assert_eq!(pinned[1], vec![ScalarValue::from("x"); 2]);
        // An OR of equalities on one column (a short IN list, to DataFusion)
        // pins each.
        let or = binary(eq(id(), lit(1i32)), Operator::Or, eq(id(), lit(2i32)), &s).unwrap();
        let or = binary(or, Operator::Or, eq(lit(3i64), id_as_i64()), &s).unwrap();
        let want: Vec<ScalarValue> = [1, 2, 3].map(|v| ScalarValue::Int32(Some(v))).into();
        assert_eq!(pinned_keys(&or, &[0], &s).unwrap(), vec![want]);
        // Two equalities on one column intersect.
        let f = and(eq(id(), lit(1i32)), eq(id(), lit(2i32)));
        assert_eq!(
            pinned_keys(&f, &[0], &s).unwrap(),
            vec![Vec::<ScalarValue>::new()]
        );
    }

    #[test]
    fn anything_else_is_scanned() {
        let s = schema();
        let gt = binary(id(), Operator::Gt, lit(5i32), &s).unwrap();
        assert_eq!(pinned_keys(&gt, &[0], &s), None);
        let name = col("name", &s).unwrap();
        let or = binary(eq(id(), lit(1i32)), Operator::Or, eq(name, lit("x")), &s).unwrap();
        assert_eq!(pinned_keys(&or, &[0], &s), None);
        let or = binary(eq(id(), lit(1i32)), Operator::Or, gt, &s).unwrap();
        assert_eq!(pinned_keys(&or, &[0], &s), None);
        // Not every key column pinned.
        assert_eq!(pinned_keys(&eq(id(), lit(1i32)), &[0, 1], &s), None);
        // A float key: 0.0 and -0.0 are equal but encode apart.
        let score = col("score", &s).unwrap();
        assert_eq!(pinned_keys(&eq(score, lit(0.0f64)), &[2], &s), None);
        // A value the column's type cannot hold exactly.
        let wide = eq(id_as_i64(), lit(1i64 << 40));
        assert_eq!(pinned_keys(&wide, &[0], &s), None);
        let not_in = in_list(id(), vec![lit(1i32)], &true, &s).unwrap();
        assert_eq!(pinned_keys(&not_in, &[0], &s), None);
        // A cast that merges keys: many ids are one DOUBLE, many times one date.
        let as_double = cast(id(), &s, DataType::Float64).unwrap();
        assert_eq!(pinned_keys(&eq(as_double, lit(1.0f64)), &[0], &s), None);
        let times = Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            false,
        )]);
        let day = cast(col("ts", &times).unwrap(), &times, DataType::Date32).unwrap();
        let on_day = binary(
            day,
            Operator::Eq,
            lit(ScalarValue::Date32(Some(19000))),
            &times,
        )
        .unwrap();
        assert_eq!(pinned_keys(&on_day, &[0], &times), None);
    }
}
