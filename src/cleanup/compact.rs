//! Compaction; the design and its guarantees are documented on [`crate::cleanup`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hashbrown::HashMap;

use crate::error::{Error, ErrorKind, Result};
use crate::file;
use crate::format::check;
use crate::format::fold::Fold;
use crate::format::names::{self, worker_id_of};
use crate::format::names::{FileKind, GaugeMode};
use crate::format::{self, archive};
use crate::liveness::{Liveness, liveness, pid_in_use};

/// A file-system step of a compaction, reported to [`CompactOptions::on_step`] after it
/// is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 0 for the first step of this compaction, then 1, 2, …
    pub index: usize,
    /// What was done.
    pub action: StepAction,
    /// The file it was done to.
    pub file: String,
}

/// The kinds of [`Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepAction {
    /// A file left by an interrupted compaction was removed.
    Recovered,
    /// An archive or manifest was written under its temporary name.
    Staged,
    /// The sequence file was bumped (to odd before publishing archives, to even after).
    Sequenced,
    /// A manifest or archive was renamed into place.
    Published,
    /// A folded source, a dead writer's live gauge file or a superseded manifest was
    /// removed.
    Removed,
}

/// A callback told of every compaction step.
pub type StepHook<'a> = Box<dyn FnMut(&Step) + 'a>;

/// Options for [`compact_with`]: `CompactOptions::default().min_dead_files(64)`.
#[derive(Default)]
#[non_exhaustive]
pub struct CompactOptions<'a> {
    /// Do nothing unless at least this many files of dead writers can be folded or
    /// removed (a policy: call after reaping workers, with e.g. 64; see also
    /// [`spawn_auto_compaction`](crate::cleanup::spawn_auto_compaction)).
    pub min_dead_files: usize,
    /// Called after every file-system step (progress reporting, fault injection).
    pub on_step: Option<StepHook<'a>>,
}

impl<'a> CompactOptions<'a> {
    /// Sets [`CompactOptions::min_dead_files`].
    pub fn min_dead_files(mut self, n: usize) -> Self {
        self.min_dead_files = n;
        self
    }

    /// Sets [`CompactOptions::on_step`].
    pub fn on_step(mut self, hook: impl FnMut(&Step) + 'a) -> Self {
        self.on_step = Some(Box::new(hook));
        self
    }
}

impl std::fmt::Debug for CompactOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactOptions")
            .field("min_dead_files", &self.min_dead_files)
            .field("on_step", &self.on_step.as_ref().map(|_| "FnMut"))
            .finish()
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Worker IDs found dead whose files were folded or removed, sorted (a writer
    /// killed in its start-up may have left only its liveness or temporary files).
    pub dead_writers: Vec<String>,
    /// Archives written, by file name.
    pub archives: Vec<String>,
    /// Files removed (sources, live gauge files, manifests, dead writers' liveness and
    /// temporary files).
    pub removed: Vec<String>,
    /// Files of dead writers left in place (`all`-mode gauges).
    pub kept: Vec<String>,
    /// Files that would have been folded but cannot be read or parsed, with the reason:
    /// left in place (collectors skip them too) and folded by no archive, so one bad
    /// file never stops the rest of the directory from being compacted.
    pub unreadable: Vec<(String, String)>,
    /// Dead writers named by a pid that a running process has again, left for a later
    /// compaction: that process may be a Python worker (which announces no liveness)
    /// continuing the same files.
    pub deferred: Vec<String>,
}

/// Compacts `dir` now. See [compaction](crate::cleanup#compaction).
///
/// A dead writer's file that cannot be read or parsed is left in place and listed in
/// [`Compaction::unreadable`]; the rest is compacted.
///
/// Archives and manifests get the permission bits of the files they fold (so a scraper
/// that could read the sources can read the archive), or `0600` when there are none.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{cleanup::compact, Collector, Opts, Registry, WorkerId};
/// for slot in ["w1", "w2", "w3"] {
///     // Three workers that counted and exited.
///     let r = Registry::builder().dir(dir.path()).worker_id(WorkerId::new(slot)?).build()?;
///     r.counter(Opts::new("jobs_total", "Jobs."))?.inc_by(2.0);
/// }
/// let before = Collector::new(dir.path())?.collect()?;
/// let done = compact(dir.path())?;
/// assert_eq!(done.dead_writers, ["w1", "w2", "w3"]);
/// assert_eq!(done.archives, ["counter_0archive-1.db"]); // three files folded into one
/// assert_eq!(Collector::new(dir.path())?.collect()?.families, before.families);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`ErrorKind::CompactionInProgress`] when another compaction runs;
/// [`ErrorKind::CorruptFile`] naming an unreadable manifest of an interrupted
/// compaction; an I/O kind naming the file that could not be written, renamed or
/// removed (the directory stays consistent; the next compaction finishes the work).
pub fn compact(dir: &Path) -> Result<Compaction> {
    compact_with(dir, CompactOptions::default())
}

