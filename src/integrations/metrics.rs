//! A [`metrics`] 0.24 [`Recorder`] that writes into this crate's files
//! (feature `metrics`), so code instrumented with `metrics::counter!`, `gauge!` and
//! `histogram!` works in multiprocess mode: each worker writes its own files and any
//! process merges them with a [`Collector`](crate::Collector), or Python's
//! `MultiProcessCollector`.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use prometheus_multiproc::integrations::metrics::MultiprocRecorder;
//! use prometheus_multiproc::{Collector, Registry, render};
//!
//! // In each worker (before or after fork: handles follow the fork):
//! let recorder = MultiprocRecorder::new(Registry::builder().dir(dir.path()).build()?);
//! // A program installs it for the whole process with `recorder.clone().install()`;
//! // this example sets it for the current thread only:
//! let _guard = metrics::set_default_local_recorder(&recorder);
//!
//! metrics::describe_counter!("jobs_total", "Jobs done.");
//! metrics::counter!("jobs_total", "queue" => "mail").increment(2);
//!
//! // In the process that serves /metrics:
//! let scrape = Collector::new(dir.path())?.collect()?;
//! let body = String::from_utf8(render(&scrape, None, None).body)?;
//! assert_eq!(body, "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total{queue=\"mail\"} 2.0\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Mapping
//!
//! | `metrics` | This crate |
//! |---|---|
//! | counter | a [`Counter`] family; `increment(n)` adds `n`, `absolute(n)` raises the counter to at least `n` (never lowers it, as `metrics` defines it) |
//! | gauge | a [`Gauge`] family merged by the gauge mode configured for its name, by default [`DEFAULT_GAUGE_MODE`] ([`GaugeMode::LiveSum`]) |
//! | histogram | a [`Histogram`] family with the buckets configured for its name, by default [`DEFAULT_BUCKETS`] |
//!
//! **Why `livesum` for gauges.** A `metrics` gauge in a one-process program is *the*
//! value; in a pre-fork server each worker holds its share (requests in flight, open
//! connections, queue lengths), and the sum over the workers that are alive is what the
//! one-process program would have shown. A dead worker's share drops out instead of
//! lingering. Use [`MultiprocRecorderBuilder::gauge_mode`] or
//! [`MultiprocRecorderBuilder::gauge_mode_for`] for values that must not be summed
//! (`max` for a high-water mark, `liveall` for one series per worker, `mostrecent` for
//! a value set from anywhere; `increment`/`decrement` are ignored in the `mostrecent`
//! modes).
//!
//! # Names and labels
//!
//! A family is declared the first time a name is registered, with the label *names*
//! of that call (their order does not matter: they are sorted). Then:
//!
//! * **Sanitised**: a character not allowed in a Prometheus name becomes `_`
//!   (`http.requests` → `http_requests`; `:` is kept in metric names but not in label
//!   names), and a name starting with a digit gets a leading `_`. Names that sanitise
//!   alike are one metric. Label values are kept as they are.
//! * **Counter names** lose a trailing `_total` for the family name; the sample is
//!   `NAME_total` either way, as in Python.
//! * **Refused** (a no-op handle is returned, the refusal is logged once per name at
//!   `warn` and counted in [`MultiprocRecorder::dropped_registrations`]): an empty name;
//!   label names starting with `__` or reserved by the type (`le` for histograms, `pid`
//!   for gauges); two labels with the same name; the same name registered later with
//!   another set of label names, or as another type (a counter and a gauge of one
//!   name). A registration that fails on I/O (a full disk) also gets a no-op handle,
//!   but is retried on the next registration of that key.
//!
//! # Help text and units
//!
//! `describe_counter!` and friends set the help text of a name **only if called before
//! the name's first registration**: the help is part of every key written to the files
//! (as in Python), so it is fixed when the family is declared. A later description is
//! ignored. Units are ignored: put the unit in the name (`request_duration_seconds`).
//!
//! # Costs and errors
//!
//! `Recorder` is infallible, so nothing here returns an error or panics a worker. The
//! macros call `register_*` on every use: that is one read-locked hash lookup of the
//! key; the handle it returns holds this crate's handle, so `increment`, `set` and
//! `record` are one atomic operation on the shared mapping. Keep the handle
//! (`let c = counter!(…)`) on hot paths to skip the lookup. Every distinct key is
//! remembered for the life of the recorder, as every series is in the files.
//!
//! Handles created before `fork()` write to the child's own files, as this crate's
//! handles do. As with [`Family::get`], fork from a thread that is not registering
//! metrics at that moment (the lookup's lock would stay held in the child).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ::metrics::{
    CounterFn, GaugeFn, HistogramFn, Key, KeyName, Metadata, Recorder, SetRecorderError, SharedString, Unit,
};
use hashbrown::{HashMap, HashSet};
use parking_lot::{Mutex, RwLock};

