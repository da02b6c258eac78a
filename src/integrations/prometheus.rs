//! The merged multiprocess families as a tikv [`prometheus`] 0.14
//! [`Collector`](::prometheus::core::Collector) (feature `prometheus`).
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use prometheus::Encoder;
//! use prometheus_multiproc::integrations::prometheus::PrometheusCollector;
//! use prometheus_multiproc::{Opts, Registry};
//!
//! // In the workers:
//! let registry = Registry::builder().dir(dir.path()).build()?;
//! registry.counter(Opts::new("jobs_total", "Jobs done."))?.inc_by(3.0);
//!
//! // In the process that serves /metrics:
//! let prom = prometheus::Registry::new();
//! prom.register(Box::new(PrometheusCollector::new(dir.path())?))?;
//! let mut out = Vec::new();
//! prometheus::TextEncoder::new().encode(&prom.gather(), &mut out)?;
//! assert_eq!(String::from_utf8(out)?, "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total 3\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Mapping
//!
//! | Multiprocess family | `proto::MetricFamily` |
//! |---|---|
//! | counter `NAME` (samples `NAME_total`) | `COUNTER` named `NAME_total`, as the `prometheus` crate names counters |
//! | gauge (any mode; `all`/`liveall` keep their `pid` label) | `GAUGE` |
//! | histogram | `HISTOGRAM`: one metric per label set (without `le`), `sample_count` from `NAME_count`, `sample_sum` from `NAME_sum`, one bucket per finite bound with its cumulative count (the `+Inf` bucket is implied by `sample_count`, as in the `prometheus` crate's own histograms) |
//! | summary (count and sum only) | `SUMMARY` with `sample_count`, `sample_sum` and no quantiles |
//! | a sample its family's type does not produce (only foreign files have them) | a `GAUGE` family named after the sample |
//!
//! Such stray samples are exposed as gauges, not `UNTYPED`: the `prometheus` crate's
//! `TextEncoder` panics (`unimplemented!`) on an untyped family. Counts (bucket, sample
//! count) are rounded to integers, as the proto stores them; a negative or NaN count
//! (only possible in a corrupt file) becomes 0.
//!
//! # An unchecked collector
//!
//! [`desc()`](::prometheus::core::Collector::desc) is empty because the families are
//! only known at scrape time. The `prometheus` registry calls such a collector
//! *unchecked*, which implies:
//!
//! * **one per registry**: registering a second collector with an empty `desc()` fails
//!   with `Error::AlreadyReg` (it would get the same collector id, 0);
//! * **no consistency checks**: the registry does not compare these families with the
//!   ones other collectors describe. A metric registered natively under a name the
//!   multiprocess directory also holds is not refused: `gather()` appends both sets of
//!   metrics into one family without checking types or labels. Keep the names apart;
//! * families without metrics are dropped by `gather()` (a `mostrecent` gauge nobody set
//!   yet has no HELP/TYPE lines here, unlike in this crate's own exposition);
//! * `gather()` sorts families by name and metrics by label values, so the order
//!   differs from Python's (the values do not).
//!
//! # Errors
//!
//! `collect()` cannot fail. A file that cannot be used is skipped (and logged) by the
//! underlying [`Collector`]; when the directory itself cannot be listed, the error is
//! logged and no family is returned.

use ::prometheus::core::{Collector as PromCollector, Desc};
use ::prometheus::proto;

use super::shape::{Body, Labels, Scalar, count_u64, shape};
use crate::collect::{Collector, MetricFamily};
use crate::error::Result;

/// A `prometheus::core::Collector` that merges a multiprocess directory on every
/// `collect()`. See the [module docs](self) for the mapping and what an unchecked
/// collector implies.
#[derive(Debug)]
pub struct PrometheusCollector {
    collector: Collector,
}

impl PrometheusCollector {
    /// A collector over `dir`.
    ///
    /// # Errors
    /// As [`Collector::new`]: [`ErrorKind::NotADirectory`](crate::ErrorKind::NotADirectory).
    pub fn new(dir: impl AsRef<std::path::Path>) -> Result<PrometheusCollector> {
        Ok(PrometheusCollector { collector: Collector::new(dir)? })
    }

