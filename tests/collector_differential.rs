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
const PY_WRITE_SCENARIOS: &str = r#"
import math, os, sys
root = sys.argv[1]
from prometheus_client import Counter, Gauge, Histogram, Summary, values
from prometheus_client.mmap_dict import MmapedDict, mmap_key

ident = ['0']

def new_dir(name, first):
    d = os.path.join(root, name)
    os.makedirs(d)
    os.environ['PROMETHEUS_MULTIPROC_DIR'] = d
    ident[0] = first
    values.ValueClass = values.MultiProcessValue(lambda: ident[0])
    return d

MODES = ['all', 'liveall', 'min', 'livemin', 'max', 'livemax', 'sum', 'livesum', 'mostrecent', 'livemostrecent']

def reference():
    new_dir('py_reference', '1001')
    reqs = Counter('app_requests', 'HTTP requests.', ['method', 'status'], registry=None)
    jobs = Counter('app_jobs_total', 'Jobs processed.', registry=None)
    lat = Histogram('app_latency_seconds', 'Latency.', ['route'], buckets=[0.1, 0.5, 1, 5], registry=None)
    size = Summary('app_payload_bytes', 'Payload size.', registry=None)
    gauges = {m: Gauge('app_g_' + m, 'Gauge in mode ' + m + '.', multiprocess_mode=m, registry=None) for m in MODES}
    lg = Gauge('app_queue_len', 'Labeled gauge (mode all).', ['queue'], registry=None)
    inprog = Gauge('app_inprogress', 'In-progress (livesum).', multiprocess_mode='livesum', registry=None)
    for i, w in enumerate(['1001', '1002', '1003']):
        ident[0] = w
        for _ in range(10 * (i + 1)):
            reqs.labels('get', '200').inc()
        reqs.labels(method='post', status='500').inc(0.5 * (i + 1))
        jobs.inc(i + 1)
        for v in (0.05, 0.3, 0.7 * (i + 1), 10.0):
            lat.labels('/a').observe(v)
        if i == 2:
            lat.labels('/b').observe(0.2)
        size.observe(100 * (i + 1))
        for m, g in gauges.items():
            g.set(10 * (i + 1))
        lg.labels('q%d' % (i % 2)).set(i + 0.25)
        inprog.inc(3)
        inprog.dec(1)
    # mostrecent: the first worker writes last, so its value is the newest.
    for w, v in (('1003', 30), ('1002', 20), ('1001', 10)):
        ident[0] = w
        gauges['mostrecent'].set(v)
        gauges['livemostrecent'].set(v)

HOSTILE_HELP = 'Help: "quotes", \\backslash\\, new\nline, tab\t, ctl\x01\x1f\x7f, \u00e9, \U0001F600, \u4e2d\u6587, \\n literal'
HOSTILE_VALUES = ['quote"d', 'back\\slash', 'new\nline', 'tab\there', 'ctl\x01\x1f\x7f', '\u00e9 \u00fc \u00df',
                  '\U0001F600\U0001F389', '\u4e2d\u6587', '', ' lead and trail ', '{}=,#', 'a\\nb', '"\\"', '\r\n']

def hostile():
    new_dir('py_hostile', '1')
    c = Counter('hostile_requests', HOSTILE_HELP, ['v'], registry=None)
    g = Gauge('hostile_gauge', HOSTILE_HELP, ['v', 'w'], registry=None)
    gs = Gauge('hostile_gauge_sum', HOSTILE_HELP, ['v'], multiprocess_mode='livesum', registry=None)
    h = Histogram('hostile_latency_seconds', HOSTILE_HELP, ['v'], buckets=[0.1, 1], registry=None)
    s = Summary('hostile_size_bytes', HOSTILE_HELP, ['v'], registry=None)
    for i, w in enumerate(['1', '2']):
        ident[0] = w
        for j, v in enumerate(HOSTILE_VALUES):
            c.labels(v).inc(j + 1)
            g.labels(v, str(j)).set(j + 0.5)
            gs.labels(v).inc(j)
            h.labels(v).observe(j / 10.0)
            s.labels(v).observe(j)