use crate::error::{ErrorKind, Result};
use crate::metrics::opts::prepare_buckets;
use crate::{Counter, DEFAULT_BUCKETS, Family, Gauge, GaugeMode, Histogram, Opts, Registry};

/// The gauge mode of a gauge whose name has no mode of its own: the sum over live
/// processes (see the [module docs](self) for why).
pub const DEFAULT_GAUGE_MODE: GaugeMode = GaugeMode::LiveSum;

/// A `metrics::Recorder` writing into a [`Registry`]'s files. Cheap to clone (clones
/// share everything); see the [module docs](self) for the mapping and the rules.
#[derive(Clone)]
pub struct MultiprocRecorder {
    inner: Arc<Inner>,
}

/// Configures a [`MultiprocRecorder`].
#[derive(Debug, Clone)]
pub struct MultiprocRecorderBuilder {
    registry: Registry,
    gauge_mode: GaugeMode,
    gauge_modes: HashMap<String, GaugeMode>,
    buckets: Vec<f64>,
    buckets_for: HashMap<String, Vec<f64>>,
}

impl MultiprocRecorderBuilder {
    /// The mode of every gauge without a mode of its own (default
    /// [`DEFAULT_GAUGE_MODE`]).
    pub fn gauge_mode(mut self, mode: GaugeMode) -> Self {
        self.gauge_mode = mode;
        self
    }

    /// The mode of the gauge named `name` (as given to `gauge!`, before sanitising).
    pub fn gauge_mode_for(mut self, name: impl Into<String>, mode: GaugeMode) -> Self {
        self.gauge_modes.insert(name.into(), mode);
        self
    }

    /// The buckets of every histogram without buckets of its own (default
    /// [`DEFAULT_BUCKETS`]); `+Inf` is added when missing.
    pub fn buckets(mut self, buckets: &[f64]) -> Self {
        self.buckets = buckets.to_vec();
        self
    }

    /// The buckets of the histogram named `name` (as given to `histogram!`, before
    /// sanitising).
    pub fn buckets_for(mut self, name: impl Into<String>, buckets: &[f64]) -> Self {
        self.buckets_for.insert(name.into(), buckets.to_vec());
        self
    }

    /// Checks the buckets and builds the recorder.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidBuckets`] when a bucket list is not strictly increasing,
    /// holds NaN or has no bound besides `+Inf`.
    pub fn build(self) -> Result<MultiprocRecorder> {
        let buckets = prepare_buckets("default buckets", &self.buckets)?;
        let mut buckets_for = HashMap::with_capacity(self.buckets_for.len());
        for (name, bounds) in self.buckets_for {
            let bounds = prepare_buckets(&name, &bounds)?;
            buckets_for.insert(name, bounds);
        }
        Ok(MultiprocRecorder {
            inner: Arc::new(Inner {
                registry: self.registry,
                gauge_mode: self.gauge_mode,
                gauge_modes: self.gauge_modes,
                buckets,
                buckets_for,
                help: RwLock::default(),
                counters: Cache::default(),
                gauges: Cache::default(),
                histograms: Cache::default(),
                counter_families: Mutex::default(),
                gauge_families: Mutex::default(),
                histogram_families: Mutex::default(),
                absolute: Arc::default(),
                dropped: AtomicU64::new(0),
                warned: Mutex::default(),
            }),
        })
    }
}

impl MultiprocRecorder {
    /// A recorder with the defaults: gauges in [`DEFAULT_GAUGE_MODE`], histograms with
    /// [`DEFAULT_BUCKETS`].
    pub fn new(registry: Registry) -> MultiprocRecorder {
        MultiprocRecorder::builder(registry).build().expect("the default buckets are valid")
    }

    /// A builder to choose gauge modes and buckets.
    pub fn builder(registry: Registry) -> MultiprocRecorderBuilder {
        MultiprocRecorderBuilder {
            registry,
            gauge_mode: DEFAULT_GAUGE_MODE,
            gauge_modes: HashMap::new(),
            buckets: DEFAULT_BUCKETS.to_vec(),
            buckets_for: HashMap::new(),
        }
    }

    /// Installs this recorder as the global `metrics` recorder
    /// ([`metrics::set_global_recorder`]). Keep a clone
    /// to read [`dropped_registrations`](Self::dropped_registrations) later.
    ///
    /// # Errors
    /// When a global recorder is already installed; the error gives this one back.
    pub fn install(self) -> std::result::Result<(), SetRecorderError<MultiprocRecorder>> {
        ::metrics::set_global_recorder(self)
    }

