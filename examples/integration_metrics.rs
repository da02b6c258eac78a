//! The `metrics` integration: three worker processes are instrumented with the
//! `metrics` macros only, with [`MultiprocRecorder`] installed as their global
//! recorder; the serving process merges their files with a [`Collector`] and prints
//! the Prometheus text exposition (what Python's `MultiProcessCollector` would print).
//!
//! ```text
//! cargo run --example integration_metrics --features metrics
//! ```
//!
//! Uses `$PROMETHEUS_MULTIPROC_DIR` when set (files are left there), a temporary
//! directory otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use prometheus_multiproc::integrations::metrics::MultiprocRecorder;
use prometheus_multiproc::{Collector, DIR_ENV, Registry, render};

const WORKERS: u32 = 3;
const WORKER_ENV: &str = "INTEGRATION_EXAMPLE_WORKER";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    if let Ok(n) = std::env::var(WORKER_ENV) {
        return worker(n.parse()?);
    }
    let temp = tempfile::tempdir()?;
    let dir: PathBuf = std::env::var_os(DIR_ENV).map_or_else(|| temp.path().to_owned(), PathBuf::from);
    run_workers(&dir)?;

    let scrape = Collector::new(&dir)?.collect()?;
    let page = render(&scrape, None, None);
    println!("# {} from {}", page.content_type, dir.display());
    print!("{}", String::from_utf8(page.body)?);
    Ok(())
}

/// Worker `n`: the instrumentation a single-process program would have.
fn worker(n: u32) -> Result<()> {
    let recorder = MultiprocRecorder::builder(Registry::from_env()?)
        .buckets_for("http.request.duration", &[0.01, 0.1, 1.0])
        .build()?;
    let stats = recorder.clone();
    recorder.install().map_err(|_| "a global recorder is already installed")?;

    // Descriptions first: they are fixed when a name is first used.
    describe_counter!("http.requests", "Requests served.");
    describe_histogram!("http.request.duration", "Request latency in seconds.");
    describe_gauge!("connections.open", "Open connections (summed over live workers).");

    gauge!("connections.open").increment(2.0);
    for i in 0..=n {
        counter!("http.requests", "route" => "/", "status" => "200").increment(1);
        histogram!("http.request.duration", "route" => "/").record(0.004 * f64::from(i + 1));
    }
    counter!("http.requests", "status" => "404", "route" => "/missing").increment(1);
    gauge!("connections.open").decrement(1.0);
    // Refused (`le` is reserved for histogram buckets): a no-op handle, counted.
    histogram!("http.request.duration", "le" => "x").record(1.0);
    if n == 0 {
        eprintln!("worker {n}: {} registration(s) dropped", stats.dropped_registrations());
    }
    Ok(())
}

fn run_workers(dir: &Path) -> Result<()> {
    let exe = std::env::current_exe()?;
    for n in 0..WORKERS {
        let status = Command::new(&exe).env(WORKER_ENV, n.to_string()).env(DIR_ENV, dir).status()?;
        if !status.success() {
            return Err(format!("worker {n} failed: {status}").into());
        }
    }
    Ok(())
}
