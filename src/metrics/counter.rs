use std::sync::Arc;

use super::Amount;
use crate::error::{Error, ErrorKind, Result};
use crate::writer::{DropReason, Series, add_f64, load_f64};

/// A monotonically increasing value; every process's counts are summed at scrape time.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{Opts, Registry};
/// let registry = Registry::builder().dir(dir.path()).build()?;
/// let jobs = registry.counter(Opts::new("jobs_total", "Jobs processed."))?;
/// jobs.inc();
/// jobs.inc_by(2.5);
/// jobs.inc_by(-1.0); // refused: counters never go down (counted and logged once)
/// assert_eq!(jobs.get(), 3.5);
/// assert!(registry.dropped_series().contains(&("negative_increment", 1)));
/// assert!(jobs.try_inc_by(-1.0).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Counter {
    series: Arc<Series>,
}

impl Counter {
    pub(crate) fn from_series(series: Arc<Series>) -> Counter {
        Counter { series }
    }

    /// The entries behind this counter.
    pub(crate) fn series(&self) -> &Arc<Series> {
        &self.series
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        add_f64(self.series.first(), 1.0);
    }

    /// Adds `amount`. A negative amount is refused where Python raises `ValueError`; a
    /// NaN amount is refused too, deliberately stricter than Python (which would store
    /// NaN and poison the counter for good). A refusal writes nothing, counts one in
    /// [`Registry::dropped_series`](crate::Registry::dropped_series) (and the
    /// self-metric, if on) under `negative_increment`, and the first one of the process
    /// is logged (a warning naming the metric: one allocation and one log call, once).
    /// Use [`Counter::try_inc_by`] to be told.
    #[inline]
    pub fn inc_by(&self, amount: impl Into<Amount>) {
        let amount = amount.into().0;
        // Checked here rather than through `try_inc_by`, so that a refused amount
        // costs no error value (the hot path never allocates).
        if amount >= 0.0 {
            add_f64(self.series.first(), amount);
        } else {
            self.series.refused(DropReason::NegativeIncrement, amount);
        }
    }

    /// Adds `amount`, or refuses a negative or NaN amount and says so (the refusal is
    /// the caller's to handle: it is neither counted nor logged).
    ///
    /// # Errors
    /// [`ErrorKind::NegativeIncrement`] when `amount` is negative or NaN; nothing is
    /// written then.
    #[inline]
    pub fn try_inc_by(&self, amount: impl Into<Amount>) -> Result<()> {
        let amount = amount.into().0;
        if amount >= 0.0 {
            add_f64(self.series.first(), amount);
            Ok(())
        } else {
            Err(Error::new(ErrorKind::NegativeIncrement).expected("an amount >= 0").found(amount.to_string()))
        }
    }

    /// This process's current value (what its file holds).
    pub fn get(&self) -> f64 {
        load_f64(self.series.first())
    }
}
