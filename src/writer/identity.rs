//! Process identity: the `ID` in `counter_ID.db`.

use parking_lot::Mutex;

use crate::error::Result;
pub use crate::format::names::WorkerId;
use crate::region;

/// Environment variable naming this process's worker ID, read when a registry is built:
/// a worker ID (for that process only), or `auto` / `auto:PREFIX` for automatic slots
/// (see [`WorkerId::auto`]; they carry over to fork children, which claim their own
/// slot), as [`WorkerId::parse`] reads it.
pub const WORKER_ID_ENV: &str = "PROMETHEUS_MULTIPROC_WORKER_ID";

/// The ID set by [`set_worker_id`] and the epoch it belongs to.
static OVERRIDE: Mutex<Option<(u64, WorkerId)>> = parking_lot::const_mutex(None);

/// Sets this process's worker ID, typically first thing in a freshly forked worker
/// (`set_worker_id(WorkerId::new(&slot.to_string())?)`).
///
/// Every handle of every registry, including those created before `fork()`, writes to
/// the files of this ID from its next write on. Values already written stay where they
/// were written. A concrete ID applies to this process only; a child forked later falls
/// back to its pid until it sets its own. An automatic slot ([`WorkerId::auto`]) is
/// claimed at the next write, and carries over to children forked later, each of which
/// claims its own slot at its first write.
pub fn set_worker_id(id: WorkerId) {
    let _guard = region::FORK_GUARD.read();
    let mut slot = OVERRIDE.lock();
    let epoch = region::bump_epoch();
    *slot = Some((epoch, id));
}

/// The ID to use in `epoch` (maybe an automatic slot still to claim): the registry's
/// configured ID if the registry was built in this epoch, else the one set with
/// [`set_worker_id`] in this epoch, else the pid. An automatic slot outlives its epoch
/// (a fork child claims a slot of its own): a configured one applies in every epoch
/// unless [`set_worker_id`] set an ID after the registry was built, and one set with
/// [`set_worker_id`] applies in every later epoch.
pub(crate) fn current(epoch: u64, configured: Option<&WorkerId>, creator_epoch: u64) -> WorkerId {
    let set = OVERRIDE.lock().clone().filter(|(set_in, id)| *set_in == epoch || id.is_auto());
    if let Some(id) = configured {
        let overridden = set.as_ref().is_some_and(|(set_in, _)| *set_in > creator_epoch);
        if creator_epoch == epoch || (id.is_auto() && !overridden) {
            return id.clone();
        }
    }
    match set {
        Some((_, id)) => id,
        None => WorkerId::pid(),
    }
}

/// The worker ID named by [`WORKER_ID_ENV`], if set.
pub(crate) fn from_env() -> Result<Option<WorkerId>> {
    match std::env::var(WORKER_ID_ENV) {
        Ok(id) if !id.is_empty() => WorkerId::parse(&id).map(Some),
        _ => Ok(None),
    }
}
