//! The directories `benches/scrape.rs`, `examples/scrape_once.rs` and
//! `scripts/py_scrape.py` read: `FILES` counter files of `SERIES` series each, one
//! labeled family `req_total{method,path}` per file with the same series in every file
//! (as in the reference measurement of Python's collector), each file written by its
//! own [`Registry`] under a distinct worker ID, as pre-fork workers write them.
//!
//! Shared with `#[path]` by the bench and the example, so that both (and Python, via
//! the script) read the very same bytes.

use std::path::{Path, PathBuf};

use prometheus_multiproc::{Opts, Registry, WorkerId};

/// The shapes measured: (files, series per file). The first and last are the
/// reference measurement's; the middle two fill in the plot of time against
/// files × series.
pub const SHAPES: [(usize, usize); 4] = [(16, 1_000), (64, 1_000), (16, 10_000), (64, 10_000)];

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

/// A marker written last, so that an interrupted build is redone. A dotfile: no
/// collector looks at it. Bump its content when the layout changes.
const COMPLETE: &str = ".complete";
const LAYOUT: &str = "req_total{method,path} v1\n";

/// `ROOT/FILESxSERIES`, where ROOT is `$SCRAPE_BENCH_DIRS` or `TARGET/bench-dirs`.
pub fn dir_for(files: usize, series: usize) -> PathBuf {
    let root = std::env::var_os("SCRAPE_BENCH_DIRS").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        target.join("bench-dirs")
    });
    root.join(format!("{files}x{series}"))
}

/// The directory of `files` × `series`, written now unless a complete one exists.
pub fn ensure(files: usize, series: usize) -> PathBuf {
    let dir = dir_for(files, series);
    if std::fs::read_to_string(dir.join(COMPLETE)).is_ok_and(|s| s == LAYOUT) {
        return dir;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove an incomplete bench directory");
    }
    std::fs::create_dir_all(&dir).expect("create the bench directory");
    let labels: Vec<(&str, String)> =
        (0..series).map(|i| (METHODS[i % METHODS.len()], format!("/api/v1/items/{i}"))).collect();
    for file in 0..files {
        let id = WorkerId::new(&format!("w{file:03}")).expect("a valid worker ID");
        let registry = Registry::builder().dir(&dir).worker_id(id).build().expect("a registry");
        let family = registry
            .counter_family(Opts::new("req_total", "Requests served."), &["method", "path"])
            .expect("a counter family");
        for (i, (method, path)) in labels.iter().enumerate() {
            family.get(&[method, path]).expect("a series").inc_by(((i + file) % 97) as f64);
        }
    }
    std::fs::write(dir.join(COMPLETE), LAYOUT).expect("mark the bench directory complete");
    dir
}
