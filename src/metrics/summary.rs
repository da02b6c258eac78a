use std::sync::Arc;

use super::Timer;
use crate::writer::{Series, add_f64, load_f64};

/// A count and a sum of observations (no quantiles, as in Python's multiprocess mode).
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{Opts, Registry};
/// let registry = Registry::builder().dir(dir.path()).build()?;
/// let size = registry.summary(Opts::new("payload_bytes", "Payload size."))?;
/// size.observe(100.0);
/// size.observe(300.0);
/// assert_eq!((size.count(), size.sum()), (2.0, 400.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Summary {
    series: Arc<Series>,
}

impl Summary {
    pub(crate) fn from_series(series: Arc<Series>) -> Summary {
        Summary { series }
    }

    /// Records one observation: `_count` += 1, `_sum` += `value`.
    #[inline]
    pub fn observe(&self, value: f64) {
        let (count, rest) = self.series.slots();
        add_f64(count, 1.0);
        add_f64(rest[0].get(), value);
    }

    /// This process's `_count`.
    pub fn count(&self) -> f64 {
        load_f64(self.series.first())
    }

    /// This process's `_sum`.
    pub fn sum(&self) -> f64 {
        load_f64(self.series.slots().1[0].get())
    }

    /// Starts a [`Timer`] that observes the seconds until it is dropped or stopped.
    pub fn start_timer(&self) -> Timer {
        Timer::for_summary(self)
    }

    /// Runs `f` and observes how long it took, in seconds (also when it panics).
    pub fn time<R>(&self, f: impl FnOnce() -> R) -> R {
        let _timer = self.start_timer();
        f()
    }
}
