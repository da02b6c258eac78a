//! [`Registry`]: where a process declares its metrics and gets their handles.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hashbrown::HashMap;
use parking_lot::Mutex;

use crate::error::{Error, ErrorKind, Result};
use crate::metrics::opts::{Decl, Kind, prepare_buckets};
use crate::metrics::{Counter, Family, Gauge, GaugeMode, Histogram, Metric, Opts, PythonSample, RawValue, Summary};
use crate::writer::{DropReason, Shared, WorkerId, identity_env};

/// The environment variable naming the metrics directory.
pub const DIR_ENV: &str = "PROMETHEUS_MULTIPROC_DIR";
/// The deprecated lower-case spelling, honoured with a warning as Python honours it.
pub const DIR_ENV_DEPRECATED: &str = "prometheus_multiproc_dir";

/// The write side for one metrics directory: declares metrics and hands out their
/// handles. Cheap to clone; share one per process.
///
/// Files are named `counter_ID.db`, `gauge_MODE_ID.db`, … after this process's
/// [`WorkerId`], and created when the first metric of their kind is declared.
#[derive(Debug, Clone)]
pub struct Registry {
    shared: Arc<Shared>,
    decls: Arc<Mutex<Decls>>,
}

/// The declarations of a registry.
#[derive(Debug, Default)]
struct Decls {
    /// By family name.
    families: HashMap<String, Declared>,
    /// Every name a declared family takes (see [`Decl::taken_names`]) → that family.
    taken: HashMap<String, String>,
}

/// A declared metric and its family (a `Family<T>` behind `Any`), so that declaring
/// the same metric twice hands out the same family, children and cardinality guard.
struct Declared {
    decl: Arc<Decl>,
    family: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Declared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.decl.fmt(f)
    }
}

pub use crate::writer::DROPPED_SERIES_METRIC;

/// Configures a [`Registry`].
#[derive(Debug, Clone, Default)]
pub struct RegistryBuilder {
    dir: Option<PathBuf>,
    worker_id: Option<WorkerId>,
    file_mode: Option<u32>,
    self_metrics: bool,
    no_sigbus_guard: bool,
}

impl RegistryBuilder {
    /// Uses `dir` instead of `$PROMETHEUS_MULTIPROC_DIR`.
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Writes under a stable worker ID instead of the pid (overrides
    /// `$PROMETHEUS_MULTIPROC_WORKER_ID`). A concrete ID applies in the process that
    /// builds the registry only (a fork child writes under its pid, or the ID it sets
    /// with [`set_worker_id`](crate::set_worker_id)); an automatic slot
    /// ([`WorkerId::auto`]) applies in fork children too, each claiming its own slot at
    /// its first write.
    pub fn worker_id(mut self, id: WorkerId) -> Self {
        self.worker_id = Some(id);
        self
    }

    /// Permission bits of the files this process creates (default `0o600`; use `0o640`
    /// when the scraper runs as another user of the same group).
    pub fn file_mode(mut self, mode: u32) -> Self {
        self.file_mode = Some(mode & 0o777);
        self
    }

    /// Also writes the counter `prometheus_multiproc_dropped_series_total{reason}`:
    /// series this process could not create because the disk was full (`no_space`) or
    /// of another I/O failure (`io`), lookups a cardinality guard sent to the overflow
    /// series (`cardinality`, see [`Opts::max_series`]), series lost in a fork child
    /// (`fork`), and refused writes: negative or NaN counter increments
    /// (`negative_increment`) and `inc`/`dec` on `mostrecent` gauges
    /// (`inc_on_mostrecent`). Its entries are created when the registry is built, so
    /// they exist before any disk fills up. Off by default (it adds a family to the
    /// output); [`Registry::dropped_series`] counts the same in the process either way.
    pub fn self_metrics(mut self, on: bool) -> Self {
        self.self_metrics = on;
        self
    }

    /// With `false`, turns the process-wide `SIGBUS` guard off when the registry is
    /// built (see [`disable_sigbus_guard`](crate::disable_sigbus_guard) for what that
    /// means and for the environment variable that does the same). On by default;
    /// `true` never turns on a guard that was turned off.
    pub fn sigbus_guard(mut self, on: bool) -> Self {
        self.no_sigbus_guard = !on;
        self
    }

    /// Checks the directory and the worker ID and builds the registry. No file is
    /// created until a metric is declared (or, with [`RegistryBuilder::self_metrics`],
    /// the counter file for the self-metrics).
    ///
    /// # Errors
    /// * [`ErrorKind::DirNotSet`] when no directory was given and neither
    ///   `PROMETHEUS_MULTIPROC_DIR` nor `prometheus_multiproc_dir` is set;
    /// * [`ErrorKind::NotADirectory`] / [`ErrorKind::DirNotWritable`] naming the path;
    /// * [`ErrorKind::InvalidWorkerId`] when `$PROMETHEUS_MULTIPROC_WORKER_ID` is invalid.
    pub fn build(self) -> Result<Registry> {
        let dir = match self.dir {
            Some(dir) => dir,
            None => dir_from_env()?,
        };
        let worker_id = match self.worker_id {
            Some(id) => Some(id),
            None => identity_env()?,
        };
        if self.no_sigbus_guard {
            crate::disable_sigbus_guard();
        }
        let shared = Shared::new(&dir, self.file_mode.unwrap_or(0o600), worker_id)?;
        let registry = Registry { shared, decls: Arc::default() };
        if self.self_metrics {
            let dropped = registry.counter_family(
                Opts::new(
                    DROPPED_SERIES_METRIC,
                    "Series this writer could not create and writes it refused, by reason (no_space, io, \
                     cardinality, fork, negative_increment, inc_on_mostrecent).",
                ),
                &["reason"],
            )?;
            let counters = DropReason::ALL
                .iter()
                .map(|r| dropped.get(&[r.as_str()]).map(|c| Arc::clone(c.series())))
                .collect::<Result<Vec<_>>>()?;
            registry.shared.set_self_metrics(counters);
        }
        Ok(registry)
    }
}

/// The metrics directory named by the environment, as Python resolves it.
///
/// # Errors
/// [`ErrorKind::DirNotSet`] when neither variable is set (or set to an empty string).
pub fn dir_from_env() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os(DIR_ENV_DEPRECATED).filter(|d| !d.is_empty()) {
        log::warn!("{DIR_ENV_DEPRECATED} is deprecated in favour of {DIR_ENV}");
        return Ok(PathBuf::from(dir));
    }
    Err(Error::dir_not_set())
}

