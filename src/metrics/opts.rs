//! Metric options, naming and validation, as prometheus_client builds names.

use crate::error::{Error, ErrorKind, Result};
use crate::format::float::go_float;
use crate::format::key::encode_key;
use crate::metrics::GaugeMode;

/// Name, help and the optional namespace, subsystem and unit of a metric.
///
/// The full name is built as Python's `_build_full_name` builds it:
/// `namespace_subsystem_name`, a counter's trailing `_total` stripped (its sample is
/// `name_total` again), and `_unit` appended unless the name already ends with it.
///
/// ```
/// use prometheus_multiproc::Opts;
/// let opts = Opts::new("request_duration", "Request latency.").namespace("app").unit("seconds");
/// assert_eq!(opts.full_name_for_counter()?, "app_request_duration_seconds");
/// assert_eq!(Opts::new("jobs_total", "Jobs.").full_name_for_counter()?, "jobs");
/// # Ok::<(), prometheus_multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opts {
    name: String,
    help: String,
    namespace: String,
    subsystem: String,
    unit: String,
    max_series: Option<usize>,
}

/// The label value every label of a family's overflow series carries (see
/// [`Opts::max_series`]).
pub const OVERFLOW_LABEL_VALUE: &str = "__overflow__";

impl Opts {
    /// Options with a name and a help text.
    pub fn new(name: impl Into<String>, help: impl Into<String>) -> Opts {
        Opts {
            name: name.into(),
            help: help.into(),
            namespace: String::new(),
            subsystem: String::new(),
            unit: String::new(),
            max_series: None,
        }
    }

    /// Prefixes the name with `namespace_`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Opts {
        self.namespace = namespace.into();
        self
    }

    /// Prefixes the name (after the namespace) with `subsystem_`.
    pub fn subsystem(mut self, subsystem: impl Into<String>) -> Opts {
        self.subsystem = subsystem.into();
        self
    }

    /// Appends `_unit` to the name unless it already ends with it.
    pub fn unit(mut self, unit: impl Into<String>) -> Opts {
        self.unit = unit.into();
        self
    }

    /// Caps a labeled family at `limit` label sets (a cardinality guard). Past it, a
    /// new combination of label values is not created: [`Family::get`](crate::Family::get)
    /// hands out the family's **overflow series** instead, whose every label value is
    /// [`OVERFLOW_LABEL_VALUE`] (`"__overflow__"`), so a bug that puts user IDs into
    /// labels cannot fill the disk, and what it counted still shows up in the totals.
    /// Each such redirection is counted in
    /// `prometheus_multiproc_dropped_series_total{reason="cardinality"}` when the
    /// registry's self-metrics are on. No limit by default.
    pub fn max_series(mut self, limit: usize) -> Opts {
        self.max_series = Some(limit);
        self
    }

    /// The family name a counter with these options gets.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidMetricName`] when the name is empty or not
    /// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    pub fn full_name_for_counter(&self) -> Result<String> {
        self.full_name(true)
    }

    pub(crate) fn full_name(&self, is_counter: bool) -> Result<String> {
        if self.name.is_empty() {
            return Err(Error::new(ErrorKind::InvalidMetricName).about("").expected("a non-empty name"));
        }
        let mut full = String::new();
        for part in [&self.namespace, &self.subsystem] {
            if !part.is_empty() {
                full.push_str(part);
                full.push('_');
            }
        }
        full.push_str(&self.name);
        if is_counter && full.ends_with("_total") {
            full.truncate(full.len() - "_total".len());
        }
        if !self.unit.is_empty() && !full.ends_with(&format!("_{}", self.unit)) {
            full.push('_');
            full.push_str(&self.unit);
        }
        if !is_valid_metric_name(&full) {
            return Err(Error::new(ErrorKind::InvalidMetricName).about(full).expected("[a-zA-Z_:][a-zA-Z0-9_:]*"));
        }
        Ok(full)
    }

    pub(crate) fn help(&self) -> &str {
        &self.help
    }
}

fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The type of a metric, with what its key layout depends on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Counter,
    Gauge(GaugeMode),
    Histogram(Vec<f64>),
    Summary,
}

