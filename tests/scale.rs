//! A long-lived collector over very many files: nothing is skipped, totals are exact,
//! and the number of mappings the process holds stays bounded (Linux refuses new ones
//! past `vm.max_map_count`, 65,530 by default, and the SIGBUS guard's table has 65,536
//! entries: a collector that mapped every file would start skipping files there).

mod support;

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use prometheus_multiproc::format::{self, key::encode_key};
use prometheus_multiproc::{Collector, Opts, Registry, WorkerId};

/// A directory for many small files: on tmpfs when there is one (metrics directories
/// usually are, and creating 200,000 files on a busy disk takes minutes).
fn many_files_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("pmp-scale-").tempdir_in(shm);
    builder.unwrap_or_else(|_| tempfile::tempdir().unwrap())
}

/// The collector keeps at most this many mappings between scrapes (its documented
/// bound); files past it are mapped while they are read and unmapped at once.
const MAX_KEPT_MAPPINGS: usize = 16_384;

/// Mapping counts are per process: the tests of this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Lines of `/proc/self/maps`: the process's mappings.
fn mappings() -> usize {
    fs::read_to_string("/proc/self/maps").unwrap().lines().count()
}

/// A counter file with one entry, `jobs_total{} value`, as a writer leaves it.
fn counter_file(key: &[u8], value: f64) -> Vec<u8> {
    let mut out = format::encode_header(0).to_vec();
    format::encode_entry(&mut out, key, value, 0.0);
    let used = out.len() as u32;
    out[..4].copy_from_slice(&used.to_le_bytes());
    out
}

/// Writes `count` counter files, worker `i` holding `i % 1000`. With `dead`, they are
/// pid-named writers of this crate (pids above any `pid_max`, so no process runs with
/// them), each of which left its liveness file (free, recording its pid). Without, they
/// are stock Python workers with a custom `process_identifier` (`w` and a number): no
/// liveness file and no pid, so they may be alive.
/// Returns the exact total.
fn write_workers(dir: &Path, count: usize, dead: bool) -> f64 {
    let key = encode_key("jobs", "jobs_total", &[], "Jobs.").into_bytes();
    let mut total = 0.0;
    for i in 0..count {
        let pid = 5_000_000 + i;
        let value = (i % 1000) as f64;
        let id = if dead { pid.to_string() } else { format!("w{pid}") };
        fs::write(dir.join(format!("counter_{id}.db")), counter_file(&key, value)).unwrap();
        if dead {
            fs::write(dir.join(format!("writer_{pid}.lock")), format!("{pid}\n")).unwrap();
        }
        total += value;
    }
    total
}

fn jobs_total(collector: &Collector) -> f64 {
    let scrape = collector.collect().unwrap();
    assert!(scrape.skipped.is_empty(), "skipped {} files, first {:?}", scrape.skipped.len(), scrape.skipped.first());
    assert_eq!(scrape.families.len(), 1);
    assert_eq!(scrape.families[0].samples.len(), 1);
    scrape.families[0].samples[0].value
}

#[test]
fn a_hundred_thousand_dead_workers_files_are_all_read_and_mappings_stay_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = many_files_dir();
    let total = write_workers(dir.path(), 100_000, true);
    let before = mappings();
    let collector = Collector::new(dir.path()).unwrap();
    assert_eq!(jobs_total(&collector), total);
    let after_first = mappings();
    // A repeat scrape reads them all again (through the mappings it kept, or by copying
    // the files again: a dead writer's slot can be taken over, and these IDs are their
    // writers' pids).
    assert_eq!(jobs_total(&collector), total);
    let after_second = mappings();
    // The first files seen keep their mappings, up to the bound; the others were copied,
    // not mapped. Only the allocator's own mappings may come and go besides (a few).
    for after in [after_first, after_second] {
        assert!(after < before + MAX_KEPT_MAPPINGS + 64, "{before} mappings before the scrape, {after} after");
    }
    drop(collector);
    // With no mapping kept, none is left after a scrape.
    let collector = Collector::new(dir.path()).unwrap().with_max_kept_mappings(0);
    assert_eq!(jobs_total(&collector), total);
    assert!(mappings() < before + 64, "{before} mappings before, {} after", mappings());
}

