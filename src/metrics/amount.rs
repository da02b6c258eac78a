//! Amounts for `inc_by`, `dec_by` and `set`: floats and integers alike.

/// An amount a counter or gauge takes: any `f64`, `f32` or integer, so that counts need
/// no `as f64`.
///
/// The files store every value as an `f64` (as Python's do), which holds every integer
/// up to 2⁵³ = 9,007,199,254,740,992 exactly. A `u64`, `i64` or `usize` beyond that is
/// rounded to the nearest `f64`, and a value that has grown beyond it no longer
/// changes when 1 is added. Counts of requests or bytes stay far below that in practice
/// (2⁵³ bytes is 8 PiB).
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{Opts, Registry};
/// let registry = Registry::builder().dir(dir.path()).build()?;
/// let bytes = registry.counter(Opts::new("bytes_total", "Bytes sent."))?;
/// let body: Vec<u8> = vec![0; 1500];
/// bytes.inc_by(body.len()); // a usize
/// bytes.inc_by(12_u64);
/// bytes.inc_by(0.5);
/// assert_eq!(bytes.get(), 1512.5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Amount(pub f64);

macro_rules! exact {
    ($($t:ty),*) => {$(
        impl From<$t> for Amount {
            #[inline]
            fn from(v: $t) -> Amount {
                Amount(f64::from(v))
            }
        }
    )*};
}
exact!(f64, f32, u8, u16, u32, i8, i16, i32);

macro_rules! rounded_above_2_53 {
    ($($t:ty),*) => {$(
        impl From<$t> for Amount {
            /// Exact up to 2⁵³, rounded to the nearest `f64` above.
            #[inline]
            fn from(v: $t) -> Amount {
                Amount(v as f64)
            }
        }
    )*};
}
rounded_above_2_53!(u64, i64, usize, isize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_convert_exactly_up_to_2_53() {
        assert_eq!(Amount::from(3).0, 3.0);
        assert_eq!(Amount::from(u64::pow(2, 53)).0, 9_007_199_254_740_992.0);
        assert_eq!(Amount::from(u64::pow(2, 53) + 1).0, 9_007_199_254_740_992.0, "rounded");
        assert_eq!(Amount::from(-2_i64).0, -2.0);
    }
}
