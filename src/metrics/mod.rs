//! The metric handles: one type per file, all created fallibly by a
//! [`Registry`](crate::Registry) and used infallibly.
//!
//! A handle is an `Arc` to its series: cheap to clone and `Send + Sync`.
//!
//! # The hot path, exactly
//!
//! Every write first compares the handle's epoch with the process's (two loads), then:
//!
//! | operation | on the shared mapping |
//! |---|---|
//! | `Counter::inc`/`inc_by`, `Gauge::inc`/`dec` | one compare-and-swap loop on the value's bits |
//! | `Gauge::set` | one store; in the `mostrecent` modes two (value, then timestamp) and a clock read (`clock_gettime`, served by the vDSO on Linux, not a system call) |
//! | `Histogram::observe` | two compare-and-swap loops (`_sum`, then the bucket) |
//! | `Summary::observe` | two compare-and-swap loops (`_count`, then `_sum`) |
//!
//! No lock, no allocation, no system call, **with two exceptions**.
//!
//! * A refused write (a negative counter increment, `inc` on a `mostrecent` gauge)
//!   writes nothing and counts the refusal with one atomic add; the first refusal of
//!   each reason in the process also logs a warning (an allocation and the logger's
//!   own I/O, once).
//! * The first write through any handle of a registry in a new process epoch (the first
//!   after `fork()`, or after [`set_worker_id`](crate::set_worker_id)), and with an
//!   automatic worker ID ([`WorkerId::auto`](crate::WorkerId::auto)) the first write in
//!   the process at all, re-resolves every series of that registry into this process's
//!   own files (claiming the slot). That write takes the fork guard and the
//!   registry's state lock, takes the worker ID's liveness lock (waiting up to 1 s for a
//!   holder that is exiting, up to 60 s while a compaction folds that ID), opens and
//!   reads the files and writes each file's entries with one `pwrite`. A worker calls
//!   [`Registry::after_fork`](crate::Registry::after_fork) right after `fork()` to do this
//!   work there instead of inside its first request.

mod amount;
mod buckets;
mod children;
mod counter;
mod family;
mod gauge;
mod histogram;
mod labels;
pub(crate) mod opts;
mod raw;
mod summary;
mod timer;
mod typed;

pub use amount::Amount;
pub use buckets::{exponential_buckets, exponential_buckets_range, linear_buckets};
pub use counter::Counter;
pub use family::{Family, Metric};
pub use gauge::{Gauge, GaugeMode};
pub use histogram::Histogram;
pub use labels::{LabelBuf, LabelSet, LabelValue, MAX_INLINE_LABELS, NamedLabelSet};
pub use opts::{DEFAULT_BUCKETS, OVERFLOW_LABEL_VALUE, Opts};
pub use raw::{PythonSample, RawValue};
pub use summary::Summary;
pub use timer::{InProgress, Timer};
pub use typed::TypedFamily;
