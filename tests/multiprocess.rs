//! Multiprocess behaviour with real processes: this test binary re-runs itself as the
//! worker processes (`PMP_TEST_ROLE`), so nothing forks inside the multi-threaded test
//! harness. Totals are checked exactly, through Python's own `MultiProcessCollector`.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use libtest_mimic::{Failed, Trial};
use prometheus_multiproc::format;
use prometheus_multiproc::{ErrorKind, GaugeMode, Opts, Registry, WorkerId};
use support::{TestDir, fork, python_samples, role_command};

fn main() {
    let tests = vec![
        Trial::test(
            "concurrent_workers_and_threads_give_python_exact_totals",
            concurrent_workers_and_threads_give_python_exact_totals,
        ),
        Trial::test(
            "handle_made_before_fork_writes_to_the_childs_own_file",
            handle_made_before_fork_writes_to_the_childs_own_file,
        ),
        Trial::test(
            "restart_with_same_worker_id_continues_stored_counts",
            restart_with_same_worker_id_continues_stored_counts,
        ),
        Trial::test(
            "set_worker_id_after_fork_moves_writes_to_the_slot_file",
            set_worker_id_after_fork_moves_writes_to_the_slot_file,
        ),
        Trial::test(
            "growth_to_200k_series_loses_no_concurrent_increment",
            growth_to_200k_series_loses_no_concurrent_increment,
        ),
        Trial::test(
            "full_disk_is_a_creation_error_and_existing_handles_keep_counting",
            full_disk_is_a_creation_error_and_existing_handles_keep_counting,
        ),
        Trial::test(
            "fork_while_threads_wait_to_create_series_leaves_the_child_free_to_create_and_fork",
            fork_while_threads_wait_to_create_series_leaves_the_child_free_to_create_and_fork,
        ),
        Trial::test(
            "a_fork_child_rewrites_each_file_with_one_write_and_after_fork_leaves_inc_without_system_calls",
            a_fork_child_rewrites_each_file_with_one_write_and_after_fork_leaves_inc_without_system_calls,
        ),
        Trial::test(
            "lazy_statics_on_the_default_registry_follow_fork_and_write_nowhere_without_a_directory",
            lazy_statics_on_the_default_registry_follow_fork_and_write_nowhere_without_a_directory,
        ),
    ];
    support::main_with_roles(run_role, tests)
}

/// Spawns this binary as a worker in `role`, with `dir` as the metrics directory.
fn spawn(role: &str, dir: &Path, extra_env: &[(&str, String)]) -> std::process::Child {
    let mut cmd = role_command(role, dir);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn worker")
}

fn wait_ok(mut child: std::process::Child, what: &str) -> Result<(), Failed> {
    let status = child.wait().map_err(|e| format!("{what}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{what} exited with {status}").into()) }
}

fn env_usize(name: &str) -> usize {
    std::env::var(name).unwrap().parse().unwrap()
}

/// Reads every (key, value) entry of a `.db` file.
fn file_entries(path: &Path) -> Vec<(String, f64)> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let used = format::checked_used(&data).unwrap();
    format::entries(&data, used)
        .map(|e| {
            let e = e.unwrap();
            (String::from_utf8(e.key.to_vec()).unwrap(), format::decode_value(&data, e.value_offset).unwrap().0)
        })
        .collect()
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), Failed> {
    if got == want { Ok(()) } else { Err(format!("{what}: got {got:?}, want {want:?}").into()) }
}

// ---------------------------------------------------------------- worker roles

fn run_role(role: &str) {
    match role {
        "hammer" => role_hammer(),
        "fork" => role_fork(),
        "restart" => role_restart(),
        "slot-after-fork" => role_slot_after_fork(),
        "full-disk" => role_full_disk(),
        "fork-under-creation" => role_fork_under_creation(),
        "first-write-after-fork" => role_first_write_after_fork(),
        "lazy-across-fork" => role_lazy_across_fork(),
        other => panic!("unknown role {other}"),
    }
}

const OBSERVATIONS: [f64; 4] = [0.05, 0.3, 0.7, 3.0];

