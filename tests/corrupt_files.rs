//! A scrape never fails, hangs or panics because of one file: every bad file is
//! skipped, reported with its reason, and the exposition of the other files is exactly
//! what it is without the bad file.

mod support;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use prometheus_multiproc::expose::{self, Escaping};
use prometheus_multiproc::format::{self, FormatError, key::encode_key};
use prometheus_multiproc::{Collector, Scrape, SkipReason};
use support::TestDir;

/// The bytes of a file holding `entries` (raw key bytes, value, timestamp).
fn file_bytes(entries: &[(&[u8], f64, f64)]) -> Vec<u8> {
    let mut out = format::encode_header(0).to_vec();
    for (key, value, ts) in entries {
        format::encode_entry(&mut out, key, *value, *ts);
    }
    let used = out.len() as u32;
    out[..4].copy_from_slice(&used.to_le_bytes());
    out
}

fn key(metric: &str, sample: &str, labels: &[(&str, &str)]) -> Vec<u8> {
    encode_key(metric, sample, labels, "Help.").into_bytes()
}

/// The valid histogram file also used, truncated, as a bad file.
fn histogram_bytes() -> Vec<u8> {
    file_bytes(&[
        (&key("h", "h_sum", &[]), 1.5, 0.0),
        (&key("h", "h_bucket", &[("le", "0.5")]), 1.0, 0.0),
        (&key("h", "h_bucket", &[("le", "1.0")]), 0.0, 0.0),
        (&key("h", "h_bucket", &[("le", "+Inf")]), 1.0, 0.0),
        (&key("h", "h_sum", &[("route", "/b")]), 0.25, 0.0),
        (&key("h", "h_bucket", &[("le", "0.5"), ("route", "/b")]), 1.0, 0.0),
        (&key("h", "h_bucket", &[("le", "1.0"), ("route", "/b")]), 0.0, 0.0),
        (&key("h", "h_bucket", &[("le", "+Inf"), ("route", "/b")]), 1.0, 0.0),
    ])
}

/// Writes the valid files every test starts from.
fn write_valid_files(dir: &Path) {
    let files: [(&str, Vec<u8>); 5] = [
        (
            "counter_1.db",
            file_bytes(&[
                (&key("c", "c_total", &[("a", "x")]), 1.0, 0.0),
                (&key("c", "c_total", &[("a", "y")]), 2.0, 0.0),
            ]),
        ),
        ("gauge_all_1.db", file_bytes(&[(&key("g", "g", &[]), 3.0, 0.0)])),
        ("gauge_livesum_1.db", file_bytes(&[(&key("ls", "ls", &[]), 4.0, 0.0)])),
        ("histogram_1.db", histogram_bytes()),
        ("summary_1.db", file_bytes(&[(&key("s", "s_count", &[]), 1.0, 0.0), (&key("s", "s_sum", &[]), 2.0, 0.0)])),
    ];
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

fn text(scrape: &Scrape) -> String {
    let mut out = String::new();
    expose::encode_text(&scrape.families, Escaping::Underscores, &mut out);
    out
}

/// The exposition of the valid files alone.
fn baseline() -> String {
    let dir = TestDir::new();
    write_valid_files(dir.path());
    let scrape = Collector::new(dir.path()).unwrap().collect().unwrap();
    assert!(scrape.skipped.is_empty());
    text(&scrape)
}

/// Makes writers 2 and 3 dead writers (a free liveness lock file each), whose files
/// the collector copies instead of mapping: every bad file of theirs goes through the
/// collector's other way of reading.
fn mark_dead_writers(dir: &Path) {
    for id in ["2", "3"] {
        fs::write(dir.join(format!("writer_{id}.lock")), b"").unwrap();
    }
}

/// The ways a collector reads a file: through a mapping it keeps, through one it
/// unmaps at once (past its bound on kept mappings), or, for a dead writer's file past
/// that bound, by copying it; or, for an exited stock Python worker's file (no
/// liveness file, a pid no process has), by copying it twice without an `fstat`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Way {
    KeptMapping,
    Mapping,
    Copy,
    StockCopy,
}

