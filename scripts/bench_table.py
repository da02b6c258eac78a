#!/usr/bin/env python3
"""Builds the BENCHMARKS.md hot-path table from criterion's estimates and the Python
timings (JSON from py_hot_path.py). Usage: bench_table.py GROUP PY_JSON"""
import json, os, sys

group, py_json = sys.argv[1], sys.argv[2]
root = os.path.join(os.environ.get('CARGO_TARGET_DIR', 'target'), 'criterion', group)
py = json.load(open(py_json))


def ns(bench):
    with open(os.path.join(root, bench, 'new', 'estimates.json')) as f:
        e = json.load(f)
    return e['median']['point_estimate']


bare = ns('bare_f64_cas_add')
rows = [
    ('counter `inc` (cached handle)', 'counter_inc', 'prometheus_counter_inc', 'counter_inc'),
    ('labeled lookup + `inc`: `family.get(..)?.inc()`', 'labeled_get_inc', 'prometheus_with_label_values_inc', 'labeled_get_inc'),
    ('labeled lookup + `inc`: `family.with(.., Counter::inc)`', 'labeled_with_inc', 'prometheus_with_label_values_inc', 'labeled_get_inc'),
    ('gauge `set`', 'gauge_set', 'prometheus_gauge_set', 'gauge_set'),
    ('histogram `observe` (15 buckets)', 'histogram_observe', 'prometheus_histogram_observe', 'histogram_observe'),
]
print(f'bare f64 CAS add on a heap AtomicU64: {bare:.2f} ns\n')
print('| operation | prometheus-multiproc | ÷ bare CAS | `prometheus` crate (in-process) | Python multiprocess (median) | Python ÷ ours |')
print('|---|---|---|---|---|---|')
for label, ours, theirs, pykey in rows:
    o, t, p = ns(ours), ns(theirs), py[pykey]['median']
    print(f'| {label} | {o:.2f} ns | {o / bare:.2f}× | {t:.2f} ns | {p:.0f} ns | {p / o:.0f}× |')
o, t = ns('labeled_get_inc_2_threads'), ns('prometheus_with_label_values_inc_2_threads')
print(f'| labeled lookup + `inc`, 2 threads at once on 2 label sets of one family (per op, per thread) | {o:.2f} ns | | {t:.2f} ns | | |')

print()
print('Labeled lookup + `inc`, ours against both in-process crates:\n')
print('| operation | ours | `prometheus` `with_label_values(..).inc()` | `prometheus-client` `get_or_create(..).inc()` |')
print('|---|---|---|---|')
prom, pc = ns('prometheus_with_label_values_inc'), ns('prometheus_client_get_or_create_inc')
for label, bench in [('`family.labels(&["GET", "200"]).inc()`', 'labeled_labels_inc'),
                     ('`family.with(&["GET", "200"], Counter::inc)`', 'labeled_with_inc'),
                     ('`family.get(&["GET", "200"])?.inc()`', 'labeled_get_inc')]:
    print(f'| {label} | {ns(bench):.2f} ns | {prom:.2f} ns | {pc:.2f} ns (string pairs) |')
if os.path.exists(os.path.join(root, 'typed_labels_inc')):
    print(f'| typed: `typed.labels(&Request {{ method, status }}).inc()` | {ns("typed_labels_inc"):.2f} ns | {prom:.2f} ns '
          f'| {ns("prometheus_client_typed_get_or_create_inc"):.2f} ns (derived label set) |')
