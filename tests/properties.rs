//! Properties over hostile inputs, on stable Rust (the `fuzz/` target does the first one
//! with coverage guidance on nightly):
//!
//! * whatever the bytes of a `.db` file, the reader never panics, and the collector
//!   never fails and either uses the file or skips it whole;
//! * whatever the strings (control characters, quotes, backslashes, any non-surrogate
//!   code point, emoji), a key is exactly what Python's `mmap_key` dumps, and decodes
//!   back to what was encoded;
//! * merged counter totals are the sums of what the writers added, however the series
//!   are split over the writers' files.

mod support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use prometheus_multiproc::expose::{self, Escaping};
use prometheus_multiproc::format::key::{Key, decode_key, encode_key};
use prometheus_multiproc::format::{self, FormatError};
use prometheus_multiproc::{Collector, Opts, Registry, Scrape, WorkerId};
use support::TestDir;

// ---------------------------------------------------------------------------------
// Strategies

/// Characters chosen to break an encoder: ASCII controls, the JSON specials, DEL and
/// C1 controls, line and paragraph separators, BOM, the edges of the BMP around the
/// surrogate block, non-BMP characters (surrogate pairs in JSON), emoji with modifiers.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => prop::char::range('\0', '\u{1f}'),
        2 => prop::char::range(' ', '~'),
        2 => prop::sample::select(vec![
            '"', '\\', '/', '\u{7f}', '\u{80}', '\u{9f}', '\u{ff}', '\u{2028}', '\u{2029}', '\u{feff}', '\u{fffd}',
            '\u{ffff}', '\u{d7ff}', '\u{e000}', '\u{10000}', '\u{10ffff}', '\u{1f3fb}', '\u{200d}',
        ]),
        1 => prop::char::range('\u{1f300}', '\u{1faff}'),
    ]
}

fn hostile_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(hostile_char(), 0..max).prop_map(String::from_iter)
}

/// The parts of a key: metric, sample, labels (sorted, unique names), help.
type KeyParts = (String, String, BTreeMap<String, String>, String);

fn key_parts() -> impl Strategy<Value = KeyParts> {
    (
        hostile_string(12),
        hostile_string(12),
        prop::collection::btree_map(hostile_string(8), hostile_string(16), 0..4),
        hostile_string(24),
    )
}

fn encode(parts: &KeyParts) -> String {
    let (metric, sample, labels, help) = parts;
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    encode_key(metric, sample, &labels, help)
}

/// Bytes that look like a `.db` file to a varying degree: pure noise, or entries (valid
/// keys, or noise as keys) with a right or arbitrary `used`, then a few bytes
/// overwritten and maybe a truncation.
fn db_bytes() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        3 => key_parts().prop_map(|parts| encode(&parts).into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ];
    let structured = (
        prop::collection::vec((key, any::<f64>(), any::<f64>()), 0..5),
        prop_oneof![3 => Just(None), 1 => any::<i32>().prop_map(Some)],
        prop::collection::vec((any::<Index>(), any::<u8>()), 0..4),
        prop_oneof![3 => Just(None), 1 => any::<Index>().prop_map(Some)],
    )
        .prop_map(|(entries, used, flips, cut)| {
            let mut out = format::encode_header(0).to_vec();
            for (key, value, timestamp) in &entries {
                format::encode_entry(&mut out, key, *value, *timestamp);
            }
            let used = used.unwrap_or(out.len() as i32);
            out[..4].copy_from_slice(&used.to_le_bytes());
            for (at, byte) in flips {
                let i = at.index(out.len());
                out[i] = byte;
            }
            if let Some(cut) = cut {
                out.truncate(cut.index(out.len() + 1));
            }
            out
        });
    prop_oneof![1 => prop::collection::vec(any::<u8>(), 0..256), 3 => structured]
}

/// The 13 file kinds a collector knows.
const DB_NAMES: [&str; 13] = [
    "counter_1.db",
    "gauge_all_1.db",
    "gauge_liveall_1.db",
    "gauge_min_1.db",
    "gauge_livemin_1.db",
    "gauge_max_1.db",
    "gauge_livemax_1.db",
    "gauge_sum_1.db",
    "gauge_livesum_1.db",
    "gauge_mostrecent_1.db",
    "gauge_livemostrecent_1.db",
    "histogram_1.db",
    "summary_1.db",
];