impl Registry {
    /// A builder; with no settings, `build()` reads the directory and worker ID from
    /// the environment.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// `Registry::builder().build()`: directory and worker ID from the environment.
    ///
    /// # Errors
    /// As [`RegistryBuilder::build`].
    pub fn from_env() -> Result<Registry> {
        Registry::builder().build()
    }

    /// A registry that writes nowhere: every declaration is validated as usual and
    /// succeeds, and every handle drops its writes. What [`default_registry`] is when
    /// the environment names no usable directory; also handy in tests of code that
    /// takes a `&Registry`. Its [`dir`](Registry::dir) is empty.
    ///
    /// ```
    /// use prometheus_multiproc::{Opts, Registry};
    /// let registry = Registry::detached();
    /// let jobs = registry.counter(Opts::new("jobs_total", "Jobs."))?;
    /// jobs.inc(); // dropped
    /// assert!(registry.files().is_empty());
    /// assert!(registry.counter(Opts::new("bad name", "Still validated.")).is_err());
    /// # Ok::<(), prometheus_multiproc::Error>(())
    /// ```
    pub fn detached() -> Registry {
        Registry { shared: Shared::detached(), decls: Arc::default() }
    }

    /// The metrics directory.
    pub fn dir(&self) -> &Path {
        self.shared.dir()
    }

    /// The worker ID this process writes under now (the pid unless one was set). With an
    /// automatic slot ([`WorkerId::auto`]) not claimed yet (nothing was written in this
    /// process), the automatic ID itself (`auto:PREFIX`); asking does not claim.
    pub fn worker_id(&self) -> WorkerId {
        self.shared.worker_id()
    }

