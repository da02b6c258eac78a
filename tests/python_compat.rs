//! Byte compatibility with Python's prometheus_client 0.26.0 multiprocess mode.
//!
//! Each test writes a scenario as a list of [`Op`]s. Our [`Registry`] runs the list in
//! this process; a small Python interpreter ([`PY_RUN_OPS`]) runs the same list with
//! prometheus_client's own metric classes and `MultiProcessValue`. Then the files
//! are compared byte for byte, or one side continues the other's files.

mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_multiproc::format::{self, key::decode_key};
use prometheus_multiproc::{
    Counter, DEFAULT_BUCKETS, Family, Gauge, GaugeMode, Histogram, Opts, Registry, Summary, WorkerId,
};
use serde_json::{Value, json};
use support::{TestDir, run_python};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Per handle, its current value(s); `None` for a labeled parent (see [`report`]).
type Report = Vec<Option<Vec<f64>>>;

/// A merged sample from Python's collector: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// The worker ID both writers use (`MultiProcessValue(lambda: 4242)` in Python).
const WORKER: &str = "4242";

// ---------------------------------------------------------------------------------
// Scenarios: a list of operations both writers perform in the same order.
// ---------------------------------------------------------------------------------

/// The kind of metric a [`Op::Declare`] creates.
#[derive(Debug, Clone)]
enum Type {
    Counter,
    Gauge(GaugeMode),
    /// `None`: the default buckets (Python's `Histogram.DEFAULT_BUCKETS`, our
    /// [`DEFAULT_BUCKETS`]).
    Histogram(Option<Vec<f64>>),
    Summary,
}

/// Name, help, namespace, subsystem and unit of a declaration.
#[derive(Debug, Clone, Default)]
struct Meta {
    name: String,
    help: String,
    namespace: String,
    subsystem: String,
    unit: String,
}

impl Meta {
    fn new(name: &str, help: &str) -> Meta {
        Meta { name: name.into(), help: help.into(), ..Meta::default() }
    }

    fn namespace(mut self, namespace: &str) -> Meta {
        self.namespace = namespace.into();
        self
    }

    fn subsystem(mut self, subsystem: &str) -> Meta {
        self.subsystem = subsystem.into();
        self
    }

    fn unit(mut self, unit: &str) -> Meta {
        self.unit = unit.into();
        self
    }

    fn opts(&self) -> Opts {
        Opts::new(&self.name, &self.help).namespace(&self.namespace).subsystem(&self.subsystem).unit(&self.unit)
    }
}

/// One step. `Declare` and `Child` each create the next handle (numbered from 0);
/// the other steps name a handle by that number.
#[derive(Debug, Clone)]
enum Op {
    /// Python: `Type(name, help, labelnames, namespace=, subsystem=, unit=, registry=None, ...)`.
    Declare {
        ty: Type,
        meta: Meta,
        labels: Vec<String>,
    },
    /// Python: `family.labels(*values)`; ours: `family.get(values)`.
    Child {
        family: usize,
        values: Vec<String>,
    },
    Inc(usize, f64),
    Dec(usize, f64),
    Set(usize, f64),
    Observe(usize, f64),
    /// Both sides report the current value(s) of every handle (see [`report`]).
    Report,
}

/// Builds a list of [`Op`]s and numbers the handles.
#[derive(Debug, Clone, Default)]
struct Script {
    ops: Vec<Op>,
    handles: usize,
}

impl Script {
    fn declare(&mut self, ty: Type, meta: Meta, labels: &[&str]) -> usize {
        self.ops.push(Op::Declare { ty, meta, labels: labels.iter().map(|l| (*l).to_owned()).collect() });
        self.handles += 1;
        self.handles - 1
    }

    fn child(&mut self, family: usize, values: &[&str]) -> usize {
        self.ops.push(Op::Child { family, values: values.iter().map(|v| (*v).to_owned()).collect() });
        self.handles += 1;
        self.handles - 1
    }

    fn inc(&mut self, handle: usize, amount: f64) {
        self.ops.push(Op::Inc(handle, amount));
    }

    fn dec(&mut self, handle: usize, amount: f64) {
        self.ops.push(Op::Dec(handle, amount));
    }

    fn set(&mut self, handle: usize, value: f64) {
        self.ops.push(Op::Set(handle, value));
    }

    fn observe(&mut self, handle: usize, value: f64) {
        self.ops.push(Op::Observe(handle, value));
    }

    fn report(&mut self) {
        self.ops.push(Op::Report);
    }

    /// The same declarations and children, without any write: what a restarted
    /// process does before it continues counting.
    fn declarations(&self) -> Script {
        let ops = self.ops.iter().filter(|op| matches!(op, Op::Declare { .. } | Op::Child { .. })).cloned().collect();
        Script { ops, handles: self.handles }
    }

