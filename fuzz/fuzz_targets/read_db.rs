//! The `.db` reader, whatever the bytes: no panic, no hang, and what it accepts obeys
//! the format's promises.
//!
//! Input: `[kind, split, file bytes...]`.
//! * The file bytes go through the pure reader (`format::checked_used`,
//!   `format::entries`, `format::decode_value`, `key::decode_key`); every key (and the
//!   whole input, as a key) is decoded and compared with a general JSON parser's reading.
//! * They are then written to a `*.db` file (its name chosen by `kind` among the 13 file
//!   kinds) in a temporary directory, and `Collector::collect()` must return `Ok`.
//! * When `split` is not 0, the file is first written in part (the first
//!   `len * split / 256` bytes, `used` set to that length) and scraped, then completed in
//!   place, as a writer grows it, and scraped again by the same collector: that repeat
//!   scrape must equal a fresh collector's scrape of the final bytes.
#![no_main]

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use prometheus_multiproc::expose::{self, Escaping, Format};
use prometheus_multiproc::format::{self, key};
use prometheus_multiproc::{Collector, Scrape};

const NAMES: [&str; 13] = [
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

fuzz_target!(|data: &[u8]| {
    // Any bytes are also a candidate key.
    check_key(data);
    let [kind, split, file @ ..] = data else {
        read_pure(data);
        return;
    };
    read_pure(file);
    // An offset the input controls, to `decode_value` (which must answer `None`, not
    // panic, out of bounds).
    if let Some(raw) = file.get(..8) {
        let offset = u64::from_le_bytes(raw.try_into().unwrap()) as usize;
        let _ = format::decode_value(file, offset);
    }
    scrape(NAMES[usize::from(*kind) % NAMES.len()], file, *split);
});

/// The pure reader; every entry it yields lies wholly below `used` and inside `file`.
fn read_pure(file: &[u8]) {
    let Ok(used) = format::checked_used(file) else { return };
    for entry in format::entries(file, used) {
        let Ok(entry) = entry else { break };
        let end = entry.value_offset + format::VALUE_LEN;
        assert!(end <= used.min(file.len()), "entry ends at {end}, past used {used} / len {}", file.len());
        assert_eq!(entry.value_offset % 8, 0, "value not 8-aligned");
        assert_eq!(entry.offset + format::entry_len(entry.key.len()), end);
        assert!(format::decode_value(file, entry.value_offset).is_some());
        check_key(entry.key);
    }
}

/// `decode_key` accepts exactly what a general JSON parser reads as
/// `[str, str, {str: str}, str]`, with the same strings (a repeated label name keeping
/// its last value); and a decoded key re-encodes to a key that decodes to the same.
fn check_key(bytes: &[u8]) {
    let decoded = key::decode_key(bytes);
    let general = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| serde_json::from_str::<(String, String, BTreeMap<String, String>, String)>(text).ok());
    match (&decoded, general) {
        (Ok(decoded), Some((metric_name, sample_name, labels, help))) => {
            let general = key::Key { metric_name, sample_name, labels: labels.into_iter().collect(), help };
            assert_eq!(decoded, &general, "decode_key differs from serde_json");
        }
        (Err(_), None) => {}
        (decoded, general) => panic!("decode_key says {decoded:?}, serde_json says {general:?}"),
    }
    if let Ok(decoded) = decoded {
        let labels: Vec<(&str, &str)> = decoded.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let again = key::encode_key(&decoded.metric_name, &decoded.sample_name, &labels, &decoded.help);
        assert_eq!(key::decode_key(again.as_bytes()).as_ref(), Ok(&decoded));
    }
}

fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::Builder::new().prefix("pmp-fuzz-").tempdir().unwrap()).path()
}

/// Index in `NAMES` of the file the previous input left, plus one (0: none).
static LAST: AtomicUsize = AtomicUsize::new(0);

fn scrape(name: &str, file: &[u8], split: u8) {
    let dir = dir();
    if let Some(last) = LAST.load(Ordering::Relaxed).checked_sub(1) {
        // No collector is alive here, so no mapping of that file is.
        let _ = fs::remove_file(dir.join(NAMES[last]));
    }
    LAST.store(NAMES.iter().position(|n| *n == name).unwrap() + 1, Ordering::Relaxed);
    let path = dir.join(name);

    if split == 0 || file.len() <= format::HEADER_LEN {
        fs::write(&path, file).unwrap();
        let _ = render(Collector::new(dir).unwrap().collect().expect("collect never fails on a file"));
        return;
    }

    let cut = (file.len() * usize::from(split) / 256).max(format::HEADER_LEN);
    let mut first = file[..cut].to_vec();
    first[..4].copy_from_slice(&(cut as u32).to_le_bytes());
    fs::write(&path, &first).unwrap();
    let collector = Collector::new(dir).unwrap();
    let _ = render(collector.collect().expect("collect never fails on a file"));
    // Complete the file in place (same inode, only growing), then publish its header.
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&file[cut..], cut as u64).unwrap();
    f.write_all_at(&file[..4], 0).unwrap();
    drop(f);
    let repeat = render(collector.collect().expect("collect never fails on a file"));
    drop(collector);
    let fresh = render(Collector::new(dir).unwrap().collect().expect("collect never fails on a file"));
    assert_eq!(repeat, fresh, "a repeat scrape differs from a fresh scrape of the same bytes");
}

/// Both expositions of a scrape and its skip list, as text.
fn render(scrape: Scrape) -> String {
    let mut out = String::new();
    expose::encode(&scrape.families, Format::Text, Escaping::Underscores, &mut out);
    expose::encode(&scrape.families, Format::OpenMetrics, Escaping::AllowUtf8, &mut out);
    for skipped in &scrape.skipped {
        out.push_str(&format!("skipped {}: {:?}\n", skipped.path.display(), skipped.reason));
    }
    out
}
