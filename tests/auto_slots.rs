//! Automatic worker slots (`WorkerId::auto`, `PROMETHEUS_MULTIPROC_WORKER_ID=auto:PREFIX`):
//! a pre-fork master that recycles its workers many times leaves files of at most as
//! many slots as were alive at once, with exact totals; a master that never writes
//! claims no slot; a freed slot is the next one claimed. Worker processes are this
//! binary re-run in a role (see `support::role_command`).

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use libtest_mimic::{Failed, Trial};
use prometheus_multiproc::cleanup::{Liveness, compact, liveness, worker_id_of};
use prometheus_multiproc::{Collector, ErrorKind, GaugeMode, Opts, Registry, WorkerId};
use support::{TestDir, fork, python_samples, role_command, samples_of};

/// Workers the pre-fork master runs at once.
const ALIVE: usize = 4;
/// Workers it starts in all (so `RUNS - ALIVE` recyclings).
const RUNS: usize = 40;
/// Increments per worker.
const INCS: usize = 25;

fn main() {
    let tests = vec![
        Trial::test(
            "recycled_workers_reuse_at_most_as_many_slots_as_were_alive_with_exact_totals",
            recycled_workers_reuse_bounded_slots,
        ),
        Trial::test("a_master_that_never_writes_claims_no_slot", master_that_never_writes_claims_no_slot),
        Trial::test("the_lowest_free_slot_is_claimed_and_continued", lowest_free_slot_is_claimed_and_continued),
        Trial::test("slot_names_are_never_numeric_pids", slot_names_are_never_numeric_pids),
        Trial::test(
            "set_worker_id_auto_moves_the_process_and_its_fork_children_to_slots",
            set_worker_id_auto_moves_the_process_and_its_fork_children_to_slots,
        ),
        Trial::test("auto_worker_ids_are_validated", auto_worker_ids_are_validated),
    ];
    support::main_with_roles(run_role, tests)
}