def utf8_names():
    new_dir('py_utf8_names', '1')
    a = Counter('app.requests', 'Dotted name.', ['la.bel', 'plain'], registry=None)
    b = Gauge('m\u00e9trique', 'Accents.', ['cl\u00e9'], multiprocess_mode='sum', registry=None)
    c = Gauge('1starts_with_digit', 'Digit first.', registry=None)
    d = Histogram('lat.seconds', 'Dotted histogram.', ['r.oute'], buckets=[1], registry=None)
    e = Gauge('with spaces and "quotes"', 'Spaces.', ['x y'], multiprocess_mode='max', registry=None)
    for i, w in enumerate(['1', '2']):
        ident[0] = w
        a.labels('v\u00e9', 'p').inc(i + 1)
        b.labels('\U0001F600').set(i + 1)
        c.set(i)
        d.labels('/x').observe(0.5 * i)
        e.labels('z').set(7 - i)

def colon_names():
    new_dir('py_colon_names', '1')
    a = Counter('app:requests', 'Colon counter.', ['a'], registry=None)
    b = Gauge('job:load:avg', 'Colon gauge.', multiprocess_mode='max', registry=None)
    for i, w in enumerate(['1', '2']):
        ident[0] = w
        a.labels('x').inc(i + 1)
        b.set(i + 0.5)

SPECIALS = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e6, 5e-324, 1234567.0, 999999.0, 1e16, 1e15,
            123456789012.5, 0.1 + 0.2, 1e-05, 0.0001, -1234567.0, 1e300, 2.5e-7, 1e10, -5e-324]

def floats():
    new_dir('py_floats', '1')
    ga = Gauge('float_all', 'Every special float.', ['i'], registry=None)
    up = Counter('sum_order_up', 'Sums 0.1, 0.2, 0.3.', registry=None)
    down = Counter('sum_order_down', 'Sums 0.3, 0.2, 0.1.', registry=None)
    cinf = Counter('counter_special', 'Inf and NaN counters.', ['k'], registry=None)
    gsum = Gauge('gauge_sum_order', 'Order-dependent sum.', multiprocess_mode='sum', registry=None)
    gmin = Gauge('gauge_min_nan_first', 'NaN first sticks.', multiprocess_mode='min', registry=None)
    gmin2 = Gauge('gauge_livemin_nan_later', 'NaN later ignored.', multiprocess_mode='livemin', registry=None)
    gminz = Gauge('gauge_min_zeros', 'Minus zero first.', multiprocess_mode='min', registry=None)
    gmax = Gauge('gauge_max_zeros', 'Zero first.', multiprocess_mode='max', registry=None)
    gmaxn = Gauge('gauge_livemax_nan_first', 'NaN first.', multiprocess_mode='livemax', registry=None)
    gmr = Gauge('gauge_mostrecent_nan', 'Newest is NaN.', multiprocess_mode='mostrecent', registry=None)
    hist = Histogram('hist_float', 'Special bounds.', buckets=[5e-324, 1e-05, 0.005, 1.0, 1e6, 1e10, 1e16], registry=None)
    summ = Summary('summary_float', 'Special observations.', registry=None)
    workers = ['1', '2', '3']
    for i, w in enumerate(workers):
        ident[0] = w
        for j, v in enumerate(SPECIALS):
            ga.labels(str(j)).set(v * (i + 1))
        up.inc([0.1, 0.2, 0.3][i])
        down.inc([0.3, 0.2, 0.1][i])
        cinf.labels('inf').inc(math.inf if i == 1 else 1)
        cinf.labels('big').inc(1e16 + i)
        gsum.set([1e16, 1.0, -1e16][i])
        gmin.set([math.nan, 1.0, 2.0][i])
        gmin2.set([1.0, math.nan, 0.5][i])
        gminz.set([-0.0, 0.0, 1.0][i])
        gmax.set([0.0, -0.0, math.nan][i])
        gmaxn.set([math.nan, 5.0, 6.0][i])
    for i, w in enumerate(workers):
        ident[0] = w
        gmr.set([1.0, 2.0, math.nan][i])
        for v in SPECIALS:
            if not math.isnan(v) and v != -math.inf:
                hist.observe(v)
                summ.observe(v)

