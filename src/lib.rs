//! Prometheus metrics for pre-fork servers.
//!
//! A master process forks N workers. Each worker writes its counters, gauges,
//! histograms and summaries into memory-mapped files under the directory named by
//! `PROMETHEUS_MULTIPROC_DIR`; at scrape time a collector merges every worker's files
//! into one exposition. The files are byte-compatible with the multiprocess mode of
//! Python's `prometheus_client` 0.26: Python reads what this crate writes, and this
//! crate reads what Python writes, so Rust and Python workers can share a directory.
//!
//! # Quick start
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # unsafe { std::env::set_var("PROMETHEUS_MULTIPROC_DIR", dir.path()) };
//! use prometheus_multiproc::{GaugeMode, Opts, Registry, DEFAULT_BUCKETS};
//!
//! let registry = Registry::from_env()?; // $PROMETHEUS_MULTIPROC_DIR
//! let requests = registry.counter_family(Opts::new("http_requests_total", "Requests."), &["route", "status"])?;
//! let latency = registry.histogram_family(Opts::new("http_request_duration_seconds", "Latency."), &DEFAULT_BUCKETS, &["route"])?;
//! let in_flight = registry.gauge(Opts::new("http_in_flight", "Requests in flight."), GaugeMode::LiveSum)?;
//!
//! // In each worker, per request (handles are cheap to clone and never fail):
//! let _in_flight = in_flight.track_inprogress(); // down again when dropped
//! requests.labels(&["/", "200"]).inc(); // infallible lookup
//! let timer = latency.labels(&["/"]).start_timer(); // observes when dropped
//! drop(timer);
//! assert_eq!(requests.labels(&["/", "200"]).get(), 1.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it works
//!
//! * **Files.** Each process writes `counter_ID.db`, `histogram_ID.db`,
//!   `summary_ID.db` and `gauge_MODE_ID.db`, where `ID` is its pid or a stable
//!   [`WorkerId`]. The byte format is specified in [`format`](mod@format), and every
//!   name in the directory (liveness, temporary and compaction files too) in
//!   [`format::names`].
//! * **Handles.** Creating a metric or a labeled child is fallible (bad names, wrong
//!   label count, a full disk); using it is not. `inc` and `set` are one atomic
//!   operation on the shared mapping, `observe` two: no lock, allocation or system
//!   call, except in the first write after `fork()` or a worker-ID change, which moves
//!   the registry's series into this process's files (call
//!   [`Registry::after_fork`] in the worker to do that up front; the exact costs are
//!   in [`metrics`](mod@metrics)).
//! * **Growth.** Files start at 64 KiB and double. Old mappings are never unmapped,
//!   so a handle stays valid however much its file grows.
//! * **Fork.** A handle created before `fork()` writes, in the child, to the child's
//!   own files: a `pthread_atfork` hook bumps a process epoch, and each handle
//!   compares its own epoch with it before writing: one relaxed load of the process
//!   epoch and a compare with the handle's (an acquire load of the handle's own
//!   field, which on x86-64 is an ordinary load; it orders the re-pointed slots).
//!   The child re-creates every live series in its own files, in creation order, as
//!   Python does. A worker can also adopt a stable slot with [`set_worker_id`], or
//!   be given an automatic one ([`WorkerId::auto`], `PROMETHEUS_MULTIPROC_WORKER_ID=auto:web`):
//!   at its first write it claims the lowest slot `web-N` whose liveness lock is
//!   free, so recycled workers continue their predecessors' files and a master that
//!   never writes claims none.
//! * **Full disk.** Blocks are reserved with `fallocate` before a page is touched,
//!   so running out of space is an error when a series is created. Existing series
//!   keep counting, and no write ever raises SIGBUS.
//!
//! # Scraping
//!
//! In the process that serves `/metrics` (the master, or any worker), a [`Collector`]
//! merges the directory and [`render`] negotiates the format with the request's
//! headers:
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use prometheus_multiproc::{Collector, Opts, Registry, render};
//!
//! # let registry = Registry::builder().dir(dir.path()).build()?;
//! # registry.counter(Opts::new("jobs_total", "Jobs done."))?.inc();
//! // Collector::from_env() reads $PROMETHEUS_MULTIPROC_DIR.
//! let collector = Collector::new(dir.path())?; // keep it: repeat scrapes reuse its state
//! let scrape = collector.collect()?; // fails only if the directory cannot be listed
//! for bad in &scrape.skipped {
//!     eprintln!("skipped {}: {}", bad.path.display(), bad.reason);
//! }
//! let page = render(&scrape, None /* Accept */, None /* Accept-Encoding */);
//! assert_eq!(page.content_type, "text/plain; version=0.0.4; charset=utf-8");
//! assert_eq!(page.body, b"# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total 1.0\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! * **Same bytes as Python.** Files are merged in sorted name order by
//!   prometheus_client's rules, and the text and OpenMetrics outputs are byte-identical
//!   to its `generate_latest` over the same files (see [`collect`] and [`expose`]).
//! * **One bad file never fails a scrape.** Truncated, corrupt, foreign or unreadable
//!   files, and anything not a regular file, are skipped whole, logged, and listed in
//!   [`Scrape::skipped`].
//! * **No live writer waits, bounded.** The collector maps files read-only and reads
//!   each value with one atomic load; a live writer never waits for it. Dead writers'
//!   files are copied with `pread` instead (nothing writes them; the scrape holds the
//!   dead writer's liveness file with a shared lock meanwhile, for microseconds, so a
//!   new writer taking that slot at that moment retries 5 ms later) the first time
//!   they are seen, and
//!   whenever the collector already keeps its bound of mappings (16,384,
//!   [`Collector::with_max_kept_mappings`]), past which other files are mapped only
//!   while read: no directory is too large to scrape. Repeat scrapes parse only new
//!   entries.
//!
//! # Gauge modes
//!
//! [`GaugeMode`] chooses how a gauge merges across processes: `all`/`liveall` (one
//! series per process, `pid` label), `min`, `max`, `sum`, `mostrecent`, each with a
//! `live` variant that counts only live processes.
//!
//! # Labels
//!
//! A labeled metric is a [`Family`]: one child series per combination of label values,
//! created on first use. Three ways to look a child up, all without a lock, and without
//! allocating when the child exists:
//!
//! * [`Family::labels`] never fails: it takes any [`LabelSet`] (an array, slice or
//!   `Vec` of `AsRef<str>`, or a tuple of strings, integers, bools and enums) and, when
//!   no child can be had (a wrong number of values, a full disk), returns a handle that
//!   drops its writes, counted by reason and logged once per family;
//! * [`Family::get`] and [`Family::with`] are its fallible forms, for callers who want
//!   the error;
//! * a [`TypedFamily`] takes its label names from a type, usually a struct with
//!   `#[derive(LabelSet)]` (cargo feature `derive`), and its values as that type, so a
//!   wrong count, order or value type does not compile.
//!
//! Label values name themselves through [`LabelValue`]: strings as they are, integers in
//! decimal, `bool` as `true`/`false`, enums with `#[derive(LabelValue)]` by their
//! variant names as written (or renamed).
//!
#![cfg_attr(feature = "derive", doc = "```")]
#![cfg_attr(not(feature = "derive"), doc = "```ignore")]
//! # let dir = tempfile::tempdir()?;
//! use prometheus_multiproc::{Collector, LabelSet, LabelValue, Opts, Registry};
//!
//! #[derive(LabelValue)]
//! #[label(rename_all = "UPPERCASE")]
//! enum Method { Get, Post }
//!
//! #[derive(LabelSet)]
//! struct Request { method: Method, status: u16 }
//!
//! let registry = Registry::builder().dir(dir.path()).build()?;
//! let untyped = registry.counter_family(Opts::new("untyped_total", "Requests."), &["method", "status"])?;
//! untyped.labels(&["GET", "200"]).inc();
//! untyped.labels(&("GET", 200)).inc(); // a tuple: the integer is formatted on the stack
//!
//! let typed = registry.typed_counter_family::<Request>(Opts::new("typed_total", "Requests."))?;
//! typed.labels(&Request { method: Method::Post, status: 201 }).inc();
//!
//! let scrape = Collector::new(dir.path())?.collect()?;
//! assert_eq!(scrape.value("untyped_total", &[("method", "GET"), ("status", "200")]), Some(2.0));
//! assert_eq!(scrape.value("typed_total", &[("method", "POST"), ("status", "201")]), Some(1.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Integrations (cargo features, none on by default)
//!
//! * `derive`: `#[derive(LabelSet)]` and `#[derive(LabelValue)]`, from the workspace's
//!   `prometheus-multiproc-derive` crate (see [Labels](#labels)).
//! * `prometheus`: `integrations::prometheus::PrometheusCollector`, a tikv
//!   `prometheus` 0.14 `Collector` that puts the merged families into a
//!   `prometheus::Registry`.
//! * `prometheus-client`: `integrations::prometheus_client::PrometheusClientCollector`,
//!   a `prometheus-client` 0.26 `Collector` for `Registry::register_collector`.
//! * `metrics`: `integrations::metrics::MultiprocRecorder`, a `metrics` 0.24
//!   `Recorder` that writes `metrics::counter!`, `gauge!` and `histogram!` into this
//!   crate's files.
//!
//! # Serving and pushing (cargo features `http`, `tls`, `cli`, on by default)
//!
//! * [`serve::serve`] serves `/metrics` over HTTP (hyper), with the same negotiation
//!   as [`render`], gzip, optional basic authentication and TLS (rustls), and limits
//!   against slow or oversized requests. It listens on **`127.0.0.1:9464`** unless
//!   told otherwise; see [`serve`] for how to expose it safely.
//! * [`push::push`] sends the merged metrics to a Prometheus Pushgateway, for batch
//!   jobs.
//! * The `prometheus-multiproc` binary: `scrape`, `inspect`, `serve`, `push`,
//!   `mark-dead`, `compact` and `clear` on a directory (`prometheus-multiproc --help`).
//!   Its logic is `cli::main` (feature `cli`), which other front ends call too. With
//!   feature `mimalloc` (on by default) the binary allocates through mimalloc on
//!   transparent huge pages, except in `serve`; the library leaves the allocator to the
//!   program that embeds it.
//!
//! Without default features the crate has none of their dependencies (hyper, tokio,
//! rustls, clap, mimalloc).
//!
//! # Safety model
//!
//! `unsafe` is denied crate-wide except in one private module (`region`), which maps
//! files, hands out bounds- and alignment-checked atomics, installs the fork hooks and
//! the `SIGBUS` guard; each block there argues its soundness. Shared memory is only
//! accessed through atomics.
//!
//! The `SIGBUS` guard: a page of a file mapping past the end of its file raises
//! `SIGBUS` when touched. Neither this crate's writers nor Python's ever shrink a file,
//! but something else might (an operator's `truncate`, a stray cleanup job). At the
//! first mapping the crate installs a process-wide `SIGBUS` handler that, for a fault
//! with `si_code == BUS_ADRERR` inside one of its own mappings only, maps a zero page
//! over the missing one and marks the mapping: a scrape then skips the file
//! ([`SkipReason::Truncated`]), a writer's later series creation in it fails
//! ([`ErrorKind::CorruptFile`]), and nobody dies. What it does not tell apart: the
//! kernel also reports an I/O error reading a page of a mapped file as `BUS_ADRERR`;
//! inside our mappings that is handled like a truncation. Every other `SIGBUS` (a
//! hardware memory error, a fault outside our mappings, a `kill -BUS`) goes to the
//! action installed before ours, or, if that was the default, takes the default action
//! (the process dies with a core dump), as it would have without the crate.
//!
//! Chaining: a program that installs its own `SIGBUS` handler after the crate's first
//! mapping must pass the faults it does not own to the action it replaced (ours), or
//! truncated metrics files kill it again. A program that wants no handler of ours in
//! the chain turns the guard off before the first mapping:
//! [`disable_sigbus_guard`], [`RegistryBuilder::sigbus_guard`]`(false)`, or
//! `PROMETHEUS_MULTIPROC_SIGBUS_GUARD=off` in the environment.
//!
//! The `fork()` hooks: the child hook runs only async-signal-safe code (atomic stores
//! and `close(2)`): it starts a new process epoch, closes the child's copies of the
//! parent's liveness locks and resets the fork guard with one store. The guard is a
//! reader count with a "fork pending" bit in one word, not a library lock: the
//! prepare hook marks the fork pending and waits until no thread is creating series or
//! re-resolving handles, so the child starts with no such operation half done and no
//! waiter queued anywhere.
//!
//! # Assumptions and limits
//!
//! * Linux 3.15 or later (uses `fallocate`, open-file-description locks,
//!   `pthread_atfork`), 64-bit atomics, and a little-endian target: values are stored
//!   in native byte order on the hot path and the format is little-endian, so the
//!   crate does not compile for a big-endian target.
//! * One live process per worker ID (enforced: a second one is refused).
//! * Metric and label names follow the classic Prometheus rules
//!   (`[a-zA-Z_:][a-zA-Z0-9_:]*`, labels without `:` or a `__` prefix).
//! * A file is at most 2 GiB (the format's `used` is an `i32`).
//! * A directory of many thousands of small files costs system calls per file on every
//!   scrape (an `lstat` per file while mappings are kept; past the bound an open, a
//!   `pread` or a mapping, and a close) until compaction folds dead writers' files (see
//!   [`cleanup`]).
//! * `fork()` copies only the calling thread. Forking while another thread declares a
//!   metric (a [`Registry`] method) or is inside [`Family::get`] or [`Family::with`]
//!   may leave that registry's or family's lock held in the child, which then blocks
//!   on it. Fork before starting threads that create metrics, or from a quiet moment
//!   (every pre-fork server forks from a single-threaded master). Creating series and
//!   re-resolving handles are guarded: a fork waits for them.

