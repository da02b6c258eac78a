//! `inspect`: one line per `*.db` file, read with the pure `format` module, then the
//! liveness and temporary files of dead writers that compaction would remove.
//!
//! Files are read with `pread` into memory, never through a symlink and never blocking
//! on a FIFO. Keys never change once published, so a copy taken while a worker writes
//! shows whole entries (values are not shown, so a torn value cannot mislead).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::cleanup::{self, Liveness};
use crate::format::{self, archive::ARCHIVE_ID_PREFIX, check, names};
use crate::{Collector, GaugeMode};

/// At most this many problems are listed per file.
const MAX_PROBLEMS: usize = 10;

/// What `inspect` found about one file.
#[derive(Debug, Default)]
pub struct FileReport {
    pub name: String,
    pub kind: Option<&'static str>,
    pub mode: Option<&'static str>,
    pub writer_id: Option<String>,
    pub liveness: Option<&'static str>,
    /// What `compact` would do with the file now: `fold` it into an archive, `remove`
    /// it (a dead writer's live gauge), `keep` it (a dead writer's `all` gauge),
    /// `leave` it (it has problems, so it cannot be folded), `defer` it (its writer's
    /// pid runs again, perhaps as a Python worker continuing it).
    pub compaction: Option<&'static str>,
    pub entries: usize,
    pub families: usize,
    pub bytes_used: Option<u64>,
    pub bytes_allocated: u64,
    pub problems: Vec<String>,
}

/// What `inspect` found in a directory.
#[derive(Debug, Default)]
pub struct Inspection {
    /// One report per `*.db` file, sorted by name.
    pub files: Vec<FileReport>,
    /// Dead writers' liveness and temporary files, which `compact` removes
    /// (`cleanup::dead_writer_leftovers`), sorted by name.
    pub leftovers: Vec<Leftover>,
}

/// A dead writer's liveness file (`writer_ID.lock`) or temporary file
/// (`.KIND_ID.db.PID.tmp`).
#[derive(Debug)]
pub struct Leftover {
    pub name: String,
    pub writer_id: Option<String>,
    pub bytes_allocated: u64,
}

/// The type, gauge mode and writer ID in a file name, if it is one of ours or Python's
/// (`format::names::split_db_name`, the crate's one grammar of file names).
fn parse_name(name: &str) -> Option<(&'static str, Option<&'static str>, &str)> {
    let db = names::split_db_name(name)?;
    let kind = match db.kind {
        names::FileKind::Counter => "counter",
        names::FileKind::Histogram => "histogram",
        names::FileKind::Summary => "summary",
        names::FileKind::Gauge(_) => "gauge",
    };
    Some((kind, db.kind.gauge_mode().map(GaugeMode::as_str), db.id))
}

/// Opens `path` read-only without following a symlink or blocking on a FIFO.
fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)
}

fn describe_type(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symlink (never followed)"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a device or other special file"
    }
}

/// Reads the entries of one regular file into `report`.
fn read_entries(path: &Path, report: &mut FileReport) {
    let file = match open(path) {
        Ok(file) => file,
        Err(e) => return report.problems.push(format!("cannot open: {e}")),
    };
    let len = match file.metadata() {
        Ok(meta) if meta.file_type().is_file() => meta.len(),
        Ok(meta) => return report.problems.push(format!("not a regular file: {}", describe_type(&meta))),
        Err(e) => return report.problems.push(format!("cannot stat: {e}")),
    };
    if len == 0 {
        report.bytes_allocated = 0;
        return report.problems.push("the file is empty".to_owned());
    }
    let mut header = [0u8; format::HEADER_LEN];
    let header_len = match file.read_at(&mut header, 0) {
        Ok(n) => n,
        Err(e) => return report.problems.push(format!("cannot read: {e}")),
    };
    // Measured after `used` was read: a writer reserves a file's blocks before it
    // publishes a `used` that needs them, so a file growing meanwhile is not taken for
    // a corrupt one.
    let len = file.metadata().map_or(len, |m| m.len());
    report.bytes_allocated = len;
    let used = match format::decode_used(&header[..header_len]).and_then(|u| format::check_used(u, len as usize)) {
        Ok(used) => used,
        Err(e) => return report.problems.push(e.to_string()),
    };
    report.bytes_used = Some(used as u64);
    let mut data = vec![0u8; used];
    if let Err(e) = file.read_exact_at(&mut data, 0) {
        return report.problems.push(format!("cannot read: {e}"));
    }
    let mut families = BTreeSet::new();
    let mut bad = 0usize;
    for entry in format::entries(&data, used) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                report.problems.push(e.to_string());
                break;
            }
        };
        report.entries += 1;
        // The collector's own check (`format::check`), bucket bounds included.
        let kind = if report.kind == Some("histogram") { names::FileKind::Histogram } else { names::FileKind::Counter };
        match check::check_entry(kind, entry.key).and_then(|()| check::check_key(entry.key)) {
            Ok(key) => {
                families.insert(key.metric_name.into_owned());
            }
            Err(e) => {
                bad += 1;
                if bad <= MAX_PROBLEMS {
                    report.problems.push(format!("entry at offset {}: {e}", entry.offset));
                }
            }
        }
    }
    if bad > MAX_PROBLEMS {
        report.problems.push(format!("… and {} more entries with bad keys", bad - MAX_PROBLEMS));
    }
    report.families = families.len();
}

