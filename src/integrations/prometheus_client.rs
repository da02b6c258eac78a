//! The merged multiprocess families as a [`prometheus_client`]
//! 0.26 [`Collector`](::prometheus_client::collector::Collector) (feature
//! `prometheus-client`).
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use prometheus_multiproc::integrations::prometheus_client::PrometheusClientCollector;
//! use prometheus_multiproc::{Opts, Registry};
//!
//! // In the workers:
//! let registry = Registry::builder().dir(dir.path()).build()?;
//! registry.counter(Opts::new("jobs_total", "Jobs done."))?.inc_by(3.0);
//!
//! // In the process that serves /metrics:
//! let mut client = prometheus_client::registry::Registry::default();
//! client.register_collector(Box::new(PrometheusClientCollector::new(dir.path())?));
//! let mut out = String::new();
//! prometheus_client::encoding::text::encode(&mut out, &client)?;
//! assert_eq!(out, "# HELP jobs Jobs done.\n# TYPE jobs counter\njobs_total 3.0\n# EOF\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Mapping
//!
//! Every family goes through the [`DescriptorEncoder`] API, so it comes out in
//! whichever format the registry is being encoded to.
//!
//! | Multiprocess family | `prometheus-client` |
//! |---|---|
//! | counter `NAME` (samples `NAME_total`) | descriptor `NAME`, `Counter`: one `encode_counter` (an `f64`) per label set |
//! | gauge (any mode; `all`/`liveall` keep their `pid` label) | `Gauge`, `encode_gauge` with the `f64` value |
//! | histogram | `Histogram`, `encode_histogram` per label set (without `le`), with the sum, the count and the per-bucket counts (the encoder re-accumulates them) |
//! | summary (count and sum only) | two `Unknown` families, `NAME_count` and `NAME_sum`: `prometheus-client` 0.26 has no summary type, and these are exactly the series a quantile-less summary exposes |
//! | a sample its family's type does not produce (only foreign files have them) | an `Unknown` family named after the sample |
//!
//! Help texts are escaped (`\` and newline), which the text encoders leave to their
//! callers (the descriptor API cannot tell which encoder it feeds, so under
//! `prometheus-client`'s protobuf encoders such a help text arrives escaped); no `.` is
//! appended, unlike `Registry::register`. Bucket counts are rounded to
//! integers (negative or NaN, only possible in a corrupt file, become 0), as the
//! encoder takes `u64`.
//!
//! # Errors
//!
//! `encode` fails only when the writer fails. A file that cannot be used is skipped
//! (and logged) by the underlying [`Collector`]; when the directory itself cannot be
//! listed, the error is logged and nothing is encoded.

use std::fmt;

use ::prometheus_client::collector::Collector as ClientCollector;
use ::prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use ::prometheus_client::metrics::MetricType;

use super::shape::{Body, Labels, Scalar, count_u64, shape};
use crate::collect::{Collector, MetricFamily};
use crate::error::Result;

/// A `prometheus_client::collector::Collector` that merges a multiprocess directory on
/// every encode. See the [module docs](self) for the mapping.
#[derive(Debug)]
pub struct PrometheusClientCollector {
    collector: Collector,
}

impl PrometheusClientCollector {
    /// A collector over `dir`.
    ///
    /// # Errors
    /// As [`Collector::new`]: [`ErrorKind::NotADirectory`](crate::ErrorKind::NotADirectory).
    pub fn new(dir: impl AsRef<std::path::Path>) -> Result<PrometheusClientCollector> {
        Ok(PrometheusClientCollector { collector: Collector::new(dir)? })
    }

    /// A collector over `$PROMETHEUS_MULTIPROC_DIR`.
    ///
    /// # Errors
    /// As [`Collector::from_env`].
    pub fn from_env() -> Result<PrometheusClientCollector> {
        Ok(PrometheusClientCollector { collector: Collector::from_env()? })
    }

