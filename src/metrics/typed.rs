//! [`TypedFamily`]: a family whose label set is a type.

use std::marker::PhantomData;

use crate::error::Result;
use crate::metrics::{Family, Metric, NamedLabelSet};

/// A labeled metric whose label set is the type `L`: its label names come from `L`
/// (checked when the registry declares it) and its values are an `L` (checked by the
/// compiler), so a lookup cannot have a wrong count, a wrong order or a misspelt name.
/// The parameters are in prometheus-client's order: `TypedFamily<RequestLabels, Counter>`
/// is its `Family<RequestLabels, Counter>`.
///
/// Made by [`Registry::typed_counter_family`](crate::Registry::typed_counter_family)
/// and its siblings, usually with a struct that has `#[derive(LabelSet)]` (feature
/// `derive`; tuples work too, through [`NamedLabelSet`] implemented by hand). It is a
/// thin wrapper over the untyped [`Family`] of the same declaration (the same
/// children, the same cardinality guard: [`TypedFamily::untyped`]), which is why it
/// is a type of its own rather than a second parameter of `Family`: `Family<Counter>`
/// stays what it was, and a typed and an untyped declaration of one metric share
/// their series.
///
#[cfg_attr(feature = "derive", doc = "```")]
#[cfg_attr(not(feature = "derive"), doc = "```ignore")]
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{Collector, LabelSet, LabelValue, Opts, Registry};
///
/// #[derive(LabelValue)]
/// #[label(rename_all = "UPPERCASE")]
/// enum Method { Get, Post }
///
/// #[derive(LabelSet)]
/// struct RequestLabels { method: Method, route: &'static str, status: u16 }
///
/// let registry = Registry::builder().dir(dir.path()).build()?;
/// let requests = registry.typed_counter_family::<RequestLabels>(Opts::new("requests_total", "Requests."))?;
/// assert_eq!(requests.untyped().label_names(), ["method", "route", "status"]);
///
/// requests.labels(&RequestLabels { method: Method::Get, route: "/users", status: 200 }).inc();
/// requests.labels(&RequestLabels { method: Method::Post, route: "/users", status: 201 }).inc_by(2);
///
/// let scrape = Collector::new(dir.path())?.collect()?;
/// let labels = [("method", "POST"), ("route", "/users"), ("status", "201")];
/// assert_eq!(scrape.value("requests_total", &labels), Some(2.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedFamily<L, M> {
    family: Family<M>,
    /// `fn(&L)`: the family holds no `L`, so it is `Send`, `Sync` and `Clone` whatever
    /// `L` is.
    labels: PhantomData<fn(&L)>,
}

impl<L, M: Clone> Clone for TypedFamily<L, M> {
    fn clone(&self) -> Self {
        TypedFamily { family: self.family.clone(), labels: PhantomData }
    }
}

impl<L, M: std::fmt::Debug> std::fmt::Debug for TypedFamily<L, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedFamily")
            .field("labels", &std::any::type_name::<L>())
            .field("family", &self.family)
            .finish()
    }
}

impl<L: NamedLabelSet, M: Metric> TypedFamily<L, M> {
    /// Wraps a family declared with `L::NAMES`.
    pub(crate) fn new(family: Family<M>) -> TypedFamily<L, M> {
        debug_assert_eq!(family.label_names(), L::NAMES);
        TypedFamily { family, labels: PhantomData }
    }

    /// The child for `labels`, always, as [`Family::labels`]: no lock, no allocation
    /// and no shared write when it exists; a handle that drops its writes (counted and
    /// logged once) when it cannot be created. Borrowed from the family, as with
    /// [`Family::labels`]: `.clone()` it to keep it.
    ///
    #[cfg_attr(feature = "derive", doc = "```")]
    #[cfg_attr(not(feature = "derive"), doc = "```ignore")]
    /// # let dir = tempfile::tempdir()?;
    /// use prometheus_multiproc::{LabelSet, Opts, Registry};
    /// #[derive(LabelSet)]
    /// struct Job { queue: String, #[label(rename = "try")] attempt: u8, ok: bool }
    ///
    /// let registry = Registry::builder().dir(dir.path()).build()?;
    /// let jobs = registry.typed_counter_family::<Job>(Opts::new("jobs_total", "Jobs."))?;
    /// let job = Job { queue: "mail".into(), attempt: 1, ok: true };
    /// jobs.labels(&job).inc();
    /// assert_eq!(jobs.labels(&job).get(), 1.0);
    /// assert_eq!(jobs.untyped().labels(&["mail", "1", "true"]).get(), 1.0, "the same series");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn labels(&self, labels: &L) -> &M {
        self.family.labels(labels)
    }

    /// The child for `labels`, created on first use: the fallible form of
    /// [`TypedFamily::labels`], for callers who want the error.
    ///
    /// # Errors
    /// As [`Family::get`]: an I/O kind when a new child cannot be written to its file
    /// ([`ErrorKind::LabelCount`](crate::ErrorKind::LabelCount) only for a hand-written
    /// [`NamedLabelSet`] that hands out the wrong number of values).
    #[inline]
    pub fn get(&self, labels: &L) -> Result<M> {
        labels.with_values(|values| self.family.get(values))
    }

    /// Runs `f` on the child for `labels` without cloning its handle, as
    /// [`Family::with`].
    ///
    /// # Errors
    /// As [`TypedFamily::get`].
    #[inline]
    pub fn with<R>(&self, labels: &L, f: impl FnOnce(&M) -> R) -> Result<R> {
        labels.with_values(|values| self.family.with(values, f))
    }

    /// The untyped family of the same declaration (same children), for its name, its
    /// label names, or a lookup by strings.
    pub fn untyped(&self) -> &Family<M> {
        &self.family
    }
}
