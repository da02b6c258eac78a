//! Limits of one process, each with its own error kind. One test per binary: the
//! limit is process-wide.

mod support;

use prometheus_multiproc::{ErrorKind, Registry};
use support::TestDir;

#[test]
fn a_registry_past_the_per_process_limit_is_refused_with_a_limit_error() {
    let dirs: Vec<TestDir> = (0..65).map(|_| TestDir::new()).collect();
    let mut held = Vec::new();
    for dir in &dirs[..64] {
        held.push(Registry::builder().dir(dir.path()).build().expect("64 registries fit"));
    }
    let err = Registry::builder().dir(dirs[64].path()).build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitReached, "{err}");
    assert_eq!(err.expectation(), Some("at most 64 registries per process"));
    assert_eq!(err.found_instead(), Some("64 held already"));
    drop(held);
    Registry::builder().dir(dirs[64].path()).build().expect("room again once the others are dropped");
}
