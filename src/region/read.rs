//! The collector's read-only mappings.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use super::sigbus::Guarded;

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

    /// Asks the CPU to bring the cache line holding `offset` in (a hint: nothing is
    /// read, and an address outside the mapping is ignored).
    #[inline]
    pub(crate) fn prefetch(&self, offset: usize) {
        #[cfg(target_arch = "x86_64")]
        if offset < self.raw.len() {
            let ptr = self.raw.as_ptr().wrapping_add(offset).cast::<i8>();
            // SAFETY: `prefetch` reads no memory and cannot fault, whatever the address
            // (here one inside the live mapping); it needs SSE, which every x86_64 CPU
            // has (it is in the target's baseline).
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = offset;
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
