//! Unit tests of the merge rules, on hand-built entries.

use super::merge::{FileInput, Scratch, Unmergeable, Values, merge};
use super::name::parse_file_name;
use super::table::{Epoch, Tables};
use super::*;
use crate::format::key::encode_key;

/// An entry: (family, sample, labels, help, value, timestamp).
type TestEntry = (&'static str, &'static str, Vec<(&'static str, &'static str)>, &'static str, f64, f64);

/// One file: its name and its entries.
struct TestFile {
    name: &'static str,
    entries: Vec<TestEntry>,
}

fn file(name: &'static str) -> TestFile {
    TestFile { name, entries: Vec::new() }
}

impl TestFile {
    fn e(
        mut self,
        family: &'static str,
        sample: &'static str,
        labels: &[(&'static str, &'static str)],
        v: f64,
    ) -> Self {
        self.entries.push((family, sample, labels.to_vec(), "help", v, 0.0));
        self
    }

    fn help(mut self, family: &'static str, help: &'static str, v: f64) -> Self {
        self.entries.push((family, family, vec![], help, v, 0.0));
        self
    }

    fn ts(mut self, family: &'static str, v: f64, ts: f64) -> Self {
        self.entries.push((family, family, vec![], "help", v, ts));
        self
    }
}

struct Built {
    typ: MetricType,
    mode: Option<crate::GaugeMode>,
    families: Vec<(u32, u32)>,
    samples: Vec<u32>,
    values: Vec<f64>,
    timestamps: Vec<f64>,
    epoch: Epoch,
}

fn run(files: &[TestFile]) -> Result<Vec<MetricFamily>, Unmergeable> {
    let mut tables = Tables::default();
    let mut built = Vec::new();
    for f in files {
        let kind = parse_file_name(f.name).expect("test file name");
        let mut b = Built {
            typ: kind.typ,
            mode: kind.gauge.as_ref().map(|g| g.0),
            families: vec![],
            samples: vec![],
            values: vec![],
            timestamps: vec![],
            epoch: Epoch::default(),
        };
        for (family, sample, labels, help, v, ts) in &f.entries {
            let mut labels = labels.clone();
            labels.sort();
            let key = tables.key_id(encode_key(family, sample, &labels, help).as_bytes()).unwrap();
            let id = match &kind.gauge {
                Some((_, pid)) => tables.gauge_sample(key, pid),
                None => tables.key(key).sample,
            };
            let fam = tables.key(key).family;
            if !b.families.iter().any(|(f, _)| *f == fam) {
                b.families.push((fam, key));
            }
            b.samples.push(id);
            b.values.push(*v);
            if kind.gauge.is_some() {
                b.timestamps.push(*ts);
            }
        }
        built.push(b);
    }
    let inputs: Vec<FileInput<'_>> = built
        .iter()
        .map(|b| FileInput {
            typ: b.typ,
            mode: b.mode,
            families: &b.families,
            samples: &b.samples,
            values: Values::Read { values: &b.values, timestamps: &b.timestamps },
            epoch: b.epoch,
        })
        .collect();
    let mut scratch = Scratch::default();
    let first = merge(&tables, &inputs, &mut scratch, 1);
    // Merging again (with the plan kept, if it may be) gives the same result, and so
    // does sharing the values between threads, however many.
    for threads in [1, 2, 3, 7] {
        let again = merge(&tables, &inputs, &mut scratch, threads);
        assert_eq!(format!("{first:?}"), format!("{again:?}"), "{threads} threads");
        let fresh = merge(&tables, &inputs, &mut Scratch::default(), threads);
        assert_eq!(format!("{first:?}"), format!("{fresh:?}"), "{threads} threads, fresh");
    }
    first
}

/// `name{l="v",...} value` per sample, labels in exposed order.
fn lines(families: &[MetricFamily]) -> Vec<String> {
    let mut out = Vec::new();
    for f in families {
        for s in &f.samples {
            let labels: Vec<String> = s.labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
            out.push(format!("{}{{{}}} {:?}", s.name, labels.join(","), s.value));
        }
    }
    out
}

#[test]
fn counter_sums_follow_file_order_bit_for_bit() {
    let forward = run(&[
        file("counter_1.db").e("c", "c_total", &[], 0.1),
        file("counter_2.db").e("c", "c_total", &[], 0.2),
        file("counter_3.db").e("c", "c_total", &[], 0.3),
    ])
    .unwrap();
    assert_eq!(forward[0].samples[0].value, 0.6000000000000001);
    let backward = run(&[
        file("counter_1.db").e("c", "c_total", &[], 0.3),
        file("counter_2.db").e("c", "c_total", &[], 0.2),
        file("counter_3.db").e("c", "c_total", &[], 0.1),
    ])
    .unwrap();
    assert_eq!(backward[0].samples[0].value, 0.6);
}

#[test]
fn sums_start_from_positive_zero() {
    let fams = run(&[file("counter_1.db").e("c", "c_total", &[], -0.0)]).unwrap();
    assert!(fams[0].samples[0].value.is_sign_positive());
}

#[test]
fn min_keeps_a_nan_seen_first_and_ignores_one_seen_later() {
    let nan_first =
        run(&[file("gauge_min_1.db").e("g", "g", &[], f64::NAN), file("gauge_min_2.db").e("g", "g", &[], 1.0)])
            .unwrap();
    assert!(nan_first[0].samples[0].value.is_nan());
    let nan_later = run(&[
        file("gauge_livemin_1.db").e("g", "g", &[], 1.0),
        file("gauge_livemin_2.db").e("g", "g", &[], f64::NAN),
        file("gauge_livemin_3.db").e("g", "g", &[], 0.5),
    ])
    .unwrap();
    assert_eq!(nan_later[0].samples[0].value, 0.5);
}

#[test]
fn max_uses_plain_greater_than() {
    let fams = run(&[
        file("gauge_max_1.db").e("g", "g", &[], -0.0),
        file("gauge_max_2.db").e("g", "g", &[], 0.0),
        file("gauge_max_3.db").e("g", "g", &[], f64::NAN),
    ])
    .unwrap();
    // 0.0 > -0.0 is false: the first zero, negative, is kept; NaN never wins.
    assert!(fams[0].samples[0].value == 0.0 && fams[0].samples[0].value.is_sign_negative());
}

#[test]
fn mostrecent_takes_strictly_greater_timestamps_and_first_file_wins_ties() {
    let fams = run(&[
        file("gauge_mostrecent_1.db").ts("g", 1.0, 100.0),
        file("gauge_mostrecent_2.db").ts("g", 2.0, 100.0),
        file("gauge_mostrecent_3.db").ts("g", 3.0, 99.0),
    ])
    .unwrap();
    assert_eq!(lines(&fams), ["g{} 1.0"]);
    let newer = run(&[
        file("gauge_livemostrecent_1.db").ts("g", 1.0, 100.0),
        file("gauge_livemostrecent_2.db").ts("g", 2.0, 100.5),
    ])
    .unwrap();
    assert_eq!(lines(&newer), ["g{} 2.0"]);
}

#[test]
fn never_set_mostrecent_series_are_omitted_but_the_family_stays() {
    let fams =
        run(&[file("gauge_mostrecent_1.db").ts("g", 5.0, 0.0), file("gauge_mostrecent_2.db").ts("g", 6.0, -1.0)])
            .unwrap();
    assert_eq!(fams.len(), 1);
    assert_eq!(&*fams[0].name, "g");
    assert!(fams[0].samples.is_empty());
}

#[test]
fn mostrecent_groups_are_ordered_by_first_assignment() {
    let fams = run(&[
        file("gauge_mostrecent_1.db").e("g", "g", &[("l", "a")], 1.0).e("g", "g", &[("l", "b")], 2.0),
        file("gauge_mostrecent_2.db").e("g", "g", &[("l", "b")], 3.0),
    ]);
    // Timestamps all 0: nothing is assigned at all.
    assert!(fams.unwrap()[0].samples.is_empty());
    let mut a = file("gauge_mostrecent_1.db");
    a.entries.push(("g", "g", vec![("l", "a")], "h", 1.0, 0.0));
    a.entries.push(("g", "g", vec![("l", "b")], "h", 2.0, 5.0));
    let mut b = file("gauge_mostrecent_2.db");
    b.entries.push(("g", "g", vec![("l", "a")], "h", 3.0, 6.0));
    assert_eq!(lines(&run(&[a, b]).unwrap()), ["g{l=b} 2.0", "g{l=a} 3.0"]);
}

#[test]
fn all_mode_adds_the_file_pid_and_overrides_a_user_pid_label() {
    let fams = run(&[
        file("gauge_all_10.db").e("g", "g", &[("pid", "mine"), ("x", "1")], 1.0),
        file("gauge_all_w_1.db").e("g", "g", &[("x", "1")], 2.0),
    ])
    .unwrap();
    assert_eq!(lines(&fams), ["g{pid=10,x=1} 1.0", "g{pid=,x=1} 2.0"]);
}

#[test]
fn other_gauge_modes_drop_every_pid_label() {
    let fams = run(&[
        file("gauge_sum_1.db").e("g", "g", &[("pid", "a")], 1.0),
        file("gauge_sum_2.db").e("g", "g", &[("pid", "b")], 2.0),
    ])
    .unwrap();
    assert_eq!(lines(&fams), ["g{} 3.0"]);
}

#[test]
fn the_last_gauge_file_decides_the_mode_and_the_first_mention_the_type_and_help() {
    let fams = run(&[
        file("gauge_all_1.db").help("g", "first help", 1.0),
        file("gauge_max_2.db").help("g", "second help", 2.0),
        file("gauge_sum_3.db").help("g", "third help", 4.0),
    ])
    .unwrap();
    assert_eq!(&*fams[0].help, "first help");
    assert_eq!(fams[0].kind, MetricType::Gauge);
    assert_eq!(lines(&fams), ["g{} 7.0"]);

    let mixed =
        run(&[file("counter_1.db").e("m", "m_total", &[], 1.0), file("gauge_all_2.db").e("m", "m", &[], 5.0)]).unwrap();
    assert_eq!(mixed[0].kind, MetricType::Counter);
    assert_eq!(lines(&mixed), ["m_total{} 1.0", "m{pid=2} 5.0"]);
}

#[test]
fn histogram_buckets_accumulate_and_count_is_derived() {
    let h = |f: TestFile, route: &'static str, sum: f64, b: [f64; 3]| {
        f.e("h", "h_sum", &[("route", route)], sum)
            .e("h", "h_bucket", &[("le", "0.5"), ("route", route)], b[0])
            .e("h", "h_bucket", &[("le", "1.0"), ("route", route)], b[1])
            .e("h", "h_bucket", &[("le", "+Inf"), ("route", route)], b[2])
    };
    let fams = run(&[
        h(file("histogram_1.db"), "/a", 1.5, [1.0, 0.0, 1.0]),
        h(file("histogram_2.db"), "/a", 0.25, [1.0, 1.0, 0.0]),
    ])
    .unwrap();
    assert_eq!(
        lines(&fams),
        [
            "h_sum{route=/a} 1.75",
            "h_bucket{le=0.5,route=/a} 2.0",
            "h_bucket{le=1.0,route=/a} 3.0",
            "h_bucket{le=+Inf,route=/a} 4.0",
            "h_count{route=/a} 4.0",
        ]
    );
}

