//! Process identity: the `ID` in `counter_ID.db`.

use parking_lot::Mutex;

use crate::error::Result;
pub use crate::format::names::WorkerId;
use crate::region;

/// Environment variable naming this process's worker ID (read when a registry is
/// built, in that process only).
pub const WORKER_ID_ENV: &str = "PROMETHEUS_MULTIPROC_WORKER_ID";

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
