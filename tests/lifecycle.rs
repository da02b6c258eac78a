//! Worker lifecycle: liveness that survives SIGKILL and pid reuse, exclusive worker
//! slots, slot takeover, `mark_process_dead` and boot-time clearing. Worker processes
//! are this binary re-run in a role (see `support::role_command`).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use libtest_mimic::{Failed, Trial};
use prometheus_multiproc::cleanup::{Liveness, clear_directory, force_mark_process_dead, liveness, mark_process_dead};
use prometheus_multiproc::{Collector, ErrorKind, GaugeMode, Opts, Registry, WorkerId, render};
use support::{TestDir, fork, role_command};

fn main() {
    let tests = vec![
        Trial::test("sigkilled_writer_is_dead_and_live_one_is_alive", sigkilled_writer_is_dead_and_live_one_is_alive),
        Trial::test("second_live_writer_for_a_worker_id_is_refused", second_live_writer_for_a_worker_id_is_refused),
        Trial::test("fork_child_does_not_keep_its_parent_alive", fork_child_does_not_keep_its_parent_alive),
        Trial::test(
            "slot_takeover_continues_counters_and_resets_live_gauges",
            slot_takeover_continues_counters_and_resets_live_gauges,
        ),
        Trial::test(
            "sigkilled_writers_live_gauges_leave_the_next_scrape_unmarked",
            sigkilled_writers_live_gauges_leave_the_next_scrape_unmarked,
        ),
        Trial::test(
            "slot_takeover_hides_the_predecessors_live_gauges_before_any_gauge_is_created",
            slot_takeover_hides_live_gauges_at_once,
        ),
        Trial::test("a_reused_pid_does_not_bring_a_dead_writer_back", a_reused_pid_does_not_bring_a_dead_writer_back),
        Trial::test(
            "clear_directory_removes_compaction_leftovers_and_planted_symlinks_only",
            clear_directory_removes_compaction_leftovers_and_symlinks,
        ),
        Trial::test("mark_process_dead_removes_only_live_gauge_files", mark_process_dead_removes_only_live_gauge_files),
        Trial::test(
            "mark_process_dead_refuses_a_live_writer_unless_forced",
            mark_process_dead_refuses_a_live_writer_unless_forced,
        ),
        Trial::test("taking_a_slot_removes_its_killed_predecessors_temp_files", taking_a_slot_removes_temp_files),
        Trial::test(
            "clear_directory_removes_only_our_files_and_spares_live_dirs",
            clear_directory_removes_only_our_files,
        ),
        Trial::test(
            "process_metrics_cover_every_live_worker_and_leave_with_a_dead_one",
            process_metrics_cover_every_live_worker_and_leave_with_a_dead_one,
        ),
    ];
    support::main_with_roles(run_role, tests)
}

