//! Compaction: bounded files after many restarts, totals preserved, crash safety at
//! every step, and scrapes that never see a double count or a dip. The compactor is
//! killed in a child process (this binary re-run in a role).

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use libtest_mimic::{Failed, Trial};
use prometheus_multiproc::cleanup::{CompactOptions, compact, compact_with};
use prometheus_multiproc::{Collector, GaugeMode, Opts, Registry, WorkerId, render};
use support::{TestDir, python_samples, role_command, samples_of};

fn main() {
    let tests = vec![
        Trial::test(
            "compaction_after_2000_restarts_bounds_files_and_keeps_every_total",
            compaction_after_2000_restarts_bounds_files_and_keeps_every_total,
        ),
        Trial::test("compactor_killed_at_every_step_loses_and_doubles_nothing", compactor_killed_at_every_step),
        Trial::test("scrapes_during_compaction_never_see_a_double_count_or_dip", scrapes_during_compaction),
        Trial::test("second_compactor_is_refused_while_one_runs", second_compactor_is_refused),
        Trial::test(
            "worker_taking_a_slot_after_a_compactor_crash_at_any_step_loses_nothing",
            worker_taking_a_slot_after_a_compactor_crash,
        ),
        Trial::test(
            "compactor_killed_again_at_every_step_of_each_recovery_converges",
            compactor_killed_again_during_each_recovery,
        ),
        Trial::test(
            "a_corrupt_dead_file_is_left_in_place_and_the_rest_compacted",
            a_corrupt_dead_file_is_left_in_place,
        ),
        Trial::test("archives_take_the_permission_bits_of_their_sources", archives_take_the_mode_of_their_sources),
        Trial::test(
            "automatic_compaction_waits_for_the_threshold_then_folds",
            automatic_compaction_waits_for_the_threshold,
        ),
        Trial::test(
            "a_dead_writer_whose_pid_runs_again_is_not_folded_until_it_is_gone",
            a_dead_writer_whose_pid_runs_again_is_deferred,
        ),
        Trial::test(
            "compact_then_scrape_and_a_slot_takeover_log_nothing_at_warn_level",
            compact_then_scrape_logs_no_warning,
        ),
        Trial::test(
            "after_300_startup_kills_one_compaction_leaves_no_lock_or_temporary_file_of_a_dead_writer",
            startup_kill_storm_leaves_no_leftovers,
        ),
    ];
    support::main_with_roles(run_role, tests)
}

