#!/usr/bin/env python3
"""Times prometheus_client's own metrics in multiprocess mode, stock against
``prometheus_multiproc.install()``, in one run (BENCHMARKS.md, "Python writer").

Runs scripts/py_hot_path.py three times, each in its own process (the value class is
chosen before the first metric is created): stock; install(fast_labels=False)
(PMP_PY_INSTALL=1 PMP_PY_FAST_LABELS=0: labels() stays prometheus_client's own); and
install() (PMP_PY_INSTALL=1), which also times the value objects' own calls, so that
the rest, the methods' Python code around them, can be told apart. Figures are ns per
call, median (min) of 5 loops of N calls, the empty loop included.

Usage: python py_writer_bench.py [N]   (prints a Markdown table)
"""
import json
import os
import subprocess
import sys

N = sys.argv[1] if len(sys.argv) > 1 else "300000"
HOT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "py_hot_path.py")
ROWS = [
    ("Counter.inc()", "counter_inc", "value_inc"),
    ("Counter.labels(..).inc()", "labeled_get_inc", "value_inc"),
    ("Gauge.set()", "gauge_set", "value_set"),
    ("Histogram.observe()", "histogram_observe", "value_observe"),
]
LABEL_ROWS = [("Counter.labels(..).inc()", "labeled_get_inc"), ("Counter.labels(..)", "labels")]


def run(installed: bool, fast_labels: bool = True) -> dict:
    env = dict(os.environ, PMP_PY_INSTALL="1" if installed else "0", PMP_PY_FAST_LABELS="1" if fast_labels else "0")
    out = subprocess.run([sys.executable, HOT_PATH, N], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    stock, plain, ours = run(False), run(True, fast_labels=False), run(True)
    loop = ours["empty_loop"]["median"]
    print(f"N = {N} calls per loop, median (min) of 5 loops, ns per call; empty loop {loop:.0f} ns\n")
    print("| operation | stock multiprocess | install() | stock ÷ install() | of install(): the value objects' calls "
          "| of install(): the methods' own code (prometheus_client's; in `labels()`, the fast path's) |")
    print("|---|---|---|---|---|---|")
    for label, op, value in ROWS:
        s, i = stock[op], ours[op]
        v = ours[value]["median"] - loop
        rest = i["median"] - loop - v
        print(f"| `{label}` | {s['median']:.0f} ({s['min']:.0f}) | {i['median']:.0f} ({i['min']:.0f}) | "
              f"{s['median'] / i['median']:.1f}× | {v:.0f} | {rest:.0f} ({100 * rest / (rest + v):.0f} %) |")
    print("\n| existing child | stock multiprocess | install(fast_labels=False) | install() "
          "| stock ÷ install(fast_labels=False) | stock ÷ install() |")
    print("|---|---|---|---|---|---|")
    for label, op in LABEL_ROWS:
        s, p, i = stock[op], plain[op], ours[op]
        print(f"| `{label}` | {s['median']:.0f} ({s['min']:.0f}) | {p['median']:.0f} ({p['min']:.0f}) | "
              f"{i['median']:.0f} ({i['min']:.0f}) | {s['median'] / p['median']:.1f}× | {s['median'] / i['median']:.1f}× |")


if __name__ == "__main__":
    main()
