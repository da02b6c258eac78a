//! The only module allowed to use `unsafe`.
//!
//! It owns four things, each small enough to audit:
//!
//! 1. [`SharedMap`]: a writable `MAP_SHARED` mapping of a metrics file that is **never
//!    unmapped** for the life of the process. Every slot handed out from it is
//!    therefore a `&'static AtomicU64`, and a handle can never dangle, whatever happens
//!    to the file later (growth maps the file again, larger; the old mapping stays).
//! 2. [`SlotCell`]: an atomic pointer that only ever holds such `'static` slots, so a
//!    handle can be re-pointed after `fork()` without a lock on the hot path.
//! 3. The `fork()` hooks: a process epoch that the child bumps, a guard lock that
//!    no thread can hold across `fork()`, and the closing, in the child, of the
//!    liveness locks the parent holds ([`LiveLock`]), so that a child never keeps its
//!    parent looking alive.
//! 4. [`ReadMap`]: the collector's read-only `MAP_SHARED` mapping of a file, unmapped
//!    on drop, read only through bounds- and alignment-checked `Relaxed` atomic loads
//!    (the one kind of atomic access Rust defines on read-only memory).
//!
//! Shared memory is only ever touched through atomics obtained here, after bounds and
//! alignment checks.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};
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
    for cell in &LIVE_FDS {
        let tag = cell.swap(NO_FD, Ordering::AcqRel);
        if tag != NO_FD {
            // SAFETY: close(2) is async-signal-safe, as a fork child hook requires; the
            // descriptor is the child's inherited copy of a lock the parent keeps, it
            // was just removed from the table so nothing else closes it.
            unsafe { libc::close((tag & 0xffff_ffff) as u32 as i32) };
        }
    }
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

// ---------------------------------------------------------------------------------
// The collector's side: read-only mappings.

// Relaxed atomic loads of up to 8 bytes are defined on read-only memory only on the
// targets listed in `core::sync::atomic` ("Atomic accesses to read-only memory").
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "powerpc64",
    target_arch = "s390x",
    target_arch = "loongarch64"
)))]
compile_error!("the collector's read-only mappings need a 64-bit target with 8-byte atomic loads on read-only memory");

/// A read-only `MAP_SHARED` mapping of a metrics file, for the collector. Unlike
/// [`SharedMap`] it is unmapped when dropped: nothing borrowed from it outlives it.
///
/// The mapping is only read through single atomic loads of 1, 4 or 8 aligned bytes
/// with `Relaxed` ordering (plus an `Acquire` fence for `used`). Other processes write
/// the same file concurrently; a load never tears, and bytes are never exposed as a
/// `&[u8]` that another process could change underneath.
///
/// A mapping must not extend past the end of the file, and the file must not be
/// truncated while mapped (the writers of both this crate and Python only ever grow
/// files); touching a page past the end of a file raises `SIGBUS`.
#[derive(Debug)]
pub(crate) struct ReadMap {
    raw: MmapRaw,
}