def nan_counters():
    # NaN in counter-like samples: exposable, but OpenMetrics forbids it.
    new_dir('py_nan_counters', '1')
    c = Counter('counter_nan', 'NaN counter.', ['k'], registry=None)
    h = Histogram('hist_nan', 'NaN observed.', buckets=[1.0], registry=None)
    s = Summary('summary_nan', 'NaN observed.', registry=None)
    for i, w in enumerate(['1', '2']):
        ident[0] = w
        c.labels('nan').inc(math.nan if i == 1 else 2)
        h.observe(math.nan)
        h.observe(0.5)
        s.observe(math.nan)

def never_set():
    new_dir('py_never_set', '1')
    a = Gauge('never_set_mostrecent', 'Never set.', multiprocess_mode='mostrecent', registry=None)
    b = Gauge('never_set_livemostrecent', 'Never set, labeled.', ['x'], multiprocess_mode='livemostrecent', registry=None)
    c = Gauge('partly_set_mostrecent', 'One of two set.', ['x'], multiprocess_mode='mostrecent', registry=None)
    for i, w in enumerate(['1', '2']):
        ident[0] = w
        b.labels('a')
        c.labels('unset')
        if i == 1:
            c.labels('set').set(4)
        a._value.get()

def many_series():
    new_dir('py_many_series', '0')
    c = Counter('many_requests', 'Many series.', ['route', 'code'], registry=None)
    g = Gauge('many_inflight', 'Many gauges.', ['route'], multiprocess_mode='all', registry=None)
    h = Histogram('many_latency_seconds', 'Many histograms.', ['route'], registry=None)
    for i, w in enumerate(['10', '11', '12', '13']):
        ident[0] = w
        for r in range(60):
            c.labels('/r%d' % r, str(200 + r % 3)).inc(r * 0.1 + i)
            g.labels('/r%d' % r).set(r - i)
            h.labels('/r%d' % (r % 7)).observe(r / 30.0)

def raw(d, name, entries):
    m = MmapedDict(os.path.join(d, name))
    for k, v, t in entries:
        m.write_value(k, v, t)
    m.close()

def K(metric, sample, labels, help='h'):
    return mmap_key(metric, sample, list(labels.keys()), list(labels.values()), help)

