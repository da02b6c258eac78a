#!/usr/bin/env python3
"""Times prometheus_client's multiprocess-mode hot path (ns per op, min/median of 5).

With PMP_PY_INSTALL=1 the metrics write through prometheus_multiproc.install()
(with PMP_PY_FAST_LABELS=0, install(fast_labels=False): labels() stays
prometheus_client's own), and the value objects' own calls (value_inc, value_set,
value_observe) and the empty loop (empty_loop) are timed too
(scripts/py_writer_bench.py). `labels` times Counter.labels(..) alone, for an
existing child.

Usage: python py_hot_path.py [N]   (prints JSON: {op: {"min": ns, "median": ns}})
"""
import json, os, statistics, sys, tempfile, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
os.environ['PROMETHEUS_MULTIPROC_DIR'] = tempfile.mkdtemp(prefix='pmp-pybench-')
INSTALLED = os.environ.get('PMP_PY_INSTALL') == '1'
if INSTALLED:
    import prometheus_multiproc  # noqa: E402
    assert prometheus_multiproc.install(fast_labels=os.environ.get('PMP_PY_FAST_LABELS') != '0')
from prometheus_client import Counter, Gauge, Histogram  # noqa: E402

c = Counter('py_total', 'c', registry=None)
cl = Counter('pyl_total', 'c', ['method', 'status'], registry=None)
cl.labels('GET', '200')
g = Gauge('pyg', 'g', multiprocess_mode='livesum', registry=None)
h = Histogram('pyh', 'h', registry=None)


def timeit(fn):
    runs = []
    for _ in range(5):
        t = time.perf_counter_ns()
        fn()
        runs.append((time.perf_counter_ns() - t) / N)
    return {'min': min(runs), 'median': statistics.median(runs)}


def inc():
    f = c.inc
    for _ in range(N):
        f()


def labels_inc():
    for _ in range(N):
        cl.labels('GET', '200').inc()


def labels():
    for _ in range(N):
        cl.labels('GET', '200')


def gauge_set():
    f = g.set
    for _ in range(N):
        f(3.0)


def observe():
    f = h.observe
    for _ in range(N):
        f(0.3)


def empty():
    for _ in range(N):
        pass


def value_inc():
    f = c._value.inc
    for _ in range(N):
        f(1.0)


def value_set():
    f = g._value.set
    for _ in range(N):
        f(3.0)


def value_observe():
    total, bucket = h._sum.inc, h._buckets[7].inc
    for _ in range(N):
        total(0.3)
        bucket(1.0)


out = {'counter_inc': timeit(inc), 'labeled_get_inc': timeit(labels_inc), 'labels': timeit(labels),
       'gauge_set': timeit(gauge_set), 'histogram_observe': timeit(observe)}
if INSTALLED:
    out.update(empty_loop=timeit(empty), value_inc=timeit(value_inc), value_set=timeit(value_set),
               value_observe=timeit(value_observe))
print(json.dumps(out))