    /// Moves every series of this registry into this process's own files now, instead
    /// of at each handle's first write.
    ///
    /// After `fork()` (and after [`set_worker_id`](crate::set_worker_id)) a handle
    /// created before still points at the parent's (or the old ID's) slots. The first
    /// write through any handle of the registry then re-resolves all of them: it takes
    /// this process's worker ID (its liveness lock, waiting up to 1 s for a holder that
    /// is exiting, up to 60 s while a compaction folds that ID), opens the files, and
    /// writes every series' entries (one `pwrite` per file) — locks, system calls and
    /// perhaps waits, inside a request. Call this in the worker right after `fork()`
    /// (or right after `set_worker_id`), before serving, to do that work there. With an
    /// automatic slot ([`WorkerId::auto`]) this is where the slot is claimed (else at the
    /// first write). It is idempotent: with nothing to do it takes two uncontended locks
    /// and returns.
    ///
    /// # Errors
    /// The first failure: [`ErrorKind::WorkerIdInUse`] when the worker ID's liveness
    /// lock could not be taken (every write of the registry is then dropped until a
    /// later series creation takes it), or the I/O kind of a series that could not be
    /// re-created (its writes are dropped and counted in [`Registry::lost_series`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use prometheus_multiproc::{Opts, Registry};
    /// let registry = Registry::builder().dir(dir.path()).build()?;
    /// let requests = registry.counter(Opts::new("requests_total", "Requests."))?;
    /// // ... fork() here; in the child, before serving:
    /// registry.after_fork()?;
    /// requests.inc(); // one atomic read-modify-write on the mapping, nothing more
    /// assert_eq!(requests.get(), 1.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn after_fork(&self) -> Result<()> {
        self.shared.after_fork()
    }

    /// The files this process has opened so far, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        self.shared.open_files()
    }

    /// Series whose writes are being dropped because they could not be re-created in
    /// this process's files after `fork()` (for example on a full disk).
    pub fn lost_series(&self) -> u64 {
        self.shared.lost_series.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Series this process could not create and writes it refused, by reason
    /// (`no_space`, `io`, `cardinality`, `fork`, `negative_increment`,
    /// `inc_on_mostrecent`), whether or not self-metrics are on.
    pub fn dropped_series(&self) -> Vec<(&'static str, u64)> {
        self.shared.dropped()
    }

    /// The family of a declaration: the one handed out before for an identical
    /// declaration, a new one for a new name, a [`ErrorKind::Conflict`] otherwise (the
    /// same name declared differently, or a name that another family's samples take,
    /// as Python's registry refuses duplicated time series).
    fn family<T: Metric + Send + Sync + 'static>(&self, opts: &Opts, kind: Kind, labels: &[&str]) -> Result<Family<T>> {
        let decl = Decl::new(opts, kind, labels)?;
        let mut decls = self.decls.lock();
        if let Some(existing) = decls.families.get(&decl.name) {
            return if *existing.decl == decl {
                Ok(existing.family.downcast_ref::<Family<T>>().expect("equal declarations have one type").clone())
            } else {
                Err(Error::new(ErrorKind::Conflict).about(decl.name.clone()).expected(format!(
                    "the earlier declaration: {:?} with labels {:?}, help {:?} and limit {:?}",
                    existing.decl.kind, existing.decl.label_names, existing.decl.help, existing.decl.max_series
                )))
            };
        }
        if let Some((name, other)) = decl.taken_names().find_map(|n| decls.taken.get(&n).map(|o| (n, o.clone()))) {
            return Err(Error::new(ErrorKind::Conflict)
                .about(decl.name.clone())
                .expected(format!("no sample named {name}, which the family {other} already has")));
        }
        let decl = Arc::new(decl);
        let family = Family::<T>::new(Arc::clone(&self.shared), Arc::clone(&decl));
        for name in decl.taken_names() {
            decls.taken.insert(name, decl.name.clone());
        }
        decls.families.insert(decl.name.clone(), Declared { decl, family: Box::new(family.clone()) });
        Ok(family)
    }

    fn single<T: Metric + Send + Sync + 'static>(&self, opts: &Opts, kind: Kind) -> Result<T> {
        self.family::<T>(opts, kind, &[])?.get(&[])
    }

    /// Declares a counter without labels; its entry is written now, with value 0.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidMetricName`], [`ErrorKind::Conflict`] with an earlier
    /// declaration of the same name, or an I/O kind naming the file.
    pub fn counter(&self, opts: Opts) -> Result<Counter> {
        self.single(&opts, Kind::Counter)
    }

    /// Declares a labeled counter family.
    ///
    /// # Errors
    /// As [`Registry::counter`], and [`ErrorKind::InvalidLabelName`].
    pub fn counter_family(&self, opts: Opts, labels: &[&str]) -> Result<Family<Counter>> {
        self.family(&opts, Kind::Counter, labels)
    }

    /// Declares a labeled counter family whose label set is the type `L` (usually a
    /// struct with `#[derive(LabelSet)]`): the label names are `L::NAMES`, checked as
    /// [`Registry::counter_family`] checks them; values are an `L`, checked by the
    /// compiler. The same declaration by [`Registry::counter_family`] with the same
    /// names is the same family. See [`TypedFamily`](crate::TypedFamily) for an example.
    ///
    /// # Errors
    /// As [`Registry::counter_family`].
    pub fn typed_counter_family<L: crate::NamedLabelSet>(&self, opts: Opts) -> Result<crate::TypedFamily<L, Counter>> {
        self.family(&opts, Kind::Counter, L::NAMES).map(crate::TypedFamily::new)
    }

    /// [`Registry::gauge_family`] with the label set `L`, as
    /// [`Registry::typed_counter_family`].
    ///
    /// # Errors
    /// As [`Registry::gauge_family`].
    pub fn typed_gauge_family<L: crate::NamedLabelSet>(
        &self,
        opts: Opts,
        mode: GaugeMode,
    ) -> Result<crate::TypedFamily<L, Gauge>> {
        self.family(&opts, Kind::Gauge(mode), L::NAMES).map(crate::TypedFamily::new)
    }

    /// [`Registry::histogram_family`] with the label set `L`, as
    /// [`Registry::typed_counter_family`].
    ///
    /// # Errors
    /// As [`Registry::histogram_family`].
    pub fn typed_histogram_family<L: crate::NamedLabelSet>(
        &self,
        opts: Opts,
        buckets: &[f64],
    ) -> Result<crate::TypedFamily<L, Histogram>> {
        let bounds = prepare_buckets(&opts.full_name(false)?, buckets)?;
        self.family(&opts, Kind::Histogram(bounds), L::NAMES).map(crate::TypedFamily::new)
    }

    /// [`Registry::summary_family`] with the label set `L`, as
    /// [`Registry::typed_counter_family`].
    ///
    /// # Errors
    /// As [`Registry::summary_family`].
    pub fn typed_summary_family<L: crate::NamedLabelSet>(&self, opts: Opts) -> Result<crate::TypedFamily<L, Summary>> {
        self.family(&opts, Kind::Summary, L::NAMES).map(crate::TypedFamily::new)
    }

    /// Declares a gauge without labels, merged by `mode`.
    ///
    /// # Errors
    /// As [`Registry::counter`].
    pub fn gauge(&self, opts: Opts, mode: GaugeMode) -> Result<Gauge> {
        self.single(&opts, Kind::Gauge(mode))
    }

    /// Declares a labeled gauge family (`pid` is reserved).
    ///
    /// # Errors
    /// As [`Registry::counter_family`].
    pub fn gauge_family(&self, opts: Opts, mode: GaugeMode, labels: &[&str]) -> Result<Family<Gauge>> {
        self.family(&opts, Kind::Gauge(mode), labels)
    }

    /// Declares a histogram without labels. `+Inf` is appended to `buckets` when
    /// missing; see [`DEFAULT_BUCKETS`](crate::DEFAULT_BUCKETS).
    ///
    /// # Errors
    /// As [`Registry::counter`], and [`ErrorKind::InvalidBuckets`].
    pub fn histogram(&self, opts: Opts, buckets: &[f64]) -> Result<Histogram> {
        let bounds = prepare_buckets(&opts.full_name(false)?, buckets)?;
        self.single(&opts, Kind::Histogram(bounds))
    }

    /// Declares a labeled histogram family (`le` is reserved).
    ///
    /// # Errors
    /// As [`Registry::histogram`], and [`ErrorKind::InvalidLabelName`].
    pub fn histogram_family(&self, opts: Opts, buckets: &[f64], labels: &[&str]) -> Result<Family<Histogram>> {
        let bounds = prepare_buckets(&opts.full_name(false)?, buckets)?;
        self.family(&opts, Kind::Histogram(bounds), labels)
    }

    /// Declares a summary (count and sum) without labels.
    ///
    /// # Errors
    /// As [`Registry::counter`].
    pub fn summary(&self, opts: Opts) -> Result<Summary> {
        self.single(&opts, Kind::Summary)
    }

    /// Declares a labeled summary family (`quantile` is reserved).
    ///
    /// # Errors
    /// As [`Registry::counter_family`].
    pub fn summary_family(&self, opts: Opts, labels: &[&str]) -> Result<Family<Summary>> {
        self.family(&opts, Kind::Summary, labels)
    }

    /// The entry of one prometheus_client sample in this process's file of its kind
    /// (see [`RawValue`]), created with value 0 if the file does not hold it yet. No
    /// declaration is recorded and nothing is checked against other metrics: the caller
    /// is a metric layer with its own registry (the Python package's `MultiProcessValue`).
    ///
    /// # Errors
    /// As [`PythonSample::file_kind`], or an I/O kind naming the file.
    pub fn raw_value(&self, sample: &PythonSample<'_>) -> Result<RawValue> {
        let kind = sample.file_kind()?;
        let key = sample.key().into_bytes().into_boxed_slice();
        self.shared.create_series(kind.prefix(), vec![key]).map(RawValue::from_series)
    }
}

