//! `prometheus-multiproc`: scrape, inspect, serve, push, clear and compact a multiprocess metrics
//! directory from the command line. The logic is [`prometheus_multiproc::cli`].

use std::process::ExitCode;

/// With feature `mimalloc` (on by default), the binary allocates through mimalloc, which
/// asks for transparent huge pages on its arena (`MADV_HUGEPAGE`, where the kernel's THP
/// mode allows it). A cold scrape of 64 files × 10,000 series writes about 12 MiB of
/// fresh heap: 3,100-3,700 page faults on 4 KiB pages with glibc's `malloc`, about 230
/// with mimalloc, and about 2.2 ms less wall time (BENCHMARKS.md, "Seventh round").
/// Without huge pages mimalloc is slower here than glibc's `malloc`; the pages are the gain.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Huge pages suit a command that runs once and exits. `serve` runs for as long as
    // it is needed, and on 2 MiB pages its resident memory grew by about 30 MiB after
    // a few scrapes of 64 × 10,000: it turns transparent huge pages off for the process
    // (`PR_SET_THP_DISABLE`) before it allocates more than the start-up's few blocks,
    // which stay on the 4 MiB of huge pages they took. Clap takes the command as the
    // first argument, so the first argument is the command; a failed call only costs
    // memory.
    #[cfg(all(feature = "mimalloc", target_os = "linux"))]
    if std::env::args_os().nth(1).is_some_and(|command| command == "serve") {
        let _ = nix::sys::prctl::set_thp_disable(true);
    }
    ExitCode::from(prometheus_multiproc::cli::main_then_exit(std::env::args_os()))
}