fn run_role(role: &str) {
    match role {
        // Holds worker ID $ID with a counter and a livesum gauge, prints "ready", waits.
        "hold" => {
            let registry =
                Registry::builder().worker_id(WorkerId::new(&std::env::var("ID").unwrap()).unwrap()).build().unwrap();
            let c = registry.counter(Opts::new("held_total", "Held.")).unwrap();
            let g = registry.gauge(Opts::new("held_in_flight", "In flight."), GaugeMode::LiveSum).unwrap();
            c.inc_by(5.0);
            g.inc_by(7.0);
            println!("ready");
            std::thread::sleep(Duration::from_secs(600));
        }
        // Writes under its pid and forks a child that lives on; each prints its pid
        // (the child's line proves it has run, and so has its fork hook); the parent exits.
        "fork-and-exit" => {
            let registry = Registry::from_env().unwrap();
            registry.counter(Opts::new("parent_total", "Parent.")).unwrap().inc();
            match fork() {
                nix::unistd::ForkResult::Child => {
                    println!("child {}", std::process::id());
                    std::thread::sleep(Duration::from_secs(600));
                }
                nix::unistd::ForkResult::Parent { .. } => println!("parent {}", std::process::id()),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Starts a "hold" worker for `id` and waits until it holds the ID.
fn hold(dir: &TestDir, id: &str) -> Result<Child, Failed> {
    let mut child = role_command("hold", dir.path()).env("ID", id).stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("holder did not get ready: {line:?}").into());
    }
    Ok(child)
}

fn kill(mut child: Child) -> Result<(), Failed> {
    child.kill()?; // SIGKILL: no exit hook runs
    child.wait()?;
    Ok(())
}

/// Waits until `id` reads as dead. A process another test thread spawns at the moment
/// a lock is released briefly holds a copy of the descriptor until its `exec` closes
/// it (close-on-exec), so "dead" can lag the drop by that long.
fn wait_dead(dir: &TestDir, id: &str) -> Result<(), Failed> {
    for _ in 0..500 {
        if liveness(dir.path(), id) == Liveness::Dead {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!("worker {id} still reads as alive after 5 s").into())
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), Failed> {
    if got == want { Ok(()) } else { Err(format!("{what}: got {got:?}, want {want:?}").into()) }
}

fn sigkilled_writer_is_dead_and_live_one_is_alive() -> Result<(), Failed> {
    let dir = TestDir::new();
    let child = hold(&dir, "3")?;
    expect_eq("while running", liveness(dir.path(), "3"), Liveness::Alive)?;
    kill(child)?;
    expect_eq("after SIGKILL", liveness(dir.path(), "3"), Liveness::Dead)?;
    expect_eq("never seen", liveness(dir.path(), "4"), Liveness::Unknown)
}

fn scrape(dir: &TestDir) -> Result<String, Failed> {
    let scrape = Collector::new(dir.path())?.collect()?;
    Ok(String::from_utf8(render(&scrape, None, None).body)?)
}

fn sigkilled_writers_live_gauges_leave_the_next_scrape_unmarked() -> Result<(), Failed> {
    let dir = TestDir::new();
    let (a, b) = (hold(&dir, "3")?, hold(&dir, "4")?);
    let before = scrape(&dir)?;
    if !before.contains("held_in_flight 14.0\n") {
        return Err(format!("two live writers' gauges: {before}").into());
    }
    kill(a)?;
    // Nobody calls mark_process_dead: the kernel released the dead writer's lock.
    let after = scrape(&dir)?;
    let b_alive = liveness(dir.path(), "4");
    kill(b)?;
    expect_eq("live writer", b_alive, Liveness::Alive)?;
    if !after.contains("held_in_flight 7.0\n") || !after.contains("held_total 10.0\n") {
        return Err(format!("after SIGKILL of one writer, its gauge must leave and counters stay:\n{after}").into());
    }
    Ok(())
}

fn a_reused_pid_does_not_bring_a_dead_writer_back() -> Result<(), Failed> {
    // A writer that used this test process's pid as its ID dies; the pid is in use (by
    // us), as it would be after pid reuse, yet the writer reads as dead and its live
    // gauge leaves the scrape.
    let dir = TestDir::new();
    let pid = std::process::id().to_string();
    kill(hold(&dir, &pid)?)?;
    expect_eq("liveness of a dead writer whose pid is alive", liveness(dir.path(), &pid), Liveness::Dead)?;
    let text = scrape(&dir)?;
    if text.contains("held_in_flight") || !text.contains("held_total 5.0\n") {
        return Err(format!("dead writer's live gauge still scraped:\n{text}").into());
    }
    Ok(())
}

fn second_live_writer_for_a_worker_id_is_refused() -> Result<(), Failed> {
    let dir = TestDir::new();
    let child = hold(&dir, "3")?;
    let err = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("3")?).build().unwrap_err();
    expect_eq("kind", err.kind(), ErrorKind::WorkerIdInUse)?;
    if !err.to_string().contains("writer_3.lock") {
        return Err(format!("error does not name the lock file: {err}").into());
    }
    // A second Registry on the same directory in one process is refused the same way.
    let _other = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("9")?).build()?;
    let again = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("9")?).build().unwrap_err();
    expect_eq("same process", again.kind(), ErrorKind::WorkerIdInUse)?;
    kill(child)?;
    Registry::builder().dir(dir.path()).worker_id(WorkerId::new("3")?).build()?;
    Ok(())
}

fn fork_child_does_not_keep_its_parent_alive() -> Result<(), Failed> {
    let dir = TestDir::new();
    // Read one line, not to EOF: the forked child keeps the pipe open while it sleeps.
    let mut worker = role_command("fork-and-exit", dir.path()).stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(worker.stdout.take().unwrap()).lines();
    let (mut parent, mut child) = (String::new(), String::new());
    for _ in 0..2 {
        let line = lines.next().ok_or("worker closed stdout early")??;
        match line.split_once(' ') {
            Some(("parent", pid)) => parent = pid.to_owned(),
            Some(("child", pid)) => child = pid.to_owned(),
            _ => return Err(format!("unexpected line {line:?}").into()),
        }
    }
    worker.wait()?;
    let child_pid = nix::unistd::Pid::from_raw(child.parse()?);
    // The child still runs (and holds the parent's inherited descriptors, minus the
    // liveness lock, which the fork hook closed): the parent must read as dead.
    let parent_state = liveness(dir.path(), &parent);
    nix::sys::signal::kill(child_pid, nix::sys::signal::Signal::SIGKILL)?;
    expect_eq("parent liveness while its child runs", parent_state, Liveness::Dead)
}