    fn then(&self, more: &Script) -> Script {
        assert_eq!(more.handles, 0, "appended operations must not create handles");
        Script { ops: self.ops.iter().chain(&more.ops).cloned().collect(), handles: self.handles }
    }

    /// The operations as JSON for [`PY_RUN_OPS`]. Floats travel as Rust's shortest
    /// round-trip text (`"NaN"`, `"inf"`, `"-0.0"`, `"1e-7"`), which Python's
    /// `float()` parses to the same bits.
    fn to_json(&self) -> String {
        let f = |v: f64| format!("{v:?}");
        let ops: Vec<Value> = self
            .ops
            .iter()
            .map(|op| match op {
                Op::Declare { ty, meta, labels } => {
                    let (type_name, mode, buckets) = match ty {
                        Type::Counter => ("counter", None, None),
                        Type::Gauge(mode) => ("gauge", Some(mode.as_str()), None),
                        Type::Histogram(buckets) => {
                            ("histogram", None, buckets.as_ref().map(|b| b.iter().map(|v| f(*v)).collect::<Vec<_>>()))
                        }
                        Type::Summary => ("summary", None, None),
                    };
                    json!({
                        "op": "declare", "type": type_name, "mode": mode, "buckets": buckets,
                        "name": meta.name, "help": meta.help, "namespace": meta.namespace,
                        "subsystem": meta.subsystem, "unit": meta.unit, "labels": labels,
                    })
                }
                Op::Child { family, values } => json!({"op": "child", "family": family, "values": values}),
                Op::Inc(h, v) => json!({"op": "inc", "h": h, "v": f(*v)}),
                Op::Dec(h, v) => json!({"op": "dec", "h": h, "v": f(*v)}),
                Op::Set(h, v) => json!({"op": "set", "h": h, "v": f(*v)}),
                Op::Observe(h, v) => json!({"op": "observe", "h": h, "v": f(*v)}),
                Op::Report => json!({"op": "report"}),
            })
            .collect();
        serde_json::to_string(&ops).unwrap()
    }
}

/// Runs a [`Script`] with prometheus_client: `argv[1]` is the metrics directory,
/// `argv[2]` the JSON operations. Each `report` prints one JSON line: per handle, the
/// `repr` of its current value(s) (`null` for a labeled parent).
const PY_RUN_OPS: &str = r#"
import json, os, sys
os.environ['PROMETHEUS_MULTIPROC_DIR'] = sys.argv[1]
from prometheus_client import Counter, Gauge, Histogram, Summary, values
values.ValueClass = values.MultiProcessValue(lambda: 4242)

TYPES = {'counter': Counter, 'gauge': Gauge, 'histogram': Histogram, 'summary': Summary}

def current(h):
    if h._labelnames and not h._labelvalues:
        return None
    if isinstance(h, (Counter, Gauge)):
        vals = [h._value.get()]
    elif isinstance(h, Summary):
        vals = [h._count.get(), h._sum.get()]
    else:
        vals = [h._sum.get()] + [b.get() for b in h._buckets]
    return [repr(v) for v in vals]

with open(sys.argv[2], encoding='utf-8') as f:
    ops = json.load(f)
handles = []
for op in ops:
    kind = op['op']
    if kind == 'declare':
        kwargs = dict(labelnames=op['labels'], namespace=op['namespace'], subsystem=op['subsystem'],
                      unit=op['unit'], registry=None)
        if op['mode'] is not None:
            kwargs['multiprocess_mode'] = op['mode']
        if op['buckets'] is not None:
            kwargs['buckets'] = [float(b) for b in op['buckets']]
        handles.append(TYPES[op['type']](op['name'], op['help'], **kwargs))
    elif kind == 'child':
        handles.append(handles[op['family']].labels(*op['values']))
    elif kind == 'inc':
        handles[op['h']].inc(float(op['v']))
    elif kind == 'dec':
        handles[op['h']].dec(float(op['v']))
    elif kind == 'set':
        handles[op['h']].set(float(op['v']))
    elif kind == 'observe':
        handles[op['h']].observe(float(op['v']))
    elif kind == 'report':
        print(json.dumps([current(h) for h in handles]))
    else:
        raise ValueError('unknown op %r' % kind)
"#;

/// Every merged sample Python's `MultiProcessCollector` reports for `argv[1]`, as a
/// JSON list of `[name, {labels}, repr(value)]` (JSON, so that label values with
/// newlines survive).
const PY_COLLECT: &str = r#"
import json, sys
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
r = CollectorRegistry()
MultiProcessCollector(r, path=sys.argv[1])
print(json.dumps([[s.name, s.labels, repr(s.value)] for fam in r.collect() for s in fam.samples]))
"#;

