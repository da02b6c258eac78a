//! Helpers shared by the integration tests: a pinned Python prometheus_client in a
//! venv under `target/`, temporary metrics directories, and child processes.
#![allow(dead_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The prometheus_client release every differential test compares against.
pub const PROMETHEUS_CLIENT: &str = "prometheus_client==0.26.0";

/// A venv's python with [`PROMETHEUS_CLIENT`] installed, creating it under
/// `target/tmp/` on first use. Panics (never skips) when it cannot be installed.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-prometheus_client-0.26.0");
        let python = venv.join("bin/python");
        let ready = venv.join(".installed");
        fs::create_dir_all(venv.parent().unwrap()).unwrap();
        // Test binaries may run in parallel (nextest): one installs, the others wait.
        let lock = File::create(venv.with_extension("lock")).unwrap();
        nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map(|guard| {
                if !ready.exists() {
                    let _ = fs::remove_dir_all(&venv);
                    let base = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
                    run(Command::new(&base).args(["-m", "venv"]).arg(&venv), "create the test venv");
                    run(
                        Command::new(&python).args([
                            "-m",
                            "pip",
                            "install",
                            "--quiet",
                            "--disable-pip-version-check",
                            PROMETHEUS_CLIENT,
                        ]),
                        "pip install prometheus_client==0.26.0 into the test venv",
                    );
                    fs::write(&ready, PROMETHEUS_CLIENT).unwrap();
                }
                drop(guard);
            })
            .map_err(|(_, e)| e)
            .expect("lock the test venv");
        python
    })
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot {what}: {e}"));
    assert!(
        out.status.success(),
        "cannot {what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `script` (Python source) with the venv python; returns stdout, panicking with
/// stderr when it fails.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = python_output(script, args);
    assert!(
        out.status.success(),
        "python failed: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python printed UTF-8")
}

/// Runs `script` and returns its whole output, successful or not.
pub fn python_output(script: &str, args: &[&str]) -> Output {
    Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .env_remove("PROMETHEUS_MULTIPROC_DIR")
        .env_remove("prometheus_multiproc_dir")
        .output()
        .expect("run python")
}

/// Python source that merges `sys.argv[1]`'s `*.db` files in sorted order with
/// prometheus_client's own collector and prints `generate_latest` (text) or, with
/// `sys.argv[2] == "om"`, the OpenMetrics exposition.
pub const PY_EXPOSE_SORTED: &str = r#"
import glob, os, sys
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_om
d = sys.argv[1]
files = sorted(glob.glob(os.path.join(d, '*.db')))
class Sorted:
    def collect(self):
        return MultiProcessCollector.merge(files, accumulate=True)
r = CollectorRegistry()
r.register(Sorted())
out = generate_latest_om(r) if len(sys.argv) > 2 and sys.argv[2] == 'om' else generate_latest(r)
sys.stdout.write(out.decode('utf-8'))
"#;

/// Python's text exposition of `dir`, merged in sorted file order.
pub fn python_exposition(dir: &Path) -> String {
    run_python(PY_EXPOSE_SORTED, &[dir.to_str().unwrap()])
}

/// Python's OpenMetrics exposition of `dir`, merged in sorted file order.
pub fn python_openmetrics(dir: &Path) -> String {
    run_python(PY_EXPOSE_SORTED, &[dir.to_str().unwrap(), "om"])
}

/// Python source printing `name{sorted labels} value` for every merged sample of
/// `sys.argv[1]`, one per line, sorted: easy to compare with exact totals.
pub const PY_SAMPLES: &str = r#"
import sys
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
r = CollectorRegistry()
MultiProcessCollector(r, path=sys.argv[1])
lines = []
for fam in r.collect():
    for s in fam.samples:
        labels = ','.join('%s=%s' % (k, s.labels[k]) for k in sorted(s.labels))
        lines.append('%s{%s} %r' % (s.name, labels, s.value))
print('\n'.join(sorted(lines)))
"#;

/// Every sample Python's `MultiProcessCollector` merges from `dir`, as
/// `name{k=v,...} value` lines (value as Python's `repr`).
pub fn python_samples(dir: &Path) -> Vec<String> {
    run_python(PY_SAMPLES, &[dir.to_str().unwrap()]).lines().map(str::to_owned).collect()
}

