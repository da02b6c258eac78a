//! What a file's name says: its metric type, its gauge mode and its writer's pid,
//! parsed exactly as Python's `MultiProcessCollector` parses them.

use std::sync::Arc;

use super::MetricType;
use crate::format::names::GaugeMode;

/// The kind of a `*.db` file, from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileKind {
    /// The type of the families this file creates.
    pub(crate) typ: MetricType,
    /// For gauge files, their mode and the `pid` label of their samples.
    pub(crate) gauge: Option<(GaugeMode, Arc<str>)>,
}

/// Parses a file name (`counter_123.db`, `gauge_livesum_web-3.db`) as Python does:
/// `parts = name.split('_')`, the type is `parts[0]`; for gauges the mode is `parts[1]`
/// and the pid is `parts[2]` minus its last three characters. So an identifier that
/// contains `_` is truncated (`gauge_all_w_1.db` has pid `""`), as in Python.
///
/// `None` when the type or gauge mode is unknown, or a gauge file name has fewer than
/// three parts: Python fails the whole scrape on such a file; the collector skips it.
pub(crate) fn parse_file_name(name: &str) -> Option<FileKind> {
    let mut parts = name.split('_');
    let typ = match parts.next()? {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        _ => return None,
    };
    let second = parts.next()?;
    if typ != MetricType::Gauge {
        return Some(FileKind { typ, gauge: None });
    }
    let mode: GaugeMode = second.parse().ok()?;
    let third = parts.next()?;
    let keep = third.chars().count().saturating_sub(3);
    let pid = match third.char_indices().nth(keep) {
        Some((end, _)) => &third[..end],
        None => third,
    };
    Some(FileKind { typ, gauge: Some((mode, Arc::from(pid))) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(name: &str) -> Option<(GaugeMode, String)> {
        parse_file_name(name).and_then(|k| k.gauge).map(|(m, p)| (m, p.to_string()))
    }

    #[test]
    fn types_come_from_the_first_part() {
        assert_eq!(parse_file_name("counter_1.db").map(|k| k.typ), Some(MetricType::Counter));
        assert_eq!(parse_file_name("histogram_a_b.db").map(|k| k.typ), Some(MetricType::Histogram));
        assert_eq!(parse_file_name("summary_.db").map(|k| k.typ), Some(MetricType::Summary));
        assert_eq!(parse_file_name("counter.db"), None);
        assert_eq!(parse_file_name("foo_1.db"), None);
        assert_eq!(parse_file_name("Counter_1.db"), None);
    }

    #[test]
    fn gauge_pid_is_the_third_part_minus_three_characters() {
        assert_eq!(gauge("gauge_all_1001.db"), Some((GaugeMode::All, "1001".into())));
        assert_eq!(gauge("gauge_livesum_web-3.db"), Some((GaugeMode::LiveSum, "web-3".into())));
        assert_eq!(gauge("gauge_all_.db"), Some((GaugeMode::All, "".into())));
    }

    #[test]
    fn gauge_pid_with_underscore_is_truncated_like_python() {
        // 'w'[:-3] == '' and 'abcd'[:-3] == 'a' in Python.
        assert_eq!(gauge("gauge_all_w_1.db"), Some((GaugeMode::All, "".into())));
        assert_eq!(gauge("gauge_all_abcd_1.db"), Some((GaugeMode::All, "a".into())));
        // Characters, not bytes: 'éé.db'[:-3] == 'éé'.
        assert_eq!(gauge("gauge_max_éé.db"), Some((GaugeMode::Max, "éé".into())));
    }

    #[test]
    fn unknown_gauge_modes_and_short_gauge_names_are_rejected() {
        assert_eq!(parse_file_name("gauge_bogus_1.db"), None);
        assert_eq!(parse_file_name("gauge_all.db"), None);
        assert_eq!(parse_file_name("gauge.db"), None);
    }
}