/// Compacts `dir` with `options`. See [compaction](crate::cleanup#compaction).
///
/// # Errors
/// As [`compact`].
pub fn compact_with(dir: &Path, mut options: CompactOptions<'_>) -> Result<Compaction> {
    let _dir_lock = crate::liveness::lock_compaction(dir)?;
    let mut run = Run { dir, index: 0, on_step: options.on_step.take(), report: Compaction::default() };
    run.recover()?;

    let names = file::list_names(dir)?;
    // Hold each dead writer's liveness file with a shared lock until its files are gone:
    // a worker taking over the slot now (it needs the exclusive lock) would continue a
    // file that is about to be folded and removed, while probes (which test for an
    // exclusive lock) still see the writer as dead. A writer that took the slot since
    // the census is alive: its lock cannot be held, and it is left alone.
    let census = Census::of(dir, &names);
    let mut held = Vec::new();
    let mut dead_ids: BTreeSet<String> = BTreeSet::new();
    let mut temps_only: BTreeSet<&str> = BTreeSet::new();
    for &id in &census.dead {
        let Some(lock) = crate::liveness::hold_dead(dir, id) else { continue };
        held.push(lock);
        if census.deferred.contains(id) {
            run.report.deferred.push(id.to_owned());
            temps_only.insert(id);
        } else {
            dead_ids.insert(id.to_owned());
        }
    }
    let dead_temps: Vec<String> = names
        .iter()
        .filter(|n| {
            names::parse_writer_temp(n).is_some_and(|t| dead_ids.contains(t.db.id) || temps_only.contains(t.db.id))
        })
        .chain(census.orphan_temps)
        .cloned()
        .collect();
    let dead_locks = dead_ids.iter().filter(|id| names.contains(&names::lock_name(id))).count();
    let is_dead = |name: &str| worker_id_of(name).is_some_and(|id| dead_ids.contains(id));
    let live_gauge_files: Vec<&String> =
        names.iter().filter(|n| names::parse_db_name(n).is_some_and(|db| db.kind.is_live()) && is_dead(n)).collect();
    let mut plans = Vec::new();
    let generation = names.iter().filter_map(|n| archive::parse_archive_name(n)).map(|(_, g)| g).max().unwrap_or(0) + 1;
    let mut folded = 0;
    for kind in FileKind::ALL.into_iter().filter(|k| Fold::folds_into_archive(*k)) {
        let prefix = kind.prefix();
        let own = |n: &&String| names::parse_db_name(n).is_some_and(|db| db.kind == kind);
        let dead: Vec<String> = names.iter().filter(own).filter(|n| is_dead(n)).cloned().collect();
        if dead.is_empty() {
            continue;
        }
        folded += dead.len();
        let previous: Vec<String> = names
            .iter()
            .filter(|n| archive::parse_archive_name(n).is_some_and(|(p, _)| p == prefix))
            .cloned()
            .collect();
        let sources: Vec<String> = previous.into_iter().chain(dead).collect();
        plans.push(Plan { kind, archive: archive::archive_name(prefix, generation), sources });
    }
    run.report.kept = names
        .iter()
        .filter(|n| is_dead(n) && names::parse_db_name(n).is_some_and(|db| db.kind == FileKind::Gauge(GaugeMode::All)))
        .cloned()
        .collect();
    if folded + live_gauge_files.len() + dead_temps.len() + dead_locks < options.min_dead_files.max(1) {
        return Ok(run.report);
    }

    // Stage: read and check every source first. A source that cannot be read or
    // parsed stays where it is, out of the plan (its bytes count nowhere, as in a scrape).
    let mut staged = Vec::new();
    for plan in &mut plans {
        let mut inputs = Vec::new();
        for source in std::mem::take(&mut plan.sources) {
            match file::read_db(dir, &source).and_then(|bytes| {
                // A file a collector skips must not be folded: the archive would be
                // skipped in its turn, with everything it holds.
                check::check_file(plan.kind, &bytes).map(|()| bytes).map_err(|problem| {
                    Error::new(ErrorKind::CorruptFile)
                        .at(&dir.join(&source))
                        .expected(format!("a file the collector reads: {problem}"))
                })
            }) {
                Ok(bytes) => {
                    plan.sources.push(source);
                    inputs.push(bytes);
                }
                Err(e) => {
                    log::warn!("compaction leaves {source} in place: {e}");
                    run.report.unreadable.push((source, e.to_string()));
                }
            }
        }
        staged.push(fold_files(Fold::of(plan.kind), &inputs));
    }
    // A plan whose every dead source was left out would only copy the previous archive.
    let (plans, staged): (Vec<Plan>, Vec<Vec<u8>>) = plans
        .into_iter()
        .zip(staged)
        .filter(|(plan, _)| plan.sources.iter().any(|s| archive::parse_archive_name(s).is_none()))
        .unzip();
    let mode = file_mode_of(dir, plans.iter().flat_map(|p| p.sources.iter()));
    for (plan, bytes) in plans.iter().zip(&staged) {
        let manifest = archive::manifest_name(&plan.archive);
        run.write_staged(&tmp_name(&manifest), archive::encode_manifest(&plan.sources).as_bytes(), mode)?;
        run.write_staged(&tmp_name(&plan.archive), bytes, mode)?;
    }

    if !plans.is_empty() {
        run.bump_seq(mode)?;
        for plan in &plans {
            let manifest = archive::manifest_name(&plan.archive);
            run.publish(&tmp_name(&manifest), &manifest)?;
            run.publish(&tmp_name(&plan.archive), &plan.archive)?;
            run.report.archives.push(plan.archive.clone());
        }
        file::sync_dir(dir)?;
        run.bump_seq(mode)?;
    }
    // Published archives are stable directory entries now and readers leave their
    // sources out, so removing the sources needs no sequencing.
    for plan in &plans {
        for source in &plan.sources {
            run.remove(source)?;
            if archive::parse_archive_name(source).is_some() {
                run.remove(&archive::manifest_name(source))?;
            }
        }
    }
    for name in live_gauge_files {
        run.remove(name)?;
    }
    // Temporary files before liveness files: both go while the liveness lock is held.
    for name in &dead_temps {
        run.remove_leftover(name);
    }
    for id in &dead_ids {
        run.remove_leftover(&names::lock_name(id));
    }
    // Every source is gone, so the manifests have nothing left to exclude; without
    // them a scrape does not read thousands of names it no longer needs. (A scrape
    // reads manifests before opening files, and sources go before their manifest, so
    // one that missed a manifest finds its sources gone too.)
    for plan in &plans {
        run.remove(&archive::manifest_name(&plan.archive))?;
    }
    drop(held);
    run.report.dead_writers = dead_ids.into_iter().collect();
    Ok(run.report)
}

