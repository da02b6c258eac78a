//! Differential tests of the scrape side against prometheus_client 0.26.0.
//!
//! Directories are written by Python (its own metric classes with fixed process
//! identifiers, and raw `MmapedDict` files with hand-made keys), by our `Registry`,
//! and by both at once. For each, our text and OpenMetrics bytes must equal what
//! Python's `generate_latest` and `openmetrics.exposition.generate_latest` print for a
//! `MultiProcessCollector` merging the same files in sorted order, under every
//! escaping scheme; and Python's strict OpenMetrics parser must accept our output.
//!
//! Python is slow to start, so all Python-written scenarios are written by one
//! interpreter and all expositions and parses are done by another.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prometheus_multiproc::expose::{self, Escaping, Format};
use prometheus_multiproc::{Collector, GaugeMode, Opts, Registry, WorkerId};
use serde_json::{Value, json};
use support::{TestDir, run_python};

const ESCAPINGS: [Escaping; 4] = [Escaping::Underscores, Escaping::AllowUtf8, Escaping::Dots, Escaping::Values];

/// Writes every Python scenario under `sys.argv[1]`, one directory each.
const PY_WRITE_SCENARIOS: &str = include_str!("support/py_write_scenarios.py");

/// For each directory in the request: Python's text and OpenMetrics under each
/// escaping; then the strict parser's verdict on each given OpenMetrics text.
const PY_EXPOSE_AND_PARSE: &str = r#"
import glob, json, os, sys
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics import exposition as om
from prometheus_client.openmetrics.parser import text_string_to_metric_families
req = json.load(open(sys.argv[1]))
out = {'expose': {}, 'parse': []}
for d in req['dirs']:
    files = sorted(glob.glob(os.path.join(d, '*.db')))
    class Sorted:
        def collect(self):
            return MultiProcessCollector.merge(files, accumulate=True)
    r = CollectorRegistry()
    r.register(Sorted())
    res = {}
    for esc in ['underscores', 'allow-utf-8', 'dots', 'values']:
        res['text/' + esc] = generate_latest(r, escaping=esc).decode('utf-8')
        res['om/' + esc] = om.generate_latest(r, escaping=esc).decode('utf-8')
    out['expose'][d] = res
for text in req['parse']:
    try:
        list(text_string_to_metric_families(text))
        out['parse'].append(None)
    except Exception as e:
        out['parse'].append('%s: %s' % (type(e).__name__, e))
json.dump(out, open(sys.argv[2], 'w'))
"#;

/// All scenario directories (Python-written, Rust-written, mixed), created once.
struct Scenarios {
    _root: TestDir,
    dirs: Vec<PathBuf>,
    /// Our writers stay alive while the directories are compared: Python counts every
    /// writer as alive, while our collector drops the live-mode gauges of writers that
    /// have exited (see `cleanup::liveness`).
    _writers: std::sync::Mutex<Vec<Registry>>,
}

fn scenarios() -> &'static Scenarios {
    static SCENARIOS: OnceLock<Scenarios> = OnceLock::new();
    SCENARIOS.get_or_init(|| {
        let root = TestDir::new();
        run_python(PY_WRITE_SCENARIOS, &[root.path().to_str().unwrap()]);
        let writers = write_rust_scenarios(root.path()).expect("write the Rust scenarios");
        let mut dirs: Vec<PathBuf> = fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().path()).collect();
        dirs.sort();
        Scenarios { _root: root, dirs, _writers: std::sync::Mutex::new(writers) }
    })
}

fn worker(dir: &Path, id: &str) -> Registry {
    Registry::builder().dir(dir).worker_id(WorkerId::new(id).unwrap()).build().unwrap()
}

const HOSTILE_VALUES: [&str; 13] = [
    "quote\"d",
    "back\\slash",
    "new\nline",
    "tab\there",
    "ctl\u{1}\u{1f}\u{7f}",
    "é ü ß",
    "😀🎉",
    "中文",
    "",
    " lead and trail ",
    "{}=,#",
    "a\\nb",
    "\"\\\"",
];
const HOSTILE_HELP: &str = "Help: \"quotes\", \\backslash\\, new\nline, tab\t, ctl\u{1}\u{7f}, é, 😀, \\n literal";