    /// The registry this recorder declares its families in.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// How many registrations were answered with a no-op handle (refused names, label
    /// sets or types, or I/O failures); each such call counts once.
    pub fn dropped_registrations(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for MultiprocRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiprocRecorder")
            .field("dir", &self.inner.registry.dir())
            .field("gauge_mode", &self.inner.gauge_mode)
            .field("counters", &self.inner.counters.read().len())
            .field("gauges", &self.inner.gauges.read().len())
            .field("histograms", &self.inner.histograms.read().len())
            .field("dropped_registrations", &self.dropped_registrations())
            .finish()
    }
}

/// The metric types `metrics` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Handles by `metrics` key; `None` for a key refused for good.
type Cache<H> = RwLock<HashMap<Key, Option<H>>>;

/// Families by (sanitised name, sorted sanitised label names).
type Families<T> = Mutex<HashMap<(String, Vec<String>), Family<T>>>;

struct Inner {
    registry: Registry,
    gauge_mode: GaugeMode,
    gauge_modes: HashMap<String, GaugeMode>,
    buckets: Vec<f64>,
    buckets_for: HashMap<String, Vec<f64>>,
    /// Descriptions by (type, name as given).
    help: RwLock<HashMap<(Kind, String), String>>,
    counters: Cache<::metrics::Counter>,
    gauges: Cache<::metrics::Gauge>,
    histograms: Cache<::metrics::Histogram>,
    counter_families: Families<Counter>,
    gauge_families: Families<Gauge>,
    histogram_families: Families<Histogram>,
    /// Serialises `absolute` (read, then add the difference).
    absolute: Arc<Mutex<()>>,
    dropped: AtomicU64,
    /// Names whose refusal was logged at `warn` already.
    warned: Mutex<HashSet<(Kind, String)>>,
}

/// A key taken apart: sanitised names, label names sorted with their values.
struct Parsed {
    name: String,
    label_names: Vec<String>,
    values: Vec<String>,
}

impl Parsed {
    fn new(key: &Key) -> Parsed {
        let mut labels: Vec<(String, String)> =
            key.labels().map(|l| (sanitize(l.key(), false), l.value().to_owned())).collect();
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let (label_names, values) = labels.into_iter().unzip();
        Parsed { name: sanitize(key.name(), true), label_names, values }
    }

    fn values(&self) -> Vec<&str> {
        self.values.iter().map(String::as_str).collect()
    }
}

/// Replaces what a Prometheus name may not hold with `_`, and puts `_` before a
/// leading digit. Label names (`colon == false`) may not hold `:`.
fn sanitize(name: &str, colon: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for (i, c) in name.chars().enumerate() {
        if i == 0 && c.is_ascii_digit() {
            out.push('_');
        }
        let allowed = c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
        out.push(if allowed { c } else { '_' });
    }
    out
}

impl Inner {
    fn describe(&self, kind: Kind, key: KeyName, description: SharedString) {
        self.help.write().insert((kind, key.as_str().to_owned()), description.into_owned());
    }

    fn help(&self, kind: Kind, name: &str) -> String {
        self.help.read().get(&(kind, name.to_owned())).cloned().unwrap_or_default()
    }

    /// The handle for `key` from `cache`, created by `create` on first use; a no-op
    /// handle when refused.
    fn register<H: Clone>(
        &self,
        kind: Kind,
        key: &Key,
        cache: &Cache<H>,
        noop: fn() -> H,
        create: impl FnOnce(&Parsed) -> Result<H>,
    ) -> H {
        if let Some(entry) = cache.read().get(key) {
            return match entry {
                Some(handle) => handle.clone(),
                None => self.dropped(noop),
            };
        }
        match create(&Parsed::new(key)) {
            Ok(handle) => cache.write().entry(key.clone()).or_insert(Some(handle)).clone().unwrap_or_else(noop),
            Err(e) => {
                let permanent = matches!(
                    e.kind(),
                    ErrorKind::InvalidMetricName
                        | ErrorKind::InvalidLabelName
                        | ErrorKind::LabelCount
                        | ErrorKind::Conflict
                        | ErrorKind::InvalidBuckets
                );
                let first = self.warned.lock().insert((kind, key.name().to_owned()));
                let what = if permanent { "refused" } else { "could not be created" };
                if first {
                    log::warn!("metrics {kind:?} {key} {what}, its updates are dropped: {e}");
                } else {
                    log::debug!("metrics {kind:?} {key} {what}, its updates are dropped: {e}");
                }
                if permanent {
                    cache.write().insert(key.clone(), None);
                }
                self.dropped(noop)
            }
        }
    }

