//! The cardinality guard and the dropped-series self-metric.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use prometheus_multiproc::{Collector, Counter, OVERFLOW_LABEL_VALUE, Opts, Registry, WorkerId, render};
use support::TestDir;

/// Counts the allocations of each thread, so that a test can tell a path that
/// allocates from one that does not.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

#[allow(unsafe_code)] // a test's own allocator, not the crate's code
// SAFETY: delegates every call to `System` unchanged; the thread-local counter is a
// `const`-initialised `Cell`, which never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn registry(dir: &TestDir) -> Registry {
    Registry::builder().dir(dir.path()).worker_id(WorkerId::new("1").unwrap()).self_metrics(true).build().unwrap()
}

fn text(dir: &TestDir) -> String {
    let scrape = Collector::new(dir.path()).unwrap().collect().unwrap();
    String::from_utf8(render(&scrape, None, None).body).unwrap()
}

#[test]
fn family_past_its_limit_hands_out_the_overflow_series() {
    let dir = TestDir::new();
    let registry = registry(&dir);
    let users = registry.counter_family(Opts::new("logins_total", "Logins.").max_series(3), &["user", "site"]).unwrap();
    for i in 0..10 {
        users.get(&[&format!("u{i}"), "a"]).unwrap().inc();
    }
    // A label set created before the limit was reached keeps its own series.
    users.get(&["u0", "a"]).unwrap().inc();
    let overflow = users.get(&[OVERFLOW_LABEL_VALUE, OVERFLOW_LABEL_VALUE]).unwrap();
    assert_eq!(overflow.get(), 7.0, "u3..u9 were counted in the overflow series");
    let text = text(&dir);
    for line in [
        "logins_total{site=\"a\",user=\"u0\"} 2.0",
        "logins_total{site=\"a\",user=\"u1\"} 1.0",
        "logins_total{site=\"a\",user=\"u2\"} 1.0",
        "logins_total{site=\"__overflow__\",user=\"__overflow__\"} 7.0",
        "prometheus_multiproc_dropped_series_total{reason=\"cardinality\"} 7.0",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("u3"), "no series past the limit:\n{text}");
    assert_eq!(registry.dropped_series().iter().find(|(r, _)| *r == "cardinality"), Some(&("cardinality", 7)));
}

#[test]
fn declaring_a_metric_twice_shares_its_family_and_limit() {
    let dir = TestDir::new();
    let registry = registry(&dir);
    let opts = || Opts::new("hits_total", "Hits.").max_series(1);
    let a = registry.counter_family(opts(), &["k"]).unwrap();
    let b = registry.counter_family(opts(), &["k"]).unwrap();
    a.get(&["x"]).unwrap().inc();
    b.get(&["y"]).unwrap().inc(); // past the shared limit of 1
    assert_eq!(b.get(&["x"]).unwrap().get(), 1.0);
    assert_eq!(a.get(&[OVERFLOW_LABEL_VALUE]).unwrap().get(), 1.0);
    let conflict = registry.counter_family(Opts::new("hits_total", "Hits.").max_series(2), &["k"]).unwrap_err();
    assert_eq!(conflict.kind(), prometheus_multiproc::ErrorKind::Conflict);
}

#[test]
fn self_metrics_exist_from_the_start_and_count_nothing_yet() {
    let dir = TestDir::new();
    let _registry = registry(&dir);
    let text = text(&dir);
    for reason in ["no_space", "io", "cardinality", "fork"] {
        let line = format!("prometheus_multiproc_dropped_series_total{{reason=\"{reason}\"}} 0.0");
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn lookups_past_the_limit_allocate_nothing() {
    let dir = TestDir::new();
    let registry = registry(&dir);
    let users = registry.counter_family(Opts::new("logins_total", "Logins.").max_series(2), &["user"]).unwrap();
    let names: Vec<String> = (0..1000).map(|i| format!("u{i}")).collect();
    // Reach the limit and make the first redirection, which creates the overflow series.
    for name in &names[..3] {
        users.get(&[name]).unwrap().inc();
    }
    let before = allocations();
    for name in &names[3..] {
        users.get(&[name]).unwrap().inc();
        users.with(&[name], Counter::inc).unwrap();
    }
    assert_eq!(allocations(), before, "a lookup past the limit allocated");
    assert_eq!(users.get(&[OVERFLOW_LABEL_VALUE]).unwrap().get(), 1.0 + 2.0 * 997.0);
    assert_eq!(users.get(&["u0"]).unwrap().get(), 1.0, "children made before the limit keep their own series");
}

#[test]
fn overflow_totals_are_exact_across_threads() {
    const THREADS: usize = 4;
    const LOOKUPS: usize = 4000;
    let dir = TestDir::new();
    let registry = registry(&dir);
    let users = registry.counter_family(Opts::new("logins_total", "Logins.").max_series(8), &["user", "site"]).unwrap();
    let shared: Vec<String> = (0..8).map(|i| format!("shared{i}")).collect();
    for user in &shared {
        users.get(&[user, "a"]).unwrap();
    }
    // The family is at its limit, its overflow series not made yet: the threads race to
    // make it (the slow path) while others already take the fast path, and keep using
    // their own series in between.
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (users, shared) = (&users, &shared);
            s.spawn(move || {
                for i in 0..LOOKUPS {
                    if i % 2 == 0 {
                        users.get(&[&shared[i / 2 % 8], "a"]).unwrap().inc();
                    } else {
                        users.with(&[&format!("t{t}-{i}"), "a"], Counter::inc).unwrap();
                    }
                }
            });
        }
    });
    let redirected = THREADS * LOOKUPS / 2;
    let overflow = users.get(&[OVERFLOW_LABEL_VALUE, OVERFLOW_LABEL_VALUE]).unwrap().get();
    assert_eq!(overflow, redirected as f64);
    for user in &shared {
        assert_eq!(users.get(&[user, "a"]).unwrap().get(), (redirected / 8) as f64, "{user}");
    }
    assert_eq!(
        registry.dropped_series().iter().find(|(r, _)| *r == "cardinality"),
        Some(&("cardinality", redirected as u64))
    );
    let text = text(&dir);
    for line in [
        format!("logins_total{{site=\"__overflow__\",user=\"__overflow__\"}} {redirected}.0"),
        format!("prometheus_multiproc_dropped_series_total{{reason=\"cardinality\"}} {redirected}.0"),
    ] {
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("t0-"), "no series past the limit:\n{text}");
}
