//! Regroups a merged [`MetricFamily`] (flat samples, Python's model) into the shape the
//! other crates' data models want: per label set, one counter or gauge value, or a
//! histogram's buckets, count and sum, or a summary's count and sum. Pure, and shared
//! by the `prometheus` and `prometheus-client` adapters.

use hashbrown::HashMap;

use crate::collect::{MetricFamily, MetricType, Sample};

/// Label pairs, sorted by name as the collector hands them out.
pub(crate) type Labels<'a> = Vec<(&'a str, &'a str)>;

/// One value with its labels (a counter, gauge or loose sample).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar<'a> {
    pub(crate) labels: Labels<'a>,
    pub(crate) value: f64,
}

/// One label set of a histogram.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSeries<'a> {
    /// The labels without `le`.
    pub(crate) labels: Labels<'a>,
    /// `(upper bound, cumulative count)` in ascending bound order; the last bound is
    /// always `+Inf`.
    pub(crate) buckets: Vec<(f64, f64)>,
    /// `NAME_count`, or the `+Inf` bucket when that sample is missing.
    pub(crate) count: f64,
    /// `NAME_sum` (0 when missing).
    pub(crate) sum: f64,
}

/// One label set of a summary (multiprocess summaries have no quantiles).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SummarySeries<'a> {
    pub(crate) labels: Labels<'a>,
    pub(crate) count: f64,
    pub(crate) sum: f64,
}

/// A family's series, by type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body<'a> {
    /// Samples named `NAME_total`.
    Counter(Vec<Scalar<'a>>),
    /// Samples named `NAME`.
    Gauge(Vec<Scalar<'a>>),
    Histogram(Vec<HistogramSeries<'a>>),
    Summary(Vec<SummarySeries<'a>>),
}

/// A family regrouped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shaped<'a> {
    /// The family name (a counter's without `_total`).
    pub(crate) name: &'a str,
    pub(crate) help: &'a str,
    pub(crate) body: Body<'a>,
    /// Samples that fit no rule of the family's type, grouped by sample name in order of
    /// first appearance: a sample name the type does not produce (a file may put any
    /// sample in any family), or a bucket whose `le` is not a number. The adapters
    /// expose each group as a family of its own, named after the sample.
    pub(crate) loose: Vec<(&'a str, Vec<Scalar<'a>>)>,
}

/// Regroups `family`.
pub(crate) fn shape(family: &MetricFamily) -> Shaped<'_> {
    let name = &*family.name;
    let mut loose = Loose::default();
    let body = match family.kind {
        MetricType::Counter => {
            let total = format!("{name}_total");
            Body::Counter(scalars(&family.samples, &total, &mut loose))
        }
        MetricType::Gauge => Body::Gauge(scalars(&family.samples, name, &mut loose)),
        MetricType::Histogram => Body::Histogram(histograms(name, &family.samples, &mut loose)),
        MetricType::Summary => Body::Summary(summaries(name, &family.samples, &mut loose)),
    };
    Shaped { name, help: &family.help, body, loose: loose.groups }
}

/// Loose samples grouped by name, in order of first appearance.
#[derive(Default)]
struct Loose<'a> {
    groups: Vec<(&'a str, Vec<Scalar<'a>>)>,
}

impl<'a> Loose<'a> {
    fn push(&mut self, sample: &'a Sample) {
        let scalar = Scalar { labels: labels(sample), value: sample.value };
        match self.groups.iter_mut().find(|(name, _)| *name == &*sample.name) {
            Some((_, group)) => group.push(scalar),
            None => self.groups.push((&sample.name, vec![scalar])),
        }
    }
}

fn labels(sample: &Sample) -> Labels<'_> {
    sample.labels.iter().map(|(k, v)| (&**k, &**v)).collect()
}

fn scalars<'a>(samples: &'a [Sample], expected: &str, loose: &mut Loose<'a>) -> Vec<Scalar<'a>> {
    let mut out = Vec::with_capacity(samples.len());
    for sample in samples {
        if &*sample.name == expected {
            out.push(Scalar { labels: labels(sample), value: sample.value });
        } else {
            loose.push(sample);
        }
    }
    out
}

