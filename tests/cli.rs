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