/// A pid above any `pid_max`: no process has it.
const EXITED_PID: &str = "4194302";

/// The name a bad file of writer 2 or 3 gets for `way`: under [`Way::StockCopy`], that
/// of an exited stock worker; `None` if the name has no such ID.
fn name_for(name: &[u8], way: Way) -> Option<Vec<u8>> {
    if way != Way::StockCopy {
        return Some(name.to_vec());
    }
    let stem = name.strip_suffix(b"_2.db").or_else(|| name.strip_suffix(b"_3.db"))?;
    Some([stem, b"_", EXITED_PID.as_bytes(), b".db"].concat())
}

/// A collector of `dir` that reads the files of writers 2 and 3 `way`.
fn collector(dir: &Path, way: Way) -> Collector {
    if way == Way::Copy {
        mark_dead_writers(dir);
    }
    let collector = Collector::new(dir).unwrap();
    if way == Way::KeptMapping { collector } else { collector.with_max_kept_mappings(0) }
}

/// Adds a bad file with `add` next to the valid files, scrapes, and checks that the
/// output is the baseline and that exactly `name` was skipped; returns its reason,
/// which is the same whichever [`Way`] the file is read.
fn skipped_reason(name: &[u8], add: impl Fn(&Path)) -> SkipReason {
    let mut reasons = Vec::new();
    for way in [Way::KeptMapping, Way::Mapping, Way::Copy, Way::StockCopy] {
        let Some(name) = name_for(name, way) else { continue };
        let dir = TestDir::new();
        write_valid_files(dir.path());
        let path = dir.path().join(std::ffi::OsStr::from_bytes(&name));
        add(&path);
        let scrape = collector(dir.path(), way).collect().expect("a bad file never fails the scrape");
        assert_eq!(text(&scrape), baseline(), "the other files' output must be unchanged (read by {way:?})");
        assert_eq!(scrape.skipped.len(), 1, "{:?}", scrape.skipped);
        assert_eq!(scrape.skipped[0].path, path);
        reasons.push(scrape.skipped[0].reason.clone());
    }
    assert!(reasons.iter().all(|r| *r == reasons[0]), "every way judges a file alike: {reasons:?}");
    reasons.swap_remove(0)
}

fn bad_file(name: &str, bytes: &[u8]) -> SkipReason {
    skipped_reason(name.as_bytes(), |path| fs::write(path, bytes).unwrap())
}

#[test]
fn baseline_matches_python() {
    let dir = TestDir::new();
    write_valid_files(dir.path());
    assert_eq!(baseline(), support::python_exposition(dir.path()));
}

#[test]
fn zero_length_file_is_skipped() {
    assert_eq!(bad_file("counter_2.db", b""), SkipReason::Empty);
}

#[test]
fn file_shorter_than_its_length_field_is_skipped() {
    assert_eq!(bad_file("counter_2.db", &[8, 0, 0]), SkipReason::Corrupt(FormatError::ShortHeader { len: 3 }));
}

#[test]
fn garbage_file_is_skipped() {
    // A deterministic pseudo-random page.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert!(matches!(bad_file("counter_2.db", &bytes), SkipReason::Corrupt(_) | SkipReason::InvalidKey { .. }));
    // Garbage that happens to start with a plausible `used`.
    let mut plausible = bytes.clone();
    plausible[..4].copy_from_slice(&4000u32.to_le_bytes());
    assert!(matches!(bad_file("counter_2.db", &plausible), SkipReason::Corrupt(_) | SkipReason::InvalidKey { .. }));
}

#[test]
fn used_beyond_the_file_is_skipped() {
    let mut bytes = file_bytes(&[(&key("c", "c_total", &[("a", "x")]), 1.0, 0.0)]);
    let len = bytes.len();
    bytes[..4].copy_from_slice(&1000u32.to_le_bytes());
    assert_eq!(bad_file("counter_2.db", &bytes), SkipReason::Corrupt(FormatError::UsedBeyondEnd { used: 1000, len }));
}