/// Directories written by our own writer, with several worker IDs, and our half of
/// the mixed directory.
fn write_rust_scenarios(root: &Path) -> prometheus_multiproc::Result<Vec<Registry>> {
    let mut writers = Vec::new();
    let dir = root.join("rust_reference");
    fs::create_dir(&dir).unwrap();
    // Six workers: about 100 files, enough for the collector to read them with a thread
    // per core (at least 32 files each), whose output must not depend on it.
    for (i, id) in ["1001", "1002", "1003", "1004", "1005", "1006"].into_iter().enumerate() {
        let r = worker(&dir, id);
        writers.push(r.clone());
        let n = (i + 1) as f64;
        let reqs = r.counter_family(Opts::new("app_requests_total", "HTTP requests."), &["method", "status"])?;
        for _ in 0..10 * (i + 1) {
            reqs.get(&["get", "200"])?.inc();
        }
        reqs.get(&["post", "500"])?.inc_by(0.5 * n);
        r.counter(Opts::new("app_jobs", "Jobs processed."))?.inc_by(n);
        let lat =
            r.histogram_family(Opts::new("app_latency_seconds", "Latency."), &[0.1, 0.5, 1.0, 5.0], &["route"])?;
        for v in [0.05, 0.3, 0.7 * n, 10.0] {
            lat.get(&["/a"])?.observe(v);
        }
        if i == 2 {
            lat.get(&["/b"])?.observe(0.2);
        }
        r.summary(Opts::new("app_payload_bytes", "Payload size."))?.observe(100.0 * n);
        for mode in GaugeMode::ALL {
            let g = r.gauge(
                Opts::new(format!("app_g_{}", mode.as_str()), format!("Gauge in mode {}.", mode.as_str())),
                mode,
            )?;
            g.set(10.0 * n);
        }
        let hostile = r.counter_family(Opts::new("hostile_requests", HOSTILE_HELP), &["v"])?;
        let hostile_gauge = r.gauge_family(Opts::new("hostile_gauge", HOSTILE_HELP), GaugeMode::All, &["v", "w"])?;
        for (j, v) in HOSTILE_VALUES.iter().enumerate() {
            hostile.get(&[v])?.inc_by(j as f64 + n);
            hostile_gauge.get(&[v, &j.to_string()])?.set(j as f64 + 0.5);
        }
        let specials = r.gauge_family(Opts::new("float_all", "Special floats."), GaugeMode::All, &["i"])?;
        let values = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e6, 5e-324, 1234567.0, 1e16, 0.1 + 0.2, 1e-5];
        for (j, v) in values.into_iter().enumerate() {
            specials.get(&[&j.to_string()])?.set(v * n);
        }
        r.counter(Opts::new("sum_order_up", "0.1 + 0.2 + 0.3"))?.inc_by([0.1, 0.2, 0.3][i % 3]);
        r.counter(Opts::new("sum_order_down", "0.3 + 0.2 + 0.1"))?.inc_by([0.3, 0.2, 0.1][i % 3]);
        r.gauge(Opts::new("gauge_min_nan_first", "NaN first."), GaugeMode::Min)?.set([f64::NAN, 1.0, 2.0][i % 3]);
        r.gauge(Opts::new("gauge_max_zeros", "Zero first."), GaugeMode::Max)?.set([0.0, -0.0, f64::NAN][i % 3]);
        r.gauge(Opts::new("never_set", "Never set."), GaugeMode::MostRecent)?;
    }
    // Most recent: the first worker sets last.
    for (i, v) in [(2, 30.0), (1, 20.0), (0, 10.0)] {
        let r = &writers[i]; // the registries of 1001, 1002, 1003, still alive
        r.gauge(Opts::new("app_g_mostrecent", "Gauge in mode mostrecent."), GaugeMode::MostRecent)?.set(v);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }

    // Our half of the directory Python started.
    let mixed = root.join("mixed");
    let r = worker(&mixed, "8");
    writers.push(r.clone());
    r.counter_family(Opts::new("shared_requests", "Shared between Python and Rust."), &["route"])?
        .get(&["/a"])?
        .inc_by(0.2);
    r.counter_family(Opts::new("shared_requests", "Shared between Python and Rust."), &["route"])?.get(&["/b"])?.inc();
    r.gauge(Opts::new("shared_inflight", "Shared gauge."), GaugeMode::LiveSum)?.inc_by(3.0);
    r.gauge_family(Opts::new("shared_all", "Shared all gauge."), GaugeMode::All, &["k"])?.get(&["v"])?.set(2.5);
    let h = r.histogram(Opts::new("shared_latency_seconds", "Shared histogram."), &[0.1, 1.0])?;
    h.observe(0.5);
    h.observe(0.01);
    Ok(writers)
}

