//! How far `malloc` grows its heaps at a time, for a process that exits once its one
//! command is done.

/// Has glibc's `malloc` grow a heap by `bytes` more than each growth needs (its
/// `M_TOP_PAD`; the default is 128 KiB), for a one-shot command whose memory the exit
/// frees.
///
/// A cold scrape of 64 files of 10,000 series makes about 12 MiB of tables and values
/// on two threads. With the default, the heaps grow by `brk` and `mprotect` about 85
/// times (13 with 16 MiB), and each of these can wait for the other thread's `mmap`,
/// populating or `munmap` of a file: all of them take the address space's lock, the
/// growths for writing.
/// Reserving more at a time costs only address space: a page takes memory when it is
/// first written. It also keeps more of the heap's top when memory is freed, which a
/// process about to exit does not mind; a long-running process (`serve`) keeps the
/// default. Setting it also stops glibc from raising its threshold for serving an
/// allocation with a mapping of its own (128 KiB) as large blocks are freed.
///
/// Does nothing where `malloc` is not glibc's.
pub fn pad_heap_growth(bytes: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if let Ok(bytes) = libc::c_int::try_from(bytes) {
        // SAFETY: `mallopt` has no precondition on memory: glibc allows it at any time
        // (it takes the main arena's lock and sets parameters that later allocations
        // read) and it changes no memory already allocated. `M_TOP_PAD` takes any
        // non-negative size. A failure (0 returned) leaves the default, which is only
        // slower. The command line calls this before it starts any thread.
        unsafe {
            libc::mallopt(libc::M_TOP_PAD, bytes);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}