/// Runs `script` with Python on `dir` and returns its reports.
fn run_in_python(dir: &Path, script: &Script) -> Vec<Report> {
    let scratch = TestDir::new();
    let ops = scratch.path().join("ops.json");
    fs::write(&ops, script.to_json()).unwrap();
    let out = run_python(PY_RUN_OPS, &[dir.to_str().unwrap(), ops.to_str().unwrap()]);
    out.lines()
        .map(|line| {
            let handles: Vec<Option<Vec<String>>> = serde_json::from_str(line).expect("a report line");
            handles
                .into_iter()
                .map(|h| h.map(|vals| vals.iter().map(|v| v.parse::<f64>().expect("a Python float repr")).collect()))
                .collect()
        })
        .collect()
}

/// A handle our registry handed out.
#[derive(Debug, Clone)]
enum Handle {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
    Summary(Summary),
    Counters(Family<Counter>),
    Gauges(Family<Gauge>),
    Histograms(Family<Histogram>),
    Summaries(Family<Summary>),
}

/// Runs `ops` with our registry, appending to `handles`; returns the reports.
fn run_in_rust(
    registry: &Registry,
    handles: &mut Vec<Handle>,
    ops: &[Op],
) -> Result<Vec<Report>, Box<dyn std::error::Error>> {
    let mut reports = Vec::new();
    for op in ops {
        match op {
            Op::Declare { ty, meta, labels } => {
                let opts = meta.opts();
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                let single = labels.is_empty();
                handles.push(match ty {
                    Type::Counter if single => Handle::Counter(registry.counter(opts)?),
                    Type::Counter => Handle::Counters(registry.counter_family(opts, &labels)?),
                    Type::Gauge(mode) if single => Handle::Gauge(registry.gauge(opts, *mode)?),
                    Type::Gauge(mode) => Handle::Gauges(registry.gauge_family(opts, *mode, &labels)?),
                    Type::Histogram(buckets) => {
                        let buckets = buckets.as_deref().unwrap_or(&DEFAULT_BUCKETS);
                        if single {
                            Handle::Histogram(registry.histogram(opts, buckets)?)
                        } else {
                            Handle::Histograms(registry.histogram_family(opts, buckets, &labels)?)
                        }
                    }
                    Type::Summary if single => Handle::Summary(registry.summary(opts)?),
                    Type::Summary => Handle::Summaries(registry.summary_family(opts, &labels)?),
                });
            }
            Op::Child { family, values } => {
                let values: Vec<&str> = values.iter().map(String::as_str).collect();
                let child = match &handles[*family] {
                    Handle::Counters(f) => Handle::Counter(f.get(&values)?),
                    Handle::Gauges(f) => Handle::Gauge(f.get(&values)?),
                    Handle::Histograms(f) => Handle::Histogram(f.get(&values)?),
                    Handle::Summaries(f) => Handle::Summary(f.get(&values)?),
                    other => panic!("scenario bug: child of a metric without labels: {other:?}"),
                };
                handles.push(child);
            }
            Op::Inc(h, v) => match &handles[*h] {
                Handle::Counter(c) => c.try_inc_by(*v)?,
                Handle::Gauge(g) => g.try_inc_by(*v)?,
                other => panic!("scenario bug: inc on {other:?}"),
            },
            Op::Dec(h, v) => match &handles[*h] {
                Handle::Gauge(g) => g.try_inc_by(-*v)?,
                other => panic!("scenario bug: dec on {other:?}"),
            },
            Op::Set(h, v) => match &handles[*h] {
                Handle::Gauge(g) => g.set(*v),
                other => panic!("scenario bug: set on {other:?}"),
            },
            Op::Observe(h, v) => match &handles[*h] {
                Handle::Histogram(m) => m.observe(*v),
                Handle::Summary(m) => m.observe(*v),
                other => panic!("scenario bug: observe on {other:?}"),
            },
            Op::Report => reports.push(report(handles)),
        }
    }
    Ok(reports)
}

/// Per handle, the value(s) this process holds, as [`PY_RUN_OPS`] reports them:
/// counter/gauge `[value]`, summary `[count, sum]`, histogram `[sum, bucket...]`
/// (non-cumulative), `None` for a labeled parent.
fn report(handles: &[Handle]) -> Report {
    handles
        .iter()
        .map(|h| match h {
            Handle::Counter(c) => Some(vec![c.get()]),
            Handle::Gauge(g) => Some(vec![g.get()]),
            Handle::Summary(s) => Some(vec![s.count(), s.sum()]),
            Handle::Histogram(m) => Some(std::iter::once(m.sum()).chain(m.bucket_counts()).collect()),
            Handle::Counters(_) | Handle::Gauges(_) | Handle::Histograms(_) | Handle::Summaries(_) => None,
        })
        .collect()
}

fn worker_registry(dir: &Path) -> Result<Registry, Box<dyn std::error::Error>> {
    Ok(Registry::builder().dir(dir).worker_id(WorkerId::new(WORKER)?).build()?)
}

