//! Reliability with figures (issue 6, items 1–3): a kill storm, scrapes under fire and
//! a full disk, with real processes. This binary re-runs itself as the worker processes
//! (`PMP_TEST_ROLE`, see `support::role_command`), so nothing forks inside the harness.
//!
//! # Kill storm: how the test knows exactly which increments were completed
//!
//! Eight worker processes (stable slots `w0`..`w7`) run two threads each; each thread
//! (`w3-t1` is thread 1 of slot 3) numbers its *operations* 0, 1, 2, … across all the
//! lives of its slot. Operation `n` of a thread is:
//!
//! ```text
//! if n % CREATE_EVERY == 0: c = storm_created_total{thread, k = n / CREATE_EVERY}  (new entry, maybe file growth)
//! ledger := 2n + 1                                         ── the window opens
//! storm_ops_total{thread}.inc()                            (a series only this thread writes)
//! storm_requests_total{route = ROUTES[n % 3]}.inc()        (shared by all 16 threads)
//! storm_latency_seconds.observe(OBSERVED[n % 4])           (shared by all 16 threads)
//! if n % CREATE_EVERY == 0: c.inc()
//! ledger := 2n + 2                                         ── the window closes
//! ```
//!
//! The *ledger* is one small file per thread outside the metrics directory, written with
//! one `pwrite` of 16 bytes (the word and its complement, so that a concurrent reader can
//! tell a record caught mid-copy). A system call is finished or not started when a thread
//! stops, so a stopped thread's ledger is exact: even `2n` means "operations `0..n` are
//! complete and none is under way", odd means "operation `n` is under way".
//!
//! The supervisor (this test) never SIGKILLs a worker blindly. Every 1–4 ms it sends
//! SIGSTOP to a random running worker; it waits until `waitpid(WUNTRACED)` reports the
//! whole thread group stopped, and reads the worker's two ledger words. If both are even
//! it SIGKILLs the stopped process, which then runs no further instruction, reaps it,
//! calls `mark_process_dead` and respawns the slot; otherwise it sends SIGCONT and stops
//! it again once the thread that was inside has moved on. (Several stops are in flight
//! at once: on an oversubscribed machine a SIGSTOP takes effect only when each of the
//! victim's threads next gets a CPU.) So at every death each thread has completed
//! exactly `ledger / 2` operations, all of whose writes landed (they precede the ledger
//! store, and a stopped process's stores are all visible), and has not started the next.
//! **The number of completed increments of every series is therefore a function of the
//! ledger alone**, with no slack: no "at most one behind" per kill.
//!
//! The kill still lands at an arbitrary instruction of everything outside the window:
//! process start-up, building the registry, taking the slot's lock, opening, indexing
//! and growing files, appending new series, removing the slot's live-gauge file. What
//! it never interrupts is the handful of compare-and-swaps between the two ledger
//! stores; a CAS on an aligned 8-byte word is indivisible anyway (done or not done), so
//! excluding it removes an ambiguity from the bookkeeping, not a case from the crate.
//!
//! Checks, all exact:
//! * a respawned thread first checks that its own series holds exactly its ledger count
//!   (the slot's file continued, to the unit); the worker exits with an error otherwise,
//!   which fails the test;
//! * at the end every worker is stopped at a clean point and kept stopped (alive, slot
//!   locks held, files quiescent), and the scrape must equal the ledger's prediction
//!   for every series: `storm_ops_total{t} = N_t`, `storm_requests_total{r} =
//!   Σ_t #{n < N_t : n % 3 = r}`, the histogram's buckets and count by the same count
//!   over `n % 4` (the observed values are multiples of 1/4, so the float `_sum` is exact
//!   in any order), `storm_created_total{t, k} = 1` for every `k < ⌈N_t / CREATE_EVERY⌉`
//!   plus at most one `0` for `k = N_t / CREATE_EVERY` (created, then killed before its
//!   window), and `storm_workers_up = 8` (a `livesum` gauge);
//! * the same values read straight from the files' bytes with `prometheus_multiproc::format`,
//!   every file parsing, no key twice in a file;
//! * a fresh collector agrees with the long-lived one; after every worker is killed the
//!   counters stay and the live gauge leaves.
//!
//! # Scrapes under fire
//!
//! A thread scrapes throughout the storm, on one long-lived [`Collector`] and every
//! tenth time on a fresh one. Every scrape must succeed, skip no file for any reason but
//! [`SkipReason::Vanished`] (the supervisor removes a killed slot's live-gauge file), and
//! no counter or histogram series may decrease or disappear between consecutive scrapes.
//! On x86-64 each scrape is also bracketed by two reads of all ledgers: with
//! `lo = ⌊before / 2⌋` and `hi = ⌈after / 2⌉` per thread, every scraped value must lie
//! between the ledger's prediction for `lo` and for `hi` (x86-64 keeps each thread's
//! stores, and each thread's loads, in program order: the worker's ledger store precedes
//! its CASes, which precede its next ledger store; the scraper's first ledger read
//! precedes its loads of the values, which precede its second ledger read).
//!
//! # Full disk
//!
//! A master process mounts a tmpfs of [`TMPFS_KIB`] KiB on the metrics directory in a
//! private mount namespace (the test fails, never skips, when it cannot) and forks
//! writers that create series until the disk is full, while another child scrapes: no
//! process dies, existing handles keep counting, creation errors are `NoSpace` naming
//! the file, scrapes keep working and are exact, and the failed creations are exposed in
//! `prometheus_multiproc_dropped_series_total`. A fork child whose inherited series
//! cannot be re-created counts them in `lost_series()`. See `role_disk_master`.
//!
//! Environment: `PMP_STORM_SECS` lengthens the storm (at least 10 s), `PMP_STORM_SEED`
//! seeds the choice of victims and of the intervals between them (printed).

mod support;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use prometheus_multiproc::cleanup::mark_process_dead;
use prometheus_multiproc::{
    Collector, Counter, DROPPED_SERIES_METRIC, ErrorKind, GaugeMode, MetricType, Opts, Registry, Scrape, SkipReason,
    WorkerId, format,
};
use support::{TestDir, fork, role_command};

fn main() {
    let tests = vec![
        Trial::test(
            "kill_storm_counts_every_completed_increment_exactly_while_scrapes_never_go_backwards",
            kill_storm_counts_every_completed_increment_exactly_while_scrapes_never_go_backwards,
        ),
        Trial::test(
            "full_disk_keeps_writers_alive_and_counting_and_scrapes_exact",
            full_disk_keeps_writers_alive_and_counting_and_scrapes_exact,
        ),
    ];
    support::main_with_roles(run_role, tests)
}

fn run_role(role: &str) {
    match role {
        "storm-worker" => role_storm_worker(),
        "disk-master" => role_disk_master(),
        other => panic!("unknown role {other}"),
    }
}

/// Worker processes (slots `w0`..`w7`).
const WORKERS: usize = 8;
/// Threads per worker.
const THREADS: usize = 2;
/// Ledger words: one per worker thread.
const SLOTS: usize = WORKERS * THREADS;
/// Shortest storm the issue allows.
const MIN_STORM: Duration = Duration::from_secs(10);
/// A thread creates a new `storm_created_total` series every this many operations.
const CREATE_EVERY: u64 = 128;
/// Label values of the shared `storm_requests_total` family.
const ROUTES: [&str; 3] = ["/a", "/b", "/c"];
/// Observed latencies, one per bucket, multiples of 1/4 so that every sum is exact.
const OBSERVED: [f64; 4] = [0.25, 0.5, 2.0, 8.0];
/// Histogram bounds (`+Inf` is added).
const BOUNDS: [f64; 3] = [0.3, 1.0, 4.0];
/// The `le` label values of the buckets, as the scrape spells them.
const LE: [&str; 4] = ["0.3", "1.0", "4.0", "+Inf"];
/// SIGSTOP attempts to find a worker outside its increment windows before giving up on
/// one kill (counted as deferred).
const MAX_STOP_ATTEMPTS: usize = 2000;
/// Longest wait for a worker to stop or die after a signal.
const SIGNAL_WAIT: Duration = Duration::from_secs(10);
/// A worker that lives longer than this exits with an error (a runaway guard).
const WORKER_MAX_LIFE: Duration = Duration::from_secs(300);
/// Threads spawning replacement workers.
const SPAWNERS: usize = 2;
/// Exit status of a worker role that found something wrong (its stderr says what).
const WORKER_FAILED: i32 = 3;

const OPS_HELP: &str = "Operations completed by one worker thread.";

// ---------------------------------------------------------------- the ledger

/// One worker thread's ledger: a 16-byte file holding a word and its complement,
/// written with one `pwrite`.
struct Ledger(File);

impl Ledger {
    fn path(dir: &Path, slot: usize) -> PathBuf {
        dir.join(format!("w{}-t{}", slot / THREADS, slot % THREADS))
    }

    fn create(path: &Path) -> io::Result<Ledger> {
        let ledger = Ledger(OpenOptions::new().read(true).write(true).create_new(true).open(path)?);
        ledger.write(0)?;
        Ok(ledger)
    }

