//! Float spelling shared by the file format and the exposition.
//!
//! Python writes a histogram's bucket bound into the key's `le` label with
//! `prometheus_client.utils.floatToGoString`, and its exposition spells every sample
//! value the same way. Both are built on Python's `repr(float)`, which this module
//! reproduces exactly: the shortest digits that round-trip, fixed notation when the
//! decimal exponent is in `-4..16`, scientific otherwise (`1e-05`, `1.5e+16`).

use std::fmt::Write;

/// The shortest decimal digits that round-trip to a finite `v`, as Python's repr
/// finds them: sign, up to 17 significant digits (no trailing zeros), and `decpt`, the
/// position of the decimal point relative to the first digit (`v = 0.d1d2… × 10^decpt`).
struct Shortest {
    negative: bool,
    digits: [u8; 24],
    len: usize,
    decpt: i32,
}

impl Shortest {
    fn of(v: f64) -> Shortest {
        /// A fixed buffer for `{:e}` output, so formatting never allocates.
        struct Buf([u8; 40], usize);
        impl Write for Buf {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                let end = self.1 + s.len();
                self.0.get_mut(self.1..end).ok_or(std::fmt::Error)?.copy_from_slice(s.as_bytes());
                self.1 = end;
                Ok(())
            }
        }
        // `{:e}` yields the shortest round-trip digits, e.g. "-1.2345e-7" or "1e16";
        // at most 24 bytes for any finite f64.
        let mut buf = Buf([0; 40], 0);
        let _ = write!(buf, "{v:e}");
        let text = &buf.0[..buf.1];
        let (negative, text) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        let e = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
        let mut exp: i32 = 0;
        let mut exp_negative = false;
        for &b in text.get(e + 1..).unwrap_or(&[]) {
            match b {
                b'-' => exp_negative = true,
                b'0'..=b'9' => exp = exp * 10 + i32::from(b - b'0'),
                _ => {}
            }
        }
        if exp_negative {
            exp = -exp;
        }
        let mut digits = [0u8; 24];
        let mut len = 0;
        for &b in text[..e].iter().filter(|b| b.is_ascii_digit()) {
            digits[len] = b;
            len += 1;
        }
        Shortest { negative, digits, len, decpt: exp + 1 }
    }

    fn digits(&self) -> &str {
        // Only ASCII digits were stored.
        std::str::from_utf8(&self.digits[..self.len]).unwrap_or("0")
    }
}

fn push_zeros(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n('0', n));
}