/// Asserts two reports are equal value by value (bits, any NaN equal to any NaN),
/// naming the first handle that differs.
fn assert_reports_equal(ours: &[Option<Vec<f64>>], theirs: &[Option<Vec<f64>>], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: number of handles");
    let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let equal = match (a, b) {
            (Some(a), Some(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(*x, *y)),
            (None, None) => true,
            _ => false,
        };
        assert!(equal, "{what}: handle #{i} differs: ours {a:?}, Python {b:?}");
    }
}

// ---------------------------------------------------------------------------------
// Comparing directories byte for byte, with readable diffs.
// ---------------------------------------------------------------------------------

/// Written over every non-zero `mostrecent` timestamp before comparing (zero
/// timestamps, of never-set series, stay zero and are compared).
const TIMESTAMP_MARK: [u8; 8] = [0xee; 8];

/// The metric files of a directory, by name: every `*.db` not starting with `.`, the
/// files Python's collector globs. (Other files, such as our writers' liveness locks,
/// are no part of the format Python reads.)
fn read_dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().expect("UTF-8 file name");
            if !name.ends_with(".db") || name.starts_with('.') {
                return None;
            }
            assert!(entry.file_type().unwrap().is_file(), "{}: not a regular file", entry.path().display());
            Some((name, fs::read(entry.path()).unwrap()))
        })
        .collect()
}

fn is_most_recent_file(name: &str) -> bool {
    name.starts_with("gauge_mostrecent_") || name.starts_with("gauge_livemostrecent_")
}

