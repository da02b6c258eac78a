use std::sync::Arc;

use super::Timer;
use crate::writer::{Series, add_f64, load_f64};

/// Observations counted in buckets, with their sum.
///
/// Stored as Python stores it: `_sum`, then one **non-cumulative** count per bucket
/// (`+Inf` included); the collector accumulates buckets and derives `_count`.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{Opts, Registry};
/// let registry = Registry::builder().dir(dir.path()).build()?;
/// let latency = registry.histogram(Opts::new("latency_seconds", "Latency."), &[0.1, 0.5, 1.0])?;
/// latency.observe(0.3);
/// latency.observe(7.0);
/// assert_eq!(latency.bucket_counts(), vec![0.0, 1.0, 0.0, 1.0]); // 0.1, 0.5, 1.0, +Inf
/// assert_eq!(latency.sum(), 7.3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Histogram {
    series: Arc<Series>,
    bounds: Arc<[f64]>,
}

impl Histogram {
    pub(crate) fn from_series(series: Arc<Series>, bounds: Arc<[f64]>) -> Histogram {
        Histogram { series, bounds }
    }

    /// Records one observation: `_sum` += `value`, and one more in the first bucket whose
    /// bound is >= `value`. A NaN observation poisons `_sum` and counts in no bucket,
    /// as in Python.
    #[inline]
    pub fn observe(&self, value: f64) {
        let (sum, buckets) = self.series.slots();
        add_f64(sum, value);
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        if !value.is_nan()
            && let Some(slot) = buckets.get(bucket)
        {
            add_f64(slot.get(), 1.0);
        }
    }

    /// The upper bounds, `+Inf` last.
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// This process's per-bucket (non-cumulative) counts, in bound order.
    pub fn bucket_counts(&self) -> Vec<f64> {
        self.series.slots().1.iter().map(|s| load_f64(s.get())).collect()
    }

    /// This process's `_sum`.
    pub fn sum(&self) -> f64 {
        load_f64(self.series.first())
    }

    /// This process's `_count`: the observations in all buckets.
    pub fn count(&self) -> f64 {
        self.series.slots().1.iter().map(|s| load_f64(s.get())).sum()
    }

    /// Starts a [`Timer`] that observes the seconds until it is dropped or stopped.
    pub fn start_timer(&self) -> Timer {
        Timer::for_histogram(self)
    }

    /// Runs `f` and observes how long it took, in seconds (also when it panics).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use prometheus_multiproc::{Opts, Registry};
    /// let registry = Registry::builder().dir(dir.path()).build()?;
    /// let query = registry.histogram(Opts::new("query_seconds", "Query time."), &[0.1, 1.0])?;
    /// let rows = query.time(|| 42);
    /// assert_eq!((rows, query.count()), (42, 1.0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn time<R>(&self, f: impl FnOnce() -> R) -> R {
        let _timer = self.start_timer();
        f()
    }
}
