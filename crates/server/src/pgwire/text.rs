//! PostgreSQL's text output format for the types we send.
//!
//! psql users compare our output with a real Postgres, so each function here
//! reproduces what the matching `*out` function of PostgreSQL 12+ prints with
//! default settings (`DateStyle=ISO`, `IntervalStyle=postgres`,
//! `extra_float_digits=1`, session time zone UTC).

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};

/// `float8out`: the shortest digits that round-trip, laid out like
/// `printf("%g")` with a precision of 15 (`DBL_DIG`).
pub fn format_f64(v: f64) -> String {
    if let Some(special) = special_float(v.is_nan(), v.is_infinite(), v.is_sign_negative()) {
        return special.to_string();
    }
    // Rust's `{:e}` prints the shortest round-trip digits, as Ryu does in
    // Postgres; only the layout differs.
    layout_float(&format!("{v:e}"), 15)
}

/// `float4out`: as [`format_f64`], with a precision of 6 (`FLT_DIG`).
pub fn format_f32(v: f32) -> String {
    if let Some(special) = special_float(v.is_nan(), v.is_infinite(), v.is_sign_negative()) {
        return special.to_string();
    }
    layout_float(&format!("{v:e}"), 6)
}

fn special_float(nan: bool, infinite: bool, negative: bool) -> Option<&'static str> {
    match (nan, infinite, negative) {
        (true, _, _) => Some("NaN"),
        (false, true, false) => Some("Infinity"),
        (false, true, true) => Some("-Infinity"),
        _ => None,
    }
}

/// Lays out `sci` (`[-]d[.ddd]e[-]x`, Rust's `{:e}`) in fixed notation when
/// the decimal exponent is in `-4..max_exp`, else as `d.ddde+XX`.
fn layout_float(sci: &str, max_exp: i32) -> String {
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    out.push_str(sign);
    if (-4..max_exp).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    }
    out
}

/// `numeric_out`: the exact digits of `unscaled * 10^-scale`, with exactly
/// `scale` digits after the point. `unscaled` is a decimal integer with an
/// optional leading `-`.
pub fn format_decimal(unscaled: &str, scale: i8) -> String {
    let (sign, digits) = match unscaled.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", unscaled),
    };
    if scale <= 0 {
        let zeros = if digits == "0" {
            0
        } else {
            scale.unsigned_abs() as usize
        };
        return format!("{sign}{digits}{}", "0".repeat(zeros));
    }
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits.to_string()
    };
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// `date_out`: `YYYY-MM-DD`, with ` BC` for years before 1 AD.
pub fn format_date(date: NaiveDate) -> String {
    let (year, bc) = pg_year(date.year());
    format!("{year:04}-{:02}-{:02}{bc}", date.month(), date.day())
}

/// `time_out`: `HH:MM:SS`, plus the fraction when nonzero.
pub fn format_time(time: NaiveTime) -> String {
    let mut out = format!(
        "{:02}:{:02}:{:02}",
        time.hour(),
        time.minute(),
        time.second()
    );
    push_fraction(&mut out, i64::from(time.nanosecond() / 1000));
    out
}

/// `timestamp_out`: `YYYY-MM-DD HH:MM:SS[.ffffff]`, trailing zeros trimmed.
pub fn format_timestamp(ts: NaiveDateTime) -> String {
    let (year, bc) = pg_year(ts.year());
    let mut out = format!(
        "{year:04}-{:02}-{:02} {}",
        ts.month(),
        ts.day(),
        format_time(ts.time())
    );
    out.push_str(bc);
    out
}

/// `timestamptz_out` in the UTC session time zone: the timestamp and `+00`.
pub fn format_timestamptz(ts: DateTime<Utc>) -> String {
    let naive = ts.naive_utc();
    let (year, bc) = pg_year(naive.year());
    format!(
        "{year:04}-{:02}-{:02} {}+00{bc}",
        naive.month(),
        naive.day(),
        format_time(naive.time())
    )
}

/// Postgres numbers years 1 BC, 2 BC, ... where chrono uses 0, -1, ...
fn pg_year(year: i32) -> (i32, &'static str) {
    if year <= 0 {
        (1 - year, " BC")
    } else {
        (year, "")
    }
}