    fn open(path: &Path) -> io::Result<Ledger> {
        Ok(Ledger(OpenOptions::new().read(true).write(true).open(path)?))
    }

    fn write(&self, word: u64) -> io::Result<()> {
        let mut record = [0u8; 16];
        record[..8].copy_from_slice(&word.to_le_bytes());
        record[8..].copy_from_slice(&(!word).to_le_bytes());
        self.0.write_all_at(&record, 0)
    }

    /// The word. A record read while its writer was copying it (its halves disagree) is
    /// read again; a stopped or dead writer's record is always whole.
    fn read(&self) -> Result<u64, String> {
        let mut record = [0u8; 16];
        for _ in 0..10_000 {
            self.0.read_exact_at(&mut record, 0).map_err(|e| format!("read a ledger: {e}"))?;
            let word = u64::from_le_bytes(record[..8].try_into().unwrap());
            let check = u64::from_le_bytes(record[8..].try_into().unwrap());
            if word == !check {
                return Ok(word);
            }
            std::hint::spin_loop();
        }
        Err("a ledger record stayed torn over 10,000 reads".into())
    }
}

fn read_all(ledgers: &[Ledger]) -> Result<[u64; SLOTS], String> {
    let mut words = [0u64; SLOTS];
    for (word, ledger) in words.iter_mut().zip(ledgers) {
        *word = ledger.read()?;
    }
    Ok(words)
}

// ---------------------------------------------------------------- the storm worker

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("storm worker {}: {msg}", std::process::id());
    std::process::exit(WORKER_FAILED);
}

/// Dies with the parent: the supervisor kills every worker itself, this is the backstop
/// for a test process that dies.
fn die_with_parent(parent: Pid) {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        die(format!("prctl(PR_SET_PDEATHSIG): {e}"));
    }
    if nix::unistd::getppid() != parent {
        std::process::exit(WORKER_FAILED); // the parent died before the prctl
    }
}

fn env_or_die(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| die(format!("${name} is not set")))
}

/// A worker in slot `$SLOT`: declares the storm's metrics and runs `THREADS` threads of
/// operations (see the module docs) until it is killed.
fn role_storm_worker() {
    let parent: i32 = env_or_die("PARENT").parse().unwrap_or_else(|e| die(e));
    die_with_parent(Pid::from_raw(parent));
    let slot: usize = env_or_die("SLOT").parse().unwrap_or_else(|e| die(e));
    let ledger_dir = PathBuf::from(env_or_die("LEDGER_DIR"));
    let id = WorkerId::new(&format!("w{slot}")).unwrap_or_else(|e| die(e));
    let registry = Registry::builder().worker_id(id).build().unwrap_or_else(|e| die(e));
    let ops = registry.counter_family(Opts::new("storm_ops_total", OPS_HELP), &["thread"]).unwrap_or_else(|e| die(e));
    let requests = registry
        .counter_family(Opts::new("storm_requests_total", "Requests, shared by every thread."), &["route"])
        .unwrap_or_else(|e| die(e));
    let latency = registry
        .histogram(Opts::new("storm_latency_seconds", "Latency, shared by every thread."), &BOUNDS)
        .unwrap_or_else(|e| die(e));
    let created = registry
        .counter_family(Opts::new("storm_created_total", "Series created during the storm."), &["thread", "k"])
        .unwrap_or_else(|e| die(e));
    let up =
        registry.gauge(Opts::new("storm_workers_up", "Live workers."), GaugeMode::LiveSum).unwrap_or_else(|e| die(e));
    up.inc();
    let deadline = Instant::now() + WORKER_MAX_LIFE;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (ops, requests, latency, created, ledger_dir) = (&ops, &requests, &latency, &created, &ledger_dir);
            s.spawn(move || {
                let name = format!("w{slot}-t{t}");
                let ledger = Ledger::open(&Ledger::path(ledger_dir, slot * THREADS + t)).unwrap_or_else(|e| die(e));
                let word = ledger.read().unwrap_or_else(|e| die(e));
                if word % 2 == 1 {
                    die(format!("{name}: my predecessor was killed inside an increment window (ledger {word})"));
                }
                let mut n = word / 2;
                let own = ops.get(&[&name]).unwrap_or_else(|e| die(e));
                if own.get() != n as f64 {
                    die(format!("{name}: the file holds {} operations, the ledger {n}", own.get()));
                }
                let routes: Vec<Counter> =
                    ROUTES.iter().map(|r| requests.get(&[r]).unwrap_or_else(|e| die(e))).collect();
                loop {
                    if n.is_multiple_of(4096) && Instant::now() > deadline {
                        die(format!("{name}: still running after {WORKER_MAX_LIFE:?}"));
                    }
                    let new_series = n
                        .is_multiple_of(CREATE_EVERY)
                        .then(|| created.get(&[&name, &(n / CREATE_EVERY).to_string()]).unwrap_or_else(|e| die(e)));
                    ledger.write(2 * n + 1).unwrap_or_else(|e| die(e));
                    own.inc();
                    routes[(n % 3) as usize].inc();
                    latency.observe(OBSERVED[(n % 4) as usize]);
                    if let Some(c) = &new_series {
                        c.inc();
                    }
                    ledger.write(2 * n + 2).unwrap_or_else(|e| die(e));
                    n += 1;
                }
            });
        }
    });
}

// ---------------------------------------------------------------- what the ledger predicts

/// How many of the operations `0..n` have `op % modulus == class`.
fn share(n: u64, modulus: u64, class: u64) -> u64 {
    n / modulus + u64::from(n % modulus > class)
}

/// The value of every aggregate storm series once each thread `t` has completed `n[t]`
/// operations (`storm_created_total` is checked per series, see [`check_within`]).
#[derive(Debug, PartialEq)]
struct Predicted {
    ops: [u64; SLOTS],
    requests: [u64; 3],
    /// Cumulative, in `LE` order.
    buckets: [u64; 4],
    sum: f64,
}

fn predict(n: &[u64; SLOTS]) -> Predicted {
    let mut requests = [0u64; 3];
    for (r, total) in requests.iter_mut().enumerate() {
        *total = n.iter().map(|&ops| share(ops, 3, r as u64)).sum();
    }
    let mut per_bucket = [0u64; 4];
    for (b, total) in per_bucket.iter_mut().enumerate() {
        *total = n.iter().map(|&ops| share(ops, 4, b as u64)).sum();
    }
    let mut buckets = [0u64; 4];
    let mut running = 0;
    for (cumulative, count) in buckets.iter_mut().zip(per_bucket) {
        running += count;
        *cumulative = running;
    }
    let sum = per_bucket.iter().zip(OBSERVED).map(|(&c, v)| c as f64 * v).sum();
    Predicted { ops: *n, requests, buckets, sum }
}

// ---------------------------------------------------------------- what a scrape shows

/// The storm's series in one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
struct Seen {
    ops: [Option<f64>; SLOTS],
    requests: [Option<f64>; 3],
    buckets: [Option<f64>; 4],
    count: Option<f64>,
    sum: Option<f64>,
    /// `(thread slot, k)` → value.
    created: HashMap<(usize, u64), f64>,
    workers_up: Option<f64>,
}

fn thread_slot(name: Option<&str>) -> Result<usize, String> {
    let parsed = name.and_then(|n| n.strip_prefix('w')).and_then(|n| n.split_once("-t")).and_then(|(w, t)| {
        let (w, t) = (w.parse::<usize>().ok()?, t.parse::<usize>().ok()?);
        (w < WORKERS && t < THREADS).then_some(w * THREADS + t)
    });
    parsed.ok_or_else(|| format!("unexpected thread label {name:?}"))
}

fn put(place: &mut Option<f64>, value: f64, what: &str) -> Result<(), String> {
    match place.replace(value) {
        None => Ok(()),
        Some(old) => Err(format!("{what} appears twice in one scrape ({old} and {value})")),
    }
}

fn seen(scrape: &Scrape) -> Result<Seen, String> {
    let mut seen = Seen::default();
    for family in &scrape.families {
        for s in &family.samples {
            let what = format!("{}{:?}", s.name, s.labels);
            match &*s.name {
                "storm_ops_total" => put(&mut seen.ops[thread_slot(s.label("thread"))?], s.value, &what)?,
                "storm_requests_total" => {
                    let r = ROUTES.iter().position(|r| Some(*r) == s.label("route")).ok_or(&what)?;
                    put(&mut seen.requests[r], s.value, &what)?;
                }
                "storm_latency_seconds_bucket" => {
                    let b = LE.iter().position(|le| Some(*le) == s.label("le")).ok_or(&what)?;
                    put(&mut seen.buckets[b], s.value, &what)?;
                }
                "storm_latency_seconds_count" => put(&mut seen.count, s.value, &what)?,
                "storm_latency_seconds_sum" => put(&mut seen.sum, s.value, &what)?,
                "storm_created_total" => {
                    let t = thread_slot(s.label("thread"))?;
                    let k: u64 = s.label("k").and_then(|k| k.parse().ok()).ok_or(&what)?;
                    if seen.created.insert((t, k), s.value).is_some() {
                        return Err(format!("{what} appears twice in one scrape"));
                    }
                }
                "storm_workers_up" => put(&mut seen.workers_up, s.value, &what)?,
                _ => return Err(format!("unexpected sample {what}")),
            }
        }
    }
    Ok(seen)
}