    /// The underlying multiprocess collector.
    pub fn collector(&self) -> &Collector {
        &self.collector
    }
}

impl From<Collector> for PrometheusClientCollector {
    fn from(collector: Collector) -> PrometheusClientCollector {
        PrometheusClientCollector { collector }
    }
}

impl ClientCollector for PrometheusClientCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        match self.collector.collect() {
            Ok(scrape) => encode_families(&scrape.families, &mut encoder),
            Err(e) => {
                log::error!("multiprocess scrape failed: {e}");
                Ok(())
            }
        }
    }
}

/// Encodes merged families by the [mapping](self#mapping) of this module; for a custom
/// [`Collector`](::prometheus_client::collector::Collector) that also holds a
/// [`Scrape`](crate::Scrape).
///
/// # Errors
/// When the underlying writer fails.
pub fn encode_families(families: &[MetricFamily], encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    for family in families {
        let shaped = shape(family);
        let help = escape_help(shaped.help);
        match &shaped.body {
            Body::Counter(series) => {
                let mut metric = encoder.encode_descriptor(shaped.name, &help, None, MetricType::Counter)?;
                for s in series {
                    metric.encode_family(&s.labels)?.encode_counter::<NoLabelSet, f64, f64>(&s.value, None)?;
                }
            }
            Body::Gauge(series) => {
                let mut metric = encoder.encode_descriptor(shaped.name, &help, None, MetricType::Gauge)?;
                encode_gauges(&mut metric, series)?;
            }
            Body::Histogram(series) => {
                let mut metric = encoder.encode_descriptor(shaped.name, &help, None, MetricType::Histogram)?;
                for s in series {
                    let mut previous = 0;
                    let buckets: Vec<(f64, u64)> = s
                        .buckets
                        .iter()
                        .map(|&(bound, cumulative)| {
                            let cumulative = count_u64(cumulative);
                            let own = cumulative.saturating_sub(previous);
                            previous = previous.max(cumulative);
                            (bound, own)
                        })
                        .collect();
                    metric.encode_family(&s.labels)?.encode_histogram::<NoLabelSet>(
                        s.sum,
                        count_u64(s.count),
                        &buckets,
                        None,
                    )?;
                }
            }
            Body::Summary(series) => {
                for (suffix, is_count) in [("_count", true), ("_sum", false)] {
                    let name = format!("{}{suffix}", shaped.name);
                    let mut metric = encoder.encode_descriptor(&name, &help, None, MetricType::Unknown)?;
                    for s in series {
                        encode_gauge(&mut metric, &s.labels, if is_count { s.count } else { s.sum })?;
                    }
                }
            }
        }
        for (sample_name, series) in &shaped.loose {
            log::debug!("{sample_name:?} does not fit {} family {:?}: exposed as unknown", family.kind, family.name);
            let mut metric = encoder.encode_descriptor(sample_name, &help, None, MetricType::Unknown)?;
            encode_gauges(&mut metric, series)?;
        }
    }
    Ok(())
}

fn encode_gauges(metric: &mut MetricEncoder<'_>, series: &[Scalar<'_>]) -> fmt::Result {
    series.iter().try_for_each(|s| encode_gauge(metric, &s.labels, s.value))
}

fn encode_gauge(metric: &mut MetricEncoder<'_>, labels: &Labels<'_>, value: f64) -> fmt::Result {
    metric.encode_family(labels)?.encode_gauge(&value)
}

/// A help text escaped for the text formats: `\` and newline (the only escapes both
/// the Prometheus text format and OpenMetrics define for HELP).
fn escape_help(help: &str) -> std::borrow::Cow<'_, str> {
    if help.contains(['\\', '\n']) { help.replace('\\', "\\\\").replace('\n', "\\n").into() } else { help.into() }
}

#[cfg(test)]
mod tests {
    use super::escape_help;

    #[test]
    fn help_escapes_backslash_and_newline_only() {
        assert_eq!(escape_help("a \"b\""), "a \"b\"");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }
}
