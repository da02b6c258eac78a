//! Writes the scrape-bench directories, or scrapes one of them once and reports the
//! process's memory: what `scripts/bench-scrape.sh` uses to share directories with
//! Python and to measure the collector's footprint.
//!
//! ```text
//! cargo run --release --example scrape_once -- make          # prints FILES SERIES DIR per line
//! cargo run --release --example scrape_once -- scrape DIR    # prints one JSON object
//! cargo run --release --example scrape_once -- time DIR N [W] # quick timing: N cold runs, W (or N) warm
//! cargo run --release --example scrape_once -- json DIR N W   # the same, as JSON (min and median)
//! cargo run --release --example scrape_once -- render DIR     # the text render alone, of one scrape
//! ```
//!
//! `scrape` runs a fresh `Collector::new(DIR)`, `collect()` and the text `render`, then,
//! while the collector, the scrape and the body are all still alive, prints the
//! process's `/proc/self/status` figures: `VmHWM` (peak resident set), `RssAnon` (heap
//! and stacks) and `RssFile` (pages of the mapped metrics files, and of the binary),
//! each before and after the scrape, in KiB.

#[path = "../benches/support/scrape_dirs.rs"]
mod scrape_dirs;

use std::time::Instant;

use prometheus_multiproc::{Collector, render};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Nanoseconds this thread has run on a CPU (`/proc/thread-self/schedstat`): a
/// measure that other processes competing for the CPU do not inflate.
fn cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    stat.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Minimum and median of `v`, sorted in place.
fn min_median(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["make"] => {
            for (files, series) in scrape_dirs::SHAPES {
                println!("{files} {series} {}", scrape_dirs::ensure(files, series).display());
            }
            Ok(())
        }
        ["scrape", dir] => {
            let before = ["VmHWM", "RssAnon", "RssFile"].map(status_kib);
            let start = Instant::now();
            let collector = Collector::new(dir)?;
            let scrape = collector.collect()?;
            let page = render(&scrape, None, None);
            let elapsed = start.elapsed();
            let after = ["VmHWM", "RssAnon", "RssFile"].map(status_kib);
            println!(
                "{{\"dir\": {dir:?}, \"ms\": {:.3}, \"body_bytes\": {}, \"skipped\": {}, \
                 \"before_kib\": {{\"VmHWM\": {}, \"RssAnon\": {}, \"RssFile\": {}}}, \
                 \"after_kib\": {{\"VmHWM\": {}, \"RssAnon\": {}, \"RssFile\": {}}}}}",
                elapsed.as_secs_f64() * 1e3,
                page.body.len(),
                scrape.skipped.len(),
                before[0],
                before[1],
                before[2],
                after[0],
                after[1],
                after[2],
            );
            drop((page, scrape, collector));
            Ok(())
        }
        ["time", dir, runs, warm_runs @ ..] => {
            let runs: usize = runs.parse()?;
            let warm_runs: usize = warm_runs.first().map_or(Ok(runs), |n| n.parse())?;
            let (mut cold, mut cold_cpu, mut warm, mut warm_cpu) = (vec![], vec![], vec![], vec![]);
            for _ in 0..runs {
                let (start, cpu) = (Instant::now(), cpu_ns());
                let collector = Collector::new(dir)?;
                let page = render(&collector.collect()?, None, None);
                drop(page);
                cold.push(start.elapsed().as_secs_f64() * 1e3);
                cold_cpu.push((cpu_ns() - cpu) as f64 / 1e6);
                // As in benches/scrape.rs: tearing the collector down is not timed.
                drop(collector);
            }
            let collector = Collector::new(dir)?;
            collector.collect()?;
            for _ in 0..warm_runs {
                let (start, cpu) = (Instant::now(), cpu_ns());
                let page = render(&collector.collect()?, None, None);
                drop(page);
                warm.push(start.elapsed().as_secs_f64() * 1e3);
                warm_cpu.push((cpu_ns() - cpu) as f64 / 1e6);
            }
            let [cold, cold_cpu, warm, warm_cpu] = [cold, cold_cpu, warm, warm_cpu].map(|mut v| min_median(&mut v));
            println!(
                "{dir}: cold {:.2}/{:.2} ms (cpu {:.2}/{:.2}); warm {:.2}/{:.2} ms (cpu {:.2}/{:.2}) [min/median]",
                cold.0, cold.1, cold_cpu.0, cold_cpu.1, warm.0, warm.1, warm_cpu.0, warm_cpu.1
            );
            Ok(())
        }
        ["render", dir] => {
            // The text render of one scrape, alone: the best mean of 20 rounds of 50.
            let scrape = Collector::new(dir)?.collect()?;
            let best = (0..20)
                .map(|_| {
                    let start = Instant::now();
                    for _ in 0..50 {
                        std::hint::black_box(render(&scrape, None, None));
                    }
                    start.elapsed().as_secs_f64() / 50.0
                })
                .fold(f64::INFINITY, f64::min);
            println!("{dir}: render {:.3} ms", best * 1e3);
            Ok(())
        }
        ["json", dir, runs, warm_runs] => {
            // As `time`, one JSON object: what scripts/scrape_goals.py reads.
            let (runs, warm_runs): (usize, usize) = (runs.parse()?, warm_runs.parse()?);
            let (mut cold, mut warm) = (vec![], vec![]);
            for _ in 0..runs {
                let start = Instant::now();
                let collector = Collector::new(dir)?;
                drop(render(&collector.collect()?, None, None));
                cold.push(start.elapsed().as_secs_f64() * 1e3);
                drop(collector);
            }
            let collector = Collector::new(dir)?;
            collector.collect()?;
            for _ in 0..warm_runs {
                let start = Instant::now();
                drop(render(&collector.collect()?, None, None));
                warm.push(start.elapsed().as_secs_f64() * 1e3);
            }
            let [cold, warm] = [cold, warm].map(|mut v| min_median(&mut v));
            println!(
                "{{\"cold_min_ms\": {:.4}, \"cold_median_ms\": {:.4}, \"warm_min_ms\": {:.4}, \"warm_median_ms\": {:.4}}}",
                cold.0, cold.1, warm.0, warm.1
            );
            Ok(())
        }
        _ => Err(
            "usage: scrape_once make | scrape_once scrape DIR | scrape_once time DIR RUNS [WARM_RUNS] | scrape_once json DIR RUNS WARM_RUNS"
                .into(),
        ),
    }
}