/// Series grouped by label set, in order of first appearance.
struct Groups<'a, T> {
    index: HashMap<Labels<'a>, usize>,
    items: Vec<T>,
}

impl<'a, T> Groups<'a, T> {
    fn new() -> Self {
        Groups { index: HashMap::new(), items: Vec::new() }
    }

    fn get(&mut self, labels: Labels<'a>, new: impl FnOnce(Labels<'a>) -> T) -> &mut T {
        let items = &mut self.items;
        let at = *self.index.entry(labels).or_insert_with_key(|labels| {
            items.push(new(labels.clone()));
            items.len() - 1
        });
        &mut self.items[at]
    }
}

fn summaries<'a>(name: &str, samples: &'a [Sample], loose: &mut Loose<'a>) -> Vec<SummarySeries<'a>> {
    let (count, sum) = (format!("{name}_count"), format!("{name}_sum"));
    let mut groups = Groups::new();
    let new = |labels| SummarySeries { labels, count: 0.0, sum: 0.0 };
    for sample in samples {
        if *sample.name == *count {
            groups.get(labels(sample), new).count = sample.value;
        } else if *sample.name == *sum {
            groups.get(labels(sample), new).sum = sample.value;
        } else {
            loose.push(sample);
        }
    }
    groups.items
}

fn histograms<'a>(name: &str, samples: &'a [Sample], loose: &mut Loose<'a>) -> Vec<HistogramSeries<'a>> {
    struct Partial<'a> {
        labels: Labels<'a>,
        buckets: Vec<(f64, f64)>,
        count: Option<f64>,
        sum: f64,
    }
    let (bucket, count, sum) = (format!("{name}_bucket"), format!("{name}_count"), format!("{name}_sum"));
    let mut groups = Groups::new();
    let new = |labels| Partial { labels, buckets: Vec::new(), count: None, sum: 0.0 };
    for sample in samples {
        if *sample.name == *bucket
            && let Some(bound) = sample.label("le").and_then(|le| le.parse::<f64>().ok()).filter(|b| !b.is_nan())
        {
            let labels = sample.labels.iter().filter(|(k, _)| &**k != "le").map(|(k, v)| (&**k, &**v)).collect();
            groups.get(labels, new).buckets.push((bound, sample.value));
        } else if *sample.name == *count {
            groups.get(labels(sample), new).count = Some(sample.value);
        } else if *sample.name == *sum {
            groups.get(labels(sample), new).sum = sample.value;
        } else {
            loose.push(sample);
        }
    }
    groups
        .items
        .into_iter()
        .map(|mut p| {
            p.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let inf = p.buckets.last().filter(|(bound, _)| *bound == f64::INFINITY).map(|&(_, v)| v);
            let count = p.count.or(inf).unwrap_or(0.0);
            if inf.is_none() {
                p.buckets.push((f64::INFINITY, count));
            }
            HistogramSeries { labels: p.labels, buckets: p.buckets, count, sum: p.sum }
        })
        .collect()
}

