//! The write API's refusals: what a handle does with an amount it must refuse, and
//! which declarations a registry refuses, as prometheus_client refuses them.

mod support;

use prometheus_multiproc::{Counter, ErrorKind, GaugeMode, Opts, Registry, WorkerId};
use support::TestDir;

fn registry(dir: &TestDir) -> Registry {
    Registry::builder().dir(dir.path()).worker_id(WorkerId::new("api").unwrap()).build().unwrap()
}

#[test]
fn counter_refuses_negative_and_nan_amounts_and_keeps_its_value() {
    let dir = TestDir::new();
    let c = registry(&dir).counter(Opts::new("c_total", "C.")).unwrap();
    c.inc_by(2.5);
    for bad in [-1.0, -0.5, f64::NEG_INFINITY, f64::NAN] {
        c.inc_by(bad);
        let err = c.try_inc_by(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NegativeIncrement, "{bad}");
        assert!(err.to_string().contains(">= 0"), "{err}");
    }
    assert_eq!(c.get(), 2.5);
    c.try_inc_by(0.0).unwrap();
    c.try_inc_by(f64::INFINITY).unwrap();
    assert_eq!(c.get(), f64::INFINITY);
}

#[test]
fn mostrecent_gauges_refuse_inc_and_dec_and_keep_their_value() {
    let dir = TestDir::new();
    let r = registry(&dir);
    for mode in [GaugeMode::MostRecent, GaugeMode::LiveMostRecent] {
        let g = r.gauge(Opts::new(format!("g_{}", mode.as_str()), "G."), mode).unwrap();
        g.set(4.0);
        g.inc();
        g.dec();
        g.inc_by(3.0);
        g.dec_by(3.0);
        let err = g.try_inc_by(1.0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ModeForbids);
        assert!(err.to_string().contains(mode.as_str()), "{err}");
        assert_eq!(g.get(), 4.0, "{mode:?}");
    }
    for mode in GaugeMode::ALL.into_iter().filter(|m| !m.is_most_recent()) {
        let g = r.gauge(Opts::new(format!("h_{}", mode.as_str()), "G."), mode).unwrap();
        g.inc();
        g.inc_by(2.0);
        g.dec();
        g.try_inc_by(1.0).unwrap();
        assert_eq!(g.get(), 3.0, "{mode:?}");
    }
}

#[test]
fn set_to_current_time_stores_the_unix_time() {
    let dir = TestDir::new();
    let g = registry(&dir).gauge(Opts::new("last_run", "Last run."), GaugeMode::MostRecent).unwrap();
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    g.set_to_current_time();
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((before..=after).contains(&g.get()), "{before} <= {} <= {after}", g.get());
}

#[test]
fn declaring_the_same_metric_again_hands_out_the_same_family() {
    let dir = TestDir::new();
    let r = registry(&dir);
    let a = r.counter_family(Opts::new("req_total", "Requests."), &["code"]).unwrap();
    let b = r.counter_family(Opts::new("req_total", "Requests."), &["code"]).unwrap();
    a.get(&["200"]).unwrap().inc();
    b.with(&["200"], Counter::inc).unwrap();
    assert_eq!(a.get(&["200"]).unwrap().get(), 2.0);
    // `req` and `req_total` are one counter name, as in Python.
    r.counter_family(Opts::new("req", "Requests."), &["code"]).unwrap().get(&["200"]).unwrap().inc();
    assert_eq!(a.get(&["200"]).unwrap().get(), 3.0);
}

#[test]
fn a_name_declared_again_differently_is_a_conflict() {
    let dir = TestDir::new();
    let r = registry(&dir);
    r.counter_family(Opts::new("x_total", "X."), &["a"]).unwrap();
    r.gauge(Opts::new("g", "G."), GaugeMode::Sum).unwrap();
    let conflicts = [
        r.gauge(Opts::new("x", "X."), GaugeMode::All).map(drop),
        r.counter_family(Opts::new("x_total", "X."), &["b"]).map(drop),
        r.counter_family(Opts::new("x_total", "X."), &["a", "b"]).map(drop),
        r.counter_family(Opts::new("x_total", "Other help."), &["a"]).map(drop),
        r.gauge(Opts::new("g", "G."), GaugeMode::Max).map(drop),
        r.histogram(Opts::new("g", "G."), &[1.0]).map(drop),
        r.summary(Opts::new("g", "G.")).map(drop),
    ];
    for (i, result) in conflicts.into_iter().enumerate() {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "case {i}: {err}");
        assert!(err.to_string().contains("earlier declaration"), "case {i}: {err}");
    }
}

