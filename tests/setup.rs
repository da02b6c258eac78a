//! Setting a writer up: the directory and the worker ID from the environment or from
//! code, and the clear error for every way that can go wrong. The environment is read
//! in child processes (this binary re-run in a role), never changed in the harness.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use libtest_mimic::{Failed, Trial};
use prometheus_multiproc::{Opts, Registry};
use support::{ROLE, TestDir};

fn main() {
    let tests = vec![
        Trial::test("unset_directory_is_a_dir_not_set_error_naming_the_variable", unset_directory),
        Trial::test("missing_directory_is_an_error_naming_the_path", missing_directory),
        Trial::test("a_file_as_directory_is_an_error_naming_the_path", file_as_directory),
        Trial::test("unwritable_directory_is_an_error_naming_the_path", unwritable_directory),
        Trial::test("deprecated_lower_case_variable_works_with_a_warning", lower_case_variable),
        Trial::test("upper_case_variable_wins_over_the_lower_case_one", upper_case_wins),
        Trial::test("worker_id_from_the_environment_names_the_files", worker_id_from_env),
        Trial::test("invalid_worker_id_in_the_environment_fails_at_build", invalid_worker_id_from_env),
        Trial::test("worker_id_given_in_code_overrides_the_environment", worker_id_in_code_wins),
    ];
    support::main_with_roles(run_role, tests)
}

/// Prints log records to stderr, so that the parent sees warnings.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        eprintln!("{} {}", record.level(), record.args());
    }
    fn flush(&self) {}
}

fn run_role(role: &str) {
    log::set_logger(&StderrLog).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    match role {
        // Builds a registry from the environment alone, writes one counter, and prints
        // "ok" and the files, or "error KIND: MESSAGE".
        "build" => match Registry::from_env() {
            Ok(registry) => {
                registry.counter(Opts::new("setup_total", "Setup.")).unwrap().inc();
                let files: Vec<String> = registry.files().iter().map(|p| p.display().to_string()).collect();
                println!("ok {}", files.join(" "));
            }
            Err(e) => println!("error {:?}: {e}", e.kind()),
        },
        // As "build", with the worker ID "code-1" given in code.
        "build-with-id" => {
            let id = prometheus_multiproc::WorkerId::new("code-1").unwrap();
            let registry = Registry::builder().worker_id(id).build().unwrap();
            registry.counter(Opts::new("setup_total", "Setup.")).unwrap().inc();
            println!("ok {}", registry.files()[0].display());
        }
        other => panic!("unknown role {other}"),
    }
}

/// This binary in `role` with exactly the given metrics variables set.
fn role(role: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, role)
        .env_remove("PROMETHEUS_MULTIPROC_DIR")
        .env_remove("prometheus_multiproc_dir")
        .env_remove("PROMETHEUS_MULTIPROC_WORKER_ID");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn stdout(out: &Output) -> Result<String, Failed> {
    if !out.status.success() {
        return Err(format!("child failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn expect_prefix(got: &str, prefix: &str, mentions: &[&str]) -> Result<(), Failed> {
    if !got.starts_with(prefix) {
        return Err(format!("expected {prefix:?}…, got {got:?}").into());
    }
    for m in mentions {
        if !got.contains(m) {
            return Err(format!("expected the message to mention {m:?}: {got:?}").into());
        }
    }
    Ok(())
}

fn unset_directory() -> Result<(), Failed> {
    let got = stdout(&role("build", &[]).output()?)?;
    expect_prefix(&got, "error DirNotSet", &["PROMETHEUS_MULTIPROC_DIR"])?;
    let empty = stdout(&role("build", &[("PROMETHEUS_MULTIPROC_DIR", "")]).output()?)?;
    expect_prefix(&empty, "error DirNotSet", &[])
}

fn missing_directory() -> Result<(), Failed> {
    let dir = TestDir::new();
    let missing = dir.path().join("not-there");
    let got = stdout(&role("build", &[("PROMETHEUS_MULTIPROC_DIR", missing.to_str().unwrap())]).output()?)?;
    expect_prefix(&got, "error NotADirectory", &[missing.to_str().unwrap(), "an existing directory"])
}

fn file_as_directory() -> Result<(), Failed> {
    let dir = TestDir::new();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x")?;
    let got = stdout(&role("build", &[("PROMETHEUS_MULTIPROC_DIR", file.to_str().unwrap())]).output()?)?;
    expect_prefix(&got, "error NotADirectory", &[file.to_str().unwrap(), "a directory"])
}

fn unwritable_directory() -> Result<(), Failed> {
    let dir = TestDir::new();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555))?;
    let cmd = role("build", &[("PROMETHEUS_MULTIPROC_DIR", dir.path().to_str().unwrap())]);
    // Files we create are owned by our effective user: root when the tests run as root.
    if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(dir.path())?) == 0 {
        // Root writes anywhere: check as nobody (the directory's parent is 0700 root's
        // temp dir, so search the directory through a world-searchable parent).
        let parent = TestDir::new();
        std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755))?;
        let inner = parent.path().join("metrics");
        std::fs::create_dir(&inner)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o555))?;
        let mut wrapped = Command::new("setpriv");
        wrapped
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(std::env::current_exe().unwrap())
            .env(ROLE, "build")
            .env_remove("prometheus_multiproc_dir")
            .env_remove("PROMETHEUS_MULTIPROC_WORKER_ID")
            .env("PROMETHEUS_MULTIPROC_DIR", &inner);
        let got = stdout(&wrapped.output()?)?;
        return expect_prefix(&got, "error DirNotWritable", &[inner.to_str().unwrap(), "write"]);
    }
    let got = stdout(&{ cmd }.output()?)?;
    expect_prefix(&got, "error DirNotWritable", &[dir.path().to_str().unwrap(), "write"])
}

