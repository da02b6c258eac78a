//! The per-process write side: which files this process writes, the series placed in
//! them, and what happens on `fork()` or a change of worker ID.
//!
//! A [`Series`] is what a handle points at: the keys of its entries (one for a counter
//! or gauge, two for a summary, 1 + buckets for a histogram) and a `'static` slot per
//! entry. The hot path reads the series' epoch, compares it with the process epoch,
//! and does one atomic read-modify-write on the slot. When the epochs differ (the
//! process is a fork child, or its worker ID changed) the series is re-placed in this
//! process's own files, like every other series of the registry, before the write.

mod dbfile;
mod identity;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use hashbrown::HashMap;
use parking_lot::Mutex;

use dbfile::DbFile;
pub(crate) use dbfile::EntrySlots;
pub(crate) use identity::from_env as identity_env;
pub use identity::{WORKER_ID_ENV, WorkerId, set_worker_id};

use crate::error::{Error, ErrorKind, Result};
use crate::file;
use crate::liveness;
use crate::region::{self, DISCARD, LiveLock, SlotCell};

/// Registry-wide state shared by all handles.
#[derive(Debug)]
pub(crate) struct Shared {
    dir: PathBuf,
    file_mode: u32,
    /// The worker ID chosen when the registry was built, valid in `creator_epoch` only.
    configured_id: Option<WorkerId>,
    creator_epoch: u64,
    state: Mutex<State>,
    /// Writes that could not be placed in a file (see [`Series::resync`]).
    pub(crate) lost_series: AtomicU64,
    /// Series lost after fork, not yet counted (see `flush_fork_drops`).
    pending_fork_drops: AtomicU64,
    /// Series not created and writes refused, by [`DropReason`], in this process.
    dropped: [AtomicU64; DropReason::ALL.len()],
    /// Whether a refusal of each reason was logged already (each is logged once).
    refusal_logged: [std::sync::atomic::AtomicBool; DropReason::ALL.len()],
    /// The series of the registry's own counters of dropped series (one per
    /// [`DropReason`], in order), when self-metrics are on.
    self_metrics: std::sync::OnceLock<Vec<Arc<Series>>>,
    /// A registry that writes nowhere (see [`Shared::detached`]).
    detached: bool,
}

/// Name of the self-metric counting series a writer could not create and writes it
/// refused, by reason (`no_space`, `io`, `cardinality`, `fork`, `label_count`,
/// `negative_increment`, `inc_on_mostrecent`).
pub const DROPPED_SERIES_METRIC: &str = "prometheus_multiproc_dropped_series_total";

/// Why a series was not created (or not where it was asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The file system is full.
    NoSpace,
    /// Another I/O failure (or a file that would pass 2 GiB).
    Io,
    /// The family's cardinality guard redirected it to the overflow series.
    Cardinality,
    /// It could not be re-created in this process's files after `fork()`.
    Fork,
    /// An infallible lookup with the wrong number of label values got a handle that
    /// drops its writes.
    LabelCount,
    /// A write refused: a negative or NaN counter increment.
    NegativeIncrement,
    /// A write refused: `inc`/`dec` on a gauge in a `mostrecent` mode.
    IncOnMostRecent,
}

impl DropReason {
    pub(crate) const ALL: [DropReason; 7] = [
        DropReason::NoSpace,
        DropReason::Io,
        DropReason::Cardinality,
        DropReason::Fork,
        DropReason::LabelCount,
        DropReason::NegativeIncrement,
        DropReason::IncOnMostRecent,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DropReason::NoSpace => "no_space",
            DropReason::Io => "io",
            DropReason::Cardinality => "cardinality",
            DropReason::Fork => "fork",
            DropReason::LabelCount => "label_count",
            DropReason::NegativeIncrement => "negative_increment",
            DropReason::IncOnMostRecent => "inc_on_mostrecent",
        }
    }

    /// The reason a creation error counts under, if it counts: validation errors
    /// (bad names, wrong label count) are the caller's bug, not a dropped series.
    pub(crate) fn of(err: &Error) -> DropReason {
        match err.kind() {
            ErrorKind::NoSpace => DropReason::NoSpace,
            _ => DropReason::Io,
        }
    }
}

