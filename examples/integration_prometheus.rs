//! The `prometheus` (tikv) integration: three worker processes write with this crate's
//! [`Registry`]; the serving process puts their merged metrics into a
//! `prometheus::Registry`, next to a native metric of its own, and prints what
//! `TextEncoder` makes of it.
//!
//! ```text
//! cargo run --example integration_prometheus --features prometheus
//! ```
//!
//! Uses `$PROMETHEUS_MULTIPROC_DIR` when set (files are left there), a temporary
//! directory otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use prometheus::{Encoder, IntGauge, TextEncoder};
use prometheus_multiproc::integrations::prometheus::PrometheusCollector;
use prometheus_multiproc::{DIR_ENV, Opts, Registry};

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

    let registry = prometheus::Registry::new();
    let workers = IntGauge::new("example_workers", "Workers the master started.")?;
    workers.set(i64::from(WORKERS));
    registry.register(Box::new(workers))?;
    // One unchecked collector per registry: it reads the directory on every gather().
    registry.register(Box::new(PrometheusCollector::new(&dir)?))?;

    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    println!("{}", String::from_utf8(out)?);
    Ok(())
}

/// Worker `n` serves `n + 1` requests on `/` and one on `/health`.
fn worker(n: u32) -> Result<()> {
    let registry = Registry::from_env()?;
    let requests = registry.counter_family(Opts::new("http_requests_total", "Requests served."), &["route"])?;
    let latency = registry.histogram(Opts::new("http_request_duration_seconds", "Latency."), &[0.01, 0.1, 1.0])?;
    for i in 0..=n {
        requests.get(&["/"])?.inc();
        latency.observe(0.004 * f64::from(i + 1));
    }
    requests.get(&["/health"])?.inc();
    latency.observe(0.5);
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
