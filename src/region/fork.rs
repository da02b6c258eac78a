//! The `fork()` hooks: the process epoch, the fork guard and the liveness-lock
//! descriptors.
//!
//! Everything the child hook does is async-signal-safe, as POSIX requires of code that
//! runs in the child of a multi-threaded process before it calls `exec` (or, here,
//! before it goes on running Rust): plain atomic loads and stores and `close(2)`. It
//! takes no lock, allocates nothing and wakes no thread.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::fs::File;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

static EPOCH: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// The process epoch: bumped in the child after every `fork()` and whenever the
/// process's worker ID changes. A handle whose own epoch differs re-resolves its slots.
#[inline]
pub(crate) fn epoch() -> u64 {
    EPOCH.load(Ordering::Relaxed)
}

/// Starts a new epoch in this process (the worker ID changed).
pub(crate) fn bump_epoch() -> u64 {
    EPOCH.fetch_add(1, Ordering::AcqRel) + 1
}

/// Held (shared) by every operation that changes a registry's files; taken
/// (exclusively) by the `fork()` prepare hook, so that no such operation is half-done
/// in the child.
pub(crate) static FORK_GUARD: ForkGuard = ForkGuard::new();

/// A reader count with a "fork pending" bit, in one word.
///
/// * Bit 31 (`FORKING`): set by the prepare hook. While it is set no thread enters
///   (except one that already holds the guard: see below), and the hook waits for the
///   count to drain to zero.
/// * Bits 0–30: how many guards are held.
///
/// Why not a library lock: `fork()` copies only the calling thread, and a lock whose
/// release wakes or hands ownership to waiting threads (parking_lot's, the standard
/// library's) may, in the child, hand itself to a thread that does not exist there,
/// so that the child's next `fork()` waits forever. This guard keeps no queue: a
/// waiting thread polls the word and sleeps. When `fork()` returns in the child, the
/// forking thread is the only thread, the count is zero (the hook waited for it) and
/// only `FORKING` is set, so one plain store of 0 is the whole reset, which is what the
/// child hook does. The parent does the same store: no thread changed the word while
/// `FORKING` was set and the count was zero.
///
/// Waiting is polling with sleeps of up to 1 ms, which is acceptable because the
/// guard is only ever taken off the hot path: when a series is created, and when a
/// handle re-resolves its slots after `fork()` or a worker-ID change.
pub(crate) struct ForkGuard {
    state: AtomicU32,
}

const FORKING: u32 = 1 << 31;

thread_local! {
    /// How many guards this thread holds: a thread that holds one may take another
    /// even while a fork waits (the fork waits for it anyway), so nesting never
    /// deadlocks.
    static HELD: Cell<u32> = const { Cell::new(0) };
}

impl ForkGuard {
    const fn new() -> ForkGuard {
        ForkGuard { state: AtomicU32::new(0) }
    }

    /// Takes the guard (shared), waiting while a `fork()` is under way.
    pub(crate) fn read(&'static self) -> ForkGuardRef {
        let nested = HELD.with(|held| held.get() > 0);
        let mut waits = 0u32;
        loop {
            let state = self.state.load(Ordering::Relaxed);
            if state & FORKING == 0 || nested {
                // Acquire: what the previous holders (and a finished fork) did is visible.
                if self.state.compare_exchange_weak(state, state + 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    HELD.with(|held| held.set(held.get() + 1));
                    return ForkGuardRef { guard: self };
                }
                continue;
            }
            back_off(&mut waits);
        }
    }