/// Appends Python's `repr(v)` for a finite or non-finite `v` to `out`, without
/// allocating.
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
    let s = Shortest::of(v);
    let digits = s.digits();
    let decpt = s.decpt;
    if s.negative {
        out.push('-');
    }
    // CPython's float_repr_style "short": fixed notation for -4 < decpt <= 16.
    if decpt > -4 && decpt <= 16 {
        if decpt <= 0 {
            out.push_str("0.");
            push_zeros(out, decpt.unsigned_abs() as usize);
            out.push_str(digits);
        } else {
            let decpt = decpt as usize;
            if decpt >= digits.len() {
                out.push_str(digits);
                push_zeros(out, decpt - digits.len());
                out.push_str(".0");
            } else {
                out.push_str(&digits[..decpt]);
                out.push('.');
                out.push_str(&digits[decpt..]);
            }
        }
    } else {
        let exp = decpt - 1;
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

/// Appends `prometheus_client.utils.floatToGoString(v)` (0.26.0) to `out`, without
/// allocating.
///
/// `+Inf`, `-Inf` and `NaN` are spelled so; otherwise Python's `repr`, except that
/// a positive value with more than six digits before the dot switches to
/// exponent form (`1000000.0` → `1e+06`, `1234567.0` → `1.234567e+06`).
pub fn write_go_float(out: &mut String, v: f64) {
    if !write_integral_go_float(out, v) {
        write_go_float_general(out, v);
    }
}

/// [`write_go_float`] for the common case of a whole number below 10^15 in magnitude
/// (counts, bucket totals), without the shortest-digits search: such a value is an
/// exact integer whose shortest round-trip digits are its own decimal digits (doubles
/// this small are at most 1 apart, so no shorter decimal rounds to them). Returns
/// `false`, having written nothing, for any other value.
fn write_integral_go_float(out: &mut String, v: f64) -> bool {
    // Infinities fail the first test and NaN the second: below 10^15 in magnitude, a
    // whole number survives the round trip through an i64 (a conversion instruction
    // each way, where `trunc` is a call into libm), and NaN converts to 0.
    if v.abs() >= 1e15 || (v as i64) as f64 != v {
        return false;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0.0" } else { "0.0" });
        return true;
    }
    // Below 10^15, so exact in a u64 and at most 15 digits.
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(v.abs() as u64);
    if v < 0.0 {
        // repr: fixed notation; floatToGoString leaves negative values alone.
        out.push('-');
        out.push_str(digits);
        out.push_str(".0");
    } else if digits.len() <= 6 {
        out.push_str(digits);
        out.push_str(".0");
    } else {
        // More than six digits before the dot: d.ddd (trailing zeros dropped) e+NN.
        let rest = &digits[1..];
        let kept = rest.len() - rest.bytes().rev().take_while(|&d| d == b'0').count();
        out.push_str(&digits[..1]);
        if kept > 0 {
            out.push('.');
            out.push_str(&rest[..kept]);
        }
        let exp = digits.len() - 1;
        out.push_str("e+");
        out.push((b'0' + (exp / 10) as u8) as char);
        out.push((b'0' + (exp % 10) as u8) as char);
    }
    true
}

/// [`write_go_float`] for any value: Python's `repr` digits, then its rewrite.
fn write_go_float_general(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    let s = Shortest::of(v);
    // Python takes the repr, and when it has a dot after more than six characters
    // (fixed notation with decpt in 7..=16; a positive value has no sign), rewrites
    // it as d.ddd (trailing zeros and dot stripped) and e+(dot - 1).
    if v > 0.0 && (7..=16).contains(&s.decpt) {
        let digits = s.digits();
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e+{:02}", s.decpt - 1);
        return;
    }
    write_python_repr(out, v);
}

/// `floatToGoString(v)` as a new string.
pub fn go_float(v: f64) -> String {
    let mut s = String::new();
    write_go_float(&mut s, v);
    s
}

/// Python's `float(text)` for the strings a `le` label can hold: surrounding
/// whitespace ignored, `inf`/`infinity`/`nan` in any case with an optional sign, and
/// `_` allowed between digits.
pub(crate) fn parse_python_float(text: &str) -> Option<f64> {
    let text = text.trim();
    if !text.contains('_') {
        return text.parse().ok();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut cleaned = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            let digit = |j: Option<usize>| j.and_then(|j| chars.get(j)).is_some_and(char::is_ascii_digit);
            if !(digit(i.checked_sub(1)) && digit(Some(i + 1))) {
                return None;
            }
        } else {
            cleaned.push(c);
        }
    }
    cleaned.parse().ok()
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

    proptest::proptest! {
        #[test]
        fn repr_and_go_float_round_trip(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits);
            proptest::prop_assume!(v.is_finite());
            let r = repr(v);
            proptest::prop_assert_eq!(r.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{}", r);
            let g = go_float(v);
            proptest::prop_assert_eq!(g.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{}", g);
            proptest::prop_assert!(r.contains('.') || r.contains('e'), "{}", r);
        }
    }

    fn general(v: f64) -> String {
        let mut s = String::new();
        write_go_float_general(&mut s, v);
        s
    }

    #[test]
    fn whole_numbers_take_the_fast_path_with_the_same_spelling() {
        let mut cases = vec![0.0, -0.0, 1.0, -1.0, 999999.0, 1e6, -1e6, 1234567.0, 1200000.0, 1e14, 999999999999999.0];
        cases.extend((0..15).map(|e| 10f64.powi(e)));
        cases.extend((0..15).map(|e| 7.0 * 10f64.powi(e) + 3.0));
        for v in cases {
            let mut fast = String::new();
            assert!(write_integral_go_float(&mut fast, v), "{v:?}");
            assert_eq!(fast, general(v), "floatToGoString({v:?})");
        }
        for v in [0.5, 1e15, -1e15, 1e16, f64::INFINITY, f64::NAN, 5e-324] {
            assert!(!write_integral_go_float(&mut String::new(), v), "{v:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_and_general_go_float_agree(n in -1_000_000_000_000_000i64..1_000_000_000_000_000, bits in proptest::prelude::any::<u64>()) {
            for v in [n as f64, f64::from_bits(bits)] {
                let mut fast = String::new();
                if write_integral_go_float(&mut fast, v) {
                    proptest::prop_assert_eq!(&fast, &general(v));
                }
                proptest::prop_assert_eq!(go_float(v), general(v));
            }
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
            (1234567890123456.0, "1.234567890123456e+15"),
            (9999999.5, "9.9999995e+06"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e-5, "1e-05"),
            (1.5e300, "1.5e+300"),
        ];
        for (v, want) in cases {
            assert_eq!(go_float(v), want, "floatToGoString({v:?})");
        }
    }
}
