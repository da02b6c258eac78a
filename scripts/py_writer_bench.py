#!/usr/bin/env python3
"""Times prometheus_client's own metrics in multiprocess mode, stock against
``prometheus_multiproc.install()``, in one run (BENCHMARKS.md, "Python writer").

Each mode runs in its own child process (the value class is chosen before the first
metric is created); the figures are ns per call, min and median of 5 loops of N
calls. For the installed mode it also times the value object's own call
(``metric._value.inc(1.0)`` ...), so that the rest, prometheus_client's method code
around it, can be told apart.

Usage: python py_writer_bench.py [N]   (prints a Markdown table)
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
OPS = ["Counter.inc()", "Counter.labels(..).inc()", "Gauge.set()", "Histogram.observe()"]


def child(mode: str) -> None:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pmp-pywbench-")
    if mode == "installed":
        import prometheus_multiproc

        assert prometheus_multiproc.install()
    from prometheus_client import Counter, Gauge, Histogram

    c = Counter("bench", "c", registry=None)
    cl = Counter("benchl", "c", ["method", "status"], registry=None)
    cl.labels("GET", "200")
    g = Gauge("benchg", "g", multiprocess_mode="livesum", registry=None)
    h = Histogram("benchh", "h", registry=None)

    def timeit(loop):
        runs = []
        for _ in range(5):
            t = time.perf_counter_ns()
            loop()
            runs.append((time.perf_counter_ns() - t) / N)
        return {"min": min(runs), "median": statistics.median(runs)}

    def inc():
        f = c.inc
        for _ in range(N):
            f()

    def labels_inc():
        for _ in range(N):
            cl.labels("GET", "200").inc()

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

    out = {"loop": timeit(empty)}
    for op, loop in zip(OPS, [inc, labels_inc, gauge_set, observe]):
        out[op] = timeit(loop)
    if mode == "installed":
        # The value objects alone: what the writer costs per call.
        vi, vs = c._value.inc, g._value.set
        bucket, total = h._buckets[7].inc, h._sum.inc

        def value_inc():
            for _ in range(N):
                vi(1.0)

        def value_set():
            for _ in range(N):
                vs(3.0)

        def value_observe():
            for _ in range(N):
                total(0.3)
                bucket(1.0)

        out["value inc"] = timeit(value_inc)
        out["value set"] = timeit(value_set)
        out["value observe"] = timeit(value_observe)
    print(json.dumps(out))


def main() -> None:
    if len(sys.argv) > 2:
        child(sys.argv[2])
        return
    res = {}
    for mode in ["stock", "installed"]:
        out = subprocess.run([sys.executable, __file__, str(N), mode], check=True, capture_output=True, text=True)
        res[mode] = json.loads(out.stdout)
    loop = res["installed"]["loop"]["median"]
    own = {
        "Counter.inc()": "value inc",
        "Counter.labels(..).inc()": "value inc",
        "Gauge.set()": "value set",
        "Histogram.observe()": "value observe",
    }
    print(f"N = {N} calls per loop, median (min) of 5 loops, ns per call; empty loop {loop:.0f} ns\n")
    print("| operation | stock multiprocess | install() | stock ÷ install() | of install(): the value objects' calls | of install(): prometheus_client's method code |")
    print("|---|---|---|---|---|---|")
    for op in OPS:
        s, i = res["stock"][op], res["installed"][op]
        v = res["installed"][own[op]]["median"] - loop
        total = i["median"] - loop
        print(
            f"| `{op}` | {s['median']:.0f} ({s['min']:.0f}) | {i['median']:.0f} ({i['min']:.0f}) | "
            f"{s['median'] / i['median']:.1f}× | {v:.0f} | {total - v:.0f} ({100 * (total - v) / total:.0f} %) |"
        )


if __name__ == "__main__":
    main()
