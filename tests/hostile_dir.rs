//! A hostile metrics directory: whatever another local user plants in it (symlinks,
//! FIFOs, hard links) never redirects a read or a write outside it, never hangs a scrape
//! or a writer, and files are created with the configured mode whatever the umask.
//!
//! Runs without the default harness so that (a) a test logger can be installed before
//! any test starts, and (b) umask experiments run in child processes (this binary re-run
//! in a role, see `support::role_command`): the umask is process-wide and would leak
//! into concurrently running tests.

mod support;

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use libtest_mimic::{Arguments, Failed, Trial};
use prometheus_multiproc::expose::{self, Escaping};
use prometheus_multiproc::format::{self, key::encode_key};
use prometheus_multiproc::{Collector, ErrorKind, GaugeMode, Opts, Registry, Scrape, SkipReason, WorkerId};
use support::{ROLE, TestDir, role_command};

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        run_role(&role);
        std::process::exit(0);
    }
    log::set_logger(&LOGGER).expect("no other logger");
    log::set_max_level(log::LevelFilter::Warn);
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test("symlink_named_db_never_redirects_a_read", symlink_named_db_never_redirects_a_read),
        Trial::test(
            "writer_never_writes_through_a_symlink_at_its_file_name",
            writer_never_writes_through_a_symlink_at_its_file_name,
        ),
        Trial::test(
            "writer_never_follows_a_symlink_at_its_liveness_file",
            writer_never_follows_a_symlink_at_its_liveness_file,
        ),
        Trial::test(
            "symlink_at_the_temporary_name_is_removed_not_followed",
            symlink_at_the_temporary_name_is_removed_not_followed,
        ),
        Trial::test("fifo_named_db_does_not_hang_a_scrape", fifo_named_db_does_not_hang_a_scrape),
        Trial::test(
            "a_non_file_at_a_liveness_file_name_makes_no_writer_dead",
            a_non_file_at_a_liveness_file_name_makes_no_writer_dead,
        ),
        Trial::test(
            "fifo_at_a_writers_file_name_is_a_clear_error_without_hanging",
            fifo_at_a_writers_file_name_is_a_clear_error_without_hanging,
        ),
        Trial::test(
            "fifo_at_the_liveness_file_is_a_clear_error_without_hanging",
            fifo_at_the_liveness_file_is_a_clear_error_without_hanging,
        ),
        Trial::test("files_are_created_0600_whatever_the_umask", files_are_created_0600_whatever_the_umask),
        Trial::test(
            "configured_file_mode_is_applied_whatever_the_umask",
            configured_file_mode_is_applied_whatever_the_umask,
        ),
        Trial::test(
            "world_writable_dir_without_sticky_bit_is_warned_about",
            world_writable_dir_without_sticky_bit_is_warned_about,
        ),
        Trial::test("hard_link_named_db_is_read_like_any_file", hard_link_named_db_is_read_like_any_file),
        Trial::test(
            "hard_link_at_a_writers_file_name_is_never_written_through",
            hard_link_at_a_writers_file_name_is_never_written_through,
        ),
        Trial::test(
            "a_file_truncated_by_another_process_kills_neither_writer_nor_scraper",
            a_file_truncated_by_another_process_kills_neither_writer_nor_scraper,
        ),
        Trial::test(
            "a_sigbus_outside_metrics_mappings_still_kills_the_process",
            a_sigbus_outside_metrics_mappings_still_kills_the_process,
        ),
        Trial::test(
            "a_hardware_memory_error_inside_a_metrics_mapping_still_kills_the_process",
            a_hardware_memory_error_inside_a_metrics_mapping_still_kills_the_process,
        ),
        Trial::test("a_sigbus_sent_by_kill_still_kills_the_process", a_sigbus_sent_by_kill_still_kills_the_process),
        Trial::test(
            "with_the_guard_turned_off_a_truncated_file_kills_as_without_the_crate",
            with_the_guard_turned_off_a_truncated_file_kills_as_without_the_crate,
        ),
        Trial::test(
            "truncation_met_through_an_older_mapping_of_a_grown_file_is_noticed",
            truncation_met_through_an_older_mapping_of_a_grown_file_is_noticed,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}

// ---------------------------------------------------------------------------------
// Helpers

/// Every warning logged by this process.
struct Capture(Mutex<Vec<String>>);

