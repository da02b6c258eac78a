// `Sealed::create` names crate-private types on purpose: it is the sealed trait's
// hook, callable only inside the crate.
#![allow(private_interfaces)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::error::Result;
use crate::metrics::children::Children;
use crate::metrics::labels::Visitor;
use crate::metrics::opts::{Decl, Kind, OVERFLOW_LABEL_VALUE};
use crate::metrics::{Counter, Gauge, Histogram, LabelSet, Summary};
use crate::writer::{DropReason, Series, Shared};

/// A metric type that a [`Family`] can hand out. Sealed: implemented by [`Counter`],
/// [`Gauge`], [`Histogram`] and [`Summary`].
pub trait Metric: Clone + sealed::Sealed {}

mod sealed {
    use super::*;

    pub trait Sealed: Sized {
        fn create(shared: &Arc<Shared>, decl: &Decl, values: &[&str]) -> Result<Self>;
        /// A handle of the declaration's shape that drops every write.
        fn detached(decl: &Decl) -> Self;
    }
}

impl<T: sealed::Sealed + Clone> Metric for T {}

impl sealed::Sealed for Counter {
    fn create(shared: &Arc<Shared>, decl: &Decl, values: &[&str]) -> Result<Self> {
        Ok(Counter::from_series(shared.create_series(decl.kind.file_prefix(), decl.keys(values))?))
    }

    fn detached(_: &Decl) -> Self {
        Counter::from_series(Series::detached(1))
    }
}

impl sealed::Sealed for Gauge {
    fn create(shared: &Arc<Shared>, decl: &Decl, values: &[&str]) -> Result<Self> {
        let Kind::Gauge(mode) = decl.kind else { unreachable!("gauge family with a non-gauge declaration") };
        Ok(Gauge::from_series(shared.create_series(decl.kind.file_prefix(), decl.keys(values))?, mode))
    }

    fn detached(decl: &Decl) -> Self {
        let Kind::Gauge(mode) = decl.kind else { unreachable!("gauge family with a non-gauge declaration") };
        Gauge::from_series(Series::detached(1), mode)
    }
}

impl sealed::Sealed for Summary {
    fn create(shared: &Arc<Shared>, decl: &Decl, values: &[&str]) -> Result<Self> {
        Ok(Summary::from_series(shared.create_series(decl.kind.file_prefix(), decl.keys(values))?))
    }

    fn detached(_: &Decl) -> Self {
        Summary::from_series(Series::detached(2))
    }
}

impl sealed::Sealed for Histogram {
    fn create(shared: &Arc<Shared>, decl: &Decl, values: &[&str]) -> Result<Self> {
        let Kind::Histogram(bounds) = &decl.kind else {
            unreachable!("histogram family with a non-histogram declaration")
        };
        let series = shared.create_series(decl.kind.file_prefix(), decl.keys(values))?;
        Ok(Histogram::from_series(series, bounds.as_slice().into()))
    }

    fn detached(decl: &Decl) -> Self {
        let Kind::Histogram(bounds) = &decl.kind else {
            unreachable!("histogram family with a non-histogram declaration")
        };
        Histogram::from_series(Series::detached(1 + bounds.len()), bounds.as_slice().into())
    }
}

/// [`Family::labels`] as a [`Visitor`] of a label set's values.
struct LabelsOf<'a, T>(&'a Family<T>);

impl<'a, T: Metric> Visitor for LabelsOf<'a, T> {
    type Output = &'a T;

    #[inline]
    fn visit<S: AsRef<str>>(self, values: &[S]) -> &'a T {
        self.0.labels_of(values)
    }
}

/// A labeled metric: one child handle per combination of label values, created on
/// first use and cached.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{Opts, Registry};
/// let registry = Registry::builder().dir(dir.path()).build()?;
/// let requests = registry.counter_family(Opts::new("requests_total", "HTTP requests."), &["method", "status"])?;
/// requests.get(&["GET", "200"])?.inc();
/// let errors = requests.get(&["POST", "500"])?; // keep the handle on hot paths
/// errors.inc_by(2.0);
/// assert_eq!(requests.get(&["POST", "500"])?.get(), 2.0);
/// assert!(requests.get(&["GET"]).is_err()); // wrong number of values
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Family<T> {
    inner: Arc<FamilyInner<T>>,
}