#[derive(Debug)]
struct State {
    epoch: u64,
    /// The worker ID written under; an automatic one ([`WorkerId::is_auto`]) until its
    /// slot is claimed.
    id: WorkerId,
    /// The exclusive liveness lock of `id`. None after a failed re-lock in a fork child
    /// (every write is dropped), and while an automatic slot is not claimed yet: series
    /// created then are not placed in any file (their epoch is [`UNPLACED`]), so the
    /// first write through any of them claims the slot and places them all.
    live: Option<LiveLock>,
    files: HashMap<&'static str, DbFile>,
    /// Every series ever created, in creation order, so that a fork child can
    /// re-create them in its own files in the same order (as Python does).
    series: Vec<Weak<Series>>,
}

/// The epoch of a series not placed in any file yet (declared before an automatic slot
/// was claimed): never a process epoch, so its first write re-resolves it.
const UNPLACED: u64 = u64::MAX;

impl State {
    /// Whether the worker ID is an automatic slot not claimed yet.
    fn awaits_claim(&self) -> bool {
        self.live.is_none() && self.id.is_auto()
    }
}

impl Shared {
    /// Registry state that belongs to no directory: every series it creates is
    /// detached (drops its writes), and it holds no worker ID, file or lock.
    pub(crate) fn detached() -> Arc<Shared> {
        let epoch = region::epoch();
        Arc::new(Shared {
            dir: PathBuf::new(),
            file_mode: 0o600,
            configured_id: None,
            creator_epoch: epoch,
            state: Mutex::new(State {
                epoch,
                id: WorkerId::pid(),
                live: None,
                files: HashMap::new(),
                series: Vec::new(),
            }),
            lost_series: AtomicU64::new(0),
            pending_fork_drops: AtomicU64::new(0),
            dropped: Default::default(),
            detached: true,
            refusal_logged: Default::default(),
            self_metrics: std::sync::OnceLock::new(),
        })
    }

    pub(crate) fn new(dir: &Path, file_mode: u32, configured_id: Option<WorkerId>) -> Result<Arc<Shared>> {
        let dir = file::check_dir(dir)?;
        region::install_fork_hooks();
        // Guarded like every change of the directory: a fork meanwhile would leave the
        // child with the identity lock held or with a copy of a liveness lock that no
        // fork hook knows about yet.
        let _guard = region::FORK_GUARD.read();
        let epoch = region::epoch();
        let mut id = identity::current(epoch, configured_id.as_ref(), epoch);
        // An automatic slot is claimed at the first write, not here (see `State::live`).
        let live = if id.is_auto() {
            None
        } else {
            let (claimed, live) = lock_liveness(&dir, &id, file_mode)?;
            id = claimed;
            Some(live)
        };
        Ok(Arc::new(Shared {
            dir,
            file_mode,
            configured_id,
            creator_epoch: epoch,
            state: Mutex::new(State { epoch, id, live, files: HashMap::new(), series: Vec::new() }),
            lost_series: AtomicU64::new(0),
            pending_fork_drops: AtomicU64::new(0),
            dropped: Default::default(),
            detached: false,
            refusal_logged: Default::default(),
            self_metrics: std::sync::OnceLock::new(),
        }))
    }

    /// Counts a series that was not created, in the process-local tally and, when
    /// self-metrics are on, in the shared files.
    pub(crate) fn count_dropped(&self, reason: DropReason) {
        let i = DropReason::ALL.iter().position(|r| *r == reason).expect("every reason is listed");
        self.dropped[i].fetch_add(1, Ordering::Relaxed);
        if let Some(counters) = self.self_metrics.get() {
            add_f64(counters[i].first(), 1.0);
        }
    }

