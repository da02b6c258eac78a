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
    let mut names = Names::default();
    for family in families {
        header(out, &family.name, &family.help, true, family.kind.as_str(), escaping);
        for sample in &family.samples {
            sample_line_with(out, sample, escaping, escape::om_sample_name, &mut names);
        }
    }
    out.push_str("# EOF\n");
}