#[test]
fn histogram_bounds_compare_as_floats_and_print_as_first_seen() {
    let fams = run(&[
        file("histogram_1.db").e("h", "h_bucket", &[("le", "10000000000.0")], 1.0).e(
            "h",
            "h_bucket",
            &[("le", "-0.0")],
            1.0,
        ),
        file("histogram_2.db").e("h", "h_bucket", &[("le", "1e+10")], 2.0).e("h", "h_bucket", &[("le", "0.0")], 1.0),
    ])
    .unwrap();
    // A group with buckets only; bounds sorted numerically; `le` reformatted.
    assert_eq!(lines(&fams), ["h_bucket{le=-0.0} 2.0", "h_bucket{le=1e+10} 5.0", "h_count{} 5.0"]);
}

#[test]
fn bucket_only_label_groups_come_after_the_others() {
    let fams = run(&[file("histogram_1.db")
        .e("h", "h_bucket", &[("le", "1.0"), ("x", "b")], 1.0)
        .e("h", "h_sum", &[("x", "a")], 2.0)
        .e("h", "h_bucket", &[("le", "1.0"), ("x", "a")], 1.0)])
    .unwrap();
    assert_eq!(
        lines(&fams),
        [
            "h_sum{x=a} 2.0",
            "h_bucket{le=1.0,x=a} 1.0",
            "h_count{x=a} 1.0",
            "h_bucket{le=1.0,x=b} 1.0",
            "h_count{x=b} 1.0"
        ]
    );
}

#[test]
fn a_stored_count_is_overwritten_in_place() {
    let fams = run(&[
        file("histogram_1.db").e("h", "h_count", &[], 9.0).e("h", "h_sum", &[], 1.0),
        file("histogram_2.db").e("h", "h_bucket", &[("le", "+Inf")], 2.0),
    ])
    .unwrap();
    assert_eq!(lines(&fams), ["h_count{} 2.0", "h_sum{} 1.0", "h_bucket{le=+Inf} 2.0"]);
}

#[test]
fn a_bound_that_is_not_a_number_makes_its_file_unmergeable() {
    let err = run(&[
        file("histogram_1.db").e("h", "h_bucket", &[("le", "1.0")], 1.0),
        file("histogram_2.db").e("h", "h_bucket", &[("le", "abc")], 1.0),
    ])
    .unwrap_err();
    assert_eq!(err, Unmergeable { file: 1, family: "h".into(), le: "abc".into() });
    // In a counter family the same label is an ordinary label.
    let fine = run(&[file("counter_1.db").e("c", "c_total", &[("le", "abc")], 1.0)]).unwrap();
    assert_eq!(lines(&fine), ["c_total{le=abc} 1.0"]);
}

#[test]
fn python_float_accepts_what_float_accepts() {
    use crate::format::float::parse_python_float as p;
    assert_eq!(p("+Inf"), Some(f64::INFINITY));
    assert_eq!(p(" -infinity "), Some(f64::NEG_INFINITY));
    assert_eq!(p("1_000.5"), Some(1000.5));
    assert!(p("NaN").unwrap().is_nan());
    assert_eq!(p("1e+10"), Some(1e10));
    assert_eq!(p("_1"), None);
    assert_eq!(p("1__0"), None);
    assert_eq!(p("abc"), None);
}

#[test]
fn families_keep_first_mention_order_across_files() {
    let fams = run(&[
        file("counter_1.db").e("b", "b_total", &[], 1.0),
        file("summary_1.db").e("a", "a_count", &[], 1.0).e("a", "a_sum", &[], 2.0),
        file("counter_2.db").e("c", "c_total", &[], 1.0).e("b", "b_total", &[], 1.0),
    ])
    .unwrap();
    let names: Vec<&str> = fams.iter().map(|f| &*f.name).collect();
    assert_eq!(names, ["b", "a", "c"]);
    assert_eq!(lines(&fams), ["b_total{} 2.0", "a_count{} 1.0", "a_sum{} 2.0", "c_total{} 1.0"]);
}

mod on_disk {
    use super::super::read;
    use super::*;
    use crate::{GaugeMode, Opts, Registry, WorkerId};

    fn registry(dir: &std::path::Path, id: &str) -> Registry {
        Registry::builder().dir(dir).worker_id(WorkerId::new(id).unwrap()).build().unwrap()
    }

