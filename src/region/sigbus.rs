//! The `SIGBUS` guard.
//!
//! Touching a page of a file mapping that lies past the end of its file raises
//! `SIGBUS` with `si_code == BUS_ADRERR`. Neither this crate's writers nor Python's ever
//! shrink a file, but something else might (an operator's `truncate`, a cleanup job).
//! Every mapping this crate makes is registered in [`GUARD_TABLE`]; the handler, for a
//! `BUS_ADRERR` fault inside a registered range only, maps a private zero page over
//! the faulting page and marks the range, so the access completes and the owner of the
//! mapping can drop the file. Every other `SIGBUS` (a hardware memory error,
//! `BUS_MCEERR_*`; an alignment fault, `BUS_ADRALN`; any fault outside our ranges) goes
//! to the action installed before ours, or to the default action (the process dies),
//! exactly as without us.
//!
//! Limits, said where the promise is made (the crate docs): the kernel also reports an
//! I/O error while reading a file-backed page as `BUS_ADRERR`, and the handler cannot
//! tell it from truncation (it has no descriptor to compare the file's size with), so
//! inside our mappings it is handled like truncation: the scrape skips the file, the
//! writer's writes to that page are lost, nobody dies.
//!
//! Opting out: [`disable`] (called by `RegistryBuilder::sigbus_guard(false)` and
//! `prometheus_multiproc::disable_sigbus_guard`), or `PROMETHEUS_MULTIPROC_SIGBUS_GUARD=off`
//! in the environment before the first mapping: the handler is then never installed,
//! or, if it is and is still the process's `SIGBUS` action, the previous action is put
//! back.
#![allow(unsafe_code)]

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};

/// The environment variable that turns the guard off (`0`, `off`, `false` or `no`).
pub const SIGBUS_GUARD_ENV: &str = "PROMETHEUS_MULTIPROC_SIGBUS_GUARD";

/// How many mappings can be guarded at once (a collector keeps one per mapped file, a
/// writer one per file and growth step). Past it a mapping is still made, unguarded.
/// The table is 2 MiB of zeroed static memory, touched only as far as it is used.
const GUARD_SLOTS: usize = 1 << 16;

/// One guarded range: `[start, end)`, and whether a `SIGBUS` was turned into zeros in
/// it.
///
/// A slot is owned by whoever moved `start` from 0 (free) to 1 (claimed, no range).
/// The owner changes `start` and `end` inside a sequence lock: `seq` is odd while they
/// change and even when they are stable. The handler reads `seq`, both words and `seq`
/// again, and uses the pair only if `seq` was even and unchanged, so it never pairs
/// the `start` of one registration with the `end` of another. A slot that is being
/// changed is skipped: it cannot be the faulting mapping's, whose registration is
/// stable while the mapping is being accessed (the accessing thread borrows the
/// mapping, and a writer's mappings are never unregistered).
struct GuardSlot {
    seq: AtomicUsize,
    start: AtomicUsize,
    end: AtomicUsize,
    faulted: AtomicBool,
}

static GUARD_TABLE: [GuardSlot; GUARD_SLOTS] = [const {
    GuardSlot {
        seq: AtomicUsize::new(0),
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        faulted: AtomicBool::new(false),
    }
}; GUARD_SLOTS];

/// Where the next free slot is looked for first.
static GUARD_HINT: AtomicUsize = AtomicUsize::new(0);

/// One past the highest slot ever claimed: the handler looks no further.
static GUARD_HIGH: AtomicUsize = AtomicUsize::new(0);

/// The `SIGBUS` action that was in place before ours, for faults that are not ours.
static PREVIOUS_SIGBUS: std::sync::OnceLock<libc::sigaction> = std::sync::OnceLock::new();

/// The page size, read once when the handler is installed.
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);

/// Whether the guard was turned off in this process.
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Serialises installing and removing the handler (never taken in the handler).
static INSTALL: Mutex<bool> = Mutex::new(false);

/// A registered range; unregistered on drop. `slot` is `None` when the table was full.
#[derive(Debug)]
pub(super) struct Guarded {
    slot: Option<usize>,
}