/// The children live in a table whose lookups write nothing shared (see
/// [`Children`]); adding one is serialised by `creating`, which also keeps the
/// cardinality count exact.
#[derive(Debug)]
struct FamilyInner<T> {
    shared: Arc<Shared>,
    decl: Arc<Decl>,
    children: Children<T>,
    creating: Mutex<()>,
    /// The overflow child, set (under `creating`) the first time the cardinality guard
    /// redirects a label set. A family never loses children, so once this is set every
    /// label set not in `children` is past the limit: [`Family::lookup`] hands this out
    /// without the lock and without allocating.
    overflow: OnceLock<T>,
    /// The handle [`Family::labels`] hands out when a child cannot be had, made once.
    detached: OnceLock<T>,
    /// Whether [`Family::labels`] has logged a failure of this family yet.
    failure_logged: AtomicBool,
}

impl<T: Metric> Family<T> {
    pub(crate) fn new(shared: Arc<Shared>, decl: Arc<Decl>) -> Family<T> {
        Family {
            inner: Arc::new(FamilyInner {
                shared,
                decl,
                children: Children::new(),
                creating: Mutex::new(()),
                overflow: OnceLock::new(),
                detached: OnceLock::new(),
                failure_logged: AtomicBool::new(false),
            }),
        }
    }

    /// The child for `values` (given in the order of the family's label names),
    /// created on first use. Any string is a valid value. [`Family::labels`] is the
    /// infallible form, and takes values of any `AsRef<str>` type.
    ///
    /// # Errors
    /// [`ErrorKind::LabelCount`](crate::ErrorKind::LabelCount) when the number of values
    /// differs from the number of label names; [`ErrorKind::NoSpace`](crate::ErrorKind::NoSpace)
    /// or another I/O kind when a new child cannot be written to its file.
    #[inline]
    pub fn get(&self, values: &[&str]) -> Result<T> {
        match self.lookup(values) {
            Some(child) => Ok(child.clone()),
            None => self.create(values).cloned(),
        }
    }

    /// The child for `values` if it exists, or the overflow child once the family is
    /// past its limit (the redirection counted as on the slow path): no lock, no
    /// allocation. `None` otherwise (and for a wrong number of values, which the slow
    /// path reports).
    ///
    /// `overflow` is loaded before the table: it is set (release) after every child but
    /// the overflow one was added, so a lookup that saw it set and then misses is a
    /// label set that never had a child of its own, not one being added meanwhile.
    #[inline]
    fn lookup<S: AsRef<str>>(&self, values: &[S]) -> Option<&T> {
        let overflow = self.inner.overflow.get();
        if let Some(child) = self.inner.children.get(values) {
            return Some(child);
        }
        let child = overflow?;
        if values.len() != self.inner.decl.label_names.len() {
            return None;
        }
        self.inner.shared.count_dropped(DropReason::Cardinality);
        Some(child)
    }

    /// The slow path of [`Family::get`]: creates the child for `values` unless another
    /// thread has just done so, or redirects `values` to the overflow child (creating it
    /// and caching it for [`Family::lookup`]) when the family is at its limit.
    #[cold]
    fn create<S: AsRef<str>>(&self, values: &[S]) -> Result<&T> {
        let values: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
        let values = values.as_slice();
        self.inner.decl.check_values(values)?;
        let _creating = self.inner.creating.lock();
        let children = &self.inner.children;
        if let Some(child) = children.get(values) {
            return Ok(child);
        }
        let Some(limit) = self.inner.decl.max_series else {
            return self.insert(values);
        };
        let overflow = vec![OVERFLOW_LABEL_VALUE; values.len()];
        let existing = children.get(&overflow);
        if children.len() - usize::from(existing.is_some()) < limit {
            return self.insert(values);
        }
        self.inner.shared.count_dropped(DropReason::Cardinality);
        let child = match existing {
            Some(child) => child,
            None => self.insert(&overflow)?,
        };
        // Set under `creating`, by the first redirection: cannot fail.
        let _ = self.inner.overflow.set(child.clone());
        Ok(child)
    }

    /// Creates and adds the child for `values`; the caller holds `creating`.
    fn insert(&self, values: &[&str]) -> Result<&T> {
        let child = T::create(&self.inner.shared, &self.inner.decl, values)
            .inspect_err(|e| self.inner.shared.count_dropped(DropReason::of(e)))?;
        Ok(self.inner.children.insert(values, child))
    }