// ---------------------------------------------------------------------------------
// (a) The reader never panics

/// Runs the pure reader over `data` and checks what it promises of every entry it
/// accepts: the whole entry lies below `used` and inside the data, the value is
/// 8-aligned and readable.
fn check_reader(data: &[u8]) -> Result<(), TestCaseError> {
    let Ok(used) = format::checked_used(data) else { return Ok(()) };
    prop_assert!(used >= format::HEADER_LEN);
    let mut errors = 0;
    for entry in format::entries(data, used) {
        match entry {
            Ok(entry) => {
                prop_assert_eq!(errors, 0, "an entry after an error");
                let end = entry.value_offset + format::VALUE_LEN;
                prop_assert!(end <= used.min(data.len()), "entry ends at {}, past used {}", end, used);
                prop_assert_eq!(entry.offset + format::entry_len(entry.key.len()), end);
                prop_assert_eq!(entry.value_offset % 8, 0);
                prop_assert!(format::decode_value(data, entry.value_offset).is_some());
                check_key(entry.key)?;
            }
            Err(_) => errors += 1,
        }
    }
    prop_assert!(errors <= 1, "the iterator goes on after an error");
    Ok(())
}

/// `decode_key` accepts exactly what a general JSON parser (serde_json) reads as
/// `[str, str, {str: str}, str]`, with the same strings (a repeated label name keeping
/// its last value, as Python's `json.loads`); a decoded key re-encodes to a key that
/// decodes to the same.
fn check_key(bytes: &[u8]) -> Result<(), TestCaseError> {
    let decoded = decode_key(bytes);
    let general = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| serde_json::from_str::<(String, String, BTreeMap<String, String>, String)>(text).ok())
        .map(|(metric_name, sample_name, labels, help)| Key {
            metric_name,
            sample_name,
            labels: labels.into_iter().collect(),
            help,
        });
    prop_assert_eq!(decoded.as_ref().ok(), general.as_ref(), "decode_key and serde_json disagree");
    if let Ok(key) = decoded {
        let labels: Vec<(&str, &str)> = key.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let again = encode_key(&key.metric_name, &key.sample_name, &labels, &key.help);
        prop_assert_eq!(decode_key(again.as_bytes()), Ok(key));
    }
    Ok(())
}

/// Key-like bytes: keys as Python writes them (plain ASCII ones, that a fast path may
/// split in place, and hostile ones), hand-laid keys with unsorted or repeated label
/// names or other spacing, then a few bytes replaced, inserted or cut.
fn key_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let plain = "[ -~]{0,10}";
    let python = prop_oneof![
        (plain, plain, prop::collection::btree_map(plain, plain, 0..4), plain).prop_map(|p| encode(&p).into_bytes()),
        key_parts().prop_map(|p| encode(&p).into_bytes()),
        (plain, prop::collection::vec((plain, plain), 0..4), "[ ,:]{0,3}").prop_map(|(name, labels, gap)| {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k:?}:{gap}{v:?}")).collect();
            format!("[{name:?},{gap}{name:?}, {{{}}}, \"h\"]", labels.join(", ")).into_bytes()
        }),
    ];
    let edits = prop::collection::vec((any::<Index>(), any::<u8>(), 0u8..3), 0..3);
    (python, edits).prop_map(|(mut bytes, edits)| {
        for (at, byte, how) in edits {
            let i = at.index(bytes.len() + 1);
            match how {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
        }
        bytes
    })
}

