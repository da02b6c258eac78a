#!/usr/bin/env python3
"""Scrape timings from Python, in one run: stock prometheus_client 0.26
(MultiProcessCollector + generate_latest) against this package's generate_latest and
its MultiProcessCollector + prometheus_client's generate_latest, on directories written
by prometheus_client's own MmapedDict.

Directories (written once under ROOT, reused while their marker is there):

* ``64x10000``: 64 worker files of the same 10,000 ``req_total{method,path}`` series
  (the layout of benches/support/scrape_dirs.rs, written by Python instead);
* ``10000files``: 10,000 small files, 2,500 workers each leaving a counter (4 series),
  a histogram (1 series, 10 buckets), a max gauge and a summary file.

"ours generate_latest, cold" builds a new Rust collector per scrape (a process's first
scrape); "generate_latest(path)" keeps one per directory, which this package's
``generate_latest(path)``, ``make_wsgi_app`` and ``make_asgi_app`` do. "per request"
builds a new registry and ``MultiProcessCollector`` per scrape, as prometheus_client's
docs do in every request handler (stock Python has no other mode): ours share the kept
Rust collector of the directory, so that pattern scrapes warm too; "kept registry"
registers one collector once.

Usage: python bench_python.py ROOT [--runs N]
Prints a markdown table and checks that every variant's bytes equal stock's merging
the same files in sorted order.
"""

import argparse
import os
import statistics
import sys
import time

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as stock_generate_latest
from prometheus_client.multiprocess import MultiProcessCollector as StockCollector

import prometheus_multiproc
from prometheus_multiproc import MultiProcessCollector, _native

# The test suite's stock registry merging in sorted order (python/tests/conftest.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python", "tests"))
from conftest import stock_registry  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from py_dirs import ensure, write_big, write_small  # noqa: E402


def stock(path):
    registry = CollectorRegistry()
    StockCollector(registry, path=path)
    return stock_generate_latest(registry)


def stock_sorted(path):
    """Stock's bytes when it merges in sorted file order (it merges in directory
    order, so its family order depends on the file system); ours equal these."""
    return stock_generate_latest(stock_registry(path))


def timed(fn, runs):
    body = fn()  # untimed: page cache, imports, and the warm variants' first scrape
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return body, min(times), statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.makedirs(args.root, exist_ok=True)
    dirs = [
        ("64 files × 10,000 series", ensure(args.root, "64x10000", write_big)),
        ("10,000 small files", ensure(args.root, "10000files", write_small)),
    ]
    print("load at start: %s" % open("/proc/loadavg").read().strip(), file=sys.stderr)
    rows = []
    for label, d in dirs:
        kept_collector = _native.Collector(d)
        kept_registry = CollectorRegistry()
        MultiProcessCollector(kept_registry, path=d)

        def ours_cold():
            return _native.Collector(d).expose(False)

        def ours_mpc_per_request():
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=d)
            return stock_generate_latest(registry)

        variants = [
            ("stock MultiProcessCollector + generate_latest", lambda: stock(d)),
            ("ours generate_latest, cold", ours_cold),
            ("ours generate_latest(path), warm", lambda: prometheus_multiproc.generate_latest(d)),
            ("ours MultiProcessCollector + prometheus_client generate_latest, per request",
             ours_mpc_per_request),
            ("ours MultiProcessCollector + prometheus_client generate_latest, kept registry",
             lambda: stock_generate_latest(kept_registry)),
        ]
        results = []
        for name, fn in variants:
            body, best, median = timed(fn, args.runs)
            results.append((name, body, best, median))
            print("%s / %s: min %.1f ms, median %.1f ms" % (label, name, best, median), file=sys.stderr)
        expected = stock_sorted(d)
        for name, body, _, _ in results[1:]:
            assert body == expected, "%s: %s differs from stock" % (label, name)
        del kept_collector
        base = results[0][3]
        for name, body, best, median in results:
            rows.append((label, name, best, median, base / median, len(body)))
    print("load at end: %s" % open("/proc/loadavg").read().strip(), file=sys.stderr)
    print("| directory | variant | min | median | stock ÷ this (medians) |")
    print("|---|---|---|---|---|")
    for label, name, best, median, ratio, size in rows:
        print("| %s | %s | %.1f ms | %.1f ms | %s |" % (
            label, name, best, median, "1×" if name.startswith("stock") else ("%.1f×" if ratio < 10 else "%.0f×") % ratio))
    print("\nbodies: " + ", ".join("%s %d bytes" % (label, size) for label, name, _, _, _, size in rows
                                   if name.startswith("stock")))


if __name__ == "__main__":
    main()