    /// Runs `f` on the child for `values` (created on first use) without cloning its
    /// handle: the cheapest way to do a one-off `inc` or `observe` on a labeled metric,
    /// `family.with(&["GET", "200"], Counter::inc)?`. Keep a handle from
    /// [`Family::get`] instead when the same child is used again and again.
    ///
    /// `f` may do anything, including creating children of the same family.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use prometheus_multiproc::{Counter, Opts, Registry};
    /// let registry = Registry::builder().dir(dir.path()).build()?;
    /// let requests = registry.counter_family(Opts::new("requests_total", "Requests."), &["code"])?;
    /// requests.with(&["200"], Counter::inc)?;
    /// requests.with(&["200"], |c| c.inc_by(2.0))?;
    /// assert_eq!(requests.with(&["200"], Counter::get)?, 3.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Family::get`].
    #[inline]
    pub fn with<R>(&self, values: &[&str], f: impl FnOnce(&T) -> R) -> Result<R> {
        match self.lookup(values) {
            Some(child) => Ok(f(child)),
            None => self.create(values).map(f),
        }
    }

    /// The child for `labels`, always: the infallible form of [`Family::get`], for
    /// request paths that must not handle a metrics error. `labels` is any
    /// [`LabelSet`]: an array, slice or `Vec` of any `AsRef<str>` (`&str`, `String`,
    /// `Cow<str>`, ...), or a tuple mixing strings, integers, bools and enums that name
    /// themselves ([`LabelValue`](crate::LabelValue)). A lookup of an existing child
    /// takes no lock, allocates nothing (integers are named from a table or formatted
    /// on the stack) and writes nothing shared.
    ///
    /// It lends the family's own child, as [`Family::with`] hands it to its closure,
    /// rather than a clone: cloning a handle is an atomic increment and decrement of its
    /// reference count, a write to a cache line that every thread using the series
    /// shares, and was about 1.5 ns of a 14 ns lookup. Call `.clone()` on it (or use
    /// [`Family::get`]) to keep a handle beyond the borrow of the family.
    ///
    /// When no child can be had (a wrong number of values, a full disk, another I/O
    /// failure), it returns a handle that drops its writes, counts the failure in
    /// [`Registry::dropped_series`](crate::Registry::dropped_series) and the
    /// self-metric (`label_count`, `no_space`, `io`) and logs the family's first
    /// failure. A failed creation is tried again at the next lookup of the same values
    /// (the disk may have room again by then). The dropping handle's own `get` reads a
    /// shared discard slot, not a count: read values from a scrape. Past the family's
    /// [`max_series`](crate::Opts::max_series), new label sets get the overflow child,
    /// as with [`Family::get`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use prometheus_multiproc::{Opts, Registry};
    /// let registry = Registry::builder().dir(dir.path()).build()?;
    /// let requests = registry.counter_family(Opts::new("requests_total", "Requests."), &["route", "status"])?;
    /// let status = 200.to_string();
    /// requests.labels(&["/users", status.as_str()]).inc(); // &str values
    /// requests.labels(&[String::from("/users"), status]).inc(); // String values
    /// requests.labels(&("/users", 200u16)).inc(); // a tuple: the integer is formatted on the stack
    /// requests.labels(&["/users"]).inc(); // a wrong count: dropped and counted, no panic
    /// assert_eq!(requests.labels(&["/users", "200"]).get(), 3.0);
    /// assert!(registry.dropped_series().contains(&("label_count", 1)));
    /// let kept = requests.labels(&["/users", "200"]).clone(); // an owned handle
    /// kept.inc();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn labels<L: LabelSet + ?Sized>(&self, labels: &L) -> &T {
        labels.visit_values(LabelsOf(self))
    }

    /// [`Family::labels`] on the label set's values.
    #[inline]
    fn labels_of<S: AsRef<str>>(&self, values: &[S]) -> &T {
        match self.lookup(values) {
            Some(child) => child,
            None => self.create(values).unwrap_or_else(|err| self.failed(&err)),
        }
    }

    /// What [`Family::labels`] does when no child can be had.
    #[cold]
    fn failed(&self, err: &crate::Error) -> &T {
        if err.kind() == crate::ErrorKind::LabelCount {
            // Creation errors were counted by `insert`; this one is the caller's.
            self.inner.shared.count_dropped(DropReason::LabelCount);
        }
        if !self.inner.failure_logged.swap(true, Ordering::Relaxed) {
            log::warn!(
                "metric {}: {err}; this lookup's writes are dropped and counted in {}, and further failures of this \
                 family are not logged",
                self.inner.decl.name,
                crate::writer::DROPPED_SERIES_METRIC
            );
        }
        self.inner.detached.get_or_init(|| T::detached(&self.inner.decl))
    }

    /// The label names, in the order values are given.
    pub fn label_names(&self) -> &[String] {
        &self.inner.decl.label_names
    }

    /// The family name (after namespace, subsystem, unit and `_total` handling).
    pub fn name(&self) -> &str {
        &self.inner.decl.name
    }
}