/// Who the worker IDs of a directory's names belong to, as compaction sees them.
struct Census<'n> {
    /// IDs whose liveness lock is free: their writers are dead.
    dead: BTreeSet<&'n str>,
    /// Dead IDs whose `.db` files wait (a subset of `dead`): the ID was its writer's pid,
    /// and a running process has that pid again. It may be a Python worker, which takes
    /// no lock, continuing the same files; folding them would remove files it writes.
    deferred: BTreeSet<&'n str>,
    /// Temporary files of IDs without a liveness file whose creator's pid is gone.
    orphan_temps: Vec<&'n String>,
}

impl<'n> Census<'n> {
    /// Every worker ID that `names` (the directory's) mention by a `.db` file, a
    /// liveness file or a temporary file, classified by the lock protocol.
    fn of(dir: &Path, names: &'n [String]) -> Census<'n> {
        let mut ids: BTreeMap<&str, bool> = BTreeMap::new();
        let mut temps: BTreeMap<&str, Vec<(&'n String, u32)>> = BTreeMap::new();
        for name in names {
            if let Some(db) = names::parse_db_name(name) {
                ids.insert(db.id, true);
            } else if let Some(id) = names::parse_lock_name(name) {
                ids.entry(id).or_insert(false);
            } else if let Some(temp) = names::parse_writer_temp(name) {
                ids.entry(temp.db.id).or_insert(false);
                temps.entry(temp.db.id).or_default().push((name, temp.pid));
            }
        }
        let mut census = Census { dead: BTreeSet::new(), deferred: BTreeSet::new(), orphan_temps: Vec::new() };
        for (id, has_db) in ids {
            match liveness(dir, id) {
                Liveness::Alive => {}
                Liveness::Dead => {
                    census.dead.insert(id);
                    if has_db && pid_in_use(dir, id) {
                        census.deferred.insert(id);
                    }
                }
                // No liveness file (or not a regular one): no writer of ours holds the
                // ID, as a writer creates its liveness file before any other file and
                // only a dead writer's is ever removed (or an earlier version's compaction
                // removed it and left the temporary files). The creator's pid, in the
                // temporary file's name, must be gone too.
                Liveness::Unknown => census.orphan_temps.extend(
                    temps
                        .get(id)
                        .into_iter()
                        .flatten()
                        .filter(|(_, pid)| !crate::liveness::pid_running(&pid.to_string()))
                        .map(|(name, _)| *name),
                ),
            }
        }
        census
    }
}

/// The liveness and temporary files of dead writers in `dir` that [`compact`] would
/// remove now, sorted: every dead writer's `.KIND_ID.db.PID.tmp` files, the
/// `writer_ID.lock` of every dead writer whose files are not deferred (see
/// [`Compaction::deferred`]), and temporary files of IDs without a liveness file whose
/// creating process is gone. Dead means the writer's liveness lock is free, never a
/// guess from pids.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use prometheus_multiproc::{cleanup::{compact, dead_writer_leftovers}, Registry, WorkerId};
/// drop(Registry::builder().dir(dir.path()).worker_id(WorkerId::new("w1")?).build()?);
/// assert_eq!(dead_writer_leftovers(dir.path())?, ["writer_w1.lock"]); // it died before writing
/// compact(dir.path())?;
/// assert!(dead_writer_leftovers(dir.path())?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// When the directory cannot be listed, naming it.
pub fn dead_writer_leftovers(dir: &Path) -> Result<Vec<String>> {
    let names = file::list_names(dir)?;
    let census = Census::of(dir, &names);
    let mut out: Vec<String> = names
        .iter()
        .filter(|n| {
            names::parse_writer_temp(n).is_some_and(|t| census.dead.contains(t.db.id))
                || names::parse_lock_name(n).is_some_and(|id| census.dead.contains(id) && !census.deferred.contains(id))
        })
        .chain(census.orphan_temps)
        .cloned()
        .collect();
    out.sort();
    Ok(out)
}

/// How long a writer taking over a slot waits for a running compaction before it
/// finishes an interrupted one itself.
const FINISH_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Finishes an interrupted compaction (step 2 of the protocol) for a writer that has
/// just taken over a slot whose files an archive already counts: waits for a running
/// compactor (which finishes it first thing), then recovers under the directory lock.
///
/// Recovery removes every source of a published archive, whatever the liveness of its
/// slot: a writer opens its files only after this check, so a slot's listed file is
/// never one a live writer has opened since the archive was published.
pub(crate) fn finish_interrupted(dir: &Path) -> Result<()> {
    let start = std::time::Instant::now();
    let _dir_lock = loop {
        match crate::liveness::lock_compaction(dir) {
            Err(e) if e.kind() == ErrorKind::CompactionInProgress && start.elapsed() < FINISH_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other?,
        }
    };
    Run { dir, index: 0, on_step: None, report: Compaction::default() }.recover()
}

struct Plan {
    kind: FileKind,
    archive: String,
    sources: Vec<String>,
}

/// The staging name of an archive or manifest (see [`names::is_compaction_temp`]).
fn tmp_name(name: &str) -> String {
    names::compaction_temp_name(name)
}

struct Run<'d, 'a> {
    dir: &'d Path,
    index: usize,
    on_step: Option<StepHook<'a>>,
    report: Compaction,
}

impl Run<'_, '_> {
    fn step(&mut self, action: StepAction, file: &str) {
        let step = Step { index: self.index, action, file: file.to_owned() };
        self.index += 1;
        if let Some(on_step) = self.on_step.as_mut() {
            on_step(&step);
        }
    }

    fn write_staged(&mut self, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
        file::remove_db(self.dir, name)?;
        file::write_new(self.dir, name, bytes, mode)?;
        self.step(StepAction::Staged, name);
        Ok(())
    }

    fn publish(&mut self, from: &str, to: &str) -> Result<()> {
        file::rename(self.dir, from, to)?;
        self.step(StepAction::Published, to);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<()> {
        if file::remove_db(self.dir, name)? {
            self.report.removed.push(name.to_owned());
            self.step(StepAction::Removed, name);
        }
        Ok(())
    }

    /// Removes a dead writer's liveness or temporary file; one that cannot be removed
    /// (a directory planted under its name) is logged and left, never stopping the
    /// rest of the compaction.
    fn remove_leftover(&mut self, name: &str) {
        if let Err(e) = self.remove(name) {
            log::warn!("compaction leaves {name} in place: {e}");
        }
    }

    fn bump_seq(&mut self, mode: u32) -> Result<()> {
        crate::liveness::bump_compaction_seq(self.dir, mode)?;
        self.step(StepAction::Sequenced, names::COMPACT_SEQ);
        Ok(())
    }

    /// Finishes what an interrupted compaction left: the sources of published archives
    /// and then their manifests (step 7), manifests without their archive, temporary
    /// files, an odd sequence number.
    fn recover(&mut self) -> Result<()> {
        let names = file::list_names(self.dir)?;
        let present: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        // Removed in this order, as step 7 removes them: sources before the manifests
        // that exclude them.
        let mut sources: Vec<String> = Vec::new();
        let mut manifests: Vec<String> = Vec::new();
        let mut temporary: Vec<String> = Vec::new();
        for name in &names {
            if archive::parse_archive_name(name).is_some() {
                let manifest = archive::manifest_name(name);
                if present.contains(manifest.as_str()) {
                    let text = file::read_text(self.dir, &manifest)?;
                    let listed = archive::decode_manifest(&text).ok_or_else(|| {
                        Error::new(ErrorKind::CorruptFile)
                            .at(&self.dir.join(&manifest))
                            .expected("an archive source manifest")
                    })?;
                    sources.extend(listed.into_iter().filter(|s| s != name && present.contains(s.as_str())));
                    manifests.push(manifest);
                }
            } else if let Some(archive) = names::manifest_archive(name) {
                if !present.contains(archive) {
                    manifests.push(name.clone());
                }
            } else if names::is_compaction_temp(name) {
                temporary.push(name.clone());
            }
        }
        for name in sources.into_iter().chain(temporary).chain(manifests) {
            if file::remove_db(self.dir, &name)? {
                self.report.removed.push(name.clone());
                self.step(StepAction::Recovered, &name);
            }
        }
        if crate::liveness::read_compaction_seq(self.dir) % 2 == 1 {
            self.bump_seq(DEFAULT_MODE)?;
        }
        Ok(())
    }
}

/// Permission bits for archives, manifests and the sequence file when there is no
/// source to take them from.
const DEFAULT_MODE: u32 = 0o600;

/// The permission bits of the first of `sources` that can be read (writers' files carry
/// the mode their registry was configured with), or [`DEFAULT_MODE`].
fn file_mode_of<'n>(dir: &Path, mut sources: impl Iterator<Item = &'n String>) -> u32 {
    sources.find_map(|name| file::mode(dir, name)).unwrap_or(DEFAULT_MODE)
}

/// Folds the entries of `files` (each accepted by [`check::check_file`]), in order, into the
/// bytes of one archive file.
fn fold_files(fold: Fold, files: &[Vec<u8>]) -> Vec<u8> {
    let mut order: Vec<&[u8]> = Vec::new();
    let mut acc: HashMap<&[u8], (f64, f64)> = HashMap::new();
    for data in files {
        let used = format::checked_used(data).expect("sources are checked before folding");
        for entry in format::entries(data, used) {
            let entry = entry.expect("sources are checked before folding");
            let (value, ts) = format::decode_value(data, entry.value_offset).expect("entries lie below used");
            match acc.get_mut(entry.key) {
                // Kept even when not shown (a `mostrecent` series never set): the
                // collector shows its family, as it would from the source.
                None => {
                    order.push(entry.key);
                    acc.insert(entry.key, fold.start(value, ts));
                }
                Some(cur) => fold.fold(cur, value, ts),
            }
        }
    }
    let mut out = format::encode_header(0).to_vec();
    for key in order {
        let (value, ts) = acc[key];
        format::encode_entry(&mut out, key, value, ts);
    }
    let used = out.len() as u32;
    out[..4].copy_from_slice(&used.to_le_bytes());
    out
}

/// Files whose contribution an archive has taken over: the sources listed in the
/// manifest of every archive present in `names`. A collector leaves these out.
pub(crate) fn superseded(dir: &Path, names: &[String]) -> BTreeMap<String, String> {
    superseded_checked(dir, names).0
}

/// As [`superseded`], and whether every archive's manifest could be read (or was
/// rightly gone): when not, the answer may change with no change to the directory.
pub(crate) fn superseded_checked(dir: &Path, names: &[String]) -> (BTreeMap<String, String>, bool) {
    let mut complete = true;
    let mut out = BTreeMap::new();
    for name in names {
        if archive::parse_archive_name(name).is_none() {
            continue;
        }
        let manifest = archive::manifest_name(name);
        let text = match file::read_text(dir, &manifest) {
            Ok(text) => text,
            // The normal state of a finished compaction: its sources are gone, and with
            // them the manifest that excluded them (step 7).
            Err(e) if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => continue,
            Err(e) => {
                log::warn!("archive {name}: cannot read its manifest, so its sources, if present, count twice: {e}");
                complete = false;
                continue;
            }
        };
        match archive::decode_manifest(&text) {
            Some(sources) => {
                for source in sources.into_iter().filter(|s| s != name) {
                    out.insert(source, name.clone());
                }
            }
            None => {
                complete = false;
                log::warn!(
                    "archive {name}: {} is not a source manifest (expected the header line {:?}), so its sources, \
                 if present, count twice",
                    dir.join(&manifest).display(),
                    archive::MANIFEST_HEADER
                );
            }
        }
    }
    (out, complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&str, f64, f64)]) -> Vec<u8> {
        let mut out = format::encode_header(0).to_vec();
        for (k, v, t) in entries {
            format::encode_entry(&mut out, k.as_bytes(), *v, *t);
        }
        let used = out.len() as u32;
        out[..4].copy_from_slice(&used.to_le_bytes());
        out
    }

