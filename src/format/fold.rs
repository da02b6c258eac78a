//! How the values of one series from several files combine: the one set of rules that
//! both the collector's merge and compaction's archives follow, so that a folded
//! archive reads exactly as the files it replaces.
//!
//! These are the rules of Python's `MultiProcessCollector.merge(files, accumulate=True)`,
//! applied in file order (sorted names) and then entry order:
//!
//! | kind | rule |
//! |---|---|
//! | counter, histogram, summary, `sum`/`livesum` gauge | [`Fold::Sum`]: `0.0 + v1 + v2 + …` |
//! | `min`/`livemin` gauge | [`Fold::Min`]: the first value unless a later one is `<` it (a NaN seen first sticks, one seen later is ignored) |
//! | `max`/`livemax` gauge | [`Fold::Max`]: the same with `>` |
//! | `mostrecent`/`livemostrecent` gauge | [`Fold::MostRecent`]: the value whose timestamp is strictly greater than the best so far, starting from `0.0`: a series never `set()` (timestamp 0) is never shown |
//! | `all`/`liveall` gauge | [`Fold::Last`]: one series per writer (the `pid` label), so nothing folds; a repeated series keeps the last value |
//!
//! An accumulator is a `(value, timestamp)` pair; only [`Fold::MostRecent`] uses the
//! timestamp.

use crate::format::names::{FileKind, GaugeMode};

/// How the values of one series combine across files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Added up from `0.0`.
    Sum,
    /// The smallest, the first one winning ties and NaNs.
    Min,
    /// The largest, the first one winning ties and NaNs.
    Max,
    /// The one with the strictly newest timestamp above `0.0`.
    MostRecent,
    /// The last one (series of different writers never meet: they differ by `pid`).
    Last,
}

impl Fold {
    /// The rule for a gauge mode.
    pub fn of_gauge(mode: GaugeMode) -> Fold {
        match mode {
            GaugeMode::All | GaugeMode::LiveAll => Fold::Last,
            GaugeMode::Min | GaugeMode::LiveMin => Fold::Min,
            GaugeMode::Max | GaugeMode::LiveMax => Fold::Max,
            GaugeMode::Sum | GaugeMode::LiveSum => Fold::Sum,
            GaugeMode::MostRecent | GaugeMode::LiveMostRecent => Fold::MostRecent,
        }
    }

    /// The rule for the series of a file kind.
    pub fn of(kind: FileKind) -> Fold {
        match kind {
            FileKind::Counter | FileKind::Histogram | FileKind::Summary => Fold::Sum,
            FileKind::Gauge(mode) => Fold::of_gauge(mode),
        }
    }

    /// The accumulator after a series' first value.
    pub fn start(self, value: f64, timestamp: f64) -> (f64, f64) {
        match self {
            Fold::Sum => (0.0 + value, 0.0),
            Fold::Min | Fold::Max | Fold::Last => (value, 0.0),
            Fold::MostRecent => (value, timestamp),
        }
    }

    /// Folds a later value of the series into `acc`.
    pub fn fold(self, acc: &mut (f64, f64), value: f64, timestamp: f64) {
        match self {
            Fold::Sum => acc.0 += value,
            Fold::Min => {
                if value < acc.0 {
                    acc.0 = value;
                }
            }
            Fold::Max => {
                if value > acc.0 {
                    acc.0 = value;
                }
            }
            Fold::MostRecent => {
                if acc.1 < timestamp {
                    *acc = (value, timestamp);
                }
            }
            Fold::Last => acc.0 = value,
        }
    }

    /// Whether an accumulator holds a value to show: not a `mostrecent` series that was
    /// never set (timestamp not above `0.0`).
    pub fn is_shown(self, acc: (f64, f64)) -> bool {
        self != Fold::MostRecent || acc.1 > 0.0
    }

    /// Whether compaction folds the files of this kind into an archive: every kind but
    /// the live gauges (their values die with their writer) and the `all` gauges (each
    /// holds its writer's own `pid` series).
    pub fn folds_into_archive(kind: FileKind) -> bool {
        !kind.is_live() && Fold::of(kind) != Fold::Last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold_all(fold: Fold, values: &[(f64, f64)]) -> (f64, f64) {
        let mut acc = fold.start(values[0].0, values[0].1);
        for &(v, t) in &values[1..] {
            fold.fold(&mut acc, v, t);
        }
        acc
    }

    #[test]
    fn min_max_keep_the_first_nan_and_ignore_a_later_one() {
        assert!(fold_all(Fold::Min, &[(f64::NAN, 0.0), (1.0, 0.0)]).0.is_nan());
        assert_eq!(fold_all(Fold::Max, &[(1.0, 0.0), (f64::NAN, 0.0)]).0, 1.0);
        assert_eq!(fold_all(Fold::Min, &[(3.0, 0.0), (2.0, 0.0), (5.0, 0.0)]).0, 2.0);
    }

    #[test]
    fn sums_start_from_zero_and_mostrecent_needs_a_strictly_newer_timestamp() {
        assert_eq!(fold_all(Fold::Sum, &[(-0.0, 0.0)]).0.to_bits(), 0.0f64.to_bits());
        let recent = fold_all(Fold::MostRecent, &[(5.0, 100.0), (7.0, 100.0), (9.0, 0.0)]);
        assert_eq!(recent, (5.0, 100.0));
        assert!(Fold::MostRecent.is_shown(recent));
        assert!(!Fold::MostRecent.is_shown(Fold::MostRecent.start(1.0, 0.0)));
    }

    #[test]
    fn archives_fold_every_kind_but_live_and_all_gauges() {
        let folded: Vec<&str> =
            FileKind::ALL.into_iter().filter(|k| Fold::folds_into_archive(*k)).map(FileKind::prefix).collect();
        assert_eq!(
            folded,
            ["counter", "histogram", "summary", "gauge_min", "gauge_max", "gauge_sum", "gauge_mostrecent"]
        );
    }
}