    fn values(scrape: &Scrape) -> Vec<String> {
        lines(&scrape.families)
    }

    type Hook = std::thread::LocalKey<std::cell::RefCell<Option<read::PathHook>>>;

    /// One scrape by `collector` with `f` installed in `hook` (and removed afterwards,
    /// even if the scrape panics).
    fn collect_with(collector: &Collector, hook: &'static Hook, f: impl Fn(&std::path::Path) + 'static) -> Scrape {
        struct Remove(&'static Hook);
        impl Drop for Remove {
            fn drop(&mut self) {
                self.0.with(|h| *h.borrow_mut() = None);
            }
        }
        hook.with(|h| *h.borrow_mut() = Some(Box::new(f)));
        let _remove = Remove(hook);
        collector.collect().unwrap()
    }

    #[test]
    fn a_file_removed_between_listing_and_reading_is_skipped_as_vanished_and_the_rest_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (registry(dir.path(), "1"), registry(dir.path(), "2"));
        for r in [&a, &b] {
            r.counter(Opts::new("c_total", "C.")).unwrap().inc();
            r.gauge(Opts::new("g", "G."), GaugeMode::Sum).unwrap().set(2.0);
        }
        let collector = Collector::new(dir.path()).unwrap();
        let scrape = collect_with(&collector, &read::AFTER_LISTING, |dir| {
            let _ = std::fs::remove_file(dir.join("gauge_sum_2.db"));
        });
        assert_eq!(scrape.skipped.len(), 1, "{:?}", scrape.skipped);
        assert_eq!(scrape.skipped[0].path, dir.path().join("gauge_sum_2.db"));
        assert_eq!(scrape.skipped[0].reason, SkipReason::Vanished);
        // Exactly the directory without that file.
        assert_eq!(values(&scrape), ["c_total{} 2.0", "g{} 2.0"]);
        // The next scrape no longer lists it.
        assert!(collector.collect().unwrap().skipped.is_empty());
    }

