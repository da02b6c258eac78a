//! Per-worker process metrics, read by the scraper from `/proc` (opt-in:
//! [`Collector::with_process_metrics`](super::Collector::with_process_metrics)).
//!
//! For every writer of ours that is alive (its liveness lock is held), the pid it wrote
//! into its liveness file names the process whose `/proc/PID/stat`, `/proc/PID/fd` and
//! `/proc/PID/limits` give Python's `ProcessCollector` metrics, one series per worker
//! (label `worker`). Nothing is written by the workers and nothing runs in them: the
//! cost is the scraper's, about four small `/proc` reads and one directory listing per
//! live worker per scrape.
//!
//! Limits: the scraper must see the workers' pids (the same pid namespace: a scraper in
//! another container sees nothing, or the wrong process, and says nothing about it);
//! `/proc/PID/fd` needs the workers' user or `CAP_SYS_PTRACE`, so a scraper running as
//! another user gets no `process_open_fds` (the other metrics are world-readable unless
//! `/proc` is mounted with `hidepid`); stock Python workers hold no liveness lock and
//! get no series.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use super::model::{MetricFamily, MetricType, Sample};

/// What one live worker's process reports; `None` where `/proc` would not say.
#[derive(Debug, Default)]
struct Reading {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
    start_time_seconds: Option<f64>,
}

/// The six families, one series per live worker of ours in `dir`, workers sorted by ID.
pub(crate) fn families(dir: &Path) -> Vec<MetricFamily> {
    let readings: Vec<(String, Reading)> = live_workers(dir).into_iter().map(|(id, pid)| (id, read(pid))).collect();
    let family = |name: &str, help: &str, kind: MetricType, value: fn(&Reading) -> Option<f64>| {
        let sample_name: Arc<str> =
            if kind == MetricType::Counter { format!("{name}_total").into() } else { name.into() };
        let samples = readings
            .iter()
            .filter_map(|(id, r)| {
                Some(Sample {
                    name: Arc::clone(&sample_name),
                    labels: Arc::new([(Arc::from("worker"), Arc::from(id.as_str()))]),
                    value: value(r)?,
                })
            })
            .collect();
        MetricFamily { name: name.into(), help: help.into(), kind, samples }
    };
    vec![
        family("process_cpu_seconds", "Total user and system CPU time spent in seconds.", MetricType::Counter, |r| {
            r.cpu_seconds
        }),
        family("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge, |r| r.virtual_bytes),
        family("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge, |r| {
            r.resident_bytes
        }),
        family(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            MetricType::Gauge,
            |r| r.start_time_seconds,
        ),
        family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, |r| r.open_fds),
        family("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge, |r| r.max_fds),
    ]
}

/// `(worker ID, pid)` of every live writer of ours in `dir`, sorted by ID.
fn live_workers(dir: &Path) -> Vec<(String, i32)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut live: Vec<(String, i32)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name();
            let id = name.to_str()?.strip_prefix("writer_")?.strip_suffix(".lock")?.to_owned();
            if !entry.file_type().ok()?.is_file()
                || crate::liveness::liveness(dir, &id) != crate::liveness::Liveness::Alive
            {
                return None;
            }
            Some((id, pid_in(&entry.path())?))
        })
        .collect();
    live.sort();
    live
}

/// The pid a writer wrote into its liveness file (never through a symlink).
fn pid_in(path: &Path) -> Option<i32> {
    let mut text = String::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?
        .take(32)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok().filter(|pid| *pid > 0)
}

fn read(pid: i32) -> Reading {
    let mut reading = Reading::default();
    let Ok(process) = procfs::process::Process::new(pid) else { return reading };
    if let Ok(stat) = process.stat() {
        let ticks = procfs::ticks_per_second() as f64;
        reading.cpu_seconds = Some((stat.utime + stat.stime) as f64 / ticks);
        reading.virtual_bytes = Some(stat.vsize as f64);
        reading.resident_bytes = Some(stat.rss as f64 * procfs::page_size() as f64);
        if let Ok(boot) = procfs::boot_time_secs() {
            reading.start_time_seconds = Some(boot as f64 + stat.starttime as f64 / ticks);
        }
    }
    reading.open_fds = process.fd_count().ok().map(|n| n as f64);
    if let Ok(limits) = process.limits() {
        reading.max_fds = match limits.max_open_files.soft_limit {
            procfs::process::LimitValue::Value(n) => Some(n as f64),
            procfs::process::LimitValue::Unlimited => Some(f64::INFINITY),
        };
    }
    reading
}