fn run_role(role: &str) {
    match role {
        // A pre-fork master with `PROMETHEUS_MULTIPROC_WORKER_ID=auto:web` from the
        // environment: declares a counter and a livesum gauge (writes nothing), then
        // keeps ALIVE workers running, replacing each that exits, RUNS in all. With
        // MASTER_WRITES set it also writes once, before forking.
        "prefork" => {
            let registry = Registry::from_env().unwrap();
            let requests = registry.counter(Opts::new("requests_total", "Requests.")).unwrap();
            let in_flight = registry.gauge(Opts::new("in_flight", "In flight."), GaugeMode::LiveSum).unwrap();
            if std::env::var_os("MASTER_WRITES").is_some() {
                requests.inc();
            }
            let mut started = 0;
            let mut running = 0;
            while started < RUNS || running > 0 {
                if started < RUNS && running < ALIVE {
                    if let nix::unistd::ForkResult::Child = fork() {
                        for _ in 0..INCS {
                            in_flight.inc();
                            requests.inc();
                            in_flight.dec();
                        }
                        std::process::exit(0);
                    }
                    started += 1;
                    running += 1;
                    continue;
                }
                let status = nix::sys::wait::wait().unwrap();
                assert!(matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)), "worker failed: {status:?}");
                running -= 1;
            }
            println!("master {} {}", std::process::id(), registry.worker_id());
        }
        // Writes under `auto:$PREFIX` (given in code), prints its slot, waits.
        "hold-auto" => {
            let prefix = std::env::var("PREFIX").unwrap();
            let registry = Registry::builder().worker_id(WorkerId::auto(&prefix).unwrap()).build().unwrap();
            let c = registry.counter(Opts::new("held_total", "Held.")).unwrap();
            assert_eq!(registry.worker_id().to_string(), format!("auto:{prefix}"), "claimed before the first write");
            c.inc();
            println!("{}", registry.worker_id());
            std::thread::sleep(Duration::from_secs(600));
        }
        // Writes under its pid, then under `auto:s` (set_worker_id), then forks a child
        // that writes too; prints the IDs: before, after, the child's.
        "set-auto" => {
            let registry = Registry::from_env().unwrap();
            let c = registry.counter(Opts::new("moved_total", "Moved.")).unwrap();
            c.inc();
            let before = registry.worker_id();
            prometheus_multiproc::set_worker_id(WorkerId::auto("s").unwrap());
            c.inc();
            let after = registry.worker_id();
            match fork() {
                nix::unistd::ForkResult::Child => {
                    c.inc();
                    println!("child {}", registry.worker_id());
                    std::process::exit(0);
                }
                nix::unistd::ForkResult::Parent { child } => {
                    nix::sys::wait::waitpid(child, None).unwrap();
                    println!("parent {before} {after}");
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Runs the pre-fork master in `dir`; returns its output line (`master PID ID`).
fn run_master(dir: &TestDir, master_writes: bool) -> Result<String, Failed> {
    let mut cmd = role_command("prefork", dir.path());
    cmd.env("PROMETHEUS_MULTIPROC_WORKER_ID", "auto:web");
    if master_writes {
        cmd.env("MASTER_WRITES", "1");
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("master failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// The worker IDs of the directory's `.db` files (archives left out).
fn db_ids(dir: &TestDir) -> BTreeSet<String> {
    dir.db_files()
        .iter()
        .filter_map(|name| worker_id_of(name))
        .filter(|id| !id.starts_with("0archive-"))
        .map(str::to_owned)
        .collect()
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), Failed> {
    if got == want { Ok(()) } else { Err(format!("{what}: got {got:?}, want {want:?}").into()) }
}

fn total(dir: &TestDir, sample: &str) -> Result<f64, Failed> {
    let scrape = Collector::new(dir.path())?.collect()?;
    let value = scrape
        .families
        .iter()
        .flat_map(|f| &f.samples)
        .find(|s| s.name.as_ref() == sample)
        .map(|s| s.value)
        .ok_or_else(|| format!("no sample {sample}"))?;
    Ok(value)
}

fn recycled_workers_reuse_bounded_slots() -> Result<(), Failed> {
    let dir = TestDir::new();
    let line = run_master(&dir, false)?;
    expect_eq("master's worker ID (never wrote)", line.split(' ').nth(2), Some("auto:web"))?;
    let want: BTreeSet<String> = (0..ALIVE).map(|n| format!("web-{n}")).collect();
    let ids = db_ids(&dir);
    if !ids.is_subset(&want) || ids.is_empty() {
        return Err(format!("files of slots {ids:?}, want a subset of {want:?}").into());
    }
    expect_eq("requests_total", total(&dir, "requests_total")?, (RUNS * INCS) as f64)?;
    // Every worker is dead: their live gauges count no more.
    expect_eq("in_flight", total(&dir, "in_flight").ok(), None)?;
    // Python's own collector reads the same counter totals (it keeps dead writers' live
    // gauges until they are marked dead, which nobody did here).
    let counters =
        |lines: Vec<String>| -> Vec<String> { lines.into_iter().filter(|l| l.starts_with("requests")).collect() };
    let ours = counters(samples_of(&Collector::new(dir.path())?.collect()?));
    expect_eq("Python's samples", counters(python_samples(dir.path())), ours)?;
    // A second run continues the same slots; compaction keeps the totals.
    run_master(&dir, false)?;
    compact(dir.path())?;
    let ids = db_ids(&dir);
    if !ids.is_subset(&want) {
        return Err(format!("after compaction, files of slots {ids:?}, want a subset of {want:?}").into());
    }
    expect_eq("requests_total after compaction", total(&dir, "requests_total")?, (2 * RUNS * INCS) as f64)
}

fn master_that_never_writes_claims_no_slot() -> Result<(), Failed> {
    let dir = TestDir::new();
    let line = run_master(&dir, false)?;
    let master_pid = line.split(' ').nth(1).ok_or("no master pid")?.to_owned();
    let names: Vec<String> = std::fs::read_dir(dir.path())?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    if names.iter().any(|n| n.contains(&master_pid)) {
        return Err(format!("the master's pid names a file: {names:?}").into());
    }
    // One that writes claims one (web-0 when it writes before forking), and its
    // workers take the others.
    let dir = TestDir::new();
    let line = run_master(&dir, true)?;
    expect_eq("master's worker ID (wrote)", line.split(' ').nth(2), Some("web-0"))?;
    expect_eq("requests_total", total(&dir, "requests_total")?, (RUNS * INCS + 1) as f64)?;
    let want: BTreeSet<String> = (0..=ALIVE).map(|n| format!("web-{n}")).collect();
    let ids = db_ids(&dir);
    if !ids.is_subset(&want) {
        return Err(format!("files of slots {ids:?}, want a subset of {want:?}").into());
    }
    Ok(())
}

/// Starts a "hold-auto" worker and returns it with the slot it claimed.
fn hold_auto(dir: &TestDir, prefix: &str) -> Result<(Child, String), Failed> {
    let mut child = role_command("hold-auto", dir.path()).env("PREFIX", prefix).stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line)?;
    Ok((child, line.trim().to_owned()))
}

fn kill(mut child: Child) -> Result<(), Failed> {
    child.kill()?; // SIGKILL: no exit hook runs
    child.wait()?;
    Ok(())
}

fn lowest_free_slot_is_claimed_and_continued() -> Result<(), Failed> {
    let dir = TestDir::new();
    let (a, id_a) = hold_auto(&dir, "web")?;
    let (b, id_b) = hold_auto(&dir, "web")?;
    expect_eq("first slot", id_a.as_str(), "web-0")?;
    expect_eq("second slot", id_b.as_str(), "web-1")?;
    kill(a)?;
    expect_eq("web-0 after SIGKILL", liveness(dir.path(), "web-0"), Liveness::Dead)?;
    let (c, id_c) = hold_auto(&dir, "web")?;
    expect_eq("slot after web-0 died", id_c.as_str(), "web-0")?;
    // The new holder continued web-0's counter: 1 (dead) + 1 (new) + 1 (web-1).
    expect_eq("held_total", total(&dir, "held_total")?, 3.0)?;
    kill(b)?;
    kill(c)?;
    expect_eq("slots with files", db_ids(&dir), ["web-0", "web-1"].map(str::to_owned).into())
}

fn slot_names_are_never_numeric_pids() -> Result<(), Failed> {
    let dir = TestDir::new();
    let (child, id) = hold_auto(&dir, "7")?;
    kill(child)?;
    expect_eq("slot of prefix 7", id.as_str(), "7-0")?;
    if id.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a slot name is all digits".into());
    }
    Ok(())
}

fn set_worker_id_auto_moves_the_process_and_its_fork_children_to_slots() -> Result<(), Failed> {
    let dir = TestDir::new();
    let out = role_command("set-auto", dir.path()).output()?;
    if !out.status.success() {
        return Err(format!("role failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let out = String::from_utf8(out.stdout)?;
    let child = out.lines().find_map(|l| l.strip_prefix("child ")).ok_or("no child line")?;
    let parent: Vec<&str> =
        out.lines().find_map(|l| l.strip_prefix("parent ")).ok_or("no parent line")?.split(' ').collect();
    expect_eq("child's slot", child, "s-1")?;
    expect_eq("parent's ID after set_worker_id", parent.get(1).copied(), Some("s-0"))?;
    let pid = parent[0];
    expect_eq("slots and pid with files", db_ids(&dir), [pid, "s-0", "s-1"].map(str::to_owned).into())?;
    expect_eq("moved_total", total(&dir, "moved_total")?, 3.0)
}

fn auto_worker_ids_are_validated() -> Result<(), Failed> {
    for bad in ["", "w_1", ".x", "a/b", &"x".repeat(54)] {
        let kind = WorkerId::auto(bad).err().map(|e| e.kind());
        expect_eq(&format!("WorkerId::auto({bad:?})"), kind, Some(ErrorKind::InvalidWorkerId))?;
    }
    expect_eq("auto", WorkerId::parse("auto")?, WorkerId::auto("worker")?)?;
    expect_eq("auto:web", WorkerId::parse("auto:web")?, WorkerId::auto("web")?)?;
    expect_eq("web-3", WorkerId::parse("web-3")?, WorkerId::new("web-3")?)?;
    expect_eq("auto: concrete?", WorkerId::parse("auto:web")?.is_auto(), true)?;
    expect_eq("web-3 concrete?", WorkerId::parse("web-3")?.is_auto(), false)?;
    expect_eq("auto:", WorkerId::parse("auto:").err().map(|e| e.kind()), Some(ErrorKind::InvalidWorkerId))
}
