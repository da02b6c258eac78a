//! The cardinality guard and the dropped-series self-metric.

mod support;

use prometheus_multiproc::{Collector, OVERFLOW_LABEL_VALUE, Opts, Registry, WorkerId, render};
use support::TestDir;

fn registry(dir: &TestDir) -> Registry {
    Registry::builder().dir(dir.path()).worker_id(WorkerId::new("1").unwrap()).self_metrics(true).build().unwrap()
}

fn text(dir: &TestDir) -> String {
    let scrape = Collector::new(dir.path()).unwrap().collect().unwrap();
    String::from_utf8(render(&scrape, None, None).body).unwrap()
}

#[test]
fn family_past_its_limit_hands_out_the_overflow_series() {
    let dir = TestDir::new();
    let registry = registry(&dir);
    let users = registry.counter_family(Opts::new("logins_total", "Logins.").max_series(3), &["user", "site"]).unwrap();
    for i in 0..10 {
        users.get(&[&format!("u{i}"), "a"]).unwrap().inc();
    }
    // A label set created before the limit was reached keeps its own series.
    users.get(&["u0", "a"]).unwrap().inc();
    let overflow = users.get(&[OVERFLOW_LABEL_VALUE, OVERFLOW_LABEL_VALUE]).unwrap();
    assert_eq!(overflow.get(), 7.0, "u3..u9 were counted in the overflow series");
    let text = text(&dir);
    for line in [
        "logins_total{site=\"a\",user=\"u0\"} 2.0",
        "logins_total{site=\"a\",user=\"u1\"} 1.0",
        "logins_total{site=\"a\",user=\"u2\"} 1.0",
        "logins_total{site=\"__overflow__\",user=\"__overflow__\"} 7.0",
        "prometheus_multiproc_dropped_series_total{reason=\"cardinality\"} 7.0",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("u3"), "no series past the limit:\n{text}");
    assert_eq!(registry.dropped_series().iter().find(|(r, _)| *r == "cardinality"), Some(&("cardinality", 7)));
}

#[test]
fn declaring_a_metric_twice_shares_its_family_and_limit() {
    let dir = TestDir::new();
    let registry = registry(&dir);
    let opts = || Opts::new("hits_total", "Hits.").max_series(1);
    let a = registry.counter_family(opts(), &["k"]).unwrap();
    let b = registry.counter_family(opts(), &["k"]).unwrap();
    a.get(&["x"]).unwrap().inc();
    b.get(&["y"]).unwrap().inc(); // past the shared limit of 1
    assert_eq!(b.get(&["x"]).unwrap().get(), 1.0);
    assert_eq!(a.get(&[OVERFLOW_LABEL_VALUE]).unwrap().get(), 1.0);
    let conflict = registry.counter_family(Opts::new("hits_total", "Hits.").max_series(2), &["k"]).unwrap_err();
    assert_eq!(conflict.kind(), prometheus_multiproc::ErrorKind::Conflict);
}

#[test]
fn self_metrics_exist_from_the_start_and_count_nothing_yet() {
    let dir = TestDir::new();
    let _registry = registry(&dir);
    let text = text(&dir);
    for reason in ["no_space", "io", "cardinality", "fork"] {
        let line = format!("prometheus_multiproc_dropped_series_total{{reason=\"{reason}\"}} 0.0");
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
}