#[test]
fn files_of_writers_that_may_be_alive_are_mapped_up_to_a_bound_and_read_fresh_past_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = many_files_dir();
    // No liveness files and no pids: stock Python workers, which may be alive.
    let count = MAX_KEPT_MAPPINGS + 1000;
    let total = write_workers(dir.path(), count, false);
    let before = mappings();
    let collector = Collector::new(dir.path()).unwrap();
    assert_eq!(jobs_total(&collector), total);
    let after = mappings();
    assert!(after >= before + MAX_KEPT_MAPPINGS, "live files' mappings are kept: {before} → {after}");
    assert!(after < before + MAX_KEPT_MAPPINGS + 64, "at most {MAX_KEPT_MAPPINGS} kept: {before} → {after}");
    // A file whose mapping was not kept (the last in name order) is read afresh: a
    // value its writer changes in place is seen.
    let last = dir.path().join(format!("counter_w{}.db", 5_000_000 + count - 1));
    let bytes = fs::read(&last).unwrap();
    let entry = format::entries(&bytes, bytes.len()).next().unwrap().unwrap();
    let at = entry.value_offset;
    let old = f64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    // In place, as a writer stores a value (never truncating the file).
    let file = fs::OpenOptions::new().write(true).open(&last).unwrap();
    std::os::unix::fs::FileExt::write_at(&file, &(old + 1000.0).to_le_bytes(), at as u64).unwrap();
    assert_eq!(jobs_total(&collector), total + 1000.0);
    assert!(mappings() < before + MAX_KEPT_MAPPINGS + 64);
    drop(collector);
    assert!(mappings() < before + 64, "the collector's mappings go with it");
}

/// The collector trusts a file's stamp (and skips reading it) only once its last change
/// is this old: `read::SETTLED` plus a margin.
const SETTLED: std::time::Duration = std::time::Duration::from_millis(2100);

#[test]
fn a_dead_writers_slot_taken_over_between_scrapes_is_read_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = many_files_dir();
    let id = WorkerId::new("slot-1").unwrap();
    let writer = || Registry::builder().dir(dir.path()).worker_id(id.clone()).build().unwrap();
    let jobs = |r: &Registry| r.counter(Opts::new("jobs_total", "Jobs.")).unwrap();
    {
        let r = writer();
        jobs(&r).inc_by(5.0);
    }
    // The dead writer's files are now old enough that a repeat scrape finds them
    // unchanged by their stamps and does not read them.
    std::thread::sleep(SETTLED);
    let collector = Collector::new(dir.path()).unwrap();
    assert_eq!(jobs_total(&collector), 5.0);
    assert_eq!(jobs_total(&collector), 5.0);
    // A writer takes the slot over, counts through its mapping (which changes neither
    // the file's size nor, on tmpfs, its times) and exits, all between two scrapes.
    {
        let r = writer();
        jobs(&r).inc_by(2.0);
    }
    assert_eq!(jobs_total(&collector), 7.0, "the takeover is seen by its liveness file");
    // And while one is alive, its file is mapped and read as it changes.
    let r = writer();
    let live = jobs(&r);
    live.inc_by(1.0);
    assert_eq!(jobs_total(&collector), 8.0);
    live.inc_by(1.0);
    assert_eq!(jobs_total(&collector), 9.0);
    drop((live, r));
    std::thread::sleep(SETTLED);
    assert_eq!(jobs_total(&collector), 9.0);
    assert_eq!(jobs_total(&collector), 9.0);
}

#[test]
fn a_dead_writers_large_file_is_mapped_while_read_and_counted_whole() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = many_files_dir();
    // 2,000 series: well past the 64 KiB a dead writer's file is copied up to.
    let mut bytes = format::encode_header(0).to_vec();
    let mut total = 0.0;
    for i in 0..2000 {
        let route = format!("/r{i}");
        let key = encode_key("jobs", "jobs_total", &[("route", &route)], "Jobs.").into_bytes();
        format::encode_entry(&mut bytes, &key, i as f64, 0.0);
        total += i as f64;
    }
    let used = bytes.len() as u32;
    assert!(used > 64 * 1024);
    bytes[..4].copy_from_slice(&used.to_le_bytes());
    fs::write(dir.path().join("counter_slot-9.db"), &bytes).unwrap();
    fs::write(dir.path().join("writer_slot-9.lock"), b"1\n").unwrap();
    let before = mappings();
    for collector in
        [Collector::new(dir.path()).unwrap(), Collector::new(dir.path()).unwrap().with_max_kept_mappings(0)]
    {
        for _ in 0..3 {
            let scrape = collector.collect().unwrap();
            assert!(scrape.skipped.is_empty(), "{:?}", scrape.skipped);
            let sum: f64 = scrape.families[0].samples.iter().map(|s| s.value).sum();
            assert_eq!((scrape.families[0].samples.len(), sum), (2000, total));
        }
    }
    assert!(mappings() < before + 64, "no mapping outlives its collector");
}