impl ReadMap {
    /// Maps the first `len` bytes of `file` (opened for reading, at least `len` bytes
    /// long, `len > 0`) read-only and shared.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn map(file: &File, len: usize) -> io::Result<ReadMap> {
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let raw = MmapOptions::new().len(len).map_raw_read_only(file)?;
        Ok(ReadMap { raw })
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// Asks the kernel to map the pages of the first `len` bytes now
    /// (`MADV_POPULATE_READ`, Linux 5.14+), in one call, instead of one page fault per
    /// page or page cluster as they are first read. Only a hint: errors (an older
    /// kernel, a page it cannot read) are ignored, and a page left out faults in on
    /// first access as usual.
    pub(crate) fn populate(&self, len: usize) {
        #[cfg(target_os = "linux")]
        {
            let len = len.min(self.raw.len());
            if len > 0 {
                let _ = self.raw.advise_range(memmap2::Advice::PopulateRead, 0, len);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = len;
    }

    /// A pointer to `size` bytes at `offset`, if they lie within the mapping and the
    /// pointer is aligned to `size`.
    fn checked_ptr(&self, offset: usize, size: usize) -> Option<*mut u8> {
        if offset.checked_add(size)? > self.raw.len() {
            return None;
        }
        let ptr = self.raw.as_mut_ptr().wrapping_add(offset);
        (ptr as usize).is_multiple_of(size).then_some(ptr)
    }

    /// The 8-byte word at `offset` (`Relaxed`), or `None` out of bounds or unaligned.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn load_u64(&self, offset: usize) -> Option<u64> {
        let ptr = self.checked_ptr(offset, 8)?.cast::<u64>();
        // SAFETY: `ptr` lies within the live mapping owned by `self` (bounds checked
        // above; the borrow of `self` keeps it mapped for the whole call) and is
        // 8-aligned (checked above). The pages are mapped PROT_READ: `from_ptr` asks for
        // memory valid for writes only so that stores through the reference are sound;
        // this reference never leaves this expression and is used for exactly one
        // `Relaxed` 8-byte load, which `core::sync::atomic` ("Atomic accesses to
        // read-only memory") defines on read-only memory on the targets this module
        // compiles for (see the `compile_error!` above). Within this process the word
        // is only ever accessed atomically; other processes store it with aligned
        // 8-byte writes, which the hardware makes single-copy atomic.
        Some(unsafe { AtomicU64::from_ptr(ptr) }.load(Ordering::Relaxed))
    }

    /// The 4-byte word at `offset` (`Relaxed`), or `None` out of bounds or unaligned.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn load_u32(&self, offset: usize) -> Option<u32> {
        let ptr = self.checked_ptr(offset, 4)?.cast::<u32>();
        // SAFETY: as in `load_u64`: in bounds, 4-aligned, mapped for the duration of the
        // borrow, one `Relaxed` load of 4 bytes, which is defined on read-only memory.
        Some(unsafe { AtomicU32::from_ptr(ptr) }.load(Ordering::Relaxed))
    }

    /// The byte at `offset` (`Relaxed`), or `None` out of bounds.
    #[allow(clippy::disallowed_methods)]
    fn load_u8(&self, offset: usize) -> Option<u8> {
        let ptr = self.checked_ptr(offset, 1)?;
        // SAFETY: as in `load_u64`: in bounds, trivially aligned, mapped for the duration
        // of the borrow, one `Relaxed` 1-byte load, defined on read-only memory.
        Some(unsafe { std::sync::atomic::AtomicU8::from_ptr(ptr) }.load(Ordering::Relaxed))
    }

    /// The header's `used` field, loaded with `Acquire` semantics (a `Relaxed` load and
    /// an `Acquire` fence, the form `core::sync::atomic` allows on read-only memory):
    /// every entry byte a writer stored before publishing this `used` is visible to
    /// later loads.
    pub(crate) fn load_used(&self) -> Option<i32> {
        let used = self.load_u32(0)?;
        std::sync::atomic::fence(Ordering::Acquire);
        Some(used as i32)
    }

    /// Whether the bytes at `[start, start + expected.len())` equal `expected`,
    /// compared one 8-byte atomic load (`Relaxed`) at a time (all of them: the caller
    /// expects equality, so the loop has no early exit to mispredict). `None` when the
    /// range is out of bounds, `start` is not 8-aligned or `expected.len()` is not a
    /// multiple of 8.
    ///
    /// Meant, like [`ReadMap::copy_to`], for bytes below `used`, which writers never
    /// change once published.
    #[allow(clippy::disallowed_methods)]
    #[inline]
    pub(crate) fn words_equal(&self, start: usize, expected: &[u8]) -> Option<bool> {
        if !start.is_multiple_of(8)
            || !expected.len().is_multiple_of(8)
            || start.checked_add(expected.len())? > self.len()
        {
            return None;
        }
        let base = self.raw.as_mut_ptr().wrapping_add(start);
        let mut diff = 0u64;
        for (i, chunk) in expected.chunks_exact(8).enumerate() {
            let ptr = base.wrapping_add(i * 8).cast::<u64>();
            // SAFETY: `[start, start + expected.len())` lies within the live mapping
            // (checked above) and this word, `start + 8i .. start + 8i + 8`, lies within
            // it; the mapping is page-aligned and `start` 8-aligned, so `ptr` is
            // 8-aligned. As in `load_u64`, the reference is used for one `Relaxed`
            // 8-byte load, defined on read-only memory, and never escapes.
            let word = unsafe { AtomicU64::from_ptr(ptr) }.load(Ordering::Relaxed);
            let want =
                u64::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]);
            diff |= word ^ want;
        }
        Some(diff == 0)
    }

    /// Copies the bytes `[start, end)` of the mapping into the front of `buf`, 8 bytes
    /// per atomic load (single bytes at the unaligned tail), and returns them. `buf`
    /// only ever grows, so a buffer reused across calls is not zeroed again. `None`
    /// when the range is out of bounds or `start` is not 8-aligned.
    ///
    /// Meant for bytes below `used`, which writers never change once published (keys
    /// and lengths); a value word copied this way is a snapshot of one instant.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn copy_to<'b>(&self, start: usize, end: usize, buf: &'b mut Vec<u8>) -> Option<&'b [u8]> {
        if start > end || end > self.len() || !start.is_multiple_of(8) {
            return None;
        }
        let len = end - start;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let out = &mut buf[..len];
        let base = self.raw.as_mut_ptr().wrapping_add(start);
        let mut words = out.chunks_exact_mut(8);
        for (i, chunk) in (&mut words).enumerate() {
            let ptr = base.wrapping_add(i * 8).cast::<u64>();
            // SAFETY: `[start, end)` lies within the live mapping (checked above) and
            // this word, `start + 8i .. start + 8i + 8`, lies within it; the mapping is
            // page-aligned and `start` 8-aligned, so `ptr` is 8-aligned. As in
            // `load_u64`, the reference is used for one `Relaxed` 8-byte load, defined
            // on read-only memory, and never escapes.
            let word = unsafe { AtomicU64::from_ptr(ptr) }.load(Ordering::Relaxed);
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        let tail_start = start + (len - words.into_remainder().len());
        for (pos, byte) in (tail_start..end).zip(&mut out[tail_start - start..]) {
            *byte = self.load_u8(pos)?;
        }
        Some(out)
    }
}

