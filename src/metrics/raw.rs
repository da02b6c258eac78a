//! [`RawValue`]: one sample's entry, written as prometheus_client's own value class
//! writes it, for writers whose metric layer lives elsewhere (the Python package's
//! drop-in `MultiProcessValue`).

use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::format::key::encode_key;
use crate::format::names::FileKind;
use crate::writer::{Series, add_f64, load_f64, store_f64};

/// What prometheus_client hands its value class for one sample (the arguments of
/// `ValueClass(typ, metric_name, name, labelnames, labelvalues, help_text,
/// multiprocess_mode)`).
#[derive(Debug, Clone, Copy)]
pub struct PythonSample<'a> {
    /// `counter`, `gauge`, `histogram` or `summary`: with `multiprocess_mode`, the file.
    pub typ: &'a str,
    /// The family's name.
    pub metric_name: &'a str,
    /// The sample's name (`requests_total`, `latency_bucket`, ...).
    pub name: &'a str,
    /// Label names, paired with `label_values` as Python's `dict(zip(...))` pairs them:
    /// extra names or values are ignored, a repeated name keeps its last value.
    pub label_names: &'a [&'a str],
    /// Label values.
    pub label_values: &'a [&'a str],
    /// The help text.
    pub help: &'a str,
    /// For gauges, the mode (`all`, `livesum`, `mostrecent`, ...); ignored otherwise.
    pub multiprocess_mode: &'a str,
}

impl PythonSample<'_> {
    /// The file kind: `typ` for counters, histograms and summaries, `gauge_MODE` for
    /// gauges, as prometheus_client names the files.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidGaugeMode`] naming the mode of a gauge whose mode is not one
    /// of the ten; [`ErrorKind::Conflict`] naming `typ` when it is none of the four
    /// types prometheus_client writes to files.
    pub fn file_kind(&self) -> Result<FileKind> {
        match self.typ {
            "counter" => Ok(FileKind::Counter),
            "histogram" => Ok(FileKind::Histogram),
            "summary" => Ok(FileKind::Summary),
            "gauge" => FileKind::from_prefix(&format!("gauge_{}", self.multiprocess_mode)).ok_or_else(|| {
                Error::new(ErrorKind::InvalidGaugeMode)
                    .about(self.multiprocess_mode)
                    .expected("one of the ten gauge modes")
            }),
            other => Err(Error::new(ErrorKind::Conflict)
                .about(other)
                .expected("a type prometheus_client writes to files: counter, gauge, histogram or summary")),
        }
    }

    /// The entry's key, byte for byte as prometheus_client's `mmap_key` builds it:
    /// `json.dumps([metric_name, name, dict(zip(label_names, label_values)), help],
    /// sort_keys=True)`.
    pub fn key(&self) -> String {
        let mut labels: Vec<(&str, &str)> = Vec::with_capacity(self.label_names.len());
        for (&name, &value) in self.label_names.iter().zip(self.label_values) {
            match labels.iter_mut().find(|(n, _)| *n == name) {
                Some(pair) => pair.1 = value,
                None => labels.push((name, value)),
            }
        }
        // Python sorts by code point; UTF-8 byte order is the same order.
        labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
        encode_key(self.metric_name, self.name, &labels, self.help)
    }
}

/// One entry (value and timestamp) in this process's file of its kind, written with
/// no check at all: the metric layer above (prometheus_client's `Counter.inc`,
/// `Gauge.set`, ...) checks amounts and modes, as it does above Python's own value
/// class. Created by [`Registry::raw_value`](crate::Registry::raw_value); follows the
/// process through `fork()` and worker-ID changes like every handle.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{PythonSample, Registry};
/// let registry = Registry::builder().dir(dir.path()).build()?;
/// let sample = PythonSample {
///     typ: "gauge",
///     metric_name: "temperature",
///     name: "temperature",
///     label_names: &["room"],
///     label_values: &["hall"],
///     help: "Degrees.",
///     multiprocess_mode: "mostrecent",
/// };
/// assert_eq!(sample.key(), r#"["temperature", "temperature", {"room": "hall"}, "Degrees."]"#);
/// let value = registry.raw_value(&sample)?;
/// value.set(21.5, 1_700_000_000.0);
/// assert_eq!(value.get(), 21.5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct RawValue {
    series: Arc<Series>,
}

impl RawValue {
    pub(crate) fn from_series(series: Arc<Series>) -> RawValue {
        RawValue { series }
    }

    /// Adds `amount` (any amount, NaN and negative ones included): one compare-and-swap
    /// loop on the shared mapping. The timestamp is left as it is.
    #[inline]
    pub fn inc(&self, amount: f64) {
        add_f64(self.series.first(), amount);
    }

    /// Stores `value`, then `timestamp` (Python passes the time for the `mostrecent`
    /// gauge modes and nothing, stored as 0, otherwise): two stores.
    #[inline]
    pub fn set(&self, value: f64, timestamp: f64) {
        store_f64(self.series.first(), value);
        store_f64(self.series.timestamp(), timestamp);
    }

    /// Whether the next operation is only the atomic one. `false` after `fork()`, after
    /// a worker-ID change, and before an automatic slot is claimed: then the next
    /// operation first moves every series of the registry into this process's files,
    /// which takes locks and may wait for the worker ID (see
    /// [`Registry::after_fork`](crate::Registry::after_fork)); a caller holding a lock
    /// other threads need (Python's GIL) releases it around that operation.
    #[inline]
    pub fn is_current(&self) -> bool {
        self.series.is_current()
    }

    /// This process's current value (what its file holds).
    #[inline]
    pub fn get(&self) -> f64 {
        load_f64(self.series.first())
    }
}