    /// The prepare hook's side: marks a fork pending (after any other pending fork of
    /// another thread), then waits until no guard is held.
    fn lock_for_fork(&self) {
        let mut waits = 0u32;
        loop {
            let state = self.state.load(Ordering::Relaxed);
            if state & FORKING == 0
                && self
                    .state
                    .compare_exchange_weak(state, state | FORKING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
            back_off(&mut waits);
        }
        let mut waits = 0u32;
        // Acquire: the holders' changes (files, slots) happen-before the fork.
        while self.state.load(Ordering::Acquire) != FORKING {
            back_off(&mut waits);
        }
    }

    /// Clears the word after `fork()`, in the parent and in the child: one plain
    /// atomic store, async-signal-safe (see the type's docs for why it is the whole
    /// reset).
    fn reset_after_fork(&self) {
        self.state.store(0, Ordering::Release);
    }
}

/// A held [`ForkGuard`]; released on drop.
pub(crate) struct ForkGuardRef {
    guard: &'static ForkGuard,
}

impl Drop for ForkGuardRef {
    fn drop(&mut self) {
        HELD.with(|held| held.set(held.get() - 1));
        // Release: this holder's changes happen-before a fork that sees the count drop.
        self.guard.state.fetch_sub(1, Ordering::Release);
    }
}

/// Spins briefly, then yields, then sleeps up to 1 ms per call.
fn back_off(waits: &mut u32) {
    *waits = waits.saturating_add(1);
    match *waits {
        0..=16 => std::hint::spin_loop(),
        17..=32 => std::thread::yield_now(),
        n => std::thread::sleep(Duration::from_micros(u64::from(n.min(1000)))),
    }
}

/// Most liveness locks one process can hold at once (one per registry).
pub(crate) const MAX_LIVE_LOCKS: usize = 64;
const NO_FD: u64 = u64::MAX;

/// The descriptors of the liveness locks this process holds, each tagged with a
/// generation so that a stale [`LiveLock`] can never close a newer descriptor that
/// happens to reuse its number.
static LIVE_FDS: [AtomicU64; MAX_LIVE_LOCKS] = [const { AtomicU64::new(NO_FD) }; MAX_LIVE_LOCKS];
static LIVE_GENERATION: AtomicU32 = AtomicU32::new(0);

/// A held exclusive lock on a writer's liveness file. The lock lasts until this value is
/// dropped, the process dies, or the process forks (the child closes its inherited
/// copy in the fork hook; the parent keeps its own).
#[derive(Debug)]
pub(crate) struct LiveLock {
    slot: usize,
    tag: u64,
}

impl LiveLock {
    /// Takes ownership of `file`, whose lock is already held. Gives the file back when
    /// this process already holds [`MAX_LIVE_LOCKS`] locks.
    pub(crate) fn hold(file: File) -> Result<LiveLock, File> {
        let fd = file.into_raw_fd();
        let generation = LIVE_GENERATION.fetch_add(1, Ordering::Relaxed);
        let tag = (u64::from(generation) << 32) | u64::from(fd as u32);
        for (slot, cell) in LIVE_FDS.iter().enumerate() {
            if cell.compare_exchange(NO_FD, tag, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return Ok(LiveLock { slot, tag });
            }
        }
        // SAFETY: `fd` came from `into_raw_fd` above and was stored nowhere, so this
        // `File` is its only owner.
        Err(unsafe { File::from_raw_fd(fd) })
    }
}

impl Drop for LiveLock {
    fn drop(&mut self) {
        // Only the holder of the matching tag closes; after fork() the child hook has
        // already emptied the slot, and a reused slot carries another tag.
        if LIVE_FDS[self.slot].compare_exchange(self.tag, NO_FD, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            let fd = (self.tag & 0xffff_ffff) as u32 as i32;
            // SAFETY: the slot held our tag, so `fd` is the descriptor `hold` stored and
            // nobody closed it (closing empties the slot first); we now own it alone.
            drop(unsafe { File::from_raw_fd(fd) });
        }
    }
}

extern "C" fn before_fork() {
    // Wait until no thread is creating series or re-resolving slots, and keep any from
    // starting, until the parent and child hooks reset the guard.
    FORK_GUARD.lock_for_fork();
}

extern "C" fn after_fork_parent() {
    FORK_GUARD.reset_after_fork();
}

extern "C" fn after_fork_child() {
    // Async-signal-safe only: atomic loads and stores, and close(2).
    EPOCH.fetch_add(1, Ordering::AcqRel);
    for cell in &LIVE_FDS {
        let tag = cell.swap(NO_FD, Ordering::AcqRel);
        if tag != NO_FD {
            // SAFETY: close(2) is async-signal-safe, as a fork child hook requires; the
            // descriptor is the child's inherited copy of a lock the parent keeps, it
            // was just removed from the table so nothing else closes it.
            unsafe { libc::close((tag & 0xffff_ffff) as u32 as i32) };
        }
    }
    FORK_GUARD.reset_after_fork();
}

/// Registers the `fork()` hooks once per process.
pub(crate) fn install_fork_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the three hooks are `extern "C"` functions that never unwind (they
        // touch atomics, sleep and close descriptors; nothing in them panics), as
        // pthread_atfork(3) requires of its handlers, and the child hook does only
        // async-signal-safe things (see the module docs).
        let rc = unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork_parent), Some(after_fork_child)) };
        assert_eq!(rc, 0, "pthread_atfork failed");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_nest_and_release() {
        static GUARD: ForkGuard = ForkGuard::new();
        let a = GUARD.read();
        let b = GUARD.read();
        assert_eq!(GUARD.state.load(Ordering::Relaxed), 2);
        drop(a);
        drop(b);
        assert_eq!(GUARD.state.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_pending_fork_waits_for_holders_and_a_nested_take_does_not_deadlock() {
        static GUARD: ForkGuard = ForkGuard::new();
        let held = GUARD.read();
        let forker = std::thread::spawn(|| {
            GUARD.lock_for_fork();
            GUARD.reset_after_fork();
        });
        while GUARD.state.load(Ordering::Relaxed) & FORKING == 0 {
            std::thread::yield_now();
        }
        // A thread that already holds the guard may take it again while the fork waits.
        let nested = GUARD.read();
        drop(nested);
        drop(held);
        forker.join().unwrap();
        assert_eq!(GUARD.state.load(Ordering::Relaxed), 0);
    }
}