static LOGGER: Capture = Capture(Mutex::new(Vec::new()));

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.lock().unwrap().push(format!("{} {}", record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}

/// The captured warnings that mention `path` (tests run in parallel: each looks only
/// at its own directory).
fn warnings_about(path: &Path) -> Vec<String> {
    let path = path.display().to_string();
    LOGGER.0.lock().unwrap().iter().filter(|w| w.contains(&path)).cloned().collect()
}

fn check(what: &str, ok: bool) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what.into()) }
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), Failed> {
    if got == want { Ok(()) } else { Err(format!("{what}: got {got:?}, want {want:?}").into()) }
}

/// The bytes of a valid file holding one sample `NAME_total{a="x"} VALUE` of family NAME.
fn counter_file(name: &str, value: f64) -> Vec<u8> {
    let mut out = format::encode_header(0).to_vec();
    let key = encode_key(name, &format!("{name}_total"), &[("a", "x")], "Help.");
    format::encode_entry(&mut out, key.as_bytes(), value, 0.0);
    let used = out.len() as u32;
    out[..4].copy_from_slice(&used.to_le_bytes());
    out
}

fn text(scrape: &Scrape) -> String {
    let mut out = String::new();
    expose::encode_text(&scrape.families, Escaping::Underscores, &mut out);
    out
}

/// Scrapes `dir` on another thread; fails if that takes more than 10 s.
fn scrape_within_10s(dir: &Path) -> Result<Scrape, Failed> {
    let (tx, rx) = mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(Collector::new(&dir).and_then(|c| c.collect()));
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(scrape) => Ok(scrape?),
        Err(_) => Err("the scrape did not return within 10 s".into()),
    }
}

/// Runs `f` on another thread; fails if it takes more than 10 s.
fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Failed> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10)).map_err(|_| "did not return within 10 s".into())
}

/// A file outside the metrics directory, with a known content and an old mtime.
struct Victim {
    path: std::path::PathBuf,
    content: Vec<u8>,
    mtime: SystemTime,
}

impl Victim {
    fn new(dir: &Path, name: &str, content: &[u8]) -> Victim {
        let path = dir.join(name);
        let mut file = File::create(&path).unwrap();
        file.write_all(content).unwrap();
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        file.set_modified(mtime).unwrap();
        Victim { path, content: content.to_vec(), mtime }
    }

    /// Content and mtime are what they were.
    fn untouched(&self) -> Result<(), Failed> {
        expect_eq("victim content", fs::read(&self.path)?, self.content.clone())?;
        expect_eq("victim mtime", fs::metadata(&self.path)?.modified()?, self.mtime)
    }
}

