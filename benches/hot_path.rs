//! The write hot path: one handle operation against a bare atomic CAS add and the
//! `prometheus` and `prometheus-client` crates' equivalents. `scripts/bench-hot-path.sh`
//! runs this (with the `derive` feature, for the typed-label rows) and times Python's
//! multiprocess mode in the same run.
#![allow(missing_docs)] // criterion_group! generates an undocumented function

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_multiproc::{GaugeMode, Opts, Registry, WorkerId};

fn cas_add(slot: &AtomicU64, v: f64) {
    let mut cur = slot.load(Ordering::Relaxed);
    loop {
        let new = (f64::from_bits(cur) + v).to_bits();
        match slot.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => cur = actual,
        }
    }
}

/// Runs `op` `iters` times on each of the threads, one per entry of `per_thread`, all
/// at once; the wall time.
fn on_threads(iters: u64, per_thread: [&[&str]; 2], op: impl Fn(&[&str]) + Sync) -> std::time::Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for values in per_thread {
            let op = &op;
            s.spawn(move || (0..iters).for_each(|_| op(values)));
        }
    });
    start.elapsed()
}

/// The typed label set of the typed-label rows, ours and prometheus-client's: an enum
/// and an integer, as an HTTP layer would have them.
#[cfg(feature = "derive")]
mod typed {
    use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
    use prometheus_multiproc::{LabelSet, LabelValue};

    #[derive(LabelValue, EncodeLabelValue, Clone, Copy, Debug, Hash, PartialEq, Eq)]
    #[label(rename_all = "UPPERCASE")]
    pub enum Method {
        Get,
    }

    #[derive(LabelSet, EncodeLabelSet, Clone, Debug, Hash, PartialEq, Eq)]
    pub struct Request {
        pub method: Method,
        pub status: u16,
    }
}