impl Kind {
    pub(crate) fn file_prefix(&self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge(mode) => mode.file_prefix(),
            Kind::Histogram(_) => "histogram",
            Kind::Summary => "summary",
        }
    }

    /// The suffixes Python's registry reserves beside a family's name
    /// (`CollectorRegistry._get_names`): two families of one registry may not share any
    /// of the resulting names.
    fn name_suffixes(&self) -> &'static [&'static str] {
        match self {
            Kind::Counter => &["_total", "_created"],
            Kind::Gauge(_) => &[],
            Kind::Histogram(_) => &["_bucket", "_sum", "_count", "_created"],
            Kind::Summary => &["_sum", "_count", "_created"],
        }
    }

    fn reserved_label(&self) -> Option<&'static str> {
        match self {
            Kind::Counter => None,
            Kind::Gauge(_) => Some("pid"),
            Kind::Histogram(_) => Some("le"),
            Kind::Summary => Some("quantile"),
        }
    }
}

/// Everything that defines a metric family; two registrations of the same name must
/// agree on all of it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decl {
    pub(crate) name: String,
    pub(crate) help: String,
    pub(crate) kind: Kind,
    /// Label names in declaration order (the order values are given in).
    pub(crate) label_names: Vec<String>,
    /// Indices into `label_names` in sorted-name order (the order keys hold them in).
    sorted: Vec<usize>,
    /// The cardinality guard, if any.
    pub(crate) max_series: Option<usize>,
}

impl Decl {
    pub(crate) fn new(opts: &Opts, kind: Kind, label_names: &[&str]) -> Result<Decl> {
        let name = opts.full_name(kind == Kind::Counter)?;
        let reserved = kind.reserved_label();
        for (i, label) in label_names.iter().enumerate() {
            let bad = |why: &'static str| {
                Error::new(ErrorKind::InvalidLabelName).about(format!("{name}: {label}")).expected(why)
            };
            if !is_valid_label_name(label) {
                return Err(bad("[a-zA-Z_][a-zA-Z0-9_]*"));
            }
            if label.starts_with("__") {
                return Err(bad("no '__' prefix (reserved for Prometheus)"));
            }
            if Some(*label) == reserved {
                return Err(bad("a label this metric type does not reserve (le, quantile, pid)"));
            }
            if label_names[..i].contains(label) {
                return Err(bad("each label name once"));
            }
        }
        if let Kind::Histogram(bounds) = &kind {
            validate_buckets(&name, bounds)?;
        }
        let mut sorted: Vec<usize> = (0..label_names.len()).collect();
        sorted.sort_by_key(|&i| label_names[i]);
        Ok(Decl {
            name,
            help: opts.help().to_owned(),
            kind,
            label_names: label_names.iter().map(|s| (*s).to_owned()).collect(),
            sorted,
            max_series: opts.max_series,
        })
    }

    /// Every name the family takes in a registry: its own and its samples' (as
    /// Python's registry counts them), so that `x` (a counter, sample `x_total`) and a
    /// gauge `x_total` cannot both be declared.
    pub(crate) fn taken_names(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(self.name.clone()).chain(self.kind.name_suffixes().iter().map(|s| format!("{}{s}", self.name)))
    }

    /// Checks the number of values against the label names.
    pub(crate) fn check_values(&self, values: &[&str]) -> Result<()> {
        if values.len() == self.label_names.len() {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::LabelCount).about(format!("{}{values:?}", self.name)).expected(format!(
                "{} values for {:?}",
                self.label_names.len(),
                self.label_names
            )))
        }
    }

    /// The keys of one child, in the order Python writes its entries.
    pub(crate) fn keys(&self, values: &[&str]) -> Vec<Box<[u8]>> {
        let labels: Vec<(&str, &str)> =
            self.sorted.iter().map(|&i| (self.label_names[i].as_str(), values[i])).collect();
        let key = |sample: &str, labels: &[(&str, &str)]| {
            encode_key(&self.name, sample, labels, &self.help).into_bytes().into_boxed_slice()
        };
        match &self.kind {
            Kind::Counter => vec![key(&format!("{}_total", self.name), &labels)],
            Kind::Gauge(_) => vec![key(&self.name, &labels)],
            Kind::Summary => {
                vec![key(&format!("{}_count", self.name), &labels), key(&format!("{}_sum", self.name), &labels)]
            }
            Kind::Histogram(bounds) => {
                let mut keys = vec![key(&format!("{}_sum", self.name), &labels)];
                let bucket = format!("{}_bucket", self.name);
                let at = labels.partition_point(|(name, _)| *name < "le");
                for bound in bounds {
                    let le = go_float(*bound);
                    let mut with_le = labels.clone();
                    with_le.insert(at, ("le", &le));
                    keys.push(key(&bucket, &with_le));
                }
                keys
            }
        }
    }
}

