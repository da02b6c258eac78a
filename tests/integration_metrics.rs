//! The `metrics` recorder (feature `metrics`): code written against the `metrics`
//! macros, run in several worker processes, gives exact merged totals (checked through
//! this crate's collector and Python's `MultiProcessCollector`); names, label sets,
//! descriptions, gauge modes and buckets follow the documented rules, and nothing a
//! caller does panics.
//!
//! `harness = false`: this binary re-runs itself as worker processes
//! (`PMP_TEST_ROLE`), each installing the recorder globally. The other tests use
//! `metrics::with_local_recorder`. Without the feature the binary reports one ignored
//! test instead of silently running none: use `cargo test --all-features`.

mod support;

use libtest_mimic::Arguments;

fn main() {
    #[cfg(feature = "metrics")]
    if let Ok(role) = std::env::var(support::ROLE) {
        with_feature::run_role(&role);
        std::process::exit(0);
    }
    let args = Arguments::from_args();
    #[cfg(feature = "metrics")]
    let tests = with_feature::trials();
    #[cfg(not(feature = "metrics"))]
    let tests = vec![
        libtest_mimic::Trial::test("metrics_integration_needs_the_metrics_feature", || Ok(())).with_ignored_flag(true),
    ];
    libtest_mimic::run(&args, tests).exit();
}

#[cfg(feature = "metrics")]
mod with_feature {
    use std::path::Path;
    use std::thread;

    use libtest_mimic::{Failed, Trial};
    use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
    use prometheus_multiproc::integrations::metrics::MultiprocRecorder;
    use prometheus_multiproc::{Collector, ErrorKind, GaugeMode, Registry, render};

    use crate::support::{TestDir, python_samples, role_command};

    const WORKERS: usize = 3;
    const THREADS: usize = 4;
    const ROUNDS: u64 = 500;

    pub fn trials() -> Vec<Trial> {
        vec![
            Trial::test(
                "macros_in_worker_processes_give_exact_totals_in_both_collectors",
                macros_in_worker_processes_give_exact_totals_in_both_collectors,
            ),
            Trial::test(
                "label_order_does_not_matter_and_names_are_sanitised",
                label_order_does_not_matter_and_names_are_sanitised,
            ),
            Trial::test(
                "counter_with_or_without_total_suffix_is_one_family",
                counter_with_or_without_total_suffix_is_one_family,
            ),
            Trial::test(
                "another_label_set_for_a_name_gets_a_noop_handle_and_is_counted",
                another_label_set_for_a_name_gets_a_noop_handle_and_is_counted,
            ),
            Trial::test(
                "reserved_invalid_and_conflicting_names_are_refused",
                reserved_invalid_and_conflicting_names_are_refused,
            ),
            Trial::test(
                "describe_before_first_use_sets_help_and_later_is_ignored",
                describe_before_first_use_sets_help_and_later_is_ignored,
            ),
            Trial::test(
                "gauges_default_to_livesum_and_modes_are_chosen_per_name",
                gauges_default_to_livesum_and_modes_are_chosen_per_name,
            ),
            Trial::test(
                "histograms_use_default_buckets_unless_set_per_name",
                histograms_use_default_buckets_unless_set_per_name,
            ),
            Trial::test("counter_absolute_raises_and_never_lowers", counter_absolute_raises_and_never_lowers),
            Trial::test("builder_refuses_invalid_buckets", builder_refuses_invalid_buckets),
        ]
    }