/// THREADS threads × INCS increments on shared labeled counters, gauges, a histogram.
fn role_hammer() {
    let threads = env_usize("THREADS");
    let incs = env_usize("INCS");
    let registry = Registry::from_env().unwrap();
    let requests = registry.counter_family(Opts::new("mp_requests_total", "Requests."), &["route"]).unwrap();
    let in_flight =
        registry.gauge_family(Opts::new("mp_in_flight", "In flight."), GaugeMode::LiveSum, &["route"]).unwrap();
    let total = registry.gauge(Opts::new("mp_sum", "Sum gauge."), GaugeMode::Sum).unwrap();
    let latency =
        registry.histogram_family(Opts::new("mp_latency_seconds", "Latency."), &[0.1, 0.5, 1.0], &["route"]).unwrap();
    thread::scope(|s| {
        for t in 0..threads {
            let (requests, in_flight, total, latency) = (&requests, &in_flight, &total, &latency);
            s.spawn(move || {
                let route = if t % 2 == 0 { "/even" } else { "/odd" };
                let counter = requests.get(&[route]).unwrap();
                let shared = requests.get(&["/shared"]).unwrap();
                let gauge = in_flight.get(&[route]).unwrap();
                let hist = latency.get(&["/shared"]).unwrap();
                for i in 0..incs {
                    counter.inc();
                    shared.inc_by(0.5);
                    gauge.inc();
                    total.inc_by(2.0);
                    hist.observe(OBSERVATIONS[i % OBSERVATIONS.len()]);
                }
            });
        }
    });
}

fn concurrent_workers_and_threads_give_python_exact_totals() -> Result<(), Failed> {
    let (workers, threads, incs) = (4usize, 4usize, 20_000usize);
    let dir = TestDir::new();
    let env = [("THREADS", threads.to_string()), ("INCS", incs.to_string())];
    let children: Vec<_> = (0..workers).map(|_| spawn("hammer", dir.path(), &env)).collect();
    for child in children {
        wait_ok(child, "hammer worker")?;
    }
    let per_route = (workers * threads / 2 * incs) as f64; // half the threads per route
    let all = (workers * threads * incs) as f64;
    let quarter = all / 4.0; // each observation value is a quarter of all observations
    let want = vec![
        format!("mp_in_flight{{route=/even}} {per_route:?}"),
        format!("mp_in_flight{{route=/odd}} {per_route:?}"),
        format!("mp_latency_seconds_bucket{{le=+Inf,route=/shared}} {all:?}"),
        format!("mp_latency_seconds_bucket{{le=0.1,route=/shared}} {quarter:?}"),
        format!("mp_latency_seconds_bucket{{le=0.5,route=/shared}} {:?}", 2.0 * quarter),
        format!("mp_latency_seconds_bucket{{le=1.0,route=/shared}} {:?}", 3.0 * quarter),
        format!("mp_latency_seconds_count{{route=/shared}} {all:?}"),
        format!("mp_latency_seconds_sum{{route=/shared}} {:?}", quarter * (0.05 + 0.3 + 0.7 + 3.0)),
        format!("mp_requests_total{{route=/even}} {per_route:?}"),
        format!("mp_requests_total{{route=/odd}} {per_route:?}"),
        format!("mp_requests_total{{route=/shared}} {:?}", all * 0.5),
        format!("mp_sum{{}} {:?}", all * 2.0),
    ];
    let mut got = python_samples(dir.path());
    // The latency sum is a float sum whose rounding depends on interleaving; check it
    // to a relative 1e-9 and everything else exactly.
    let sum_line = got.iter().position(|l| l.starts_with("mp_latency_seconds_sum")).ok_or("no latency sum")?;
    let sum: f64 = got[sum_line].rsplit(' ').next().unwrap().parse()?;
    let want_sum = quarter * (0.05 + 0.3 + 0.7 + 3.0);
    if ((sum - want_sum) / want_sum).abs() > 1e-9 {
        return Err(format!("latency sum {sum} != {want_sum}").into());
    }
    got[sum_line] = want[7].clone();
    expect_eq("python samples", got, want)?;
    expect_eq("files", dir.db_files().len(), 4 * workers)
}

