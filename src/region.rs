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
//! 5. The `SIGBUS` guard: touching a page of a mapping past the end of its file raises
//!    `SIGBUS`, which would kill the process if something else truncated a metrics
//!    file under a writer or a scrape. Every mapping made here is registered; a
//!    `SIGBUS` inside one replaces the faulting page with a private zero page and
//!    marks the mapping ([`ReadMap::truncated`], [`SharedMap::truncated`]), so the
//!    access completes (reading zeros, or writing where nobody reads) and the caller
//!    can drop the file. A `SIGBUS` anywhere else goes to the handler that was
//!    installed before ours, or kills the process as it would have.
//!
//! Shared memory is only ever touched through atomics obtained here, after bounds and
//! alignment checks.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::ptr::NonNull;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use memmap2::{MmapOptions, MmapRaw};
use parking_lot::RwLock;

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
        self.guard.is_some_and(|i| GUARD_TABLE[i].faulted.load(Ordering::Acquire))
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
/// A mapping never extends past the end of the file when it is made, and neither this
/// crate's writers nor Python's ever shrink a file. If something else truncates one
/// while it is mapped, the `SIGBUS` guard turns the fault into zeros and
/// [`ReadMap::truncated`].
#[derive(Debug)]
pub(crate) struct ReadMap {
    // Declared first, so dropped first: the range is unregistered before it is unmapped.
    guard: Guarded,
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
        let guard = Guarded::register(raw.as_mut_ptr() as usize, len);
        Ok(ReadMap { guard, raw })
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether a read found the file truncated under the mapping: what was read from
    /// the missing pages is zeros, so nothing read from this mapping can be trusted.
    pub(crate) fn truncated(&self) -> bool {
        self.guard.faulted()
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

// ---------------------------------------------------------------------------------
// The SIGBUS guard.

/// How many mappings can be guarded at once (a collector keeps one per file, a writer
/// one per file and growth step). Past it a mapping is still made, unguarded, as every
/// mapping was before the guard. The table is 1.5 MiB of zeroed static memory, touched
/// only as far as it is used.
const GUARD_SLOTS: usize = 1 << 16;

/// One guarded range: `[start, end)`, and whether a `SIGBUS` was turned into zeros in
/// it. A slot is free while `start` is 0. It is filled by writing `end` then `start`
/// (release) and emptied by clearing `start` first, so the handler, which reads
/// `start` (acquire) then `end`, never matches a half-written range.
struct GuardSlot {
    start: AtomicUsize,
    end: AtomicUsize,
    faulted: AtomicBool,
}

static GUARD_TABLE: [GuardSlot; GUARD_SLOTS] =
    [const { GuardSlot { start: AtomicUsize::new(0), end: AtomicUsize::new(0), faulted: AtomicBool::new(false) } };
        GUARD_SLOTS];

/// Where the next free slot is looked for first.
static GUARD_HINT: AtomicUsize = AtomicUsize::new(0);

/// The `SIGBUS` action that was in place before ours, for faults that are not ours.
static PREVIOUS_SIGBUS: std::sync::OnceLock<libc::sigaction> = std::sync::OnceLock::new();

/// The page size, read once when the handler is installed.
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);

/// A registered range; unregistered on drop. `slot` is `None` when the table was full.
#[derive(Debug)]
struct Guarded {
    slot: Option<usize>,
}

impl Guarded {
    fn register(start: usize, len: usize) -> Guarded {
        install_sigbus_guard();
        let first = GUARD_HINT.load(Ordering::Relaxed);
        for i in (first..GUARD_SLOTS).chain(0..first) {
            let slot = &GUARD_TABLE[i];
            // Claim the slot with a placeholder start (1 is never a mapping's address)
            // so that no other thread takes it, then publish the real range.
            if slot.start.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                slot.faulted.store(false, Ordering::Relaxed);
                slot.end.store(start + len, Ordering::Relaxed);
                slot.start.store(start, Ordering::Release);
                GUARD_HINT.store((i + 1) % GUARD_SLOTS, Ordering::Relaxed);
                return Guarded { slot: Some(i) };
            }
        }
        log::warn!("more than {GUARD_SLOTS} metrics files mapped at once: this one is not guarded against truncation");
        Guarded { slot: None }
    }

    fn faulted(&self) -> bool {
        self.slot.is_some_and(|i| GUARD_TABLE[i].faulted.load(Ordering::Acquire))
    }

    /// Keeps the range registered for the life of the process; its slot.
    fn keep(self) -> Option<usize> {
        let slot = self.slot;
        std::mem::forget(self);
        slot
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let slot = &GUARD_TABLE[i];
            slot.end.store(0, Ordering::Relaxed);
            slot.start.store(0, Ordering::Release);
        }
    }
}

/// The slot whose range holds `addr`, if any. Async-signal-safe: atomic loads only.
fn guarded_slot(addr: usize) -> Option<&'static GuardSlot> {
    GUARD_TABLE.iter().find(|slot| {
        let start = slot.start.load(Ordering::Acquire);
        start > 1 && start <= addr && addr < slot.end.load(Ordering::Relaxed)
    })
}

