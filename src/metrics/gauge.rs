use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind, Result};
pub use crate::format::names::GaugeMode;
use crate::writer::{Series, add_f64, load_f64, store_f64};

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

    /// Adds one. Ignored in the `mostrecent` modes (Python raises there); see
    /// [`Gauge::try_inc_by`].
    #[inline]
    pub fn inc(&self) {
        self.add(1.0);
    }

    /// Subtracts one. Ignored in the `mostrecent` modes.
    #[inline]
    pub fn dec(&self) {
        self.add(-1.0);
    }

    /// Adds `amount`. Ignored in the `mostrecent` modes.
    #[inline]
    pub fn inc_by(&self, amount: f64) {
        self.add(amount);
    }

    /// Subtracts `amount`. Ignored in the `mostrecent` modes.
    #[inline]
    pub fn dec_by(&self, amount: f64) {
        self.add(-amount);
    }

    /// Adds `amount`, or refuses in the `mostrecent` modes.
    ///
    /// # Errors
    /// [`ErrorKind::ModeForbids`] in the `mostrecent` modes; nothing is written then.
    #[inline]
    pub fn try_inc_by(&self, amount: f64) -> Result<()> {
        if self.add(amount) {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::ModeForbids)
                .about(self.mode.as_str())
                .expected("set(), not inc/dec, in the mostrecent modes"))
        }
    }

    /// Adds `amount` unless the mode forbids it; whether it was added. Never allocates.
    #[inline]
    fn add(&self, amount: f64) -> bool {
        if self.mode.is_most_recent() {
            return false;
        }
        add_f64(self.series.values()[0].get(), amount);
        true
    }

    /// Sets the value. In the `mostrecent` modes the current time is stored beside it,
    /// and the newest value across processes wins.
    #[inline]
    pub fn set(&self, value: f64) {
        let slot = self.series.values()[0].get();
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
        load_f64(self.series.values()[0].get())
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