/// The process-wide registry, for libraries and `static` declarations ([`Lazy`]).
static DEFAULT: OnceLock<Registry> = OnceLock::new();

/// The process-wide registry: the one given to [`set_default_registry`], or else one
/// built on first use from the environment (`$PROMETHEUS_MULTIPROC_DIR`,
/// `$PROMETHEUS_MULTIPROC_WORKER_ID`), as [`Registry::from_env`] builds it.
///
/// Never fails: when the environment names no usable directory, the error is logged
/// once and the default registry is [`Registry::detached`], whose handles drop their
/// writes (a library's metrics must not break the program that embeds it).
///
/// Across `fork()` it is correct as every registry is: handles created before the fork
/// write, in the child, to the child's own files (under its pid, unless a worker ID is
/// set).
///
/// **Meeting an application's own registry.** One process holds one worker ID once: an
/// application that builds a `Registry` on the same directory and worker ID as the
/// default one cannot have both (the second is refused with
/// [`ErrorKind::WorkerIdInUse`](crate::ErrorKind::WorkerIdInUse)). Build yours, then
/// install it with [`set_default_registry`] before anything uses the default: libraries
/// then declare their metrics on it, and everything lands in the same files.
pub fn default_registry() -> &'static Registry {
    DEFAULT.get_or_init(|| match Registry::from_env() {
        Ok(registry) => registry,
        Err(err) => {
            log::error!("the default metrics registry writes nowhere: {err}");
            Registry::detached()
        }
    })
}