extern "C" fn on_sigbus(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid, aligned `siginfo_t` to an `SA_SIGINFO`
    // handler, alive for the handler's duration.
    let info_ref = unsafe { &*info };
    // SAFETY: for SIGBUS the kernel fills `si_addr` (the faulting address), the field
    // this accessor reads from the union.
    let addr = unsafe { info_ref.si_addr() } as usize;
    if let Some(slot) = guarded_slot(addr) {
        let page_size = PAGE_SIZE.load(Ordering::Relaxed);
        let page = addr & !(page_size - 1);
        // SAFETY: `page` is the page-aligned start of a page inside one of our
        // registered mappings (a file mapping this crate made and owns: a writer's,
        // never unmapped, or a collector's, unmapped only after it is unregistered), so
        // replacing it with a private anonymous zero page (MAP_FIXED) touches no memory
        // anyone else owns. The page lies past the end of its file, so it held nothing
        // readable anyway. mmap(2) is a plain system call, safe to make in a handler.
        let mapped = unsafe {
            libc::mmap(
                page as *mut libc::c_void,
                page_size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if mapped != libc::MAP_FAILED {
            slot.faulted.store(true, Ordering::Release);
            // Returning retries the access, which now finds the zero page.
            return;
        }
    }
    // Not ours: what would have happened without us.
    match PREVIOUS_SIGBUS.get() {
        Some(previous) if previous.sa_sigaction != libc::SIG_DFL && previous.sa_sigaction != libc::SIG_IGN => {
            if previous.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: with SA_SIGINFO the previous action's `sa_sigaction` is a
                // three-argument handler, installed by whoever installed it for exactly
                // this call; we pass it the kernel's own arguments.
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(previous.sa_sigaction) };
                handler(signal, info, context);
            } else {
                // SAFETY: without SA_SIGINFO `sa_sigaction` holds a one-argument handler.
                let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(previous.sa_sigaction) };
                handler(signal);
            }
        }
        _ => {
            // Restore the default action; the faulting access is retried on return and
            // raises SIGBUS again, which now terminates the process (with a core dump,
            // as it would have without us).
            // SAFETY: an all-zero `sigaction` is a valid value: empty mask, no flags,
            // SIG_DFL (0) as its handler.
            let default: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: `default` is a valid `sigaction` for the duration of the call and
            // the old action is not asked for; sigaction(2) is async-signal-safe.
            unsafe { libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut()) };
        }
    }
}

/// Installs the SIGBUS guard's handler, once per process.
fn install_sigbus_guard() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sysconf(_SC_PAGESIZE) has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page_size > 0 {
            PAGE_SIZE.store(page_size as usize, Ordering::Relaxed);
        }
        // SAFETY: an all-zero `sigaction` is a valid value (empty mask, no flags,
        // SIG_DFL); it is filled in before use.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: an all-zero `sigaction` is a valid value, overwritten by the call.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to valid, initialised `sigaction` values for the
        // duration of the call. The handler only loads atomics, makes the mmap(2) and
        // sigaction(2) system calls, and calls the previous handler.
        let rc = unsafe { libc::sigaction(libc::SIGBUS, &action, &mut previous) };
        if rc == 0 {
            let _ = PREVIOUS_SIGBUS.set(previous);
        } else {
            log::warn!("cannot install the SIGBUS guard: {}", io::Error::last_os_error());
        }
    });
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
    fn reading_a_truncated_file_reads_zeros_and_says_so_instead_of_sigbus() {
        let page = PAGE_SIZE.load(Ordering::Relaxed).max(4096);
        let f = file_with(&vec![7u8; 3 * page]);
        let map = ReadMap::map(&f, 3 * page).unwrap();
        assert_eq!(map.load_u64(2 * page), Some(u64::from_ne_bytes([7; 8])));
        assert!(!map.truncated());
        f.set_len(page as u64).unwrap(); // what another process could do
        assert_eq!(map.load_u64(8), Some(u64::from_ne_bytes([7; 8])), "the first page is still there");
        assert!(!map.truncated());
        assert_eq!(map.load_u64(2 * page + 8), Some(0), "a page past the end reads as zeros");
        assert!(map.truncated());
        let mut buf = Vec::new();
        assert!(map.copy_to(page, 3 * page, &mut buf).is_some_and(|b| b.iter().all(|&x| x == 0)));
    }

    #[test]
    fn writing_to_a_truncated_file_is_lost_not_fatal() {
        let page = PAGE_SIZE.load(Ordering::Relaxed).max(4096);
        let f = file_with(&vec![0u8; 2 * page]);
        let map = SharedMap::map(&f, 2 * page).unwrap();
        let slot = map.u64_at(page + 16).unwrap();
        slot.store(5, Ordering::Relaxed);
        f.set_len(0).unwrap();
        slot.fetch_add(1, Ordering::Relaxed); // would be SIGBUS
        assert!(map.truncated());
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
