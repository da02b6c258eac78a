//! The `prometheus-multiproc` command: outputs and exit codes.

mod support;

use std::process::{Command, Output};

use prometheus_multiproc::{Collector, GaugeMode, Opts, Registry, WorkerId, render};
use support::TestDir;

fn cli(args: &[&str], dir: Option<&TestDir>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prometheus-multiproc"));
    cmd.args(args).env_remove("PROMETHEUS_MULTIPROC_DIR").env_remove("prometheus_multiproc_dir");
    if let Some(dir) = dir {
        cmd.env("PROMETHEUS_MULTIPROC_DIR", dir.path());
    }
    cmd.output().expect("run prometheus-multiproc")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Two dead writers with a counter and a live gauge, and one more kept alive.
fn scenario(dir: &TestDir) -> Registry {
    for id in ["1", "2"] {
        let r = Registry::builder().dir(dir.path()).worker_id(WorkerId::new(id).unwrap()).build().unwrap();
        r.counter(Opts::new("jobs_total", "Jobs.")).unwrap().inc_by(2.0);
        r.gauge(Opts::new("busy", "Busy."), GaugeMode::LiveSum).unwrap().inc();
    }
    let live = Registry::builder().dir(dir.path()).worker_id(WorkerId::new("3").unwrap()).build().unwrap();
    live.counter(Opts::new("jobs_total", "Jobs.")).unwrap().inc();
    live.gauge(Opts::new("busy", "Busy."), GaugeMode::LiveSum).unwrap().inc();
    live
}

#[test]
fn scrape_prints_what_the_collector_renders() {
    let dir = TestDir::new();
    let _live = scenario(&dir);
    let expected = render(&Collector::new(dir.path()).unwrap().collect().unwrap(), None, None).body;
    let out = cli(&["scrape"], Some(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, expected);
    assert!(stdout(&out).contains("jobs_total 5.0\n") && stdout(&out).contains("busy 1.0\n"), "{}", stdout(&out));
    let om = cli(&["scrape", "--format", "openmetrics", "--dir", dir.path().to_str().unwrap()], None);
    assert!(stdout(&om).ends_with("# EOF\n"));
}

#[test]
fn inspect_shows_liveness_and_what_compaction_would_do() {
    let dir = TestDir::new();
    let _live = scenario(&dir);
    let out = cli(&["inspect", "--json"], Some(&dir));
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |file: &str| json["files"].as_array().unwrap().iter().find(|f| f["file"] == file).unwrap().clone();
    assert_eq!(row("counter_1.db")["liveness"], "dead");
    assert_eq!(row("counter_1.db")["compaction"], "fold");
    assert_eq!(row("gauge_livesum_2.db")["compaction"], "remove");
    assert_eq!(row("counter_3.db")["liveness"], "alive");
    assert_eq!(row("counter_3.db")["compaction"], serde_json::Value::Null);
    let table = stdout(&cli(&["inspect"], Some(&dir)));
    assert!(table.contains("4 compactable"), "{table}");
}

#[test]
fn inspect_lists_dead_writers_leftovers_and_compact_removes_them() {
    let dir = TestDir::new();
    let _live = scenario(&dir);
    // Writer 9 died in its start-up, after taking its ID and while creating a file; a
    // writer 8 left a temporary file and no liveness file (pids above the kernel's
    // largest, 4,194,304: never running).
    drop(Registry::builder().dir(dir.path()).worker_id(WorkerId::new("9").unwrap()).build().unwrap());
    std::fs::write(dir.path().join(".counter_9.db.4194999.tmp"), [0u8; 64]).unwrap();
    std::fs::write(dir.path().join(".counter_8.db.4194998.tmp"), [0u8; 64]).unwrap();
    let out = cli(&["inspect", "--json"], Some(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<&str> = json["leftovers"].as_array().unwrap().iter().map(|l| l["file"].as_str().unwrap()).collect();
    let want =
        [".counter_8.db.4194998.tmp", ".counter_9.db.4194999.tmp", "writer_1.lock", "writer_2.lock", "writer_9.lock"];
    assert_eq!(listed, want);
    let table = stdout(&cli(&["inspect"], Some(&dir)));
    assert!(table.contains("5 liveness or temporary files of dead writers"), "{table}");
    assert!(table.contains("    writer_9.lock  (writer 9, "), "{table}");
    let out = cli(&["compact"], Some(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    for name in want {
        assert!(!dir.path().join(name).exists(), "{name} is still there");
    }
    assert!(dir.path().join("writer_3.lock").exists(), "the live writer's liveness file stays");
    let json: serde_json::Value = serde_json::from_slice(&cli(&["inspect", "--json"], Some(&dir)).stdout).unwrap();
    assert_eq!(json["leftovers"], serde_json::json!([]));
}

#[test]
fn compact_and_mark_dead_keep_the_totals() {
    let dir = TestDir::new();
    let _live = scenario(&dir);
    let before = stdout(&cli(&["scrape"], Some(&dir)));
    let out = cli(&["mark-dead", "1"], Some(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("gauge_livesum_1.db").exists());
    let refused = cli(&["mark-dead", "3"], Some(&dir));
    assert_ne!(refused.status.code(), Some(0), "a live writer is not marked dead without --force");
    let out = cli(&["compact"], Some(&dir));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout(&cli(&["scrape"], Some(&dir))), before);
    assert!(dir.db_files().iter().all(|f| !f.ends_with("_1.db") && !f.ends_with("_2.db")), "{:?}", dir.db_files());
}

#[test]
fn exit_codes_are_2_for_usage_and_1_for_an_unreadable_directory() {
    let usage = cli(&["scrape", "--format", "xml"], None);
    assert_eq!(usage.status.code(), Some(2));
    let unset = cli(&["scrape"], None);
    assert_eq!(unset.status.code(), Some(2), "no directory given: {}", String::from_utf8_lossy(&unset.stderr));
    let missing = cli(&["scrape", "--dir", "/nonexistent/pmp"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/pmp"));
}

#[test]
fn inspect_json_reports_every_field_and_the_problems_of_a_bad_file() {
    let dir = TestDir::new();
    let _live = scenario(&dir);
    std::fs::write(dir.path().join("counter_9.db"), [7u8; 100]).unwrap();
    let out = cli(&["inspect", "--json", "--dir", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["dir"], dir.path().to_str().unwrap());
    let row = |file: &str| json["files"].as_array().unwrap().iter().find(|f| f["file"] == file).unwrap().clone();
    let good = row("gauge_livesum_3.db");
    assert_eq!(good["type"], "gauge");
    assert_eq!(good["mode"], "livesum");
    assert_eq!(good["writer_id"], "3");
    assert_eq!(good["liveness"], "alive");
    assert_eq!(good["families"], 1);
    assert_eq!(good["entries"], 1);
    assert_eq!(good["bytes_allocated"], 65536);
    let used = good["bytes_used"].as_u64().unwrap();
    assert!(used > 8 && used < 200, "{used}");
    assert_eq!(good["problems"], serde_json::json!([]));
    let bad = row("counter_9.db");
    assert_eq!(bad["liveness"], "unknown", "no liveness file: a Python writer, alive until marked dead");
    let problems = bad["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p.as_str().unwrap().contains("`used`")), "{problems:?}");
    assert_eq!(json["files"].as_array().unwrap().len(), 7);
}

#[test]
fn scrape_with_a_corrupt_file_exits_0_and_warns_on_stderr() {
    let dir = TestDir::new();
    let _live = scenario(&dir);
    let before = stdout(&cli(&["scrape"], Some(&dir)));
    std::fs::write(dir.path().join("counter_9.db"), [7u8; 100]).unwrap();
    let out = cli(&["scrape"], Some(&dir));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), before, "the bad file changes nothing else");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: skipped") && stderr.contains("counter_9.db"), "{stderr}");
}

#[test]
fn inspect_and_compact_exit_1_on_a_missing_directory_and_2_on_usage() {
    for cmd in ["inspect", "compact"] {
        let out = cli(&[cmd, "--dir", "/nonexistent/pmp"], None);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pmp"), "{cmd}");
        assert_eq!(cli(&[cmd], None).status.code(), Some(2), "{cmd} without a directory");
        assert_eq!(cli(&[cmd, "--bogus"], None).status.code(), Some(2), "{cmd} with an unknown flag");
    }
}

/// Sends `GET /metrics` to `addr` and returns the status line and body.
fn http_get(addr: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[test]
fn serve_answers_scrapes_compacts_dead_writers_and_stops_on_sigterm() {
    use std::io::BufRead;
    let dir = TestDir::new();
    let live = scenario(&dir);
    let expected = stdout(&cli(&["scrape"], Some(&dir)));
    /// Kills the server if the test fails before stopping it (its inherited stdout
    /// would otherwise keep the test runner waiting).
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_prometheus-multiproc"))
            .args(["serve", "--listen", "127.0.0.1:0", "--compact-interval", "0.05", "--compact-min-dead-files", "1"])
            .env("PROMETHEUS_MULTIPROC_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufReader::new(child.0.stderr.as_mut().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    let addr = url.strip_prefix("http://").and_then(|u| u.strip_suffix("/metrics")).unwrap_or_else(|| panic!("{line}"));
    let (status, body) = http_get(addr);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, expected);
    // mimalloc's huge pages are for the one-shot commands: a long-running server
    // turns them off for itself (src/bin/prometheus-multiproc.rs).
    #[cfg(all(feature = "mimalloc", target_os = "linux"))]
    {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap();
        let thp = status.lines().find_map(|l| l.strip_prefix("THP_enabled:")).map(str::trim);
        assert_eq!(thp, Some("0"), "serve leaves transparent huge pages on:\n{status}");
    }
    // The dead writers 1 and 2 are folded by the server's automatic compaction.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while dir.db_files().iter().any(|f| f.ends_with("_1.db")) {
        assert!(std::time::Instant::now() < deadline, "not compacted: {:?}", dir.db_files());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(dir.db_files().contains(&"counter_0archive-1.db".to_owned()), "{:?}", dir.db_files());
    assert_eq!(http_get(addr).1, expected, "the same totals after compaction");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.0.wait().unwrap().success());
    drop(live);
}

#[test]
fn clear_removes_our_files_and_refuses_while_a_writer_lives() {
    let dir = TestDir::new();
    std::fs::write(dir.path().join("notes.txt"), "keep").unwrap();
    let live = scenario(&dir);
    let refused = cli(&["clear"], Some(&dir));
    assert_eq!(refused.status.code(), Some(1), "a live writer: {}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("writer_3.lock"));
    drop(live);
    // Another test of this process may fork a child (to exec the CLI) at the moment
    // `live` drops: until that child execs, it holds a copy of the liveness file's
    // descriptor, and with it the lock. So `clear` may be refused for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let out = loop {
        let out = cli(&["clear", "--dir", dir.path().to_str().unwrap()], None);
        if out.status.code() == Some(0) || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mut left: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, ["notes.txt"]);
}

#[test]
fn serve_with_process_metrics_shows_each_live_writers_process() {
    use std::io::BufRead;
    let dir = TestDir::new();
    let live = scenario(&dir); // this test process is the live writer "3"
    let mut child = Command::new(env!("CARGO_BIN_EXE_prometheus-multiproc"))
        .args(["serve", "--listen", "127.0.0.1:0", "--process-metrics"])
        .env("PROMETHEUS_MULTIPROC_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.as_mut().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    let addr = url.strip_prefix("http://").and_then(|u| u.strip_suffix("/metrics")).unwrap_or_else(|| panic!("{line}"));
    let (status, body) = http_get(addr);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, "HTTP/1.1 200 OK");
    let rss = body
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes{worker=\"3\"} "))
        .unwrap_or_else(|| panic!("no process metrics for the live writer 3:\n{body}"));
    assert!(rss.parse::<f64>().unwrap() > 0.0, "{rss}");
    assert!(body.contains("process_open_fds{worker=\"3\"}"), "{body}");
    drop(live);
}