#[test]
fn used_below_the_header_is_skipped() {
    assert_eq!(
        bad_file("counter_2.db", &[4, 0, 0, 0, 0, 0, 0, 0]),
        SkipReason::Corrupt(FormatError::UsedTooSmall { used: 4 })
    );
}

#[test]
fn negative_key_length_is_skipped() {
    let mut bytes = file_bytes(&[(&key("c", "c_total", &[("a", "x")]), 1.0, 0.0)]);
    bytes[8..12].copy_from_slice(&(-28i32).to_le_bytes());
    assert_eq!(
        bad_file("counter_2.db", &bytes),
        SkipReason::Corrupt(FormatError::NegativeKeyLength { offset: 8, len: -28 })
    );
}

#[test]
fn oversized_key_length_is_skipped() {
    let mut bytes = file_bytes(&[(&key("c", "c_total", &[("a", "x")]), 1.0, 0.0)]);
    bytes[8..12].copy_from_slice(&i32::MAX.to_le_bytes());
    assert!(matches!(
        bad_file("counter_2.db", &bytes),
        SkipReason::Corrupt(FormatError::EntryBeyondUsed { offset: 8, .. })
    ));
}

#[test]
fn a_bad_entry_after_good_ones_skips_the_whole_file() {
    let good = key("c", "c_total", &[("a", "x")]);
    let bytes = file_bytes(&[(&good, 1.0, 0.0), (b"[\"c\", \"c_total\", {\"a\": \"\xff\"}, \"h\"]", 1.0, 0.0)]);
    let offset = format::entry_len(good.len()) + format::HEADER_LEN;
    assert!(matches!(bad_file("counter_2.db", &bytes), SkipReason::InvalidKey { offset: o, .. } if o == offset));
}

#[test]
fn invalid_utf8_key_is_skipped() {
    let bytes = file_bytes(&[(b"[\"c\", \"c_total\", {}, \"\xc3\x28\"]", 1.0, 0.0)]);
    assert!(matches!(
        bad_file("counter_2.db", &bytes),
        SkipReason::InvalidKey { offset: 8, error: format::key::KeyError::NotUtf8 { .. } }
    ));
}

#[test]
fn invalid_json_key_is_skipped() {
    let bytes = file_bytes(&[(b"[\"c\", \"c_total\", {}, \"h\"", 1.0, 0.0)]);
    assert!(matches!(
        bad_file("counter_2.db", &bytes),
        SkipReason::InvalidKey { error: format::key::KeyError::NotAKey(_), .. }
    ));
}