impl Guarded {
    pub(super) fn register(start: usize, len: usize) -> Guarded {
        install();
        let first = GUARD_HINT.load(Ordering::Relaxed);
        for i in (first..GUARD_SLOTS).chain(0..first) {
            let slot = &GUARD_TABLE[i];
            // Claim the slot with a placeholder start (1 is never a mapping's address)
            // so that no other thread takes it, then publish the range.
            if slot.start.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                GUARD_HIGH.fetch_max(i + 1, Ordering::Release);
                slot.faulted.store(false, Ordering::Relaxed);
                write_range(slot, start, start + len);
                GUARD_HINT.store((i + 1) % GUARD_SLOTS, Ordering::Relaxed);
                return Guarded { slot: Some(i) };
            }
        }
        log::warn!("more than {GUARD_SLOTS} metrics files mapped at once: this one is not guarded against truncation");
        Guarded { slot: None }
    }

    pub(super) fn faulted(&self) -> bool {
        self.slot.is_some_and(slot_faulted)
    }

    /// Keeps the range registered for the life of the process; its slot.
    pub(super) fn keep(self) -> Option<usize> {
        let slot = self.slot;
        std::mem::forget(self);
        slot
    }
}

/// Whether a fault was turned into zeros in the range of slot `i`.
pub(super) fn slot_faulted(i: usize) -> bool {
    GUARD_TABLE[i].faulted.load(Ordering::Acquire)
}

/// Changes an owned slot's range inside its sequence lock (only the owner calls this).
fn write_range(slot: &GuardSlot, start: usize, end: usize) {
    let seq = slot.seq.load(Ordering::Relaxed);
    slot.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
    // The odd sequence is visible before either word changes.
    fence(Ordering::Release);
    slot.start.store(start, Ordering::Relaxed);
    slot.end.store(end, Ordering::Relaxed);
    // Both words are visible before the even sequence.
    slot.seq.store(seq.wrapping_add(2), Ordering::Release);
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let slot = &GUARD_TABLE[i];
            // No range (start 1 keeps the slot ours), then free.
            write_range(slot, 1, 0);
            slot.start.store(0, Ordering::Release);
        }
    }
}

/// The slot whose range holds `addr`, if any. Async-signal-safe: atomic loads only.
fn guarded_slot(addr: usize) -> Option<&'static GuardSlot> {
    let high = GUARD_HIGH.load(Ordering::Acquire).min(GUARD_SLOTS);
    GUARD_TABLE[..high].iter().find(|slot| {
        let before = slot.seq.load(Ordering::Acquire);
        if !before.is_multiple_of(2) {
            return false;
        }
        let start = slot.start.load(Ordering::Relaxed);
        let end = slot.end.load(Ordering::Relaxed);
        // The two loads happen before the second sequence load.
        fence(Ordering::Acquire);
        let after = slot.seq.load(Ordering::Relaxed);
        before == after && start > 1 && start <= addr && addr < end
    })
}

/// Turns the `SIGBUS` guard off for the rest of this process's life.
///
/// The guard's handler is process-wide. After this call it is not installed any more,
/// and if it was installed and is still the process's `SIGBUS` action, the action it
/// replaced is put back (if another handler replaced ours since, ours stays in that
/// handler's chain and a warning is logged). Without the guard, a metrics file
/// truncated under a mapping kills the process that touches the missing page, as it
/// would without this crate. Setting `PROMETHEUS_MULTIPROC_SIGBUS_GUARD=off` in the
/// environment before the first metrics file is mapped has the same effect.
///
/// Call it once, early, when the embedding program handles `SIGBUS` itself and wants
/// no other handler in the chain.
pub fn disable_sigbus_guard() {
    let mut installed = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    DISABLED.store(true, Ordering::Relaxed);
    if !*installed {
        return;
    }
    let Some(previous) = PREVIOUS_SIGBUS.get() else { return };
    // SAFETY: an all-zero `sigaction` is a valid value, overwritten by the call.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only reads the current one into `current`, a valid
    // `sigaction` for the duration of the call.
    let rc = unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut current) };
    if rc == 0 && current.sa_sigaction == on_sigbus as *const () as usize {
        // SAFETY: `previous` is the action sigaction(2) gave back when ours was
        // installed, a valid `sigaction`; putting it back is what the embedder asked.
        unsafe { libc::sigaction(libc::SIGBUS, previous, std::ptr::null_mut()) };
        *installed = false;
    } else {
        log::warn!(
            "the SIGBUS guard was not removed: another SIGBUS handler replaced it since (it should forward \
             faults it does not own to the action it replaced)"
        );
    }
}