fn slot_takeover_continues_counters_and_resets_live_gauges() -> Result<(), Failed> {
    let dir = TestDir::new();
    kill(hold(&dir, "3")?)?;
    let registry = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("3")?).build()?;
    let c = registry.counter(Opts::new("held_total", "Held."))?;
    let g = registry.gauge(Opts::new("held_in_flight", "In flight."), GaugeMode::LiveSum)?;
    expect_eq("counter continues", c.get(), 5.0)?;
    expect_eq("live gauge starts fresh", g.get(), 0.0)?;
    c.inc();
    expect_eq("counter after takeover", c.get(), 6.0)?;
    expect_eq(
        "files stay bounded by slots",
        dir.db_files(),
        vec!["counter_3.db".to_owned(), "gauge_livesum_3.db".into()],
    )
}

fn taking_a_slot_removes_temp_files() -> Result<(), Failed> {
    let dir = TestDir::new();
    // What a writer killed between creating and linking a file leaves behind.
    for name in [".counter_5.db.4242.tmp", ".gauge_livesum_5.db.4243.tmp", ".counter_15.db.4244.tmp"] {
        std::fs::write(dir.path().join(name), [0u8; 64])?;
    }
    let _registry = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("5")?).build()?;
    let mut left: Vec<String> =
        std::fs::read_dir(dir.path())?.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    expect_eq("files", left, vec![".counter_15.db.4244.tmp".to_owned(), "writer_5.lock".into()])
}

fn mark_process_dead_removes_only_live_gauge_files() -> Result<(), Failed> {
    let dir = TestDir::new();
    {
        let registry = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("8")?).build()?;
        for mode in GaugeMode::ALL {
            registry.gauge(Opts::new(format!("g_{}", mode.as_str()), "G."), mode)?.set(1.0);
        }
        registry.counter(Opts::new("c_total", "C."))?.inc();
    }
    wait_dead(&dir, "8")?;
    let removed = mark_process_dead(dir.path(), "8")?;
    expect_eq("removed (the 5 live gauges)", removed, 5)?;
    expect_eq(
        "remaining",
        dir.db_files(),
        [
            "counter_8.db",
            "gauge_all_8.db",
            "gauge_max_8.db",
            "gauge_min_8.db",
            "gauge_mostrecent_8.db",
            "gauge_sum_8.db",
        ]
        .map(String::from)
        .to_vec(),
    )?;
    expect_eq("idempotent", mark_process_dead(dir.path(), "8")?, 0)
}

fn mark_process_dead_refuses_a_live_writer_unless_forced() -> Result<(), Failed> {
    let dir = TestDir::new();
    let registry = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("9")?).build()?;
    let busy = registry.gauge(Opts::new("busy", "Busy."), GaugeMode::LiveSum)?;
    busy.inc();
    let err = mark_process_dead(dir.path(), "9").err().ok_or("a live writer was marked dead")?;
    expect_eq("error kind", err.kind(), prometheus_multiproc::ErrorKind::WorkerIdInUse)?;
    expect_eq("error path", err.path(), Some(dir.path().join("writer_9.lock").as_path()))?;
    expect_eq("files after the refusal", dir.db_files(), vec!["gauge_livesum_9.db".to_owned()])?;
    expect_eq("removed by force", force_mark_process_dead(dir.path(), "9")?, 1)?;
    expect_eq("files after force", dir.db_files(), Vec::<String>::new())
}

fn clear_directory_removes_only_our_files() -> Result<(), Failed> {
    let dir = TestDir::new();
    std::fs::write(dir.path().join("notes.txt"), "keep")?;
    std::fs::write(dir.path().join("foo.db"), "keep")?;
    {
        let registry = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("1")?).build()?;
        registry.counter(Opts::new("c_total", "C."))?.inc();
        registry.gauge(Opts::new("g", "G."), GaugeMode::LiveSum)?.inc();
    }
    let live = hold(&dir, "2")?;
    let refused = clear_directory(dir.path()).unwrap_err();
    expect_eq("refused while a writer lives", refused.kind(), ErrorKind::WorkerIdInUse)?;
    kill(live)?;
    wait_dead(&dir, "1")?;
    let cleared = clear_directory(dir.path())?;
    expect_eq(
        "removed",
        cleared.removed,
        ["counter_1.db", "counter_2.db", "gauge_livesum_1.db", "gauge_livesum_2.db", "writer_1.lock", "writer_2.lock"]
            .map(String::from)
            .to_vec(),
    )?;
    let mut left: Vec<String> =
        std::fs::read_dir(dir.path())?.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    expect_eq("kept", left, vec!["foo.db".to_owned(), "notes.txt".into()])
}

