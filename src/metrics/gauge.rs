use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Amount, InProgress};
use crate::error::{Error, ErrorKind, Result};
pub use crate::format::names::GaugeMode;
use crate::writer::{DropReason, Series, add_f64, load_f64, store_f64};

/// A value that goes up and down, merged across processes by its [`GaugeMode`].
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{GaugeMode, Opts, Registry};
/// let registry = Registry::builder().dir(dir.path()).build()?;
/// let in_flight = registry.gauge(Opts::new("in_flight", "Requests in flight."), GaugeMode::LiveSum)?;
/// in_flight.inc();
/// in_flight.inc_by(2.0);
/// in_flight.dec();
/// assert_eq!(in_flight.get(), 2.0);
///
/// let version = registry.gauge(Opts::new("config_version", "Loaded config."), GaugeMode::MostRecent)?;
/// version.set(7.0);
/// assert!(version.try_inc_by(1.0).is_err()); // refused in mostrecent modes
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Gauge {
    series: Arc<Series>,
    mode: GaugeMode,
}

impl Gauge {
    pub(crate) fn from_series(series: Arc<Series>, mode: GaugeMode) -> Gauge {
        Gauge { series, mode }
    }

    /// The gauge's merge mode.
    pub fn mode(&self) -> GaugeMode {
        self.mode
    }

    /// Adds one. Refused in the `mostrecent` modes (Python raises there): nothing is
    /// written, one is counted in
    /// [`Registry::dropped_series`](crate::Registry::dropped_series) (and the
    /// self-metric, if on) under `inc_on_mostrecent`, and the first refusal of the
    /// process is logged. See [`Gauge::try_inc_by`].
    #[inline]
    pub fn inc(&self) {
        self.add_or_count(1.0);
    }

    /// Subtracts one. Refused in the `mostrecent` modes, as [`Gauge::inc`].
    #[inline]
    pub fn dec(&self) {
        self.add_or_count(-1.0);
    }

    /// Adds `amount`. Refused in the `mostrecent` modes, as [`Gauge::inc`].
    #[inline]
    pub fn inc_by(&self, amount: impl Into<Amount>) {
        self.add_or_count(amount.into().0);
    }

    /// Subtracts `amount`. Refused in the `mostrecent` modes, as [`Gauge::inc`].
    #[inline]
    pub fn dec_by(&self, amount: impl Into<Amount>) {
        self.add_or_count(-amount.into().0);
    }

    /// Adds `amount`, or refuses in the `mostrecent` modes and says so (the refusal is
    /// the caller's to handle: it is neither counted nor logged).
    ///
    /// # Errors
    /// [`ErrorKind::ModeForbids`] in the `mostrecent` modes; nothing is written then.
    #[inline]
    pub fn try_inc_by(&self, amount: impl Into<Amount>) -> Result<()> {
        if self.add(amount.into().0) {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::ModeForbids)
                .about(self.mode.as_str())
                .expected("set(), not inc/dec, in the mostrecent modes"))
        }
    }

    /// Subtracts `amount`, or refuses in the `mostrecent` modes and says so (neither
    /// counted nor logged), as [`Gauge::try_inc_by`].
    ///
    /// # Errors
    /// [`ErrorKind::ModeForbids`] in the `mostrecent` modes; nothing is written then.
    #[inline]
    pub fn try_dec_by(&self, amount: impl Into<Amount>) -> Result<()> {
        self.try_inc_by(-amount.into().0)
    }

    /// Adds `amount`, or counts the refusal when the mode forbids it.
    #[inline]
    fn add_or_count(&self, amount: f64) {
        if !self.add(amount) {
            self.series.refused(DropReason::IncOnMostRecent, amount);
        }
    }

    /// Adds `amount` unless the mode forbids it; whether it was added. Never allocates.
    #[inline]
    fn add(&self, amount: f64) -> bool {
        if self.mode.is_most_recent() {
            return false;
        }
        add_f64(self.series.first(), amount);
        true
    }

    /// Sets the value. In the `mostrecent` modes the current time is stored beside it,
    /// and the newest value across processes wins.
    #[inline]
    pub fn set(&self, value: impl Into<Amount>) {
        let value = value.into().0;
        let slot = self.series.first();
        store_f64(slot, value);
        if self.mode.is_most_recent() {
            store_f64(self.series.timestamp(), now());
        }
    }

    /// Sets the value to the current Unix time in seconds.
    pub fn set_to_current_time(&self) {
        self.set(now());
    }

    /// This process's current value.
    pub fn get(&self) -> f64 {
        load_f64(self.series.first())
    }

    /// Adds one now and subtracts it again when the returned guard is dropped: a
    /// count of work in progress (Python's `track_inprogress()`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use prometheus_multiproc::{GaugeMode, Opts, Registry};
    /// let registry = Registry::builder().dir(dir.path()).build()?;
    /// let in_flight = registry.gauge(Opts::new("in_flight", "Requests in flight."), GaugeMode::LiveSum)?;
    /// {
    ///     let _in_flight = in_flight.track_inprogress();
    ///     assert_eq!(in_flight.get(), 1.0);
    /// }
    /// assert_eq!(in_flight.get(), 0.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn track_inprogress(&self) -> InProgress {
        InProgress::new(self)
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
