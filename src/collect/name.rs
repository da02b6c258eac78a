//! What a file's name says: its metric type, its gauge mode and its writer's pid,
//! read exactly as Python's `MultiProcessCollector` reads them
//! ([`names::python_view`], the one grammar of file names).

use std::sync::Arc;

use super::MetricType;
use crate::format::names::{self, FileKind as NameKind, GaugeMode};

/// The kind of a `*.db` file, from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileKind {
    /// The type of the families this file creates.
    pub(crate) typ: MetricType,
    /// For gauge files, their mode and the `pid` label of their samples.
    pub(crate) gauge: Option<(GaugeMode, Arc<str>)>,
}

/// Parses a file name as Python does (see [`names::python_view`]); `None` when Python
/// would fail the scrape on it.
pub(crate) fn parse_file_name(name: &str) -> Option<FileKind> {
    let view = names::python_view(name)?;
    let typ = match view.kind {
        NameKind::Counter => MetricType::Counter,
        NameKind::Histogram => MetricType::Histogram,
        NameKind::Summary => MetricType::Summary,
        NameKind::Gauge(_) => MetricType::Gauge,
    };
    let gauge = view.kind.gauge_mode().map(|mode| (mode, Arc::from(view.pid.unwrap_or(""))));
    Some(FileKind { typ, gauge })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_pids_come_from_the_shared_grammar() {
        assert_eq!(parse_file_name("counter_1.db").map(|k| k.typ), Some(MetricType::Counter));
        assert_eq!(parse_file_name("histogram_a_b.db").map(|k| k.typ), Some(MetricType::Histogram));
        let gauge = parse_file_name("gauge_livesum_web-3.db").and_then(|k| k.gauge);
        assert_eq!(gauge, Some((GaugeMode::LiveSum, Arc::from("web-3"))));
        assert_eq!(parse_file_name("gauge_bogus_1.db"), None);
    }
}