proptest! {
    #![proptest_config(Config { cases: 512, failure_persistence: None, ..Config::default() })]

    #[test]
    fn format_reader_never_panics_and_keeps_entries_inside_used(data in db_bytes()) {
        check_reader(&data)?;
        check_key(&data)?;
    }

    #[test]
    fn decode_key_agrees_with_a_general_json_parser(bytes in key_like_bytes()) {
        check_key(&bytes)?;
    }

    #[test]
    fn decode_value_out_of_bounds_is_none_not_a_panic(data in db_bytes(), offset in prop_oneof![any::<usize>(), (usize::MAX - 32)..=usize::MAX, 0usize..300]) {
        let fits = offset.checked_add(16).is_some_and(|end| end <= data.len());
        prop_assert_eq!(format::decode_value(&data, offset).is_some(), fits);
        let near = data.len().saturating_sub(offset % 32);
        prop_assert_eq!(format::decode_value(&data, near).is_some(), near + 16 <= data.len());
    }

    #[test]
    fn entries_at_any_file_offset_never_panics(data in db_bytes(), base in 0..=format::MAX_SIZE) {
        for entry in format::entries_at(&data, base) {
            match entry {
                Ok(entry) => prop_assert!(entry.value_offset + format::VALUE_LEN <= base + data.len()),
                Err(FormatError::NegativeKeyLength { offset, .. } | FormatError::EntryBeyondUsed { offset, .. }) => {
                    prop_assert!(offset >= base);
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }
}

fn exposition(scrape: &Scrape) -> String {
    let mut out = String::new();
    expose::encode_text(&scrape.families, Escaping::Underscores, &mut out);
    out
}

/// A valid file every collector case starts from (it sorts before all of `DB_NAMES`).
fn write_valid_file(dir: &Path) {
    let mut bytes = format::encode_header(0).to_vec();
    format::encode_entry(&mut bytes, encode_key("base", "base_total", &[("a", "x")], "Base.").as_bytes(), 2.0, 0.0);
    let used = bytes.len() as u32;
    bytes[..4].copy_from_slice(&used.to_le_bytes());
    fs::write(dir.join("counter_0.db"), bytes).unwrap();
}

proptest! {
    #![proptest_config(Config { cases: 128, failure_persistence: None, ..Config::default() })]

    /// The collector's promise for one bad file: the scrape succeeds, and a file that is
    /// skipped is skipped whole (the output is that of the directory without it).
    #[test]
    fn collector_never_fails_and_skips_a_bad_file_whole(data in db_bytes(), kind in any::<Index>()) {
        let dir = TestDir::new();
        write_valid_file(dir.path());
        let baseline = exposition(&Collector::new(dir.path()).unwrap().collect().unwrap());
        let name = *kind.get(&DB_NAMES);
        fs::write(dir.path().join(name), &data).unwrap();
        let collector = Collector::new(dir.path()).unwrap();
        let scrape = collector.collect().unwrap();
        prop_assert!(scrape.skipped.len() <= 1, "only one file can be skipped: {:?}", scrape.skipped);
        let text = exposition(&scrape);
        if let Some(skipped) = scrape.skipped.first() {
            prop_assert!(skipped.path.ends_with(name));
            prop_assert_eq!(text.as_str(), baseline.as_str());
        } else {
            prop_assert!(text.contains("base_total{a=\"x\"} 2.0\n"), "the valid file's sample is missing:\n{}", text);
        }
        // A repeat scrape (incremental state) says the same.
        let again = collector.collect().unwrap();
        prop_assert_eq!(exposition(&again), text);
        prop_assert_eq!(again.skipped, scrape.skipped);
    }
}

// ---------------------------------------------------------------------------------
// (b) Keys are Python's keys

/// Reads JSON lines `[metric, sample, [[name, value], ...], help]` from `sys.argv[1]` and
/// prints prometheus_client's own `mmap_key` of each, one per line (ASCII: `json.dumps`
/// escapes every line break).
const PY_MMAP_KEYS: &str = r#"
import json, sys
from prometheus_client.mmap_dict import mmap_key
with open(sys.argv[1], encoding='utf-8', newline='') as f:
    lines = f.read().split('\n')
assert lines[-1] == ''
for line in lines[:-1]:
    metric, sample, labels, help_text = json.loads(line)
    print(mmap_key(metric, sample, [k for k, _ in labels], [v for _, v in labels], help_text))
"#;

/// Every generated case is encoded and decoded here; all of them are then handed to ONE
/// Python process, whose `mmap_key` must produce the same bytes.
#[test]
fn key_encoding_matches_python_mmap_key_and_round_trips() {
    let cases: RefCell<Vec<(KeyParts, String)>> = RefCell::new(Vec::new());
    let mut runner = TestRunner::new(Config { cases: 1000, failure_persistence: None, ..Config::default() });
    runner
        .run(&key_parts(), |parts| {
            let key = encode(&parts);
            prop_assert!(key.is_ascii(), "not ASCII: {key}");
            let (metric, sample, labels, help) = parts.clone();
            let expected = Key { metric_name: metric, sample_name: sample, labels: labels.into_iter().collect(), help };
            prop_assert_eq!(decode_key(key.as_bytes()), Ok(expected));
            cases.borrow_mut().push((parts, key));
            Ok(())
        })
        .unwrap();
    let cases = cases.into_inner();
    // The generator did produce what this test is about.
    for (escape, what) in [
        ("\\ud", "a surrogate pair"),
        ("\\u00", "a control character"),
        ("\\\"", "a quote"),
        ("\\\\", "a backslash"),
        ("\\n", "a newline"),
    ] {
        assert!(cases.iter().any(|(_, key)| key.contains(escape)), "no case with {what} ({escape})");
    }

    let dir = TestDir::new();
    let input = dir.path().join("cases.jsonl");
    let mut lines = String::new();
    for ((metric, sample, labels, help), _) in &cases {
        let labels: Vec<(&String, &String)> = labels.iter().collect();
        // serde_json, not the encoder under test, carries the strings to Python.
        lines.push_str(&serde_json::to_string(&(metric, sample, labels, help)).unwrap());
        lines.push('\n');
    }
    fs::write(&input, lines).unwrap();
    let python = support::run_python(PY_MMAP_KEYS, &[input.to_str().unwrap()]);
    let python: Vec<&str> = python.lines().collect();
    assert_eq!(python.len(), cases.len(), "Python printed one key per case");
    let mismatches: Vec<String> = cases
        .iter()
        .zip(&python)
        .filter(|((_, ours), theirs)| ours != *theirs)
        .map(|((parts, ours), theirs)| format!("input {parts:?}\n  ours:   {ours}\n  python: {theirs}"))
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} keys differ from Python's:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
}

// ---------------------------------------------------------------------------------
// (c) Merge laws

/// Writes `increments` (series, amount) with one real writer per file, increment `i`
/// going to the writer `files[i]`, and returns the merged `series → total`.
fn merged_totals(series: &[String], increments: &[(usize, u32)], files: &[usize]) -> BTreeMap<String, f64> {
    let dir = TestDir::new();
    {
        let writers: Vec<_> = (0..=files.iter().copied().max().unwrap_or(0))
            .map(|w| {
                let registry = Registry::builder()
                    .dir(dir.path())
                    .worker_id(WorkerId::new(&format!("w{w}")).unwrap())
                    .build()
                    .unwrap();
                registry.counter_family(Opts::new("jobs_total", "Jobs."), &["series"]).unwrap()
            })
            .collect();
        for (&(s, amount), &file) in increments.iter().zip(files) {
            writers[file].get(&[&series[s]]).unwrap().inc_by(f64::from(amount));
        }
    }
    let scrape = Collector::new(dir.path()).unwrap().collect().unwrap();
    assert!(scrape.skipped.is_empty(), "{:?}", scrape.skipped);
    let mut totals = BTreeMap::new();
    for family in &scrape.families {
        assert_eq!(&*family.name, "jobs");
        for sample in &family.samples {
            assert_eq!(&*sample.name, "jobs_total");
            let previous = totals.insert(sample.label("series").unwrap().to_owned(), sample.value);
            assert!(previous.is_none(), "series exposed twice: {sample:?}");
        }
    }
    totals
}

proptest! {
    #![proptest_config(Config { cases: 24, failure_persistence: None, ..Config::default() })]

    /// For integer increments, the merged total of every series is exactly the sum of what
    /// was added to it, whether all writes go to one file or are spread over up to four
    /// writers' files in any way; series never written are absent.
    #[test]
    fn counter_totals_are_the_sums_however_series_are_split_over_files(
        series in prop::collection::btree_set(hostile_string(6), 1..6),
        increments in prop::collection::vec((any::<Index>(), 0u32..1000), 1..40),
        writers in 1usize..=4,
        split in prop::collection::vec(any::<Index>(), 40),
    ) {
        let series: Vec<String> = series.into_iter().collect();
        let increments: Vec<(usize, u32)> = increments.iter().map(|(s, n)| (s.index(series.len()), *n)).collect();
        let mut expected: BTreeMap<String, f64> = BTreeMap::new();
        for &(s, amount) in &increments {
            *expected.entry(series[s].clone()).or_default() += f64::from(amount);
        }
        let one_file = vec![0; increments.len()];
        let spread: Vec<usize> = split.iter().take(increments.len()).map(|i| i.index(writers)).collect();
        prop_assert_eq!(&merged_totals(&series, &increments, &one_file), &expected);
        prop_assert_eq!(&merged_totals(&series, &increments, &spread), &expected);
    }
}