    #[test]
    fn a_file_truncated_while_it_is_read_is_skipped_and_the_scrape_survives() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (registry(dir.path(), "1"), registry(dir.path(), "2"));
        for (r, n) in [(&a, 300), (&b, 1)] {
            let family = r.counter_family(Opts::new("c_total", "C."), &["k"]).unwrap();
            for i in 0..n {
                family.get(&[&format!("{i:0>100}")]).unwrap().inc();
            }
        }
        let collector = Collector::new(dir.path()).unwrap();
        assert!(collector.collect().unwrap().skipped.is_empty());
        let victim = dir.path().join("counter_1.db");
        // After the stat that said the file is unchanged, something truncates it: the
        // collector's kept mapping now reaches past the end of the file.
        let scrape = collect_with(&collector, &read::AFTER_STAT, move |path| {
            if path == victim {
                std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(4096).unwrap();
            }
        });
        assert_eq!(scrape.skipped.len(), 1, "{:?}", scrape.skipped);
        assert_eq!(scrape.skipped[0].reason, SkipReason::Truncated);
        let only_b: Vec<String> = (0..1).map(|i| format!("c_total{{k={i:0>100}}} 1.0")).collect();
        assert_eq!(values(&scrape), only_b, "exactly the directory without the truncated file");
        // The next scrape maps the file afresh at its new size: `used` now points past
        // its end, so it is corrupt, and nothing crashes.
        let again = collector.collect().unwrap();
        assert!(matches!(again.skipped[0].reason, SkipReason::Corrupt(_)), "{:?}", again.skipped);
    }

    #[test]
    fn a_file_that_grows_between_its_stat_and_its_read_is_read_whole_not_called_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path(), "1");
        let family = r.counter_family(Opts::new("c_total", "C."), &["k"]).unwrap();
        family.get(&["first"]).unwrap().inc();
        let collector = Collector::new(dir.path()).unwrap();
        assert!(collector.collect().unwrap().skipped.is_empty());
        // Right after the collector measured the file, the writer grows it well past
        // its first 64 KiB and publishes a `used` beyond the old size.
        let grower = family.clone();
        let scrape = collect_with(&collector, &read::AFTER_STAT, move |_| {
            for i in 0..2000 {
                grower.get(&[&format!("{i:0>60}")]).unwrap().inc();
            }
        });
        assert!(scrape.skipped.is_empty(), "{:?}", scrape.skipped);
        assert_eq!(scrape.families[0].samples.len(), 2001);
        assert_eq!(values(&scrape), values(&Collector::new(dir.path()).unwrap().collect().unwrap()));
    }

    #[test]
    fn a_writer_whose_file_is_truncated_keeps_running_and_refuses_new_series() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path(), "1");
        let family = r.counter_family(Opts::new("c_total", "C."), &["k"]).unwrap();
        let first = family.get(&["a"]).unwrap();
        first.inc();
        std::fs::OpenOptions::new().write(true).open(dir.path().join("counter_1.db")).unwrap().set_len(0).unwrap();
        first.inc(); // would be SIGBUS: the page is gone
        let err = family.get(&["b"]).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::CorruptFile, "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn vanished_file_is_reported_as_vanished() {
        let dir = tempfile::tempdir().unwrap();
        let kind = parse_file_name("gauge_livesum_1.db").unwrap();
        for sealed in [false, true] {
            let mut slot = None;
            let reason = read::refresh(
                &mut slot,
                &read::FilePath::new(dir.path(), "gauge_livesum_1.db".as_ref()),
                kind.clone(),
                read::Access { sealed, verify: sealed, keep_map: true },
                &parking_lot::RwLock::new(Tables::default()),
                &mut read::Buffers::default(),
            );
            assert_eq!(reason, Err(SkipReason::Vanished));
            assert!(slot.is_none());
        }
    }

    #[test]
    fn repeat_scrape_sees_new_values_and_new_entries() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path(), "1");
        let c = r.counter_family(Opts::new("c_total", "C."), &["a"]).unwrap();
        c.get(&["x"]).unwrap().inc();
        let collector = Collector::new(dir.path()).unwrap();
        assert_eq!(values(&collector.collect().unwrap()), ["c_total{a=x} 1.0"]);
        c.get(&["x"]).unwrap().inc_by(2.0);
        c.get(&["y"]).unwrap().inc();
        r.gauge(Opts::new("g", "G."), GaugeMode::Max).unwrap().set(5.0);
        assert_eq!(values(&collector.collect().unwrap()), ["c_total{a=x} 3.0", "c_total{a=y} 1.0", "g{} 5.0"]);
        // Growth past the first 64 KiB remaps the file and keeps what was parsed.
        for i in 0..2000 {
            c.get(&[&format!("label-{i:04}")]).unwrap().inc();
        }
        let scrape = collector.collect().unwrap();
        assert_eq!(scrape.families[0].samples.len(), 2002);
        assert_eq!(scrape, Collector::new(dir.path()).unwrap().collect().unwrap());
    }

    /// Runs `f` with every merge of this thread's scrapes on `threads` threads.
    fn with_merge_threads<T>(threads: usize, f: impl FnOnce() -> T) -> T {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                super::super::MERGE_THREADS.set(None);
            }
        }
        super::super::MERGE_THREADS.set(Some(threads));
        let _reset = Reset;
        f()
    }

    #[test]
    fn repeat_scrapes_on_any_number_of_threads_fold_every_value_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let modes = [GaugeMode::Sum, GaugeMode::Min, GaugeMode::Max, GaugeMode::All, GaugeMode::MostRecent];
        let writers: Vec<_> = (1..=5)
            .map(|w| {
                let r = registry(dir.path(), &w.to_string());
                let c = r.counter_family(Opts::new("c_total", "C."), &["k"]).unwrap();
                let h = r.histogram_family(Opts::new("h", "H."), &[0.1, 1.0], &["k"]).unwrap();
                let g: Vec<_> = modes
                    .iter()
                    .enumerate()
                    .map(|(i, mode)| r.gauge_family(Opts::new(format!("g{i}"), "G."), *mode, &["k"]).unwrap())
                    .collect();
                (r, c, h, g)
            })
            .collect();
        // Values whose sums depend on the order they are added in.
        let write = |round: u32| {
            for (w, (_, c, h, g)) in writers.iter().enumerate() {
                for k in 0..300u32 {
                    let x = f64::from(k * 7 + w as u32 + round) * 0.1;
                    c.get(&[&k.to_string()]).unwrap().inc_by(x);
                    h.get(&[&(k % 3).to_string()]).unwrap().observe(x / 30.0);
                    for gauge in &g[..4] {
                        gauge.get(&[&(k % 50).to_string()]).unwrap().set(x);
                    }
                    // A `mostrecent` series set by the later writers only, from the
                    // second round: it appears on a repeat scrape.
                    if round > 0 && w > 2 {
                        g[4].get(&[&(k % 50).to_string()]).unwrap().set(x);
                    }
                }
            }
        };
        write(0);
        let collectors: Vec<Collector> = (0..4).map(|_| Collector::new(dir.path()).unwrap()).collect();
        for round in 0..3 {
            if round > 0 {
                write(round);
            }
            let expected = with_merge_threads(1, || Collector::new(dir.path()).unwrap().collect().unwrap());
            assert!(expected.skipped.is_empty(), "{:?}", expected.skipped);
            assert_eq!(expected.families[0].samples.len(), 300);
            for (threads, collector) in [1, 2, 3, 7].into_iter().zip(&collectors) {
                // A long-lived collector (its plan kept, the values loaded from its
                // mappings) and a fresh one, on `threads` threads, bit for bit.
                let kept = with_merge_threads(threads, || collector.collect().unwrap());
                let fresh = with_merge_threads(threads, || Collector::new(dir.path()).unwrap().collect().unwrap());
                assert_eq!(values(&kept), values(&expected), "round {round}, {threads} threads");
                assert_eq!(values(&fresh), values(&expected), "round {round}, {threads} threads, fresh");
            }
        }
    }

    #[test]
    fn a_mostrecent_series_appears_on_a_repeat_scrape_once_it_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path(), "1");
        let c = r.counter(Opts::new("c_total", "C.")).unwrap();
        c.inc();
        let g = r.gauge_family(Opts::new("g", "G."), GaugeMode::MostRecent, &["k"]).unwrap();
        g.get(&["a"]).unwrap();
        g.get(&["b"]).unwrap().set(2.0);
        let collector = Collector::new(dir.path()).unwrap();
        assert_eq!(values(&collector.collect().unwrap()), ["c_total{} 1.0", "g{k=b} 2.0"]);
        // No entry is added, but `a` is set now: it takes its place first in its family.
        g.get(&["a"]).unwrap().set(1.0);
        c.inc();
        assert_eq!(values(&collector.collect().unwrap()), ["c_total{} 2.0", "g{k=a} 1.0", "g{k=b} 2.0"]);
        assert_eq!(collector.collect().unwrap(), Collector::new(dir.path()).unwrap().collect().unwrap());
    }

    #[test]
    fn files_with_the_same_entries_share_one_layout_until_one_gains_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let writers: Vec<_> = (1..=3)
            .map(|w| {
                let r = registry(dir.path(), &w.to_string());
                let c = r.counter_family(Opts::new("c_total", "C."), &["k"]).unwrap();
                for k in 0..100 {
                    c.get(&[&k.to_string()]).unwrap().inc_by(f64::from(w));
                }
                // Each writer's files of other kinds are read between its counter
                // files: each kind still shares with its own kind.
                r.summary(Opts::new("s", "S.")).unwrap().observe(f64::from(w));
                r.histogram(Opts::new("h", "H."), &[1.0]).unwrap().observe(0.5);
                (r, c)
            })
            .collect();
        let collector = Collector::new(dir.path()).unwrap();
        let layouts_of = |kind: &str| -> Vec<Arc<read::Layout>> {
            let state = collector.state.lock();
            let layout = |id: usize| {
                let slot = state.slots.iter().find(|slot| slot.key == *format!("{kind}_{id}.db")).unwrap();
                Arc::clone(&slot.state.as_ref().unwrap().layout)
            };
            (1..=3).map(layout).collect()
        };
        let layouts = || layouts_of("counter");
        let scrape = collector.collect().unwrap();
        assert_eq!(scrape.value("c_total", &[("k", "7")]), Some(6.0));
        assert_eq!(scrape.value("s_sum", &[]), Some(6.0));
        for kind in ["counter", "summary", "histogram"] {
            let l = layouts_of(kind);
            assert!(Arc::ptr_eq(&l[0], &l[1]) && Arc::ptr_eq(&l[1], &l[2]), "one {kind} layout for three files");
        }
        // Writer 2 declares one more series: its file gets a layout of its own, the
        // others keep theirs, and every total stays exact.
        writers[1].1.get(&["extra"]).unwrap().inc();
        writers[0].1.get(&["7"]).unwrap().inc();
        let scrape = collector.collect().unwrap();
        assert_eq!(scrape.value("c_total", &[("k", "7")]), Some(7.0));
        assert_eq!(scrape.value("c_total", &[("k", "extra")]), Some(1.0));
        let l = layouts();
        assert!(Arc::ptr_eq(&l[0], &l[2]) && !Arc::ptr_eq(&l[0], &l[1]));
        assert_eq!((l[0].samples.len(), l[1].samples.len()), (100, 101));
        assert_eq!(scrape, Collector::new(dir.path()).unwrap().collect().unwrap());
    }

    #[test]
    fn a_replaced_file_is_parsed_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counter_1.db");
        let write = |name: &str, v: f64, to: &std::path::Path| {
            let key = encode_key(name, &format!("{name}_total"), &[], "h");
            let mut bytes = crate::format::encode_header(0).to_vec();
            crate::format::encode_entry(&mut bytes, key.as_bytes(), v, 0.0);
            let used = bytes.len() as u32;
            bytes[..4].copy_from_slice(&used.to_le_bytes());
            std::fs::write(to, bytes).unwrap();
        };
        write("a", 1.0, &path);
        let collector = Collector::new(dir.path()).unwrap();
        assert_eq!(values(&collector.collect().unwrap()), ["a_total{} 1.0"]);
        let tmp = dir.path().join(".new");
        write("b", 2.0, &tmp);
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(values(&collector.collect().unwrap()), ["b_total{} 2.0"]);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(collector.collect().unwrap(), Scrape::default());
    }

    /// Writes a file of counter entries `c_total{i=LABEL}` with value 1, the padding
    /// of each entry filled with `pad`.
    fn write_raw(dir: &std::path::Path, name: &str, family: &str, labels: &[impl AsRef<str>], pad: u8) {
        let mut bytes = crate::format::encode_header(0).to_vec();
        for label in labels {
            let key = encode_key(family, &format!("{family}_total"), &[("i", label.as_ref())], "h");
            let start = bytes.len();
            crate::format::encode_entry(&mut bytes, key.as_bytes(), 1.0, 0.0);
            let pad_at = start + 4 + key.len();
            let pad_len = crate::format::padding_len(key.len());
            bytes[pad_at..pad_at + pad_len].fill(pad);
        }
        let used = bytes.len() as u32;
        bytes[..4].copy_from_slice(&used.to_le_bytes());
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    /// The labels `0` to `n - 1`, zero-padded to `width` digits.
    fn numbered(n: usize, width: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:0width$}")).collect()
    }

    /// The layout of the file `name` as the last scrape left it.
    fn layout_of(state: &State, name: &str) -> Arc<read::Layout> {
        let slot = state.slots.iter().find(|slot| slot.key == *name).unwrap();
        Arc::clone(&slot.state.as_ref().unwrap().layout)
    }

    #[test]
    fn predicted_keys_never_change_the_result() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ten = numbered(10, 2);
        write_raw(d, "counter_a.db", "c", &ten, b' ');
        // An entry inserted early, then the same order.
        let mut inserted = ten.clone();
        inserted.insert(1, "50".into());
        write_raw(d, "counter_b.db", "c", &inserted, b' ');
        // The reverse order: every prediction fails.
        let reversed: Vec<&String> = ten.iter().rev().collect();
        write_raw(d, "counter_c.db", "c", &reversed, b' ');
        // Same keys, other padding bytes (which readers ignore): same series.
        write_raw(d, "counter_d.db", "c", &ten, b'\t');
        // A key of the same length that differs in one byte, then the known order.
        write_raw(d, "counter_e.db", "c", &["0Z", "01", "02"], b' ');
        // A key that is a prefix of the predicted one's bytes but longer.
        write_raw(d, "counter_f.db", "c", &["00", "010"], b' ');
        // A file that ends inside the predicted entry: skipped whole, as before.
        write_raw(d, "counter_g.db", "c", &["00", "01"], b' ');
        let g = d.join("counter_g.db");
        let mut bytes = std::fs::read(&g).unwrap();
        let short = (bytes.len() - 8) as u32;
        bytes[..4].copy_from_slice(&short.to_le_bytes());
        std::fs::write(&g, bytes).unwrap();

        // 00 is in a, b, c, d, f; 01 and 02 in a, b, c, d, e; the others in a, b, c, d.
        let mut expected: Vec<String> = ten
            .iter()
            .map(|label| {
                let n = match label.as_str() {
                    "00" | "01" | "02" => 5,
                    _ => 4,
                };
                format!("c_total{{i={label}}} {n}.0")
            })
            .collect();
        expected.insert(10, "c_total{i=50} 1.0".into());
        expected.insert(11, "c_total{i=0Z} 1.0".into());
        expected.insert(12, "c_total{i=010} 1.0".into());

        let collector = Collector::new(d).unwrap();
        let first = collector.collect().unwrap();
        assert_eq!(values(&first), expected);
        assert_eq!(first.skipped.len(), 1);
        assert_eq!(first.skipped[0].path, g);
        // A repeat scrape, and a fresh collector whose predictions start empty, agree.
        assert_eq!(collector.collect().unwrap(), first);
        assert_eq!(Collector::new(d).unwrap().collect().unwrap(), first);
    }

    /// Sets the value of every entry of the file at `path` to `value`.
    fn set_values(path: &std::path::Path, value: f64) {
        let mut bytes = std::fs::read(path).unwrap();
        let used = crate::format::decode_used(&bytes).unwrap() as usize;
        let offsets: Vec<usize> = crate::format::entries(&bytes, used).map(|e| e.unwrap().value_offset).collect();
        for offset in offsets {
            bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// The values a file's state read (none are left in a mapping here).
    fn read_values(st: &FileState) -> Vec<f64> {
        match st.values() {
            Values::Read { values, .. } => values.to_vec(),
            Values::Mapped { .. } => panic!("values left in a mapping"),
        }
    }

    /// Reads the files `names` of `dir` with `tables` held for writing by another thread
    /// (released after the reads), as a reading thread meets them while another interns
    /// a file's keys; then parses what was read ahead and gives the files their entries.
    /// The states, and what `take_pending` said of each.
    fn read_while_another_interns(
        dir: &std::path::Path,
        names: &[&str],
        tables: &parking_lot::RwLock<Tables>,
    ) -> Vec<(Box<FileState>, Result<(), read::Access>)> {
        let access = read::Access { sealed: false, verify: false, keep_map: false };
        let mut buffers = read::Buffers::default();
        let mut slots: Vec<Option<Box<FileState>>> = names.iter().map(|_| None).collect();
        std::thread::scope(|scope| {
            let (release, released) = std::sync::mpsc::channel::<()>();
            let (held, holding) = std::sync::mpsc::channel();
            scope.spawn(move || {
                let _write = tables.write();
                held.send(()).unwrap();
                // Released when the reads end (or, should one wait for the tables, after
                // a while, so that the test fails rather than hangs).
                let _ = released.recv_timeout(std::time::Duration::from_secs(10));
            });
            holding.recv().unwrap();
            for (slot, name) in slots.iter_mut().zip(names) {
                let path = read::FilePath::new(dir, name.as_ref());
                read::refresh(slot, &path, parse_file_name(name).unwrap(), access, tables, &mut buffers).unwrap();
                assert_eq!(slot.as_ref().unwrap().entry_count(), 0, "{name} was read ahead, not parsed");
            }
            assert_eq!(buffers.take_pending_count(), names.len());
            drop(release);
        });
        buffers.parse_ahead(tables);
        slots
            .into_iter()
            .map(|slot| {
                let mut st = slot.unwrap();
                let taken = st.take_pending();
                (st, taken)
            })
            .collect()
    }

    #[test]
    fn files_read_while_another_thread_interns_take_the_entries_their_own_parse_gives() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let names = ["counter_a.db", "counter_b.db", "counter_c.db"];
        for (value, name) in names.iter().enumerate() {
            write_raw(d, name, "c", &numbered(50, 2), b' ');
            set_values(&d.join(name), value as f64 + 1.0);
        }
        let tables = parking_lot::RwLock::new(Tables::default());
        let read = read_while_another_interns(d, &names, &tables);
        for ((st, taken), name) in read.iter().zip(names) {
            assert_eq!(*taken, Ok(()), "{name}");
            // The same file read now, the tables free, the usual way.
            let mut fresh = None;
            let path = read::FilePath::new(d, name.as_ref());
            let access = read::Access { sealed: false, verify: false, keep_map: false };
            let kind = parse_file_name(name).unwrap();
            read::refresh(&mut fresh, &path, kind, access, &tables, &mut read::Buffers::default()).unwrap();
            let fresh = fresh.unwrap();
            assert_eq!(st.entry_count(), 50, "{name}");
            assert_eq!(st.layout, fresh.layout, "{name}");
            assert_eq!(st.families, fresh.families, "{name}");
            assert_eq!(read_values(st), read_values(&fresh), "{name}");
        }
        // All three share the one layout.
        assert!(Arc::ptr_eq(&read[0].0.layout, &read[2].0.layout));
    }

    /// A file's bytes whose entries follow one another, with keys that are not JSON:
    /// read ahead by their lengths, refused by the parse.
    fn not_json_keys() -> Vec<u8> {
        let mut bytes = crate::format::encode_header(0).to_vec();
        for _ in 0..3 {
            crate::format::encode_entry(&mut bytes, b"not a key", 1.0, 0.0);
        }
        let used = bytes.len() as u32;
        bytes[..4].copy_from_slice(&used.to_le_bytes());
        bytes
    }

    #[test]
    fn files_read_ahead_of_a_file_whose_parse_fails_are_left_to_be_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let names = ["counter_a.db", "counter_b.db"];
        for name in names {
            std::fs::write(d.join(name), not_json_keys()).unwrap();
        }
        let tables = parking_lot::RwLock::new(Tables::default());
        let access = read::Access { sealed: false, verify: false, keep_map: false };
        for (_, taken) in read_while_another_interns(d, &names, &tables) {
            assert_eq!(taken, Err(access));
        }
    }

    /// One scrape by `collector` with this thread taking the tables for held by another
    /// whenever a file could be read ahead of them (fewer than 64 files are read on
    /// this thread alone), and how many files it read ahead.
    fn collect_reading_ahead(collector: &Collector) -> (Scrape, usize) {
        struct Release;
        impl Drop for Release {
            fn drop(&mut self) {
                read::TABLES_HELD.with(|held| held.set(false));
            }
        }
        read::TABLES_HELD.with(|held| held.set(true));
        let _release = Release;
        let before = read::READ_AHEAD.with(std::cell::Cell::get);
        let scrape = collector.collect().unwrap();
        (scrape, read::READ_AHEAD.with(std::cell::Cell::get) - before)
    }

    /// How many files the last scrape of `collector` left pending, by the files' states:
    /// none may be.
    fn pending_after(collector: &Collector) -> usize {
        let state = collector.state.lock();
        state.slots.iter().filter(|slot| slot.state.as_deref().is_some_and(FileState::is_pending)).count()
    }

    #[test]
    fn a_scrape_that_reads_files_ahead_of_the_tables_equals_one_that_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let labels = numbered(20, 2);
        // `a` is read ahead, `b` and `c` have its heads (other values), `d` other keys,
        // `e` is a gauge file with the same bytes (never read ahead).
        for (name, value) in [("counter_a.db", 1.0), ("counter_b.db", 2.0), ("counter_c.db", 4.0)] {
            write_raw(d, name, "c", &labels, b' ');
            set_values(&d.join(name), value);
        }
        write_raw(d, "counter_d.db", "c", &numbered(3, 3), b' ');
        write_raw(d, "gauge_all_e.db", "c", &labels, b' ');
        // Mapped and unmapped after each read: the files a thread reads ahead.
        let ahead = Collector::new(d).unwrap().with_max_kept_mappings(0);
        let (first, read_ahead) = collect_reading_ahead(&ahead);
        assert_eq!(read_ahead, 3, "a, b and c");
        assert_eq!(pending_after(&ahead), 0);
        let plain = Collector::new(d).unwrap().with_max_kept_mappings(0);
        assert_eq!(first, plain.collect().unwrap());
        assert!(values(&first).contains(&"c_total{i=07} 7.0".to_string()), "{:?}", values(&first));
        // `b` gains entries: the state it took from `a` parses on from where `a` ended.
        let mut more = labels.clone();
        more.extend(numbered(5, 3));
        write_raw(d, "counter_b.db", "c", &more, b' ');
        set_values(&d.join("counter_b.db"), 2.0);
        let second = ahead.collect().unwrap();
        assert_eq!(second, Collector::new(d).unwrap().collect().unwrap());
        assert_eq!(second, plain.collect().unwrap());
    }

    #[test]
    fn files_read_ahead_of_a_file_the_parse_refuses_are_read_again_and_skipped_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // `a` and `b`: `a` is read ahead and `b` matches it. `c` is a good file.
        for name in ["counter_a.db", "counter_b.db"] {
            std::fs::write(d.join(name), not_json_keys()).unwrap();
        }
        write_raw(d, "counter_c.db", "c", &numbered(2, 1), b' ');
        let ahead = Collector::new(d).unwrap().with_max_kept_mappings(0);
        let (scrape, read_ahead) = collect_reading_ahead(&ahead);
        assert_eq!(read_ahead, 2, "a and b");
        assert_eq!(pending_after(&ahead), 0);
        let skipped: Vec<_> = scrape.skipped.iter().map(|s| s.path.clone()).collect();
        assert_eq!(skipped, [d.join("counter_a.db"), d.join("counter_b.db")]);
        for s in &scrape.skipped {
            assert!(matches!(s.reason, SkipReason::InvalidKey { offset: 8, .. }), "{s:?}");
        }
        assert_eq!(values(&scrape), ["c_total{i=0} 1.0", "c_total{i=1} 1.0"]);
        assert_eq!(scrape, Collector::new(d).unwrap().with_max_kept_mappings(0).collect().unwrap());
    }

    #[test]
    fn a_cold_scrape_of_many_files_with_the_same_entries_on_several_threads_is_exact() {
        // Enough files for two reading threads, none of whose mappings is kept: one
        // thread's first file is interned while the other, if it meets the tables held,
        // reads its files ahead of them (see `read::Ahead`).
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let labels = numbered(1000, 4);
        for i in 0..64 {
            let name = format!("counter_w{i:02}.db");
            write_raw(d, &name, "c", &labels, b' ');
            set_values(&d.join(&name), f64::from(i) + 1.0);
        }
        let expected: Vec<String> = labels.iter().map(|label| format!("c_total{{i={label}}} 2080.0")).collect();
        for _ in 0..5 {
            let collector = Collector::new(d).unwrap().with_max_kept_mappings(0);
            for _ in 0..2 {
                let scrape = collector.collect().unwrap();
                assert!(scrape.skipped.is_empty(), "{:?}", scrape.skipped);
                assert_eq!(values(&scrape), expected);
            }
        }
    }

    #[test]
    fn a_sealed_file_larger_than_the_first_read_sized_by_earlier_ones_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let tables = parking_lot::RwLock::new(Tables::default());
        // One thread's buffers: each file's first read asks for as many bytes as the
        // largest file of its type so far had in use (2, then 30 entries: about 0.2
        // and 2.6 KiB); the 200 entries of the last (17 KiB) are past that and past 4 KiB.
        let mut buffers = read::Buffers::default();
        for (name, n) in [("counter_a.db", 2), ("counter_b.db", 30), ("counter_c.db", 1), ("counter_d.db", 200)] {
            write_raw(dir.path(), name, "c", &numbered(n, 3), b' ');
            let mut slot = None;
            read::refresh(
                &mut slot,
                &read::FilePath::new(dir.path(), name.as_ref()),
                parse_file_name(name).unwrap(),
                read::Access { sealed: true, verify: true, keep_map: false },
                &tables,
                &mut buffers,
            )
            .unwrap();
            let st = slot.unwrap();
            assert_eq!((st.entry_count(), st.is_mapped()), (n, false), "{name}");
        }
    }

    #[test]
    fn a_counter_file_never_takes_a_gauge_files_layout() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Byte-identical entries (no writer of ours or Python's writes a gauge file
        // with counter keys, a hand-written one can), read by one thread in this order.
        write_raw(d, "gauge_all_a.db", "c", &["00", "01"], b' ');
        write_raw(d, "counter_b.db", "c", &["00", "01"], b' ');
        let collector = Collector::new(d).unwrap();
        collector.collect().unwrap();
        let state = collector.state.lock();
        let layout = |name: &str| layout_of(&state, name);
        // A gauge file's samples carry its writer's `pid`; a counter file's do not.
        let (gauge, counter) = (layout("gauge_all_a.db"), layout("counter_b.db"));
        assert!(!Arc::ptr_eq(&gauge, &counter));
        let has_pid = |sample: u32| {
            let t = &state.tables;
            t.exposed_labels(t.sample(sample).labels).iter().any(|(name, _)| &**name == "pid")
        };
        assert!(gauge.samples.iter().all(|&s| has_pid(s)));
        assert!(counter.samples.iter().all(|&s| !has_pid(s)));
    }

    #[test]
    fn a_file_takes_a_known_layout_only_if_every_head_is_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ten = numbered(10, 2);
        let with = |at: usize, label: &str| {
            let mut labels = ten.clone();
            labels[at] = label.into();
            labels
        };
        write_raw(d, "counter_a.db", "c", &ten, b' ');
        // The very same entries: the layout of `a`, taken in one pass.
        write_raw(d, "counter_b.db", "c", &ten, b' ');
        // One byte of one key differs, in the middle.
        write_raw(d, "counter_c.db", "c", &with(5, "0Z"), b' ');
        // Other padding bytes: the same series, but not the same heads.
        write_raw(d, "counter_d.db", "c", &ten, b'\t');
        // A key one byte longer, its value at the same offset (the padding shrinks).
        write_raw(d, "counter_e.db", "c", &with(5, "055"), b' ');
        // The same entries and one more: `used` differs.
        let mut eleven = ten.clone();
        eleven.push("10".into());
        write_raw(d, "counter_f.db", "c", &eleven, b' ');
        let offsets = |name: &str| {
            let bytes = std::fs::read(d.join(name)).unwrap();
            let used = crate::format::decode_used(&bytes).unwrap() as usize;
            crate::format::entries(&bytes, used).map(|e| e.unwrap().value_offset).collect::<Vec<_>>()
        };
        assert_eq!(offsets("counter_a.db"), offsets("counter_e.db"), "the same offsets, other heads");

        let mut expected: Vec<String> =
            ten.iter().map(|label| format!("c_total{{i={label}}} {}.0", if *label == "05" { 4 } else { 6 })).collect();
        expected.insert(10, "c_total{i=0Z} 1.0".into());
        expected.insert(11, "c_total{i=055} 1.0".into());
        expected.insert(12, "c_total{i=10} 1.0".into());
        let collector = Collector::new(d).unwrap();
        let first = collector.collect().unwrap();
        assert_eq!(values(&first), expected);
        let state = collector.state.lock();
        let layout = |name: &str| layout_of(&state, name);
        assert!(Arc::ptr_eq(&layout("counter_a.db"), &layout("counter_b.db")));
        // `d` has the entries of `a` by another parse, and shares its layout after.
        assert!(Arc::ptr_eq(&layout("counter_a.db"), &layout("counter_d.db")));
        for other in ["counter_c.db", "counter_e.db", "counter_f.db"] {
            assert!(!Arc::ptr_eq(&layout("counter_a.db"), &layout(other)), "{other}");
        }
        drop(state);
        assert_eq!(collector.collect().unwrap(), first);
        assert_eq!(Collector::new(d).unwrap().collect().unwrap(), first);
    }

    #[test]
    fn a_file_that_matches_the_second_of_two_known_layouts_reads_its_own_values() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ten = numbered(10, 2);
        let mut other = ten.clone();
        other[5] = "0Z".into();
        // `b` differs from `a` at its sixth entry only (same `used`, same offsets); `c`
        // has `b`'s entries: compared with `a`'s layout first, it fails there, after
        // five values were read in the same pass, then takes `b`'s.
        write_raw(d, "counter_a.db", "c", &ten, b' ');
        write_raw(d, "counter_b.db", "c", &other, b' ');
        write_raw(d, "counter_c.db", "c", &other, b' ');
        set_values(&d.join("counter_c.db"), 4.0);
        let mut expected: Vec<String> =
            ten.iter().map(|label| format!("c_total{{i={label}}} {}.0", if *label == "05" { 1 } else { 6 })).collect();
        expected.push("c_total{i=0Z} 5.0".into());
        // Mapped only while read: the values are read with the comparison.
        let collector = Collector::new(d).unwrap().with_max_kept_mappings(0);
        assert_eq!(values(&collector.collect().unwrap()), expected);
        let state = collector.state.lock();
        assert!(Arc::ptr_eq(&layout_of(&state, "counter_b.db"), &layout_of(&state, "counter_c.db")));
        assert!(!Arc::ptr_eq(&layout_of(&state, "counter_a.db"), &layout_of(&state, "counter_c.db")));
    }

    #[test]
    fn gauge_files_of_many_writers_share_keys_but_not_samples() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["7", "8"] {
            let r = registry(dir.path(), id);
            let g = r.gauge_family(Opts::new("g", "G."), GaugeMode::All, &["a"]).unwrap();
            g.get(&["x"]).unwrap().set(1.0);
            g.get(&["y"]).unwrap().set(2.0);
        }
        let scrape = Collector::new(dir.path()).unwrap().collect().unwrap();
        assert_eq!(values(&scrape), ["g{a=x,pid=7} 1.0", "g{a=y,pid=7} 2.0", "g{a=x,pid=8} 1.0", "g{a=y,pid=8} 2.0"]);
    }

    #[test]
    fn collector_new_refuses_a_missing_directory_and_collect_fails_only_on_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert_eq!(Collector::new(&missing).unwrap_err().kind(), crate::ErrorKind::NotADirectory);
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(Collector::new(&file).unwrap_err().kind(), crate::ErrorKind::NotADirectory);
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let collector = Collector::new(&sub).unwrap();
        std::fs::remove_dir(&sub).unwrap();
        let err = collector.collect().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotADirectory);
        assert_eq!(err.path(), Some(sub.as_path()));
    }

    #[test]
    fn the_bound_on_kept_mappings_holds_across_threads_as_the_directory_grows() {
        // Files of IDs with no liveness file and no pid (stock workers with their own
        // identifiers, which may be alive): mapped, and kept while there is room. Enough
        // of them to be read by several threads; then as many again, whose names sort
        // after the first, so that the runs each thread reads move.
        let dir = tempfile::tempdir().unwrap();
        let bound = 10;
        let collector = Collector::new(dir.path()).unwrap().with_max_kept_mappings(bound);
        let kept = || {
            collector.state.lock().slots.iter().filter(|s| s.state.as_deref().is_some_and(FileState::is_mapped)).count()
        };
        for (prefix, count) in [("a", 80), ("b", 160)] {
            for i in 0..count {
                stock_worker_files(dir.path(), &format!("{prefix}{i:03}"), 1.0);
            }
            for _ in 0..3 {
                let scrape = collector.collect().unwrap();
                assert!(scrape.skipped.is_empty(), "{:?}", scrape.skipped);
                assert!(kept() <= bound, "{} mappings kept, bound {bound}", kept());
            }
        }
        assert_eq!(kept(), bound, "the room is used");
        assert_eq!(values(&collector.collect().unwrap()), ["c_total{} 240.0"]);
    }

    #[test]
    fn a_settled_directory_is_not_listed_again_until_a_name_changes() {
        let dir = tempfile::tempdir().unwrap();
        stock_worker_files(dir.path(), "w1", 2.0);
        std::thread::sleep(read::SETTLED + std::time::Duration::from_millis(100));
        let collector = Collector::new(dir.path()).unwrap();
        assert_eq!(values(&collector.collect().unwrap()), ["c_total{} 2.0"]);
        assert!(collector.state.lock().dir_stamp.is_some(), "a settled directory's listing is kept");
        // Values written in place are read (no name changed: the listing stands).
        assert_eq!(values(&collector.collect().unwrap()), ["c_total{} 2.0"]);
        // A new file changes the directory, so it is listed again at once.
        stock_worker_files(dir.path(), "w2", 3.0);
        assert_eq!(values(&collector.collect().unwrap()), ["c_total{} 5.0"]);
        assert!(collector.state.lock().dir_stamp.is_none(), "a fresh change is not trusted yet");
        std::fs::remove_file(dir.path().join("counter_w1.db")).unwrap();
        assert_eq!(values(&collector.collect().unwrap()), ["c_total{} 3.0"]);
    }

    /// A stock Python worker's files: written under a numeric ID, with no liveness file.
    fn stock_worker_files(dir: &std::path::Path, pid: &str, value: f64) {
        let r = registry(dir, pid);
        r.counter(Opts::new("c_total", "C.")).unwrap().inc_by(value);
        drop(r);
        std::fs::remove_file(dir.join(crate::format::names::lock_name(pid))).unwrap();
    }

    #[test]
    fn an_exited_stock_workers_files_are_copied_and_a_running_ones_mapped() {
        let dir = tempfile::tempdir().unwrap();
        // A pid no process has (beyond the largest pid Linux hands out), and our own.
        let exited = "4194305";
        let running = std::process::id().to_string();
        stock_worker_files(dir.path(), exited, 2.0);
        stock_worker_files(dir.path(), &running, 3.0);
        let collector = Collector::new(dir.path()).unwrap();
        let scrape = collector.collect().unwrap();
        assert_eq!(values(&scrape), ["c_total{} 5.0"]);
        let mapped = |id: &str| {
            let state = collector.state.lock();
            let slot = state.slots.iter().find(|slot| slot.key == *format!("counter_{id}.db")).unwrap();
            slot.state.as_ref().unwrap().is_mapped()
        };
        assert!(!mapped(exited), "copied (twice, equal), not mapped");
        assert!(mapped(&running), "a running pid's files may be written meanwhile: mapped");
        // Seen again, both are kept mapped and read with atomic loads (a new process may
        // take the exited pid and write the files in place).
        assert_eq!(values(&collector.collect().unwrap()), ["c_total{} 5.0"]);
        assert!(mapped(exited) && mapped(&running));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn many_exited_stock_workers_files_are_read_in_batches_with_exact_totals() {
        let dir = tempfile::tempdir().unwrap();
        // Pids beyond the largest Linux hands out: exited workers, copied twice.
        let pid = |i: u32| (4_194_305 + i).to_string();
        for i in 0..300 {
            stock_worker_files(dir.path(), &pid(i), 1.0);
        }
        // More bytes in use than a first read asks for: read whole, on its own.
        let big = registry(dir.path(), &pid(300));
        let wide = big.counter_family(Opts::new("wide_total", "W."), &["i"]).unwrap();
        for i in 0..200 {
            wide.with(&[&i.to_string()], |c| c.inc_by(2.0)).unwrap();
        }
        drop((wide, big));
        std::fs::remove_file(dir.path().join(crate::format::names::lock_name(&pid(300)))).unwrap();
        // Emptied, and cut short of the bytes it claims in use.
        let name = |i: u32| format!("counter_{}.db", pid(i));
        std::fs::write(dir.path().join(name(301)), b"").unwrap();
        let short = dir.path().join(name(3));
        let mut bytes = std::fs::read(&short).unwrap();
        bytes.truncate(24);
        std::fs::write(&short, bytes).unwrap();
        // What a collector that reads the cut file on its own reports for it.
        let alone = tempfile::tempdir().unwrap();
        std::fs::copy(&short, alone.path().join(name(3))).unwrap();
        let alone = Collector::new(alone.path()).unwrap().collect().unwrap().skipped[0].reason.clone();

        // A running pid's files, among them: mapped, not batched, as its writer may
        // write meanwhile.
        let running = std::process::id().to_string();
        stock_worker_files(dir.path(), &running, 5.0);

        let collector = Collector::new(dir.path()).unwrap();
        let scrape = collector.collect().unwrap();
        let taken = collector.state.lock().batched;
        // Without io_uring (the tests are told, see `region::uring`), every file is read
        // on its own, to the same totals.
        if std::env::var_os("PROMETHEUS_MULTIPROC_TEST_NO_IO_URING").is_none() {
            assert!(taken >= 250, "most files were taken from batches ({taken})");
        }
        assert_eq!(scrape.sample("c_total", &[]).map(|s| s.value), Some(304.0), "every whole file counted once");
        let state = collector.state.lock();
        let mapped = |id: &str| {
            let slot = state.slots.iter().find(|slot| slot.key == *format!("counter_{id}.db")).unwrap();
            slot.state.as_ref().unwrap().is_mapped()
        };
        assert!(mapped(&running), "a running pid's file is mapped");
        assert!(!mapped(&pid(0)), "an exited one's is copied");
        drop(state);
        let wide = scrape.family("wide").unwrap();
        assert_eq!(wide.samples.len(), 200);
        assert!(wide.samples.iter().all(|s| s.value == 2.0));
        let skipped: Vec<(String, SkipReason)> = scrape
            .skipped
            .iter()
            .map(|s| (s.path.file_name().unwrap().to_string_lossy().into_owned(), s.reason.clone()))
            .collect();
        assert_eq!(skipped, [(name(3), alone), (name(301), SkipReason::Empty)]);
    }

    #[test]
    fn exited_stock_workers_files_too_large_to_copy_among_small_ones_count_exactly() {
        // After a file too large to copy, the next of its type is mapped at once; after
        // a small one, copied again. Sizes alternating and in runs, every value counts
        // once, whichever way each file was read.
        let dir = tempfile::tempdir().unwrap();
        let pid = |i: u32| (4_194_305 + i).to_string();
        let large = [0, 1, 2, 5, 7, 8];
        for i in 0..12 {
            if large.contains(&i) {
                let r = registry(dir.path(), &pid(i));
                let wide = r.counter_family(Opts::new("c_total", "C."), &["i"]).unwrap();
                // About 1,400 entries of some 56 bytes: more than 64 KiB in use.
                for k in 0..1400 {
                    wide.with(&[&k.to_string()], |c| c.inc_by(f64::from(i + 1))).unwrap();
                }
                drop((wide, r));
                std::fs::remove_file(dir.path().join(crate::format::names::lock_name(&pid(i)))).unwrap();
            } else {
                stock_worker_files(dir.path(), &pid(i), f64::from(i + 1));
            }
        }
        let big = |i: u32| std::fs::metadata(dir.path().join(format!("counter_{}.db", pid(i)))).unwrap().len();
        assert!(big(0) > 64 * 1024 && big(3) <= 64 * 1024);
        let wide_total: f64 = large.iter().map(|&i| f64::from(i + 1)).sum();
        let small_total: f64 = (0..12).filter(|i| !large.contains(i)).map(|i| f64::from(i + 1)).sum();
        // Twelve files: one reading thread, this one. Mapped at once: 1, 2 and 8 (after
        // a large one), 3, 6 and 9 (small ones after a large one, which turn it back).
        read::MAPPED_AT_ONCE.with(|n| n.set(0));
        Collector::new(dir.path()).unwrap().collect().unwrap();
        assert_eq!(read::MAPPED_AT_ONCE.with(std::cell::Cell::get), 6);
        for collector in
            [Collector::new(dir.path()).unwrap(), Collector::new(dir.path()).unwrap().with_max_kept_mappings(0)]
        {
            for round in 0..2 {
                let scrape = collector.collect().unwrap();
                assert!(scrape.skipped.is_empty(), "{:?}", scrape.skipped);
                let family = scrape.family("c").unwrap();
                assert_eq!(family.samples.len(), 1401, "round {round}");
                assert_eq!(scrape.value("c_total", &[]), Some(small_total), "round {round}");
                for k in [0, 699, 1399] {
                    assert_eq!(scrape.value("c_total", &[("i", &k.to_string())]), Some(wide_total), "round {round}");
                }
            }
        }
    }

    #[test]
    fn a_kept_mapping_of_a_replaced_file_is_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        stock_worker_files(dir.path(), "7", 2.0);
        let collector = Collector::new(dir.path()).unwrap();
        assert_eq!(values(&collector.collect().unwrap()), ["c_total{} 2.0"]);
        assert_eq!(values(&collector.collect().unwrap()), ["c_total{} 2.0"]);
        // Replaced under the same name (a new inode; the old one is held by the mapping,
        // so its number cannot be reused): the listing's inode tells, without a stat.
        let other = tempfile::tempdir().unwrap();
        stock_worker_files(other.path(), "7", 9.0);
        std::fs::rename(other.path().join("counter_7.db"), dir.path().join("counter_7.db")).unwrap();
        assert_eq!(values(&collector.collect().unwrap()), ["c_total{} 9.0"]);
    }
}

#[test]
fn every_skip_reason_has_a_listed_name() {
    use crate::format::FormatError;
    use crate::format::key::KeyError;
    let all = [
        SkipReason::UnknownName,
        SkipReason::NotARegularFile,
        SkipReason::Vanished,
        SkipReason::Truncated,
        SkipReason::Unreadable(std::io::ErrorKind::PermissionDenied),
        SkipReason::Empty,
        SkipReason::Corrupt(FormatError::ShortHeader { len: 0 }),
        SkipReason::InvalidKey { offset: 8, error: KeyError::NotUtf8 { valid_up_to: 0 } },
        SkipReason::EmptyMetricName { offset: 8 },
        SkipReason::InvalidBucketBound { family: "h".into(), le: "x".into() },
    ];
    let names: Vec<&str> = all.iter().map(SkipReason::as_str).collect();
    assert_eq!(names, SkipReason::NAMES);
}
