//! The metric handles: one type per file, all created fallibly by a
//! [`Registry`](crate::Registry) and used infallibly.
//!
//! A handle is an `Arc` to its series: cheap to clone, `Send + Sync`, and each
//! `inc`/`set`/`observe` is one epoch check and one atomic read-modify-write on the
//! shared mapping: no lock, no allocation, no system call.

mod children;
mod counter;
mod family;
mod gauge;
mod histogram;
pub(crate) mod opts;
mod summary;

pub use counter::Counter;
pub use family::{Family, Metric};
pub use gauge::{Gauge, GaugeMode};
pub use histogram::Histogram;
pub use opts::{DEFAULT_BUCKETS, OVERFLOW_LABEL_VALUE, Opts};
pub use summary::Summary;