fn slot_takeover_hides_live_gauges_at_once() -> Result<(), Failed> {
    let dir = TestDir::new();
    kill(hold(&dir, "3")?)?;
    // The new writer in slot 3 creates a counter only: the dead predecessor's live gauge
    // (7.0) must not come back now that the slot reads as alive again.
    let registry = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("3")?).build()?;
    registry.counter(Opts::new("held_total", "Held."))?.inc();
    expect_eq("liveness", liveness(dir.path(), "3"), Liveness::Alive)?;
    let text = scrape(&dir)?;
    if text.contains("held_in_flight") || !text.contains("held_total 6.0\n") {
        return Err(format!("after takeover the dead writer's live gauge is scraped again:\n{text}").into());
    }
    expect_eq("files", dir.db_files(), vec!["counter_3.db".to_owned()])
}

fn clear_directory_removes_compaction_leftovers_and_symlinks() -> Result<(), Failed> {
    let dir = TestDir::new();
    let outside = TestDir::new();
    let target = outside.path().join("precious.db");
    std::fs::write(&target, "outside")?;
    for name in [
        "counter_0archive-3.db",
        ".counter_0archive-3.db.sources",
        ".histogram_0archive-4.db.tmp",
        ".histogram_0archive-4.db.sources.tmp",
        ".compaction.seq",
        ".compact.lock",
        "keep.txt",
        ".hidden",
    ] {
        std::fs::write(dir.path().join(name), "x")?;
    }
    std::os::unix::fs::symlink(&target, dir.path().join("counter_9.db"))?;
    std::fs::create_dir(dir.path().join("summary_8.db"))?;
    let cleared = clear_directory(dir.path())?;
    expect_eq(
        "removed",
        cleared.removed,
        [
            ".compact.lock",
            ".compaction.seq",
            ".counter_0archive-3.db.sources",
            ".histogram_0archive-4.db.sources.tmp",
            ".histogram_0archive-4.db.tmp",
            "counter_0archive-3.db",
            "counter_9.db",
        ]
        .map(String::from)
        .to_vec(),
    )?;
    expect_eq("left (a directory under our name)", cleared.left, vec!["summary_8.db".to_owned()])?;
    expect_eq("the symlink's target is untouched", std::fs::read_to_string(&target)?, "outside".to_owned())?;
    let mut left: Vec<String> =
        std::fs::read_dir(dir.path())?.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    expect_eq("kept", left, [".hidden", "keep.txt", "summary_8.db"].map(String::from).to_vec())
}

fn process_metrics_cover_every_live_worker_and_leave_with_a_dead_one() -> Result<(), Failed> {
    let dir = TestDir::new();
    let (w1, w2) = (hold(&dir, "pm1")?, hold(&dir, "pm2")?);
    let pid2 = w2.id();
    let collector = Collector::new(dir.path())?.with_process_metrics(true);
    let scrape = collector.collect()?;
    for worker in ["pm1", "pm2"] {
        for name in [
            "process_cpu_seconds_total",
            "process_virtual_memory_bytes",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_open_fds",
            "process_max_fds",
        ] {
            let value = scrape.value(name, &[("worker", worker)]).ok_or(format!("no {name} for {worker}"))?;
            if value.is_nan() || value < 0.0 {
                return Err(format!("{name}{{worker={worker}}} = {value}").into());
            }
        }
    }
    let rss = scrape.value("process_resident_memory_bytes", &[("worker", "pm2")]).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid2}/status"))?;
    let vm_rss_kib: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches(" kB").trim().parse()?;
    if (rss / 1024.0 - vm_rss_kib).abs() > vm_rss_kib * 0.5 {
        return Err(format!("resident memory {rss} B is not the worker's VmRSS {vm_rss_kib} KiB").into());
    }
    let page = String::from_utf8(render(&scrape, None, None).body)?;
    if !page.contains("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total{worker=\"pm1\"}") {
        return Err(format!("exposition: {page}").into());
    }
    kill(w1)?;
    wait_dead(&dir, "pm1")?;
    let scrape = collector.collect()?;
    expect_eq("dead worker's series", scrape.value("process_open_fds", &[("worker", "pm1")]), None)?;
    if scrape.value("process_open_fds", &[("worker", "pm2")]).is_none() {
        return Err("the live worker lost its series".into());
    }
    kill(w2)
}