    /// Counts a refused write of `series` (a negative counter increment, `inc` on a
    /// `mostrecent` gauge) and logs the first of each reason in this process.
    #[cold]
    #[inline(never)]
    pub(crate) fn count_refusal(&self, reason: DropReason, series: &Series, amount: f64) {
        self.count_dropped(reason);
        let i = DropReason::ALL.iter().position(|r| *r == reason).expect("every reason is listed");
        if !self.refusal_logged[i].swap(true, Ordering::Relaxed) {
            let name =
                crate::format::key::decode_key(&series.keys[0]).map_or_else(|_| "?".to_owned(), |k| k.metric_name);
            let what = match reason {
                DropReason::IncOnMostRecent => "inc/dec on a gauge in a mostrecent mode (use set)",
                _ => "a negative or NaN counter increment",
            };
            log::warn!(
                "metric {name}: refused {what} ({amount}); this and later refusals are counted in \
                 {}{{reason=\"{}\"}} and Registry::dropped_series(), and not logged again",
                DROPPED_SERIES_METRIC,
                reason.as_str()
            );
        }
    }

    /// Counts the series a fork child could not re-create; called without the state lock.
    fn flush_fork_drops(&self) {
        for _ in 0..self.pending_fork_drops.swap(0, Ordering::Relaxed) {
            self.count_dropped(DropReason::Fork);
        }
    }

    /// This process's tally of series not created, by reason name.
    pub(crate) fn dropped(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL.iter().zip(&self.dropped).map(|(r, n)| (r.as_str(), n.load(Ordering::Relaxed))).collect()
    }