fn registry(dir: &Path, id: &str) -> prometheus_multiproc::Result<Registry> {
    Registry::builder().dir(dir).worker_id(WorkerId::new(id).unwrap()).build()
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

// ---------------------------------------------------------------------------------
// Symlinks

/// A symlink named like a writer's file, pointing at a valid `.db` file (or at a
/// directory) outside, is skipped: the scrape is exactly the scrape without it.
fn symlink_named_db_never_redirects_a_read() -> Result<(), Failed> {
    let dir = TestDir::new();
    let outside = TestDir::new();
    fs::write(dir.path().join("counter_0.db"), counter_file("mine", 1.0))?;
    let baseline = text(&scrape_within_10s(dir.path())?);
    fs::write(outside.path().join("counter_9.db"), counter_file("secret", 42.0))?;
    symlink(outside.path().join("counter_9.db"), dir.path().join("counter_1.db"))?;
    symlink(outside.path(), dir.path().join("gauge_all_2.db"))?;
    symlink(
        Path::new("..").join(outside.path().file_name().unwrap()).join("counter_9.db"),
        dir.path().join("summary_3.db"),
    )?;

    let scrape = scrape_within_10s(dir.path())?;
    expect_eq("exposition", text(&scrape), baseline)?;
    let skipped: Vec<(String, SkipReason)> = scrape
        .skipped
        .iter()
        .map(|s| (s.path.file_name().unwrap().to_string_lossy().into_owned(), s.reason.clone()))
        .collect();
    expect_eq(
        "skipped",
        skipped,
        vec![
            ("counter_1.db".into(), SkipReason::NotARegularFile),
            ("gauge_all_2.db".into(), SkipReason::NotARegularFile),
            ("summary_3.db".into(), SkipReason::NotARegularFile),
        ],
    )
}

/// A writer whose file name is a planted symlink (to an existing file, or dangling)
/// gets an error naming the file; the target is neither written nor created, and the
/// symlink stays as it was.
fn writer_never_writes_through_a_symlink_at_its_file_name() -> Result<(), Failed> {
    let dir = TestDir::new();
    let outside = TestDir::new();
    let victim = Victim::new(outside.path(), "victim.db", &counter_file("victim", 5.0));
    symlink(&victim.path, dir.path().join("counter_7.db"))?;
    let missing = outside.path().join("created-through-symlink.db");
    symlink(&missing, dir.path().join("gauge_all_7.db"))?;
    let registry = registry(dir.path(), "7")?;

    let err = registry.counter(Opts::new("c_total", "C.")).expect_err("a symlink is never opened");
    expect_eq("kind", err.kind(), ErrorKind::NotARegularFile)?;
    expect_eq("path", err.path(), Some(dir.path().join("counter_7.db").as_path()))?;
    check(&format!("the message says why: {err}"), err.to_string().contains("symlink"))?;
    victim.untouched()?;

    let err = registry.gauge(Opts::new("g", "G."), GaugeMode::All).expect_err("a dangling symlink is never opened");
    expect_eq("kind", err.kind(), ErrorKind::NotARegularFile)?;
    check("the dangling symlink's target was not created", !missing.exists())?;

    for name in ["counter_7.db", "gauge_all_7.db"] {
        check(
            &format!("{name} is still a symlink"),
            fs::symlink_metadata(dir.path().join(name))?.file_type().is_symlink(),
        )?;
    }
    Ok(())
}

/// A planted symlink at `writer_ID.lock` makes `build()` fail with an error naming it;
/// the target is not written, not created, and not locked.
fn writer_never_follows_a_symlink_at_its_liveness_file() -> Result<(), Failed> {
    let dir = TestDir::new();
    let outside = TestDir::new();
    let victim = Victim::new(outside.path(), "victim.lock", b"precious\n");
    symlink(&victim.path, dir.path().join("writer_8.lock"))?;
    let missing = outside.path().join("created-through-symlink.lock");
    symlink(&missing, dir.path().join("writer_9.lock"))?;

    let err = registry(dir.path(), "8").expect_err("a symlinked liveness file is never opened");
    expect_eq("kind", err.kind(), ErrorKind::NotARegularFile)?;
    expect_eq("path", err.path(), Some(dir.path().join("writer_8.lock").as_path()))?;
    victim.untouched()?;
    // Nobody holds a lock on the target.
    File::open(&victim.path)?.try_lock().map_err(|e| format!("victim is locked: {e:?}"))?;

    let err = registry(dir.path(), "9").expect_err("a dangling symlinked liveness file is never opened");
    expect_eq("kind", err.kind(), ErrorKind::NotARegularFile)?;
    check("the dangling symlink's target was not created", !missing.exists())?;
    check("no .db file was created", dir.db_files().is_empty())
}

/// New files are built under a dot-name and linked into place. A symlink planted at
/// that name (it is predictable: `.NAME.PID.tmp`) is removed, never followed.
fn symlink_at_the_temporary_name_is_removed_not_followed() -> Result<(), Failed> {
    let dir = TestDir::new();
    let outside = TestDir::new();
    let victim = Victim::new(outside.path(), "victim", b"precious\n");
    let tmp = dir.path().join(format!(".counter_6.db.{}.tmp", std::process::id()));
    symlink(&victim.path, &tmp)?;

    let registry = registry(dir.path(), "6")?;
    registry.counter(Opts::new("c_total", "C."))?.inc();
    victim.untouched()?;
    check("the planted symlink is gone", fs::symlink_metadata(&tmp).is_err())?;
    let meta = fs::symlink_metadata(dir.path().join("counter_6.db"))?;
    check("counter_6.db is a regular file", meta.file_type().is_file())?;
    expect_eq("counter_6.db links", meta.nlink(), 1)
}

// ---------------------------------------------------------------------------------
// FIFOs

/// A FIFO named `*.db` (no writer ever opens its other end) is skipped without
/// blocking; the scrape is exactly the scrape without it.
fn fifo_named_db_does_not_hang_a_scrape() -> Result<(), Failed> {
    let dir = TestDir::new();
    fs::write(dir.path().join("counter_0.db"), counter_file("mine", 1.0))?;
    let baseline = text(&scrape_within_10s(dir.path())?);
    mkfifo(&dir.path().join("counter_1.db"));
    mkfifo(&dir.path().join("histogram_1.db"));
    let scrape = scrape_within_10s(dir.path())?;
    expect_eq("exposition", text(&scrape), baseline)?;
    expect_eq("skipped", scrape.skipped.len(), 2)?;
    check("skipped as not regular", scrape.skipped.iter().all(|s| s.reason == SkipReason::NotARegularFile))
}

/// A directory or FIFO planted at `writer_2.lock` is no dead writer's liveness file:
/// writer 2's live gauges still count (its liveness is unknown, as for a Python
/// worker), and its files are read as they are without one.
fn a_non_file_at_a_liveness_file_name_makes_no_writer_dead() -> Result<(), Failed> {
    let dir = TestDir::new();
    fs::write(dir.path().join("counter_2.db"), counter_file("mine", 1.0))?;
    fs::write(dir.path().join("gauge_livesum_2.db"), counter_file("live", 2.0))?;
    let baseline = text(&scrape_within_10s(dir.path())?);
    check("the live gauge counts without a liveness file", baseline.contains("live_total"))?;
    let lock = dir.path().join("writer_2.lock");
    fs::create_dir(&lock)?;
    expect_eq("with a directory there", text(&scrape_within_10s(dir.path())?), baseline.clone())?;
    fs::remove_dir(&lock)?;
    mkfifo(&lock);
    expect_eq("with a FIFO there", text(&scrape_within_10s(dir.path())?), baseline)
}

fn fifo_at_a_writers_file_name_is_a_clear_error_without_hanging() -> Result<(), Failed> {
    let dir = TestDir::new();
    mkfifo(&dir.path().join("counter_5.db"));
    let registry = registry(dir.path(), "5")?;
    let result = within_10s(move || registry.counter(Opts::new("c_total", "C.")).map(|_| ()))?;
    let err = result.expect_err("a FIFO is not a .db file");
    expect_eq("kind", err.kind(), ErrorKind::NotARegularFile)?;
    expect_eq("path", err.path(), Some(dir.path().join("counter_5.db").as_path()))?;
    check(&format!("the message names a FIFO: {err}"), err.to_string().contains("found a FIFO"))
}

fn fifo_at_the_liveness_file_is_a_clear_error_without_hanging() -> Result<(), Failed> {
    let dir = TestDir::new();
    mkfifo(&dir.path().join("writer_4.lock"));
    let path = dir.path().to_path_buf();
    let result = within_10s(move || registry(&path, "4").map(|_| ()))?;
    let err = result.expect_err("a FIFO is not a liveness file");
    expect_eq("kind", err.kind(), ErrorKind::NotARegularFile)?;
    expect_eq("path", err.path(), Some(dir.path().join("writer_4.lock").as_path()))?;
    check(&format!("the message names a FIFO: {err}"), err.to_string().contains("found a FIFO"))
}

// ---------------------------------------------------------------------------------
// Modes

fn run_role(role: &str) {
    match role {
        // Sets umask $UMASK, then creates one file of each kind as worker 1 (with
        // `file_mode($MODE)` when MODE is set), and prints "ok".
        "create-files" => {
            let umask = u32::from_str_radix(&std::env::var("UMASK").unwrap(), 8).unwrap();
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
            let mut builder = Registry::builder().worker_id(WorkerId::new("1").unwrap());
            if let Ok(mode) = std::env::var("MODE") {
                builder = builder.file_mode(u32::from_str_radix(&mode, 8).unwrap());
            }
            let registry = builder.build().unwrap();
            registry.counter(Opts::new("c_total", "C.")).unwrap().inc();
            registry.gauge(Opts::new("g", "G."), GaugeMode::LiveSum).unwrap().set(1.0);
            registry.gauge(Opts::new("h", "H."), GaugeMode::MostRecent).unwrap().set(1.0);
            registry.histogram(Opts::new("lat", "L."), &[1.0]).unwrap().observe(0.5);
            registry.summary(Opts::new("s", "S.")).unwrap().observe(0.5);
            println!("ok");
        }
        // Writes a counter as worker 1, says "ready", waits for a line on stdin (the
        // parent truncates the file meanwhile), then counts on and asks for a new series.
        "count-through-truncation" => {
            let registry = Registry::builder().worker_id(WorkerId::new("1").unwrap()).build().unwrap();
            let family = registry.counter_family(Opts::new("c_total", "C."), &["k"]).unwrap();
            let first = family.get(&["a"]).unwrap();
            first.inc();
            println!("ready");
            std::io::stdin().read_line(&mut String::new()).unwrap();
            for _ in 0..1000 {
                first.inc();
            }
            let err = family.get(&["b"]).unwrap_err();
            println!("survived; a new series: {:?}: {err}", err.kind());
        }
        // Truncates counter_1.db to nothing and extends it again (with zeros), in a loop,
        // until its stdin closes.
        "truncate-loop" => {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            let dir = std::env::var("PROMETHEUS_MULTIPROC_DIR").unwrap();
            let file = File::options().write(true).open(Path::new(&dir).join("counter_1.db")).unwrap();
            let len = file.metadata().unwrap().len();
            println!("truncating");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                file.set_len(0).unwrap();
                file.set_len(len).unwrap();
            }
        }
        // Guards metrics mappings (a registry), then touches a page past the end of a
        // file mapped by someone else: that SIGBUS is not ours and must kill.
        "foreign-sigbus" => {
            let registry = Registry::builder().worker_id(WorkerId::new("1").unwrap()).build().unwrap();
            registry.counter(Opts::new("c_total", "C.")).unwrap().inc();
            let file = tempfile::tempfile().unwrap();
            file.set_len(64 * 1024).unwrap();
            #[allow(unsafe_code, clippy::disallowed_methods)] // a mapping that is not the crate's
            // SAFETY: a private temporary file only this process knows; the mapping is
            // written below after the file is shrunk, on purpose, to raise SIGBUS.
            let mut map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
            file.set_len(0).unwrap();
            map[32 * 1024] = 1;
            println!("still alive after a foreign SIGBUS");
        }
        // Sends itself a SIGBUS that claims to be a hardware memory error
        // (BUS_MCEERR_AR) at an address inside its counter file's mapping: not a
        // truncation, so it must take the default action (reset first, as in
        // "raise-sigbus").
        "fake-memory-error" => {
            default_sigbus_action();
            let registry = Registry::builder().worker_id(WorkerId::new("1").unwrap()).build().unwrap();
            let counter = registry.counter(Opts::new("c_total", "C.")).unwrap();
            counter.inc();
            let maps = fs::read_to_string("/proc/self/maps").unwrap();
            let line = maps
                .lines()
                .find(|l| l.contains("counter_1.db"))
                .unwrap_or_else(|| panic!("the counter file is not mapped: {maps}"));
            let start = usize::from_str_radix(line.split('-').next().unwrap(), 16).unwrap();
            send_self_sigbus(libc::BUS_MCEERR_AR, start + 16);
            println!("still alive after a memory error; the counter reads {}", counter.get());
        }
        // Raises SIGBUS as `kill -BUS` would, with a registry's mappings guarded, in a
        // process whose SIGBUS action was the default (the Rust runtime installs its
        // own handler, which would swallow the first one: reset it first).
        "raise-sigbus" => {
            default_sigbus_action();
            let registry = Registry::builder().worker_id(WorkerId::new("1").unwrap()).build().unwrap();
            registry.counter(Opts::new("c_total", "C.")).unwrap().inc();
            nix::sys::signal::raise(nix::sys::signal::Signal::SIGBUS).unwrap();
            println!("still alive after kill -BUS");
        }
        // Truncates its own counter file, then counts: with the guard off ($HOW: the
        // environment variable, or the builder option) that is a SIGBUS.
        "unguarded-truncation" => {
            let mut builder = Registry::builder().worker_id(WorkerId::new("1").unwrap());
            if std::env::var("HOW").unwrap() == "builder" {
                builder = builder.sigbus_guard(false);
            }
            let registry = builder.build().unwrap();
            let counter = registry.counter(Opts::new("c_total", "C.")).unwrap();
            counter.inc();
            let dir = std::env::var("PROMETHEUS_MULTIPROC_DIR").unwrap();
            File::options().write(true).open(Path::new(&dir).join("counter_1.db")).unwrap().set_len(0).unwrap();
            counter.inc();
            println!("still alive after writing to a truncated file");
        }
        // Grows its counter file past its first mapping, truncates it, counts through a
        // series placed in the first mapping, then asks for a new series.
        "truncate-under-old-mapping" => {
            let registry = Registry::builder().worker_id(WorkerId::new("1").unwrap()).build().unwrap();
            let family = registry.counter_family(Opts::new("c_total", "C."), &["k"]).unwrap();
            let first = family.get(&["first"]).unwrap();
            first.inc();
            let long = "x".repeat(200);
            for i in 0..2000 {
                family.get(&[&format!("{long}{i}")]).unwrap();
            }
            let dir = std::env::var("PROMETHEUS_MULTIPROC_DIR").unwrap();
            let path = Path::new(&dir).join("counter_1.db");
            assert!(fs::metadata(&path).unwrap().len() > 64 * 1024, "the file grew past its first mapping");
            File::options().write(true).open(&path).unwrap().set_len(0).unwrap();
            first.inc(); // meets the missing page through the first mapping
            match family.get(&["after"]) {
                Err(err) => println!("survived; a new series: {:?}: {err}", err.kind()),
                Ok(_) => println!("survived; a new series was created in a truncated file"),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Puts back SIGBUS's default action (the Rust runtime installs a handler of its own).
#[allow(unsafe_code)]
fn default_sigbus_action() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_DFL is a valid disposition for SIGBUS; no handler is being replaced
    // while it runs (the process has one thread and has not faulted).
    unsafe { signal(Signal::SIGBUS, SigHandler::SigDfl) }.unwrap();
}

/// Sends this thread a SIGBUS whose `siginfo` says `code` at `addr`, as the kernel
/// would for a fault (a process may send itself any `si_code`).
#[allow(unsafe_code)]
fn send_self_sigbus(code: i32, addr: usize) {
    // SAFETY: an all-zero `siginfo_t` is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    info.si_signo = libc::SIGBUS;
    info.si_code = code;
    // `si_addr` is the first field of the union, which follows the three `int`s
    // (padded to pointer alignment) on Linux's 64-bit targets.
    let offset = std::mem::size_of::<usize>().max(3 * 4).next_multiple_of(std::mem::align_of::<usize>());
    let info_ptr = std::ptr::from_mut(&mut info).cast::<u8>();
    // SAFETY: `offset + 8` lies within the 128-byte `siginfo_t`, and `write_unaligned`
    // needs no alignment.
    unsafe { info_ptr.wrapping_add(offset).cast::<usize>().write_unaligned(addr) };
    let (pid, tid) = (std::process::id(), nix::unistd::gettid().as_raw());
    // SAFETY: the pointer is to a valid `siginfo_t` for the duration of the call;
    // rt_tgsigqueueinfo(2) sends it to this thread of this process.
    let rc =
        unsafe { libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, libc::SIGBUS, &info as *const libc::siginfo_t) };
    assert_eq!(rc, 0, "rt_tgsigqueueinfo: {}", std::io::Error::last_os_error());
}

/// Runs `role` and expects it to die of SIGBUS.
fn expect_sigbus_death(role: &str, env: &[(&str, &str)]) -> Result<(), Failed> {
    use std::os::unix::process::ExitStatusExt;
    let dir = TestDir::new();
    let mut cmd = role_command(role, dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    if out.status.signal() != Some(libc::SIGBUS) {
        return Err(format!(
            "{role} {env:?}: expected death by SIGBUS, got {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

fn a_hardware_memory_error_inside_a_metrics_mapping_still_kills_the_process() -> Result<(), Failed> {
    expect_sigbus_death("fake-memory-error", &[])
}

fn a_sigbus_sent_by_kill_still_kills_the_process() -> Result<(), Failed> {
    expect_sigbus_death("raise-sigbus", &[])
}

fn with_the_guard_turned_off_a_truncated_file_kills_as_without_the_crate() -> Result<(), Failed> {
    expect_sigbus_death("unguarded-truncation", &[("HOW", "builder")])?;
    for off in ["off", "0", "false"] {
        expect_sigbus_death("unguarded-truncation", &[("HOW", "env"), ("PROMETHEUS_MULTIPROC_SIGBUS_GUARD", off)])?;
    }
    // And with the guard on, the same writer lives.
    let dir = TestDir::new();
    let out = role_command("unguarded-truncation", dir.path()).env("HOW", "env").output()?;
    if !out.status.success() {
        return Err(format!("with the guard on the writer must live: {}", out.status).into());
    }
    Ok(())
}

fn truncation_met_through_an_older_mapping_of_a_grown_file_is_noticed() -> Result<(), Failed> {
    let dir = TestDir::new();
    let out = role_command("truncate-under-old-mapping", dir.path()).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains("survived; a new series: CorruptFile") {
        return Err(format!("the writer must survive and refuse new series: {}: {stdout:?}", out.status).into());
    }
    Ok(())
}

fn a_file_truncated_by_another_process_kills_neither_writer_nor_scraper() -> Result<(), Failed> {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = TestDir::new();
    let mut writer =
        role_command("count-through-truncation", dir.path()).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut out = BufReader::new(writer.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("writer did not get ready: {line:?}").into());
    }
    let collector = Collector::new(dir.path())?;
    if !collector.collect()?.skipped.is_empty() {
        return Err("the intact file was skipped".into());
    }
    // Another process truncates the file and extends it again, over and over, while this
    // one scrapes: a scrape that stats the file at full size and then reads it after a
    // truncation touches pages of its mapping beyond the end of the file. The guard
    // turns that SIGBUS into a `truncated` skip; scrape until one has (a few hundred to
    // a few tens of thousands of scrapes here; the bound only stops a broken test).
    let mut truncator =
        role_command("truncate-loop", dir.path()).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut truncator_out = BufReader::new(truncator.stdout.take().unwrap());
    line.clear();
    truncator_out.read_line(&mut line)?;
    if line.trim() != "truncating" {
        return Err(format!("truncator did not start: {line:?}").into());
    }
    let mut seen: std::collections::BTreeMap<&'static str, usize> = Default::default();
    let mut scrapes = 0;
    while !seen.contains_key("truncated") && scrapes < 1_000_000 {
        let scrape = collector.collect()?;
        scrapes += 1;
        for skipped in &scrape.skipped {
            *seen.entry(skipped.reason.as_str()).or_default() += 1;
        }
    }
    drop(truncator.stdin.take());
    let stopped = truncator.wait()?;
    println!("{scrapes} scrapes while another process truncated the file: skips {seen:?}");
    if !stopped.success() || !seen.contains_key("truncated") {
        return Err(format!("no scrape read a truncated mapping ({scrapes} scrapes, truncator {stopped})").into());
    }
    // The file stays truncated: the writer goes on with its pages gone.
    File::options().write(true).open(dir.path().join("counter_1.db"))?.set_len(0)?;
    let scrape = collector.collect()?;
    if scrape.skipped.len() != 1 || scrape.skipped[0].reason != SkipReason::Empty {
        return Err(format!("expected the emptied file to be skipped as empty: {:?}", scrape.skipped).into());
    }
    writeln!(writer.stdin.as_mut().unwrap())?;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest)?;
    let status = writer.wait()?;
    if !status.success() || !rest.contains("survived; a new series: CorruptFile") || !rest.contains("truncated") {
        return Err(format!("the writer must survive and refuse new series: {status}: {rest:?}").into());
    }
    Ok(())
}

fn a_sigbus_outside_metrics_mappings_still_kills_the_process() -> Result<(), Failed> {
    use std::os::unix::process::ExitStatusExt;
    let dir = TestDir::new();
    let out = role_command("foreign-sigbus", dir.path()).output()?;
    if out.status.signal() != Some(libc::SIGBUS) {
        return Err(
            format!("expected death by SIGBUS, got {}: {}", out.status, String::from_utf8_lossy(&out.stdout)).into()
        );
    }
    Ok(())
}

/// Creates files in a child with `umask` (and `mode` if given); returns the mode bits
/// of every file in the directory, by name.
fn modes_created_under(umask: u32, mode: Option<u32>) -> Result<Vec<(String, u32)>, Failed> {
    let dir = TestDir::new();
    let mut cmd = role_command("create-files", dir.path());
    cmd.env("UMASK", format!("{umask:o}"));
    if let Some(mode) = mode {
        cmd.env("MODE", format!("{mode:o}"));
    }
    let out = cmd.output()?;
    if !out.status.success() || out.stdout != b"ok\n" {
        return Err(format!("child failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr)).into());
    }
    let mut modes = Vec::new();
    for entry in fs::read_dir(dir.path())? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        modes.push((name, entry.metadata()?.mode() & 0o7777));
    }
    modes.sort();
    Ok(modes)
}

const CREATED: [&str; 6] =
    ["counter_1.db", "gauge_livesum_1.db", "gauge_mostrecent_1.db", "histogram_1.db", "summary_1.db", "writer_1.lock"];

fn expect_modes(umask: u32, mode: Option<u32>, want: u32) -> Result<(), Failed> {
    let got = modes_created_under(umask, mode)?;
    let want: Vec<(String, u32)> = CREATED.iter().map(|n| (n.to_string(), want)).collect();
    expect_eq(&format!("modes under umask {umask:03o} with file_mode {:?}", mode.map(|m| format!("{m:o}"))), got, want)
}

/// Default `0o600` under a permissive, a typical and a restrictive umask; and no other
/// file (no temporary) is left.
fn files_are_created_0600_whatever_the_umask() -> Result<(), Failed> {
    for umask in [0o000, 0o022, 0o077] {
        expect_modes(umask, None, 0o600)?;
    }
    Ok(())
}

/// `file_mode(0o640)` (a scraper in the writers' group) is what every file gets, even
/// under a umask that would remove the group bits.
fn configured_file_mode_is_applied_whatever_the_umask() -> Result<(), Failed> {
    for umask in [0o000, 0o022, 0o077] {
        expect_modes(umask, Some(0o640), 0o640)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Directory permissions

/// A world-writable directory without the sticky bit lets any local user replace or
/// remove the files: the writer warns, naming the directory. With the sticky bit, or
/// without world write, it does not.
fn world_writable_dir_without_sticky_bit_is_warned_about() -> Result<(), Failed> {
    let open = TestDir::new();
    let sticky = TestDir::new();
    let private = TestDir::new();
    fs::set_permissions(open.path(), fs::Permissions::from_mode(0o777))?;
    fs::set_permissions(sticky.path(), fs::Permissions::from_mode(0o1777))?;
    fs::set_permissions(private.path(), fs::Permissions::from_mode(0o755))?;
    for dir in [&open, &sticky, &private] {
        registry(dir.path(), "1")?;
    }
    let warnings = warnings_about(open.path());
    expect_eq("warnings about the world-writable directory", warnings.len(), 1)?;
    check(
        &format!("the warning says why: {}", warnings[0]),
        warnings[0].starts_with("WARN") && warnings[0].contains("world-writable") && warnings[0].contains("sticky"),
    )?;
    expect_eq("warnings about the sticky directory", warnings_about(sticky.path()), vec![])?;
    expect_eq("warnings about the private directory", warnings_about(private.path()), vec![])
}

// ---------------------------------------------------------------------------------
// Hard links

/// A hard link is a name of the same inode: it cannot be told from a file a writer
/// created, so a hard link planted in the directory is read like any file. Planting one
/// needs write access to the directory, and, with `fs.protected_hardlinks = 1` (the
/// default of current Linux distributions), ownership of the target or read and write
/// access to it: it only exposes what the planter could already read, and only if it is
/// a valid `.db` file.
fn hard_link_named_db_is_read_like_any_file() -> Result<(), Failed> {
    let dir = TestDir::new();
    let outside = TestDir::new();
    fs::write(dir.path().join("counter_0.db"), counter_file("mine", 1.0))?;
    fs::write(outside.path().join("elsewhere.db"), counter_file("linked", 3.0))?;
    fs::write(outside.path().join("notes.txt"), b"not a db file\n")?;
    fs::hard_link(outside.path().join("elsewhere.db"), dir.path().join("counter_2.db"))?;
    fs::hard_link(outside.path().join("notes.txt"), dir.path().join("counter_3.db"))?;
    let scrape = scrape_within_10s(dir.path())?;
    let text = text(&scrape);
    check(&format!("the linked file is read:\n{text}"), text.contains("linked_total{a=\"x\"} 3.0\n"))?;
    check("ours is read", text.contains("mine_total{a=\"x\"} 1.0\n"))?;
    expect_eq("skipped (the text file)", scrape.skipped.len(), 1)?;
    check("as corrupt", matches!(scrape.skipped[0].reason, SkipReason::Corrupt(_)))
}

/// A writer whose file name is a planted hard link refuses it (`NotARegularFile`: our
/// files have exactly one name), whatever the linked file holds: a valid `.db` file, an
/// empty one, or text. None of them is changed in any way (bytes and mtime), so a link
/// can never make a writer write outside the directory.
fn hard_link_at_a_writers_file_name_is_never_written_through() -> Result<(), Failed> {
    let dir = TestDir::new();
    let outside = TestDir::new();
    let db = Victim::new(outside.path(), "elsewhere.db", &counter_file("linked", 3.0));
    let empty = Victim::new(outside.path(), "empty", b"");
    let text = Victim::new(outside.path(), "notes.txt", b"precious text, not a db file\n");
    fs::hard_link(&db.path, dir.path().join("counter_4.db"))?;
    fs::hard_link(&empty.path, dir.path().join("summary_4.db"))?;
    fs::hard_link(&text.path, dir.path().join("histogram_4.db"))?;

    let registry = registry(dir.path(), "4")?;
    for err in [
        registry.counter(Opts::new("c_total", "C.")).map(|_| ()).unwrap_err(),
        registry.summary(Opts::new("s", "S.")).map(|_| ()).unwrap_err(),
        registry.histogram(Opts::new("lat", "L."), &[1.0]).map(|_| ()).unwrap_err(),
    ] {
        expect_eq("kind", err.kind(), ErrorKind::NotARegularFile)?;
        check(&format!("the error says why: {err}"), err.to_string().contains("hard links"))?;
    }
    db.untouched()?;
    empty.untouched()?;
    text.untouched()
}