/// Inspects every `*.db` file of `dir` (dotfiles excluded, as the collector excludes
/// them), sorted by name.
///
/// # Errors
/// When the directory cannot be read.
pub fn inspect(dir: &Path) -> Result<Inspection, String> {
    let chain = |e: &dyn std::error::Error| super::chain(e);
    // The collector's verdicts, and the proof that the directory can be listed.
    let scrape = Collector::new(dir).and_then(|c| c.collect()).map_err(|e| chain(&e))?;
    let skipped: BTreeMap<_, _> = scrape.skipped.iter().map(|s| (s.path.clone(), s.reason.to_string())).collect();

    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("cannot read the directory {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|n| n.as_bytes().ends_with(b".db") && !n.as_bytes().starts_with(b"."))
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));

    let mut reports = Vec::with_capacity(names.len());
    for os_name in names {
        let path = dir.join(&os_name);
        let name = os_name.to_string_lossy().into_owned();
        let mut report = FileReport { name: name.clone(), ..FileReport::default() };
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_file() => {}
            Ok(meta) => report.problems.push(format!("not a regular file: {}", describe_type(&meta))),
            Err(e) => report.problems.push(format!("cannot stat: {e}")),
        }
        match parse_name(&name) {
            Some((kind, mode, id)) => {
                report.kind = Some(kind);
                report.mode = mode;
                report.writer_id = Some(id.to_owned());
                report.liveness = Some(if id.starts_with(ARCHIVE_ID_PREFIX) {
                    "archive"
                } else {
                    match cleanup::liveness(dir, id) {
                        Liveness::Alive => "alive",
                        Liveness::Dead => "dead",
                        Liveness::Unknown => "unknown",
                    }
                });
                if report.liveness == Some("dead") {
                    report.compaction = Some(match mode {
                        Some("all") => "keep",
                        Some(m) if m.starts_with("live") => "remove",
                        _ if cleanup::pid_in_use(dir, id) => "defer",
                        _ => "fold",
                    });
                }
            }
            None => report.problems.push(
                "unknown file name: expected counter_ID.db, gauge_MODE_ID.db, histogram_ID.db or summary_ID.db".into(),
            ),
        }
        if report.problems.is_empty() {
            read_entries(&path, &mut report);
        }
        if let Some(reason) = skipped.get(&path) {
            // Say it once when the collector's reason repeats a problem found above.
            if report.problems.iter().any(|p| reason.contains(p.as_str())) {
                report.problems.push("so the collector skips it".to_owned());
            } else {
                report.problems.push(format!("skipped by the collector: {reason}"));
            }
        }
        if report.compaction == Some("fold") && !report.problems.is_empty() {
            report.compaction = Some("leave");
        }
        reports.push(report);
    }
    let leftovers = cleanup::dead_writer_leftovers(dir)
        .map_err(|e| chain(&e))?
        .into_iter()
        .map(|name| Leftover {
            writer_id: writer_id_of_leftover(&name).map(str::to_owned),
            bytes_allocated: fs::symlink_metadata(dir.join(&name)).map_or(0, |m| m.len()),
            name,
        })
        .collect();
    Ok(Inspection { files: reports, leftovers })
}

