//! The Prometheus text format (0.0.4, which is also the 1.0.0 body), exactly as
//! prometheus_client 0.26's `exposition.generate_latest` writes it.

use std::sync::Arc;

use super::Escaping;
use super::escape::{self, is_legacy_metric_name};
use crate::collect::{MetricFamily, MetricType, Sample};
use crate::format::float::write_go_float;

/// Samples Python moves out of their family into a gauge family of their own, in the
/// order it prints those (sorted by suffix).
const OM_ONLY_SUFFIXES: [&str; 3] = ["_created", "_gcount", "_gsum"];

/// Appends the text exposition of `families` to `out`.
///
/// Per family: `# HELP` (backslash and newline escaped) and `# TYPE`, a counter's name
/// with `_total` appended; then one line per sample, labels in name order, values
/// spelled by `floatToGoString`. Names outside the legacy character set are escaped
/// by `escaping` (quoted only with [`Escaping::AllowUtf8`]).
pub fn encode_text(families: &[MetricFamily], escaping: Escaping, out: &mut String) {
    encode_text_with(families, escaping, out, &mut Names::default());
}

/// [`encode_text`], with `names` (which may record where each value went).
pub(super) fn encode_text_with(families: &[MetricFamily], escaping: Escaping, out: &mut String, names: &mut Names) {
    let mut name = String::new();
    for (f, family) in families.iter().enumerate() {
        name.clear();
        name.push_str(&family.name);
        if family.kind == MetricType::Counter {
            name.push_str("_total");
        }
        header(out, &name, &family.help, false, family.kind.as_str(), escaping);
        let mut deferred = [const { Vec::new() }; 3];
        for (s, sample) in family.samples.iter().enumerate() {
            match om_only(&family.name, &sample.name) {
                Some(i) => deferred[i].push((s, sample)),
                None => {
                    names.at = (f, s);
                    sample_line(out, sample, escaping, names);
                }
            }
        }
        for (suffix, samples) in OM_ONLY_SUFFIXES.iter().zip(deferred) {
            if samples.is_empty() {
                continue;
            }
            name.clear();
            name.push_str(&family.name);
            name.push_str(suffix);
            header(out, &name, &family.help, false, "gauge", escaping);
            for (s, sample) in samples {
                names.at = (f, s);
                sample_line(out, sample, escaping, names);
            }
        }
    }
}

/// Which of [`OM_ONLY_SUFFIXES`] `sample` is, if it is `family` plus one of them.
fn om_only(family: &str, sample: &str) -> Option<usize> {
    let suffix = sample.strip_prefix(family)?;
    OM_ONLY_SUFFIXES.iter().position(|s| *s == suffix)
}

/// `# HELP` and `# TYPE` lines. Text help escapes backslash and newline; OpenMetrics
/// help (`quote_help`) also `"`.
pub(super) fn header(out: &mut String, name: &str, help: &str, quote_help: bool, typ: &str, escaping: Escaping) {
    out.push_str("# HELP ");
    escape::metric_name(out, name, escaping);
    out.push(' ');
    escape::quoted_text(out, help, quote_help);
    out.push_str("\n# TYPE ");
    escape::metric_name(out, name, escaping);
    out.push(' ');
    out.push_str(typ);
    out.push('\n');
}

fn sample_line(out: &mut String, sample: &Sample, escaping: Escaping, names: &mut Names) {
    sample_line_with(out, sample, escaping, escape::metric_name, names);
}

/// Names as escaped, remembered by their string's allocation: the samples of a family
/// share their name and label-name strings (the collector interns them), so each is
/// checked and escaped once per encoding rather than once per sample (that was a fifth
/// of rendering 10,000 samples). Also where each value was written, when asked (for a
/// [`super::template::Template`]).
#[derive(Default)]
pub(super) struct Names {
    /// Where each value was written, if recorded.
    pub(super) values: Option<Vec<ValueAt>>,
    /// The (family, sample) index of the sample being written.
    pub(super) at: (usize, usize),
    /// The name, which escaping it went through, and where its escaped form is in `text`.
    seen: Vec<(Arc<str>, Kind, usize, usize)>,
    text: String,
    /// The entry to replace next once `seen` is full.
    next: usize,
}

/// Where a value was written: `start..end` in the output, and the (family, sample)
/// index of its sample.
pub(super) struct ValueAt {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) sample: (usize, usize),
}

/// Which escaping a remembered name went through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Quoted,
    Label,
}

/// How many names [`Names`] remembers.
const NAMES_KEPT: usize = 16;

impl Names {
    fn write(&mut self, out: &mut String, name: &Arc<str>, kind: Kind, escape: impl Fn(&mut String, &str)) {
        if let Some(&(_, _, start, end)) = self.seen.iter().find(|(n, k, ..)| *k == kind && Arc::ptr_eq(n, name)) {
            out.push_str(&self.text[start..end]);
            return;
        }
        if self.text.len() > 1 << 16 {
            self.seen.clear();
            self.text.clear();
        }
        let start = self.text.len();
        escape(&mut self.text, name);
        let end = self.text.len();
        out.push_str(&self.text[start..end]);
        let entry = (Arc::clone(name), kind, start, end);
        if self.seen.len() < NAMES_KEPT {
            self.seen.push(entry);
        } else {
            self.seen[self.next % NAMES_KEPT] = entry;
            self.next += 1;
        }
    }
}

/// One sample line of either format. A name that must be quoted (not legacy, under
/// `allow-utf-8`) moves inside the braces; any other name is written by `plain_name`
/// (the formats differ there: text escapes it as a metric name, OpenMetrics with the
/// label-name character set).
pub(super) fn sample_line_with(
    out: &mut String,
    sample: &Sample,
    escaping: Escaping,
    plain_name: fn(&mut String, &str, Escaping),
    names: &mut Names,
) {
    let quoted = escaping == Escaping::AllowUtf8 && !is_legacy_metric_name(&sample.name);
    if quoted {
        out.push('{');
        names.write(out, &sample.name, Kind::Quoted, |out, s| escape::metric_name(out, s, escaping));
        if !sample.labels.is_empty() {
            out.push(',');
            labels(out, sample, escaping, names);
        }
        out.push('}');
    } else {
        names.write(out, &sample.name, Kind::Plain, |out, s| plain_name(out, s, escaping));
        if !sample.labels.is_empty() {
            out.push('{');
            labels(out, sample, escaping, names);
            out.push('}');
        }
    }
    out.push(' ');
    let start = out.len();
    write_go_float(out, sample.value);
    if let Some(values) = &mut names.values {
        values.push(ValueAt { start, end: out.len(), sample: names.at });
    }
    out.push('\n');
}

/// `name="value",…` (label values escape `\`, newline and `"` in both formats).
fn labels(out: &mut String, sample: &Sample, escaping: Escaping, names: &mut Names) {
    for (i, (name, value)) in sample.labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        names.write(out, name, Kind::Label, |out, s| escape::label_name(out, s, escaping));
        out.push_str("=\"");
        escape::quoted_text(out, value, true);
        out.push('"');
    }
}
