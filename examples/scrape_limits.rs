//! What this machine allows a scrape, measured without the collector: the floors that
//! BENCHMARKS.md ("Scrape at the limit") compares our figures with.
//!
//! ```text
//! cargo run --release --example scrape_limits -- SMALL_DIR BIG_DIR
//! ```
//!
//! * **System calls per small file** (`SMALL_DIR`, e.g. 10,000 small files): the least
//!   a cold scrape must do per file, `openat` relative to the directory, `fstat`, one
//!   `pread` of 4 KiB and `close`, on 1 and 2 threads, and listing the directory.
//! * **Bytes per value** (`BIG_DIR`, e.g. 64 files × 10,000 series): every file's used
//!   bytes are copied into memory once, then one 8-byte value per entry is loaded at the
//!   offsets the entries have, on 1 and 2 threads: what a warm scrape's reads cost at
//!   the least, with the data in RAM and none of a file mapping's page-table costs; and
//!   one load per 64-byte line over all of it (the memory bandwidth).
//!
//! Each figure is the minimum of 7 runs.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn db_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "db"))
        .collect();
    files.sort();
    Ok(files)
}

/// The minimum over 7 runs of `f`, in milliseconds.
fn best_ms(mut f: impl FnMut()) -> f64 {
    (0..7)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::MAX, f64::min)
}

/// Runs `f` on each of `threads` equal shares of `items` at once.
fn split<T: Sync>(items: &[T], threads: usize, f: impl Fn(&[T]) + Sync) {
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        for part in items.chunks(chunk.max(1)) {
            let f = &f;
            s.spawn(move || f(part));
        }
    });
}

fn small_files(dir: &Path) -> Result<()> {
    use nix::fcntl::{OFlag, openat};
    let names: Vec<_> = db_files(dir)?.into_iter().filter_map(|p| p.file_name().map(|n| n.to_owned())).collect();
    let dir_file = fs::File::open(dir)?;
    let per_file = |names: &[std::ffi::OsString]| {
        let mut buf = vec![0u8; 4096];
        for name in names {
            let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
            let fd = openat(&dir_file, name.as_os_str(), flags, nix::sys::stat::Mode::empty()).expect("open");
            let file = fs::File::from(fd);
            let _ = file.metadata().expect("fstat");
            let _ = file.read_at(&mut buf, 0).expect("pread");
        }
    };
    for threads in [1, 2] {
        let ms = best_ms(|| split(&names, threads, per_file));
        println!(
            "{} files, openat + fstat + pread 4 KiB + close, {threads} thread(s): {ms:.2} ms ({:.2} µs per file)",
            names.len(),
            ms * 1e3 / names.len() as f64
        );
    }
    let ms = best_ms(|| {
        let n = fs::read_dir(dir).expect("list").count();
        std::hint::black_box(n);
    });
    println!("listing {}: {ms:.2} ms", dir.display());
    Ok(())
}

fn big_files(dir: &Path) -> Result<()> {
    let mut data: Vec<u8> = Vec::new();
    let mut offsets: Vec<usize> = Vec::new();
    for path in db_files(dir)? {
        let bytes = fs::read(&path)?;
        let used = prometheus_multiproc::format::decode_used(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = data.len();
        for entry in prometheus_multiproc::format::entries(&bytes, used as usize) {
            offsets.push(base + entry?.value_offset);
        }
        data.extend_from_slice(&bytes[..used as usize]);
    }
    let mib = data.len() as f64 / (1 << 20) as f64;
    for threads in [1, 2] {
        let ms = best_ms(|| {
            split(&offsets, threads, |offs| {
                let mut acc = 0u64;
                for &o in offs {
                    acc = acc.wrapping_add(u64::from_le_bytes(data[o..o + 8].try_into().unwrap()));
                }
                std::hint::black_box(acc);
            })
        });
        println!("{} values in {mib:.1} MiB, one load each, {threads} thread(s): {ms:.2} ms", offsets.len());
        let lines: Vec<usize> = (0..data.len() / 64).collect();
        let ms = best_ms(|| {
            split(&lines, threads, |ls| {
                let mut acc = 0u64;
                for &l in ls {
                    acc = acc.wrapping_add(data[l * 64] as u64);
                }
                std::hint::black_box(acc);
            })
        });
        println!(
            "one load per 64-byte line over {mib:.1} MiB, {threads} thread(s): {ms:.2} ms ({:.1} GB/s)",
            data.len() as f64 / ms / 1e6
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [small, big] = args.as_slice() else {
        return Err("usage: scrape_limits SMALL_DIR BIG_DIR".into());
    };
    small_files(Path::new(small))?;
    big_files(Path::new(big))?;
    Ok(())
}