    /// A worker process: installs the recorder globally and records from `THREADS`
    /// threads through the macros only.
    pub fn run_role(role: &str) {
        assert_eq!(role, "macros-worker", "unknown role");
        let registry = Registry::from_env().expect("PROMETHEUS_MULTIPROC_DIR is set by the parent");
        MultiprocRecorder::builder(registry)
            .buckets_for("job_seconds", &[0.5, 1.0])
            // A total over workers that have exited: `sum` keeps dead workers' values,
            // the default `livesum` (rightly) drops them once they are gone.
            .gauge_mode_for("workers_started", GaugeMode::Sum)
            .build()
            .unwrap()
            .install()
            .expect("first recorder of this process");
        describe_counter!("jobs_total", "Jobs done.");
        gauge!("workers_started").increment(1.0);
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                thread::spawn(|| {
                    let kept = counter!("jobs_total", "queue" => "sms"); // a handle kept on a hot path
                    for _ in 0..ROUNDS {
                        counter!("jobs_total", "queue" => "mail").increment(1);
                        kept.increment(2);
                        histogram!("job_seconds").record(0.25);
                        histogram!("job_seconds").record(0.75);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    fn macros_in_worker_processes_give_exact_totals_in_both_collectors() -> Result<(), Failed> {
        let dir = TestDir::new();
        let children: Vec<_> =
            (0..WORKERS).map(|_| role_command("macros-worker", dir.path()).spawn().expect("spawn worker")).collect();
        for mut child in children {
            assert!(child.wait()?.success(), "a worker failed");
        }
        let per_worker = (THREADS as u64 * ROUNDS) as f64;
        let n = WORKERS as f64 * per_worker;
        assert_eq!(
            python_samples(dir.path()),
            [
                format!("job_seconds_bucket{{le=+Inf}} {:?}", 2.0 * n),
                format!("job_seconds_bucket{{le=0.5}} {n:?}"),
                format!("job_seconds_bucket{{le=1.0}} {:?}", 2.0 * n),
                format!("job_seconds_count{{}} {:?}", 2.0 * n),
                format!("job_seconds_sum{{}} {:?}", n),
                format!("jobs_total{{queue=mail}} {n:?}"),
                format!("jobs_total{{queue=sms}} {:?}", 2.0 * n),
                format!("workers_started{{}} {:?}", WORKERS as f64),
            ]
        );
        let text = scrape(dir.path());
        assert!(text.starts_with("# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\n"), "{text}");
        assert!(text.contains(&format!("jobs_total{{queue=\"mail\"}} {n:?}\n")), "{text}");
        assert!(text.contains(&format!("jobs_total{{queue=\"sms\"}} {:?}\n", 2.0 * n)), "{text}");
        assert!(text.contains(&format!("job_seconds_count {:?}\n", 2.0 * n)), "{text}");
        assert!(text.contains("# TYPE workers_started gauge\nworkers_started 3.0\n"), "{text}");
        Ok(())
    }

    /// This crate's own text exposition of `dir`.
    fn scrape(dir: &Path) -> String {
        let scrape = Collector::new(dir).unwrap().collect().unwrap();
        assert!(scrape.skipped.is_empty(), "{:?}", scrape.skipped);
        String::from_utf8(render(&scrape, None, None).body).unwrap()
    }

    fn recorder(dir: &TestDir) -> MultiprocRecorder {
        MultiprocRecorder::new(Registry::builder().dir(dir.path()).build().unwrap())
    }

    fn label_order_does_not_matter_and_names_are_sanitised() -> Result<(), Failed> {
        let dir = TestDir::new();
        let recorder = recorder(&dir);
        metrics::with_local_recorder(&recorder, || {
            counter!("http.requests", "status-code" => "200", "method" => "GET").increment(1);
            counter!("http.requests", "method" => "GET", "status-code" => "200").increment(2);
            gauge!("9lives").set(9.0);
        });
        assert_eq!(recorder.dropped_registrations(), 0);
        assert_eq!(
            scrape(dir.path()),
            "# HELP http_requests_total \n# TYPE http_requests_total counter\n\
             http_requests_total{method=\"GET\",status_code=\"200\"} 3.0\n\
             # HELP _9lives \n# TYPE _9lives gauge\n_9lives 9.0\n"
        );
        Ok(())
    }

    fn counter_with_or_without_total_suffix_is_one_family() -> Result<(), Failed> {
        let dir = TestDir::new();
        let recorder = recorder(&dir);
        metrics::with_local_recorder(&recorder, || {
            counter!("jobs").increment(1);
            counter!("jobs_total").increment(1);
        });
        assert_eq!(scrape(dir.path()), "# HELP jobs_total \n# TYPE jobs_total counter\njobs_total 2.0\n");
        Ok(())
    }

    fn another_label_set_for_a_name_gets_a_noop_handle_and_is_counted() -> Result<(), Failed> {
        let dir = TestDir::new();
        let recorder = recorder(&dir);
        metrics::with_local_recorder(&recorder, || {
            counter!("c", "a" => "1").increment(1);
            counter!("c", "b" => "1").increment(5);
            counter!("c", "b" => "1").increment(5);
            counter!("c").increment(5);
            counter!("c", "a" => "2").increment(1);
        });
        assert_eq!(recorder.dropped_registrations(), 3);
        assert_eq!(
            scrape(dir.path()),
            "# HELP c_total \n# TYPE c_total counter\nc_total{a=\"1\"} 1.0\nc_total{a=\"2\"} 1.0\n"
        );
        Ok(())
    }

    fn reserved_invalid_and_conflicting_names_are_refused() -> Result<(), Failed> {
        let dir = TestDir::new();
        let recorder = recorder(&dir);
        metrics::with_local_recorder(&recorder, || {
            histogram!("h", "le" => "1").record(1.0); // reserved by histograms
            gauge!("g", "pid" => "1").set(1.0); // reserved by gauges
            counter!("c", "__meta" => "x").increment(1); // reserved by Prometheus
            counter!("d", "a" => "1", "a" => "2").increment(1); // one label twice
            counter!("e", "a.b" => "1", "a_b" => "2").increment(1); // twice once sanitised
            counter!("").increment(1); // no name
            gauge!("x").set(1.0);
            counter!("x").increment(1); // a gauge already
        });
        assert_eq!(recorder.dropped_registrations(), 7);
        assert_eq!(scrape(dir.path()), "# HELP x \n# TYPE x gauge\nx 1.0\n");
        Ok(())
    }

    fn describe_before_first_use_sets_help_and_later_is_ignored() -> Result<(), Failed> {
        let dir = TestDir::new();
        let recorder = recorder(&dir);
        metrics::with_local_recorder(&recorder, || {
            describe_counter!("early", "Described first.");
            counter!("early").increment(1);
            counter!("late").increment(1);
            describe_counter!("late", "Too late.");
            counter!("late").increment(1);
            describe_gauge!("level", metrics::Unit::Bytes, "A level.");
            gauge!("level").set(4.0);
            describe_histogram!("size", "Sizes.");
            histogram!("size").record(1.0);
        });
        let text = scrape(dir.path());
        assert!(
            text.starts_with("# HELP early_total Described first.\n# TYPE early_total counter\nearly_total 1.0\n"),
            "{text}"
        );
        assert!(text.contains("# HELP late_total \n# TYPE late_total counter\nlate_total 2.0\n"), "{text}");
        assert!(text.contains("# HELP level A level.\n# TYPE level gauge\nlevel 4.0\n"), "{text}");
        assert!(text.contains("# HELP size Sizes.\n# TYPE size histogram\n"), "{text}");
        Ok(())
    }

    fn gauges_default_to_livesum_and_modes_are_chosen_per_name() -> Result<(), Failed> {
        let dir = TestDir::new();
        let registry = Registry::builder().dir(dir.path()).build().unwrap();
        let recorder = MultiprocRecorder::builder(registry).gauge_mode_for("peak", GaugeMode::Max).build().unwrap();
        metrics::with_local_recorder(&recorder, || {
            gauge!("in_flight").increment(3.0);
            gauge!("in_flight").decrement(1.0);
            gauge!("peak").set(7.0);
        });
        let id = recorder.registry().worker_id();
        assert_eq!(
            dir.db_files(),
            [format!("gauge_livesum_{id}.db"), format!("gauge_max_{id}.db")],
            "one file per mode"
        );
        assert_eq!(
            scrape(dir.path()),
            "# HELP in_flight \n# TYPE in_flight gauge\nin_flight 2.0\n# HELP peak \n# TYPE peak gauge\npeak 7.0\n"
        );

        let dir = TestDir::new();
        let registry = Registry::builder().dir(dir.path()).build().unwrap();
        let recorder = MultiprocRecorder::builder(registry).gauge_mode(GaugeMode::MostRecent).build().unwrap();
        metrics::with_local_recorder(&recorder, || {
            gauge!("version").set(3.0);
            gauge!("version").increment(1.0); // ignored in the mostrecent modes, never a panic
        });
        assert_eq!(scrape(dir.path()), "# HELP version \n# TYPE version gauge\nversion 3.0\n");
        Ok(())
    }

    fn histograms_use_default_buckets_unless_set_per_name() -> Result<(), Failed> {
        let dir = TestDir::new();
        let registry = Registry::builder().dir(dir.path()).build().unwrap();
        let recorder = MultiprocRecorder::builder(registry).buckets_for("custom", &[1.0, 2.0]).build().unwrap();
        metrics::with_local_recorder(&recorder, || {
            histogram!("default").record(0.003);
            histogram!("custom").record(1.5);
        });
        let text = scrape(dir.path());
        let le: Vec<&str> =
            text.lines().filter(|l| l.starts_with("default_bucket")).map(|l| l.split('"').nth(1).unwrap()).collect();
        assert_eq!(
            le,
            [
                "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0", "7.5",
                "10.0", "+Inf"
            ]
        );
        assert!(text.contains("default_bucket{le=\"0.005\"} 1.0\n"), "{text}");
        assert!(
            text.contains(
                "# TYPE custom histogram\ncustom_sum 1.5\ncustom_bucket{le=\"1.0\"} 0.0\n\
                 custom_bucket{le=\"2.0\"} 1.0\ncustom_bucket{le=\"+Inf\"} 1.0\ncustom_count 1.0\n"
            ),
            "{text}"
        );
        Ok(())
    }

    fn counter_absolute_raises_and_never_lowers() -> Result<(), Failed> {
        let dir = TestDir::new();
        let recorder = recorder(&dir);
        metrics::with_local_recorder(&recorder, || {
            let c = counter!("synced");
            c.absolute(10);
            c.absolute(4);
            c.increment(1);
            c.absolute(11);
        });
        assert_eq!(scrape(dir.path()), "# HELP synced_total \n# TYPE synced_total counter\nsynced_total 11.0\n");
        Ok(())
    }

    fn builder_refuses_invalid_buckets() -> Result<(), Failed> {
        let dir = TestDir::new();
        let registry = Registry::builder().dir(dir.path()).build().unwrap();
        let err = MultiprocRecorder::builder(registry.clone()).buckets(&[2.0, 1.0]).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidBuckets);
        let err = MultiprocRecorder::builder(registry).buckets_for("h", &[f64::NAN]).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidBuckets);
        Ok(())
    }
}
