//! Process identity: the `ID` in `counter_ID.db`.

use std::fmt;

use parking_lot::Mutex;

use crate::error::{Error, ErrorKind, Result};
use crate::region;

/// Environment variable naming this process's worker ID (read when a registry is
/// built, in that process only).
pub const WORKER_ID_ENV: &str = "PROMETHEUS_MULTIPROC_WORKER_ID";

/// A process identifier as it appears in file names: the pid by default, or a stable
/// worker ID (a slot number from the supervisor) so that a restarted worker reuses
/// its predecessor's files.
///
/// Python's collector splits file names on `_` and takes the `pid` label of
/// `all`-mode gauges from the name, so an ID is limited to ASCII letters, digits, `-`
/// and `.` (not first), at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(String);

impl WorkerId {
    /// Validates `id`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidWorkerId`] naming the ID when it is empty, longer than 64
    /// characters, starts with `.` or with `0archive-` (reserved for compaction archives),
    /// or holds anything but `[A-Za-z0-9.-]`.
    ///
    /// ```
    /// use prometheus_multiproc::WorkerId;
    /// assert_eq!(WorkerId::new("web-3")?.as_str(), "web-3");
    /// assert!(WorkerId::new("w_1").is_err());
    /// # Ok::<(), prometheus_multiproc::Error>(())
    /// ```
    pub fn new(id: &str) -> Result<WorkerId> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && !id.starts_with('.')
            && !id.starts_with(crate::format::archive::ARCHIVE_ID_PREFIX)
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if ok {
            Ok(WorkerId(id.to_owned()))
        } else {
            Err(Error::new(ErrorKind::InvalidWorkerId)
                .about(id)
                .expected("1 to 64 of [A-Za-z0-9.-], not starting with '.' ('_' and '/' break file-name parsing)"))
        }
    }

    /// The current process's pid.
    pub fn pid() -> WorkerId {
        WorkerId(std::process::id().to_string())
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ID set by [`set_worker_id`] and the epoch it belongs to.
static OVERRIDE: Mutex<Option<(u64, WorkerId)>> = parking_lot::const_mutex(None);

/// Sets this process's worker ID, typically first thing in a freshly forked worker
/// (`set_worker_id(WorkerId::new(&slot.to_string())?)`).
///
/// Every handle of every registry, including those created before `fork()`, writes to
/// the files of this ID from its next write on. Values already written stay where they
/// were written. The ID applies to this process only; a child forked later falls back
/// to its pid until it sets its own.
pub fn set_worker_id(id: WorkerId) {
    let _guard = region::FORK_GUARD.read();
    let mut slot = OVERRIDE.lock();
    let epoch = region::bump_epoch();
    *slot = Some((epoch, id));
}

/// The ID to use in `epoch`: the registry's configured ID if the registry was built in
/// this epoch, else the one set with [`set_worker_id`] in this epoch, else the pid.
pub(crate) fn current(epoch: u64, configured: Option<&WorkerId>, creator_epoch: u64) -> WorkerId {
    if let Some(id) = configured.filter(|_| creator_epoch == epoch) {
        return id.clone();
    }
    match OVERRIDE.lock().as_ref() {
        Some((set_in, id)) if *set_in == epoch => id.clone(),
        _ => WorkerId::pid(),
    }
}

/// The worker ID named by [`WORKER_ID_ENV`], if set.
pub(crate) fn from_env() -> Result<Option<WorkerId>> {
    match std::env::var(WORKER_ID_ENV) {
        Ok(id) if !id.is_empty() => WorkerId::new(&id).map(Some),
        _ => Ok(None),
    }
}