fn push_fraction(out: &mut String, micros: i64) {
    if micros != 0 {
        let frac = format!("{:06}", micros.unsigned_abs());
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
}

/// `interval_out` with `IntervalStyle=postgres`, e.g. `1 year 2 mons`,
/// `-1 days +02:00:00`, `00:00:05.5`.
pub fn format_interval(months: i32, days: i32, micros: i64) -> String {
    let mut out = String::new();
    let mut is_zero = true;
    let mut is_before = false;
    let mut part = |value: i64, unit: &str| {
        if value == 0 {
            return;
        }
        if !is_zero {
            out.push(' ');
        }
        let plus = if is_before && value > 0 { "+" } else { "" };
        let plural = if value != 1 { "s" } else { "" };
        out.push_str(&format!("{plus}{value} {unit}{plural}"));
        // Postgres: each nonzero field decides the sign marker of the next.
        is_before = value < 0;
        is_zero = false;
    };
    part(i64::from(months / 12), "year");
    part(i64::from(months % 12), "mon");
    part(i64::from(days), "day");
    if is_zero || micros != 0 {
        const USECS_PER_SEC: i64 = 1_000_000;
        let hours = micros / (3600 * USECS_PER_SEC);
        let minutes = micros / (60 * USECS_PER_SEC) % 60;
        let seconds = micros / USECS_PER_SEC % 60;
        let fraction = micros % USECS_PER_SEC;
        if !is_zero {
            out.push(' ');
        }
        let sign = if micros < 0 {
            "-"
        } else if is_before {
            "+"
        } else {
            ""
        };
        out.push_str(&format!(
            "{sign}{:02}:{:02}:{:02}",
            hours.unsigned_abs(),
            minutes.unsigned_abs(),
            seconds.unsigned_abs()
        ));
        push_fraction(&mut out, fraction);
    }
    out
}

/// `byteaout` with `bytea_output=hex`: `\x` and two lower-case hex digits a byte.
pub fn format_bytea(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float8_like_postgres() {
        let cases: &[(f64, &str)] = &[
            (3.0, "3"),
            (0.0, "0"),
            (-0.0, "-0"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (100.0, "100"),
            (1e15, "1e+15"),
            (123456789012345.0, "123456789012345"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (1.2345e100, "1.2345e+100"),
            (1e-300, "1e-300"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::MAX, "1.7976931348623157e+308"),
        ];
        for (v, want) in cases {
            assert_eq!(format_f64(*v), *want, "{v:?}");
        }
    }

    #[test]
    fn float4_like_postgres() {
        assert_eq!(format_f32(3.0), "3");
        assert_eq!(format_f32(0.1), "0.1");
        assert_eq!(format_f32(123456.0), "123456");
        assert_eq!(format_f32(1234567.0), "1.234567e+06");
        assert_eq!(format_f32(1.5e-5), "1.5e-05");
        assert_eq!(format_f32(f32::NEG_INFINITY), "-Infinity");
    }

    #[test]
    fn decimal_keeps_scale() {
        assert_eq!(format_decimal("12345", 2), "123.45");
        assert_eq!(format_decimal("-5", 2), "-0.05");
        assert_eq!(format_decimal("0", 2), "0.00");
        assert_eq!(format_decimal("100", 0), "100");
        assert_eq!(format_decimal("12", -2), "1200");
        assert_eq!(format_decimal("0", -2), "0");
        assert_eq!(format_decimal("-123", 3), "-0.123");
    }

    #[test]
    fn dates_and_timestamps() {
        let d = NaiveDate::from_ymd_opt(2024, 1, 1).expect("valid date");
        assert_eq!(format_date(d), "2024-01-01");
        let bc = NaiveDate::from_ymd_opt(-43, 3, 15).expect("valid date");
        assert_eq!(format_date(bc), "0044-03-15 BC");
        let ts = d.and_hms_opt(0, 0, 5).expect("valid time");
        assert_eq!(format_timestamp(ts), "2024-01-01 00:00:05");
        let ts_frac = d.and_hms_micro_opt(0, 0, 5, 500_000).expect("valid time");
        assert_eq!(format_timestamp(ts_frac), "2024-01-01 00:00:05.5");
        let ts_micro = d.and_hms_micro_opt(12, 30, 0, 123).expect("valid time");
        assert_eq!(format_timestamp(ts_micro), "2024-01-01 12:30:00.000123");
        assert_eq!(format_timestamptz(ts.and_utc()), "2024-01-01 00:00:05+00");
        assert_eq!(
            format_timestamptz(ts_frac.and_utc()),
            "2024-01-01 00:00:05.5+00"
        );
        let t = NaiveTime::from_hms_micro_opt(1, 2, 3, 250_000).expect("valid time");
        assert_eq!(format_time(t), "01:02:03.25");
    }

    #[test]
    fn intervals_postgres_style() {
        const H: i64 = 3_600_000_000;
        assert_eq!(format_interval(0, 1, 2 * H), "1 day 02:00:00");
        assert_eq!(format_interval(0, 0, 5_000_000), "00:00:05");
        assert_eq!(format_interval(14, 0, 0), "1 year 2 mons");
        assert_eq!(format_interval(0, 0, -1_000_000), "-00:00:01");
        assert_eq!(format_interval(0, 0, 0), "00:00:00");
        assert_eq!(format_interval(0, -1, 0), "-1 days");
        assert_eq!(format_interval(0, -1, 2 * H), "-1 days +02:00:00");
        assert_eq!(format_interval(1, 0, 0), "1 mon");
        assert_eq!(format_interval(0, 0, 5_500_000), "00:00:05.5");
        assert_eq!(format_interval(0, 0, 30 * H), "30:00:00");
        assert_eq!(
            format_interval(-14, 3, -90_000_000),
            "-1 years -2 mons +3 days -00:01:30"
        );
    }

    #[test]
    fn bytea_hex() {
        assert_eq!(format_bytea(&[0x01, 0xab]), "\\x01ab");
        assert_eq!(format_bytea(&[]), "\\x");
    }
}