/// Whether the environment turns the guard off.
fn disabled_by_env() -> bool {
    std::env::var(SIGBUS_GUARD_ENV)
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "off" | "false" | "no"))
}

extern "C" fn on_sigbus(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid, aligned `siginfo_t` to an `SA_SIGINFO`
    // handler, alive for the handler's duration.
    let info_ref = unsafe { &*info };
    // SAFETY: for SIGBUS the kernel fills `si_addr` (the faulting address), the field
    // this accessor reads from the union.
    let addr = unsafe { info_ref.si_addr() } as usize;
    // Only "address not backed by the file" faults are ours to handle; a hardware
    // memory error (BUS_MCEERR_AR/AO) or an alignment fault keeps its action.
    let ours = info_ref.si_code == libc::BUS_ADRERR;
    if let Some(slot) = guarded_slot(addr).filter(|_| ours) {
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
            // Restore the default action and raise the signal again: it is pending
            // while this handler runs (SIGBUS is blocked in its own handler) and is
            // delivered when the handler returns, which terminates the process with a
            // core dump, as it would have without us. Re-raising matters for a SIGBUS
            // sent by a process (`kill -BUS`), which no retried access would repeat.
            // SAFETY: an all-zero `sigaction` is a valid value: empty mask, no flags,
            // SIG_DFL (0) as its handler.
            let default: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: `default` is a valid `sigaction` for the duration of the call and
            // the old action is not asked for; sigaction(2) is async-signal-safe.
            unsafe { libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut()) };
            // SAFETY: raise(3) is async-signal-safe and takes no pointer.
            unsafe { libc::raise(libc::SIGBUS) };
        }
    }
}

/// Installs the SIGBUS guard's handler, once per process, unless it was turned off.
fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if disabled_by_env() {
            DISABLED.store(true, Ordering::Relaxed);
        }
    });
    if DISABLED.load(Ordering::Relaxed) || PREVIOUS_SIGBUS.get().is_some() {
        return;
    }
    let mut installed = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if *installed || DISABLED.load(Ordering::Relaxed) || PREVIOUS_SIGBUS.get().is_some() {
        // Installed once already (and perhaps removed by `disable`, which also stops
        // any later install).
        return;
    }
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
        *installed = true;
    } else {
        log::warn!("cannot install the SIGBUS guard: {}", io::Error::last_os_error());
    }
}

/// The page size the handler works with.
#[cfg(test)]
pub(super) fn page_size() -> usize {
    PAGE_SIZE.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot whose range flips between two registrations must never be read as the
    /// `start` of one and the `end` of the other: that pair would cover `PROBE`, which
    /// neither range holds.
    #[test]
    fn a_range_being_replaced_is_never_read_half_old_half_new() {
        const A: (usize, usize) = (0x1000_0000_0000, 0x1000_0000_1000);
        const B: (usize, usize) = (0x3000_0000_0000, 0x3000_0000_1000);
        const PROBE: usize = 0x2000_0000_0000;
        let guarded = Guarded::register(A.0, A.1 - A.0);
        let i = guarded.slot.expect("a free slot");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flipper = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut flips = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (start, end) = if flips.is_multiple_of(2) { B } else { A };
                    write_range(&GUARD_TABLE[i], start, end);
                    flips += 1;
                }
            })
        };
        let mut torn = 0;
        for _ in 0..200_000 {
            if guarded_slot(PROBE).is_some() {
                torn += 1;
            }
            assert!(guarded_slot(A.0 + 8).is_none_or(|slot| std::ptr::eq(slot, &GUARD_TABLE[i])));
        }
        stop.store(true, Ordering::Relaxed);
        flipper.join().unwrap();
        write_range(&GUARD_TABLE[i], A.0, A.1);
        drop(guarded);
        assert_eq!(torn, 0, "reads that paired two registrations");
    }
}