#[test]
fn a_family_whose_sample_names_another_takes_is_a_conflict() {
    let dir = TestDir::new();
    let r = registry(&dir);
    r.counter(Opts::new("x", "X.")).unwrap(); // samples x_total (and x_created in Python)
    r.histogram(Opts::new("h", "H."), &[1.0]).unwrap(); // h_bucket, h_sum, h_count
    r.summary(Opts::new("s", "S.")).unwrap(); // s_sum, s_count
    r.gauge(Opts::new("plain", "P."), GaugeMode::Sum).unwrap();
    let cases = [
        ("x_total", r.gauge(Opts::new("x_total", "X."), GaugeMode::Sum).map(drop)),
        ("x_created", r.gauge(Opts::new("x_created", "X."), GaugeMode::Sum).map(drop)),
        ("h_count", r.counter(Opts::new("h_count", "H.")).map(drop)),
        ("h_bucket", r.summary(Opts::new("h_bucket", "H.")).map(drop)),
        ("s_sum", r.gauge(Opts::new("s_sum", "S."), GaugeMode::Max).map(drop)),
    ];
    for (name, result) in cases {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{name}: {err}");
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
    // `plain` (a gauge) and a counter `plain_total` clash too: the counter's family is
    // `plain`.
    let err = r.counter(Opts::new("plain_total", "P.")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    // A summary `s_sum_of` next to `s` is fine: no shared name.
    r.summary(Opts::new("s_sum_of", "S.")).unwrap();
}

#[test]
fn invalid_names_and_reserved_labels_fail_at_declaration() {
    let dir = TestDir::new();
    let r = registry(&dir);
    assert_eq!(r.counter(Opts::new("", "E.")).unwrap_err().kind(), ErrorKind::InvalidMetricName);
    assert_eq!(r.counter(Opts::new("1abc", "E.")).unwrap_err().kind(), ErrorKind::InvalidMetricName);
    assert_eq!(r.counter(Opts::new("a-b", "E.")).unwrap_err().kind(), ErrorKind::InvalidMetricName);
    let label = |res: prometheus_multiproc::Result<()>| res.unwrap_err().kind();
    assert_eq!(label(r.histogram_family(Opts::new("h", "H."), &[1.0], &["le"]).map(drop)), ErrorKind::InvalidLabelName);
    assert_eq!(label(r.summary_family(Opts::new("s", "S."), &["quantile"]).map(drop)), ErrorKind::InvalidLabelName);
    assert_eq!(
        label(r.gauge_family(Opts::new("g", "G."), GaugeMode::All, &["pid"]).map(drop)),
        ErrorKind::InvalidLabelName
    );
    assert_eq!(label(r.counter_family(Opts::new("c", "C."), &["__x"]).map(drop)), ErrorKind::InvalidLabelName);
    assert_eq!(label(r.counter_family(Opts::new("c", "C."), &["a", "a"]).map(drop)), ErrorKind::InvalidLabelName);
    assert_eq!(label(r.counter_family(Opts::new("c", "C."), &["a:b"]).map(drop)), ErrorKind::InvalidLabelName);
    // Refused declarations create nothing.
    assert!(dir.db_files().is_empty(), "{:?}", dir.db_files());
    let family = r.counter_family(Opts::new("c", "C."), &["a", "b"]).unwrap();
    assert_eq!(family.get(&["x"]).unwrap_err().kind(), ErrorKind::LabelCount);
    assert_eq!(family.with(&["x", "y", "z"], Counter::inc).unwrap_err().kind(), ErrorKind::LabelCount);
}

#[test]
fn worker_ids_that_break_python_file_names_are_refused() {
    for bad in ["w_1", "a/b", "", ".x", "0archive-1", "é", "a b", &"7".repeat(65)] {
        let err = WorkerId::new(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidWorkerId, "{bad:?}");
        assert!(err.to_string().contains('_'), "the message says why: {err}");
    }
    for good in ["1", "w1", "web-3", "a.b", &"7".repeat(64)] {
        assert_eq!(WorkerId::new(good).unwrap().as_str(), good);
    }
}

#[test]
fn threads_racing_to_create_the_same_children_share_one_series_each() {
    let dir = TestDir::new();
    let r = registry(&dir);
    let family = r.counter_family(Opts::new("race_total", "Race."), &["k"]).unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (family, keys) = (&family, &keys);
            s.spawn(move || {
                for round in 0..50 {
                    for (i, key) in keys.iter().enumerate() {
                        // Half through `get`, half through `with`, in different orders.
                        if (i + t + round) % 2 == 0 {
                            family.get(&[key]).unwrap().inc();
                        } else {
                            family.with(&[key], Counter::inc).unwrap();
                        }
                    }
                }
            });
        }
    });
    for key in &keys {
        assert_eq!(family.get(&[key]).unwrap().get(), 8.0 * 50.0, "{key}");
    }
    let bytes = std::fs::read(dir.path().join("counter_api.db")).unwrap();
    let used = prometheus_multiproc::format::checked_used(&bytes).unwrap();
    assert_eq!(prometheus_multiproc::format::entries(&bytes, used).count(), 200, "one entry per label set");
}

#[test]
fn refused_writes_are_counted_by_reason_in_the_self_metric_and_try_forms_are_not() {
    let dir = TestDir::new();
    let registry = Registry::builder()
        .dir(dir.path())
        .worker_id(WorkerId::new("api").unwrap())
        .self_metrics(true)
        .build()
        .unwrap();
    let c = registry.counter(Opts::new("c_total", "C.")).unwrap();
    let g = registry.gauge(Opts::new("g", "G."), GaugeMode::MostRecent).unwrap();
    for bad in [-1.0, -0.5, f64::NAN] {
        c.inc_by(bad);
        assert!(c.try_inc_by(bad).is_err());
    }
    g.inc();
    g.dec_by(2);
    assert!(g.try_inc_by(1).is_err());
    assert!(g.try_dec_by(1).is_err());
    g.set(7);
    let counts = registry.dropped_series();
    assert!(counts.contains(&("negative_increment", 3)), "{counts:?}");
    assert!(counts.contains(&("inc_on_mostrecent", 2)), "{counts:?}");
    let scrape = prometheus_multiproc::Collector::new(dir.path()).unwrap().collect().unwrap();
    let dropped = |reason| scrape.value("prometheus_multiproc_dropped_series_total", &[("reason", reason)]);
    assert_eq!(dropped("negative_increment"), Some(3.0));
    assert_eq!(dropped("inc_on_mostrecent"), Some(2.0));
    assert_eq!((c.get(), g.get()), (0.0, 7.0), "nothing refused was written");
}