#[cfg(target_endian = "big")]
compile_error!(
    "prometheus-multiproc supports little-endian targets only: its files are little-endian (as Python writes \
     them on x86-64 and arm64) and its writers store values in native byte order"
);

pub mod cleanup;
#[cfg(feature = "cli")]
pub mod cli;
pub mod collect;
pub mod error;
pub mod expose;
mod file;
pub mod format;
#[cfg(any(feature = "prometheus", feature = "prometheus-client", feature = "metrics", feature = "tower"))]
pub mod integrations;
mod liveness;
pub mod metrics;
#[cfg(feature = "http")]
pub mod push;
mod region;
mod registry;
#[cfg(feature = "http")]
pub mod serve;
mod writer;

pub use collect::{Collector, MetricFamily, MetricType, Sample, Scrape, SkipReason, SkippedFile};
pub use error::{Error, ErrorKind, Result};
pub use expose::{Escaping, Format, Rendered, negotiate, render};
pub use format::names::{GaugeMode, WorkerId};
pub use metrics::{
    Amount, Counter, DEFAULT_BUCKETS, Family, Gauge, Histogram, InProgress, Metric, OVERFLOW_LABEL_VALUE, Opts,
    PythonSample, RawValue, Summary, Timer, exponential_buckets, exponential_buckets_range, linear_buckets,
};
pub use metrics::{LabelBuf, LabelSet, LabelValue, NamedLabelSet, TypedFamily};
/// The derives of the traits of the same names (feature `derive`): see
/// [`LabelSet`](trait@LabelSet) and [`LabelValue`](trait@LabelValue).
#[cfg(feature = "derive")]
pub use prometheus_multiproc_derive::{LabelSet, LabelValue};
pub use region::{SIGBUS_GUARD_ENV, disable_sigbus_guard};
pub use registry::{
    DIR_ENV, DIR_ENV_DEPRECATED, DROPPED_SERIES_METRIC, Lazy, Registry, RegistryBuilder, default_registry,
    dir_from_env, set_default_registry,
};
pub use writer::{WORKER_ID_ENV, set_worker_id};

/// The README's examples run as doctests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