def raw_quirks():
    d = new_dir('py_raw_quirks', '0')
    raw(d, 'counter_1.db', [
        (K('mixed', 'mixed_total', {}, 'from counter'), 1.0, 0.0),
        (K('dup', 'dup_total', {'a': '1'}), 1.0, 0.0),
        ('["dup","dup_total",{"a":"1"},"h"]', 2.0, 0.0),
        ('["dup", "dup_total", {"b": "2", "a": "1"}, "h"]', 4.0, 0.0),
        ('["dup", "dup_total", {"b": "2", "a": "1", "b": "3"}, "h"]', 8.0, 0.0),
    ])
    raw(d, 'gauge_all_2.db', [(K('mixed', 'mixed', {}, 'from gauge'), 5.0, 0.0)])
    raw(d, 'gauge_all_w_1.db', [(K('pidq', 'pidq', {'pid': 'user'}), 1.0, 0.0), (K('pidq', 'pidq', {}), 1.5, 0.0)])
    raw(d, 'gauge_all_abcd_1.db', [(K('pidq', 'pidq', {'pid': 'user'}), 2.0, 0.0)])
    raw(d, 'gauge_all_x_3.db', [(K('pidq', 'pidq', {'pid': 'other'}), 3.0, 0.0)])
    raw(d, 'gauge_sum_3.db', [(K('modes', 'modes', {'pid': 'p'}), 1.0, 0.0)])
    raw(d, 'gauge_max_4.db', [(K('modes', 'modes', {}), 2.0, 0.0), (K('modes', 'modes', {}), 3.0, 0.0)])
    raw(d, 'histogram_5.db', [
        (K('hraw', 'hraw_count', {}), 9.0, 0.0),
        (K('hraw', 'hraw_sum', {}), 1.0, 0.0),
        (K('hraw', 'hraw_bucket', {'le': '-0.0'}), 1.0, 0.0),
        (K('hraw', 'hraw_bucket', {'le': '0.0'}), 1.0, 0.0),
        (K('hraw', 'hraw_bucket', {'le': '1e+10'}), 2.0, 0.0),
        (K('hraw', 'hraw_bucket', {'le': '10000000000.0'}), 3.0, 0.0),
        (K('hraw', 'hraw_bucket', {'le': '+Inf'}), 1.0, 0.0),
        (K('hraw', 'hraw_bucket', {'le': '1.0', 'x': 'b'}), 1.0, 0.0),
        (K('hraw', 'hraw_other', {'le': '2', 'x': 'b'}), 1.0, 0.0),
        (K('hraw', 'hraw_sum', {'x': 'c'}), 4.0, 0.0),
    ])
    raw(d, 'gauge_mostrecent_6.db', [
        (K('mr', 'mr', {'k': 'never'}), 7.0, 0.0),
        (K('mr', 'mr', {'k': 'tie'}), 1.0, 100.0),
        (K('mr', 'mr', {'k': 'newer'}), 1.0, 100.0),
        (K('mrnever', 'mrnever', {}), 3.0, 0.0),
    ])
    raw(d, 'gauge_livemostrecent_7.db', [
        (K('mr', 'mr', {'k': 'tie'}), 2.0, 100.0),
        (K('mr', 'mr', {'k': 'newer'}), 2.0, 100.25),
        (K('mr', 'mr', {'k': 'negative'}), 2.0, -5.0),
    ])
    raw(d, 'counter_8.db', [
        (K('om', 'om_created', {}), 5.0, 0.0),
        (K('om', 'om_total', {}), 1.0, 0.0),
        (K('om', 'om_gsum', {}), 2.0, 0.0),
        (K('om', 'om_gcount', {'a': 'b'}), 3.0, 0.0),
    ])
    raw(d, 'summary_9.db', [(K('s', 's_count', {}, 'help one'), 1.0, 0.0), (K('s', 's_sum', {}, 'help two'), 2.0, 0.0)])
    # A key whose length makes the padding 8 spaces.
    key = K('pad', 'pad_total', {'x': 'y' * 30})
    while (len(key.encode()) + 4) % 8:
        key = K('pad', 'pad_total', {'x': 'y' * (len(key) - 10)})
    raw(d, 'counter_9.db', [(key, 1.0, 0.0)])
    # used == 0: Python treats it as empty.
    with open(os.path.join(d, 'counter_0.db'), 'wb') as f:
        f.write(b'\0' * 65536)

def mixed_python_part():
    new_dir('mixed', '7')
    c = Counter('shared_requests', 'Shared between Python and Rust.', ['route'], registry=None)
    g = Gauge('shared_inflight', 'Shared gauge.', multiprocess_mode='livesum', registry=None)
    ga = Gauge('shared_all', 'Shared all gauge.', ['k'], registry=None)
    h = Histogram('shared_latency_seconds', 'Shared histogram.', buckets=[0.1, 1.0], registry=None)
    c.labels('/a').inc(0.1)
    g.inc(2)
    ga.labels('v').set(1.5)
    h.observe(0.05)
    h.observe(3)

for f in (reference, hostile, utf8_names, colon_names, floats, nan_counters, never_set, many_series, raw_quirks,
          mixed_python_part):
    f()
os.makedirs(os.path.join(root, 'empty'))
"#;

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
    for (i, id) in ["1001", "1002", "1003"].into_iter().enumerate() {
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
        r.counter(Opts::new("sum_order_up", "0.1 + 0.2 + 0.3"))?.inc_by([0.1, 0.2, 0.3][i]);
        r.counter(Opts::new("sum_order_down", "0.3 + 0.2 + 0.1"))?.inc_by([0.3, 0.2, 0.1][i]);
        r.gauge(Opts::new("gauge_min_nan_first", "NaN first."), GaugeMode::Min)?.set([f64::NAN, 1.0, 2.0][i]);
        r.gauge(Opts::new("gauge_max_zeros", "Zero first."), GaugeMode::Max)?.set([0.0, -0.0, f64::NAN][i]);
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