fn within(what: &str, got: Option<f64>, lo: f64, hi: f64) -> Result<(), String> {
    match got {
        None if lo == 0.0 => Ok(()),
        None => Err(format!("{what} is missing, expected at least {lo}")),
        Some(v) if lo <= v && v <= hi => Ok(()),
        Some(v) if lo == hi => Err(format!("{what} is {v}, expected exactly {lo}")),
        Some(v) => Err(format!("{what} is {v}, outside the ledger's bounds [{lo}, {hi}]")),
    }
}

/// Checks every storm series of `seen` against what the ledger predicts when thread `t`
/// has completed between `lo[t]` and `hi[t]` operations. With `lo == hi` the check is
/// exact.
fn check_within(seen: &Seen, lo: &[u64; SLOTS], hi: &[u64; SLOTS]) -> Result<(), String> {
    let (a, b) = (predict(lo), predict(hi));
    for t in 0..SLOTS {
        let what = format!("storm_ops_total{{thread=w{}-t{}}}", t / THREADS, t % THREADS);
        within(&what, seen.ops[t], a.ops[t] as f64, b.ops[t] as f64)?;
    }
    for (r, route) in ROUTES.iter().enumerate() {
        let what = format!("storm_requests_total{{route={route}}}");
        within(&what, seen.requests[r], a.requests[r] as f64, b.requests[r] as f64)?;
    }
    for (i, le) in LE.iter().enumerate() {
        let what = format!("storm_latency_seconds_bucket{{le={le}}}");
        within(&what, seen.buckets[i], a.buckets[i] as f64, b.buckets[i] as f64)?;
    }
    within("storm_latency_seconds_count", seen.count, a.buckets[3] as f64, b.buckets[3] as f64)?;
    within("storm_latency_seconds_sum", seen.sum, a.sum, b.sum)?;
    // storm_created_total{t, k} is created by operation k * CREATE_EVERY (before its
    // window) and incremented once inside it.
    let mut complete = [0u64; SLOTS];
    for (&(t, k), &v) in &seen.created {
        let op = k * CREATE_EVERY;
        let what = format!("storm_created_total{{thread=w{}-t{},k={k}}} = {v}", t / THREADS, t % THREADS);
        if op > hi[t] {
            return Err(format!("{what}: created by operation {op}, but the thread had done at most {}", hi[t]));
        }
        if v == 1.0 && op >= hi[t] {
            return Err(format!("{what}: operation {op} had not started (ledger: {} done)", hi[t]));
        }
        if v != 1.0 && (v != 0.0 || op < lo[t]) {
            return Err(format!("{what}: operation {op} was complete (ledger: {} done), expected 1", lo[t]));
        }
        if op < lo[t] {
            complete[t] += 1;
        }
    }
    for t in 0..SLOTS {
        let want = lo[t].div_ceil(CREATE_EVERY);
        if complete[t] != want {
            return Err(format!(
                "w{}-t{}: {} storm_created_total series of completed operations, expected {want}",
                t / THREADS,
                t % THREADS,
                complete[t]
            ));
        }
    }
    Ok(())
}