#[test]
fn three_element_legacy_key_is_skipped() {
    let bytes = file_bytes(&[(br#"["c", "c_total", {"a": "x"}]"#, 1.0, 0.0)]);
    assert!(matches!(
        bad_file("counter_2.db", &bytes),
        SkipReason::InvalidKey { error: format::key::KeyError::NotAKey(_), .. }
    ));
}

#[test]
fn non_string_label_value_is_skipped() {
    let bytes = file_bytes(&[(br#"["c", "c_total", {"a": 1}, "h"]"#, 1.0, 0.0)]);
    assert!(matches!(bad_file("counter_2.db", &bytes), SkipReason::InvalidKey { .. }));
}

#[test]
fn empty_metric_name_is_skipped() {
    let bytes = file_bytes(&[(br#"["", "c_total", {}, "h"]"#, 1.0, 0.0)]);
    assert_eq!(bad_file("counter_2.db", &bytes), SkipReason::EmptyMetricName { offset: 8 });
}

#[test]
fn histogram_bound_that_is_not_a_number_is_skipped() {
    let bytes = file_bytes(&[(&key("h", "h_bucket", &[("le", "abc")]), 1.0, 0.0)]);
    assert_eq!(
        bad_file("histogram_2.db", &bytes),
        SkipReason::InvalidBucketBound { family: "h".into(), le: "abc".into() }
    );
}

#[test]
fn unknown_type_prefix_is_skipped() {
    let bytes = file_bytes(&[(&key("c", "c_total", &[("a", "x")]), 1.0, 0.0)]);
    assert_eq!(bad_file("foo_1.db", &bytes), SkipReason::UnknownName);
    assert_eq!(bad_file("counter.db", &bytes), SkipReason::UnknownName);
    assert_eq!(bad_file("gauge_bogus_1.db", &bytes), SkipReason::UnknownName);
    assert_eq!(bad_file("gauge_all.db", &bytes), SkipReason::UnknownName);
}

#[test]
fn non_utf8_file_name_is_skipped() {
    let bytes = file_bytes(&[(&key("c", "c_total", &[("a", "x")]), 1.0, 0.0)]);
    let reason = skipped_reason(b"counter_\xff.db", |path| fs::write(path, &bytes).unwrap());
    assert_eq!(reason, SkipReason::UnknownName);
}

#[test]
fn directory_named_db_is_skipped() {
    assert_eq!(skipped_reason(b"counter_2.db", |p| fs::create_dir(p).unwrap()), SkipReason::NotARegularFile);
}

#[test]
fn fifo_named_db_is_skipped_without_blocking() {
    let reason = skipped_reason(b"counter_2.db", |p| {
        nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    });
    assert_eq!(reason, SkipReason::NotARegularFile);
}

#[test]
fn socket_named_db_is_skipped() {
    let reason = skipped_reason(b"counter_2.db", |p| {
        // The listener is closed at the end of the closure; the socket file stays.
        std::os::unix::net::UnixListener::bind(p).unwrap();
    });
    assert_eq!(reason, SkipReason::NotARegularFile);
}

#[test]
fn symlink_named_db_is_never_followed() {
    // The link points at a valid file of the same directory: following it would count
    // that file twice.
    let reason = skipped_reason(b"counter_2.db", |p| {
        std::os::unix::fs::symlink(p.with_file_name("counter_1.db"), p).unwrap();
    });
    assert_eq!(reason, SkipReason::NotARegularFile);
    let dangling = skipped_reason(b"counter_3.db", |p| {
        std::os::unix::fs::symlink(p.with_file_name("missing.db"), p).unwrap();
    });
    assert_eq!(dangling, SkipReason::NotARegularFile);
}

#[test]
fn dotfiles_are_ignored() {
    let dir = TestDir::new();
    write_valid_files(dir.path());
    fs::copy(dir.path().join("counter_1.db"), dir.path().join(".counter_2.db")).unwrap();
    fs::write(dir.path().join(".gauge_all_9.db"), b"garbage").unwrap();
    let scrape = Collector::new(dir.path()).unwrap().collect().unwrap();
    assert!(scrape.skipped.is_empty());
    assert_eq!(text(&scrape), baseline());
}

#[test]
fn file_of_zeros_is_empty_not_corrupt() {
    let dir = TestDir::new();
    write_valid_files(dir.path());
    fs::write(dir.path().join("counter_2.db"), vec![0u8; 65536]).unwrap();
    let scrape = Collector::new(dir.path()).unwrap().collect().unwrap();
    assert!(scrape.skipped.is_empty(), "Python reads used == 0 as an empty file");
    assert_eq!(text(&scrape), baseline());
}

/// Set (to the directory) when this test binary runs as the unprivileged child of
/// [`unreadable_file_is_skipped`].
const CHILD_ENV: &str = "PMP_UNREADABLE_CHILD_DIR";

#[test]
fn unreadable_file_is_skipped() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        // Child, running as nobody: the bad file has mode 000.
        let scrape = Collector::new(&dir).unwrap().collect().unwrap();
        assert_eq!(text(&scrape), baseline());
        assert_eq!(scrape.skipped.len(), 1);
        assert_eq!(scrape.skipped[0].reason, SkipReason::Unreadable(std::io::ErrorKind::PermissionDenied));
        println!("unreadable child checked");
        return;
    }
    let dir = TestDir::new();
    write_valid_files(dir.path());
    let bad = dir.path().join("counter_2.db");
    fs::write(&bad, file_bytes(&[(&key("c", "c_total", &[("a", "x")]), 1.0, 0.0)])).unwrap();
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o000)).unwrap();
    // A file we create is owned by our effective uid.
    let root = std::os::unix::fs::MetadataExt::uid(&fs::metadata(&bad).unwrap()) == 0;
    if !root {
        let scrape = Collector::new(dir.path()).unwrap().collect().unwrap();
        assert_eq!(text(&scrape), baseline());
        assert_eq!(scrape.skipped.len(), 1);
        assert_eq!(scrape.skipped[0].reason, SkipReason::Unreadable(std::io::ErrorKind::PermissionDenied));
        return;
    }
    // Root reads any file: check as nobody, in a child running this very test.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["counter_1.db", "gauge_all_1.db", "gauge_livesum_1.db", "histogram_1.db", "summary_1.db"] {
        fs::set_permissions(dir.path().join(name), fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "unreadable_file_is_skipped", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .output()
        .expect("run setpriv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("unreadable child checked"), "the child did not run the check: {stdout}");
}

#[test]
fn valid_file_truncated_at_every_offset_never_disturbs_the_others() {
    let full = histogram_bytes();
    let boundaries: Vec<usize> = std::iter::once(format::HEADER_LEN)
        .chain(format::entries(&full, full.len()).map(|e| {
            let e = e.unwrap();
            e.offset + format::entry_len(e.key.len())
        }))
        .collect();
    for way in [Way::KeptMapping, Way::Copy, Way::StockCopy] {
        truncated_at_every_offset(&full, &boundaries, way);
    }
}

/// [`valid_file_truncated_at_every_offset_never_disturbs_the_others`] for a file read
/// `way`.
fn truncated_at_every_offset(full: &[u8], boundaries: &[usize], way: Way) {
    let base = baseline();
    let dir = TestDir::new();
    write_valid_files(dir.path());
    let name = name_for(b"histogram_2.db", way).expect("writer 2's file");
    let path = dir.path().join(std::ffi::OsStr::from_bytes(&name));
    // One collector for the whole run (its cached state sees the file rewritten in
    // place at every size), checked against a fresh collector each time.
    let kept = collector(dir.path(), way);
    let mut accepted = 0;
    for cut in 0..full.len() {
        for rewrite_used in [false, true] {
            let mut bytes = full[..cut].to_vec();
            if rewrite_used && cut >= 4 {
                bytes[..4].copy_from_slice(&(cut as u32).to_le_bytes());
            }
            fs::write(&path, &bytes).unwrap();
            let scrape = kept.collect().expect("a truncated file never fails the scrape");
            let fresh = collector(dir.path(), way).collect().unwrap();
            assert_eq!(scrape, fresh, "cut at {cut}: cached state diverged from a fresh scrape");
            let whole_entries = rewrite_used && boundaries.contains(&cut);
            if whole_entries {
                // A valid prefix: a smaller, well-formed file, merged as Python merges it.
                assert!(scrape.skipped.is_empty(), "cut at {cut}: {:?}", scrape.skipped);
                assert_eq!(text(&scrape), support::python_exposition(dir.path()), "cut at {cut}: differs from Python");
                accepted += 1;
            } else {
                assert_eq!(scrape.skipped.len(), 1, "cut at {cut} (used rewritten: {rewrite_used})");
                assert_eq!(text(&scrape), base, "cut at {cut}: the other files' output changed");
            }
        }
    }
    assert_eq!(accepted, boundaries.len() - 1, "every entry boundary below the full size is a valid prefix");
}
