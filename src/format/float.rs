//! Float spelling shared by the file format and the exposition.
//!
//! Python writes a histogram's bucket bound into the key's `le` label with
//! `prometheus_client.utils.floatToGoString`, and its exposition spells every sample
//! value the same way. Both are built on Python's `repr(float)`, which this module
//! reproduces exactly: the shortest digits that round-trip, fixed notation when the
//! decimal exponent is in `-4..16`, scientific otherwise (`1e-05`, `1.5e+16`).

use std::fmt::Write;

/// Appends Python's `repr(v)` for a finite or non-finite `v` to `out`.
///
/// Non-finite values are spelled as Python does (`inf`, `-inf`, `nan`); callers
/// that want Prometheus spellings use [`write_go_float`].
pub fn write_python_repr(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("nan");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "inf" } else { "-inf" });
        return;
    }
    // `{:e}` yields the shortest round-trip digits, e.g. "-1.2345e-7" or "1e16".
    let mut sci = String::with_capacity(32);
    let _ = write!(sci, "{v:e}");
    let (negative, body) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci.as_str()),
    };
    let (mantissa, exp) = body.split_once('e').unwrap_or((body, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    // Position of the decimal point relative to the first digit, as CPython's
    // float_repr_style "short" computes it.
    let decpt = exp + 1;
    if negative {
        out.push('-');
    }
    if decpt > -4 && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            for _ in 0..(-decpt) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let decpt = decpt as usize;
            if decpt >= digits.len() {
                out.push_str(&digits);
                for _ in digits.len()..decpt {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..decpt]);
                out.push('.');
                out.push_str(&digits[decpt..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

/// Appends `prometheus_client.utils.floatToGoString(v)` (0.26.0) to `out`.
///
/// `+Inf`, `-Inf` and `NaN` are spelled so; otherwise Python's `repr`, except that
/// a positive value with more than six digits before the dot switches to
/// exponent form (`1000000.0` → `1e+06`, `1234567.0` → `1.234567e+06`).
pub fn write_go_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let start = out.len();
    write_python_repr(out, v);
    let dot = out[start..].find('.');
    if let Some(dot) = dot.filter(|&d| v > 0.0 && d > 6) {
        let repr = out.split_off(start);
        let mut mantissa = String::with_capacity(repr.len() + 1);
        mantissa.push_str(&repr[..1]);
        mantissa.push('.');
        mantissa.push_str(&repr[1..dot]);
        mantissa.push_str(&repr[dot + 1..]);
        let trimmed = mantissa.trim_end_matches(['0', '.']);
        let _ = write!(out, "{trimmed}e+{:02}", dot - 1);
    }
}

/// `floatToGoString(v)` as a new string.
pub fn go_float(v: f64) -> String {
    let mut s = String::new();
    write_go_float(&mut s, v);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(v: f64) -> String {
        let mut s = String::new();
        write_python_repr(&mut s, v);
        s
    }

    #[test]
    fn repr_matches_python_for_fixed_and_scientific_ranges() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e100, "1.2345e+100"),
            (5e-324, "5e-324"),
            (123456.789, "123456.789"),
            (-2.5, "-2.5"),
            (f64::MAX, "1.7976931348623157e+308"),
        ];
        for (v, want) in cases {
            assert_eq!(repr(v), want, "repr({v:?})");
        }
    }

    #[test]
    fn go_float_matches_prometheus_client_0_26() {
        let cases = [
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (1000000.0, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (999999.0, "999999.0"),
            (-1234567.0, "-1234567.0"),
            (1e15, "1e+15"),
            (1e10, "1e+10"),
            (123456789012.5, "1.234567890125e+11"),
            (0.005, "0.005"),
            (5.0, "5.0"),
            (-0.0, "-0.0"),
            (5e-324, "5e-324"),
            (1e16, "1e+16"),
        ];
        for (v, want) in cases {
            assert_eq!(go_float(v), want, "floatToGoString({v:?})");
        }
    }
}