    /// Installs the series of the self-metric counters, one per [`DropReason`] in order.
    pub(crate) fn set_self_metrics(&self, counters: Vec<Arc<Series>>) {
        let _ = self.self_metrics.set(counters);
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The worker ID this process writes under now.
    pub(crate) fn worker_id(&self) -> WorkerId {
        let _guard = region::FORK_GUARD.read();
        let mut state = self.state.lock();
        let _ = self.refresh(&mut state, false); // failures are logged and counted
        state.id.clone()
    }

    /// Creates a series with one entry per key in the `prefix` file. Fails (with the
    /// path) when the file cannot be opened or grown; nothing is half-created then.
    pub(crate) fn create_series(self: &Arc<Self>, prefix: &'static str, keys: Vec<Box<[u8]>>) -> Result<Arc<Series>> {
        if self.detached {
            return Ok(Series::detached(keys.len()));
        }
        let _guard = region::FORK_GUARD.read();
        let mut state = self.state.lock();
        let _ = self.refresh(&mut state, false); // failures are logged and counted
        let series = if state.awaits_claim() {
            // Declared before the first write of an automatic slot: placed when it is claimed.
            Arc::new(Series {
                shared: Some(Arc::clone(self)),
                prefix,
                first: SlotCell::new(&DISCARD),
                rest: keys.iter().skip(1).map(|_| SlotCell::new(&DISCARD)).collect(),
                timestamp: SlotCell::new(&DISCARD),
                keys: keys.into_boxed_slice(),
                epoch: AtomicU64::new(UNPLACED),
            })
        } else {
            let slots = self.place(&mut state, prefix, &keys)?;
            Arc::new(Series {
                shared: Some(Arc::clone(self)),
                prefix,
                first: SlotCell::new(slots[0].value),
                rest: slots[1..].iter().map(|s| SlotCell::new(s.value)).collect(),
                timestamp: SlotCell::new(slots[0].timestamp),
                keys: keys.into_boxed_slice(),
                epoch: AtomicU64::new(state.epoch),
            })
        };
        state.series.push(Arc::downgrade(&series));
        drop(state);
        self.flush_fork_drops();
        Ok(series)
    }

    fn place(&self, state: &mut State, prefix: &'static str, keys: &[Box<[u8]>]) -> Result<Vec<EntrySlots>> {
        if state.live.is_none() {
            // A fork child that could not take its ID yet: try again (the holder may be
            // gone); or an automatic slot being claimed.
            let (id, live) = lock_liveness(&self.dir, &state.id, self.file_mode)?;
            state.id = id;
            state.live = Some(live);
        }
        if !state.files.contains_key(prefix) {
            // A dead predecessor's live gauge files were removed when this process took
            // the ID (`cleanup::take_over_slot`); every other file is continued.
            let name = format!("{prefix}_{}.db", state.id);
            let db = DbFile::open(&self.dir, &name, self.file_mode)?;
            state.files.insert(prefix, db);
        }
        let db = state.files.get_mut(prefix).expect("inserted above");
        let keys: Vec<&[u8]> = keys.iter().map(|key| &**key).collect();
        db.slots_of_all(&keys)
    }

    /// Brings the state to the current process epoch: after `fork()` or a worker-ID
    /// change, takes the worker ID's liveness lock, opens this process's own files and
    /// re-places every live series in them, in creation order, with one write per file
    /// (falling back to one series at a time in a file where that write fails, so that
    /// one failure loses as few series as possible). Returns the first failure: a
    /// worker ID that could not be taken, or a series whose writes are now dropped.
    ///
    /// An automatic slot is claimed only when `claim` is true (a write, or
    /// [`Shared::after_fork`]); until then the series stay unplaced.
    fn refresh(&self, state: &mut State, claim: bool) -> Result<()> {
        let epoch = region::epoch();
        if self.detached {
            if state.epoch != epoch {
                state.epoch = epoch;
                state.id = WorkerId::pid();
            }
            return Ok(());
        }
        if state.epoch == epoch {
            if !(claim && state.awaits_claim()) {
                return Ok(());
            }
        } else {
            state.epoch = epoch;
            state.id = identity::current(epoch, self.configured_id.as_ref(), self.creator_epoch);
            // Closing the parent's descriptors; their mappings stay (slots are 'static). In
            // a fork child the parent's liveness lock was already closed by the fork hook.
            state.files.clear();
            state.live = None;
            if !claim && state.awaits_claim() {
                return Ok(());
            }
        }
        let mut first_error = None;
        match lock_liveness(&self.dir, &state.id, self.file_mode) {
            Ok((id, live)) => {
                state.id = id;
                state.live = Some(live);
            }
            Err(err) => {
                log::error!("metrics writer cannot take worker ID {}: {err}", state.id);
                first_error = Some(err);
            }
        }
        state.series.retain(|weak| weak.strong_count() > 0);
        let all: Vec<Arc<Series>> = state.series.iter().filter_map(Weak::upgrade).collect();
        // The series of each file, in creation order; files in order of first use.
        let mut by_file: Vec<(&'static str, Vec<&Arc<Series>>)> = Vec::new();
        for series in &all {
            match by_file.iter_mut().find(|(prefix, _)| *prefix == series.prefix) {
                Some((_, list)) => list.push(series),
                None => by_file.push((series.prefix, vec![series])),
            }
        }
        for (prefix, list) in by_file {
            let keys: Vec<Box<[u8]>> = list.iter().flat_map(|series| series.keys.iter().cloned()).collect();
            match self.place(state, prefix, &keys) {
                Ok(slots) => {
                    let mut slots = slots.into_iter();
                    for series in list {
                        let mine: Vec<EntrySlots> = slots.by_ref().take(series.keys.len()).collect();
                        series.point_at(&mine, epoch);
                    }
                }
                Err(_) => {
                    for series in list {
                        // Without the worker ID no file can be opened: do not wait for
                        // it again for every series.
                        let placed = if state.live.is_some() {
                            self.place(state, prefix, &series.keys)
                        } else {
                            Err(Error::new(ErrorKind::WorkerIdInUse)
                                .about(state.id.to_string())
                                .expected("this worker ID's liveness lock, to write its files"))
                        };
                        match placed {
                            Ok(slots) => series.point_at(&slots, epoch),
                            Err(err) => {
                                self.lost_series.fetch_add(1, Ordering::Relaxed);
                                // Counted in the self-metrics once the state lock is
                                // released (`flush_fork_drops`): a handle's write would
                                // need that lock.
                                self.pending_fork_drops.fetch_add(1, Ordering::Relaxed);
                                log::error!(
                                    "metrics series could not be re-created after fork, its writes are dropped: {err}"
                                );
                                series.discard(epoch);
                                first_error.get_or_insert(err);
                            }
                        }
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Re-resolves every series of this registry into this process's own files now
    /// (see [`Registry::after_fork`](crate::Registry::after_fork)).
    pub(crate) fn after_fork(&self) -> Result<()> {
        let _guard = region::FORK_GUARD.read();
        let mut state = self.state.lock();
        let result = self.refresh(&mut state, true);
        drop(state);
        self.flush_fork_drops();
        result
    }

    /// Paths of the files this process has open.
    pub(crate) fn open_files(&self) -> Vec<PathBuf> {
        let _guard = region::FORK_GUARD.read();
        let mut state = self.state.lock();
        let _ = self.refresh(&mut state, false); // failures are logged and counted
        let mut paths: Vec<PathBuf> = state.files.values().map(|f| f.path().to_path_buf()).collect();
        paths.sort();
        paths
    }
}

/// The entries behind one handle.
#[derive(Debug)]
pub(crate) struct Series {
    /// The registry, or `None` for a detached series (see [`Series::detached`]).
    shared: Option<Arc<Shared>>,
    prefix: &'static str,
    keys: Box<[Box<[u8]>]>,
    /// The value slot of the first entry (a counter's or gauge's only one, a
    /// histogram's `_sum`, a summary's `_count`), held in the series itself, so that a
    /// write follows one pointer fewer than to the others.
    first: SlotCell,
    /// The value slots of the other entries, in key order.
    rest: Box<[SlotCell]>,
    timestamp: SlotCell,
    epoch: AtomicU64,
}

impl Series {
    /// A series of `entries` slots that belongs to no registry and drops every write
    /// (all its slots are the discard slot): what an infallible lookup hands out when
    /// a series cannot be created.
    pub(crate) fn detached(entries: usize) -> Arc<Series> {
        Arc::new(Series {
            shared: None,
            prefix: "",
            keys: Box::new([]),
            first: SlotCell::new(&DISCARD),
            rest: (1..entries).map(|_| SlotCell::new(&DISCARD)).collect(),
            timestamp: SlotCell::new(&DISCARD),
            epoch: AtomicU64::new(region::epoch()),
        })
    }

    /// The first entry's value slot, after making sure it belongs to this process.
    #[inline]
    pub(crate) fn first(&self) -> &'static AtomicU64 {
        self.make_current();
        self.first.get()
    }

    /// The value slots, the first entry's and the others', after making sure they
    /// belong to this process.
    #[inline]
    pub(crate) fn slots(&self) -> (&'static AtomicU64, &[SlotCell]) {
        self.make_current();
        (self.first.get(), &self.rest)
    }

    /// Re-resolves the slots if they belong to another process or worker ID.
    #[inline]
    fn make_current(&self) {
        if self.epoch.load(Ordering::Acquire) != region::epoch() {
            self.resync();
        }
    }

    /// Whether the slots belong to this process already, so that the next write is only
    /// the atomic operation (false after `fork()`, a worker-ID change, or while an
    /// automatic slot is not claimed: the next write re-resolves, which may wait).
    #[inline]
    pub(crate) fn is_current(&self) -> bool {
        self.epoch.load(Ordering::Acquire) == region::epoch()
    }

    /// Counts a refused write (see [`Shared::count_refusal`]).
    #[cold]
    #[inline(never)]
    pub(crate) fn refused(&self, reason: DropReason, amount: f64) {
        if let Some(shared) = &self.shared {
            shared.count_refusal(reason, self, amount);
        }
    }

    /// The timestamp slot of the first entry (used by the `mostrecent` modes).
    #[inline]
    pub(crate) fn timestamp(&self) -> &'static AtomicU64 {
        self.timestamp.get()
    }

    #[cold]
    #[inline(never)]
    fn resync(&self) {
        let Some(shared) = &self.shared else {
            // Detached: its slots are the discard slot in every process.
            self.epoch.store(region::epoch(), Ordering::Release);
            return;
        };
        let _guard = region::FORK_GUARD.read();
        let mut state = shared.state.lock();
        let _ = shared.refresh(&mut state, true); // failures are logged and counted
        if self.epoch.load(Ordering::Acquire) != state.epoch {
            // Not in the registry's list (cannot happen for a live handle); never retry
            // forever: drop its writes.
            self.discard(state.epoch);
        }
        drop(state);
        shared.flush_fork_drops();
    }

    /// Points the handle at `slots` (one per key) and publishes that with `epoch`.
    fn point_at(&self, slots: &[EntrySlots], epoch: u64) {
        self.first.set(slots[0].value);
        for (cell, slot) in self.rest.iter().zip(&slots[1..]) {
            cell.set(slot.value);
        }
        self.timestamp.set(slots[0].timestamp);
        self.epoch.store(epoch, Ordering::Release);
    }

    /// Points the handle at the discard slot (its writes are dropped) as of `epoch`.
    fn discard(&self, epoch: u64) {
        self.first.set(&DISCARD);
        for cell in self.rest.iter() {
            cell.set(&DISCARD);
        }
        self.timestamp.set(&DISCARD);
        self.epoch.store(epoch, Ordering::Release);
    }
}

/// Takes worker `id`'s exclusive liveness lock (waiting while it is held by a compactor
/// or a writer that is going away, see [`liveness::take_slot`]), or for an automatic
/// ID the lowest free slot's ([`liveness::claim_free_slot`]), and prepares the slot
/// for this writer. Returns the ID taken.
fn lock_liveness(dir: &Path, id: &WorkerId, mode: u32) -> Result<(WorkerId, LiveLock)> {
    let (id, file) = if id.is_auto() {
        liveness::claim_free_slot(dir, id, mode)?
    } else {
        (id.clone(), liveness::take_slot(dir, id.as_str(), mode)?)
    };
    crate::cleanup::take_over_slot(dir, id.as_str())?;
    let live = LiveLock::hold(file).map_err(|_| {
        Error::new(ErrorKind::LimitReached)
            .about(id.to_string())
            .expected(format!("at most {} registries per process", region::MAX_LIVE_LOCKS))
            .found(format!("{} held already", region::MAX_LIVE_LOCKS))
    })?;
    Ok((id, live))
}

/// Adds `v` to the f64 stored in `slot` (a CAS loop on its bits).
#[inline]
pub(crate) fn add_f64(slot: &AtomicU64, v: f64) {
    let mut current = slot.load(Ordering::Relaxed);
    loop {
        let new = (f64::from_bits(current) + v).to_bits();
        match slot.compare_exchange_weak(current, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

/// Reads the f64 stored in `slot`.
#[inline]
pub(crate) fn load_f64(slot: &AtomicU64) -> f64 {
    f64::from_bits(slot.load(Ordering::Relaxed))
}

/// Stores `v` into `slot`.
#[inline]
pub(crate) fn store_f64(slot: &AtomicU64, v: f64) {
    slot.store(v.to_bits(), Ordering::Relaxed);
}

impl Error {
    pub(crate) fn dir_not_set() -> Error {
        Error::new(ErrorKind::DirNotSet)
            .expected("PROMETHEUS_MULTIPROC_DIR set to a writable directory, or a directory given in code")
    }
}