fn run_role(role: &str) {
    match role {
        // Compacts $PROMETHEUS_MULTIPROC_DIR and SIGKILLs itself right after step $CRASH_AT.
        "compact-crash" => {
            let dir = std::env::var("PROMETHEUS_MULTIPROC_DIR").unwrap();
            let crash_at: usize = std::env::var("CRASH_AT").unwrap().parse().unwrap();
            let on_step = move |step: &prometheus_multiproc::cleanup::Step| {
                if step.index == crash_at {
                    nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
                }
            };
            let done = compact_with(Path::new(&dir), CompactOptions::default().on_step(on_step)).unwrap();
            println!("finished {}", done.removed.len());
        }
        // Compacts, scrapes, takes over a compacted slot and scrapes again, with a
        // logger that prints every record at warn level or above to stdout.
        "quiet-cycle" => {
            log::set_logger(&WARN_PRINTER).unwrap();
            log::set_max_level(log::LevelFilter::Trace);
            let dir = std::env::var("PROMETHEUS_MULTIPROC_DIR").unwrap();
            quiet_cycle(Path::new(&dir));
        }
        // The start-up kill storm, away from the other tests' writers.
        "startup-storm" => {
            let dir = std::env::var("PROMETHEUS_MULTIPROC_DIR").unwrap();
            if let Err(e) = startup_kill_storm(Path::new(&dir)) {
                println!("storm failed: {e:?}");
                std::process::exit(1);
            }
        }
        // A pid-named worker's start-up: says "start", builds its registry, creates its
        // files, counts, says "done" and exits (unless it is killed first).
        "startup-worker" => {
            println!("start");
            let registry = Registry::from_env().unwrap();
            work(&registry, 1);
            println!("done");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Prints every log record at warn level or above as `LOGGED LEVEL message`.
struct WarnPrinter;

static WARN_PRINTER: WarnPrinter = WarnPrinter;

impl log::Log for WarnPrinter {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            println!("LOGGED {} {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// A normal life of a directory: writers die, compaction folds them, scrapes read the
/// archives, a new writer takes over a folded slot, the next compaction folds an
/// archive again.
fn quiet_cycle(dir: &Path) {
    let _live = live_workers(dir, 1);
    dead_workers(dir, "d", 0, 3);
    let collector = Collector::new(dir).unwrap();
    text(&collector);
    compact(dir).unwrap();
    text(&collector);
    text(&Collector::new(dir).unwrap());
    // Slot d0 was folded: a writer taking it over checks for an interrupted compaction.
    dead_workers(dir, "d", 0, 1);
    text(&collector);
    compact(dir).unwrap();
    text(&collector);
    println!("cycle done");
}

/// One worker's life: the same families and label sets in every worker, integer and
/// dyadic values so every sum is exact in any order.
fn work(registry: &Registry, i: usize) {
    let requests = registry.counter_family(Opts::new("c_requests_total", "Requests."), &["route"]).unwrap();
    requests.get(&["/a"]).unwrap().inc_by((i % 3 + 1) as f64);
    requests.get(&["/b"]).unwrap().inc();
    let latency = registry.histogram(Opts::new("c_latency_seconds", "Latency."), &[0.25, 1.0]).unwrap();
    for v in [0.25, 0.5, 2.0] {
        latency.observe(v);
    }
    registry.summary(Opts::new("c_payload_bytes", "Payload.")).unwrap().observe(128.0 * (i + 1) as f64);
    for (name, mode) in [("c_g_sum", GaugeMode::Sum), ("c_g_max", GaugeMode::Max), ("c_g_min", GaugeMode::Min)] {
        registry.gauge(Opts::new(name, "G."), mode).unwrap().set(i as f64);
    }
    registry.gauge(Opts::new("c_g_recent", "Most recent."), GaugeMode::MostRecent).unwrap().set(i as f64);
    registry.gauge(Opts::new("c_in_flight", "In flight."), GaugeMode::LiveSum).unwrap().inc();
}

/// Writers `first..first+n` under IDs `{tag}{i}` that exit (their registries drop).
fn dead_workers(dir: &Path, tag: &str, first: usize, n: usize) {
    for i in first..first + n {
        let id = format!("{tag}{i}");
        let registry = Registry::builder().dir(dir).worker_id(WorkerId::new(&id).unwrap()).build().unwrap();
        work(&registry, i);
        drop(registry);
        // A child that another test thread is spawning holds a copy of the liveness
        // lock's descriptor until it execs: the writer reads as dead only then.
        let mut tries = 0;
        while prometheus_multiproc::cleanup::liveness(dir, &id) != prometheus_multiproc::cleanup::Liveness::Dead {
            tries += 1;
            assert!(tries < 5000, "writer {id} still reads as alive after 5 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Writers that stay alive as long as the returned registries do.
fn live_workers(dir: &Path, n: usize) -> Vec<Registry> {
    (0..n)
        .map(|i| {
            let registry =
                Registry::builder().dir(dir).worker_id(WorkerId::new(&format!("live{i}")).unwrap()).build().unwrap();
            work(&registry, 1000 + i);
            registry
        })
        .collect()
}

fn text(collector: &Collector) -> String {
    let scrape = collector.collect().unwrap();
    // A file removed between listing and reading (a folded source, a dead writer's
    // live gauge) is reported as vanished; nothing else may be skipped.
    let bad: Vec<_> =
        scrape.skipped.iter().filter(|s| s.reason != prometheus_multiproc::SkipReason::Vanished).collect();
    assert!(bad.is_empty(), "skipped files: {bad:?}");
    String::from_utf8(render(&scrape, None, None).body).unwrap()
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), Failed> {
    if got == want { Ok(()) } else { Err(format!("{what}:\n got {got:?}\nwant {want:?}").into()) }
}

fn compaction_after_2000_restarts_bounds_files_and_keeps_every_total() -> Result<(), Failed> {
    let dir = TestDir::new();
    let _live = live_workers(dir.path(), 4);
    dead_workers(dir.path(), "r", 0, 2000);
    let files_before = dir.db_files().len();
    let collector = Collector::new(dir.path())?;
    let before = text(&collector);
    let done = compact(dir.path())?;
    expect_eq("dead writers", done.dead_writers.len(), 2000)?;
    let files_after = dir.db_files();
    // 7 archives (one per foldable prefix) + the 4 live workers' 8 files each.
    if files_after.len() > 7 + 4 * 8 {
        return Err(
            format!("{} files after compaction (from {files_before}): {files_after:?}", files_after.len()).into()
        );
    }
    expect_eq("our scrape after compaction", text(&collector), before.clone())?;
    expect_eq("a fresh collector", text(&Collector::new(dir.path())?), before)?;
    // Python's collector reads the archives: the same totals as ours.
    let ours = support::samples_of(&collector.collect()?);
    expect_eq("python totals on the compacted directory", python_samples(dir.path()), ours)?;
    println!("files: {files_before} before, {} after", files_after.len());
    Ok(())
}

/// A directory that has been compacted once and has three more dead writers since,
/// so a compaction folds an old archive too.
fn crash_scenario(dir: &Path) -> Vec<Registry> {
    let live = live_workers(dir, 2);
    dead_workers(dir, "d", 0, 3);
    compact(dir).unwrap();
    dead_workers(dir, "e", 3, 3);
    live
}

/// File names with archive generations blanked: a compaction interrupted after some
/// archives were published and finished by the next one numbers the rest higher.
fn without_generation(names: Vec<String>) -> Vec<String> {
    names
        .into_iter()
        .map(|n| match n.split_once("_0archive-") {
            Some((p, _)) => format!("{p}_0archive-N.db"),
            None => n,
        })
        .collect()
}

/// Compacts `dir` without interruption and returns how many steps that took.
fn compact_counting_steps(dir: &Path) -> Result<usize, Failed> {
    let steps = AtomicUsize::new(0);
    let counter = |_: &prometheus_multiproc::cleanup::Step| {
        steps.fetch_add(1, Ordering::Relaxed);
    };
    compact_with(dir, CompactOptions::default().on_step(counter))?;
    Ok(steps.load(Ordering::Relaxed))
}

fn compactor_killed_at_every_step() -> Result<(), Failed> {
    // Count the steps of an uninterrupted compaction of the same scenario.
    let reference = TestDir::new();
    let _live = crash_scenario(reference.path());
    let reference_text_before = text(&Collector::new(reference.path())?);
    let total = compact_counting_steps(reference.path())?;
    let reference_python = python_samples(reference.path());
    if total < 20 {
        return Err(format!("only {total} steps: the scenario does not exercise compaction").into());
    }
    for crash_at in 0..total {
        let dir = TestDir::new();
        let _live = crash_scenario(dir.path());
        let collector = Collector::new(dir.path())?;
        let before = text(&collector);
        expect_eq("scenario baseline", &before, &reference_text_before)?;
        let out = role_command("compact-crash", dir.path()).env("CRASH_AT", crash_at.to_string()).output()?;
        if out.status.success() {
            return Err(format!("compactor was not killed at step {crash_at} of {total}").into());
        }
        expect_eq(&format!("scrape after a kill at step {crash_at}"), text(&collector), before.clone())?;
        expect_eq(
            &format!("fresh collector after a kill at step {crash_at}"),
            text(&Collector::new(dir.path())?),
            before.clone(),
        )?;
        compact(dir.path())?;
        expect_eq(&format!("scrape after recovery from step {crash_at}"), text(&collector), before.clone())?;
        expect_eq(
            &format!("python after recovery from step {crash_at}"),
            python_samples(dir.path()),
            reference_python.clone(),
        )?;
        expect_eq(
            &format!("files after recovery from step {crash_at}"),
            without_generation(dir.db_files()),
            without_generation(reference.db_files()),
        )?;
    }
    println!("killed the compactor at each of {total} steps");
    Ok(())
}

fn scrapes_during_compaction() -> Result<(), Failed> {
    let dir = TestDir::new();
    let _live = live_workers(dir.path(), 2);
    dead_workers(dir.path(), "d", 0, 300);
    let baseline = text(&Collector::new(dir.path())?);
    let done = AtomicBool::new(false);
    let scrapes = std::thread::scope(|s| {
        let scraper = s.spawn(|| {
            let collector = Collector::new(dir.path()).unwrap();
            let mut n = 0usize;
            while !done.load(Ordering::Relaxed) {
                let got = text(&collector);
                assert!(got == baseline, "scrape {n} during compaction differs:\n{got}\n--- baseline\n{baseline}");
                n += 1;
            }
            n
        });
        // Widen every window between steps so that scrapes land inside them.
        let slow = |_: &prometheus_multiproc::cleanup::Step| std::thread::sleep(Duration::from_micros(300));
        let result = compact_with(dir.path(), CompactOptions::default().on_step(slow));
        done.store(true, Ordering::Relaxed);
        result.map(|_| scraper.join())
    })?;
    let scrapes = scrapes.map_err(|_| "a scrape during compaction saw different totals")?;
    if scrapes < 3 {
        return Err(format!("only {scrapes} scrapes overlapped the compaction").into());
    }
    println!("{scrapes} scrapes during compaction, all equal to the baseline");
    expect_eq("after", text(&Collector::new(dir.path())?), baseline)
}

fn second_compactor_is_refused() -> Result<(), Failed> {
    let dir = TestDir::new();
    dead_workers(dir.path(), "d", 0, 3);
    let refused = std::sync::Mutex::new(None);
    let try_second = |step: &prometheus_multiproc::cleanup::Step| {
        if step.index == 0 {
            *refused.lock().unwrap() = Some(compact(dir.path()).map(|_| ()).map_err(|e| e.kind()));
        }
    };
    compact_with(dir.path(), CompactOptions::default().on_step(try_second))?;
    expect_eq(
        "second compactor",
        refused.into_inner().unwrap(),
        Some(Err(prometheus_multiproc::ErrorKind::CompactionInProgress)),
    )
}

/// Our samples of `dir`, from `collector`, in the form of [`python_samples`]; only files
/// that vanished while it read are tolerated as skipped.
fn samples(collector: &Collector) -> Vec<String> {
    let scrape = collector.collect().unwrap();
    let bad: Vec<_> =
        scrape.skipped.iter().filter(|s| s.reason != prometheus_multiproc::SkipReason::Vanished).collect();
    assert!(bad.is_empty(), "skipped files: {bad:?}");
    samples_of(&scrape)
}

/// `lines` with `add` added to the value of the sample line starting with `sample `.
fn plus(lines: &[String], sample: &str, add: f64) -> Vec<String> {
    let prefix = format!("{sample} ");
    let mut found = false;
    let out = lines
        .iter()
        .map(|line| match line.strip_prefix(&prefix) {
            Some(v) => {
                found = true;
                format!("{prefix}{:?}", v.parse::<f64>().unwrap() + add)
            }
            None => line.clone(),
        })
        .collect();
    assert!(found, "no sample {sample} in {lines:?}");
    out
}

fn crash_compactor_at(dir: &Path, step: usize) -> Result<bool, Failed> {
    let out = role_command("compact-crash", dir).env("CRASH_AT", step.to_string()).output()?;
    Ok(out.status.success())
}

fn worker_taking_a_slot_after_a_compactor_crash() -> Result<(), Failed> {
    let reference = TestDir::new();
    let _live = crash_scenario(reference.path());
    let total = compact_counting_steps(reference.path())?;
    for crash_at in 0..total {
        let dir = TestDir::new();
        let _live = crash_scenario(dir.path());
        let collector = Collector::new(dir.path())?;
        let before = samples(&collector);
        if crash_compactor_at(dir.path(), crash_at)? {
            return Err(format!("compactor was not killed at step {crash_at} of {total}").into());
        }
        // A replacement worker takes slot e3, whose files the compactor may have folded
        // (archive published) without removing them, and keeps counting.
        let worker = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("e3")?).build()?;
        let requests = worker.counter_family(Opts::new("c_requests_total", "Requests."), &["route"])?;
        requests.get(&["/a"])?.inc_by(1000.0);
        let want = plus(&before, "c_requests_total{route=/a}", 1000.0);
        let at = format!("after a kill at step {crash_at} and a takeover");
        expect_eq(&format!("scrape {at}"), samples(&collector), want.clone())?;
        expect_eq(&format!("fresh collector {at}"), samples(&Collector::new(dir.path())?), want.clone())?;
        compact(dir.path())?;
        expect_eq(&format!("scrape {at}, then a compaction"), samples(&collector), want.clone())?;
        requests.get(&["/a"])?.inc_by(24.0);
        let want = plus(&want, "c_requests_total{route=/a}", 24.0);
        expect_eq(&format!("scrape {at}, a compaction and more counts"), samples(&collector), want.clone())?;
        expect_eq(&format!("python {at}"), python_samples(dir.path()), want.clone())?;
        drop((requests, worker));
        compact(dir.path())?;
        expect_eq(&format!("scrape {at}, once the worker is gone and folded"), samples(&collector), want)?;
    }
    println!("a worker took a folded slot after a kill at each of {total} steps");
    Ok(())
}

fn compactor_killed_again_during_each_recovery() -> Result<(), Failed> {
    let reference = TestDir::new();
    let _live_reference = crash_scenario(reference.path());
    compact(reference.path())?;
    let dir = TestDir::new();
    let _live = crash_scenario(dir.path());
    let collector = Collector::new(dir.path())?;
    let before = samples(&collector);
    // Run j is killed right after its own step j, starting from the wreckage of run
    // j - 1: every recovery is itself interrupted, one step further each time.
    let mut runs = 0;
    loop {
        let finished = crash_compactor_at(dir.path(), runs)?;
        runs += 1;
        let at = format!("after {runs} interrupted runs");
        expect_eq(&format!("scrape {at}"), samples(&collector), before.clone())?;
        expect_eq(&format!("fresh collector {at}"), samples(&Collector::new(dir.path())?), before.clone())?;
        if finished {
            break;
        }
        if runs > 500 {
            return Err("compaction never finished".into());
        }
    }
    expect_eq("python after the last run", python_samples(dir.path()), before)?;
    expect_eq("files", without_generation(dir.db_files()), without_generation(reference.db_files()))?;
    println!("{runs} runs, each killed one step further into its recovery, until one finished");
    Ok(())
}

fn a_corrupt_dead_file_is_left_in_place() -> Result<(), Failed> {
    let dir = TestDir::new();
    dead_workers(dir.path(), "d", 0, 3);
    // d1's counter file: a key that is not JSON (the collector skips the file whole).
    let path = dir.path().join("counter_d1.db");
    let mut bytes = std::fs::read(&path)?;
    bytes[12] = b'{';
    std::fs::write(&path, &bytes)?;
    let collector = Collector::new(dir.path())?;
    let scrape = collector.collect()?;
    expect_eq("skipped before", scrape.skipped.len(), 1)?;
    let before = samples_of(&scrape);
    let done = compact(dir.path())?;
    expect_eq(
        "unreadable",
        done.unreadable.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        vec!["counter_d1.db"],
    )?;
    if !done.unreadable[0].1.contains("offset 8") {
        return Err(format!("the reason should name the entry: {}", done.unreadable[0].1).into());
    }
    expect_eq("dead writers folded", done.dead_writers, ["d0", "d1", "d2"].map(String::from).to_vec())?;
    let after = collector.collect()?;
    expect_eq("still skipped after", after.skipped.iter().map(|s| s.path.clone()).collect::<Vec<_>>(), vec![path])?;
    expect_eq("totals", samples_of(&after), before)?;
    if !dir.db_files().contains(&"counter_0archive-1.db".to_owned()) {
        return Err(format!("the good counter files were not folded: {:?}", dir.db_files()).into());
    }
    Ok(())
}

fn archives_take_the_mode_of_their_sources() -> Result<(), Failed> {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new();
    for i in 0..2 {
        let registry =
            Registry::builder().dir(dir.path()).worker_id(WorkerId::new(&format!("m{i}"))?).file_mode(0o640).build()?;
        registry.counter(Opts::new("m_total", "M."))?.inc();
    }
    compact(dir.path())?;
    let mode = |name: &str| std::fs::metadata(dir.path().join(name)).map(|m| m.permissions().mode() & 0o777);
    expect_eq("archive mode", mode("counter_0archive-1.db")?, 0o640)?;
    expect_eq("sequence file mode", mode(".compaction.seq")?, 0o640)
}

fn a_dead_writer_whose_pid_runs_again_is_deferred() -> Result<(), Failed> {
    let dir = TestDir::new();
    let running = std::process::id().to_string();
    // Above the kernel's largest pid (4,194,304): never a running process.
    let gone = "4194999";
    for id in [running.as_str(), gone] {
        let registry = Registry::builder().dir(dir.path()).worker_id(WorkerId::new(id)?).build()?;
        registry.counter(Opts::new("p_total", "P."))?.inc();
    }
    let done = compact(dir.path())?;
    expect_eq("deferred", done.deferred, vec![running.clone()])?;
    expect_eq("folded", done.dead_writers, vec![gone.to_owned()])?;
    expect_eq("files", dir.db_files(), vec!["counter_0archive-1.db".to_owned(), format!("counter_{running}.db")])
}

fn compact_then_scrape_logs_no_warning() -> Result<(), Failed> {
    let dir = TestDir::new();
    let out = role_command("quiet-cycle", dir.path()).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains("cycle done") {
        return Err(
            format!("the cycle failed: {}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr)).into()
        );
    }
    let logged: Vec<&str> = stdout.lines().filter(|l| l.starts_with("LOGGED")).collect();
    expect_eq("records at warn level or above", logged, vec![])
}

/// How many start-up kills the storm makes.
const STORM_KILLS: usize = 300;

/// A small xorshift generator: the storm's kill points, reproducible from the seed it
/// prints (`PMP_STORM_SEED` sets it).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Starts a `startup-worker` and waits until it has said "start" (it runs its `main`).
fn start_worker(dir: &Path) -> Result<(std::process::Child, std::io::BufReader<std::process::ChildStdout>), Failed> {
    use std::io::BufRead;
    let mut child = role_command("startup-worker", dir).stdout(std::process::Stdio::piped()).spawn()?;
    let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line != "start\n" {
        let _ = child.kill();
        return Err(format!("a start-up worker said {line:?}, expected \"start\"").into());
    }
    Ok((child, out))
}

/// The liveness and temporary files in `dir`, sorted.
fn locks_and_temps(dir: &Path) -> Result<(Vec<String>, Vec<String>), Failed> {
    let mut locks = Vec::new();
    let mut temps = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with("writer_") && name.ends_with(".lock") {
            locks.push(name);
        } else if name.starts_with('.') && name.ends_with(".tmp") {
            temps.push(name);
        }
    }
    locks.sort();
    temps.sort();
    Ok((locks, temps))
}

/// Runs the storm in a child process (this binary in the role `startup-storm`): while a
/// process spawns children, each child holds a copy of every descriptor of its parent
/// until it execs, liveness locks included, so the 300 spawns would make writers of
/// the other tests running in this process look alive for a moment.
fn startup_kill_storm_leaves_no_leftovers() -> Result<(), Failed> {
    let dir = TestDir::new();
    let out = role_command("startup-storm", dir.path()).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    if !out.status.success() || !stdout.contains("storm passed") {
        return Err(
            format!("the storm failed: {}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr)).into()
        );
    }
    Ok(())
}

fn startup_kill_storm(dir: &Path) -> Result<(), Failed> {
    use std::io::Read;
    let live = live_workers(dir, 1);
    // How long a start-up takes here, from "start" to exit: kills land anywhere in it.
    let mut startup = Duration::ZERO;
    for _ in 0..3 {
        let (mut child, mut out) = start_worker(dir)?;
        let begun = std::time::Instant::now();
        let mut rest = String::new();
        out.read_to_string(&mut rest)?;
        let status = child.wait()?;
        startup = startup.max(begun.elapsed());
        if !status.success() || rest != "done\n" {
            return Err(format!("a start-up worker failed: {status}, said {rest:?}").into());
        }
    }
    let seed = std::env::var("PMP_STORM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    println!("start-up takes up to {startup:?}; kill points from seed {seed}");
    let mut rng = XorShift(seed);
    let window = startup.as_nanos() as u64 + 1;
    for _ in 0..STORM_KILLS {
        let (mut child, _out) = start_worker(dir)?;
        std::thread::sleep(Duration::from_nanos(rng.next() % window));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL)?;
        child.wait()?;
    }
    let (locks, temps) = locks_and_temps(dir)?;
    println!("before compaction: {} liveness files, {} temporary files", locks.len(), temps.len());
    let collector = Collector::new(dir)?;
    let before = samples(&collector);

    let done = compact(dir)?;
    let (locks, temps) = locks_and_temps(dir)?;
    // The live writer's lock stays, and so do those of dead writers whose files are
    // deferred (their pid runs again: the liveness file says they were ours).
    let mut allowed: Vec<String> = done.deferred.iter().map(|id| format!("writer_{id}.lock")).collect();
    allowed.push("writer_live0.lock".to_owned());
    allowed.sort();
    expect_eq("liveness files after one compaction", locks, allowed)?;
    expect_eq("temporary files after one compaction", temps, vec![])?;
    expect_eq("our totals after compaction", samples(&collector), before.clone())?;
    expect_eq("python totals after compaction", python_samples(dir), before)?;
    // The live writer still counts, into its own files.
    live[0].counter(Opts::new("c_after_total", "After."))?.inc();
    let after = samples(&collector);
    if !after.iter().any(|l| l == "c_after_total{} 1.0") {
        return Err(format!("the live writer's write is missing: {after:?}").into());
    }
    println!("storm passed");
    Ok(())
}

fn automatic_compaction_waits_for_the_threshold() -> Result<(), Failed> {
    use prometheus_multiproc::cleanup::{AutoCompact, spawn_auto_compaction};
    let dir = TestDir::new();
    let _live = live_workers(dir.path(), 1);
    dead_workers(dir.path(), "d", 0, 1); // 8 files of one dead writer
    let collector = Collector::new(dir.path())?;
    let before = samples(&collector);
    let policy = AutoCompact::every(Duration::from_millis(20)).min_dead_files(12);
    let compactor = spawn_auto_compaction(dir.path(), policy)?;
    std::thread::sleep(Duration::from_millis(300));
    if dir.db_files().iter().any(|f| f.contains("0archive")) {
        return Err(format!("compacted below the threshold: {:?}", dir.db_files()).into());
    }
    dead_workers(dir.path(), "d", 1, 1); // 16 files now
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while dir.db_files().iter().any(|f| f.ends_with("_d0.db") || f.ends_with("_d1.db")) {
        if std::time::Instant::now() > deadline {
            return Err(format!("not compacted past the threshold: {:?}", dir.db_files()).into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(compactor);
    // The same writers, never compacted.
    let reference = TestDir::new();
    let _reference_live = live_workers(reference.path(), 1);
    dead_workers(reference.path(), "d", 0, 2);
    let want = samples(&Collector::new(reference.path())?);
    expect_eq("totals after the automatic compaction", samples(&collector), want)?;
    if samples(&collector) == before {
        return Err("the second dead writer's counts are missing".into());
    }
    Ok(())
}