    fn values(bytes: &[u8]) -> Vec<(String, f64, f64)> {
        let used = format::checked_used(bytes).unwrap();
        format::entries(bytes, used)
            .map(|e| {
                let e = e.unwrap();
                let (v, t) = format::decode_value(bytes, e.value_offset).unwrap();
                (String::from_utf8(e.key.to_vec()).unwrap(), v, t)
            })
            .collect()
    }

    #[test]
    fn sums_keep_first_seen_order() {
        let a = file(&[("a", 1.0, 0.0), ("b", 2.0, 0.0)]);
        let b = file(&[("c", 5.0, 0.0), ("a", 3.0, 0.0)]);
        let out = fold_files(Fold::Sum, &[a, b]);
        assert_eq!(values(&out), vec![("a".into(), 4.0, 0.0), ("b".into(), 2.0, 0.0), ("c".into(), 5.0, 0.0)]);
    }

    #[test]
    fn min_max_and_mostrecent_follow_the_collector_rules() {
        let a = file(&[("g", f64::NAN, 0.0)]);
        let b = file(&[("g", 1.0, 0.0)]);
        let min = fold_files(Fold::Min, &[a.clone(), b.clone()]);
        assert!(values(&min)[0].1.is_nan(), "a NaN seen first sticks");
        let max = fold_files(Fold::Max, &[b, a]);
        assert_eq!(values(&max)[0].1, 1.0, "a NaN seen later is ignored");
        let r1 = file(&[("m", 5.0, 100.0)]);
        let r2 = file(&[("m", 7.0, 100.0)]);
        let r3 = file(&[("m", 9.0, 0.0)]);
        let recent = fold_files(Fold::MostRecent, &[r1, r2, r3]);
        assert_eq!(values(&recent), vec![("m".into(), 5.0, 100.0)], "ties keep the first; ts 0 never wins");
    }
}
