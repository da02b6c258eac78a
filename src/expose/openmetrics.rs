//! OpenMetrics 1.0.0, exactly as prometheus_client 0.26's
//! `openmetrics.exposition.generate_latest` writes it.

use super::Escaping;
use super::escape;
use super::text::{Names, header, sample_line_with};
use crate::collect::MetricFamily;

/// Appends the OpenMetrics exposition of `families`, ending with `# EOF`, to `out`.
///
/// Per family: `# HELP` (backslash, newline and `"` escaped) and `# TYPE` under the
/// family name (a counter's samples keep their `_total`); no `UNIT`, no `_created`,
/// no timestamps (the merged samples have none, as in Python).
pub fn encode_openmetrics(families: &[MetricFamily], escaping: Escaping, out: &mut String) {
    encode_openmetrics_with(families, escaping, out, &mut Names::default());
}

/// [`encode_openmetrics`], with `names` (which may record where each value went).
pub(super) fn encode_openmetrics_with(
    families: &[MetricFamily],
    escaping: Escaping,
    out: &mut String,
    names: &mut Names,
) {
    for (f, family) in families.iter().enumerate() {
        header(out, &family.name, &family.help, true, family.kind.as_str(), escaping);
        for (s, sample) in family.samples.iter().enumerate() {
            names.at = (f, s);
            sample_line_with(out, sample, escaping, escape::om_sample_name, names);
        }
    }
    out.push_str("# EOF\n");
}
