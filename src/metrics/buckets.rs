//! Histogram bucket bounds: evenly spaced, or growing by a factor.

use crate::error::{Error, ErrorKind, Result};

fn invalid(what: String, expected: &'static str) -> Error {
    Error::new(ErrorKind::InvalidBuckets).about(what).expected(expected)
}

/// `count` bounds, `start` then each `width` more: `start, start + width, ...`
/// (`+Inf` is added when the histogram is declared).
///
/// ```
/// use prometheus_multiproc::linear_buckets;
/// assert_eq!(linear_buckets(0.5, 0.5, 4)?, vec![0.5, 1.0, 1.5, 2.0]);
/// # Ok::<(), prometheus_multiproc::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::InvalidBuckets`] when `count` is 0, `width` is not positive, or a
/// bound is not finite.
pub fn linear_buckets(start: f64, width: f64, count: usize) -> Result<Vec<f64>> {
    let what = || format!("linear_buckets({start}, {width}, {count})");
    if count == 0 {
        return Err(invalid(what(), "at least one bucket"));
    }
    let sane = width > 0.0 && width.is_finite() && start.is_finite();
    if !sane {
        return Err(invalid(what(), "a finite start and a positive, finite width"));
    }
    let bounds: Vec<f64> = (0..count).map(|i| start + width * i as f64).collect();
    if bounds.iter().all(|b| b.is_finite()) { Ok(bounds) } else { Err(invalid(what(), "finite bounds")) }
}

/// `count` bounds, `start` then each `factor` times the one before:
/// `start, start * factor, ...`.
///
/// ```
/// use prometheus_multiproc::exponential_buckets;
/// assert_eq!(exponential_buckets(0.001, 10.0, 4)?, vec![0.001, 0.01, 0.1, 1.0]);
/// # Ok::<(), prometheus_multiproc::Error>(())
/// ```
///
/// Each bound is `start * factor^i`, rounded to 15 significant digits so that
/// `0.001 * 10^2` is `0.1` and not `0.10000000000000002` (the bound is written into
/// the `le` label).
///
/// # Errors
/// [`ErrorKind::InvalidBuckets`] when `count` is 0, `start` is not positive, `factor`
/// is not above 1, or a bound is not finite.
pub fn exponential_buckets(start: f64, factor: f64, count: usize) -> Result<Vec<f64>> {
    let what = || format!("exponential_buckets({start}, {factor}, {count})");
    if count == 0 {
        return Err(invalid(what(), "at least one bucket"));
    }
    let sane = start > 0.0 && start.is_finite() && factor > 1.0 && factor.is_finite();
    if !sane {
        return Err(invalid(what(), "a positive, finite start and a finite factor above 1"));
    }
    let bounds: Vec<f64> = (0..count).map(|i| round_15(start * factor.powi(i as i32))).collect();
    if bounds.iter().all(|b| b.is_finite()) { Ok(bounds) } else { Err(invalid(what(), "finite bounds")) }
}

/// `count` bounds growing by a constant factor from `min` to `max`, both included.
///
/// ```
/// use prometheus_multiproc::exponential_buckets_range;
/// assert_eq!(exponential_buckets_range(1.0, 1000.0, 4)?, vec![1.0, 10.0, 100.0, 1000.0]);
/// # Ok::<(), prometheus_multiproc::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::InvalidBuckets`] when `count` is below 2, `min` is not positive or
/// `max` is not above `min` (both finite).
pub fn exponential_buckets_range(min: f64, max: f64, count: usize) -> Result<Vec<f64>> {
    let what = || format!("exponential_buckets_range({min}, {max}, {count})");
    if count < 2 {
        return Err(invalid(what(), "at least two buckets (min and max)"));
    }
    let sane = min > 0.0 && max > min && max.is_finite();
    if !sane {
        return Err(invalid(what(), "0 < min < max, both finite"));
    }
    let factor = (max / min).powf(1.0 / (count - 1) as f64);
    let mut bounds = exponential_buckets(min, factor, count)?;
    // The last bound is max itself, not max up to rounding.
    bounds[count - 1] = max;
    Ok(bounds)
}

/// `x` rounded to 15 significant decimal digits (what an f64 holds exactly).
fn round_15(x: f64) -> f64 {
    format!("{x:.14e}").parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_exact_where_decimal_arithmetic_would_be() {
        assert_eq!(exponential_buckets(0.005, 2.0, 5).unwrap(), vec![0.005, 0.01, 0.02, 0.04, 0.08]);
        assert_eq!(exponential_buckets(0.001, 10.0, 6).unwrap(), vec![0.001, 0.01, 0.1, 1.0, 10.0, 100.0]);
        assert_eq!(linear_buckets(0.0, 0.25, 3).unwrap(), vec![0.0, 0.25, 0.5]);
        assert_eq!(exponential_buckets_range(0.01, 10.0, 4).unwrap(), vec![0.01, 0.1, 1.0, 10.0]);
    }

    #[test]
    fn nonsense_is_refused_with_the_call_named() {
        for err in [
            linear_buckets(0.0, 0.0, 3).unwrap_err(),
            linear_buckets(0.0, 1.0, 0).unwrap_err(),
            linear_buckets(f64::NAN, 1.0, 2).unwrap_err(),
            exponential_buckets(0.0, 2.0, 3).unwrap_err(),
            exponential_buckets(1.0, 1.0, 3).unwrap_err(),
            exponential_buckets(1.0, 1e300, 3).unwrap_err(),
            exponential_buckets_range(1.0, 1.0, 3).unwrap_err(),
            exponential_buckets_range(1.0, 10.0, 1).unwrap_err(),
        ] {
            assert_eq!(err.kind(), ErrorKind::InvalidBuckets);
            assert!(err.to_string().contains("_buckets"), "{err}");
        }
    }
}