/// Our exposition of `dir`.
fn ours(dir: &Path, format: Format, escaping: Escaping) -> String {
    let scrape = Collector::new(dir).unwrap().collect().unwrap();
    assert!(scrape.skipped.is_empty(), "{}: skipped {:?}", dir.display(), scrape.skipped);
    let mut out = String::new();
    expose::encode(&scrape.families, format, escaping, &mut out);
    out
}

struct PythonResults {
    expose: BTreeMap<String, BTreeMap<String, String>>,
    /// Verdicts on our OpenMetrics outputs, in [`parse_inputs`] order.
    our_verdicts: Vec<Option<String>>,
    /// Verdicts on Python's own OpenMetrics outputs, same order.
    their_verdicts: Vec<Option<String>>,
    parsed: Vec<(String, Escaping)>,
}

fn key(format: Format, escaping: Escaping) -> String {
    let f = match format {
        Format::Text => "text",
        Format::OpenMetrics => "om",
        other => panic!("no differential scenario for {other:?}"),
    };
    format!("{f}/{}", escaping.as_str())
}

/// One Python run: every directory's expositions, and the parser's verdict on our
/// OpenMetrics output (underscores and allow-utf-8) and on Python's.
fn python_results() -> &'static PythonResults {
    static RESULTS: OnceLock<PythonResults> = OnceLock::new();
    RESULTS.get_or_init(|| {
        let s = scenarios();
        let dirs: Vec<String> = s.dirs.iter().map(|d| d.to_str().unwrap().to_owned()).collect();
        // First pass: Python's expositions (needed to parse them too).
        let tmp = TestDir::new();
        let req = tmp.path().join("req.json");
        let resp = tmp.path().join("resp.json");
        let run = |parse: &[String]| -> Value {
            fs::write(&req, json!({ "dirs": dirs, "parse": parse }).to_string()).unwrap();
            run_python(PY_EXPOSE_AND_PARSE, &[req.to_str().unwrap(), resp.to_str().unwrap()]);
            serde_json::from_str(&fs::read_to_string(&resp).unwrap()).unwrap()
        };
        let mut parsed = Vec::new();
        let mut texts = Vec::new();
        for d in &s.dirs {
            for esc in [Escaping::Underscores, Escaping::AllowUtf8] {
                parsed.push((d.file_name().unwrap().to_str().unwrap().to_owned(), esc));
                texts.push(ours(d, Format::OpenMetrics, esc));
            }
        }
        let first = run(&texts);
        let expose: BTreeMap<String, BTreeMap<String, String>> =
            serde_json::from_value(first["expose"].clone()).unwrap();
        let our_verdicts: Vec<Option<String>> = serde_json::from_value(first["parse"].clone()).unwrap();
        let theirs: Vec<String> = s
            .dirs
            .iter()
            .flat_map(|d| {
                let e = &expose[d.to_str().unwrap()];
                [Escaping::Underscores, Escaping::AllowUtf8].map(|esc| e[&key(Format::OpenMetrics, esc)].clone())
            })
            .collect();
        let their_verdicts: Vec<Option<String>> = serde_json::from_value(run(&theirs)["parse"].clone()).unwrap();
        PythonResults { expose, our_verdicts, their_verdicts, parsed }
    })
}