    /// A collector over `$PROMETHEUS_MULTIPROC_DIR`.
    ///
    /// # Errors
    /// As [`Collector::from_env`].
    pub fn from_env() -> Result<PrometheusCollector> {
        Ok(PrometheusCollector { collector: Collector::from_env()? })
    }

    /// The underlying multiprocess collector.
    pub fn collector(&self) -> &Collector {
        &self.collector
    }
}

impl From<Collector> for PrometheusCollector {
    fn from(collector: Collector) -> PrometheusCollector {
        PrometheusCollector { collector }
    }
}

impl PromCollector for PrometheusCollector {
    /// Empty: the families are only known at scrape time (an unchecked collector).
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        match self.collector.collect() {
            Ok(scrape) => to_proto(&scrape.families),
            Err(e) => {
                log::error!("multiprocess scrape failed: {e}");
                Vec::new()
            }
        }
    }
}

/// Converts merged families to `prometheus` protos, by the [mapping](self#mapping) of
/// this module. Useful to encode a [`Scrape`](crate::Scrape) with a `prometheus`
/// encoder without a registry.
pub fn to_proto(families: &[MetricFamily]) -> Vec<proto::MetricFamily> {
    let mut out = Vec::with_capacity(families.len());
    for family in families {
        let shaped = shape(family);
        let (name, typ, metrics) = match shaped.body {
            Body::Counter(series) => {
                let metrics = series.into_iter().map(|s| with_labels(&s.labels, |m| m.set_counter(counter(s.value))));
                (format!("{}_total", shaped.name), proto::MetricType::COUNTER, metrics.collect())
            }
            Body::Gauge(series) => (shaped.name.to_owned(), proto::MetricType::GAUGE, gauges(series)),
            Body::Histogram(series) => {
                let metrics = series.into_iter().map(|s| {
                    let mut h = proto::Histogram::default();
                    h.set_sample_count(count_u64(s.count));
                    h.set_sample_sum(s.sum);
                    let buckets = s.buckets.iter().filter(|(bound, _)| *bound != f64::INFINITY).map(|&(bound, n)| {
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(bound);
                        b.set_cumulative_count(count_u64(n));
                        b
                    });
                    h.set_bucket(buckets.collect());
                    with_labels(&s.labels, |m| m.set_histogram(h))
                });
                (shaped.name.to_owned(), proto::MetricType::HISTOGRAM, metrics.collect())
            }
            Body::Summary(series) => {
                let metrics = series.into_iter().map(|s| {
                    let mut summary = proto::Summary::default();
                    summary.set_sample_count(count_u64(s.count));
                    summary.set_sample_sum(s.sum);
                    with_labels(&s.labels, |m| m.set_summary(summary))
                });
                (shaped.name.to_owned(), proto::MetricType::SUMMARY, metrics.collect())
            }
        };
        out.push(family_proto(name, shaped.help, typ, metrics));
        for (sample_name, series) in shaped.loose {
            log::debug!("{sample_name:?} does not fit {} family {:?}: exposed as a gauge", family.kind, family.name);
            out.push(family_proto(sample_name.to_owned(), shaped.help, proto::MetricType::GAUGE, gauges(series)));
        }
    }
    out
}

fn family_proto(name: String, help: &str, typ: proto::MetricType, metrics: Vec<proto::Metric>) -> proto::MetricFamily {
    let mut family = proto::MetricFamily::default();
    family.set_name(name);
    family.set_help(help.to_owned());
    family.set_field_type(typ);
    *family.mut_metric() = metrics;
    family
}

fn gauges(series: Vec<Scalar<'_>>) -> Vec<proto::Metric> {
    series
        .into_iter()
        .map(|s| {
            let mut g = proto::Gauge::default();
            g.set_value(s.value);
            with_labels(&s.labels, |m| m.set_gauge(g))
        })
        .collect()
}

fn counter(value: f64) -> proto::Counter {
    let mut c = proto::Counter::default();
    c.set_value(value);
    c
}

fn with_labels(labels: &Labels<'_>, set: impl FnOnce(&mut proto::Metric)) -> proto::Metric {
    let pairs = labels
        .iter()
        .map(|&(name, value)| {
            let mut pair = proto::LabelPair::default();
            pair.set_name(name.to_owned());
            pair.set_value(value.to_owned());
            pair
        })
        .collect();
    let mut metric = proto::Metric::default();
    metric.set_label(pairs);
    set(&mut metric);
    metric
}