#[cfg(test)]
mod read_map_tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn loads_are_bounds_and_alignment_checked() {
        let mut bytes = vec![0u8; 20];
        bytes[..4].copy_from_slice(&24u32.to_le_bytes());
        bytes[8..16].copy_from_slice(&1.5f64.to_le_bytes());
        let map = ReadMap::map(&file_with(&bytes), 20).unwrap();
        assert_eq!(map.load_used(), Some(24));
        assert_eq!(map.load_u64(8).map(f64::from_bits), Some(1.5));
        assert_eq!(map.load_u64(4), None, "unaligned");
        assert_eq!(map.load_u64(16), None, "past the end");
        assert_eq!(map.load_u64(usize::MAX - 3), None, "overflow");
        assert_eq!(map.load_u32(16), Some(0));
        assert_eq!(map.load_u32(18), None);
    }

    #[test]
    fn words_equal_compares_whole_aligned_words_in_bounds() {
        let bytes: Vec<u8> = (0..32).collect();
        let map = ReadMap::map(&file_with(&bytes), 32).unwrap();
        assert_eq!(map.words_equal(8, &bytes[8..24]), Some(true));
        assert_eq!(map.words_equal(0, &bytes), Some(true));
        assert_eq!(map.words_equal(8, &[]), Some(true));
        let mut other = bytes[8..24].to_vec();
        other[15] ^= 1;
        assert_eq!(map.words_equal(8, &other), Some(false), "last byte differs");
        assert_eq!(map.words_equal(4, &bytes[4..12]), None, "unaligned start");
        assert_eq!(map.words_equal(8, &bytes[8..12]), None, "not whole words");
        assert_eq!(map.words_equal(24, &bytes[..16]), None, "past the end");
    }

    #[test]
    fn populate_is_only_a_hint() {
        let map = ReadMap::map(&file_with(&[7u8; 100]), 100).unwrap();
        map.populate(0);
        map.populate(100);
        map.populate(usize::MAX);
        assert_eq!(map.load_u64(8), Some(u64::from_ne_bytes([7; 8])));
    }

    #[test]
    fn copy_to_copies_words_and_the_unaligned_tail() {
        let bytes: Vec<u8> = (0..21).collect();
        let map = ReadMap::map(&file_with(&bytes), 21).unwrap();
        let mut buf = Vec::new();
        assert_eq!(map.copy_to(8, 21, &mut buf), Some(&bytes[8..21]));
        assert_eq!(map.copy_to(16, 21, &mut buf), Some(&bytes[16..21]), "reused buffer");
        assert_eq!(map.copy_to(0, 16, &mut buf), Some(&bytes[0..16]));
        assert_eq!(map.copy_to(8, 8, &mut buf), Some(&[][..]));
        assert_eq!(map.copy_to(3, 8, &mut buf), None, "unaligned start");
        assert_eq!(map.copy_to(8, 22, &mut buf), None, "past the end");
        assert!(ReadMap::map(&file_with(&[]), 0).is_err());
    }
}
