//! What a scrape produces: metric families with their merged samples.
//!
//! Strings are `Arc<str>`: the collector interns every name, label and help text once
//! and hands out cheap clones, so building a scrape allocates per sample only its label
//! list.

use std::fmt;
use std::sync::Arc;

/// The type of a metric family, taken from the prefix of the file that first mentions
/// it (`counter_…`, `gauge_…`, `histogram_…`, `summary_…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetricType {
    /// Counter: samples `NAME_total`.
    Counter,
    /// Gauge: sample `NAME`, merged by the family's gauge mode.
    Gauge,
    /// Histogram: `NAME_sum`, cumulative `NAME_bucket{le=…}` and `NAME_count`.
    Histogram,
    /// Summary: `NAME_count` and `NAME_sum` (no quantiles in multiprocess mode).
    Summary,
}

impl MetricType {
    /// The type as the exposition formats spell it (`"counter"`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One merged sample: a name, its labels and a value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Sample {
    /// The sample name (`http_requests_total`, `latency_seconds_bucket`, …).
    pub name: Arc<str>,
    /// Label pairs sorted by name, each name once. All-mode gauges carry the writer's
    /// `pid`; histogram buckets carry `le`. Shared with the collector's tables (and
    /// with every other sample of the same label set), so a scrape copies no labels.
    pub labels: Arc<[(Arc<str>, Arc<str>)]>,
    /// The merged value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| &**n == name).map(|(_, v)| &**v)
    }
}

/// A metric family: its name (without the counter's `_total`), help text, type, and
/// merged samples in Python's order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MetricFamily {
    /// The family name, as stored in the key's first element.
    pub name: Arc<str>,
    /// The help text of the first entry (in file order) that mentions the family.
    pub help: Arc<str>,
    /// The family type.
    pub kind: MetricType,
    /// The merged samples. Empty for a `mostrecent` gauge no process has set yet (its
    /// HELP and TYPE lines are still exposed, as Python exposes them).
    pub samples: Vec<Sample>,
}

impl super::Scrape {
    /// The family named `name` (without a counter's `_total`), if the scrape has it.
    pub fn family(&self, name: &str) -> Option<&MetricFamily> {
        self.families.iter().find(|f| &*f.name == name)
    }

    /// The sample named `name` (`http_requests_total`, `latency_seconds_bucket`, ...)
    /// whose labels are exactly `labels`, in any order; for tests and tools.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use prometheus_multiproc::{Collector, Opts, Registry};
    /// let registry = Registry::builder().dir(dir.path()).build()?;
    /// let requests = registry.counter_family(Opts::new("requests_total", "Requests."), &["route", "status"])?;
    /// requests.get(&["/", "200"])?.inc_by(3);
    /// let scrape = Collector::new(dir.path())?.collect()?;
    /// assert_eq!(scrape.value("requests_total", &[("status", "200"), ("route", "/")]), Some(3.0));
    /// assert_eq!(scrape.value("requests_total", &[("route", "/")]), None, "labels must match exactly");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Sample> {
        self.families.iter().flat_map(|f| &f.samples).find(|s| {
            &*s.name == name && s.labels.len() == labels.len() && labels.iter().all(|(k, v)| s.label(k) == Some(*v))
        })
    }

    /// The value of [`sample`](Self::sample)`(name, labels)`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.sample(name, labels).map(|s| s.value)
    }
}
