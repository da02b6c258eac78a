//! The only module allowed to use `unsafe`.
//!
//! It owns three things, each small enough to audit:
//!
//! 1. [`SharedMap`]: a writable `MAP_SHARED` mapping of a metrics file that is **never
//!    unmapped** for the life of the process. Every slot handed out from it is
//!    therefore a `&'static AtomicU64`, and a handle can never dangle, whatever happens
//!    to the file later (growth maps the file again, larger; the old mapping stays).
//! 2. [`SlotCell`]: an atomic pointer that only ever holds such `'static` slots, so a
//!    handle can be re-pointed after `fork()` without a lock on the hot path.
//! 3. The `fork()` hooks: a process epoch that the child bumps, and a guard lock that
//!    no thread can hold across `fork()`.
//!
//! Shared memory is only ever touched through atomics obtained here, after bounds and
//! alignment checks.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ptr::NonNull;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use memmap2::{MmapOptions, MmapRaw};
use parking_lot::RwLock;

/// A writable shared mapping of the first `len` bytes of a file, kept for the life of
/// the process.
#[derive(Debug)]
pub(crate) struct SharedMap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: `SharedMap` is a pointer and a length to memory that stays mapped forever and
// that this crate only accesses through atomics; sharing or sending it between
// threads cannot create a data race.
unsafe impl Send for SharedMap {}
// SAFETY: as above: every access through `&SharedMap` is an atomic access.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps `len` bytes of `file` (which must be at least that long and have its blocks
    /// reserved, so that touching a page can never raise SIGBUS) read-write and shared.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn map(file: &File, len: usize) -> io::Result<SharedMap> {
        let raw: MmapRaw = MmapOptions::new().len(len).map_raw(file)?;
        let base = NonNull::new(raw.as_mut_ptr()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        // Never unmap: slots from this mapping are `'static`. The address space is
        // released when the process exits.
        std::mem::forget(raw);
        Ok(SharedMap { base, len })
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The 8-byte word at `offset` as an atomic, or `None` when it is out of bounds or
    /// not 8-aligned.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn u64_at(&self, offset: usize) -> Option<&'static AtomicU64> {
        let end = offset.checked_add(8)?;
        if end > self.len {
            return None;
        }
        let ptr = self.base.as_ptr().wrapping_add(offset).cast::<u64>();
        if !ptr.is_aligned() {
            return None;
        }
        // SAFETY: `ptr` is in bounds of the mapping (checked above) and 8-aligned (checked
        // above; mappings are page-aligned so file offsets that are multiples of 8 are
        // aligned). The mapping is never unmapped, so the reference is valid for
        // `'static`. Within this process the word is only accessed through atomics.
        // Other processes (ours or Python's) write the same word with 8-byte stores of
        // their own; that concurrency is outside Rust's memory model, as for any shared
        // mapping, and the hardware makes an aligned 8-byte access single-copy atomic.
        Some(unsafe { AtomicU64::from_ptr(ptr) })
    }

    /// The 4-byte word at `offset` (the header's `used`) as an atomic.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn u32_at(&self, offset: usize) -> Option<&'static AtomicU32> {
        let end = offset.checked_add(4)?;
        if end > self.len {
            return None;
        }
        let ptr = self.base.as_ptr().wrapping_add(offset).cast::<u32>();
        if !ptr.is_aligned() {
            return None;
        }
        // SAFETY: same argument as `u64_at`: in bounds, aligned, mapped forever, accessed
        // only atomically from this process.
        Some(unsafe { AtomicU32::from_ptr(ptr) })
    }
}

/// A slot that receives writes when a series cannot be placed in a file (for
/// example after `fork()` on a full disk). Values written here are dropped.
pub(crate) static DISCARD: AtomicU64 = AtomicU64::new(0);

/// An atomic pointer to a `'static` value slot.
#[derive(Debug)]
pub(crate) struct SlotCell(AtomicPtr<AtomicU64>);

impl SlotCell {
    pub(crate) fn new(slot: &'static AtomicU64) -> SlotCell {
        SlotCell(AtomicPtr::new(std::ptr::from_ref(slot).cast_mut()))
    }

    /// Points the cell at `slot`. Callers publish the change with a later `Release`
    /// store (the series epoch).
    pub(crate) fn set(&self, slot: &'static AtomicU64) {
        self.0.store(std::ptr::from_ref(slot).cast_mut(), Ordering::Relaxed);
    }

    /// The slot the cell points at.
    #[inline]
    pub(crate) fn get(&self) -> &'static AtomicU64 {
        let ptr = self.0.load(Ordering::Relaxed);
        // SAFETY: the cell is only ever constructed or set from a `&'static AtomicU64`
        // (see `new` and `set`), so `ptr` is non-null, aligned and valid for `'static`.
        unsafe { &*ptr }
    }
}

static EPOCH: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));

/// Held for reading by every operation that changes a registry's files; taken for
/// writing by the `fork()` prepare hook, so that no such operation is half-done in the
/// child.
pub(crate) static FORK_GUARD: RwLock<()> = parking_lot::const_rwlock(());

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

extern "C" fn before_fork() {
    // Wait until no thread is creating series or re-resolving slots, then keep the lock
    // across fork(). The guard is forgotten and released by the parent/child hooks.
    std::mem::forget(FORK_GUARD.write());
}

extern "C" fn after_fork_parent() {
    // SAFETY: `before_fork` acquired the write lock in this thread and forgot the guard;
    // this releases exactly that acquisition.
    unsafe { FORK_GUARD.force_unlock_write() }
}

extern "C" fn after_fork_child() {
    EPOCH.fetch_add(1, Ordering::AcqRel);
    // SAFETY: the child is a copy of the thread that ran `before_fork`, which holds the
    // write lock with a forgotten guard; this releases exactly that acquisition.
    unsafe { FORK_GUARD.force_unlock_write() }
}

/// Registers the `fork()` hooks once per process.
pub(crate) fn install_fork_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the three hooks are `extern "C"` functions that never unwind (they only
        // touch an atomic and a lock), as pthread_atfork(3) requires of its handlers.
        let rc = unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork_parent), Some(after_fork_child)) };
        assert_eq!(rc, 0, "pthread_atfork failed");
    });
}
