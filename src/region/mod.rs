//! The only module allowed to use `unsafe`.
//!
//! It owns six things, one submodule each, each small enough to audit:
//!
//! 1. [`SharedMap`] (`shared`): a writable `MAP_SHARED` mapping of a metrics file that is **never
//!    unmapped** for the life of the process. Every slot handed out from it is
//!    therefore a `&'static AtomicU64`, and a handle can never dangle, whatever happens
//!    to the file later (growth maps the file again, larger; the old mapping stays).
//! 2. [`SlotCell`] (`shared`): an atomic pointer that only ever holds such `'static` slots, so a
//!    handle can be re-pointed after `fork()` without a lock on the hot path.
//! 3. The `fork()` hooks (`fork`): a process epoch that the child bumps, a guard lock that
//!    no thread can hold across `fork()`, and the closing, in the child, of the
//!    liveness locks the parent holds ([`LiveLock`]), so that a child never keeps its
//!    parent looking alive.
//! 4. [`ReadMap`] (`read`): the collector's read-only `MAP_SHARED` mapping of a file, unmapped
//!    on drop, read only through bounds- and alignment-checked `Relaxed` atomic loads
//!    (the one kind of atomic access Rust defines on read-only memory).
//! 5. The `SIGBUS` guard (`sigbus`): touching a page of a mapping past the end of its file raises
//!    `SIGBUS`, which would kill the process if something else truncated a metrics
//!    file under a writer or a scrape. Every mapping made here is registered; a
//!    `SIGBUS` inside one replaces the faulting page with a private zero page and
//!    marks the mapping ([`ReadMap::truncated`], [`SharedMap::truncated`]), so the
//!    access completes (reading zeros, or writing where nobody reads) and the caller
//!    can drop the file. A `SIGBUS` anywhere else goes to the handler that was
//!    installed before ours, or kills the process as it would have.
//!
//! 6. [`Batch`] (`uring`, Linux): the collector's batched reads of small files through
//!    `io_uring`, whose buffers and file names the batch owns until every operation it
//!    submitted has completed.
//!
//! Shared memory is only ever touched through atomics obtained here, after bounds and
//! alignment checks.
#![allow(unsafe_code)]

mod fork;
mod read;
mod shared;
mod sigbus;
#[cfg(test)]
mod tests;
#[cfg(target_os = "linux")]
mod uring;

pub(crate) use fork::{FORK_GUARD, LiveLock, MAX_LIVE_LOCKS, bump_epoch, epoch, install_fork_hooks};
pub(crate) use read::ReadMap;
pub(crate) use shared::{DISCARD, SharedMap, SlotCell};
pub use sigbus::{SIGBUS_GUARD_ENV, disable_sigbus_guard};
#[cfg(target_os = "linux")]
pub(crate) use uring::{BATCH_FILES, Batch, Twice};