/// prometheus_client's default histogram buckets (`+Inf` is added).
pub const DEFAULT_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

/// Bucket bounds as Python prepares them: sorted, `+Inf` appended when missing, at
/// least two in all. Unlike Python, NaN and repeated bounds are refused.
pub(crate) fn prepare_buckets(name_hint: &str, bounds: &[f64]) -> Result<Vec<f64>> {
    let mut out = bounds.to_vec();
    if out.last() != Some(&f64::INFINITY) {
        out.push(f64::INFINITY);
    }
    validate_buckets(name_hint, &out)?;
    Ok(out)
}

fn validate_buckets(name: &str, bounds: &[f64]) -> Result<()> {
    let bad =
        |why: &'static str| Error::new(ErrorKind::InvalidBuckets).about(format!("{name}: {bounds:?}")).expected(why);
    if bounds.iter().any(|b| b.is_nan()) {
        return Err(bad("no NaN bound"));
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("strictly increasing bounds"));
    }
    if bounds.len() < 2 {
        return Err(bad("at least one bound besides +Inf"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_name_follows_python_build_full_name() {
        let o = Opts::new("c", "h").namespace("ns").subsystem("ss");
        assert_eq!(o.full_name(true).unwrap(), "ns_ss_c");
        assert_eq!(Opts::new("x_total", "h").full_name(true).unwrap(), "x");
        assert_eq!(Opts::new("x_total", "h").full_name(false).unwrap(), "x_total");
        assert_eq!(Opts::new("lat_seconds", "h").unit("seconds").full_name(false).unwrap(), "lat_seconds");
        assert_eq!(Opts::new("temp", "h").unit("celsius").full_name(false).unwrap(), "temp_celsius");
        assert_eq!(Opts::new("", "h").full_name(false).unwrap_err().kind(), ErrorKind::InvalidMetricName);
        assert_eq!(Opts::new("a-b", "h").full_name(false).unwrap_err().kind(), ErrorKind::InvalidMetricName);
    }

    #[test]
    fn reserved_and_invalid_label_names_are_refused_at_declaration() {
        let o = Opts::new("m", "h");
        let err = |kind: Kind, labels: &[&str]| Decl::new(&o, kind, labels).unwrap_err().kind();
        assert_eq!(err(Kind::Histogram(vec![1.0, f64::INFINITY]), &["le"]), ErrorKind::InvalidLabelName);
        assert_eq!(err(Kind::Summary, &["quantile"]), ErrorKind::InvalidLabelName);
        assert_eq!(err(Kind::Gauge(GaugeMode::All), &["pid"]), ErrorKind::InvalidLabelName);
        assert_eq!(err(Kind::Counter, &["__x"]), ErrorKind::InvalidLabelName);
        assert_eq!(err(Kind::Counter, &["a", "a"]), ErrorKind::InvalidLabelName);
        assert_eq!(err(Kind::Counter, &["1a"]), ErrorKind::InvalidLabelName);
        assert!(Decl::new(&o, Kind::Counter, &["le", "pid", "quantile"]).is_ok());
    }

    #[test]
    fn histogram_keys_put_le_in_sorted_position() {
        let d =
            Decl::new(&Opts::new("lat", "L"), Kind::Histogram(vec![0.5, 1.0, f64::INFINITY]), &["route", "a"]).unwrap();
        let keys: Vec<String> =
            d.keys(&["/x", "y"]).into_iter().map(|k| String::from_utf8(k.into()).unwrap()).collect();
        assert_eq!(keys[0], r#"["lat", "lat_sum", {"a": "y", "route": "/x"}, "L"]"#);
        assert_eq!(keys[1], r#"["lat", "lat_bucket", {"a": "y", "le": "0.5", "route": "/x"}, "L"]"#);
        assert_eq!(keys[3], r#"["lat", "lat_bucket", {"a": "y", "le": "+Inf", "route": "/x"}, "L"]"#);
    }

    #[test]
    fn buckets_get_inf_and_must_increase() {
        assert_eq!(prepare_buckets("h", &[1.0, 2.0]).unwrap(), vec![1.0, 2.0, f64::INFINITY]);
        assert_eq!(prepare_buckets("h", &[2.0, 1.0]).unwrap_err().kind(), ErrorKind::InvalidBuckets);
        assert_eq!(prepare_buckets("h", &[]).unwrap_err().kind(), ErrorKind::InvalidBuckets);
        assert_eq!(prepare_buckets("h", &[f64::NAN]).unwrap_err().kind(), ErrorKind::InvalidBuckets);
    }
}