/// A fresh metrics directory, removed on drop.
pub struct TestDir(tempfile::TempDir);

impl TestDir {
    pub fn new() -> TestDir {
        TestDir(tempfile::Builder::new().prefix("pmp-test-").tempdir().unwrap())
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// The `*.db` file names in the directory, sorted.
    pub fn db_files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".db"))
            .collect();
        names.sort();
        names
    }
}

/// Environment variable that makes a `harness = false` test binary run a worker role
/// instead of its tests.
pub const ROLE: &str = "PMP_TEST_ROLE";

/// A command that re-runs this test binary as a worker in `role`, with `dir` as the
/// metrics directory and no worker ID from the environment.
pub fn role_command(role: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, role).env("PROMETHEUS_MULTIPROC_DIR", dir).env_remove("PROMETHEUS_MULTIPROC_WORKER_ID");
    cmd
}

/// `fork()` in a worker role, which runs single-threaded (no test harness threads).
#[allow(unsafe_code)]
pub fn fork() -> nix::unistd::ForkResult {
    // SAFETY: worker roles run in a freshly spawned process on its main thread and
    // start no threads before forking, so the child is an exact single-threaded copy
    // and may run any code.
    unsafe { nix::unistd::fork() }.expect("fork")
}

/// Every sample of `scrape` in the form of [`python_samples`]: `name{k=v,...} value`
/// with the value as Python's `repr`, sorted.
pub fn samples_of(scrape: &prometheus_multiproc::Scrape) -> Vec<String> {
    let mut lines = Vec::new();
    for family in &scrape.families {
        for sample in &family.samples {
            let mut labels: Vec<(&str, &str)> = sample.labels.iter().map(|(k, v)| (&**k, &**v)).collect();
            labels.sort();
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut value = String::new();
            prometheus_multiproc::format::float::write_python_repr(&mut value, sample.value);
            lines.push(format!("{}{{{}}} {value}", sample.name, labels.join(",")));
        }
    }
    lines.sort();
    lines
}

/// The `main` of a `harness = false` test binary whose worker processes are the
/// binary itself: runs `run_role` and exits when started as a worker (see
/// [`role_command`]), otherwise runs `tests` with libtest's command-line interface.
pub fn main_with_roles(run_role: fn(&str), tests: Vec<libtest_mimic::Trial>) -> ! {
    if let Ok(role) = std::env::var(ROLE) {
        run_role(&role);
        std::process::exit(0);
    }
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), tests).exit()
}

/// Mounts a tmpfs with `options` (e.g. `size=256k,mode=0700`) on `dir`, in a mount
/// namespace private to this process and its children, so that a full disk can be
/// tested without touching the machine's mounts. As root, a new mount namespace; as
/// another user, a new user namespace too, in which that user is root (unprivileged
/// user namespaces, on by default on current kernels). Must be called while the
/// process has one thread. Panics, loudly and never skipping, when the kernel refuses.
pub fn mount_private_tmpfs(dir: &Path, options: &str) {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    let refused = |what: &str, e: nix::Error| -> ! {
        panic!(
            "THE FULL-DISK TEST CANNOT RUN: {what} was refused ({e}); it needs root (CAP_SYS_ADMIN) or \
             unprivileged user namespaces (sysctl user.max_user_namespaces > 0)"
        )
    };
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    if uid.is_root() {
        unshare(CloneFlags::CLONE_NEWNS).unwrap_or_else(|e| refused("unshare(CLONE_NEWNS)", e));
    } else {
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
            .unwrap_or_else(|e| refused("unshare(CLONE_NEWUSER | CLONE_NEWNS)", e));
        // Be root in the new namespace, as our own user outside it.
        fs::write("/proc/self/setgroups", "deny").expect("deny setgroups in the user namespace");
        fs::write("/proc/self/uid_map", format!("0 {uid} 1")).expect("map our uid in the user namespace");
        fs::write("/proc/self/gid_map", format!("0 {gid} 1")).expect("map our gid in the user namespace");
    }
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .unwrap_or_else(|e| refused("making mounts private", e));
    mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::empty(), Some(options))
        .unwrap_or_else(|e| refused("mounting a tmpfs", e));
}
