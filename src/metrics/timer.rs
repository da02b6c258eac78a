//! Timers that observe a duration when they are dropped, and a guard that keeps a
//! gauge up while work is in progress.

use std::time::Instant;

use super::{Gauge, Histogram, Summary};

/// What a [`Timer`] records into.
#[derive(Debug, Clone)]
enum Target {
    Histogram(Histogram),
    Summary(Summary),
}

/// Measures the time from its start ([`Histogram::start_timer`],
/// [`Summary::start_timer`]) and observes it, in seconds, when dropped or stopped.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{Opts, Registry};
/// let registry = Registry::builder().dir(dir.path()).build()?;
/// let latency = registry.histogram(Opts::new("job_seconds", "Job time."), &[0.1, 1.0])?;
/// {
///     let _timer = latency.start_timer(); // observed when it goes out of scope
/// }
/// let seconds = latency.start_timer().stop_and_record();
/// assert!(seconds >= 0.0);
/// latency.start_timer().stop_and_discard(); // nothing observed
/// assert_eq!(latency.count(), 2.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "a timer observes when it is dropped: bind it (`let _timer = ...`), or the duration is ~0"]
pub struct Timer {
    target: Target,
    start: Instant,
    done: bool,
}

impl Timer {
    fn new(target: Target) -> Timer {
        Timer { target, start: Instant::now(), done: false }
    }

    pub(crate) fn for_histogram(histogram: &Histogram) -> Timer {
        Timer::new(Target::Histogram(histogram.clone()))
    }

    pub(crate) fn for_summary(summary: &Summary) -> Timer {
        Timer::new(Target::Summary(summary.clone()))
    }

    /// Seconds since the timer started.
    pub fn elapsed_seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Observes the elapsed time now and returns it, in seconds.
    pub fn stop_and_record(mut self) -> f64 {
        self.record()
    }

    /// Stops without observing; returns the elapsed seconds.
    pub fn stop_and_discard(mut self) -> f64 {
        self.done = true;
        self.elapsed_seconds()
    }

    fn record(&mut self) -> f64 {
        let seconds = self.elapsed_seconds();
        self.done = true;
        match &self.target {
            Target::Histogram(h) => h.observe(seconds),
            Target::Summary(s) => s.observe(seconds),
        }
        seconds
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if !self.done {
            self.record();
        }
    }
}

/// Adds one to a gauge while it lives, subtracting it again when dropped
/// ([`Gauge::track_inprogress`]), however the scope is left: return, `?` or panic.
///
/// In the `mostrecent` modes a gauge refuses `inc`/`dec`, so the guard changes nothing
/// there (the refusals are counted; see [`Gauge::inc`]). Use a `livesum` gauge for
/// work in progress: a worker that dies leaves the sum at once.
#[derive(Debug)]
#[must_use = "the gauge goes down again when the guard is dropped: bind it (`let _in_flight = ...`)"]
pub struct InProgress {
    gauge: Gauge,
}

impl InProgress {
    pub(crate) fn new(gauge: &Gauge) -> InProgress {
        gauge.inc();
        InProgress { gauge: gauge.clone() }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