/// Parent: a counter (5) and a labeled child (1), then fork; the child adds 3 and 2.
fn role_fork() {
    let registry = Registry::from_env().unwrap();
    let c = registry.counter(Opts::new("fork_total", "Forked.")).unwrap();
    let fam = registry.counter_family(Opts::new("fork_labeled_total", "Forked, labeled."), &["l"]).unwrap();
    let child_handle = fam.get(&["x"]).unwrap();
    c.inc_by(5.0);
    child_handle.inc();
    match fork() {
        nix::unistd::ForkResult::Child => {
            c.inc_by(3.0);
            child_handle.inc_by(2.0);
            fam.get(&["y"]).unwrap().inc();
            std::process::exit(0);
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            println!("{}", child.as_raw());
            c.inc(); // the parent keeps writing its own file after the fork
        }
    }
}

fn handle_made_before_fork_writes_to_the_childs_own_file() -> Result<(), Failed> {
    let dir = TestDir::new();
    let out = role_command("fork", dir.path()).output()?;
    if !out.status.success() {
        return Err(format!("fork role failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let child_pid = String::from_utf8(out.stdout)?.trim().to_owned();
    let files = dir.db_files();
    let parent_file = files.iter().find(|f| !f.contains(&child_pid)).ok_or("no parent file")?.clone();
    expect_eq("files", files.clone(), {
        let mut v = vec![parent_file.clone(), format!("counter_{child_pid}.db")];
        v.sort();
        v
    })?;
    let key = |name: &str, sample: &str, labels: &str, help: &str| {
        format!(r#"["{name}", "{sample}", {{{labels}}}, "{help}"]"#)
    };
    let parent = file_entries(&dir.path().join(&parent_file));
    expect_eq(
        "parent file after the child ran",
        parent,
        vec![
            (key("fork", "fork_total", "", "Forked."), 6.0),
            (key("fork_labeled", "fork_labeled_total", r#""l": "x""#, "Forked, labeled."), 1.0),
        ],
    )?;
    // The child re-created every series in its own file, in creation order, as Python does.
    let child = file_entries(&dir.path().join(format!("counter_{child_pid}.db")));
    expect_eq(
        "child file",
        child,
        vec![
            (key("fork", "fork_total", "", "Forked."), 3.0),
            (key("fork_labeled", "fork_labeled_total", r#""l": "x""#, "Forked, labeled."), 2.0),
            (key("fork_labeled", "fork_labeled_total", r#""l": "y""#, "Forked, labeled."), 1.0),
        ],
    )?;
    expect_eq(
        "python totals",
        python_samples(dir.path()),
        vec!["fork_labeled_total{l=x} 3.0".to_owned(), "fork_labeled_total{l=y} 1.0".into(), "fork_total{} 9.0".into()],
    )
}

fn role_restart() {
    let registry = Registry::builder().worker_id(WorkerId::new("7").unwrap()).build().unwrap();
    let c = registry.counter(Opts::new("restarts_total", "Restarted.")).unwrap();
    let h = registry.histogram(Opts::new("restart_seconds", "Latency."), &[1.0]).unwrap();
    let before = c.get();
    c.inc_by(env_usize("INCS") as f64);
    h.observe(0.5);
    println!("{before}");
}

fn restart_with_same_worker_id_continues_stored_counts() -> Result<(), Failed> {
    let dir = TestDir::new();
    let run = |incs: usize| -> Result<String, Failed> {
        let out = role_command("restart", dir.path()).env("INCS", incs.to_string()).output()?;
        if !out.status.success() {
            return Err(format!("restart role failed: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    };
    expect_eq("first run starts from", run(10)?, "0".to_owned())?;
    expect_eq("second run starts from", run(5)?, "10".to_owned())?;
    expect_eq("files", dir.db_files(), vec!["counter_7.db".to_owned(), "histogram_7.db".into()])?;
    expect_eq(
        "python totals",
        python_samples(dir.path()),
        vec![
            "restart_seconds_bucket{le=+Inf} 2.0".to_owned(),
            "restart_seconds_bucket{le=1.0} 2.0".into(),
            "restart_seconds_count{} 2.0".into(),
            "restart_seconds_sum{} 1.0".into(),
            "restarts_total{} 15.0".into(),
        ],
    )
}

/// A pre-fork master: declares metrics, forks two workers that adopt slots 1 and 2.
fn role_slot_after_fork() {
    let registry = Registry::from_env().unwrap();
    let c = registry.counter(Opts::new("slot_total", "Per slot.")).unwrap();
    let g = registry.gauge(Opts::new("slot_gauge", "All mode."), GaugeMode::All).unwrap();
    let mut children = Vec::new();
    for slot in 1..=2 {
        match fork() {
            nix::unistd::ForkResult::Child => {
                prometheus_multiproc::set_worker_id(WorkerId::new(&format!("slot{slot}")).unwrap());
                c.inc_by(slot as f64);
                g.set(slot as f64 * 10.0);
                std::process::exit(0);
            }
            nix::unistd::ForkResult::Parent { child } => children.push(child),
        }
    }
    for child in children {
        let status = nix::sys::wait::waitpid(child, None).unwrap();
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
    }
}

fn set_worker_id_after_fork_moves_writes_to_the_slot_file() -> Result<(), Failed> {
    let dir = TestDir::new();
    wait_ok(spawn("slot-after-fork", dir.path(), &[]), "master")?;
    let slot_files: Vec<String> = dir.db_files().into_iter().filter(|f| f.contains("slot")).collect();
    expect_eq(
        "slot files",
        slot_files,
        vec![
            "counter_slot1.db".to_owned(),
            "counter_slot2.db".into(),
            "gauge_all_slot1.db".into(),
            "gauge_all_slot2.db".into(),
        ],
    )?;
    let samples = python_samples(dir.path());
    // The master created the `all` gauge before forking, so it has its own 0.0 series
    // under its pid, exactly as Python reports a process that created but never set it.
    let master: Vec<&String> = samples
        .iter()
        .filter(|l| l.starts_with("slot_gauge{pid=") && !l.contains("slot1") && !l.contains("slot2"))
        .collect();
    if master.len() != 1 || !master[0].ends_with("} 0.0") {
        return Err(format!("expected one master series at 0.0, got {master:?}").into());
    }
    let slots: Vec<String> =
        samples.iter().filter(|l| l.contains("pid=slot") || l.starts_with("slot_total")).cloned().collect();
    expect_eq(
        "python samples",
        slots,
        vec!["slot_gauge{pid=slot1} 10.0".to_owned(), "slot_gauge{pid=slot2} 20.0".into(), "slot_total{} 3.0".into()],
    )
}

fn growth_to_200k_series_loses_no_concurrent_increment() -> Result<(), Failed> {
    let dir = TestDir::new();
    let registry = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("grow")?).build()?;
    let family = registry.counter_family(Opts::new("grow_total", "Growth."), &["id"])?;
    let hot: Vec<_> = (0..4).map(|i| family.get(&[&format!("hot{i}")]).unwrap()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let series = 200_000;
    thread::scope(|s| {
        for h in &hot {
            let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    h.inc();
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
        for i in 0..series {
            family.get(&[&i.to_string()]).unwrap().inc();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let counted: f64 = hot.iter().map(|h| h.get()).sum();
    expect_eq("hot increments", counted, done.load(Ordering::Relaxed) as f64)?;
    let path: PathBuf = dir.path().join("counter_grow.db");
    let entries = file_entries(&path);
    expect_eq("entries", entries.len(), series + 4)?;
    let file_sum: f64 = entries.iter().map(|(_, v)| v).sum();
    expect_eq("file total", file_sum, counted + series as f64)?;
    let size = std::fs::metadata(&path)?.len();
    if size < format::INITIAL_SIZE as u64 * 64 {
        return Err(format!("file did not grow as expected: {size} bytes").into());
    }
    Ok(())
}

/// In a private mount namespace, on a 256 KiB tmpfs: create series until the disk is
/// full; the process must survive, creation must fail with NoSpace, and existing
/// handles must keep counting.
fn role_full_disk() {
    let dir = PathBuf::from(std::env::var("PROMETHEUS_MULTIPROC_DIR").unwrap());
    support::mount_private_tmpfs(&dir, "size=256k,mode=0700");
    let registry = Registry::builder().self_metrics(true).build().unwrap();
    let family = registry.counter_family(Opts::new("fill_total", "Filling the disk."), &["id"]).unwrap();
    let first = family.get(&["0"]).unwrap();
    let gauge = registry.gauge(Opts::new("fill_gauge", "Gauge on a full disk."), GaugeMode::LiveSum).unwrap();
    let mut created = 1u64;
    let err = loop {
        match family.get(&[&format!("{created:0>200}")]) {
            Ok(c) => {
                c.inc();
                created += 1;
            }
            Err(e) => break e,
        }
        assert!(created < 1_000_000, "the tmpfs never filled");
    };
    assert_eq!(err.kind(), ErrorKind::NoSpace, "{err}");
    assert!(err.path().is_some_and(|p| p.starts_with(&dir)), "error names the file: {err}");
    // The disk is full: existing handles keep counting, and new gauges fail cleanly.
    for _ in 0..1000 {
        first.inc();
        gauge.inc();
    }
    assert_eq!(first.get(), 1000.0);
    assert_eq!(gauge.get(), 1000.0);
    // Asking again fails the same way; new files either fit in what is left or fail
    // with NoSpace: nothing panics and nothing dies.
    let again = family.get(&[&format!("{created:0>200}")]).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::NoSpace, "{again}");
    // The infallible lookup hands out a handle that drops its writes, and counts it.
    let before = registry.dropped_series().into_iter().find(|(r, _)| *r == "no_space").unwrap().1;
    let dropped = family.labels(&[format!("{created:0>200}")]);
    dropped.inc_by(5);
    let after = registry.dropped_series().into_iter().find(|(r, _)| *r == "no_space").unwrap().1;
    assert_eq!(after, before + 1, "the failed creation is counted");
    for i in 0..64 {
        match registry
            .summary_family(Opts::new(format!("fill_summary_{i}"), "More."), &["id"])
            .and_then(|f| f.get(&["x"]))
        {
            Ok(s) => s.observe(1.0),
            Err(e) => assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}"),
        }
    }
    assert_eq!(first.get(), 1000.0);
    // The dropped series are counted, in this process and in the (pre-created)
    // self-metric, and a scrape on the full disk still works and shows them.
    let no_space = registry.dropped_series().into_iter().find(|(r, _)| *r == "no_space").unwrap().1;
    assert!(no_space >= 2, "dropped no_space = {no_space}");
    let scrape = prometheus_multiproc::Collector::new(&dir).unwrap().collect().unwrap();
    let text = String::from_utf8(prometheus_multiproc::render(&scrape, None, None).body).unwrap();
    let line = format!("prometheus_multiproc_dropped_series_total{{reason=\"no_space\"}} {no_space}.0");
    assert!(text.contains(&line), "missing {line:?} in\n{text}");
    assert!(text.contains("fill_total{id=\"0\"} 1000.0"), "{text}");
    assert!(!text.contains(" 5.0\n"), "the dropping handle's writes reached no file:\n{text}");
    println!("created {created} series before: {err}; {no_space} series dropped");
}

fn full_disk_is_a_creation_error_and_existing_handles_keep_counting() -> Result<(), Failed> {
    let dir = TestDir::new();
    let out = role_command("full-disk", dir.path()).output()?;
    if !out.status.success() {
        return Err(format!(
            "full-disk worker failed ({}), it must survive and pass its checks:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let stdout = String::from_utf8(out.stdout)?;
    if !stdout.contains("created") {
        return Err(format!("unexpected output: {stdout}").into());
    }
    Ok(())
}

/// How many times `role_fork_under_creation` forks while its threads create series.
const FORKS_UNDER_CREATION: usize = 150;

/// Three threads take the fork guard without pause (each creates 200 series, then asks
/// for its worker ID, which also takes the guard, in a loop; threads that arrive while
/// a fork waits for the guard queue on it); the main thread forks again and again. Each child creates a series and forks a grandchild that does the
/// same: a guard left held (or handed to a thread that does not exist in the child)
/// would hang one of them. Exits non-zero if a child hangs or fails.
fn role_fork_under_creation() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let registry = Arc::new(Registry::from_env().unwrap());
    let mine = registry.counter_family(Opts::new("forked_total", "Made in fork children."), &["n"]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..3 {
        let family =
            registry.counter_family(Opts::new(format!("busy{t}_total"), "Made by busy threads."), &["n"]).unwrap();
        let (stop, registry) = (Arc::clone(&stop), Arc::clone(&registry));
        threads.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if n < 200 {
                    // A new label set: the call creates a series.
                    family.get(&[&n.to_string()]).unwrap().inc();
                } else {
                    let _ = registry.worker_id();
                }
                n += 1;
            }
        }));
    }
    let wait_bounded = |child: nix::unistd::Pid, what: &str| {
        for _ in 0..2000 {
            match waitpid(child, Some(WaitPidFlag::WNOHANG)).unwrap() {
                WaitStatus::StillAlive => thread::sleep(std::time::Duration::from_millis(10)),
                WaitStatus::Exited(_, 0) => return true,
                other => panic!("{what} ended with {other:?}"),
            }
        }
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        false
    };
    for i in 0..FORKS_UNDER_CREATION {
        match fork() {
            nix::unistd::ForkResult::Child => {
                // Only this thread exists now. Create a series, then fork again.
                mine.get(&[&format!("child{i}")]).unwrap().inc();
                match fork() {
                    nix::unistd::ForkResult::Child => {
                        mine.get(&[&format!("grandchild{i}")]).unwrap().inc();
                        std::process::exit(0);
                    }
                    nix::unistd::ForkResult::Parent { child } => {
                        std::process::exit(if wait_bounded(child, "grandchild") { 0 } else { 3 });
                    }
                }
            }
            nix::unistd::ForkResult::Parent { child } => {
                if !wait_bounded(child, "child") {
                    println!("child {i} hung");
                    std::process::exit(2);
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    println!("forked {FORKS_UNDER_CREATION} times");
}

fn fork_while_threads_wait_to_create_series_leaves_the_child_free_to_create_and_fork() -> Result<(), Failed> {
    let dir = TestDir::new();
    let out = role_command("fork-under-creation", dir.path()).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(
            format!("master exited with {}: {stdout}{}", out.status, String::from_utf8_lossy(&out.stderr)).into()
        );
    }
    expect_eq("master output", stdout.trim(), &format!("forked {FORKS_UNDER_CREATION} times"))?;
    // Every child and grandchild counted once, in its own files.
    let samples = python_samples(dir.path());
    let forked = samples.iter().filter(|l| l.starts_with("forked_total{") && l.ends_with(" 1.0")).count();
    expect_eq("series made in children and grandchildren", forked, 2 * FORKS_UNDER_CREATION)
}

/// This process's count of read- and write-family system calls (`/proc/self/io`).
fn syscall_counts() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    let field = |name: &str| -> u64 {
        io.lines().find_map(|l| l.strip_prefix(name)).expect("field in /proc/self/io").trim().parse().unwrap()
    };
    (field("syscr:"), field("syscw:"))
}

/// Declares 100 labeled counters and a 10-bucket histogram, forks twice. The first
/// child writes at once: prints how many write system calls its first `inc` made. The
/// second calls `after_fork()` first: prints how many read and write system calls its
/// first `inc` and `observe` made.
fn role_first_write_after_fork() {
    use nix::sys::wait::{WaitStatus, waitpid};
    let registry = Registry::from_env().unwrap();
    let family = registry.counter_family(Opts::new("series_total", "Series."), &["n"]).unwrap();
    let counters: Vec<_> = (0..100).map(|n| family.get(&[&n.to_string()]).unwrap()).collect();
    let buckets: Vec<f64> = (1..=10).map(f64::from).collect();
    let histogram = registry.histogram(Opts::new("latency_seconds", "Latency."), &buckets).unwrap();
    for explicit in [false, true] {
        match fork() {
            nix::unistd::ForkResult::Child => {
                if explicit {
                    registry.after_fork().unwrap();
                }
                let before = syscall_counts();
                counters[0].inc();
                histogram.observe(0.5);
                let after = syscall_counts();
                // What a read of /proc/self/io itself costs, measured the same way.
                let probe = syscall_counts();
                let read_cost = probe.0 - after.0;
                println!(
                    "{} reads={} writes={}",
                    if explicit { "after_fork" } else { "first_write" },
                    after.0 - before.0 - read_cost,
                    after.1 - before.1
                );
                std::process::exit(0);
            }
            nix::unistd::ForkResult::Parent { child } => {
                assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
            }
        }
    }
}

fn a_fork_child_rewrites_each_file_with_one_write_and_after_fork_leaves_inc_without_system_calls() -> Result<(), Failed>
{
    let dir = TestDir::new();
    let out = role_command("first-write-after-fork", dir.path()).output()?;
    if !out.status.success() {
        return Err(format!("master failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let stdout = String::from_utf8(out.stdout)?;
    // The child's two new files (counter, histogram): each is read once when opened,
    // gets its header written when created, then one write for all its entries (100
    // counters; 12 histogram entries); plus the pid written into the liveness file.
    // One write per entry would be 2 + 1 + 112.
    expect_eq(
        "system calls of the first writes in each child",
        stdout.lines().collect::<Vec<_>>(),
        vec!["first_write reads=2 writes=5", "after_fork reads=0 writes=0"],
    )
}

static LAZY_JOBS: prometheus_multiproc::Lazy<prometheus_multiproc::Counter> =
    prometheus_multiproc::Lazy::new(|r| r.counter(Opts::new("lazy_jobs_total", "Jobs, declared in a static.")));

/// Counts 1 on a lazy static in the master and 2 in a fork child; prints the worker
/// IDs of both and whether the default registry has a directory.
fn role_lazy_across_fork() {
    use nix::sys::wait::{WaitStatus, waitpid};
    LAZY_JOBS.inc();
    let registry = prometheus_multiproc::default_registry();
    println!("master {} dir={:?}", registry.worker_id(), registry.dir());
    match fork() {
        nix::unistd::ForkResult::Child => {
            LAZY_JOBS.inc_by(2);
            println!("child {}", registry.worker_id());
            std::process::exit(0);
        }
        nix::unistd::ForkResult::Parent { child } => {
            assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
        }
    }
}

fn lazy_statics_on_the_default_registry_follow_fork_and_write_nowhere_without_a_directory() -> Result<(), Failed> {
    let dir = TestDir::new();
    let out = role_command("lazy-across-fork", dir.path()).output()?;
    let stdout = String::from_utf8(out.stdout)?;
    if !out.status.success() {
        return Err(format!("lazy-across-fork failed: {stdout}{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let ids: Vec<&str> = stdout.lines().map(|l| l.split_whitespace().nth(1).unwrap_or("")).collect();
    let mut want = vec![format!("counter_{}.db", ids[0]), format!("counter_{}.db", ids[1])];
    want.sort();
    expect_eq("files", dir.db_files(), want)?;
    expect_eq("python samples", python_samples(dir.path()), vec!["lazy_jobs_total{} 3.0".to_owned()])?;
    // Without a directory in the environment, the same program runs and writes nothing.
    let out = role_command("lazy-across-fork", dir.path())
        .env_remove("PROMETHEUS_MULTIPROC_DIR")
        .env_remove("prometheus_multiproc_dir")
        .output()?;
    let stdout = String::from_utf8(out.stdout)?;
    if !out.status.success() || !stdout.contains("dir=\"\"") {
        return Err(format!("without a directory: {}: {stdout}", out.status).into());
    }
    Ok(())
}