/// The worker ID in a liveness file's or a writer's temporary file's name.
fn writer_id_of_leftover(name: &str) -> Option<&str> {
    names::parse_lock_name(name).or_else(|| names::parse_writer_temp(name).map(|t| t.db.id))
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

/// The report as an aligned table, problems indented under their file.
pub fn to_table(inspection: &Inspection) -> String {
    let reports = &inspection.files;
    let header = ["FILE", "TYPE", "MODE", "WRITER", "LIVENESS", "COMPACT", "FAMILIES", "ENTRIES", "USED", "ALLOCATED"];
    let rows: Vec<[String; 10]> = reports
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                or_dash(r.kind).to_owned(),
                or_dash(r.mode).to_owned(),
                or_dash(r.writer_id.as_deref()).to_owned(),
                or_dash(r.liveness).to_owned(),
                or_dash(r.compaction).to_owned(),
                r.families.to_string(),
                r.entries.to_string(),
                r.bytes_used.map_or("-".to_owned(), |u| u.to_string()),
                r.bytes_allocated.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Text columns left-aligned, numbers right-aligned.
            if i >= 6 { text.push_str(&format!("{cell:>w$}  ")) } else { text.push_str(&format!("{cell:<w$}  ")) }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &header);
    for (row, report) in rows.iter().zip(reports) {
        line(&mut out, &row.each_ref().map(String::as_str));
        for problem in &report.problems {
            out.push_str(&format!("    problem: {problem}\n"));
        }
    }
    let with_problems = reports.iter().filter(|r| !r.problems.is_empty()).count();
    let entries: usize = reports.iter().map(|r| r.entries).sum();
    let compactable = reports.iter().filter(|r| matches!(r.compaction, Some("fold" | "remove"))).count();
    out.push_str(&format!(
        "{} files, {entries} entries, {with_problems} with problems, {compactable} compactable\n",
        reports.len()
    ));
    if !inspection.leftovers.is_empty() {
        out.push_str(&format!(
            "{} liveness or temporary files of dead writers, which compact removes:\n",
            inspection.leftovers.len()
        ));
        for leftover in &inspection.leftovers {
            out.push_str(&format!(
                "    {}  (writer {}, {} bytes)\n",
                leftover.name,
                or_dash(leftover.writer_id.as_deref()),
                leftover.bytes_allocated
            ));
        }
    }
    out
}

/// The report as JSON: `{"dir": …, "files": [{…}, …], "leftovers": [{…}, …]}`.
pub fn to_json(dir: &Path, inspection: &Inspection) -> String {
    let files: Vec<_> = inspection
        .files
        .iter()
        .map(|r| {
            serde_json::json!({
                "file": r.name,
                "type": r.kind,
                "mode": r.mode,
                "writer_id": r.writer_id,
                "liveness": r.liveness,
                "compaction": r.compaction,
                "families": r.families,
                "entries": r.entries,
                "bytes_used": r.bytes_used,
                "bytes_allocated": r.bytes_allocated,
                "problems": r.problems,
            })
        })
        .collect();
    let leftovers: Vec<_> = inspection
        .leftovers
        .iter()
        .map(|l| serde_json::json!({ "file": l.name, "writer_id": l.writer_id, "bytes_allocated": l.bytes_allocated }))
        .collect();
    let value = serde_json::json!({ "dir": dir.to_string_lossy(), "files": files, "leftovers": leftovers });
    format!("{value:#}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_give_type_mode_and_writer() {
        assert_eq!(parse_name("counter_w1.db"), Some(("counter", None, "w1")));
        assert_eq!(parse_name("gauge_livesum_123.db"), Some(("gauge", Some("livesum"), "123")));
        assert_eq!(parse_name("gauge_all_7.db"), Some(("gauge", Some("all"), "7")));
        assert_eq!(parse_name("histogram_0archive-3.db"), Some(("histogram", None, "0archive-3")));
        assert_eq!(parse_name("gauge_bogus_1.db"), None);
        assert_eq!(parse_name("counter_.db"), None);
        assert_eq!(parse_name("notes.db"), None);
    }
}