/// No counter or histogram series may go down or disappear from one scrape to the next.
fn check_monotonic(prev: &Seen, now: &Seen) -> Result<(), String> {
    let pairs = prev
        .ops
        .iter()
        .zip(&now.ops)
        .chain(prev.requests.iter().zip(&now.requests))
        .chain(prev.buckets.iter().zip(&now.buckets))
        .chain([(&prev.count, &now.count), (&prev.sum, &now.sum)]);
    for (i, (before, after)) in pairs.enumerate() {
        if let Some(before) = before {
            match after {
                None => return Err(format!("aggregate series #{i} ({before}) disappeared")),
                Some(after) if after < before => {
                    return Err(format!("aggregate series #{i} went down from {before} to {after}"));
                }
                Some(_) => {}
            }
        }
    }
    for (key, before) in &prev.created {
        match now.created.get(key) {
            None => return Err(format!("storm_created_total {key:?} ({before}) disappeared")),
            Some(after) if after < before => {
                return Err(format!("storm_created_total {key:?} went down from {before} to {after}"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn only_vanished(scrape: &Scrape) -> Result<usize, String> {
    for skipped in &scrape.skipped {
        if skipped.reason != SkipReason::Vanished {
            return Err(format!("skipped {}: {}", skipped.path.display(), skipped.reason));
        }
    }
    Ok(scrape.skipped.len())
}

// ---------------------------------------------------------------- the scraper

#[derive(Debug, Default)]
struct ScrapeFigures {
    scrapes: u64,
    fresh: u64,
    vanished: usize,
    longest: Duration,
    total: Duration,
    most_series: usize,
}

/// Scrapes until `stop`, checking every scrape (see the module docs).
fn scrape_under_fire(dir: &Path, ledgers: &[Ledger], stop: &AtomicBool) -> Result<ScrapeFigures, String> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    let collector = Collector::new(dir).map_err(|e| e.to_string())?;
    let mut figures = ScrapeFigures::default();
    let mut prev: Option<Seen> = None;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() > deadline {
            return Err("the scraper ran for an hour".into());
        }
        let before = read_all(ledgers)?;
        let fresh = figures.scrapes % 10 == 9;
        let started = Instant::now();
        let scrape = if fresh { Collector::new(dir).and_then(|c| c.collect()) } else { collector.collect() };
        let took = started.elapsed();
        let after = read_all(ledgers)?;
        let n = figures.scrapes + 1;
        let scrape = scrape.map_err(|e| format!("scrape {n} failed: {e}"))?;
        figures.vanished += only_vanished(&scrape).map_err(|e| format!("scrape {n}: {e}"))?;
        let now = seen(&scrape).map_err(|e| format!("scrape {n}: {e}"))?;
        if let Some(prev) = &prev {
            check_monotonic(prev, &now).map_err(|e| format!("scrape {n} against the one before: {e}"))?;
        }
        if cfg!(target_arch = "x86_64") {
            let lo = before.map(|w| w / 2);
            let hi = after.map(|w| w.div_ceil(2));
            check_within(&now, &lo, &hi).map_err(|e| format!("scrape {n}: {e}"))?;
        }
        figures.scrapes = n;
        figures.fresh += u64::from(fresh);
        figures.longest = figures.longest.max(took);
        figures.total += took;
        figures.most_series = figures.most_series.max(scrape.families.iter().map(|f| f.samples.len()).sum());
        prev = Some(now);
    }
    Ok(figures)
}

// ---------------------------------------------------------------- the supervisor

/// A xorshift generator: the kill sequence is replayable with `PMP_STORM_SEED`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Debug, Default)]
struct StormFigures {
    kills: u64,
    respawns: u64,
    /// Kills of a worker that had not completed an operation since it was spawned.
    kills_before_first_op: u64,
    /// Stops that caught a thread inside its increment window (then continued).
    unclean_stops: u64,
    /// Kills given up after `MAX_STOP_ATTEMPTS` unclean stops.
    deferred: u64,
    live_gauge_files_removed: usize,
    /// From SIGSTOP to the kernel reporting the whole worker stopped, summed.
    stopping: Duration,
    stops: u64,
    /// Spawning replacements (`Command::spawn` returns once the child has exec'd), summed.
    spawning: Duration,
    spawns: u64,
}

/// Where a worker is in the kill cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Running,
    /// SIGSTOP sent at `since`; the kernel has not reported the group stopped yet.
    Stopping {
        since: Instant,
        attempts: usize,
    },
    /// Stopped with a thread inside its window, then continued: stop it again once every
    /// thread that was inside has moved on from `words` (or after a while).
    Resuming {
        words: [u64; THREADS],
        since: Instant,
        attempts: usize,
    },
    /// Stopped with every thread outside its window.
    Stopped,
}

/// What [`Fleet::advance`] reached.
enum Reached {
    Nothing,
    CleanStop,
    GaveUp,
}

struct Worker {
    pid: Pid,
    /// The slot's ledger words when it was spawned.
    at_spawn: [u64; THREADS],
    phase: Phase,
}

/// The eight worker slots. Dropping it SIGKILLs and reaps every worker still there,
/// whatever happened.
struct Fleet<'a> {
    ledgers: &'a [Ledger],
    workers: Vec<Option<Worker>>,
    /// Slots waiting for a spawner thread, with their ledger words at the request.
    pending: Vec<Option<[u64; THREADS]>>,
    requests: mpsc::Sender<usize>,
    spawned: mpsc::Receiver<Spawned>,
}

/// A spawner thread's answer: the slot, and the new worker's pid and how long
/// `Command::spawn` took.
type Spawned = (usize, Result<(Pid, Duration), String>);

/// Spawns workers for the slots it receives until the channel closes. Workers are
/// spawned from long-lived threads because `PR_SET_PDEATHSIG` fires when the thread that
/// spawned a process ends. A worker nobody is left to receive is killed here.
fn spawner(dir: &Path, ledger_dir: &Path, requests: &Mutex<mpsc::Receiver<usize>>, results: mpsc::Sender<Spawned>) {
    loop {
        let next = requests.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(w) = next else { return };
        let started = Instant::now();
        let spawned = role_command("storm-worker", dir)
            .env("SLOT", w.to_string())
            .env("LEDGER_DIR", ledger_dir)
            .env("PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn worker w{w}: {e}"))
            .map(|child| (Pid::from_raw(child.id() as i32), started.elapsed()));
        if let Err(mpsc::SendError((_, Ok((pid, _))))) = results.send((w, spawned)) {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

impl Drop for Fleet<'_> {
    fn drop(&mut self) {
        let spawned =
            std::iter::from_fn(|| self.spawned.try_recv().ok()).filter_map(|(_, r)| r.ok().map(|(pid, _)| pid));
        let pids: Vec<Pid> = self.workers.iter_mut().filter_map(Option::take).map(|w| w.pid).chain(spawned).collect();
        for pid in pids {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Waits (polling, bounded) until `pid` reports a state change selected by `flags`.
fn wait_for(pid: Pid, flags: WaitPidFlag, limit: Duration) -> Result<WaitStatus, String> {
    let deadline = Instant::now() + limit;
    loop {
        match waitpid(pid, Some(flags | WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            Ok(status) => return Ok(status),
            Err(e) => return Err(format!("waitpid({pid}): {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!("pid {pid} did not stop or die within {limit:?} of a signal"));
        }
        std::thread::sleep(Duration::from_micros(20));
    }
}

impl Fleet<'_> {
    fn words(&self, w: usize) -> Result<[u64; THREADS], String> {
        let mut words = [0u64; THREADS];
        for (t, word) in words.iter_mut().enumerate() {
            *word = self.ledgers[w * THREADS + t].read()?;
        }
        Ok(words)
    }

    fn worker(&mut self, w: usize) -> Result<&mut Worker, String> {
        self.workers[w].as_mut().ok_or_else(|| format!("slot w{w} is empty"))
    }

    fn phase(&self, w: usize) -> Option<Phase> {
        self.workers[w].as_ref().map(|worker| worker.phase)
    }

    /// Asks a spawner thread for a new worker in the empty slot `w`.
    fn request_spawn(&mut self, w: usize) -> Result<(), String> {
        self.pending[w] = Some(self.words(w)?);
        self.requests.send(w).map_err(|_| "the spawner threads are gone".to_owned())
    }

    /// Takes the workers the spawner threads have started, waiting up to `limit` for at
    /// least one when some are pending.
    fn collect_spawned(&mut self, figures: &mut StormFigures, limit: Duration) -> Result<(), String> {
        let mut answer = match self.spawned.recv_timeout(limit) {
            Ok(answer) => Some(answer),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("the spawner threads are gone".into()),
        };
        while let Some((w, result)) = answer {
            let (pid, took) = result?;
            let at_spawn = self.pending[w].take().ok_or_else(|| format!("an unrequested worker for w{w}"))?;
            self.workers[w] = Some(Worker { pid, at_spawn, phase: Phase::Running });
            figures.spawning += took;
            figures.spawns += 1;
            answer = self.spawned.try_recv().ok();
        }
        Ok(())
    }

    /// Waits (bounded) until no slot waits for a spawner thread.
    fn all_spawned(&mut self, figures: &mut StormFigures) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.pending.iter().any(Option::is_some) {
            if Instant::now() > deadline {
                return Err("workers took more than 60 s to spawn".into());
            }
            self.collect_spawned(figures, Duration::from_millis(100))?;
        }
        Ok(())
    }

    /// Fails when a running worker has ended on its own (it printed why on stderr).
    fn check_alive(&mut self) -> Result<(), String> {
        for (w, slot) in self.workers.iter_mut().enumerate() {
            if let Some(worker) = slot {
                match waitpid(worker.pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
                    Ok(status) => {
                        *slot = None;
                        return Err(format!("worker w{w} ended on its own: {status:?} (its stderr is above)"));
                    }
                    Err(e) => return Err(format!("waitpid: {e}")),
                }
            }
        }
        Ok(())
    }

    /// Sends SIGSTOP to a running worker.
    fn begin_stop(&mut self, w: usize, attempts: usize) -> Result<(), String> {
        let worker = self.worker(w)?;
        kill(worker.pid, Signal::SIGSTOP).map_err(|e| format!("SIGSTOP w{w}: {e}"))?;
        worker.phase = Phase::Stopping { since: Instant::now(), attempts };
        Ok(())
    }

    /// Moves worker `w` one step towards a stop with every thread outside its window,
    /// without blocking: a stop that caught a thread inside is continued (SIGCONT) and
    /// tried again once that thread has moved on.
    fn advance(&mut self, w: usize, figures: &mut StormFigures) -> Result<Reached, String> {
        let Some(phase) = self.phase(w) else { return Ok(Reached::Nothing) };
        match phase {
            Phase::Running | Phase::Stopped => Ok(Reached::Nothing),
            Phase::Resuming { words, since, attempts } => {
                let now = self.words(w)?;
                let moved_on = words.iter().zip(now).all(|(then, now)| then % 2 == 0 || now > *then);
                if moved_on || since.elapsed() > Duration::from_millis(20) {
                    self.begin_stop(w, attempts)?;
                }
                Ok(Reached::Nothing)
            }
            Phase::Stopping { since, attempts } => {
                let pid = self.worker(w)?.pid;
                match waitpid(pid, Some(WaitPidFlag::WUNTRACED | WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) if since.elapsed() < SIGNAL_WAIT => {
                        return Ok(Reached::Nothing);
                    }
                    Ok(WaitStatus::Stopped(_, Signal::SIGSTOP)) => {}
                    other => {
                        self.workers[w] = None;
                        return Err(format!("worker w{w} did not stop: {other:?} (see its stderr above)"));
                    }
                }
                figures.stopping += since.elapsed();
                figures.stops += 1;
                let words = self.words(w)?;
                if words.iter().all(|word| word % 2 == 0) {
                    self.worker(w)?.phase = Phase::Stopped;
                    return Ok(Reached::CleanStop);
                }
                figures.unclean_stops += 1;
                kill(pid, Signal::SIGCONT).map_err(|e| format!("SIGCONT w{w}: {e}"))?;
                let worker = self.worker(w)?;
                if attempts + 1 >= MAX_STOP_ATTEMPTS {
                    worker.phase = Phase::Running;
                    return Ok(Reached::GaveUp);
                }
                worker.phase = Phase::Resuming { words, since: Instant::now(), attempts: attempts + 1 };
                Ok(Reached::Nothing)
            }
        }
    }

    /// Brings a worker that is on its way to a stop back to running.
    fn resume(&mut self, w: usize) -> Result<(), String> {
        match self.phase(w) {
            Some(Phase::Stopping { .. }) | Some(Phase::Stopped) => {
                let pid = self.worker(w)?.pid;
                if self.phase(w) != Some(Phase::Stopped) {
                    match wait_for(pid, WaitPidFlag::WUNTRACED, SIGNAL_WAIT)? {
                        WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
                        other => return Err(format!("worker w{w} did not stop: {other:?}")),
                    }
                }
                kill(pid, Signal::SIGCONT).map_err(|e| format!("SIGCONT w{w}: {e}"))?;
            }
            _ => {}
        }
        if let Some(worker) = self.workers[w].as_mut() {
            worker.phase = Phase::Running;
        }
        Ok(())
    }

    /// Stops a running worker at a point where none of its threads is inside an
    /// increment window, waiting as long as that takes (bounded by `MAX_STOP_ATTEMPTS`).
    fn stop_clean(&mut self, w: usize, figures: &mut StormFigures) -> Result<bool, String> {
        self.begin_stop(w, 0)?;
        loop {
            match self.advance(w, figures)? {
                Reached::CleanStop => return Ok(true),
                Reached::GaveUp => return Ok(false),
                Reached::Nothing => std::thread::sleep(Duration::from_micros(100)),
            }
        }
    }

    /// SIGKILLs a worker stopped at a clean point and reaps it.
    fn kill_stopped(&mut self, w: usize) -> Result<(), String> {
        let worker = self.worker(w)?;
        if worker.phase != Phase::Stopped {
            return Err(format!("w{w} is not stopped at a clean point: {:?}", worker.phase));
        }
        let pid = worker.pid;
        kill(pid, Signal::SIGKILL).map_err(|e| format!("SIGKILL w{w}: {e}"))?;
        let status = wait_for(pid, WaitPidFlag::empty(), SIGNAL_WAIT)?;
        self.workers[w] = None;
        match status {
            WaitStatus::Signaled(_, Signal::SIGKILL, _) => Ok(()),
            other => Err(format!("worker w{w} ended with {other:?}, expected death by SIGKILL")),
        }
    }
}

/// Sets the flag when dropped, so that the scraper stops however the supervisor ends.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A directory on tmpfs when there is one (the recommended place for metrics files),
/// the default temporary directory otherwise.
fn storm_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() }
}

fn kill_storm_counts_every_completed_increment_exactly_while_scrapes_never_go_backwards() -> Result<(), Failed> {
    let storm = match std::env::var("PMP_STORM_SECS") {
        Ok(s) => Duration::from_secs(s.parse()?).max(MIN_STORM),
        Err(_) => MIN_STORM,
    };
    let seed = match std::env::var("PMP_STORM_SEED") {
        Ok(s) => s.parse()?,
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64 | 1,
    };
    let base = storm_base();
    let metrics = tempfile::Builder::new().prefix("pmp-storm-").tempdir_in(&base)?;
    let ledger_dir = tempfile::Builder::new().prefix("pmp-ledger-").tempdir_in(&base)?;
    let ledgers: Vec<Ledger> =
        (0..SLOTS).map(|i| Ledger::create(&Ledger::path(ledger_dir.path(), i))).collect::<io::Result<_>>()?;
    let stop = AtomicBool::new(false);
    let (requests, to_spawn) = mpsc::channel();
    let (spawned, answers) = mpsc::channel();
    let to_spawn = Mutex::new(to_spawn);
    let report = std::thread::scope(|s| -> Result<String, String> {
        let scraper = s.spawn(|| scrape_under_fire(metrics.path(), &ledgers, &stop));
        for _ in 0..SPAWNERS {
            let (to_spawn, spawned, metrics, ledger_dir) = (&to_spawn, spawned.clone(), &metrics, &ledger_dir);
            s.spawn(move || spawner(metrics.path(), ledger_dir.path(), to_spawn, spawned));
        }
        drop(spawned);
        let supervised = {
            let _stop_scraper = StopOnDrop(&stop);
            let done = || scraper.is_finished();
            supervise(metrics.path(), &ledgers, storm, seed, &stop, done, requests, answers)
        };
        let scraped = scraper.join().map_err(|_| "the scraper panicked".to_owned())?;
        match (supervised, scraped) {
            (Err(e), Err(s)) => Err(format!("{e}\nand the scraper failed: {s}")),
            (Err(e), Ok(_)) => Err(e),
            (Ok(_), Err(s)) => Err(format!("scrapes under fire: {s}")),
            (Ok(final_report), Ok(scrapes)) => Ok(format!(
                "{final_report}\n\
                 scrapes under fire: {} scrapes ({} on fresh collectors), every one succeeded; the longest took {:?}, \
                 the mean {:?}; up to {} samples each; {} files skipped as vanished mid-scrape, none for another \
                 reason; no counter or histogram series ever went down or disappeared; {}",
                scrapes.scrapes,
                scrapes.fresh,
                scrapes.longest,
                scrapes.total / scrapes.scrapes.max(1) as u32,
                scrapes.most_series,
                scrapes.vanished,
                if cfg!(target_arch = "x86_64") {
                    "every scraped value lay within the ledger's bounds taken around its scrape"
                } else {
                    "ledger bounds not checked during the storm (x86-64 only)"
                },
            )),
        }
    })?;
    println!("{report}");
    Ok(())
}

/// Runs the storm, then the exact final checks; returns the figures and a report.
#[allow(clippy::too_many_arguments)]
fn supervise(
    dir: &Path,
    ledgers: &[Ledger],
    storm: Duration,
    seed: u64,
    stop_scraper: &AtomicBool,
    scraper_done: impl Fn() -> bool,
    requests: mpsc::Sender<usize>,
    spawned: mpsc::Receiver<Spawned>,
) -> Result<String, String> {
    let mut rng = Rng(seed);
    let mut figures = StormFigures::default();
    let mut fleet = Fleet {
        ledgers,
        workers: (0..WORKERS).map(|_| None).collect(),
        pending: vec![None; WORKERS],
        requests,
        spawned,
    };
    for w in 0..WORKERS {
        fleet.request_spawn(w)?;
    }
    fleet.all_spawned(&mut figures)?;
    // Every 1–4 ms a random running worker gets SIGSTOP; all stops in flight advance
    // together (a stop takes as long as the victim's threads wait for a CPU), and a
    // worker stopped at a clean point is killed, reaped and respawned at once.
    let started = Instant::now();
    let mut next_victim = started;
    while started.elapsed() < storm {
        if scraper_done() {
            return Err("the scraper stopped during the storm".into());
        }
        if Instant::now() >= next_victim {
            let running: Vec<usize> = (0..WORKERS).filter(|&w| fleet.phase(w) == Some(Phase::Running)).collect();
            if !running.is_empty() {
                fleet.begin_stop(running[rng.below(running.len() as u64) as usize], 0)?;
            }
            next_victim = Instant::now() + Duration::from_micros(1000 + rng.below(3000));
        }
        for w in 0..WORKERS {
            match fleet.advance(w, &mut figures)? {
                Reached::Nothing => {}
                Reached::GaveUp => figures.deferred += 1,
                Reached::CleanStop => {
                    let at_spawn = fleet.worker(w)?.at_spawn;
                    if at_spawn == fleet.words(w)? {
                        figures.kills_before_first_op += 1;
                    }
                    fleet.kill_stopped(w)?;
                    figures.kills += 1;
                    // What a pre-fork master does when it reaps a worker, before
                    // respawning its slot.
                    figures.live_gauge_files_removed += mark_process_dead(dir, &format!("w{w}"))
                        .map_err(|e| format!("mark_process_dead(w{w}): {e}"))?;
                    fleet.request_spawn(w)?;
                    figures.respawns += 1;
                }
            }
        }
        fleet.check_alive()?;
        fleet.collect_spawned(&mut figures, Duration::from_micros(100))?;
    }
    let storm_took = started.elapsed();
    fleet.all_spawned(&mut figures)?;
    for w in 0..WORKERS {
        fleet.resume(w)?;
    }

    // Let every slot's current worker complete at least one operation, so that all of
    // them are past start-up, then stop them all at clean points and keep them stopped.
    let progress_deadline = Instant::now() + Duration::from_secs(60);
    for w in 0..WORKERS {
        loop {
            fleet.check_alive()?;
            let at_spawn = fleet.worker(w)?.at_spawn;
            let now = fleet.words(w)?;
            if now.iter().zip(at_spawn).all(|(now, then)| *now >= then + 2) {
                break;
            }
            if Instant::now() > progress_deadline {
                return Err(format!("worker w{w} made no progress in 60 s after the storm: {now:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    for w in 0..WORKERS {
        if !fleet.stop_clean(w, &mut figures)? {
            return Err(format!("could not stop w{w} outside its increment windows in {MAX_STOP_ATTEMPTS} tries"));
        }
    }
    stop_scraper.store(true, Ordering::Relaxed);
    let words = read_all(ledgers)?;
    if let Some(odd) = words.iter().position(|w| w % 2 == 1) {
        return Err(format!("ledger {odd} is odd after a clean stop: {words:?}"));
    }
    let n = words.map(|w| w / 2);

    // Exact: the long-lived way and the fresh way, against the ledger.
    let collector = Collector::new(dir).map_err(|e| e.to_string())?;
    collector.collect().map_err(|e| e.to_string())?; // warm its state, then scrape for real
    let cached = collector.collect().map_err(|e| format!("final scrape: {e}"))?;
    let fresh = Collector::new(dir).and_then(|c| c.collect()).map_err(|e| format!("final fresh scrape: {e}"))?;
    for (what, scrape) in [("final scrape", &cached), ("final fresh scrape", &fresh)] {
        if !scrape.skipped.is_empty() {
            return Err(format!("{what} skipped files: {:?}", scrape.skipped));
        }
    }
    let final_seen = seen(&cached)?;
    if seen(&fresh)? != final_seen {
        return Err("a fresh collector and the long-lived one disagree on the quiescent directory".into());
    }
    check_within(&final_seen, &n, &n).map_err(|e| format!("final scrape against the ledger: {e}"))?;
    if final_seen.workers_up != Some(WORKERS as f64) {
        return Err(format!("storm_workers_up is {:?} with {WORKERS} live workers", final_seen.workers_up));
    }
    let (files, bytes, entries) = check_files(dir, &n)?;
    // Temporary files a kill left between their creation and their link to the real name
    // (each holds the blocks reserved for a new file).
    let mut tmp_kinds: Vec<String> = Vec::new();
    let (mut tmp_files, mut tmp_bytes) = (0usize, 0u64);
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // `.gauge_livesum_w3.db.1234.tmp` is of kind `gauge_livesum`.
        let kind = name.strip_suffix(".tmp").and_then(|n| n.split(".db").next()).and_then(|n| n.rsplit_once('_'));
        if let Some((kind, _)) = kind.map(|(kind, id)| (kind.trim_start_matches('.'), id)) {
            tmp_files += 1;
            tmp_bytes += entry.metadata().map_err(|e| e.to_string())?.len();
            if !tmp_kinds.iter().any(|k| k == kind) {
                tmp_kinds.push(kind.to_owned());
            }
        }
    }
    let tmp_leftovers = format!("{tmp_files} dot-tmp files ({tmp_bytes} bytes, kinds {tmp_kinds:?})");

    // Kill them all: counters stay, the live gauge leaves.
    for w in 0..WORKERS {
        fleet.kill_stopped(w)?;
        mark_process_dead(dir, &format!("w{w}")).map_err(|e| e.to_string())?;
    }
    let after = collector.collect().map_err(|e| format!("scrape after the last kill: {e}"))?;
    only_vanished(&after)?;
    let after = seen(&after)?;
    if after.workers_up.is_some() {
        return Err(format!("storm_workers_up is {:?} with every worker dead", after.workers_up));
    }
    if after != (Seen { workers_up: None, ..final_seen.clone() }) {
        return Err("counters changed when the stopped workers were killed".into());
    }

    let ops: u64 = n.iter().sum();
    let created: u64 = n.iter().map(|ops| ops.div_ceil(CREATE_EVERY)).sum();
    let report = format!(
        "kill storm ({storm_took:.1?}, seed {seed}, metrics on {}): {} SIGKILLs at clean points ({} before the \
         victim's first operation), {} respawns in the same slots, {} stops caught a thread inside its increment \
         window and were retried, {} kills deferred; {ops} operations completed = {} increments and observations \
         ({} series created on the way); {} live-gauge files removed by mark_process_dead; final state: {files} \
         files, {bytes} bytes, {entries} entries, {tmp_leftovers} left by kills during file creation. \
         The final scrape (long-lived and fresh collector) equals the ledger's prediction exactly for every series, \
         and so do the files' own bytes.\n\
         supervisor: a SIGSTOP took {:?} on average to stop all of a victim's threads ({} stops), a respawn {:?} \
         ({} spawns)",
        dir.parent().unwrap_or(dir).display(),
        figures.kills,
        figures.kills_before_first_op,
        figures.respawns,
        figures.unclean_stops,
        figures.deferred,
        3 * ops + created,
        created,
        figures.live_gauge_files_removed,
        figures.stopping / figures.stops.max(1) as u32,
        figures.stops,
        figures.spawning / figures.spawns.max(1) as u32,
        figures.spawns,
    );
    Ok(report)
}

/// Reads every `.db` file's bytes: each must parse, hold no key twice, and each thread's
/// own series must hold its ledger count. Returns (files, bytes, entries).
fn check_files(dir: &Path, n: &[u64; SLOTS]) -> Result<(usize, u64, usize), String> {
    let (mut files, mut bytes, mut entries) = (0, 0, 0);
    let mut own = [None::<f64>; SLOTS];
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .map(|e| e.map(|e| e.path()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    names.retain(|p| {
        p.extension().is_some_and(|e| e == "db") && !p.file_name().unwrap().to_string_lossy().starts_with('.')
    });
    names.sort();
    for path in &names {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let used = format::checked_used(&data).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut keys = std::collections::HashSet::new();
        for entry in format::entries(&data, used) {
            let entry = entry.map_err(|e| format!("{}: {e}", path.display()))?;
            if !keys.insert(entry.key) {
                return Err(format!("{}: key {} appears twice", path.display(), String::from_utf8_lossy(entry.key)));
            }
            let (value, _) = format::decode_value(&data, entry.value_offset).ok_or("entry beyond the data")?;
            for (t, slot) in own.iter_mut().enumerate() {
                let key = format!(
                    r#"["storm_ops", "storm_ops_total", {{"thread": "w{}-t{}"}}, "{OPS_HELP}"]"#,
                    t / THREADS,
                    t % THREADS
                );
                if entry.key == key.as_bytes() && slot.replace(value).is_some() {
                    return Err(format!("the series of thread {t} is in two files"));
                }
            }
        }
        files += 1;
        bytes += data.len() as u64;
        entries += keys.len();
    }
    for (t, value) in own.iter().enumerate() {
        if *value != Some(n[t] as f64) {
            return Err(format!("the file bytes hold {value:?} for thread slot {t}, the ledger {}", n[t]));
        }
    }
    Ok((files, bytes, entries))
}

// ---------------------------------------------------------------- full disk

/// Size of the tmpfs: the master's counter file (64 KiB) and one 64 KiB counter file
/// per filler fit, with room for two of them to double once.
const TMPFS_KIB: u64 = 448;
/// Writer processes filling the disk.
const FILLERS: usize = 4;
/// Increments every filler makes on its anchor once the disk is full.
const AFTER_FULL: u64 = 1000;
/// Scrapes the scraper child makes once the master says the disk is full.
const SCRAPES_WHEN_FULL: u64 = 5;

/// Sets `O_NONBLOCK` on a pipe end.
fn nonblocking(fd: &impl std::os::fd::AsFd) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("set O_NONBLOCK");
}

/// A child of the master: dies with it (the test kills the master on a timeout).
fn child_of(master: Pid) {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).expect("prctl(PR_SET_PDEATHSIG)");
    if nix::unistd::getppid() != master {
        std::process::exit(1);
    }
}

/// Lines written by the children into the report pipe (each line is one `write` of less
/// than `PIPE_BUF` bytes, so lines never interleave).
struct Reports {
    pipe: io::PipeReader,
    pending: String,
    lines: Vec<String>,
}

impl Reports {
    /// Waits (bounded) until `count` lines starting with one of `prefixes` have arrived,
    /// and returns them.
    fn take(&mut self, prefixes: &[&str], count: usize, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let (matching, rest): (Vec<String>, Vec<String>) =
                self.lines.drain(..).partition(|l| prefixes.iter().any(|p| l.starts_with(p)));
            self.lines = rest;
            if matching.len() >= count {
                self.lines.extend(matching[count..].iter().cloned());
                return matching[..count].to_vec();
            }
            self.lines.splice(0..0, matching);
            assert!(Instant::now() < deadline, "waited {limit:?} for {count} {prefixes:?} lines; got {:?}", self.lines);
            let mut buf = [0u8; 4096];
            match self.pipe.read(&mut buf) {
                Ok(0) => panic!("the report pipe closed while waiting for {prefixes:?}; got {:?}", self.lines),
                Ok(len) => {
                    self.pending.push_str(&String::from_utf8_lossy(&buf[..len]));
                    while let Some(end) = self.pending.find('\n') {
                        let line: String = self.pending.drain(..=end).collect();
                        self.lines.push(line.trim_end().to_owned());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("read the report pipe: {e}"),
            }
        }
    }
}

fn report(pipe: &mut io::PipeWriter, line: &str) {
    pipe.write_all(format!("{line}\n").as_bytes()).expect("write to the report pipe");
}

fn wait_exit_ok(pid: Pid, what: &str) {
    let status = wait_for(pid, WaitPidFlag::empty(), Duration::from_secs(60)).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(status, WaitStatus::Exited(pid, 0), "{what} must exit 0 (no process may die on a full disk)");
}

/// The value of `name` with exactly the labels `labels` in `scrape`.
fn value_of(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.families.iter().flat_map(|f| &f.samples).find_map(|s| {
        let same =
            &*s.name == name && s.labels.len() == labels.len() && labels.iter().all(|(k, v)| s.label(k) == Some(v));
        same.then_some(s.value)
    })
}

/// In a private mount namespace, on a `TMPFS_KIB` KiB tmpfs:
/// 1. the master (self-metrics on) declares two counters and counts 5 on each, as a
///    pre-fork master would;
/// 2. `FILLERS` writer processes (slots `f0`.., self-metrics on) get ready, then all at
///    once create 200-byte-label series (incrementing each, and an anchor) until creation
///    fails; each checks that the error is `NoSpace` naming its counter file, that its
///    anchor and every series it made keep counting, that asking again fails the same
///    way, that a new file (a summary) either fits or fails with `NoSpace` naming it, that
///    `lost_series()` is 0 (nothing it had was lost) and that `dropped_series()` counts
///    exactly its failed creations;
/// 3. a scraper child scrapes throughout, and `SCRAPES_WHEN_FULL` times once told the
///    disk is full: every scrape succeeds, skips nothing, and no counter goes down;
/// 4. the master fills what is left with a ballast file (not `*.db`), counts once more on
///    its own handles, and forks a late child whose inherited series must move to the
///    child's own file, which the full disk cannot hold: the child must survive, with
///    every one of the master's series in `lost_series()` and in `dropped_series()`
///    under `fork`, no file of its own, and a `NoSpace` for a new series;
/// 5. the master scrapes the full disk: every total is exact, and
///    `prometheus_multiproc_dropped_series_total{reason="no_space"}` is the sum of the
///    fillers' failed creations.
fn role_disk_master() {
    let dir = PathBuf::from(std::env::var("PROMETHEUS_MULTIPROC_DIR").expect("PROMETHEUS_MULTIPROC_DIR"));
    support::mount_private_tmpfs(&dir, &format!("size={TMPFS_KIB}k,mode=0700"));
    let fs = nix::sys::statvfs::statvfs(&dir).expect("statvfs");
    let size = fs.blocks() as u64 * fs.fragment_size() as u64;
    assert_eq!(size, TMPFS_KIB * 1024, "the tmpfs on {} has the wrong size", dir.display());
    println!("full disk: mounted a {size}-byte tmpfs on {} in a private mount namespace", dir.display());

    // 1. A pre-fork master's own metrics.
    let master = Registry::builder().worker_id(WorkerId::new("master").unwrap()).self_metrics(true).build().unwrap();
    let pre = master.counter(Opts::new("pre_fork_total", "Declared before the disk filled.")).unwrap();
    let pre_labeled = master
        .counter_family(Opts::new("pre_fork_labeled_total", "Labeled, declared before the disk filled."), &["l"])
        .unwrap()
        .get(&["x"])
        .unwrap();
    pre.inc_by(5.0);
    pre_labeled.inc_by(5.0);

    // 2. Fillers, held at a barrier (`go`) until all have their files.
    let me = nix::unistd::getpid();
    let (rep_r, rep_w) = io::pipe().expect("pipe");
    let (go_r, go_w) = io::pipe().expect("pipe");
    nonblocking(&rep_r);
    let mut fillers = Vec::new();
    for i in 0..FILLERS {
        match fork() {
            ForkResult::Child => {
                drop(go_w);
                drop(rep_r);
                child_of(me);
                std::process::exit(filler(i, &dir, rep_w, go_r));
            }
            ForkResult::Parent { child } => fillers.push(child),
        }
    }
    drop(go_r);
    let mut reports = Reports { pipe: rep_r, pending: String::new(), lines: Vec::new() };
    reports.take(&["ready "], FILLERS, Duration::from_secs(60));

    // 3. The scraper, told through `stop_w` when the disk is full.
    let (stop_r, stop_w) = io::pipe().expect("pipe");
    let scraper = match fork() {
        ForkResult::Child => {
            drop(go_w);
            drop(stop_w);
            child_of(me);
            std::process::exit(disk_scraper(&dir, stop_r, rep_w));
        }
        ForkResult::Parent { child } => child,
    };
    drop(stop_r);
    drop(go_w); // go
    let filled = reports.take(&["filled ", "FAIL "], FILLERS, Duration::from_secs(60));
    let failures: Vec<&String> = filled.iter().filter(|l| l.starts_with("FAIL ")).collect();
    assert!(failures.is_empty(), "fillers failed: {failures:#?}");
    for (i, pid) in fillers.iter().enumerate() {
        wait_exit_ok(*pid, &format!("filler f{i}"));
    }
    let mut created = HashMap::new();
    let mut summaries = 0u64;
    let mut no_space = 0u64;
    for line in &filled {
        let mut words = line.split(' ');
        let id = words.nth(1).unwrap().to_owned();
        let count: u64 = words.next().and_then(|w| w.strip_prefix("created=")).unwrap().parse().unwrap();
        summaries += words.next().and_then(|w| w.strip_prefix("summary=")).unwrap().parse::<u64>().unwrap();
        no_space += words.next().and_then(|w| w.strip_prefix("no_space=")).unwrap().parse::<u64>().unwrap();
        created.insert(id, count);
    }

    // 4. Nothing left at all, then a late fork child.
    let ballast = fill_ballast(&dir.join("ballast.bin"));
    let free = nix::sys::statvfs::statvfs(&dir).expect("statvfs").blocks_available();
    assert_eq!(free, 0, "the ballast should leave no free block");
    pre.inc();
    pre_labeled.inc();
    assert_eq!((pre.get(), pre_labeled.get()), (6.0, 6.0), "the master's handles count on a full disk");
    // Every series of the master's (its own two and its self-metric's) must be lost in
    // the child.
    let master_series = file_entry_count(&dir.join("counter_master.db"));
    let mut stop_w = stop_w;
    let late = match fork() {
        ForkResult::Child => {
            drop(stop_w);
            child_of(me);
            std::process::exit(late_child(&dir, &master, master_series, &pre, &pre_labeled, rep_w));
        }
        ForkResult::Parent { child } => child,
    };
    let late_line = reports.take(&["late "], 1, Duration::from_secs(60)).remove(0);
    wait_exit_ok(late, "the late fork child");
    assert!(late_line.starts_with("late ok:"), "{late_line}");
    // Tell the scraper the disk is full: it scrapes `SCRAPES_WHEN_FULL` more times, then
    // reports.
    stop_w.write_all(b"F").expect("write to the scraper");
    let scraped = reports.take(&["scraped ", "SCRAPER FAILED "], 1, Duration::from_secs(60)).remove(0);
    wait_exit_ok(scraper, "the scraper");
    assert!(scraped.starts_with("scraped "), "{scraped}");
    drop(stop_w);

    // 5. The master scrapes the full disk.
    let scrape = Collector::new(&dir).unwrap().collect().expect("scrape a full disk");
    assert!(scrape.skipped.is_empty(), "skipped on a full disk: {:?}", scrape.skipped);
    for (id, &count) in &created {
        let series: Vec<f64> = scrape
            .families
            .iter()
            .flat_map(|f| &f.samples)
            .filter(|s| &*s.name == "fill_series_total" && s.label("writer") == Some(id))
            .map(|s| s.value)
            .collect();
        assert_eq!(series.len() as u64, count, "series of {id} in the scrape");
        assert!(series.iter().all(|v| *v == 2.0), "every series of {id} counted 1 before and 1 after the disk filled");
        let anchor = value_of(&scrape, "fill_anchor_total", &[("writer", id)]);
        assert_eq!(anchor, Some((count + AFTER_FULL) as f64), "anchor of {id}");
    }
    assert_eq!(value_of(&scrape, "pre_fork_total", &[]), Some(6.0), "the late child's writes were dropped");
    assert_eq!(value_of(&scrape, "pre_fork_labeled_total", &[("l", "x")]), Some(6.0));
    // The dropped-series count is exposed: the fillers' creation failures, exactly. The
    // late child's drops are not in any file: its self-metric series were among the
    // series it could not re-create (printed below, see the report).
    let exposed = |reason| value_of(&scrape, DROPPED_SERIES_METRIC, &[("reason", reason)]);
    assert_eq!(exposed("no_space"), Some(no_space as f64), "{DROPPED_SERIES_METRIC}{{reason=no_space}}");
    assert_eq!(exposed("io"), Some(0.0));
    assert_eq!(exposed("cardinality"), Some(0.0));
    let fork_exposed = exposed("fork");
    let summary_count = value_of(&scrape, "fill_summary_count", &[]);
    assert_eq!(summary_count.unwrap_or(0.0), summaries as f64, "summaries that fitted");
    let samples: usize = scrape.families.iter().map(|f| f.samples.len()).sum();
    let mut per_writer: Vec<String> = created.iter().map(|(id, n)| format!("{id}: {n}")).collect();
    per_writer.sort();
    println!(
        "full disk: {FILLERS} writers created series until the {TMPFS_KIB} KiB tmpfs was full ({}), none died; \
         {summaries} of their new summary files fitted; each counted {AFTER_FULL} more on existing handles; \
         each one's lost_series() stayed 0 (a failed creation is an error to the caller, not a lost series); \
         ballast took the last {ballast} bytes",
        per_writer.join(", ")
    );
    println!("full disk: a filler's creation error: {}", filled[0].split_once("error=").map_or("?", |(_, e)| e));
    println!("full disk: {late_line}");
    println!(
        "full disk: the scrape exposes {DROPPED_SERIES_METRIC}{{reason=no_space}} = {no_space} (the fillers' failed \
         creations, exactly); {{reason=fork}} = {}: the late child's {master_series} fork drops are \
         counted in-process only",
        fork_exposed.unwrap_or(0.0)
    );
    println!("full disk: {scraped}");
    println!(
        "full disk: ok, the final scrape of the full disk skipped nothing and every one of {samples} samples is exact"
    );
}

/// Writer `f{i}`: see `role_disk_master`. Returns the exit status.
fn filler(i: usize, dir: &Path, mut rep: io::PipeWriter, mut go: io::PipeReader) -> i32 {
    let id = format!("f{i}");
    let outcome = (|| -> Result<String, Box<dyn std::error::Error>> {
        let registry = Registry::builder().worker_id(WorkerId::new(&id)?).self_metrics(true).build()?;
        let family = registry
            .counter_family(Opts::new("fill_series_total", "Created until the disk filled."), &["writer", "id"])?;
        let anchor = registry
            .counter_family(Opts::new("fill_anchor_total", "Counted before and after."), &["writer"])?
            .get(&[&id])?;
        report(&mut rep, &format!("ready {id}"));
        let mut byte = [0u8; 1];
        if go.read(&mut byte)? != 0 {
            return Err("unexpected data on the barrier pipe".into());
        }
        let key = |n: usize| format!("{n:0>200}");
        let mut handles = Vec::new();
        let err = loop {
            if handles.len() >= 100_000 {
                return Err("the tmpfs never filled".into());
            }
            match family.get(&[&id, &key(handles.len())]) {
                Ok(c) => {
                    c.inc();
                    anchor.inc();
                    handles.push(c);
                    // Leave the scraper time to scrape while the file fills and grows.
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => break e,
            }
        };
        let file = dir.join(format!("counter_{id}.db"));
        if err.kind() != ErrorKind::NoSpace || err.path() != Some(file.as_path()) {
            return Err(format!(
                "creation failed with {:?} at {:?}: {err}; expected NoSpace at {}",
                err.kind(),
                err.path(),
                file.display()
            )
            .into());
        }
        if !err.to_string().contains(&*file.to_string_lossy()) {
            return Err(format!("the message does not name the file: {err}").into());
        }
        // The disk is full: every existing handle keeps counting.
        for _ in 0..AFTER_FULL {
            anchor.inc();
        }
        for c in &handles {
            c.inc();
        }
        if anchor.get() != (handles.len() as u64 + AFTER_FULL) as f64 || handles.iter().any(|c| c.get() != 2.0) {
            return Err(format!("existing handles stopped counting: anchor {}", anchor.get()).into());
        }
        // Asking again fails the same way.
        match family.get(&[&id, &key(handles.len())]) {
            Err(e) if e.kind() == ErrorKind::NoSpace => {}
            other => return Err(format!("asking again: {other:?}, expected NoSpace").into()),
        }
        // A new file either fits in what is left or fails with NoSpace naming it.
        let summary_file = dir.join(format!("summary_{id}.db"));
        let summary = match registry.summary(Opts::new("fill_summary", "A new file on a full disk.")) {
            Ok(s) => {
                s.observe(1.0);
                1
            }
            Err(e) if e.kind() == ErrorKind::NoSpace && e.path() == Some(summary_file.as_path()) => 0,
            Err(e) => {
                return Err(
                    format!("a new summary: {e}, expected success or NoSpace at {}", summary_file.display()).into()
                );
            }
        };
        if registry.lost_series() != 0 {
            return Err(format!("lost_series() = {} in a writer that never forked", registry.lost_series()).into());
        }
        // Three creations failed (the first, the one asked again, the summary if it did
        // not fit): counted in-process, and in the self-metric created before the disk
        // filled.
        let no_space = 3 - summary;
        let want = vec![
            ("no_space", no_space),
            ("io", 0),
            ("cardinality", 0),
            ("fork", 0),
            ("negative_increment", 0),
            ("inc_on_mostrecent", 0),
        ];
        if registry.dropped_series() != want {
            return Err(format!("dropped_series() = {:?}, expected {want:?}", registry.dropped_series()).into());
        }
        Ok(format!("filled {id} created={} summary={summary} no_space={no_space} error={err}", handles.len()))
    })();
    match outcome {
        Ok(line) => {
            report(&mut rep, &line);
            0
        }
        Err(e) => {
            report(&mut rep, &format!("FAIL {id} {e}"));
            1
        }
    }
}

/// Scrapes while the disk fills, and `SCRAPES_WHEN_FULL` more times once the master
/// writes a byte to `full`: every scrape succeeds, skips nothing, and no counter,
/// histogram or summary sample goes down or disappears.
fn disk_scraper(dir: &Path, mut full: io::PipeReader, mut rep: io::PipeWriter) -> i32 {
    nonblocking(&full);
    let outcome = (|| -> Result<String, String> {
        let collector = Collector::new(dir).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut prev: HashMap<String, f64> = HashMap::new();
        let mut scrapes = 0u64;
        let mut when_full: Option<u64> = None;
        loop {
            match full.read(&mut [0u8; 1]) {
                Ok(1) => when_full = Some(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return Err(format!("the pipe from the master: {other:?}")),
            }
            if when_full == Some(SCRAPES_WHEN_FULL) {
                break;
            }
            if Instant::now() > deadline {
                return Err("still scraping after 120 s".into());
            }
            let scrape = collector.collect().map_err(|e| format!("scrape {}: {e}", scrapes + 1))?;
            if !scrape.skipped.is_empty() {
                return Err(format!("scrape {} skipped {:?}", scrapes + 1, scrape.skipped));
            }
            let mut now = HashMap::new();
            for family in scrape.families.iter().filter(|f| f.kind != MetricType::Gauge) {
                for s in &family.samples {
                    now.insert(format!("{}{:?}", s.name, s.labels), s.value);
                }
            }
            for (key, before) in &prev {
                match now.get(key) {
                    Some(after) if after >= before => {}
                    other => return Err(format!("scrape {}: {key} went from {before} to {other:?}", scrapes + 1)),
                }
            }
            prev = now;
            scrapes += 1;
            if let Some(n) = &mut when_full {
                *n += 1;
            }
        }
        Ok(format!(
            "scraped {scrapes} times while the disk filled and once it was full ({SCRAPES_WHEN_FULL} of them): every \
             scrape succeeded and skipped nothing, no counter went down ({} counter samples at the end)",
            prev.len()
        ))
    })();
    match outcome {
        Ok(line) => {
            report(&mut rep, &line);
            0
        }
        Err(e) => {
            report(&mut rep, &format!("SCRAPER FAILED {e}"));
            1
        }
    }
}

/// The number of entries in the `.db` file at `path`.
fn file_entry_count(path: &Path) -> u64 {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let used = format::checked_used(&data).expect("a well-formed file");
    format::entries(&data, used).collect::<Result<Vec<_>, _>>().expect("well-formed entries").len() as u64
}

/// Writes zeros to `path` until the file system is full; returns the bytes written.
fn fill_ballast(path: &Path) -> u64 {
    let file = File::create(path).expect("create the ballast file");
    let page = [0u8; 4096];
    let mut written = 0u64;
    for _ in 0..(TMPFS_KIB / 4 + 1) {
        match file.write_at(&page, written) {
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return written,
            Err(e) => panic!("ballast: {e}"),
        }
    }
    panic!("the ballast wrote {written} bytes without filling the tmpfs");
}

/// The late fork child: its inherited handles must be re-created in its own file, which
/// the full disk cannot hold.
fn late_child(
    dir: &Path,
    registry: &Registry,
    master_series: u64,
    pre: &Counter,
    labeled: &Counter,
    mut rep: io::PipeWriter,
) -> i32 {
    pre.inc();
    labeled.inc();
    pre.inc_by(2.0);
    let lost = registry.lost_series();
    let own_file = dir.join(format!("counter_{}.db", std::process::id()));
    let new = registry.counter(Opts::new("late_total", "Declared on a full disk."));
    let dropped = registry.dropped_series();
    let want = vec![
        ("no_space", 1),
        ("io", 0),
        ("cardinality", 0),
        ("fork", master_series),
        ("negative_increment", 0),
        ("inc_on_mostrecent", 0),
    ];
    let problems: Vec<String> = [
        (lost != master_series).then(|| format!("lost_series() = {lost}, expected {master_series}")),
        (dropped != want).then(|| format!("dropped_series() = {dropped:?}, expected {want:?}")),
        own_file.exists().then(|| format!("{} exists", own_file.display())),
        match &new {
            Err(e) if e.kind() == ErrorKind::NoSpace && e.path() == Some(own_file.as_path()) => None,
            other => Some(format!("a new counter gave {other:?}, expected NoSpace at {}", own_file.display())),
        },
    ]
    .into_iter()
    .flatten()
    .collect();
    if problems.is_empty() {
        let err = new.err().map(|e| e.to_string()).unwrap_or_default();
        report(
            &mut rep,
            &format!(
                "late ok: a fork child of the master survived the full disk with lost_series() = {lost} \
                 (every series of the master's, self-metric included: their writes are dropped, no file of its \
                 own) and dropped_series() = {dropped:?}; a new series: {err}"
            ),
        );
        0
    } else {
        report(&mut rep, &format!("late FAILED: {}", problems.join("; ")));
        1
    }
}

fn full_disk_keeps_writers_alive_and_counting_and_scrapes_exact() -> Result<(), Failed> {
    let dir = TestDir::new();
    let mut master = role_command("disk-master", dir.path()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut out = master.stdout.take().ok_or("no stdout")?;
    let mut err = master.stderr.take().ok_or("no stderr")?;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = master.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = master.kill(); // its children die with it (PR_SET_PDEATHSIG)
            let _ = master.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    let Some(status) = status else {
        return Err(format!("the full-disk master ran for 120 s and was killed:\n{out}{err}").into());
    };
    if !status.success() {
        return Err(format!("the full-disk master failed ({status}):\n--- stdout\n{out}--- stderr\n{err}").into());
    }
    if !out.contains("full disk: mounted a ") || !out.contains("full disk: ok") {
        return Err(format!("the full-disk master did not report its mount and its checks:\n{out}{err}").into());
    }
    let outside = std::fs::read_dir(dir.path())?.count();
    if outside != 0 {
        return Err(format!("{outside} files appeared outside the private tmpfs").into());
    }
    print!("{out}");
    Ok(())
}