/// Makes `registry` the process-wide [`default_registry`]. Call it once, early, before
/// anything uses the default.
///
/// # Errors
/// Gives `registry` back when the default registry was already set or built.
pub fn set_default_registry(registry: Registry) -> std::result::Result<(), Registry> {
    DEFAULT.set(registry)
}

/// A metric declared on the [`default_registry`] at its first use: a `static` that a
/// library can declare without being handed a registry.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # unsafe { std::env::set_var("PROMETHEUS_MULTIPROC_DIR", dir.path()) };
/// use prometheus_multiproc::{Counter, Family, Lazy, Opts};
///
/// static JOBS: Lazy<Counter> = Lazy::new(|r| r.counter(Opts::new("jobs_total", "Jobs done.")));
/// static ERRORS: Lazy<Family<Counter>> =
///     Lazy::new(|r| r.counter_family(Opts::new("job_errors_total", "Job errors."), &["kind"]));
///
/// JOBS.inc();
/// ERRORS.labels(&["timeout"]).inc();
/// assert_eq!(JOBS.get(), 1.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The declaration runs once, on the first dereference. If it fails on the default
/// registry (a full disk, a conflicting declaration), the error is logged and the
/// metric is declared on a [`Registry::detached`] instead, so it drops its writes; a
/// declaration that no registry accepts (an invalid name) panics at that first use,
/// with the error: a bug in the code, the same in every environment.
pub struct Lazy<M> {
    declare: fn(&Registry) -> Result<M>,
    metric: OnceLock<M>,
}

impl<M> Lazy<M> {
    /// A metric that `declare` declares on the default registry at first use.
    pub const fn new(declare: fn(&Registry) -> Result<M>) -> Lazy<M> {
        Lazy { declare, metric: OnceLock::new() }
    }

    fn get(&self) -> &M {
        self.metric.get_or_init(|| match (self.declare)(default_registry()) {
            Ok(metric) => metric,
            Err(err) => {
                log::error!("a metric could not be declared on the default registry, its writes are dropped: {err}");
                (self.declare)(&Registry::detached())
                    .unwrap_or_else(|err| panic!("invalid metric declaration (no registry accepts it): {err}"))
            }
        })
    }
}

impl<M> std::ops::Deref for Lazy<M> {
    type Target = M;

    fn deref(&self) -> &M {
        self.get()
    }
}

impl<M: std::fmt::Debug> std::fmt::Debug for Lazy<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lazy").field("metric", &self.metric.get()).finish()
    }
}
