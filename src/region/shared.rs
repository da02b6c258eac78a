//! Writable shared mappings kept for the life of the process, and the slots handed out from them.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use super::sigbus::{Guarded, slot_faulted};

/// A writable shared mapping of the first `len` bytes of a file, kept for the life of
/// the process.
#[derive(Debug)]
pub(crate) struct SharedMap {
    base: NonNull<u8>,
    len: usize,
    /// Its slot in the SIGBUS guard's table, kept for the life of the process like the
    /// mapping itself (`None` when the table was full).
    guard: Option<usize>,
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
        // Registered for good: the mapping is never unmapped.
        let guard = Guarded::register(base.as_ptr() as usize, len).keep();
        Ok(SharedMap { base, len, guard })
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether a write to this mapping found its file truncated under it (by another
    /// process): such writes land in a private zero page and are lost.
    pub(crate) fn truncated(&self) -> bool {
        self.guard.is_some_and(slot_faulted)
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