/// Masks the timestamps of a `mostrecent` file: each non-zero one must be a plausible
/// time of this test run, and is replaced by [`TIMESTAMP_MARK`]. Returns how many
/// were masked; problems are pushed to `problems`.
fn mask_timestamps(name: &str, side: &str, bytes: &mut [u8], since: f64, problems: &mut Vec<String>) -> usize {
    if !is_most_recent_file(name) {
        return 0;
    }
    let used = match format::checked_used(bytes) {
        Ok(used) => used,
        Err(e) => {
            problems.push(format!("{side} {name}: cannot parse the header to mask timestamps: {e}"));
            return 0;
        }
    };
    let mut stamps = Vec::new();
    for entry in format::entries(bytes, used) {
        match entry {
            Ok(entry) => stamps.push((entry.value_offset + 8, decode_key_lossy(entry.key))),
            Err(e) => {
                problems.push(format!("{side} {name}: cannot parse entries to mask timestamps: {e}"));
                break;
            }
        }
    }
    let now = unix_now();
    let mut masked = 0;
    for (at, key) in stamps {
        let ts = f64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        if ts.to_bits() == 0 {
            continue;
        }
        if !(since - 1.0..=now + 1.0).contains(&ts) {
            problems.push(format!("{side} {name}: timestamp {ts} of {key} is not a time of this run ({since}..{now})"));
        }
        bytes[at..at + 8].copy_from_slice(&TIMESTAMP_MARK);
        masked += 1;
    }
    masked
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn decode_key_lossy(key: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(key);
    if text.len() > MAX {
        let cut = (0..=MAX).rev().find(|&i| text.is_char_boundary(i)).unwrap();
        format!("{}… ({} bytes)", &text[..cut], key.len())
    } else {
        text.into_owned()
    }
}

/// Says which part of a file `offset` falls in: the header, an entry (with its key,
/// value and timestamp), or the zeros beyond `used`.
fn locate(bytes: &[u8], offset: usize) -> String {
    if offset < format::HEADER_LEN {
        return format!("in the header (used = {:?})", format::decode_used(bytes));
    }
    let used = match format::checked_used(bytes) {
        Ok(used) => used,
        Err(e) => return format!("in a file whose header does not parse: {e}"),
    };
    if offset >= used {
        return format!("beyond used = {used}, in the zero tail");
    }
    for (i, entry) in format::entries(bytes, used).enumerate() {
        match entry {
            Ok(e) => {
                let end = e.offset + format::entry_len(e.key.len());
                if (e.offset..end).contains(&offset) {
                    let field = match offset - e.offset {
                        0..4 => "length".to_owned(),
                        n if n < 4 + e.key.len() => format!("key byte {}", n - 4),
                        _ if offset < e.value_offset => "padding".to_owned(),
                        _ if offset < e.value_offset + 8 => "value".to_owned(),
                        _ => "timestamp".to_owned(),
                    };
                    let (value, ts) = format::decode_value(bytes, e.value_offset).unwrap();
                    return format!(
                        "in entry #{i} at {:#x} ({field}): key {} value {value:?} timestamp {ts:?}",
                        e.offset,
                        decode_key_lossy(e.key)
                    );
                }
            }
            Err(err) => return format!("after a corrupt entry #{i}: {err}"),
        }
    }
    "in no entry".to_owned()
}

fn hex_window(bytes: &[u8], offset: usize) -> String {
    let start = (offset & !15).saturating_sub(16);
    let end = (start + 48).min(bytes.len());
    let mut out = String::new();
    for line in (start..end).step_by(16) {
        let chunk = &bytes[line..(line + 16).min(end)];
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect();
        let _ = writeln!(out, "      {line:08x}: {:<47}  {ascii}", hex.join(" "));
    }
    out
}

/// Compares two directories file by file after masking `mostrecent` timestamps.
/// Returns the problems found (empty when identical) and how many timestamps each
/// side had masked.
fn diff_dirs(ours: &Path, theirs: &Path, their_name: &str, since: f64) -> (Vec<String>, usize, usize) {
    let mut problems = Vec::new();
    let (mut a, mut b) = (read_dir_files(ours), read_dir_files(theirs));
    let names_a: Vec<&String> = a.keys().collect();
    let names_b: Vec<&String> = b.keys().collect();
    if names_a != names_b {
        problems.push(format!("different files: ours {names_a:?}, {their_name} {names_b:?}"));
    }
    let (mut masked_a, mut masked_b) = (0, 0);
    for (name, ours_bytes) in a.iter_mut() {
        let Some(their_bytes) = b.get_mut(name) else { continue };
        masked_a += mask_timestamps(name, "ours", ours_bytes, since, &mut problems);
        masked_b += mask_timestamps(name, their_name, their_bytes, since, &mut problems);
        if ours_bytes == their_bytes {
            continue;
        }
        let mut report = format!("{name}: contents differ\n");
        let _ = writeln!(
            report,
            "  length: ours {}, {their_name} {}; used: ours {:?}, {their_name} {:?}",
            ours_bytes.len(),
            their_bytes.len(),
            format::decode_used(ours_bytes),
            format::decode_used(their_bytes)
        );
        let common = ours_bytes.len().min(their_bytes.len());
        let first = (0..common).find(|&i| ours_bytes[i] != their_bytes[i]).unwrap_or(common);
        let differing = (0..common).filter(|&i| ours_bytes[i] != their_bytes[i]).count();
        let _ = writeln!(
            report,
            "  first difference at offset {first:#x} ({differing} differing bytes in the common length)"
        );
        let _ = writeln!(report, "  ours:    {}", locate(ours_bytes, first));
        let _ = writeln!(report, "  {their_name}: {}", locate(their_bytes, first));
        let _ = writeln!(
            report,
            "    ours:\n{}    {their_name}:\n{}",
            hex_window(ours_bytes, first),
            hex_window(their_bytes, first)
        );
        problems.push(report);
    }
    (problems, masked_a, masked_b)
}

fn assert_dirs_identical(ours: &Path, theirs: &Path, their_name: &str, since: f64) -> usize {
    let (problems, masked_ours, masked_theirs) = diff_dirs(ours, theirs, their_name, since);
    assert!(problems.is_empty(), "files differ from {their_name}'s:\n{}", problems.join("\n"));
    assert_eq!(masked_ours, masked_theirs, "number of set mostrecent timestamps");
    masked_ours
}

// ---------------------------------------------------------------------------------
// The scenarios.
// ---------------------------------------------------------------------------------

/// Label values and help texts that need escaping or are otherwise unusual.
const HOSTILE: &[&str] = &[
    "quote\"d",
    "back\\slash",
    "new\nline",
    "tab\there",
    "cr\rlf",
    "ctl \u{1} \u{7f} \u{0} \u{1f} \u{8} \u{c}",
    "é ä €",
    "😀",
    "",
    "/",
    "/a/b?c=d&e",
    "all \"\\\n\t\u{1}\u{7f}é€😀/",
    "\u{2028}\u{feff}\u{10ffff}",
    "{\"json\": [1, 2]}, \"x\"]",
    "+Inf",
    "  spaces  ",
];

const HOSTILE_HELP: &str =
    "Help with \"quotes\", back\\slash, new\nline, tab\t, ctl \u{1}\u{7f}\u{0}, é ä €, 😀 and /.";

/// Every metric type and gauge mode, hostile label values and help texts, and
/// enough series to grow files past 64 KiB (in small steps and in one jump).
fn full_scenario() -> Script {
    let mut s = Script::default();

    // Counters: without labels, with a `_total` suffix, with namespace/subsystem/unit.
    let plain = s.declare(Type::Counter, Meta::new("plain", HOSTILE_HELP), &[]);
    s.inc(plain, 1.0);
    s.inc(plain, 2.5);
    let jobs = s.declare(Type::Counter, Meta::new("jobs_total", "Jobs."), &[]);
    s.inc(jobs, 3.0);
    let calls = s.declare(Type::Counter, Meta::new("calls_total", "").unit("seconds"), &[]);
    s.inc(calls, 0.1);
    s.inc(calls, 0.2);
    let requests = s.declare(
        Type::Counter,
        Meta::new("requests", "HTTP \"requests\".").namespace("app").subsystem("http").unit("bytes"),
        &["path", "method", "Z", "_x", "a"],
    );
    for (i, value) in HOSTILE.iter().enumerate() {
        let child = s.child(requests, &[value, "get", value, "_", "a"]);
        s.inc(child, i as f64 + 0.5);
    }
    let again = s.child(requests, &[HOSTILE[0], "get", HOSTILE[0], "_", "a"]); // cached child
    s.inc(again, 1.0);
    s.child(requests, &["never", "touched", "", "", ""]); // created, never incremented
    let inf = s.child(requests, &["inf", "", "", "", ""]);
    s.inc(inf, f64::INFINITY);

    // Gauges: every mode, without and with labels.
    for mode in GaugeMode::ALL {
        let name = format!("g_{}", mode.as_str());
        let single = s.declare(Type::Gauge(mode), Meta::new(&name, HOSTILE_HELP), &[]);
        let family = s.declare(
            Type::Gauge(mode),
            Meta::new(&format!("{name}_labeled"), "Labeled gauge.").namespace("ns").unit("ratio"),
            &["queue", "kind"],
        );
        if mode.is_most_recent() {
            s.set(single, 7.25);
            s.set(single, -0.0);
        } else {
            s.set(single, 10.5);
            s.inc(single, 2.0);
            s.dec(single, 0.25);
        }
        for (i, value) in HOSTILE.iter().enumerate() {
            let child = s.child(family, &[value, mode.as_str()]);
            match i % 4 {
                0 => s.set(child, i as f64 * -1.5),
                1 if !mode.is_most_recent() => s.inc(child, 1e-7),
                2 => s.set(child, f64::NAN),
                3 => s.set(child, f64::INFINITY),
                _ => {} // created, never written
            }
        }
    }

    // Histograms: custom buckets (bounds whose `le` spellings differ between Rust and
    // Python if done naively), default buckets, labels sorting around `le`.
    let custom = s.declare(
        Type::Histogram(Some(vec![0.005, 1.0, 2.5, 1e6, 1e10])),
        Meta::new("custom", HOSTILE_HELP).unit("seconds"),
        &[],
    );
    for v in [0.005, 0.004, 1.0, 1.0000001, 2.5, 3.0, 1e6, 5e9, 1e10, 1e11, -1.0, f64::INFINITY] {
        s.observe(custom, v);
    }
    let odd = s.declare(
        Type::Histogram(Some(vec![
            -5.0,
            -0.5,
            0.0,
            1e-7,
            0.1 + 0.2,
            999_999.0,
            1_200_000.0,
            10_000_000.5,
            123_456_789.0,
            1e16,
            1e20,
        ])),
        Meta::new("odd_bounds", "Odd bounds.").namespace("app"),
        &["route"],
    );
    let odd_child = s.child(odd, &["/"]);
    for v in [-6.0, -5.0, 0.0, 1e-8, 0.3, 1e6, 1e17, 1e21] {
        s.observe(odd_child, v);
    }
    let latency = s.declare(
        Type::Histogram(None),
        Meta::new("latency_seconds", "Latency.").namespace("app").unit("seconds"),
        &["route", "ld", "a", "lf", "method"],
    );
    for (i, value) in HOSTILE.iter().enumerate() {
        let child = s.child(latency, &[value, "d", "a", value, "GET"]);
        s.observe(child, 0.001 * i as f64);
        s.observe(child, 0.3);
        if i == 2 {
            s.observe(child, f64::NAN);
        }
    }
    let default_single = s.declare(Type::Histogram(None), Meta::new("default_buckets", "Defaults."), &[]);
    for v in [0.005, 0.0051, 0.075, 7.5, 10.0, 11.0] {
        s.observe(default_single, v);
    }

    // Summaries.
    let size = s.declare(Type::Summary, Meta::new("payload", HOSTILE_HELP).unit("bytes"), &[]);
    s.observe(size, 100.0);
    s.observe(size, 0.5);
    let sizes = s.declare(Type::Summary, Meta::new("sizes", "Sizes.").subsystem("io"), &["kind", "dir"]);
    for (i, value) in HOSTILE.iter().enumerate() {
        let child = s.child(sizes, &[value, "in"]);
        s.observe(child, i as f64 * 1.25);
    }

    // Growth in steps: 2,000 counter series (counter file: 64 → 128 → 256 KiB).
    let many = s.declare(Type::Counter, Meta::new("many_total", "Many series."), &["i"]);
    for i in 0..2000 {
        let child = s.child(many, &[&i.to_string()]);
        if i % 3 == 0 {
            s.inc(child, i as f64 * 0.5);
        }
    }
    // Growth in one jump: one key of ~180 KB (gauge_livesum file: 64 → 256 KiB).
    let long = s.declare(Type::Gauge(GaugeMode::LiveSum), Meta::new("long_label", "Long."), &["v"]);
    let long_value = "é\"\n".repeat(20_000);
    let long_child = s.child(long, &[&long_value]);
    s.inc(long_child, 42.0);
    // Handles made before the growth still write to the right place.
    s.inc(plain, 1.0);
    s.inc(again, 1.0);
    let after_growth = s.declare(Type::Gauge(GaugeMode::LiveSum), Meta::new("after_growth", "After."), &[]);
    s.inc(after_growth, 1.0);

    s.report();
    s
}

#[test]
fn files_are_byte_identical_to_python_for_every_type_and_mode() -> TestResult {
    let since = unix_now();
    let script = full_scenario();
    let (ours, python) = (TestDir::new(), TestDir::new());

    let registry = worker_registry(ours.path())?;
    let mut handles = Vec::new();
    let our_reports = run_in_rust(&registry, &mut handles, &script.ops)?;
    let python_reports = run_in_python(python.path(), &script);

    // The scenario wrote what it meant to: one file per kind and mode, and growth.
    let mut expected: Vec<String> = ["counter", "histogram", "summary"]
        .into_iter()
        .chain(GaugeMode::ALL.map(GaugeMode::file_prefix))
        .map(|prefix| format!("{prefix}_{WORKER}.db"))
        .collect();
    expected.sort();
    assert_eq!(ours.db_files(), expected);
    let size = |name: &str| fs::metadata(ours.path().join(name)).unwrap().len();
    assert_eq!(size(&format!("counter_{WORKER}.db")), 256 * 1024, "the counter file grew in two steps");
    assert_eq!(size(&format!("gauge_livesum_{WORKER}.db")), 256 * 1024, "the livesum file grew in one jump");

    let masked = assert_dirs_identical(ours.path(), python.path(), "python", since);
    // Per mostrecent mode: the gauge without labels and 12 of the 16 children were set.
    assert_eq!(masked, 2 * (1 + 12), "set mostrecent timestamps, masked");

    assert_eq!((our_reports.len(), python_reports.len()), (1, 1));
    assert_reports_equal(&our_reports[0], &python_reports[0], "values after the scenario");
    Ok(())
}

/// A smaller scenario for the continuation tests: every type, hostile labels.
struct Small {
    script: Script,
    /// Writes a second process makes after reopening the files.
    more: Script,
}

fn small_scenario() -> Small {
    let mut s = Script::default();
    let jobs = s.declare(Type::Counter, Meta::new("jobs_total", "Jobs \"done\"\n"), &[]);
    s.inc(jobs, 3.0);
    s.inc(jobs, 0.25);
    let req = s.declare(Type::Counter, Meta::new("req", "Requests.").namespace("app"), &["path", "method"]);
    let req_child = s.child(req, &["/é\"\\\n😀", "get"]);
    s.inc(req_child, 7.0);
    // A non-live mode: whether a restarted writer continues a live gauge is a liveness
    // policy, not a matter of the format.
    let inflight = s.declare(Type::Gauge(GaugeMode::Sum), Meta::new("inflight", "In flight."), &["worker"]);
    let inflight_child = s.child(inflight, &["a\tb"]);
    s.set(inflight_child, 5.0);
    let version = s.declare(Type::Gauge(GaugeMode::MostRecent), Meta::new("version", "Version."), &[]);
    s.set(version, 1.5);
    let temp = s.declare(Type::Gauge(GaugeMode::All), Meta::new("temp", "Temperature.").unit("celsius"), &[]);
    s.set(temp, -3.0);
    let lat = s.declare(Type::Histogram(Some(vec![0.1, 1.0])), Meta::new("lat", "Latency.").unit("seconds"), &[]);
    for v in [0.05, 0.5, 3.0] {
        s.observe(lat, v);
    }
    let size = s.declare(Type::Summary, Meta::new("size", "Size €."), &["kind"]);
    let size_child = s.child(size, &["€"]);
    s.observe(size_child, 2.0);
    s.observe(size_child, 4.0);

    let mut more = Script::default();
    more.inc(jobs, 1.0);
    more.inc(req_child, 0.5);
    more.inc(inflight_child, 1.0);
    more.set(version, 2.5);
    more.set(temp, 4.0);
    more.observe(lat, 0.05);
    more.observe(size_child, 1.0);
    Small { script: s, more }
}

/// What Python's collector reports for [`small_scenario`] after both writes.
fn small_scenario_samples() -> Vec<Sample> {
    let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let mut samples: Vec<Sample> = vec![
        ("jobs_total".into(), labels(&[]), 3.0 + 0.25 + 1.0),
        ("app_req_total".into(), labels(&[("path", "/é\"\\\n😀"), ("method", "get")]), 7.5),
        ("inflight".into(), labels(&[("worker", "a\tb")]), 6.0),
        ("version".into(), labels(&[]), 2.5),
        ("temp_celsius".into(), labels(&[("pid", WORKER)]), 4.0),
        ("lat_seconds_sum".into(), labels(&[]), 0.05 + 0.5 + 3.0 + 0.05),
        ("lat_seconds_bucket".into(), labels(&[("le", "0.1")]), 2.0),
        ("lat_seconds_bucket".into(), labels(&[("le", "1.0")]), 3.0),
        ("lat_seconds_bucket".into(), labels(&[("le", "+Inf")]), 4.0),
        ("lat_seconds_count".into(), labels(&[]), 4.0),
        ("size_count".into(), labels(&[("kind", "€")]), 3.0),
        ("size_sum".into(), labels(&[("kind", "€")]), 7.0),
    ];
    samples.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    samples
}

fn python_collect(dir: &Path) -> Vec<Sample> {
    let out = run_python(PY_COLLECT, &[dir.to_str().unwrap()]);
    let raw: Vec<(String, BTreeMap<String, String>, String)> =
        serde_json::from_str(out.trim()).expect("collector JSON");
    let mut samples: Vec<_> =
        raw.into_iter().map(|(name, labels, v)| (name, labels, v.parse::<f64>().expect("a float repr"))).collect();
    samples.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    samples
}

#[test]
fn our_writer_continues_a_file_python_wrote() -> TestResult {
    let since = unix_now();
    let Small { script, more } = small_scenario();
    let dir = TestDir::new();

    // Python writes, and reports what it holds.
    let mut python_run = script.clone();
    python_run.report();
    let python_reports = run_in_python(dir.path(), &python_run);
    let before = read_dir_files(dir.path());

    // We reopen the files with the same worker ID and declare the same metrics: the
    // handles hold Python's values and nothing is appended (our keys are Python's).
    let registry = worker_registry(dir.path())?;
    let mut handles = Vec::new();
    run_in_rust(&registry, &mut handles, &script.declarations().ops)?;
    assert_reports_equal(&report(&handles), &python_reports[0], "our handles on Python's files");
    assert!(report(&handles).iter().flatten().flatten().any(|v| *v != 0.0), "the values are Python's, not zeros");
    assert_eq!(read_dir_files(dir.path()), before, "reopening and declaring changed no byte");

    // We keep counting; Python's collector sees the sums.
    run_in_rust(&registry, &mut handles, &more.ops)?;
    assert_eq!(python_collect(dir.path()), small_scenario_samples());

    // And the files are what one writer doing everything would have written.
    let model = TestDir::new();
    run_in_rust(&worker_registry(model.path())?, &mut Vec::new(), &script.then(&more).ops)?;
    assert_dirs_identical(dir.path(), model.path(), "one-writer model", since);
    Ok(())
}

#[test]
fn python_writer_continues_a_file_we_wrote() -> TestResult {
    let since = unix_now();
    let Small { script, more } = small_scenario();
    let dir = TestDir::new();

    // We write, and keep our handles (they read the shared mapping).
    let registry = worker_registry(dir.path())?;
    let mut handles = Vec::new();
    run_in_rust(&registry, &mut handles, &script.ops)?;
    let ours = report(&handles);
    let before: Vec<Vec<String>> = read_dir_files(dir.path()).values().map(|bytes| entry_keys(bytes)).collect();

    // Python's MultiProcessValue reopens our files, sees our values, and continues.
    let mut python_run = script.declarations();
    python_run.report();
    let mut python_run = python_run.then(&more);
    python_run.report();
    let python_reports = run_in_python(dir.path(), &python_run);
    assert_eq!(python_reports.len(), 2);
    assert_reports_equal(&ours, &python_reports[0], "Python's values on our files");

    // Python appended no entry (it found each of our keys), and our handles see its writes.
    let after: Vec<Vec<String>> = read_dir_files(dir.path()).values().map(|bytes| entry_keys(bytes)).collect();
    assert_eq!(after, before, "Python appended entries: its keys differ from ours");
    assert_reports_equal(&report(&handles), &python_reports[1], "our handles after Python's writes");

    let model = TestDir::new();
    let mut model_handles = Vec::new();
    run_in_rust(&worker_registry(model.path())?, &mut model_handles, &script.then(&more).ops)?;
    assert_reports_equal(&report(&model_handles), &python_reports[1], "one-writer model");
    assert_dirs_identical(dir.path(), model.path(), "one-writer model", since);
    Ok(())
}

/// The keys of a file's entries, in order.
fn entry_keys(bytes: &[u8]) -> Vec<String> {
    let used = format::checked_used(bytes).expect("a valid header");
    format::entries(bytes, used)
        .map(|e| {
            let key = e.expect("a valid entry").key;
            decode_key(key).expect("a valid key");
            String::from_utf8(key.to_vec()).unwrap()
        })
        .collect()
}
