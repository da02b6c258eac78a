//! The scrape side: merge a directory of worker files and render the text exposition.
//!
//! * **cold**: a fresh [`Collector`], one `collect()` and `render` (the first scrape
//!   after a restart of the scraping process, or a one-shot CLI scrape), the collector
//!   being dropped outside the timing;
//! * **warm**: `collect()` and `render` again on a long-lived collector (every later
//!   scrape).
//!
//! Directories of 16 files × 1,000 series and 64 × 10,000 (see
//! `benches/support/scrape_dirs.rs`), written once under `target/bench-dirs/`.
//! `scripts/bench-scrape.sh` runs this and times Python's collector on the same
//! directories in the same run.
#![allow(missing_docs)] // criterion_group! generates an undocumented function

#[path = "support/scrape_dirs.rs"]
mod scrape_dirs;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_multiproc::{Collector, render};

fn scrape(c: &mut Criterion) {
    let mut g = c.benchmark_group("scrape");
    for (files, series) in scrape_dirs::SHAPES {
        let dir = scrape_dirs::ensure(files, series);
        let big = files * series > 100_000;
        // Criterion's minimum is 10 samples; keep the big case to a few seconds.
        g.sample_size(if big { 10 } else { 30 });
        g.warm_up_time(Duration::from_secs(if big { 1 } else { 2 }));
        g.measurement_time(Duration::from_secs(if big { 4 } else { 3 }));
        let shape = format!("{files}x{series}");

        // The collector is handed back and dropped outside the timing: a first scrape
        // returns without tearing down the state it built (unmapping the files and
        // freeing the tables, which a long-lived collector never does). The scrape and
        // the body are dropped inside, as every scrape drops them.
        g.bench_function(format!("cold/{shape}"), |b| {
            b.iter_with_large_drop(|| {
                let collector = Collector::new(&dir).unwrap();
                let scrape = collector.collect().unwrap();
                black_box(render(&scrape, None, None));
                collector
            })
        });

        let collector = Collector::new(&dir).unwrap();
        let first = collector.collect().unwrap();
        assert!(first.skipped.is_empty(), "bench directory has unusable files: {:?}", first.skipped);
        assert_eq!(first.families[0].samples.len(), series);
        g.bench_function(format!("warm/{shape}"), |b| {
            b.iter(|| {
                let scrape = collector.collect().unwrap();
                black_box(render(&scrape, None, None))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, scrape);
criterion_main!(benches);
