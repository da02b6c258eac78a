//! The helper threads of a scrape (the reads and the merge's sums), started on a core
//! other than the scraping thread's.
//!
//! A new thread is queued on the core of the thread that started it. Where the kernel
//! neither runs it at once nor moves it to an idle core (as on the 2-core VM of
//! BENCHMARKS.md, "Eighth round"), it waits until the starter's time slice ends, and
//! then both share one core until load balancing moves one of them, a scheduler tick
//! or more later. There, the reading helper of a cold scrape of 64 x 10,000 first ran
//! 1.7-8 ms after it was started, of reads that take 15-20 ms, and the merge's helper
//! not before the merge's sums were done by the starter alone. So:
//!
//! * the starter yields its core once after starting a helper (`sched_yield`), so that
//!   a helper queued behind it runs now;
//! * a helper that finds itself on the core its starter ran on leaves it: it narrows
//!   its affinity to the other cores it is allowed (which moves it there at once) and
//!   restores its affinity right after, so that the kernel places it freely from then
//!   on.
//!
//! That is about 50 µs where the helper was on its starter's core, a `sched_yield` and
//! a `sched_getcpu` where it was not. Only the helper's own affinity is touched, and
//! only for the moment it moves; a process allowed one core keeps it.

use std::thread::{Scope, ScopedJoinHandle};

/// Starts a helper thread named `name` in `scope`, running `work` after leaving the
/// calling thread's core, and lets it run (see the module docs).
pub(super) fn spawn_helper<'scope, T, F>(
    scope: &'scope Scope<'scope, '_>,
    name: &str,
    work: F,
) -> std::io::Result<ScopedJoinHandle<'scope, T>>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    let starter = current_core();
    let helper = std::thread::Builder::new().name(name.into()).spawn_scoped(scope, move || {
        let _ = leave_core(starter);
        work()
    })?;
    std::thread::yield_now();
    Ok(helper)
}

/// The core the calling thread runs on, where the platform tells.
fn current_core() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        nix::sched::sched_getcpu().ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Moves the calling thread off core `starter` if it runs there and may run on another
/// core, leaving its affinity as it found it. Returns the core it moved to, taken while
/// `starter` was not allowed.
fn leave_core(starter: Option<usize>) -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
        use nix::unistd::Pid;
        let starter = starter?;
        if current_core() != Some(starter) {
            return None;
        }
        let this = Pid::from_raw(0);
        let allowed = sched_getaffinity(this).ok()?;
        let mut elsewhere = allowed;
        if elsewhere.unset(starter).is_err() || !(0..CpuSet::count()).any(|core| elsewhere.is_set(core) == Ok(true)) {
            return None;
        }
        sched_setaffinity(this, &elsewhere).ok()?;
        let moved_to = current_core();
        // Should this fail (the cpuset shrank meanwhile), the helper keeps the narrower
        // affinity, for the few milliseconds it lives.
        let _ = sched_setaffinity(this, &allowed);
        moved_to
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = starter;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cores this thread may run on.
    #[cfg(target_os = "linux")]
    fn allowed() -> Vec<usize> {
        let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
        (0..nix::sched::CpuSet::count()).filter(|&core| set.is_set(core) == Ok(true)).collect()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_thread_on_its_starters_core_moves_to_another_and_keeps_its_affinity() {
        let before = allowed();
        let mut moves = 0;
        for _ in 0..20 {
            let here = current_core().expect("sched_getcpu works on Linux");
            let moved_to = leave_core(Some(here));
            assert_eq!(allowed(), before, "the affinity is restored");
            // With one core allowed, or when the scheduler moved this thread between
            // the two `sched_getcpu` calls (it has left `here` already), it stays:
            // counted below.
            if let Some(moved_to) = moved_to {
                assert_ne!(moved_to, here);
                assert!(before.contains(&moved_to), "{moved_to} not in {before:?}");
                moves += 1;
            }
        }
        if before.len() > 1 {
            assert!(moves > 0, "no move in 20 tries with {before:?} allowed");
        } else {
            assert_eq!(moves, 0, "no other core to go to");
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_thread_with_no_starter_core_or_one_core_stays() {
        assert_eq!(leave_core(None), None);
        // Pinned to one core, a thread has nowhere to go.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut one = nix::sched::CpuSet::new();
                let core = current_core().unwrap();
                one.set(core).unwrap();
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).unwrap();
                assert_eq!(leave_core(current_core()), None);
                assert_eq!(allowed(), [current_core().unwrap()]);
            });
        });
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_helper_runs_with_its_starters_affinity_and_leaves_the_starters_alone() {
        let before = allowed();
        let in_helper =
            std::thread::scope(|scope| spawn_helper(scope, "test-helper", allowed).unwrap().join()).unwrap();
        assert_eq!(in_helper, before, "the helper's affinity is restored before its work");
        assert_eq!(allowed(), before, "the starter's affinity is untouched");
    }

    #[test]
    fn a_helper_returns_its_work() {
        let sum =
            std::thread::scope(|scope| spawn_helper(scope, "test-helper", || (1..=10).sum::<u32>()).unwrap().join());
        assert_eq!(sum.unwrap(), 55);
    }
}