/// A merged count as an integer: rounded, negative and NaN as 0, saturating at
/// `u64::MAX`. Counts in well-formed files are whole numbers.
pub(crate) fn count_u64(value: f64) -> u64 {
    if value >= 0.0 { value.round() as u64 } else { 0 }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: Arc::from(name),
            labels: labels.iter().map(|(k, v)| (Arc::from(*k), Arc::from(*v))).collect(),
            value,
        }
    }

    fn family(name: &str, kind: MetricType, samples: Vec<Sample>) -> MetricFamily {
        MetricFamily { name: Arc::from(name), help: Arc::from("Help."), kind, samples }
    }

    #[test]
    fn histogram_buckets_group_by_labels_without_le_and_keep_count_and_sum() {
        let f = family(
            "lat",
            MetricType::Histogram,
            vec![
                sample("lat_sum", &[("route", "/a")], 1.5),
                sample("lat_sum", &[("route", "/b")], 0.25),
                sample("lat_bucket", &[("le", "0.5"), ("route", "/a")], 1.0),
                sample("lat_bucket", &[("le", "+Inf"), ("route", "/a")], 3.0),
                sample("lat_count", &[("route", "/a")], 3.0),
                sample("lat_bucket", &[("le", "0.5"), ("route", "/b")], 1.0),
                sample("lat_bucket", &[("le", "+Inf"), ("route", "/b")], 1.0),
                sample("lat_count", &[("route", "/b")], 1.0),
            ],
        );
        let shaped = shape(&f);
        assert!(shaped.loose.is_empty());
        let Body::Histogram(series) = shaped.body else { panic!("not a histogram: {:?}", shaped.body) };
        assert_eq!(
            series,
            vec![
                HistogramSeries {
                    labels: vec![("route", "/a")],
                    buckets: vec![(0.5, 1.0), (f64::INFINITY, 3.0)],
                    count: 3.0,
                    sum: 1.5
                },
                HistogramSeries {
                    labels: vec![("route", "/b")],
                    buckets: vec![(0.5, 1.0), (f64::INFINITY, 1.0)],
                    count: 1.0,
                    sum: 0.25
                },
            ]
        );
    }

    #[test]
    fn histogram_without_inf_bucket_gets_one_from_count_and_unparsable_le_is_loose() {
        let f = family(
            "h",
            MetricType::Histogram,
            vec![
                sample("h_bucket", &[("le", "2")], 4.0),
                sample("h_bucket", &[("le", "1")], 1.0),
                sample("h_bucket", &[("le", "many")], 9.0),
                sample("h_count", &[], 5.0),
                sample("h_created", &[], 7.0),
            ],
        );
        let shaped = shape(&f);
        let Body::Histogram(series) = &shaped.body else { panic!("not a histogram") };
        assert_eq!(series[0].buckets, vec![(1.0, 1.0), (2.0, 4.0), (f64::INFINITY, 5.0)]);
        assert_eq!(series[0].count, 5.0);
        assert_eq!(series[0].sum, 0.0);
        assert_eq!(
            shaped.loose,
            vec![
                ("h_bucket", vec![Scalar { labels: vec![("le", "many")], value: 9.0 }]),
                ("h_created", vec![Scalar { labels: vec![], value: 7.0 }]),
            ]
        );
    }

    #[test]
    fn counter_samples_other_than_total_are_loose() {
        let f = family(
            "jobs",
            MetricType::Counter,
            vec![sample("jobs_total", &[("a", "1")], 2.0), sample("jobs", &[], 1.0), sample("jobs_total", &[], 3.0)],
        );
        let shaped = shape(&f);
        assert_eq!(
            shaped.body,
            Body::Counter(vec![Scalar { labels: vec![("a", "1")], value: 2.0 }, Scalar { labels: vec![], value: 3.0 }])
        );
        assert_eq!(shaped.loose, vec![("jobs", vec![Scalar { labels: vec![], value: 1.0 }])]);
    }

    #[test]
    fn summary_pairs_count_and_sum_per_label_set() {
        let f = family(
            "s",
            MetricType::Summary,
            vec![
                sample("s_count", &[("x", "1")], 2.0),
                sample("s_sum", &[("x", "1")], 0.5),
                sample("s_sum", &[("x", "2")], 4.0),
            ],
        );
        assert_eq!(
            shape(&f).body,
            Body::Summary(vec![
                SummarySeries { labels: vec![("x", "1")], count: 2.0, sum: 0.5 },
                SummarySeries { labels: vec![("x", "2")], count: 0.0, sum: 4.0 },
            ])
        );
    }

    #[test]
    fn counts_round_and_clamp() {
        assert_eq!(count_u64(3.0), 3);
        assert_eq!(count_u64(2.6), 3);
        assert_eq!(count_u64(-1.0), 0);
        assert_eq!(count_u64(f64::NAN), 0);
        assert_eq!(count_u64(f64::INFINITY), u64::MAX);
    }
}
