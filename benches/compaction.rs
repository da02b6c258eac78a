//! Scrape time with 10,000 dead-worker files, before and after compaction.
//! `scripts/bench-compaction.sh` runs this and times Python's collector on the same
//! two directories in the same run.
#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_multiproc::cleanup::compact;
use prometheus_multiproc::{Collector, GaugeMode, Opts, Registry, WorkerId, render};

/// 2,500 dead writers × 4 files (counter, histogram, summary, sum gauge) = 10,000.
const DEAD_WRITERS: usize = 2500;

fn write_dead_workers(dir: &Path) {
    for i in 0..DEAD_WRITERS {
        // Numeric IDs no process can have (above any `pid_max`): compaction defers a dead
        // writer whose ID is the pid of a running process, and an ID equal to this
        // bench's own pid made the assertion below fail now and then.
        let id = WorkerId::new(&format!("{}", 5_000_000 + i)).unwrap();
        let r = Registry::builder().dir(dir).worker_id(id).build().unwrap();
        let requests = r.counter_family(Opts::new("req_total", "Requests."), &["route"]).unwrap();
        for route in 0..10 {
            requests.get(&[&format!("/r{route}")]).unwrap().inc_by((i % 7 + 1) as f64);
        }
        r.histogram(Opts::new("latency_seconds", "Latency."), &[0.1, 0.5, 1.0, 5.0]).unwrap().observe(0.25);
        r.summary(Opts::new("payload_bytes", "Payload.")).unwrap().observe(512.0);
        r.gauge(Opts::new("handled", "Handled."), GaugeMode::Sum).unwrap().set(i as f64);
    }
}

/// `target/bench-dirs/compaction-{before,after}`, written anew each run.
fn dirs() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-dirs");
    let (before, after) = (root.join("compaction-before"), root.join("compaction-after"));
    for d in [&before, &after] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).unwrap();
    }
    write_dead_workers(&before);
    for entry in std::fs::read_dir(&before).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), after.join(entry.file_name())).unwrap();
    }
    let done = compact(&after).unwrap();
    assert_eq!(done.dead_writers.len(), DEAD_WRITERS);
    (before, after)
}

fn scrape(c: &mut Criterion) {
    let (before, after) = dirs();
    let text = |d: &Path| render(&Collector::new(d).unwrap().collect().unwrap(), None, None).body;
    assert_eq!(text(&before), text(&after), "compaction keeps every total (integer-valued here)");
    let mut g = c.benchmark_group("compaction");
    g.sample_size(10);
    for (name, dir) in [("before", &before), ("after", &after)] {
        g.bench_function(format!("scrape_cold_{name}"), |b| {
            b.iter(|| black_box(render(&Collector::new(dir).unwrap().collect().unwrap(), None, None)))
        });
        let warm = Collector::new(dir).unwrap();
        g.bench_function(format!("scrape_warm_{name}"), |b| {
            b.iter(|| black_box(render(&warm.collect().unwrap(), None, None)))
        });
    }
    g.finish();
}

criterion_group!(benches, scrape);
criterion_main!(benches);