fn lower_case_variable() -> Result<(), Failed> {
    let dir = TestDir::new();
    let out = role("build", &[("prometheus_multiproc_dir", dir.path().to_str().unwrap())]).output()?;
    let got = stdout(&out)?;
    expect_prefix(&got, "ok ", &[dir.path().to_str().unwrap()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.contains("WARN prometheus_multiproc_dir is deprecated in favour of PROMETHEUS_MULTIPROC_DIR") {
        return Err(format!("no deprecation warning on stderr: {stderr:?}").into());
    }
    Ok(())
}

fn upper_case_wins() -> Result<(), Failed> {
    let (upper, lower) = (TestDir::new(), TestDir::new());
    let out = role(
        "build",
        &[
            ("PROMETHEUS_MULTIPROC_DIR", upper.path().to_str().unwrap()),
            ("prometheus_multiproc_dir", lower.path().to_str().unwrap()),
        ],
    )
    .output()?;
    expect_prefix(&stdout(&out)?, "ok ", &[upper.path().to_str().unwrap()])?;
    if !lower.db_files().is_empty() {
        return Err(format!("wrote into the lower-case directory: {:?}", lower.db_files()).into());
    }
    if String::from_utf8_lossy(&out.stderr).contains("deprecated") {
        return Err("warned about a variable that was not used".into());
    }
    Ok(())
}

fn worker_id_from_env() -> Result<(), Failed> {
    let dir = TestDir::new();
    let env = [("PROMETHEUS_MULTIPROC_DIR", dir.path().to_str().unwrap()), ("PROMETHEUS_MULTIPROC_WORKER_ID", "web-7")];
    expect_prefix(&stdout(&role("build", &env).output()?)?, "ok ", &["counter_web-7.db"])?;
    if dir.db_files() != ["counter_web-7.db"] {
        return Err(format!("files: {:?}", dir.db_files()).into());
    }
    Ok(())
}

fn invalid_worker_id_from_env() -> Result<(), Failed> {
    let dir = TestDir::new();
    for bad in ["w_1", "a/b", "", ".hidden", "0archive-3", "sp ace", &"x".repeat(65)] {
        let env = [("PROMETHEUS_MULTIPROC_DIR", dir.path().to_str().unwrap()), ("PROMETHEUS_MULTIPROC_WORKER_ID", bad)];
        let got = stdout(&role("build", &env).output()?)?;
        // An empty variable means "not set": the pid is used.
        if bad.is_empty() {
            expect_prefix(&got, "ok ", &["counter_"])?;
            continue;
        }
        expect_prefix(&got, "error InvalidWorkerId", &[bad])?;
    }
    if dir.db_files().len() != 1 {
        return Err(format!("an invalid ID created files: {:?}", dir.db_files()).into());
    }
    Ok(())
}

fn worker_id_in_code_wins() -> Result<(), Failed> {
    let dir = TestDir::new();
    let env = [("PROMETHEUS_MULTIPROC_DIR", dir.path().to_str().unwrap()), ("PROMETHEUS_MULTIPROC_WORKER_ID", "env-1")];
    expect_prefix(&stdout(&role("build-with-id", &env).output()?)?, "ok ", &["counter_code-1.db"])
}
