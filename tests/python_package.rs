//! The Python package (`python/`) in the one test command: builds it with maturin into
//! a virtual environment under `target/` (pinned tools from
//! `python/tests/requirements.txt`), then runs its pytest suite (`python/tests/`):
//! differential tests against prometheus_client 0.26.0, the corrupt-file corpus, real
//! gunicorn and uvicorn servers, the command line.
//!
//! Nothing is ever skipped: a tool that cannot be installed, a build that fails, or a
//! skipped pytest test fails this test, loudly. pytest's summary is printed.
//!
//! This binary is also the suite's Rust writer: with `PMP_PY_ROLE=rust-writer` it
//! writes a few metrics through the crate's `Registry` and waits (the mixed-directory
//! test of `python/tests/test_writer_servers.py` starts it through
//! `$PMP_RUST_WRITER`, which is set to this binary's path).
//!
//! The package is built with its own `CARGO_TARGET_DIR` (`target/python-build`), so
//! the nested cargo never waits on the build lock of the `cargo test` running this.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("CARGO_TARGET_TMPDIR is target/tmp").to_path_buf()
}

/// Runs `cmd`, printing what it does; panics with its output when it fails.
fn run(cmd: &mut Command, what: &str) -> String {
    eprintln!("python_package: {what}");
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot {what}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "cannot {what}: {}\n{text}", out.status);
    text
}

/// The venv with the pinned requirements, (re)created when the requirements change.
fn venv() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-package-venv");
    let requirements = root().join("python/tests/requirements.txt");
    let wanted = fs::read_to_string(&requirements).expect("read python/tests/requirements.txt");
    let stamp = venv.join(".requirements");
    fs::create_dir_all(venv.parent().unwrap()).unwrap();
    // Another test process may be installing it: one installs, the others wait.
    let lock = File::create(venv.with_extension("lock")).unwrap();
    let guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the Python package venv");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let _ = fs::remove_dir_all(&venv);
        let base = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(Command::new(&base).args(["-m", "venv"]).arg(&venv), "create the venv (python3 -m venv)");
        run(
            Command::new(venv.join("bin/python"))
                .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "-r"])
                .arg(&requirements),
            "pip install -r python/tests/requirements.txt",
        );
        fs::write(&stamp, &wanted).unwrap();
    }
    drop(guard);
    venv
}

fn path_with(venv: &Path) -> String {
    format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default())
}

/// The `rust-writer` role: declares the mixed-directory test's metrics with the crate's
/// own handles, writes them, prints `ready` and waits until stdin closes.
fn rust_writer() {
    use prometheus_multiproc::{GaugeMode, Opts, Registry};
    let registry = Registry::from_env().expect("a registry from the environment");
    let requests = registry.counter_family(Opts::new("mixed_requests", "Requests."), &["path"]).unwrap();
    requests.get(&["/"]).unwrap().inc_by(4.0);
    requests.get(&["/rust"]).unwrap().inc();
    registry.gauge(Opts::new("mixed_in_flight", "In flight."), GaugeMode::LiveSum).unwrap().inc_by(2.0);
    registry.gauge(Opts::new("mixed_temperature", "Temperature."), GaugeMode::All).unwrap().set(21.5);
    registry.histogram(Opts::new("mixed_latency_seconds", "Latency."), &[0.1, 1.0]).unwrap().observe(0.5);
    println!("ready {}", registry.worker_id());
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut rest);
}

fn main() -> ExitCode {
    if std::env::var("PMP_PY_ROLE").as_deref() == Ok("rust-writer") {
        rust_writer();
        return ExitCode::SUCCESS;
    }
    // `cargo test --test python_package -- --list` and filters: one test, `pytest`.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("pytest: test");
        return ExitCode::SUCCESS;
    }
    if let Some(filter) = args.iter().find(|a| !a.starts_with('-'))
        && !"pytest".contains(filter.as_str())
    {
        return ExitCode::SUCCESS;
    }
    let venv = venv();
    let python = venv.join("bin/python");
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
                "--no-build-isolation",
                "--no-deps",
                "--force-reinstall",
            ])
            .arg(root().join("python"))
            .env("PATH", path_with(&venv))
            .env("CARGO_TARGET_DIR", target_dir().join("python-build")),
        "build and install the package (pip install ./python, maturin, release)",
    );
    eprintln!("python_package: pytest python/tests");
    let out = Command::new(&python)
        .args(["-m", "pytest", "-p", "no:cacheprovider", "-ra", "python/tests"])
        .current_dir(root())
        .env("PATH", path_with(&venv))
        .env("PMP_RUST_WRITER", std::env::current_exe().expect("this test binary's path"))
        .env_remove("PROMETHEUS_MULTIPROC_DIR")
        .env_remove("prometheus_multiproc_dir")
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let summary = stdout.lines().last().unwrap_or("");
    if !out.status.success() {
        eprintln!("python_package: pytest FAILED ({})", out.status);
        return ExitCode::FAILURE;
    }
    if summary.contains("skipped") || summary.contains("xfail") || summary.contains("deselected") {
        eprintln!("python_package: pytest left tests out, which this suite never allows: {summary}");
        return ExitCode::FAILURE;
    }
    eprintln!("python_package: pytest passed: {summary}");
    ExitCode::SUCCESS
}
