//! The `prometheus-client` integration: three worker processes write with this
//! crate's [`Registry`]; the serving process registers a collector over their
//! directory with `Registry::register_collector`, next to a native metric, and prints
//! the OpenMetrics text `prometheus_client::encoding::text::encode` makes.
//!
//! ```text
//! cargo run --example integration_prometheus_client --features prometheus-client
//! ```
//!
//! Uses `$PROMETHEUS_MULTIPROC_DIR` when set (files are left there), a temporary
//! directory otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_multiproc::integrations::prometheus_client::PrometheusClientCollector;
use prometheus_multiproc::{DIR_ENV, GaugeMode, Opts, Registry};

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

    let mut registry = prometheus_client::registry::Registry::default();
    let workers = Gauge::<i64>::default();
    workers.set(i64::from(WORKERS));
    registry.register("example_workers", "Workers the master started", workers);
    registry.register_collector(Box::new(PrometheusClientCollector::new(&dir)?));

    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    print!("{out}");
    Ok(())
}

/// Worker `n` serves `n + 1` requests, each with a payload, and reports its queue.
fn worker(n: u32) -> Result<()> {
    let registry = Registry::from_env()?;
    let requests = registry.counter_family(Opts::new("http_requests_total", "Requests served."), &["route"])?;
    let latency = registry.histogram(Opts::new("http_request_duration_seconds", "Latency."), &[0.01, 0.1, 1.0])?;
    let payload = registry.summary(Opts::new("http_request_size_bytes", "Request sizes."))?;
    let queue = registry.gauge(Opts::new("queue_length", "Jobs waiting, per worker."), GaugeMode::All)?;
    for i in 0..=n {
        requests.get(&["/"])?.inc();
        latency.observe(0.004 * f64::from(i + 1));
        payload.observe(512.0);
    }
    queue.set(f64::from(10 * n));
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