fn hot_path(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("bench").unwrap()).build().unwrap();
    let counter = registry.counter(Opts::new("bench_total", "Bench.")).unwrap();
    let family = registry.counter_family(Opts::new("bench_labeled_total", "Bench."), &["method", "status"]).unwrap();
    family.get(&["GET", "200"]).unwrap();
    let gauge = registry.gauge(Opts::new("bench_gauge", "Bench."), GaugeMode::LiveSum).unwrap();
    let histogram =
        registry.histogram(Opts::new("bench_seconds", "Bench."), &prometheus_multiproc::DEFAULT_BUCKETS).unwrap();

    let bare = Box::new(AtomicU64::new(0));
    let prom_counter = prometheus::Counter::new("p_total", "p").unwrap();
    let prom_family =
        prometheus::CounterVec::new(prometheus::Opts::new("pl_total", "p"), &["method", "status"]).unwrap();
    prom_family.with_label_values(&["GET", "200"]);
    let prom_gauge = prometheus::Gauge::new("pg", "p").unwrap();
    let prom_hist = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("ph", "p")).unwrap();

    // prometheus-client's Family: string pairs, and (below) a derived label set.
    let pc_family = prometheus_client::metrics::family::Family::<
        [(&'static str, &'static str); 2],
        prometheus_client::metrics::counter::Counter,
    >::default();
    pc_family.get_or_create(&[("method", "GET"), ("status", "200")]).inc();

    let mut g = c.benchmark_group("hot_path");
    g.bench_function("bare_f64_cas_add", |b| b.iter(|| cas_add(black_box(&bare), black_box(1.0))));
    g.bench_function("counter_inc", |b| b.iter(|| black_box(&counter).inc()));
    g.bench_function("labeled_get_inc", |b| b.iter(|| family.get(black_box(&["GET", "200"])).unwrap().inc()));
    g.bench_function("labeled_with_inc", |b| {
        b.iter(|| family.with(black_box(&["GET", "200"]), prometheus_multiproc::Counter::inc).unwrap())
    });
    g.bench_function("labeled_labels_inc", |b| b.iter(|| family.labels(black_box(&["GET", "200"])).inc()));
    g.bench_function("prometheus_client_get_or_create_inc", |b| {
        b.iter(|| pc_family.get_or_create(black_box(&[("method", "GET"), ("status", "200")])).inc())
    });
    #[cfg(feature = "derive")]
    {
        use typed::{Method, Request};
        let typed = registry.typed_counter_family::<Request>(Opts::new("bench_typed_total", "Bench.")).unwrap();
        let request = Request { method: Method::Get, status: 200 };
        typed.labels(&request).inc();
        g.bench_function("typed_labels_inc", |b| b.iter(|| typed.labels(black_box(&request)).inc()));
        let pc_typed = prometheus_client::metrics::family::Family::<
            Request,
            prometheus_client::metrics::counter::Counter,
        >::default();
        pc_typed.get_or_create(&request).inc();
        g.bench_function("prometheus_client_typed_get_or_create_inc", |b| {
            b.iter(|| pc_typed.get_or_create(black_box(&request)).inc())
        });
    }
    g.bench_function("gauge_set", |b| b.iter(|| black_box(&gauge).set(black_box(3.0))));
    g.bench_function("histogram_observe", |b| b.iter(|| black_box(&histogram).observe(black_box(0.3))));
    g.bench_function("prometheus_counter_inc", |b| b.iter(|| black_box(&prom_counter).inc()));
    g.bench_function("prometheus_with_label_values_inc", |b| {
        b.iter(|| prom_family.with_label_values(black_box(&["GET", "200"])).inc())
    });
    g.bench_function("prometheus_gauge_set", |b| b.iter(|| black_box(&prom_gauge).set(black_box(3.0))));
    g.bench_function("prometheus_histogram_observe", |b| b.iter(|| black_box(&prom_hist).observe(black_box(0.3))));

    // Two threads at once, each on its own label set of one family (two routes served
    // by two threads): what a lookup costs when another core looks up in the same
    // family. Time per operation of each thread.
    family.get(&["POST", "500"]).unwrap();
    prom_family.with_label_values(&["POST", "500"]);
    let per_thread: [&[&str]; 2] = [&["GET", "200"], &["POST", "500"]];
    g.bench_function("labeled_get_inc_2_threads", |b| {
        b.iter_custom(|iters| on_threads(iters, per_thread, |values| family.get(black_box(values)).unwrap().inc()))
    });
    // Both threads on one series (two threads serving one route): the cost of sharing
    // a series' cache line, which every lookup past a cardinality limit also pays,
    // since all of them land on the family's one overflow series.
    let same: [&[&str]; 2] = [&["GET", "200"], &["GET", "200"]];
    g.bench_function("labeled_get_inc_same_series_2_threads", |b| {
        b.iter_custom(|iters| on_threads(iters, same, |values| family.get(black_box(values)).unwrap().inc()))
    });
    // A family past its `max_series`, each thread looking up label sets it never had
    // (a label explosion): every lookup is redirected to the overflow series and
    // counted as a dropped series.
    let capped = registry
        .counter_family(Opts::new("bench_capped_total", "Bench.").max_series(2), &["method", "status"])
        .unwrap();
    for values in per_thread {
        capped.get(values).unwrap();
    }
    capped.get(&["PUT", "201"]).unwrap(); // the first redirection makes the overflow series
    let unseen: [&[&str]; 2] = [&["GET", "404"], &["POST", "503"]];
    g.bench_function("labeled_get_inc_past_limit_2_threads", |b| {
        b.iter_custom(|iters| on_threads(iters, unseen, |values| capped.get(black_box(values)).unwrap().inc()))
    });
    g.bench_function("prometheus_with_label_values_inc_2_threads", |b| {
        b.iter_custom(|iters| {
            on_threads(iters, per_thread, |values| prom_family.with_label_values(black_box(values)).inc())
        })
    });
    g.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
