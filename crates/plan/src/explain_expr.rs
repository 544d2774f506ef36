//! Expressions as EXPLAIN prints them: DataFusion's own text, except that
//! intervals and durations read as SQL intervals (`INTERVAL '1 minute'`), not
//! as struct dumps or nanosecond counts.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Literal};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};

/// The text of `expr`.
pub fn expr_text(expr: &Arc<dyn PhysicalExpr>) -> String {
    if let Some(lit) = expr.downcast_ref::<Literal>() {
        return interval_text(lit.value()).unwrap_or_else(|| expr.to_string());
    }
    if let Some(bin) = expr.downcast_ref::<BinaryExpr>() {
        return format!(
            "{} {} {}",
            operand_text(bin.left()),
            bin.op(),
            operand_text(bin.right())
        );
    }
    if let Some(call) = expr.downcast_ref::<ScalarFunctionExpr>() {
        let args: Vec<String> = call.args().iter().map(expr_text).collect();
        return format!("{}({})", call.name(), args.join(", "));
    }
    if let Some(cast) = expr.downcast_ref::<CastExpr>() {
        return format!("CAST({} AS {})", expr_text(cast.expr()), cast.cast_type());
    }
    expr.to_string()
}

/// A binary expression's operand, parenthesized when it is itself binary.
fn operand_text(expr: &Arc<dyn PhysicalExpr>) -> String {
    let text = expr_text(expr);
    if expr.is::<BinaryExpr>() {
        format!("({text})")
    } else {
        text
    }
}

/// `INTERVAL '…'` for interval and duration literals.
fn interval_text(value: &ScalarValue) -> Option<String> {
    let (months, days, nanos): (i64, i64, i128) = match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            (v.months.into(), v.days.into(), v.nanoseconds.into())
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            (0, v.days.into(), i128::from(v.milliseconds) * 1_000_000)
        }
        ScalarValue::IntervalYearMonth(Some(m)) => ((*m).into(), 0, 0),
        ScalarValue::DurationSecond(Some(s)) => (0, 0, i128::from(*s) * 1_000_000_000),
        ScalarValue::DurationMillisecond(Some(ms)) => (0, 0, i128::from(*ms) * 1_000_000),
        ScalarValue::DurationMicrosecond(Some(us)) => (0, 0, i128::from(*us) * 1000),
        ScalarValue::DurationNanosecond(Some(ns)) => (0, 0, i128::from(*ns)),
        _ => return None,
    };
    let mut parts: Vec<String> = Vec::new();
    let mut push = |n: i128, unit: &str| {
        if n != 0 {
            let plural = if n.abs() == 1 { "" } else { "s" };
            parts.push(format!("{n} {unit}{plural}"));
        }
    };
    push(months.into(), "month");
    push(days.into(), "day");
    let mut rest = nanos;
    for (size, unit) in [
        (3_600_000_000_000i128, "hour"),
        (60_000_000_000, "minute"),
        (1_000_000_000, "second"),
        (1_000_000, "millisecond"),
        (1000, "microsecond"),
        (1, "nanosecond"),
    ] {
        push(rest / size, unit);
        rest %= size;
    }
    let mut text = String::from("INTERVAL '");
    if parts.is_empty() {
        text.push_str("0 seconds");
    } else {
        let _ = write!(text, "{}", parts.join(" "));
    }
    text.push('\'');
    Some(text)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::IntervalMonthDayNano;

    use super::*;

    #[test]
    fn intervals_read_as_sql() {
        let v = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(
            0,
            0,
            90_000_000_000,
        )));
        assert_eq!(interval_text(&v).unwrap(), "INTERVAL '1 minute 30 seconds'");
        let d = ScalarValue::DurationNanosecond(Some(10_000_000_000));
        assert_eq!(interval_text(&d).unwrap(), "INTERVAL '10 seconds'");
        let m = ScalarValue::IntervalYearMonth(Some(-1));
        assert_eq!(interval_text(&m).unwrap(), "INTERVAL '-1 month'");
        assert_eq!(interval_text(&ScalarValue::Int64(Some(1))), None);
    }
}