    fn dropped<H>(&self, noop: fn() -> H) -> H {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        noop()
    }

    /// The family for `parsed`, declared with `declare` on first use.
    fn family<T: crate::Metric>(
        families: &Families<T>,
        parsed: &Parsed,
        declare: impl FnOnce(&[&str]) -> Result<Family<T>>,
    ) -> Result<Family<T>> {
        let mut families = families.lock();
        let id = (parsed.name.clone(), parsed.label_names.clone());
        if let Some(family) = families.get(&id) {
            return Ok(family.clone());
        }
        let labels: Vec<&str> = parsed.label_names.iter().map(String::as_str).collect();
        let family = declare(&labels)?;
        families.insert(id, family.clone());
        Ok(family)
    }

    fn counter(&self, key: &Key) -> ::metrics::Counter {
        self.register(Kind::Counter, key, &self.counters, ::metrics::Counter::noop, |p| {
            let opts = Opts::new(p.name.as_str(), self.help(Kind::Counter, key.name()));
            let family = Self::family(&self.counter_families, p, |labels| self.registry.counter_family(opts, labels))?;
            let counter = family.get(&p.values())?;
            Ok(::metrics::Counter::from_arc(Arc::new(CounterHandle { counter, absolute: Arc::clone(&self.absolute) })))
        })
    }

    fn gauge(&self, key: &Key) -> ::metrics::Gauge {
        self.register(Kind::Gauge, key, &self.gauges, ::metrics::Gauge::noop, |p| {
            let opts = Opts::new(p.name.as_str(), self.help(Kind::Gauge, key.name()));
            let mode = self.gauge_modes.get(key.name()).copied().unwrap_or(self.gauge_mode);
            let family =
                Self::family(&self.gauge_families, p, |labels| self.registry.gauge_family(opts, mode, labels))?;
            Ok(::metrics::Gauge::from_arc(Arc::new(GaugeHandle(family.get(&p.values())?))))
        })
    }

    fn histogram(&self, key: &Key) -> ::metrics::Histogram {
        self.register(Kind::Histogram, key, &self.histograms, ::metrics::Histogram::noop, |p| {
            let opts = Opts::new(p.name.as_str(), self.help(Kind::Histogram, key.name()));
            let buckets = self.buckets_for.get(key.name()).unwrap_or(&self.buckets);
            let family = Self::family(&self.histogram_families, p, |labels| {
                self.registry.histogram_family(opts, buckets, labels)
            })?;
            Ok(::metrics::Histogram::from_arc(Arc::new(HistogramHandle(family.get(&p.values())?))))
        })
    }
}

impl Recorder for MultiprocRecorder {
    /// Sets the help text, if called before the name's first registration.
    fn describe_counter(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.inner.describe(Kind::Counter, key, description);
    }

    /// Sets the help text, if called before the name's first registration.
    fn describe_gauge(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.inner.describe(Kind::Gauge, key, description);
    }

    /// Sets the help text, if called before the name's first registration.
    fn describe_histogram(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.inner.describe(Kind::Histogram, key, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> ::metrics::Counter {
        self.inner.counter(key)
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> ::metrics::Gauge {
        self.inner.gauge(key)
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> ::metrics::Histogram {
        self.inner.histogram(key)
    }
}

struct CounterHandle {
    counter: Counter,
    absolute: Arc<Mutex<()>>,
}

impl CounterFn for CounterHandle {
    fn increment(&self, value: u64) {
        self.counter.inc_by(value as f64);
    }

    fn absolute(&self, value: u64) {
        let _serialised = self.absolute.lock();
        let (target, current) = (value as f64, self.counter.get());
        if target > current {
            self.counter.inc_by(target - current);
        }
    }
}

struct GaugeHandle(Gauge);

impl GaugeFn for GaugeHandle {
    fn increment(&self, value: f64) {
        self.0.inc_by(value);
    }

    fn decrement(&self, value: f64) {
        self.0.dec_by(value);
    }

    fn set(&self, value: f64) {
        self.0.set(value);
    }
}

struct HistogramHandle(Histogram);

impl HistogramFn for HistogramHandle {
    fn record(&self, value: f64) {
        self.0.observe(value);
    }
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn sanitize_replaces_what_prometheus_names_may_not_hold() {
        assert_eq!(sanitize("http.requests-total", true), "http_requests_total");
        assert_eq!(sanitize("ns:name", true), "ns:name");
        assert_eq!(sanitize("ns:name", false), "ns_name");
        assert_eq!(sanitize("9lives", true), "_9lives");
        assert_eq!(sanitize("é", true), "_");
        assert_eq!(sanitize("", true), "");
    }
}