/// Panics with the first differing line when `ours != theirs`.
fn assert_same_bytes(what: &str, ours: &str, theirs: &str) {
    if ours == theirs {
        return;
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (ours.split_inclusive('\n').collect(), theirs.split_inclusive('\n').collect());
    let line = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
    panic!(
        "{what}: ours differs from Python at line {}\n  ours:   {:?}\n  python: {:?}\n(ours {} bytes, python {} bytes)",
        line + 1,
        a.get(line),
        b.get(line),
        ours.len(),
        theirs.len()
    );
}

fn check_dirs(names: impl Fn(&str) -> bool) -> usize {
    let py = python_results();
    let mut checked = 0;
    for dir in &scenarios().dirs {
        let name = dir.file_name().unwrap().to_str().unwrap();
        if !names(name) {
            continue;
        }
        let theirs = &py.expose[dir.to_str().unwrap()];
        for format in [Format::Text, Format::OpenMetrics] {
            for esc in ESCAPINGS {
                let k = key(format, esc);
                assert_same_bytes(&format!("{name} {k}"), &ours(dir, format, esc), &theirs[&k]);
                checked += 1;
            }
        }
    }
    checked
}

#[test]
fn python_written_directories_expose_byte_identically() {
    let checked = check_dirs(|name| name.starts_with("py_") || name == "empty");
    // 10 directories × 2 formats × 4 escapings.
    assert_eq!(checked, 80);
}

#[test]
fn registry_written_directories_expose_byte_identically() {
    assert_eq!(check_dirs(|name| name.starts_with("rust_")), 8);
}

#[test]
fn directories_written_by_python_and_rust_together_expose_byte_identically() {
    let dir = scenarios().dirs.iter().find(|d| d.ends_with("mixed")).unwrap();
    let files = fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_str().unwrap().ends_with("_8.db"))
        .count();
    assert!(files >= 3, "our writer added its files");
    assert_eq!(check_dirs(|name| name == "mixed"), 8);
}

#[test]
fn default_exposition_matches_the_shared_python_helpers() {
    // The batch above reimplements support::python_exposition for speed; check it
    // agrees with the shared helpers on one directory, and that the default text is
    // what `render` serves without an Accept header.
    let dir = scenarios().dirs.iter().find(|d| d.ends_with("py_reference")).unwrap();
    let scrape = Collector::new(dir).unwrap().collect().unwrap();
    let page = expose::render(&scrape, None, None);
    assert_eq!(page.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_same_bytes("render(text)", std::str::from_utf8(&page.body).unwrap(), &support::python_exposition(dir));
    let page = expose::render(&scrape, Some("application/openmetrics-text"), None);
    assert_same_bytes("render(om)", std::str::from_utf8(&page.body).unwrap(), &support::python_openmetrics(dir));
}

#[test]
fn pythons_strict_parser_accepts_our_openmetrics() {
    let py = python_results();
    // Directories whose data no OpenMetrics exposition can carry validly: Python's own
    // output is rejected there too, and ours must be rejected for the same reason.
    let invalid_data = |name: &str| matches!(name, "py_raw_quirks" | "py_nan_counters");
    let mut accepted = 0;
    for (i, (name, esc)) in py.parsed.iter().enumerate() {
        let (ours, theirs) = (&py.our_verdicts[i], &py.their_verdicts[i]);
        assert_eq!(ours, theirs, "{name} ({}): parser verdicts differ", esc.as_str());
        if invalid_data(name) {
            assert!(ours.is_some(), "{name} ({}) was expected to be rejected", esc.as_str());
        } else {
            assert_eq!(ours, &None, "{name} ({}): Python's parser rejected our OpenMetrics", esc.as_str());
            accepted += 1;
        }
    }
    assert_eq!(accepted, 2 * (scenarios().dirs.len() - 2));
}
